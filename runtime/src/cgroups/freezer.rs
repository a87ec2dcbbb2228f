//! Pausing a container (`lb pause`/`unpause`): every process of its cgroup frozen, with
//! the v1 freezer's `freezer.state` or v2's `cgroup.freeze`, as runc and docker do.

use super::*;

impl Cgroup {
    /// The directory that freezes it: v2's own, or v1's freezer hierarchy's.
    fn freezer(&self) -> Result<(PathBuf, bool)> {
        match &self.layout {
            Layout::V2(dir) if dir.join("cgroup.freeze").exists() => Ok((dir.clone(), true)),
            Layout::V1(dirs) => dirs
                .iter()
                .find(|d| d.has("freezer") && d.path.join("freezer.state").exists())
                .map(|d| (d.path.clone(), false))
                .ok_or(CgroupError::NoFreezer),
            Layout::V2(_) => Err(CgroupError::NoFreezer),
        }
    }

    /// Freezes every process in it; returns once they are frozen (or after a second, as
    /// the kill path waits: a task in uninterruptible sleep freezes when it wakes).
    pub fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            (dir, true) => {
                write_file(&dir.join("cgroup.freeze"), "1")?;
                let events = dir.join("cgroup.events");
                kill::wait_for(Duration::from_secs(1), || {
                    fs::read_to_string(&events)
                        .ok()
                        .and_then(|t| keyed_value(&t, "frozen"))
                        == Some(1)
                });
                Ok(())
            }
            (dir, false) => kill::freeze_v1(&dir),
        }
    }

    /// Lets its processes run again.
    pub fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            (dir, true) => write_file(&dir.join("cgroup.freeze"), "0"),
            (dir, false) => write_file(&dir.join("freezer.state"), "THAWED"),
        }
    }

    /// Whether it is frozen (or freezing).
    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Ok((dir, true)) => {
                read_string(&dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
            }
            Ok((dir, false)) => read_string(&dir.join("freezer.state"))
                .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING")),
            Err(_) => false,
        }
    }
}
