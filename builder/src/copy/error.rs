//! Why a COPY or ADD (or WORKDIR's directory, or a mount's tree) failed: resolving its
//! sources, owner and destination, hashing what it reads, writing what it writes. Each
//! variant keeps what it is about (the path, the source as written, the `--chown` spec)
//! and the error underneath; the messages are the ones lb always printed.

use std::path::PathBuf;

use lb_layerstore::NoSpace;

use crate::digests::DigestError;
use crate::error::{BuildError, ErrorKind};
use crate::ignore::IgnoreError;

/// A COPY, ADD, WORKDIR directory or mounted tree that could not be resolved, hashed or
/// written.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A root (the context, a stage's or image's file system, an upper dir) cannot be
    /// opened; the I/O error names `path`.
    #[error("{source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The destination, as written, does not resolve in the image.
    #[error("destination {dest}: {source}")]
    Destination {
        dest: String,
        #[source]
        source: std::io::Error,
    },
    /// A source (relative to its root) that is not there or that `.dockerignore` hides:
    /// BuildKit's words.
    #[error("failed to compute cache key: \"/{}\": not found", .path.display())]
    NotFound { path: PathBuf },
    /// A source, as written, that climbs out of its root.
    #[error("{src}: outside the build context")]
    OutsideContext { src: String },
    /// A wildcard source whose pattern is no pattern.
    #[error("{src}: bad pattern: {source}")]
    BadPattern {
        src: String,
        #[source]
        source: glob::PatternError,
    },
    /// No source at all: wildcards that matched nothing.
    #[error("no source files were specified")]
    NoSources,
    /// `--chown`'s user or group is not in the image's files.
    #[error("--chown={spec}: {source}")]
    Chown {
        spec: String,
        #[source]
        source: lb_runtime::user::UserError,
    },
    /// `--exclude`'s patterns (read as `.dockerignore`'s are) are no patterns.
    #[error("--exclude: {0}")]
    Exclude(#[source] IgnoreError),
    /// `--chmod` is not an octal mode.
    #[error("invalid chmod {mode}: want an octal mode")]
    Chmod { mode: String },
    /// An I/O error on `path` (a source read, a directory made, metadata set).
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A source file could not be read to hash it.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A file's bytes could not be copied from `from` to `to`.
    #[error("copy {} to {}: {source}", .from.display(), .to.display())]
    CopyFile {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A written entry's owner could not be set.
    #[error("chown {}: {source}", .path.display())]
    SetOwner {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A written entry's times could not be set.
    #[error("set times of {}: {source}", .path.display())]
    SetTimes {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    /// ADD could not unpack the archive at `path`.
    #[error("{}: {source}", .path.display())]
    Unpack {
        path: PathBuf,
        #[source]
        source: lb_layerstore::Error,
    },
    /// The store's free-space reserve could not be read (`LB_MIN_FREE`).
    #[error("{0}")]
    Reserve(#[source] lb_layerstore::Error),
    /// No room to write: the disk full, or the store's file system at its reserve. The
    /// build reports it as such ([`ErrorKind::NoSpace`]).
    #[error(transparent)]
    NoSpace(NoSpace),
}

impl CopyError {
    /// The build's error for the instruction `ins`.
    pub(crate) fn at(self, ins: &lb_parser::Instruction) -> BuildError {
        BuildError::new(self.into()).at_line(ins)
    }

    /// A failed write of `path` while `what`: no space as such, else `PATH: ERROR`.
    pub(crate) fn write(
        what: impl FnOnce() -> String,
        path: &std::path::Path,
        e: std::io::Error,
    ) -> CopyError {
        match NoSpace::from_io(&e, &what(), path) {
            Some(n) => CopyError::NoSpace(n),
            None => CopyError::io(path, e),
        }
    }

    /// An I/O error on `path`: `PATH: ERROR`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> CopyError {
        CopyError::Io {
            path: path.into(),
            source,
        }
    }

    /// The root at `path` could not be opened.
    pub(crate) fn root(path: &std::path::Path, source: std::io::Error) -> CopyError {
        CopyError::Root {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// No room to write is the build's [`ErrorKind::NoSpace`]; the rest is a copy's.
impl From<CopyError> for ErrorKind {
    fn from(e: CopyError) -> ErrorKind {
        match e {
            CopyError::NoSpace(n) => ErrorKind::NoSpace(n),
            e => ErrorKind::Copy(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Each renders as the text lb printed when it was a `String`.
    #[test]
    fn messages_are_the_ones_lb_printed() {
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        let cases: Vec<(CopyError, &str)> = vec![
            (
                CopyError::Destination {
                    dest: "/app/".into(),
                    source: io::Error::from_raw_os_error(libc::ELOOP),
                },
                "destination /app/: Too many levels of symbolic links (os error 40)",
            ),
            (
                CopyError::NotFound {
                    path: "src/x".into(),
                },
                "failed to compute cache key: \"/src/x\": not found",
            ),
            (
                CopyError::OutsideContext { src: "../x".into() },
                "../x: outside the build context",
            ),
            (
                CopyError::BadPattern {
                    src: "a[".into(),
                    source: glob::Pattern::new("a[").unwrap_err(),
                },
                "a[: bad pattern: Pattern syntax error near position 1: invalid range pattern",
            ),
            (CopyError::NoSources, "no source files were specified"),
            (
                CopyError::Chown {
                    spec: "app".into(),
                    source: lb_runtime::user::UserError::NoSuchUser("app".into()),
                },
                "--chown=app: unable to find user app: no matching entries in passwd file",
            ),
            (
                CopyError::Chmod { mode: "9".into() },
                "invalid chmod 9: want an octal mode",
            ),
            (
                CopyError::io("/x", enoent()),
                "/x: No such file or directory (os error 2)",
            ),
            (
                CopyError::CopyFile {
                    from: "/a".into(),
                    to: "/b".into(),
                    source: io::Error::from_raw_os_error(libc::EIO),
                },
                "copy /a to /b: Input/output error (os error 5)",
            ),
            (
                CopyError::SetOwner {
                    path: "/b".into(),
                    source: io::Error::from_raw_os_error(libc::EPERM),
                },
                "chown /b: Operation not permitted (os error 1)",
            ),
            (
                CopyError::SetTimes {
                    path: "/b".into(),
                    source: nix::errno::Errno::EPERM,
                },
                "set times of /b: EPERM: Operation not permitted",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
        // A root's error is the opener's, which names the path.
        let opened = lb_rootpath::Root::open(std::path::Path::new("/nonexistent/ctx"))
            .err()
            .unwrap();
        let said = opened.to_string();
        assert_eq!(
            CopyError::root(std::path::Path::new("/nonexistent/ctx"), opened).to_string(),
            said
        );
        // Out of room is the build's NoSpace.
        let full = CopyError::write(
            || "copying /a".into(),
            std::path::Path::new("/b"),
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(ErrorKind::from(full), ErrorKind::NoSpace(_)));
    }
}
