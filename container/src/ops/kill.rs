//! `kill`: a signal to a running container's first process.

use nix::sys::signal::Signal;

use super::{Container, signal};
use crate::{Result, Status};

impl Container<'_> {
    pub fn kill(&self, sig: Signal) -> Result<()> {
        let st = self.state();
        Status::of(&st).can_kill(&self.record.id)?;
        // docker's kill is a stop the user asked for: the restart policy leaves it.
        crate::restart::request_stop(&self.dir)?;
        if Status::of(&st) == Status::Restarting {
            self.wait_not_restarting();
            return Ok(());
        }
        let sent = signal(&st, sig)?;
        self.event("kill", &[("signal", &(sig as i32).to_string())]);
        if sig == Signal::SIGKILL {
            self.thaw_if_paused()?;
        }
        if sent {
            Ok(())
        } else {
            // It ended meanwhile.
            Status::Exited.can_kill(&self.record.id)
        }
    }
}
