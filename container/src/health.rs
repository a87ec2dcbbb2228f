//! Healthchecks, run by a detached container's monitor as docker's daemon runs them: the
//! image's `HEALTHCHECK` or `run`'s `--health-*` options; a probe (the test command,
//! exec'd in the container) every interval, each with its timeout; `starting` until the
//! first success (failures in the start period do not count), `healthy`, and `unhealthy`
//! after `retries` failures in a row. The last 5 results are kept, as docker keeps them,
//! in the container's `health.json` (written by the monitor alone, atomically).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ops::now;

/// docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept, and the bytes of output kept of each (docker's).
const KEPT: usize = 5;
const MAX_OUTPUT: usize = 4096;
const FILE: &str = "health.json";

/// A healthcheck as the image config and docker's inspect give it (`Config.Healthcheck`):
/// durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["CMD-SHELL", "cmd"]`, `["CMD", arg...]`, or `["NONE"]`.
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: i64,
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub start_period: i64,
    #[serde(default)]
    pub start_interval: i64,
    #[serde(default)]
    pub retries: u32,
}

/// `run`'s `--health-*` options, on top of the image's healthcheck.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd` (run by `/bin/sh -c`).
    pub cmd: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
    /// `--no-healthcheck`.
    pub disable: bool,
}

fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

fn duration(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

impl HealthConfig {
    /// The healthcheck a container gets: the image's with the options over it; none when
    /// neither has one, the options disable it, or the test is `NONE`.
    pub fn of(image: Option<HealthConfig>, opts: &HealthOptions) -> Option<HealthConfig> {
        if opts.disable {
            return None;
        }
        let mut h = image.unwrap_or_default();
        if let Some(cmd) = &opts.cmd {
            h.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        if let Some(d) = opts.interval {
            h.interval = nanos(d);
        }
        if let Some(d) = opts.timeout {
            h.timeout = nanos(d);
        }
        if let Some(d) = opts.start_period {
            h.start_period = nanos(d);
        }
        if let Some(d) = opts.start_interval {
            h.start_interval = nanos(d);
        }
        if let Some(r) = opts.retries {
            h.retries = r;
        }
        match h.test.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL") if h.test.len() > 1 => Some(h),
            _ => None,
        }
    }

    /// The command a probe runs.
    pub fn command(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            _ => self.test[1..].to_vec(),
        }
    }
}

/// `State.Health`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

impl Health {
    /// The container's health as its monitor last wrote it.
    pub fn load(dir: &Path) -> Option<Health> {
        std::fs::read(dir.join(FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn save(&self, dir: &Path) {
        let tmp = dir.join(".health.json.tmp");
        let bytes = serde_json::to_vec(self).expect("health as JSON");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(FILE));
        }
    }

    /// One probe's result, as docker counts it.
    fn record(&mut self, result: HealthResult, retries: u32, in_start_period: bool) {
        if result.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(result);
        if self.log.len() > KEPT {
            self.log.remove(0);
        }
    }
}

/// Probes the container while `running` holds, writing `health.json` in `dir` after each
/// probe. `probe` runs the test command and returns its exit code and output, or none when
/// it could not be run.
pub fn watch(
    config: &HealthConfig,
    dir: &Path,
    running: Arc<AtomicBool>,
    probe: impl Fn(&[String], Duration) -> (i32, String),
    settle: impl Fn(),
) {
    let retries = if config.retries > 0 {
        config.retries
    } else {
        DEFAULT_RETRIES
    };
    let interval = duration(config.interval, DEFAULT_INTERVAL);
    let timeout = duration(config.timeout, DEFAULT_TIMEOUT);
    let start_period = duration(config.start_period, Duration::ZERO);
    let start_interval = duration(config.start_interval, DEFAULT_START_INTERVAL);
    let started = Instant::now();
    let mut health = Health {
        status: "starting".into(),
        ..Health::default()
    };
    health.save(dir);
    let command = config.command();
    loop {
        let in_start_period = started.elapsed() < start_period;
        let wait = if in_start_period && health.status == "starting" {
            start_interval.min(interval)
        } else {
            interval
        };
        let end = Instant::now() + wait;
        while Instant::now() < end {
            if !running.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(wait));
        }
        if !running.load(Ordering::Relaxed) {
            return;
        }
        let start = now();
        let (exit_code, output) = probe(&command, timeout);
        let result = HealthResult {
            start,
            end: now(),
            exit_code,
            output,
        };
        health.record(result, retries, started.elapsed() < start_period);
        if running.load(Ordering::Relaxed) {
            health.save(dir);
        }
        // A round done: the caller lets go of what it brought in (the monitor's memory).
        settle();
    }
}

/// Reads at most docker's 4 KiB of a probe's output.
pub fn read_output(mut from: impl Read) -> String {
    let mut out = Vec::new();
    let _ = from.by_ref().take(MAX_OUTPUT as u64).read_to_end(&mut out);
    // The rest is drained so the probe never blocks on a full pipe.
    let _ = std::io::copy(&mut from, &mut std::io::sink());
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_override_the_image_and_none_disables() {
        let image = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            retries: 5,
            ..HealthConfig::default()
        };
        let opts = HealthOptions {
            cmd: Some("wget -q localhost".into()),
            interval: Some(Duration::from_secs(2)),
            ..HealthOptions::default()
        };
        let h = HealthConfig::of(Some(image.clone()), &opts).unwrap();
        assert_eq!(h.command(), ["/bin/sh", "-c", "wget -q localhost"]);
        assert_eq!((h.interval, h.retries), (2_000_000_000, 5));
        let disabled = HealthOptions {
            disable: true,
            ..HealthOptions::default()
        };
        assert!(HealthConfig::of(Some(image), &disabled).is_none());
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        };
        assert!(HealthConfig::of(Some(none), &HealthOptions::default()).is_none());
    }

    #[test]
    fn streaks_and_the_log_follow_docker() {
        let r = |code| HealthResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        };
        let mut h = Health {
            status: "starting".into(),
            ..Health::default()
        };
        h.record(r(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(r(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(r(1), 2, false);
        assert_eq!(h.status, "unhealthy");
        h.record(r(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(r(0), 2, false);
        }
        assert_eq!(h.log.len(), KEPT);
    }
}
