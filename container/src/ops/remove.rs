//! `rm`: a stopped container's record, directory, cgroup and network attachment; with
//! `force`, a running one is killed first.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Container, signal, wait_exited};
use crate::{Result, Status};

impl Container<'_> {
    /// Removes the container. With `volumes` (`rm -v`), its anonymous volumes go too.
    pub fn remove(self, force: bool, volumes: bool) -> Result<()> {
        let mut st = self.state();
        Status::of(&st).can_remove(&self.record.id, force)?;
        if st.running() || Status::of(&st) == Status::Restarting {
            // No restart after this.
            crate::restart::request_stop(&self.dir)?;
            self.wait_not_restarting();
            st = self.state();
        }
        if st.running() {
            self.thaw_if_paused()?;
            // One that ended meanwhile (ESRCH) is waited for all the same.
            signal(&st, Signal::SIGKILL)?;
            wait_exited(&self.dir, Some(Duration::from_secs(10)));
        }
        // A container whose monitor died may have left its cgroup behind.
        if let Ok(Some(cg)) = lb_runtime::cgroups::Cgroup::open(&self.record.id) {
            cg.remove()?;
        }
        // Off the network whatever happens: a failed cleanup is retried by `reconcile`.
        let _ = crate::network::leave(self.store, &self.record);
        match self.store.remove_container(&self.record.id) {
            // A `--rm` container's monitor removed it meanwhile, as it ended.
            Err(_) if self.record.auto_remove && !self.dir.exists() => {}
            Err(e) => return Err(e.into()),
            Ok(()) => self.event("destroy", &[]),
        }
        if volumes {
            crate::volume::release_anonymous(self.store, &self.record);
        }
        Ok(())
    }
}
