//! How a container's record becomes the runtime's `Launch`: `run`, `start` and the monitor
//! all start a container from its record, never from options again.

use super::Container;
use crate::Result;

impl Container<'_> {
    /// The runtime's description of this container's start, its process given `stdio`.
    pub fn launch(&self, stdio: lb_runtime::Stdio) -> Result<lb_runtime::Launch> {
        let config = &self.record.config;
        Ok(lb_runtime::Launch {
            id: self.record.id.clone(),
            spec: config.spec.clone(),
            layers: crate::rootfs::rootfs(self.store, &self.record, &self.dir)?,
            rootfs: self.dir.join("rootfs"),
            user: config.user.clone(),
            seccomp: config.seccomp,
            init: config.init,
            // A container outlives a killed lb, as docker's outlives a killed client: it
            // has a record, and `lb ps`/`stop`/`rm` reach it.
            die_with_caller: false,
            stdio,
        })
    }
}
