//! The builder's one error: a message and, when an instruction is at fault, its line, so
//! that the caller can print `Dockerfile:LINE` and the line itself. A write that found no
//! room (the disk full, or the store's file system at its reserve) also carries the store's
//! [`NoSpace`], so that the caller can tell it from a failed step; its message is then
//! `no space left on device while WHAT (PATH)`.

use std::path::Path;

use lb_layerstore::NoSpace;
use lb_parser::Instruction;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct BuildError {
    pub message: String,
    /// The first line of the instruction at fault.
    pub line: Option<usize>,
    /// The build ran out of room: what was being written, and where.
    pub no_space: Option<NoSpace>,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            line: None,
            no_space: None,
        }
    }

    pub fn at(ins: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError::new(message).at_line(ins)
    }

    /// The build ran out of room.
    pub fn no_space(n: NoSpace) -> BuildError {
        BuildError {
            message: n.to_string(),
            line: None,
            no_space: Some(n),
        }
    }

    /// The same error, pointing at `ins`.
    pub fn at_line(mut self, ins: &Instruction) -> BuildError {
        self.line = Some(ins.start_line);
        self
    }

    /// An I/O error while `what` at `path`: no space as such, else `PATH: ERROR`.
    pub fn io(what: &str, path: &Path, e: std::io::Error) -> BuildError {
        match NoSpace::from_io(&e, what, path) {
            Some(n) => BuildError::no_space(n),
            None => BuildError::new(format!("{}: {e}", path.display())),
        }
    }

    /// The store's error: no space as such, else its message.
    pub fn store(e: lb_layerstore::Error) -> BuildError {
        match e {
            lb_layerstore::Error::NoSpace(n) => BuildError::no_space(n),
            e => BuildError::new(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_and_named() {
        let e = BuildError::io(
            "preparing a step",
            Path::new("/store/build/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(
            e.message,
            "no space left on device while preparing a step (/store/build/x)"
        );
        assert!(e.no_space.is_some());
        let e = BuildError::io(
            "preparing a step",
            Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(e.no_space.is_none());
        assert!(e.message.starts_with("/x: "), "{}", e.message);
        let e = BuildError::store(lb_layerstore::Error::NoSpace(NoSpace::new(
            "writing a layer blob",
            "/store/ingest/blob-1",
        )));
        assert!(e.no_space.is_some());
        assert_eq!(
            e.to_string(),
            "no space left on device while writing a layer blob (/store/ingest/blob-1)"
        );
    }
}
