//! How a container's record becomes the runtime's `Launch`: `run`, `start` and the monitor
//! all start a container from its record, never from options again.

use super::Container;
use crate::Result;

impl Container<'_> {
    /// The runtime's description of this container's start, its process given `stdio`.
    pub fn launch(&self, stdio: lb_runtime::Stdio) -> Result<lb_runtime::Launch> {
        let config = &self.record.config;
        let mut spec = config.spec.clone();
        // `--device`s, looked up on the host at each start as docker does.
        let (nodes, rules) = crate::host_config::spec::devices(&config.host)?;
        if !nodes.is_empty()
            && let Some(linux) = spec.linux_mut()
        {
            let mut devices = linux.devices().clone().unwrap_or_default();
            devices.extend(nodes);
            linux.set_devices(Some(devices));
            let mut resources = linux.resources().clone().unwrap_or_default();
            let mut allowed = resources.devices().clone().unwrap_or_default();
            allowed.extend(rules);
            resources.set_devices(Some(allowed));
            linux.set_resources(Some(resources));
        }
        Ok(lb_runtime::Launch {
            id: self.record.id.clone(),
            spec,
            layers: crate::rootfs::rootfs(self.store, &self.record, &self.dir)?,
            rootfs: self.dir.join("rootfs"),
            user: config.user.clone(),
            group_add: config.host.group_add.clone(),
            seccomp: config.seccomp,
            init: config.init,
            // A container outlives a killed lb, as docker's outlives a killed client: it
            // has a record, and `lb ps`/`stop`/`rm` reach it.
            die_with_caller: false,
            stdio,
        })
    }
}
