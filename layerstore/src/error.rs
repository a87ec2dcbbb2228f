//! The store's errors: each names the blob, path or reference at fault.

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// A write that found no room: the disk (or a quota) full, or the store's file system about
/// to fall below its free-space reserve (`LB_MIN_FREE`, see `reserve.rs`). It names what was
/// being done and where. Writers hand it up through `io::Error`s (as their inner error, so
/// that tar and `io::copy` pass it along) and [`Error`]'s constructors find it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSpace {
    /// What was being done: "unpacking a layer", "writing a layer blob", ...
    pub what: String,
    /// Where (empty when unknown).
    pub path: PathBuf,
    /// The reserve in bytes the write would have crossed; `None`: the disk itself was full.
    pub reserve: Option<u64>,
}

impl std::fmt::Display for NoSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no space left on device while {}", self.what)?;
        if !self.path.as_os_str().is_empty() {
            write!(f, " ({})", self.path.display())?;
        }
        if let Some(r) = self.reserve {
            write!(
                f,
                ": the file system would fall below its reserve of {} ({})",
                crate::reserve::human_size(r),
                crate::reserve::VARIABLE
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for NoSpace {}

impl NoSpace {
    pub fn new(what: impl Into<String>, path: impl Into<PathBuf>) -> NoSpace {
        NoSpace {
            what: what.into(),
            path: path.into(),
            reserve: None,
        }
    }

    /// The no-space error `e` is, if it is one: one a writer carried inside it as it was, or
    /// `ENOSPC`/`EDQUOT` from the kernel as a `NoSpace` for `what` at `path`.
    pub fn from_io(e: &std::io::Error, what: &str, path: &Path) -> Option<NoSpace> {
        if let Some(inner) = NoSpace::carried(e) {
            return Some(inner.clone());
        }
        is_no_space(e).then(|| NoSpace::new(what, path))
    }

    /// The no-space error that `e` (one link of an error's chain) is or carries: the
    /// store's [`Error::NoSpace`], a `NoSpace` itself, or one a writer carried inside an
    /// `io::Error`.
    pub fn of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a NoSpace> {
        e.downcast_ref::<Error>()
            .and_then(Error::no_space)
            .or_else(|| e.downcast_ref::<NoSpace>())
            .or_else(|| {
                e.downcast_ref::<std::io::Error>()
                    .and_then(NoSpace::carried)
            })
    }

    /// A `NoSpace` carried inside `e` by a writer.
    pub fn carried(e: &std::io::Error) -> Option<&NoSpace> {
        e.get_ref().and_then(|i| i.downcast_ref::<NoSpace>())
    }

    /// As an `io::Error` for a writer to return (found again by [`NoSpace::from_io`]).
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::StorageFull, self)
    }
}

/// Whether `e` says the disk or a quota is full (`ENOSPC`, `EDQUOT`), or carries a
/// [`NoSpace`].
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) || NoSpace::carried(e).is_some()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    #[error("unsupported digest algorithm in {0:?}: lb stores sha256 only")]
    UnsupportedDigest(String),
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content size does not match: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("not a valid image archive: {0}")]
    BadArchive(String),
    #[error("no such container: {0}")]
    NoContainer(String),
    #[error("{0}")]
    BadContainer(String),
    #[error("no such image: {0}")]
    NameNotFound(String),
    #[error("{}: damaged store file: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Layer {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer entry {entry:?}: {source}")]
    LayerEntry {
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NoSpace(NoSpace),
    /// A snapshotter refused: no such snapshot, a key taken, a view committed, ...
    #[error("snapshot {key}: {reason}")]
    Snapshot { key: String, reason: String },
    /// The store was made with another storage driver than the one asked for.
    #[error(
        "storage driver \"{wanted}\" does not match the store's existing driver \"{existing}\" ({})",
        root.display()
    )]
    DriverMismatch {
        wanted: crate::StorageDriver,
        existing: crate::StorageDriver,
        root: PathBuf,
    },
    #[error("invalid {variable}={value:?}: {reason}")]
    InvalidSetting {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The no-space error this is, if it is one.
    pub fn no_space(&self) -> Option<&NoSpace> {
        match self {
            Error::NoSpace(n) => Some(n),
            _ => None,
        }
    }

    /// An I/O error while doing `what` at `path`: [`Error::NoSpace`] when the disk was full
    /// (or a writer said so), else [`Error::Io`].
    pub fn io_while(what: &str, path: &Path, source: std::io::Error) -> Error {
        match NoSpace::from_io(&source, what, path) {
            Some(n) => Error::NoSpace(n),
            None => Error::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// This error, a no-space one naming the layer `digest` as what was being unpacked
    /// (`apply_layer` knows only its target directory).
    pub fn unpacking(self, digest: &Digest) -> Error {
        match self {
            Error::NoSpace(mut n) => {
                n.what = format!("unpacking layer {digest}");
                Error::NoSpace(n)
            }
            e => e,
        }
    }

    pub(crate) fn layer(context: &str, source: std::io::Error) -> Error {
        if let Some(n) = NoSpace::from_io(&source, context, Path::new("")) {
            return Error::NoSpace(n);
        }
        Error::Layer {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn entry(entry: &str, source: std::io::Error) -> Error {
        if let Some(n) = NoSpace::from_io(&source, "unpacking a layer", Path::new(entry)) {
            return Error::NoSpace(n);
        }
        Error::LayerEntry {
            entry: entry.to_string(),
            source,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::io_while("writing", path, source)
    }
}
