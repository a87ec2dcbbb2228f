//! What goes wrong with a cache outside the store.

/// An error of the build cache: the value that was refused, or where it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--cache-to`/`--cache-from` value lb cannot take.
    #[error("{flag} {value:?}: {reason}")]
    Spec {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// A cache document (manifest, index, cache config) that is not what it must be.
    #[error("{cache}: {reason}")]
    Format { cache: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] lb_registry::Error),
    #[error(transparent)]
    Store(#[from] lb_layerstore::Error),
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn format(cache: &str, reason: impl Into<String>) -> Error {
        Error::Format {
            cache: cache.to_string(),
            reason: reason.into(),
        }
    }
}
