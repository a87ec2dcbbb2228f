//! The store's errors: each names the blob, path or reference at fault.

use std::path::{Path, PathBuf};

use crate::digest::Digest;

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
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn layer(context: &str, source: std::io::Error) -> Error {
        Error::Layer {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn entry(entry: &str, source: std::io::Error) -> Error {
        Error::LayerEntry {
            entry: entry.to_string(),
            source,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
