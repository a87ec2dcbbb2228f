//! `pause`/`unpause`: every process of a running container frozen in its cgroup (the
//! freezer), as docker's; the state records it (`paused`), and `ps`/`inspect` say so.

use super::Container;
use crate::{Error, Result, Status};

impl Container<'_> {
    /// Freezes the container; refused unless it runs (docker's messages).
    pub fn pause(&self) -> Result<()> {
        let mut st = self.state();
        Status::of(&st).can_pause(&self.record.id)?;
        let cgroup = self.cgroup()?;
        // Recorded before the freeze: a container that ends meanwhile is recorded exited
        // by its monitor after this, never running again by a save that came late.
        st.paused = true;
        self.save_state(&st)?;
        if let Err(e) = cgroup.freeze() {
            st.paused = false;
            let _ = self.save_state(&st);
            return Err(e.into());
        }
        self.event("pause", &[]);
        Ok(())
    }

    /// Lets a paused container run again.
    pub fn unpause(&self) -> Result<()> {
        let mut st = self.state();
        Status::of(&st).can_unpause(&self.record.id)?;
        let cgroup = self.cgroup()?;
        // Recorded while still frozen: nothing in it can end (and be recorded exited by
        // the monitor) before this.
        st.paused = false;
        self.save_state(&st)?;
        cgroup.thaw()?;
        self.event("unpause", &[]);
        Ok(())
    }

    /// Thaws a paused container before a stop or a SIGKILL, which a frozen process
    /// would only act on when thawed (docker unpauses for them too).
    pub(super) fn thaw_if_paused(&self) -> Result<()> {
        if self.status() == Status::Paused {
            self.unpause()?;
        }
        Ok(())
    }

    fn cgroup(&self) -> Result<lb_runtime::cgroups::Cgroup> {
        lb_runtime::cgroups::Cgroup::open(&self.record.id)?
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", self.record.id)))
    }

    fn save_state(&self, st: &lb_runtime::state::State) -> Result<()> {
        st.save(&self.dir, !self.record.auto_remove)
            .map_err(|source| Error::Io {
                path: self.dir.join("state.json"),
                source,
            })
    }
}
