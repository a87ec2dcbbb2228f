//! `update`: a container's limits (memory, swap, CPUs, pids) and restart policy changed
//! in its record, and in its cgroup when it runs (docker's `update`). The monitor reads
//! the policy from the record at each exit, so a new one applies to the next.

use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder};

use super::Container;
use crate::restart::{RestartName, RestartPolicy};
use crate::{ContainerConfig, Error, Result};

/// What `lb update` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<f64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub pids_limit: Option<i64>,
    pub restart: Option<String>,
}

impl Container<'_> {
    /// Applies `opts`: checked first (docker's messages), then the cgroup of a running
    /// container, then the record.
    pub fn update(&mut self, opts: &UpdateOptions) -> Result<()> {
        let mut spec = self.record.config.spec.clone();
        let linux = spec.linux_mut().get_or_insert_with(Default::default);
        let mut resources = linux.resources().clone().unwrap_or_default();
        if opts.memory.is_some() || opts.memory_swap.is_some() {
            let memory = (*resources.memory()).unwrap_or_default();
            let limit = match &opts.memory {
                Some(m) => {
                    let bytes = crate::run_spec::parse_bytes(m)
                        .map_err(|e| Error::InvalidOption(format!("--memory {m}: {e}")))?;
                    if bytes < 6 * 1024 * 1024 {
                        return Err(Error::InvalidOption(
                            "Minimum memory limit allowed is 6MB".into(),
                        ));
                    }
                    Some(bytes)
                }
                None => memory.limit(),
            };
            let swap = match opts.memory_swap.as_deref() {
                Some("-1") => Some(-1),
                Some(s) => {
                    let bytes = crate::run_spec::parse_bytes(s)
                        .map_err(|e| Error::InvalidOption(format!("--memory-swap {s}: {e}")))?;
                    if limit.is_some_and(|l| bytes < l) {
                        return Err(Error::InvalidOption(
                            "Minimum memoryswap limit should be larger than memory limit, see usage"
                                .into(),
                        ));
                    }
                    Some(bytes)
                }
                // docker keeps the swap limit a new memory limit comes without, and
                // refuses a memory limit above it (a container without limits has 0, so
                // a memory limit alone is refused there too).
                None if opts.memory.is_some() => {
                    let current = memory
                        .swap()
                        .unwrap_or_else(|| memory.limit().filter(|l| *l > 0).map_or(0, |l| l * 2));
                    if limit.is_some_and(|l| l > current) {
                        return Err(Error::Conflict(format!(
                            "Cannot update container {}: Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
                            self.record.id
                        )));
                    }
                    Some(current)
                }
                None => memory.swap(),
            };
            if limit.is_none() && swap.is_some_and(|s| s > 0) {
                return Err(Error::InvalidOption(
                    "You should always set the Memory limit when using Memoryswap limit, see usage"
                        .into(),
                ));
            }
            let memory = LinuxMemoryBuilder::default()
                .limit(limit.unwrap_or(-1))
                .swap(swap.unwrap_or(-1))
                .build()
                .expect("memory");
            resources.set_memory(Some(memory));
        }
        if opts.cpus.is_some() || opts.cpu_period.is_some() || opts.cpu_quota.is_some() {
            if opts.cpus.is_some() && (opts.cpu_period.is_some() || opts.cpu_quota.is_some()) {
                return Err(Error::InvalidOption(
                    "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
                ));
            }
            let (period, quota) = match opts.cpus {
                Some(c) if c < 0.0 => {
                    return Err(Error::InvalidOption(format!(
                        "--cpus {c}: range of CPUs is from 0.01 to the number of CPUs available"
                    )));
                }
                Some(c) if c <= 0.0 => (100_000, -1),
                Some(c) => (100_000, (c * 100_000.0) as i64),
                None => {
                    let now = resources.cpu().clone().unwrap_or_default();
                    (
                        opts.cpu_period.or(now.period()).unwrap_or(100_000),
                        opts.cpu_quota.or(now.quota()).unwrap_or(-1),
                    )
                }
            };
            resources.set_cpu(Some(
                LinuxCpuBuilder::default()
                    .period(period)
                    .quota(quota)
                    .build()
                    .expect("cpu"),
            ));
        }
        if let Some(p) = opts.pids_limit {
            // docker: 0 or less is no limit.
            let p = if p <= 0 { -1 } else { p };
            resources.set_pids(Some(
                LinuxPidsBuilder::default().limit(p).build().expect("pids"),
            ));
        }
        let restart = match &opts.restart {
            Some(r) => {
                let policy = RestartPolicy::parse(r)?;
                if self.record.auto_remove && policy.name != RestartName::No {
                    return Err(Error::Conflict(
                        "Restart policy cannot be updated because AutoRemove is enabled for the container"
                            .into(),
                    ));
                }
                Some(policy)
            }
            None => None,
        };
        if self.state().running()
            && let Some(cgroup) = lb_runtime::cgroups::Cgroup::open(&self.record.id)?
        {
            cgroup.update(&resources).map_err(|e| {
                Error::Conflict(format!("Cannot update container {}: {e}", self.record.id))
            })?;
        }
        linux.set_resources(Some(resources));
        self.record.config.spec = spec;
        if let Some(r) = restart {
            self.record.config.restart = r;
        }
        self.store
            .update_container::<ContainerConfig>(&self.record)?;
        self.event("update", &[]);
        Ok(())
    }
}
