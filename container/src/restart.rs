//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), carried out by
//! a detached container's monitor as docker's restart manager does: after an exit the
//! policy decides, the monitor waits a back-off (100 ms, doubling, at most a minute, back
//! to 100 ms after a run of 10 s or more) and starts the container again. A stop the
//! user asked for (`stop`, `kill`, `rm -f`: a `stop-requested` file in the container's
//! directory, which every start removes) is never undone by the policy.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// docker's `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub name: RestartName,
    /// on-failure's limit (0: none).
    #[serde(default)]
    pub maximum_retry_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartName {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartName {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartName::No => "no",
            RestartName::Always => "always",
            RestartName::UnlessStopped => "unless-stopped",
            RestartName::OnFailure => "on-failure",
        }
    }
}

impl RestartPolicy {
    /// `--restart`'s value, refused as docker refuses it.
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let name = match name {
            "" | "no" => RestartName::No,
            "always" => RestartName::Always,
            "unless-stopped" => RestartName::UnlessStopped,
            "on-failure" => RestartName::OnFailure,
            _ => {
                return Err(Error::InvalidOption(format!(
                    "invalid restart policy '{name}'"
                )));
            }
        };
        let maximum_retry_count = match count {
            None => 0,
            Some(_) if name != RestartName::OnFailure => {
                return Err(Error::InvalidOption(format!(
                    "maximum retry count cannot be used with restart policy '{}'",
                    name.as_str()
                )));
            }
            Some(c) => c.parse().map_err(|_| {
                Error::InvalidOption(format!("maximum retry count must be an integer: {c}"))
            })?,
        };
        Ok(RestartPolicy {
            name,
            maximum_retry_count,
        })
    }

    /// Whether a container that exited with `code`, restarted `count` times so far, is
    /// started again (never after a stop the user asked for).
    pub fn should_restart(&self, code: i32, count: u32, stop_requested: bool) -> bool {
        if stop_requested {
            return false;
        }
        match self.name {
            RestartName::No => false,
            RestartName::Always | RestartName::UnlessStopped => true,
            RestartName::OnFailure => {
                code != 0 && (self.maximum_retry_count == 0 || count < self.maximum_retry_count)
            }
        }
    }
}

/// docker's back-off between restarts.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    /// The wait before the next start, after a run that lasted `ran`.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= Duration::from_secs(10) {
            self.next = Duration::from_millis(100);
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(60));
        wait
    }
}

const STOP_REQUESTED: &str = "stop-requested";

/// Records that the user stopped the container in `dir` (before it is signalled).
pub fn request_stop(dir: &Path) -> Result<()> {
    let f = dir.join(STOP_REQUESTED);
    std::fs::write(&f, b"").map_err(|source| Error::Io { path: f, source })
}

pub fn stop_requested(dir: &Path) -> bool {
    dir.join(STOP_REQUESTED).exists()
}

/// A start clears the request.
pub fn clear_stop_request(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(STOP_REQUESTED));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_as_docker_takes_them() {
        let p = RestartPolicy::parse("on-failure:3").unwrap();
        assert_eq!((p.name, p.maximum_retry_count), (RestartName::OnFailure, 3));
        assert_eq!(
            RestartPolicy::parse("always").unwrap().name,
            RestartName::Always
        );
        assert_eq!(
            RestartPolicy::parse("no").unwrap(),
            RestartPolicy::default()
        );
        assert_eq!(
            RestartPolicy::parse("always:3").unwrap_err().to_string(),
            "maximum retry count cannot be used with restart policy 'always'"
        );
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn decisions_and_backoff_follow_dockers_restart_manager() {
        let always = RestartPolicy::parse("always").unwrap();
        assert!(always.should_restart(0, 100, false));
        assert!(!always.should_restart(1, 0, true));
        let twice = RestartPolicy::parse("on-failure:2").unwrap();
        assert!(twice.should_restart(1, 0, false) && twice.should_restart(1, 1, false));
        assert!(!twice.should_restart(1, 2, false));
        assert!(!twice.should_restart(0, 0, false));
        let mut b = Backoff::default();
        let short = Duration::from_millis(5);
        let waits: Vec<u128> = (0..4).map(|_| b.after(short).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800]);
        assert_eq!(b.after(Duration::from_secs(11)).as_millis(), 100);
        for _ in 0..20 {
            b.after(short);
        }
        assert_eq!(b.after(short), Duration::from_secs(60));
    }
}
