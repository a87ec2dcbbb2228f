//! lb's containers as a library: what the CLI (`lb run`, `ps`, `stop`, …) and a future
//! Engine API server both call. It owns the container record's format (`record`: typed,
//! versioned, read back from earlier records), the states a container goes through and
//! what each allows (`state`, with docker's refusals), the rules that turn `lb run`'s
//! options into an OCI spec (`run_spec`), docker's json-file log format (`json_log`), and
//! containers on lb's networks with user networks' definitions (`network`), build steps'
//! networks from the host-wide pool (`step_network`), and a container's file system on the
//! store's storage driver (`rootfs`: snapshots and mounts).
//!
//! It must not know: the builder, registries, or clap (options arrive as plain structs,
//! errors leave as values; printing and exit codes are the caller's).

pub mod archive;
pub mod attach;
pub mod disk_usage;
mod error;
pub mod filters;
pub mod health;
pub mod host_config;
pub mod json_log;
pub mod network;
pub mod ops;
pub mod record;
pub mod restart;
pub mod rootfs;
pub mod run_spec;
pub mod state;
pub mod step_network;
pub mod volume;

pub use error::{Error, Result};
pub use ops::Container;
pub use record::{ContainerConfig, PortBinding, Record};
pub use state::Status;

/// An I/O error as Go prints it (`no such file or directory`), as docker's messages
/// carry it.
pub fn go_io_text(e: &std::io::Error) -> String {
    let t = e.to_string();
    let t = t.split(" (os error").next().unwrap_or(&t).to_string();
    let mut c = t.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => t,
    }
}

/// Go's `time.Duration.String`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`, `2µs`, `7ns`.
pub fn go_duration(ns: i64) -> String {
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    // A fraction with its trailing zeros cut: `5` of 1000 is `.005`.
    let frac = |v: u64, digits: u32| -> String {
        let f = format!("{v:0width$}", width = digits as usize);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            String::new()
        } else {
            format!(".{f}")
        }
    };
    let text = if u == 0 {
        "0s".to_string()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}{}µs", u / 1_000, frac(u % 1_000, 3))
    } else if u < 1_000_000_000 {
        format!("{}{}ms", u / 1_000_000, frac(u % 1_000_000, 6))
    } else {
        let secs = u / 1_000_000_000;
        let s = format!("{}{}s", secs % 60, frac(u % 1_000_000_000, 9));
        match (secs / 3600, secs / 60 % 60) {
            (0, 0) => s,
            (0, m) => format!("{m}m{s}"),
            (h, m) => format!("{h}h{m}m{s}"),
        }
    };
    if neg { format!("-{text}") } else { text }
}

/// A JSON file of lb's read as `T`: none when it is missing, [`Error::Corrupt`] when it
/// does not parse (a network's or a volume's definition).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(f: &std::path::Path) -> Result<Option<T>> {
    match std::fs::read(f) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: f.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: f.to_path_buf(),
            source,
        }),
    }
}
