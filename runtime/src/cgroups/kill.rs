//! Emptying and removing a cgroup: freezing it so that no child escapes, SIGKILL to every
//! process, and rmdir retried while killed tasks leave. Apart because this is the part
//! that waits on the kernel, with its own timeouts and retries.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

/// How long remove retries an rmdir the kernel answers with EBUSY (tasks still leaving).
// Killed tasks leave a cgroup when the kernel has torn them down; on a loaded machine
// (a CI runner building beside the tests) that took over 2 s, and a container's exit code
// was lost with the failed removal.
const RMDIR_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn kill_v2(dir: &Path, cg: &Cgroup) -> Result<()> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        // One write kills the whole subtree, forks in flight included (Linux 5.14+).
        return write_file(&kill_file, "1");
    }
    let freeze = dir.join("cgroup.freeze");
    let can_freeze = freeze.exists();
    if can_freeze {
        write_file(&freeze, "1")?;
        let events = dir.join("cgroup.events");
        wait_for(Duration::from_secs(1), || {
            fs::read_to_string(&events)
                .ok()
                .and_then(|t| keyed_value(&t, "frozen"))
                == Some(1)
        });
    }
    let result = signal_all(cg);
    if can_freeze {
        write_file(&freeze, "0")?;
    }
    result
}

pub(super) fn kill_v1(freezer: Option<&Path>, cg: &Cgroup) -> Result<()> {
    // Frozen, nothing in the cgroup can fork between reading cgroup.procs and the kills,
    // so no child escapes the sweep; without a freezer the outer loop catches stragglers.
    if let Some(dir) = freezer {
        freeze_v1(dir)?;
    }
    let result = signal_all(cg);
    if let Some(dir) = freezer {
        // SIGKILL is only acted on once the tasks run again.
        write_file(&dir.join("freezer.state"), "THAWED")?;
    }
    result
}

/// Freezes a v1 freezer cgroup, best effort: a cgroup stuck in FREEZING after a second
/// (tasks in uninterruptible sleep) is killed anyway.
pub(super) fn freeze_v1(dir: &Path) -> Result<()> {
    let state = dir.join("freezer.state");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        // Old kernels need FROZEN written again while the state reads FREEZING.
        write_file(&state, "FROZEN")?;
        let now = read_string(&state)?;
        if now.trim() == "FROZEN" || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal_all(cg: &Cgroup) -> Result<()> {
    for pid in cg.procs()? {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => return Err(CgroupError::Kill { pid, source }),
        }
    }
    Ok(())
}

pub(super) fn rmdir_retrying(dir: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if is_gone(&e) => return Ok(()),
            // Tasks that were just killed can hold the cgroup for a moment.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

pub(super) fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
