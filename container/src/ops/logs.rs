//! `logs`: a container's output as its json-file log keeps it, written to the caller's two
//! streams (a terminal's stdout and stderr, or an API server's multiplexed response).

use std::io::Write;

use super::Container;
use crate::json_log::{LOG_FILE, LogConfig};
use crate::{Error, Result};

/// What `logs` shows: docker's `--follow`, `--timestamps` and `--tail`.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Keep writing what the container writes until it stops.
    pub follow: bool,
    /// Each line after its entry's RFC 3339 time.
    pub timestamps: bool,
    /// The last this many entries; all when none.
    pub tail: Option<usize>,
    /// Only entries from this time on, and up to that one (nanoseconds since the epoch;
    /// docker's `--since` and `--until`).
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Container<'_> {
    /// Writes the container's log to `stdout` and `stderr`, each entry to the stream it
    /// came from. A container run with `--log-driver none` has none: docker's refusal.
    pub fn logs(
        &self,
        opts: &LogsOptions,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<()> {
        if LogConfig::from_record(self.record.config.log_config.as_ref())? == LogConfig::None {
            return Err(Error::Conflict(
                "configured logging driver does not support reading".into(),
            ));
        }
        let running = || self.state().running();
        let shown = crate::json_log::Shown {
            tail: opts.tail,
            timestamps: opts.timestamps,
            since: opts.since,
            until: opts.until,
        };
        crate::json_log::show(
            &self.dir,
            &shown,
            opts.follow.then_some(&running as &dyn Fn() -> bool),
            stdout,
            stderr,
        )
        .map_err(|source| Error::Io {
            path: self.dir.join(LOG_FILE),
            source,
        })
    }
}
