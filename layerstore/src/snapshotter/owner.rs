//! Which process made an active snapshot or a view: recorded with it, so that a prune or
//! a check tells one still in use (a RUN step's tree, a view an export reads) from one a
//! killed process left. A process is its pid, its start time (a pid is reused, a pid and
//! the time it started are not) and the boot it ran in.
//!
//! It knows processes only as `/proc` shows them; nothing of snapshots.

use serde::{Deserialize, Serialize};

/// A process, as recorded in a snapshot's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub pid: u32,
    /// Clock ticks after boot that it started (`/proc/PID/stat`, field 22).
    pub start: u64,
    pub boot: String,
}

impl Owner {
    /// This process (`None` where `/proc` does not say when it started).
    pub fn current() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner {
            pid,
            start: start_time(pid)?,
            boot: crate::unsynced::boot_id().to_string(),
        })
    }

    /// Whether the process is still running (a zombie has ended).
    pub fn alive(&self) -> bool {
        self.boot == crate::unsynced::boot_id() && start_time(self.pid) == Some(self.start)
    }
}

/// When `pid` started, `None` when no such process runs. (The runtime crate has its own
/// reading of this field; the store depends on no runtime.)
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_ended_one_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.alive());
        let other_boot = Owner {
            boot: "another".into(),
            ..me.clone()
        };
        assert!(!other_boot.alive());
        let restarted = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!restarted.alive());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let ended = Owner {
            pid,
            start: me.start,
            boot: me.boot.clone(),
        };
        assert!(!ended.alive());
    }
}
