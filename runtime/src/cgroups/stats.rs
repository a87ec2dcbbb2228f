//! What a container's cgroup has used, as `docker stats` shows it: CPU time, memory in
//! use (without the inactive page cache, as docker's CLI counts it) and its limit, block
//! I/O bytes read and written, the number of processes. Read from the v1 controllers'
//! files or the v2 directory's; a file a host does not have reads as nothing used.

use super::*;

/// One reading of a cgroup's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of all its processes, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, less the inactive file cache.
    pub memory: u64,
    /// Its memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
    pub io_read: u64,
    pub io_write: u64,
    pub pids: u64,
}

/// A v1 memory limit at or above this is "unlimited" (the kernel's page-rounded
/// `LLONG_MAX`).
const V1_UNLIMITED: u64 = 1 << 62;

impl Cgroup {
    /// Its counters now.
    pub fn stats(&self) -> CgroupStats {
        let num = |p: PathBuf| read_u64(&p).ok();
        let text = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
        match &self.layout {
            Layout::V2(dir) => {
                let memory = num(dir.join("memory.current")).unwrap_or(0);
                let inactive =
                    keyed_value(&text(dir.join("memory.stat")), "inactive_file").unwrap_or(0);
                let (io_read, io_write) = v2_io(&text(dir.join("io.stat")));
                CgroupStats {
                    cpu_ns: keyed_value(&text(dir.join("cpu.stat")), "usage_usec")
                        .unwrap_or(0)
                        .saturating_mul(1000),
                    memory: memory.saturating_sub(inactive),
                    memory_limit: num(dir.join("memory.max")),
                    io_read,
                    io_write,
                    pids: num(dir.join("pids.current")).unwrap_or(0),
                }
            }
            Layout::V1(_) => {
                let at =
                    |controller: &str, file: &str| self.v1_dir(controller).map(|d| d.join(file));
                let memory = at("memory", "memory.usage_in_bytes")
                    .and_then(num)
                    .unwrap_or(0);
                let inactive = at("memory", "memory.stat")
                    .map(text)
                    .and_then(|t: String| keyed_value(&t, "total_inactive_file"))
                    .unwrap_or(0);
                let (io_read, io_write) = at("blkio", "blkio.throttle.io_service_bytes")
                    .map(|p| v1_io(&text(p)))
                    .unwrap_or_default();
                CgroupStats {
                    cpu_ns: at("cpuacct", "cpuacct.usage").and_then(num).unwrap_or(0),
                    memory: memory.saturating_sub(inactive),
                    memory_limit: at("memory", "memory.limit_in_bytes")
                        .and_then(num)
                        .filter(|l| *l < V1_UNLIMITED),
                    io_read,
                    io_write,
                    pids: at("pids", "pids.current").and_then(num).unwrap_or(0),
                }
            }
        }
    }
}

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N ...` per device, summed.
fn v2_io(text: &str) -> (u64, u64) {
    let mut sum = (0, 0);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            sum.0 += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            sum.1 += v.parse::<u64>().unwrap_or(0);
        }
    }
    sum
}

/// v1 `blkio.throttle.io_service_bytes`: `MAJ:MIN Read N` lines per device, summed.
fn v1_io(text: &str) -> (u64, u64) {
    let mut sum = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            let n = n.parse::<u64>().unwrap_or(0);
            match op {
                "Read" => sum.0 += n,
                "Write" => sum.1 += n,
                _ => {}
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_counters_sum_over_devices() {
        assert_eq!(
            super::v2_io("8:0 rbytes=10 wbytes=4 rios=1\n253:0 rbytes=5 wbytes=0\n"),
            (15, 4)
        );
        assert_eq!(
            super::v1_io("8:0 Read 10\n8:0 Write 4\n8:0 Total 14\n7:1 Read 5\nTotal 19\n"),
            (15, 4)
        );
    }
}
