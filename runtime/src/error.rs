//! The runtime's one error: a message and the exit status docker gives it (125 when lb
//! itself failed, 126 when the command cannot be executed, 127 when it is not found).

/// A container could not be started or managed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub message: String,
    /// The exit status `lb run` reports for it.
    pub code: i32,
}

impl Error {
    /// lb's own failure (exit 125), with what was being done.
    pub fn setup(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            code: 125,
        }
    }

    /// A failed system call while doing `what`.
    pub fn sys(what: impl std::fmt::Display, err: impl std::fmt::Display) -> Error {
        Error::setup(format!("{what}: {err}"))
    }
}

impl From<crate::cgroups::CgroupError> for Error {
    fn from(e: crate::cgroups::CgroupError) -> Error {
        Error::setup(e.to_string())
    }
}

impl From<crate::seccomp::SeccompError> for Error {
    fn from(e: crate::seccomp::SeccompError) -> Error {
        Error::setup(format!("seccomp: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
