//! `stats` and `top`: what a running container uses (its cgroup's counters, its network
//! namespace's bytes, beside the host's CPU time to compute a share from two readings)
//! and its processes as the host's `ps` shows them (docker runs `ps` in the daemon and
//! keeps the lines of the container's pids).

use super::Container;
use crate::{Error, Result};

pub use lb_runtime::cgroups::CgroupStats;

/// One reading of a running container, as `docker stats` computes its columns from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSample {
    pub cgroup: CgroupStats,
    /// Bytes received and sent on its network namespace's interfaces but loopback.
    pub net_rx: u64,
    pub net_tx: u64,
    /// The host's CPU time (all CPUs, nanoseconds) when it was read: the denominator of
    /// the container's share.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// The memory limit in force: the cgroup's, else the host's memory.
    pub memory_limit: u64,
}

/// `top`'s answer, docker's `ContainerTopOKBody`: `ps`'s titles and the container's lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl Container<'_> {
    /// A reading now; `None` when it does not run (docker shows zeros then).
    pub fn stats(&self) -> Result<Option<StatsSample>> {
        let st = self.state();
        if !st.running() {
            return Ok(None);
        }
        let Some(cgroup) = lb_runtime::cgroups::Cgroup::open(&self.record.id)? else {
            return Ok(None);
        };
        let counters = cgroup.stats();
        let (net_rx, net_tx) = net_bytes(st.pid);
        Ok(Some(StatsSample {
            cgroup: counters,
            net_rx,
            net_tx,
            system_cpu_ns: system_cpu_ns(),
            // SAFETY: sysconf with a valid name.
            online_cpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32,
            memory_limit: counters.memory_limit.unwrap_or_else(host_memory),
        }))
    }

    /// Its processes as `ps PS_ARGS` lists them (docker's default `-ef`); refused when it
    /// does not run, with docker's message.
    pub fn top(&self, ps_args: &[String]) -> Result<Top> {
        let not_running =
            || Error::Conflict(format!("Container {} is not running", self.record.id));
        if !self.state().running() {
            return Err(not_running());
        }
        // The container's processes: those of its cgroup in its PID namespace (its
        // monitor's thread that copies the logs is charged to its CPU cgroup, and is
        // not one of them).
        let st = self.state();
        let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let own = ns(st.pid);
        let pids: Vec<i32> = lb_runtime::cgroups::Cgroup::open(&self.record.id)?
            .ok_or_else(not_running)?
            .procs()?
            .into_iter()
            .filter(|p| own.is_some() && ns(*p) == own)
            .collect();
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::Ps(format!("Error running ps: {e}")))?;
        if !out.status.success() {
            return Err(Error::Ps(format!(
                "Error running ps: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

/// docker's `parsePSOutput`: the titles, and the lines whose PID column is one of `pids`
/// (a thread line, `-` for its PID, goes with the process line above it); the last column
/// keeps its spaces.
fn parse_ps(output: &str, pids: &[i32]) -> Result<Top> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let Some(pid_at) = titles.iter().position(|t| t == "PID") else {
        return Err(Error::Ps("Couldn't find PID field in ps output".into()));
    };
    let row = |fields: &[&str]| {
        let n = titles.len();
        let mut p: Vec<String> = fields.iter().take(n - 1).map(|f| f.to_string()).collect();
        p.push(fields.get(n - 1..).unwrap_or(&[]).join(" "));
        p
    };
    let mut processes = Vec::new();
    let mut last_was_ours = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_at) else {
            continue;
        };
        if *pid == "-" {
            if last_was_ours {
                processes.push(row(&fields));
            }
            continue;
        }
        let pid: i32 = pid
            .parse()
            .map_err(|e| Error::Ps(format!("Unexpected pid '{pid}': {e}")))?;
        last_was_ours = pids.contains(&pid);
        if last_was_ours {
            processes.push(row(&fields));
        }
    }
    Ok(Top { titles, processes })
}

/// Bytes received and sent on the interfaces of `pid`'s network namespace, loopback
/// left out.
fn net_bytes(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let mut sum = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            sum.0 += f[0];
            sum.1 += f[8];
        }
    }
    sum
}

/// The host's CPU time as docker reads it: the first seven fields of `/proc/stat`'s
/// `cpu` line, in nanoseconds.
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .map(|n| n.parse::<u64>().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks.saturating_mul(1_000_000_000) / hz
}

/// The host's memory, bytes (`MemTotal`).
fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lines_of_the_container_are_kept_with_their_threads() {
        let out = "UID PID PPID CMD\nroot 10 1 sleep 1000\nroot 11 10 -\nroot - - thread x\n\
                   root 12 1 other\nroot - - not ours\n";
        let top = parse_ps(out, &[10]).unwrap();
        assert_eq!(top.titles, ["UID", "PID", "PPID", "CMD"]);
        assert_eq!(top.processes, [vec!["root", "10", "1", "sleep 1000"],]);
        let top = parse_ps(out, &[11]).unwrap();
        assert_eq!(
            top.processes,
            [
                vec!["root", "11", "10", "-"],
                vec!["root", "-", "-", "thread x"]
            ]
        );
        assert!(parse_ps("USER CMD\nroot x\n", &[1]).is_err());
    }
}
