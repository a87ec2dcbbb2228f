//! A container's run state (`state.json` in a directory the caller chooses): created,
//! running with which pid, or exited with which code. The pid is recorded with its start
//! time, so a pid the kernel has since reused is never mistaken for the container, and a
//! container whose processes died unseen (its monitor killed) reads as exited.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// The container's first process, while running.
    pub pid: i32,
    /// Its start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub pid_start: u64,
    /// The process that waits for it and records its end (lb itself, or a detached monitor).
    pub monitor: i32,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// RFC 3339, empty when not yet.
    pub started_at: String,
    pub finished_at: String,
    /// Frozen by `lb pause` (its processes exist, none runs).
    #[serde(default)]
    pub paused: bool,
    /// Exited, and its restart policy will start it again (docker's "restarting").
    #[serde(default)]
    pub restarting: bool,
    /// How many times its restart policy started it again.
    #[serde(default)]
    pub restart_count: u32,
}

impl Default for State {
    fn default() -> State {
        State {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            monitor: 0,
            exit_code: 0,
            oom_killed: false,
            started_at: String::new(),
            finished_at: String::new(),
            paused: false,
            restarting: false,
            restart_count: 0,
        }
    }
}

/// The start time of `pid`, if it is alive (not a zombie).
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    // A zombie has ended: nobody (its monitor lost) may be left to reap it.
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl State {
    /// Reads `dir/state.json` (a missing file is a container never started) and checks a
    /// running container's pid is still the container.
    pub fn load(dir: &Path) -> State {
        let mut s: State = std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // The container's end is the monitor's to record; only when both are gone is it
        // lost.
        if s.status == Status::Running
            && pid_start_time(s.pid) != Some(s.pid_start)
            && (s.monitor <= 0 || pid_start_time(s.monitor).is_none())
        {
            // Died without its monitor recording it: docker reports such a container as
            // exited; the code is lost, say so with 255 rather than claim success.
            s.status = Status::Exited;
            s.exit_code = 255;
        }
        s
    }

    /// Writes `dir/state.json` atomically (temporary file, rename), and with `durable`
    /// fsynced first (a container that outlives a crash; not one removed at its exit).
    pub fn save(&self, dir: &Path, durable: bool) -> std::io::Result<()> {
        // A name of this process's own: the monitor and a `pause` may save at once.
        let tmp = dir.join(format!(".state.json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec(self).expect("serialisable state");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            if durable {
                f.sync_all()?;
            }
        }
        std::fs::rename(&tmp, dir.join("state.json"))
    }

    pub fn running(&self) -> bool {
        self.status == Status::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pid_reads_as_exited_and_own_pid_as_running() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).status, Status::Created);
        let me = std::process::id() as i32;
        let mut s = State {
            status: Status::Running,
            pid: me,
            pid_start: pid_start_time(me).unwrap(),
            ..State::default()
        };
        s.save(dir.path(), true).unwrap();
        assert!(State::load(dir.path()).running());
        s.pid_start += 1; // another process that got the same pid
        s.save(dir.path(), true).unwrap();
        let l = State::load(dir.path());
        assert_eq!((l.status, l.exit_code), (Status::Exited, 255));
    }
}
