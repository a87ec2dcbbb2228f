//! The container library's errors. Messages are docker's where docker has one: `lb run`
//! prints them as they are and exits 125.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option's value docker refuses (a flag, a log option, a volume spec), with
    /// docker's message naming the option.
    #[error("{0}")]
    InvalidOption(String),
    /// A flag's value docker's CLI refuses while parsing it, in its words.
    #[error("invalid argument {value:?} for {flag:?} flag: {reason}")]
    InvalidFlag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// A `--device` that is not a device on the host when the container starts.
    #[error("error gathering device information while adding custom device {path:?}: {reason}")]
    Device { path: String, reason: String },
    /// What the container's state does not allow (docker's 409 conflicts), with docker's
    /// message.
    #[error("{0}")]
    Conflict(String),
    /// A volume name names no volume (`volume rm/inspect`).
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    /// `--network NAME` (or `network rm/inspect NAME`) names no network.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// Joining a network failed.
    #[error("--network {network}: {source}")]
    Attach {
        network: String,
        #[source]
        source: lb_network::Error,
    },
    /// A container's links, address or namespace could not all be released.
    #[error("network cleanup of {id}: {source}")]
    Cleanup {
        id: String,
        #[source]
        source: lb_network::Error,
    },
    /// Publishing ports (DNAT rules) failed.
    #[error("publishing ports: {0}")]
    Publish(#[source] lb_network::Error),
    #[error(transparent)]
    Network(#[from] lb_network::Error),
    #[error(transparent)]
    Store(#[from] lb_layerstore::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of lb's that does not parse.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// A signal could not be sent to a container's process.
    #[error("send {signal} to pid {pid}: {errno}")]
    Signal {
        signal: nix::sys::signal::Signal,
        pid: i32,
        errno: nix::errno::Errno,
    },
    #[error(transparent)]
    Runtime(#[from] lb_runtime::Error),
    #[error(transparent)]
    Cgroup(#[from] lb_runtime::cgroups::CgroupError),
    /// `run`/`create` name an image the store does not have.
    #[error("Unable to find image '{0}' locally")]
    NoSuchImage(String),
    /// A system call of lb's own failed.
    #[error("{what}: {errno}")]
    Sys {
        what: &'static str,
        errno: nix::errno::Errno,
    },
    /// A detached container did not start: the runtime's exit status (125, 126, 127) and
    /// message.
    #[error("{message}")]
    NotStarted { code: u8, message: String },
    /// `cp`: a path the container does not have (the CLI names the container too, as
    /// docker's `No such container:path: C:PATH`).
    #[error("Could not find the file {0} in container")]
    NoSuchPath(String),
    /// `cp` into a path that is not a directory.
    #[error("extraction point is not a directory")]
    ExtractPointNotDirectory,
    #[error("container rootfs is marked read-only")]
    RootfsReadOnly,
    #[error("mounted volume is marked read-only")]
    VolumeReadOnly,
    /// `cp` failed in the container's file system: what failed there.
    #[error("{0}")]
    Copy(String),
    /// `top`: the host's `ps` failed, or its output has no PID column.
    #[error("{0}")]
    Ps(String),
    /// A file an option names could not be read (`--env-file`).
    #[error("{option} {}: {source}", path.display())]
    OptionFile {
        option: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Returns an [`Error::InvalidOption`] with a formatted message (the library's `bail!`).
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::Error::InvalidOption(format!($($arg)*)))
    };
}
pub(crate) use invalid;
