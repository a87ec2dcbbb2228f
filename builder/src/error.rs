//! The builder's one error: what went wrong ([`ErrorKind`], as data) and, when an
//! instruction is at fault, its line, so that the caller can print `Dockerfile:LINE` and the
//! line itself. A write that found no room (the disk full, or the store's file system at its
//! reserve) is [`ErrorKind::NoSpace`], so that the caller can tell it from a failed step; its
//! message is then `no space left on device while WHAT (PATH)`.

use std::path::{Path, PathBuf};

use lb_layerstore::NoSpace;
use lb_parser::Instruction;

use crate::copy::CopyError;
use crate::ignore::IgnoreError;
use crate::mounts::MountError;

/// A build failed: what happened, and at which Dockerfile line when an instruction is at
/// fault. Displayed as `line N: MESSAGE`; [`ErrorKind`] alone is `MESSAGE`.
#[derive(Debug, thiserror::Error)]
#[error("{}{kind}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct BuildError {
    /// The first line of the instruction at fault.
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

/// What went wrong in a build. The variants holding a `String` carry the message of a part
/// that reports text (docker's message for a rule, an image source's, a network's): which
/// part is data.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// An I/O error while `what`, on `path` (`PATH: ERROR`), or on no path of its own (a
    /// pipe: `WHAT: ERROR`).
    #[error("{}: {source}", .path.as_deref().map_or(std::borrow::Cow::Borrowed(*.what), |p| p.to_string_lossy()))]
    Io {
        what: &'static str,
        path: Option<PathBuf>,
        #[source]
        source: std::io::Error,
    },
    /// A system call failed (`CALL: ERRNO` as nix words it).
    #[error("{call}: {errno}")]
    Sys {
        call: &'static str,
        errno: nix::errno::Errno,
    },
    /// The build ran out of room: what was being written, and where.
    #[error(transparent)]
    NoSpace(NoSpace),
    /// The store failed (never its `NoSpace`: that is [`ErrorKind::NoSpace`]).
    #[error(transparent)]
    Store(lb_layerstore::Error),
    /// The runtime failed: a RUN step's container could not be started, a view not mounted.
    #[error(transparent)]
    Runtime(lb_runtime::Error),
    /// The build's own mount namespace could not be made.
    #[error("building: {0}")]
    Namespace(#[source] lb_runtime::Error),
    /// A RUN's command ended with a non-zero status; `tail` is its last lines of output.
    #[error(
        "process \"{command}\" did not complete successfully: exit code: {exit_code}{}",
        last_output(.tail)
    )]
    Step {
        command: String,
        exit_code: i32,
        tail: Vec<String>,
    },
    /// An image's config is not JSON.
    #[error("image config {digest}: {source}")]
    Config {
        digest: lb_layerstore::Digest,
        #[source]
        source: serde_json::Error,
    },
    /// WORKDIR's directory cannot be resolved in the stage's file system.
    #[error("WORKDIR {workdir}: {source}")]
    Workdir {
        workdir: String,
        #[source]
        source: std::io::Error,
    },
    /// What docker refuses (a rule of the Dockerfile, an expansion, a flag), with its message.
    #[error("{0}")]
    Invalid(String),
    /// A base or `--from` image could not be had (the image source's message).
    #[error("{0}")]
    Image(String),
    /// COPY or ADD failed (resolving sources, owners, the destination; hashing; copying),
    /// or WORKDIR's owner could not be resolved.
    #[error(transparent)]
    Copy(CopyError),
    /// ADD could not fetch a URL.
    #[error(transparent)]
    Fetch(crate::fetch::FetchError),
    /// RUN's `--mount`s (or the build's tmpfs for their secrets) could not be prepared.
    #[error(transparent)]
    Mount(MountError),
    /// A RUN step could not join its network.
    #[error("{0}")]
    Network(String),
    /// The build context's `.dockerignore` could not be read, or has a bad pattern.
    #[error(transparent)]
    Context(IgnoreError),
    /// A stage's thread panicked: a bug, said as such with what it said.
    #[error("internal error: a stage's thread panicked: {0}")]
    Panicked(String),
}

