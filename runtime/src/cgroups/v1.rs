//! cgroup v1: the hierarchies a container joins, its directory in each, and the limits
//! written there. Apart from v2 because on v1 one cgroup is several directories, each
//! with its own controllers and its own file names for the same limit.

use super::*;

/// The v1 hierarchies a container's processes join. cpuset is left out on purpose: a new
/// v1 cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses processes
/// until they are copied from the parent, and lb sets no cpuset limits.
pub(super) const V1_USED: [&str; 7] = [
    "memory", "pids", "cpu", "cpuacct", "freezer", "devices", "blkio",
];

/// The directories of the v1 hierarchies, made (or found) as `<own>/lb/<name>`.
pub(super) fn create_v1(host: &Host, name: &str, created: &mut Vec<PathBuf>) -> Result<Vec<V1Dir>> {
    let mut dirs = Vec::new();
    for h in host.v1_used() {
        let path = make_lb_child(&h.own, name, created, |_| Ok(()))?;
        dirs.push(V1Dir {
            controllers: h.controllers.clone(),
            path,
        });
    }
    Ok(dirs)
}

impl Cgroup {
    pub(super) fn v1_dir(&self, controller: &str) -> Option<&Path> {
        match &self.layout {
            Layout::V1(dirs) => dirs
                .iter()
                .find(|d| d.has(controller))
                .map(|d| d.path.as_path()),
            Layout::V2(_) => None,
        }
    }

    pub(super) fn apply_v1(&self, limits: &Limits) -> Result<()> {
        // choose() already refused limits whose controller is missing; a missing directory
        // here can only go with an "unlimited" value, which needs no writing.
        if let (Some(mem), Some(dir)) = (limits.memory, self.v1_dir("memory")) {
            apply_v1_memory(dir, mem, limits.swap)?;
        }
        if let Some(dir) = self.v1_dir("cpu") {
            // Period first: the kernel checks a quota against the period in force.
            if let Some(period) = limits.cpu_period {
                write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            }
            if let Some(quota) = limits.cpu_quota {
                write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let (Some(pids), Some(dir)) = (limits.pids, self.v1_dir("pids")) {
            write_file(&dir.join("pids.max"), &max_or(pids))?;
        }
        if let Some(dir) = self.v1_dir("devices") {
            for (allow, rule) in &limits.devices {
                let file = if *allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write_file(&dir.join(file), rule)?;
            }
        }
        Ok(())
    }
}
