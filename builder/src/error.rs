//! The builder's one error: what went wrong ([`ErrorKind`], as data) and, when an
//! instruction is at fault, its line, so that the caller can print `Dockerfile:LINE` and the
//! line itself. A write that found no room (the disk full, or the store's file system at its
//! reserve) is [`ErrorKind::NoSpace`], so that the caller can tell it from a failed step; its
//! message is then `no space left on device while WHAT (PATH)`.

use std::path::{Path, PathBuf};

use lb_layerstore::NoSpace;
use lb_parser::Instruction;

use crate::build::SeamError;
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

/// What went wrong in a build, as data: `Invalid` alone carries a message (docker's, for a
/// rule), `Panicked` what a panic said.
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
    /// A base or `--from` image could not be had.
    #[error(transparent)]
    Image(ImageError),
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
    /// A RUN step could not join its network: the caller's error, with its causes.
    #[error("{}", caller_text(.0))]
    Network(#[source] SeamError),
    /// The build context's `.dockerignore` could not be read, or has a bad pattern.
    #[error(transparent)]
    Context(IgnoreError),
    /// Another step of the build failed first: this one stopped (never the build's error).
    #[error("canceled: another step of the build failed")]
    Canceled,
    /// A stage's thread panicked: a bug, said as such with what it said.
    #[error("internal error: a stage's thread panicked: {0}")]
    Panicked(String),
}

/// Why a base or `--from` image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The name is no image reference.
    #[error("invalid reference {name:?}: {source}")]
    Reference {
        name: String,
        #[source]
        source: lb_layerstore::Error,
    },
    /// Not in the store, and the build has no image source to fetch it from.
    #[error("{name}: image not found locally")]
    NotLocal { name: String },
    /// `--from` names a stage by index that was not built before this one.
    #[error("stage {stage} was not built")]
    StageNotBuilt { stage: String },
    /// The caller's [`ImageSource`](crate::ImageSource) could not fetch it (`name` as
    /// written): its error, with its causes.
    #[error("{}", caller_text(.source))]
    Fetch {
        name: String,
        #[source]
        source: SeamError,
    },
}

/// An image that could not be had; no room to fetch it is the build's
/// [`ErrorKind::NoSpace`].
impl From<ImageError> for ErrorKind {
    fn from(e: ImageError) -> ErrorKind {
        match &e {
            ImageError::Fetch { source, .. } => match no_space_in(source.as_ref()) {
                Some(n) => ErrorKind::NoSpace(n.clone()),
                None => ErrorKind::Image(e),
            },
            _ => ErrorKind::Image(e),
        }
    }
}

impl ErrorKind {
    /// A RUN step's network could not be had: the caller's error; no room as such.
    pub(crate) fn network(e: SeamError) -> ErrorKind {
        match no_space_in(e.as_ref()) {
            Some(n) => ErrorKind::NoSpace(n.clone()),
            None => ErrorKind::Network(e),
        }
    }
}

/// The store's no-space error somewhere in `e`'s chain.
fn no_space_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a NoSpace> {
    std::iter::successors(Some(e), |e| e.source()).find_map(NoSpace::of)
}

/// A caller's error as lb prints any error (`main::error_text`), since a build's error is
/// printed as its text alone: what ran out of room when a cause did, else the error and
/// each cause its text does not already end with, after `: `.
fn caller_text(e: &SeamError) -> String {
    let e: &(dyn std::error::Error + 'static) = e.as_ref();
    if let Some(n) = no_space_in(e) {
        return n.to_string();
    }
    let mut text = e.to_string();
    for cause in std::iter::successors(e.source(), |c| c.source()) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
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

    /// An error with a message of its own and a cause, as callers' errors are made.
    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Said {
        message: &'static str,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    }

    fn said(message: &'static str, source: Option<SeamError>) -> SeamError {
        Box::new(Said { message, source })
    }

    #[test]
    fn a_callers_error_is_said_with_its_causes_once_each() {
        let io = || std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        // A cause its text does not say is added; one it ends with is not repeated.
        let e = said(
            "pulling alpine",
            Some(said("GET /v2/", Some(Box::new(io())))),
        );
        assert_eq!(
            ErrorKind::from(ImageError::Fetch {
                name: "alpine".into(),
                source: e
            })
            .to_string(),
            "pulling alpine: GET /v2/: Connection refused (os error 111)"
        );
        let io_said = lb_layerstore::Error::io_while("reading", Path::new("/x"), io());
        let e = ErrorKind::network(said("bridge", Some(Box::new(io_said))));
        assert_eq!(
            e.to_string(),
            "bridge: /x: Connection refused (os error 111)"
        );
        // No room, anywhere in the chain, is the build's NoSpace and says only that.
        let full = lb_layerstore::Error::NoSpace(NoSpace::new("unpacking a layer", "/s/x"));
        let e = ErrorKind::from(ImageError::Fetch {
            name: "alpine".into(),
            source: said("pulling alpine", Some(Box::new(full))),
        });
        assert!(matches!(e, ErrorKind::NoSpace(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "no space left on device while unpacking a layer (/s/x)"
        );
    }

    #[test]
    fn images_that_cannot_be_had_are_named() {
        let bad = lb_layerstore::Reference::parse("UPPER").unwrap_err();
        let text = format!("invalid reference \"UPPER\": {bad}");
        let cases = [
            (
                ImageError::Reference {
                    name: "UPPER".into(),
                    source: bad,
                },
                text.as_str(),
            ),
            (
                ImageError::NotLocal {
                    name: "alpine".into(),
                },
                "alpine: image not found locally",
            ),
            (
                ImageError::StageNotBuilt { stage: "3".into() },
                "stage 3 was not built",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(ErrorKind::from(e).to_string(), want);
        }
    }
}
