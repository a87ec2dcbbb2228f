//! `stop`: the image's STOPSIGNAL (else SIGTERM), then SIGKILL after `timeout`, as docker
//! stops a container. A container that is not running is left as it is.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Container, parse_signal, signal, wait_exited};
use crate::Result;

impl Container<'_> {
    pub fn stop(&self, timeout: Duration) -> Result<()> {
        let st = self.state();
        if !st.running() {
            return Ok(());
        }
        self.thaw_if_paused()?;
        let stop_signal = self.record.config.stop_signal.as_str();
        let sig = if stop_signal.is_empty() {
            Signal::SIGTERM
        } else {
            parse_signal(stop_signal)?
        };
        // A process that ended meanwhile is stopped: its monitor records it.
        if signal(&st, sig)? && wait_exited(&self.dir, Some(timeout)).running() {
            signal(&st, Signal::SIGKILL)?;
        }
        wait_exited(&self.dir, None);
        Ok(())
    }
}
