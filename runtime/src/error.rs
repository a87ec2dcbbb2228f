//! The runtime's one error, as data: what failed (the system call and its errno, the path,
//! the program that could not be executed, the cgroup or seccomp error), rendered as lb has
//! always printed it, with the exit status docker gives it ([`Error::code`]: 125 when lb
//! itself failed, 126 when the command cannot be executed, 127 when it is not found).
//!
//! Most of a container's setup fails in a forked child; the child sends its error to the
//! parent through a pipe ([`Error::encode`] / [`Error::decode`]), so the parent gets the
//! same value back, not only its text.

use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroups::CgroupError;
use crate::seccomp::SeccompError;
use crate::user::UserError;

/// A container could not be started or managed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed (`errno` as nix reports it: `EPERM: Operation not permitted`)
    /// while doing `what`, on `path` when there is one.
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        path: Option<PathBuf>,
        errno: Errno,
    },
    /// The same through `std::io` (`Operation not permitted (os error 1)`).
    #[error("{what}: {source}")]
    Io {
        what: String,
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
    /// The command's program is not a path and is in no directory of the container's PATH
    /// (exit 127).
    #[error("exec: \"{name}\": executable file not found in $PATH")]
    NotInPath { name: String },
    /// The command's program, a path, cannot be found (exit 127).
    #[error("exec: \"{name}\": stat {name}: {}", io_text(.source))]
    Stat {
        name: String,
        #[source]
        source: io::Error,
    },
    /// `execve` of `path` (found for `name`) failed: exit 127 for `ENOENT` (a missing
    /// interpreter), else 126.
    #[error("exec: \"{name}\": {}", .errno.desc().to_lowercase())]
    Exec {
        name: String,
        path: PathBuf,
        errno: Errno,
    },
    /// A resource limit the spec asks for cannot be set (`name` as docker's `--ulimit`
    /// names it: `nofile`); `max` is the hard limit this process has.
    #[error(
        "ulimit {name}={soft}:{hard}: cannot be set ({source}); the hard limit here is {max} and cannot be raised"
    )]
    Rlimit {
        name: String,
        soft: u64,
        hard: u64,
        max: u64,
        #[source]
        source: io::Error,
    },
    /// A bind mount's source is missing on the host; `what` is `mount bind on DEST`.
    #[error("{what}: bind source path does not exist: {}", .path.display())]
    NoBindSource { what: String, path: PathBuf },
    /// The container whose namespaces an exec joins is gone (`path`: its namespace file).
    #[error("the container is not running ({}: {source})", .path.display())]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The spec's user does not resolve in the container's passwd/group files (the
    /// resolver's message: `unable to find user ...`).
    #[error(transparent)]
    User(#[from] UserError),
    /// A capability set could not be set.
    #[error("set {set:?} capabilities: {source}")]
    Capabilities {
        set: caps::CapSet,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The cgroup hierarchies to mount at `dest` could not be read.
    #[error("mount {source} on {}", .dest.display())]
    CgroupMount {
        dest: PathBuf,
        #[source]
        source: CgroupError,
    },
    #[error("seccomp: {0}")]
    Seccomp(#[from] SeccompError),
    /// A spec value lb refuses (an environment entry without `=`, an unknown rlimit, a
    /// relative working directory, a NUL byte in an argument): the message is all there is.
    #[error("{0}")]
    Invalid(String),
    /// lb's own failure where no call or value is at fault (a thread that panicked, lb gone
    /// before its container started, a setup process that ended without a report).
    #[error("{0}")]
    Setup(String),
    /// An error the container's setup process reported whose cause cannot cross the pipe as
    /// data (a cgroup error: reading the hierarchies to mount): its text and exit status.
    #[error("{message}")]
    Reported { code: i32, message: String },
}

impl Error {
    /// lb's own failure (exit 125), with what was being done.
    pub fn setup(message: impl Into<String>) -> Error {
        Error::Setup(message.into())
    }

    /// A spec value lb refuses (exit 125).
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    /// A failed system call (nix's errno) while doing `what`.
    pub fn sys(what: impl Into<String>, errno: Errno) -> Error {
        Error::Sys {
            what: what.into(),
            path: None,
            errno,
        }
    }

    /// A failed I/O call while doing `what`.
    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            path: None,
            source,
        }
    }

    /// The same error, about `path` (kept as data; the message already names it).
    pub fn with_path(mut self, p: impl Into<PathBuf>) -> Error {
        if let Error::Sys { path, .. } | Error::Io { path, .. } = &mut self {
            *path = Some(p.into());
        }
        self
    }

    /// The exit status `lb run` reports for it: docker's 125 (lb failed), 126 (the command
    /// cannot be executed) or 127 (it is not found).
    pub fn code(&self) -> i32 {
        match self {
            Error::NotInPath { .. } | Error::Stat { .. } => 127,
            Error::Exec { errno, .. } if *errno == Errno::ENOENT => 127,
            Error::Exec { .. } => 126,
            Error::Reported { code, .. } => *code,
            _ => 125,
        }
    }

    /// The errno of a failed call, when one is at the bottom of it.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } | Error::Exec { errno, .. } => Some(*errno),
            Error::Io { source, .. }
            | Error::Stat { source, .. }
            | Error::Rlimit { source, .. }
            | Error::NotRunning { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    /// The path the error is about, when it has one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Sys { path, .. } | Error::Io { path, .. } => path.as_deref(),
            Error::Exec { path, .. }
            | Error::NoBindSource { path, .. }
            | Error::NotRunning { path, .. } => Some(path),
            Error::CgroupMount { dest, .. } => Some(dest),
            _ => None,
        }
    }

    /// The error as the forked setup process sends it to its parent.
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Wire::of(self)).unwrap_or_default()
    }

    /// The error a setup process sent ([`Error::encode`]); a report that does not decode
    /// (the process died mid-write) is lb's failure, with the report's text.
    pub(crate) fn decode(report: &[u8]) -> Error {
        match serde_json::from_slice::<Wire>(report) {
            Ok(w) => w.error(),
            Err(_) => Error::setup(format!(
                "container setup failed: {}",
                String::from_utf8_lossy(report)
            )),
        }
    }
}