fn last_output(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nlast output:\n  {}", tail.join("\n  "))
    }
}

impl From<ErrorKind> for BuildError {
    fn from(kind: ErrorKind) -> BuildError {
        BuildError { line: None, kind }
    }
}

impl BuildError {
    pub fn new(kind: ErrorKind) -> BuildError {
        kind.into()
    }

    /// `kind`, at the instruction `ins`.
    pub fn at(ins: &Instruction, kind: ErrorKind) -> BuildError {
        BuildError::new(kind).at_line(ins)
    }

    /// What docker refuses, at `ins`, with its message.
    pub fn invalid(ins: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError::at(ins, ErrorKind::Invalid(message.into()))
    }

    /// The build ran out of room.
    pub fn no_space(n: NoSpace) -> BuildError {
        ErrorKind::NoSpace(n).into()
    }

    /// The same error, pointing at `ins`.
    pub fn at_line(mut self, ins: &Instruction) -> BuildError {
        self.line = Some(ins.start_line);
        self
    }

    /// An I/O error while `what` at `path`: no space as such, else `PATH: ERROR`.
    pub fn io(what: &'static str, path: &Path, e: std::io::Error) -> BuildError {
        match NoSpace::from_io(&e, what, path) {
            Some(n) => BuildError::no_space(n),
            None => ErrorKind::Io {
                what,
                path: Some(path.to_path_buf()),
                source: e,
            }
            .into(),
        }
    }

    /// The store's error: no space as such, else the store's.
    pub fn store(e: lb_layerstore::Error) -> BuildError {
        match e {
            lb_layerstore::Error::NoSpace(n) => BuildError::no_space(n),
            e => ErrorKind::Store(e).into(),
        }
    }

    /// The runtime's error.
    pub fn runtime(e: lb_runtime::Error) -> BuildError {
        ErrorKind::Runtime(e).into()
    }

    /// The build ran out of room: what was being written, and where.
    pub fn out_of_space(&self) -> Option<&NoSpace> {
        match &self.kind {
            ErrorKind::NoSpace(n) => Some(n),
            _ => None,
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
            e.kind.to_string(),
            "no space left on device while preparing a step (/store/build/x)"
        );
        assert!(e.out_of_space().is_some());
        let e = BuildError::io(
            "preparing a step",
            Path::new("/x"),
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(e.out_of_space().is_none());
        assert_eq!(e.kind.to_string(), "/x: Permission denied (os error 13)");
        let e = BuildError::store(lb_layerstore::Error::NoSpace(NoSpace::new(
            "writing a layer blob",
            "/store/ingest/blob-1",
        )));
        assert!(e.out_of_space().is_some());
        assert_eq!(
            e.to_string(),
            "no space left on device while writing a layer blob (/store/ingest/blob-1)"
        );
    }

    #[test]
    fn a_failed_step_keeps_its_status_and_says_what_docker_says() {
        let mut e = BuildError::new(ErrorKind::Step {
            command: "/bin/sh -c exit 3".into(),
            exit_code: 3,
            tail: vec![],
        });
        assert_eq!(
            e.kind.to_string(),
            "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
        );
        e.line = Some(4);
        e.kind = ErrorKind::Step {
            command: "x".into(),
            exit_code: 1,
            tail: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "line 4: process \"x\" did not complete successfully: exit code: 1\nlast output:\n  a\n  b"
        );
        let e = BuildError::from(ErrorKind::Io {
            what: "pipe",
            path: None,
            source: std::io::Error::from_raw_os_error(libc::EMFILE),
        });
        assert_eq!(e.to_string(), "pipe: Too many open files (os error 24)");
    }
}
