//! The limits a spec asks for, written to v1 or v2 controller files.

use super::*;

/// The limits of a `LinuxResources` that this module applies, normalised: `None` is "not
/// asked", `-1` is "unlimited", any other value is a limit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) memory: Option<i64>,
    /// memory + swap, as in the OCI spec and cgroup v1's memsw.
    pub(super) swap: Option<i64>,
    pub(super) cpu_quota: Option<i64>,
    pub(super) cpu_period: Option<u64>,
    pub(super) pids: Option<i64>,
    /// Device access rules in cgroup v1's syntax ("a", "c 1:3 rwm"), with whether each
    /// allows (true) or denies, in order.
    pub(super) devices: Vec<(bool, String)>,
}

impl Limits {
    pub(super) fn from_resources(res: Option<&LinuxResources>) -> Result<Limits> {
        let mut l = Limits::default();
        let Some(res) = res else { return Ok(l) };
        // 0 means "not set" throughout the OCI spec (runc reads it so); -1 is unlimited.
        let limit_or_unlimited = |what, v: Option<i64>| match v {
            None | Some(0) => Ok(None),
            Some(v) if v > 0 || v == -1 => Ok(Some(v)),
            Some(value) => Err(CgroupError::InvalidLimit {
                what,
                value,
                reason: "want a positive number or -1 (unlimited)",
            }),
        };
        if let Some(m) = res.memory() {
            l.memory = limit_or_unlimited("memory", m.limit())?;
            l.swap = limit_or_unlimited("memory+swap", m.swap())?;
            if let Some(swap) = l.swap.filter(|s| *s > 0) {
                // docker's own checks: swap is memory+swap, so it needs a memory limit and
                // cannot be below it.
                match l.memory {
                    Some(mem) if mem > 0 && swap < mem => {
                        return Err(CgroupError::InvalidLimit {
                            what: "memory+swap",
                            value: swap,
                            reason: "smaller than the memory limit",
                        });
                    }
                    Some(mem) if mem > 0 => {}
                    _ => {
                        return Err(CgroupError::InvalidLimit {
                            what: "memory+swap",
                            value: swap,
                            reason: "needs a memory limit too",
                        });
                    }
                }
            }
        }
        if let Some(cpu) = res.cpu() {
            l.cpu_quota = limit_or_unlimited("cpu quota", cpu.quota())?;
            l.cpu_period = cpu.period().filter(|p| *p > 0);
        }
        for d in res.devices().as_deref().unwrap_or(&[]) {
            use oci_spec::runtime::LinuxDeviceType as T;
            let typ = match d.typ().unwrap_or(T::A) {
                T::A => "a",
                T::B => "b",
                T::C | T::U => "c",
                T::P => "p",
            };
            let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
            let rule = if typ == "a" && d.major().is_none() && d.minor().is_none() {
                "a".to_string()
            } else {
                format!(
                    "{typ} {}:{} {}",
                    num(d.major()),
                    num(d.minor()),
                    d.access().as_deref().unwrap_or("rwm")
                )
            };
            l.devices.push((d.allow(), rule));
        }
        if let Some(p) = res.pids() {
            // The OCI spec makes any value <= 0 "no limit" (0 is the serde default).
            l.pids = match p.limit() {
                0 => None,
                n if n < 0 => Some(-1),
                n => Some(n),
            };
        }
        Ok(l)
    }

    /// The controllers these limits cannot do without; "unlimited" needs none.
    pub(super) fn needed(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.memory.is_some_and(|m| m > 0) || self.swap.is_some_and(|s| s > 0) {
            v.push("memory");
        }
        if self.cpu_quota.is_some_and(|q| q > 0) || self.cpu_period.is_some() {
            v.push("cpu");
        }
        if self.pids.is_some_and(|p| p > 0) {
            v.push("pids");
        }
        v
    }

    /// The limit a controller enforces, for error messages.
    pub(super) fn what(controller: &str) -> &'static str {
        match controller {
            "memory" => "memory",
            "cpu" => "cpu quota",
            "pids" => "pids",
            _ => "cgroup",
        }
    }
}

/// "max" (or -1 on v1, which both accept for pids) for unlimited, else the number.
pub(super) fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

pub(super) fn apply_v1_memory(dir: &Path, mem: i64, swap: Option<i64>) -> Result<()> {
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let limit = dir.join("memory.limit_in_bytes");
    let swap_accounting = memsw.exists();
    let swap = match swap {
        Some(-1) => swap_accounting.then_some(-1),
        Some(s) if !swap_accounting => {
            return Err(CgroupError::ControllerMissing {
                controller: "memory swap accounting".into(),
                limit: "memory+swap",
                detail: format!(" (no {}; swap limit {s} asked)", memsw.display()),
            });
        }
        Some(s) => Some(s),
        // docker's default for --memory without --memory-swap: as much swap as memory,
        // when the kernel accounts swap at all.
        None if swap_accounting => Some(if mem < 0 { -1 } else { mem.saturating_mul(2) }),
        None => None,
    };
    let Some(swap) = swap else {
        return write_file(&limit, &mem.to_string());
    };
    // The kernel keeps memsw >= memory at every step, so the order of the two writes
    // depends on whether the limits grow or shrink (a reused cgroup may have either).
    let current = read_u64(&limit)?;
    if swap < 0 || current < swap as u64 {
        write_file(&memsw, &swap.to_string())?;
        write_file(&limit, &mem.to_string())
    } else {
        write_file(&limit, &mem.to_string())?;
        write_file(&memsw, &swap.to_string())
    }
}

pub(super) fn apply_v2_memory(dir: &Path, mem: i64, swap: Option<i64>) -> Result<()> {
    let max = dir.join("memory.max");
    let swap_max = dir.join("memory.swap.max");
    let swap_accounting = swap_max.exists();
    // v2 limits swap alone, not memory+swap: swap.max = (memory+swap) - memory.
    let swap_value = match swap {
        Some(-1) => swap_accounting.then(|| "max".to_string()),
        Some(s) if !swap_accounting => {
            return Err(CgroupError::ControllerMissing {
                controller: "memory swap accounting".into(),
                limit: "memory+swap",
                detail: format!(" (no {}; swap limit {s} asked)", swap_max.display()),
            });
        }
        Some(s) => Some((s - mem).to_string()),
        None if swap_accounting => Some(if mem < 0 {
            "max".to_string()
        } else {
            mem.to_string()
        }),
        None => None,
    };
    if !max.exists() && mem < 0 {
        // Unlimited memory on a cgroup without the memory controller: nothing to do.
        return Ok(());
    }
    if let Some(v) = swap_value {
        write_file(&swap_max, &v)?;
    }
    write_file(&max, &max_or(mem))
}

/// Which hierarchy a container's cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    V1,
    V2,
}