/// An errno's text as Go's `os` package words it (`no such file or directory`).
fn io_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// [`Error`] on the report pipe: errnos as numbers, paths as bytes, an `io::Error` as its
/// OS error (or its text when it has none).
#[derive(serde::Serialize, serde::Deserialize)]
enum Wire {
    Sys {
        what: String,
        path: Option<Vec<u8>>,
        errno: i32,
    },
    Io {
        what: String,
        path: Option<Vec<u8>>,
        source: WireIo,
    },
    NotInPath {
        name: String,
    },
    Stat {
        name: String,
        source: WireIo,
    },
    Exec {
        name: String,
        path: Vec<u8>,
        errno: i32,
    },
    Rlimit {
        name: String,
        soft: u64,
        hard: u64,
        max: u64,
        source: WireIo,
    },
    NoBindSource {
        what: String,
        path: Vec<u8>,
    },
    User(UserError),
    Capabilities {
        set: String,
        message: String,
    },
    SeccompInstall(WireIo),
    SeccompThreadSync(i64),
    Invalid(String),
    Setup(String),
    Reported {
        code: i32,
        message: String,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
enum WireIo {
    Os(i32),
    Other(String),
}

impl WireIo {
    fn of(e: &io::Error) -> WireIo {
        match e.raw_os_error() {
            Some(n) => WireIo::Os(n),
            None => WireIo::Other(e.to_string()),
        }
    }

    fn error(self) -> io::Error {
        match self {
            WireIo::Os(n) => io::Error::from_raw_os_error(n),
            WireIo::Other(s) => io::Error::other(s),
        }
    }
}

fn bytes(p: &std::path::Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

impl Wire {
    fn of(e: &Error) -> Wire {
        match e {
            Error::Sys { what, path, errno } => Wire::Sys {
                what: what.clone(),
                path: path.as_deref().map(bytes),
                errno: *errno as i32,
            },
            Error::Io { what, path, source } => Wire::Io {
                what: what.clone(),
                path: path.as_deref().map(bytes),
                source: WireIo::of(source),
            },
            Error::NotInPath { name } => Wire::NotInPath { name: name.clone() },
            Error::Stat { name, source } => Wire::Stat {
                name: name.clone(),
                source: WireIo::of(source),
            },
            Error::Exec { name, path, errno } => Wire::Exec {
                name: name.clone(),
                path: bytes(path),
                errno: *errno as i32,
            },
            Error::Rlimit {
                name,
                soft,
                hard,
                max,
                source,
            } => Wire::Rlimit {
                name: name.clone(),
                soft: *soft,
                hard: *hard,
                max: *max,
                source: WireIo::of(source),
            },
            Error::NoBindSource { what, path } => Wire::NoBindSource {
                what: what.clone(),
                path: bytes(path),
            },
            Error::User(e) => Wire::User(e.clone()),
            Error::Capabilities { set, source } => Wire::Capabilities {
                set: format!("{set:?}"),
                message: source.to_string(),
            },
            Error::Seccomp(SeccompError::Install(e)) => Wire::SeccompInstall(WireIo::of(e)),
            Error::Seccomp(SeccompError::ThreadSync(t)) => Wire::SeccompThreadSync(*t),
            Error::Invalid(s) => Wire::Invalid(s.clone()),
            Error::Setup(s) => Wire::Setup(s.clone()),
            e => Wire::Reported {
                code: e.code(),
                message: e.to_string(),
            },
        }
    }

    fn error(self) -> Error {
        match self {
            Wire::Sys {
                what,
                path: p,
                errno,
            } => Error::Sys {
                what,
                path: p.map(path),
                errno: Errno::from_raw(errno),
            },
            Wire::Io {
                what,
                path: p,
                source,
            } => Error::Io {
                what,
                path: p.map(path),
                source: source.error(),
            },
            Wire::NotInPath { name } => Error::NotInPath { name },
            Wire::Stat { name, source } => Error::Stat {
                name,
                source: source.error(),
            },
            Wire::Exec {
                name,
                path: p,
                errno,
            } => Error::Exec {
                name,
                path: path(p),
                errno: Errno::from_raw(errno),
            },
            Wire::Rlimit {
                name,
                soft,
                hard,
                max,
                source,
            } => Error::Rlimit {
                name,
                soft,
                hard,
                max,
                source: source.error(),
            },
            Wire::NoBindSource { what, path: p } => Error::NoBindSource {
                what,
                path: path(p),
            },
            Wire::User(e) => Error::User(e),
            Wire::Capabilities { set, message } => {
                use caps::CapSet;
                let set = match set.as_str() {
                    "Ambient" => CapSet::Ambient,
                    "Bounding" => CapSet::Bounding,
                    "Effective" => CapSet::Effective,
                    "Inheritable" => CapSet::Inheritable,
                    "Permitted" => CapSet::Permitted,
                    _ => {
                        return Error::Reported {
                            code: 125,
                            message: format!("set {set} capabilities: {message}"),
                        };
                    }
                };
                // `CapsError` displays as `caps error: ` and the text it was made from.
                let text = message.strip_prefix("caps error: ").unwrap_or(&message);
                Error::Capabilities {
                    set,
                    source: text.into(),
                }
            }
            Wire::SeccompInstall(e) => Error::Seccomp(SeccompError::Install(e.error())),
            Wire::SeccompThreadSync(t) => Error::Seccomp(SeccompError::ThreadSync(t)),
            Wire::Invalid(s) => Error::Invalid(s),
            Wire::Setup(s) => Error::Setup(s),
            Wire::Reported { code, message } => Error::Reported { code, message },
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind renders as lb printed it before errors were values, and comes back from
    /// the report pipe the same (text, code, errno, path).
    #[test]
    fn messages_codes_and_the_pipe() {
        let cases: Vec<(Error, &str, i32)> = vec![
            (
                Error::sys("pivot_root", Errno::EINVAL),
                "pivot_root: EINVAL: Invalid argument",
                125,
            ),
            (
                Error::io("open /x", io::Error::from_raw_os_error(libc::ENOENT)).with_path("/x"),
                "open /x: No such file or directory (os error 2)",
                125,
            ),
            (
                Error::NotInPath {
                    name: "nope".into(),
                },
                "exec: \"nope\": executable file not found in $PATH",
                127,
            ),
            (
                Error::Stat {
                    name: "/nope".into(),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                },
                "exec: \"/nope\": stat /nope: no such file or directory",
                127,
            ),
            (
                Error::Exec {
                    name: "/etc".into(),
                    path: "/etc".into(),
                    errno: Errno::EACCES,
                },
                "exec: \"/etc\": permission denied",
                126,
            ),
            (
                Error::Exec {
                    name: "/s".into(),
                    path: "/s".into(),
                    errno: Errno::ENOENT,
                },
                "exec: \"/s\": no such file or directory",
                127,
            ),
            (
                Error::Rlimit {
                    name: "nofile".into(),
                    soft: 10,
                    hard: 20,
                    max: 5,
                    source: io::Error::from_raw_os_error(libc::EPERM),
                },
                "ulimit nofile=10:20: cannot be set (Operation not permitted (os error 1)); the hard limit here is 5 and cannot be raised",
                125,
            ),
            (
                Error::setup("lb, which started this container, is gone"),
                "lb, which started this container, is gone",
                125,
            ),
            (
                Error::Seccomp(SeccompError::Install(io::Error::from_raw_os_error(
                    libc::EPERM,
                ))),
                "seccomp: installing the filter: Operation not permitted (os error 1)",
                125,
            ),
            (
                Error::Capabilities {
                    set: caps::CapSet::Permitted,
                    source: "boom".into(),
                },
                "set Permitted capabilities: caps error: boom",
                125,
            ),
            (
                Error::CgroupMount {
                    dest: "/sys/fs/cgroup".into(),
                    source: CgroupError::NotMounted,
                },
                "mount no usable cgroup hierarchy is mounted (/proc/self/mountinfo shows neither cgroup2 nor a v1 memory, pids, cpu or freezer hierarchy) on /sys/fs/cgroup",
                125,
            ),
            (
                Error::User(UserError::NoSuchUser("app".into())),
                "unable to find user app: no matching entries in passwd file",
                125,
            ),
            (
                Error::Seccomp(SeccompError::ThreadSync(3)),
                "seccomp: installing the filter: thread 3 could not take it",
                125,
            ),
        ];
        for (e, text, code) in cases {
            assert_eq!((e.to_string().as_str(), e.code()), (text, code));
            let back = Error::decode(&e.encode());
            assert_eq!((back.to_string().as_str(), back.code()), (text, code));
            if let Error::Reported { .. } = back {
                assert!(matches!(e, Error::CgroupMount { .. }), "{text}");
                continue;
            }
            assert_eq!(back.errno(), e.errno(), "{text}");
            assert_eq!(back.path(), e.path(), "{text}");
        }
        let e = Error::decode(b"garbage");
        assert_eq!(
            (e.to_string().as_str(), e.code()),
            ("container setup failed: garbage", 125)
        );
    }
}
