//! `stop`: the image's STOPSIGNAL (else SIGTERM), then SIGKILL after `timeout`, as docker
//! stops a container. A container that is not running is left as it is.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Container, parse_signal, signal, wait_exited};
use crate::{Result, Status};

impl Container<'_> {
    pub fn stop(&self, timeout: Duration) -> Result<()> {
        let st = self.state();
        if Status::of(&st) == Status::Restarting {
            // Between two runs: the monitor sees the request and does not start it again.
            crate::restart::request_stop(&self.dir)?;
            self.wait_not_restarting();
            return Ok(());
        }
        if !st.running() {
            return Ok(());
        }
        // Asked for by the user: its restart policy does not undo it.
        crate::restart::request_stop(&self.dir)?;
        self.thaw_if_paused()?;
        let stop_signal = self.record.config.stop_signal.as_str();
        let sig = if stop_signal.is_empty() {
            Signal::SIGTERM
        } else {
            parse_signal(stop_signal)?
        };
        // A process that ended meanwhile is stopped: its monitor records it.
        self.event("kill", &[("signal", &(sig as i32).to_string())]);
        if signal(&st, sig)? && wait_exited(&self.dir, Some(timeout)).running() {
            self.event("kill", &[("signal", "9")]);
            signal(&st, Signal::SIGKILL)?;
        }
        wait_exited(&self.dir, None);
        self.event("stop", &[]);
        Ok(())
    }
}

impl Container<'_> {
    /// How long `stop` waits before SIGKILL when the caller does not say: the container's
    /// `--stop-timeout`, else docker's 10 seconds; a negative one waits for ever.
    pub fn stop_timeout(&self) -> Duration {
        match self.record.config.host.stop_timeout {
            None => Duration::from_secs(10),
            Some(s) if s < 0 => Duration::MAX,
            Some(s) => Duration::from_secs(s as u64),
        }
    }

    /// Waits (a few seconds at most) for the monitor of a restarting container to take
    /// in a stop request.
    pub(super) fn wait_not_restarting(&self) {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while self.status() == Status::Restarting && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
