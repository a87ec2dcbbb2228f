//! A container's cgroup: it creates the directory `lb/<id>` below the calling process's own
//! cgroup, writes the limits docker's `--memory`, `--memory-swap`, `--cpus` and
//! `--pids-limit` become in an OCI spec (memory, swap, CPU quota and period, pids), moves
//! processes in, lists them, SIGKILLs them all and removes the directories. It works on the
//! unified hierarchy (cgroup v2) when that can hand out the controllers needed, and otherwise
//! on the legacy per-controller hierarchies (cgroup v1), one directory per hierarchy; hybrid
//! hosts, where systemd mounts the v1 controllers and an almost empty v2 tree side by side,
//! take the v1 path. A limit the host cannot enforce is an error naming the controller,
//! never dropped. It knows only a cgroup name (the container id) and an
//! `oci_spec::runtime::LinuxResources`; it must not know images, container names, state
//! files or how the container's processes were started.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

/// The directory, below a process's own cgroup, that holds one cgroup per container.
const LB_DIR: &str = "lb";

/// The controllers a container always gets on a v2 host when they can be delegated, so
/// that its memory use and OOM kills are accounted even without limits.
const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// The v1 hierarchies a container's processes join. cpuset is left out on purpose: a new
/// v1 cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses processes
/// until they are copied from the parent, and lb sets no cpuset limits.
const V1_USED: [&str; 6] = ["memory", "pids", "cpu", "cpuacct", "freezer", "devices"];

/// How long kill_all waits for the cgroup to empty before giving up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long remove retries an rmdir the kernel answers with EBUSY (tasks still leaving).
const RMDIR_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a cgroup could not be created, changed, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "invalid cgroup name {0:?}: want a container id (letters, digits, '-', '_', '.'; no '/' or '..')"
    )]
    InvalidName(String),
    #[error(
        "no usable cgroup hierarchy is mounted (/proc/self/mountinfo shows neither cgroup2 nor a v1 memory, pids, cpu or freezer hierarchy)"
    )]
    NotMounted,
    #[error(
        "cannot enforce the {limit} limit: the {controller} cgroup controller is not available on this host{detail}"
    )]
    ControllerMissing {
        controller: String,
        limit: &'static str,
        detail: String,
    },
    #[error("invalid {what} limit {value}: {reason}")]
    InvalidLimit {
        what: &'static str,
        value: i64,
        reason: &'static str,
    },
    #[error("cannot create cgroup {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup {}: {source}", .path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot send SIGKILL to pid {pid}: {source}")]
    Kill { pid: i32, source: Errno },
    #[error("pids {pids:?} still in cgroup {} after {waited:?} of SIGKILL", .path.display())]
    NotEmpty {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("refusing to kill every process in cgroup {}: the calling process (pid {pid}) is in it", .path.display())]
    CallerInside { path: PathBuf, pid: i32 },
    #[error("unexpected content {content:?} in {}", .path.display())]
    Parse { path: PathBuf, content: String },
}

type Result<T> = std::result::Result<T, CgroupError>;

/// A container's cgroup: one directory per v1 hierarchy it uses, or one v2 directory.
#[derive(Debug)]
pub struct Cgroup {
    layout: Layout,
}

#[derive(Debug)]
enum Layout {
    /// One directory per v1 hierarchy, with the controllers that hierarchy carries.
    V1(Vec<V1Dir>),
    /// The one directory in the unified hierarchy.
    V2(PathBuf),
}

#[derive(Debug)]
struct V1Dir {
    controllers: Vec<String>,
    path: PathBuf,
}

impl Cgroup {
    /// Creates (or reuses) the cgroup `lb/<name>` below the calling process's own cgroup and
    /// applies `resources` (memory.limit, memory.swap, cpu.quota/period, pids.limit; others
    /// ignored). A limit the host cannot enforce (controller missing) is an error naming the
    /// controller, never silently dropped; with no limits asked it still creates the cgroup
    /// (in the hierarchies available: at least pids/memory/cpu/freezer on v1 if present) so
    /// every process can be found and killed.
    pub fn create(name: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        validate_name(name)?;
        let limits = Limits::from_resources(resources)?;
        let needed = limits.needed();
        let host = Host::detect()?;
        let cgroup = match host.choose(&needed)? {
            Mode::V1 => {
                let mut created = Vec::new();
                let dirs = create_v1(&host, name, &mut created);
                let applied = dirs.and_then(|dirs| {
                    let cg = Cgroup {
                        layout: Layout::V1(dirs),
                    };
                    cg.apply_v1(&limits).map(|()| cg)
                });
                match applied {
                    Ok(cg) => cg,
                    Err(e) => {
                        // A half-made cgroup would only confuse a later open(); the
                        // directories this call made are empty, so rmdir suffices.
                        for dir in created.iter().rev() {
                            let _ = fs::remove_dir(dir);
                        }
                        return Err(e);
                    }
                }
            }
            Mode::V2 => {
                let v2 = host
                    .v2
                    .as_ref()
                    .expect("choose() picks v2 only when mounted");
                let (dir, fresh) = create_v2(v2, name, &needed)?;
                let cg = Cgroup {
                    layout: Layout::V2(dir.clone()),
                };
                if let Err(e) = cg.apply_v2(&limits) {
                    if fresh {
                        let _ = fs::remove_dir(&dir);
                    }
                    return Err(e);
                }
                cg
            }
        };
        Ok(cgroup)
    }

    /// The existing cgroup `lb/<name>` (from another lb process: exec, kill, rm); None if absent.
    pub fn open(name: &str) -> Result<Option<Cgroup>> {
        validate_name(name)?;
        let host = Host::detect()?;
        // Look where create() would have put it first; a host whose controllers moved
        // between hierarchies since is not worth more than a second look.
        let first = host.choose(&[]).unwrap_or(Mode::V1);
        let second = match first {
            Mode::V1 => Mode::V2,
            Mode::V2 => Mode::V1,
        };
        for mode in [first, second] {
            match mode {
                Mode::V1 => {
                    let dirs: Vec<V1Dir> = host
                        .v1_used()
                        .filter_map(|h| {
                            find_cgroup(&h.mountpoint, &h.own, name).map(|path| V1Dir {
                                controllers: h.controllers.clone(),
                                path,
                            })
                        })
                        .collect();
                    if !dirs.is_empty() {
                        return Ok(Some(Cgroup {
                            layout: Layout::V1(dirs),
                        }));
                    }
                }
                Mode::V2 => {
                    if let Some(v2) = &host.v2
                        && let Some(path) = find_cgroup(&v2.mountpoint, &v2.own, name)
                    {
                        return Ok(Some(Cgroup {
                            layout: Layout::V2(path),
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The names of the containers' cgroups below the calling process's own (`lb/*`).
    pub fn names() -> Result<Vec<String>> {
        let host = Host::detect()?;
        let own = match host.choose(&[]).unwrap_or(Mode::V1) {
            Mode::V1 => host.v1_used().next().map(|h| h.own.clone()),
            Mode::V2 => host.v2.as_ref().map(|v| v.own.clone()),
        };
        let Some(own) = own else {
            return Ok(Vec::new());
        };
        Ok(fs::read_dir(own.join(LB_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Moves `pid` into it (every hierarchy).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for dir in self.paths() {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling process, which must have one thread only (a child just forked),
    /// into it. In a v1 hierarchy it goes as that one thread, "0" written to `tasks`: moving
    /// a whole process (`cgroup.procs`) takes the kernel's global threadgroup lock, whose
    /// every first taking waits for an RCU grace period (7-15 ms here, most of a
    /// container's start); moving the current thread does not. v2 has no such way.
    pub fn add_self(&self) -> Result<()> {
        match &self.layout {
            Layout::V1(dirs) => {
                for d in dirs {
                    write_file(&d.path.join("tasks"), "0")?;
                }
                Ok(())
            }
            Layout::V2(_) => self.add_process(nix::unistd::getpid().as_raw()),
        }
    }

    /// Charges the calling thread's CPU time to this cgroup until the guard returned is
    /// dropped: in its v1 `cpu` and `cpuacct` hierarchies the thread alone moves in ("0" to
    /// `tasks`; memory stays with the process), so work done for the container (its
    /// monitor copying its output) is limited by its `--cpus` and counted as its own. The
    /// thread must be the process's main thread (it goes back to the process's cgroup) and
    /// leave before anything kills the cgroup's processes (`kill_all` would take its
    /// process for the container's). None on v2, where a thread cannot be apart from its
    /// process, or without those hierarchies.
    pub fn charge_thread_cpu(&self) -> Result<Option<CpuCharge>> {
        let Layout::V1(dirs) = &self.layout else {
            return Ok(None);
        };
        let host = Host::detect()?;
        let mut charge = CpuCharge { back: Vec::new() };
        for d in dirs
            .iter()
            .filter(|d| d.controllers.iter().any(|c| c == "cpu" || c == "cpuacct"))
        {
            let Some(h) = host.v1.iter().find(|h| h.controllers == d.controllers) else {
                continue;
            };
            // On failure the guard puts back the moves already made.
            write_file(&d.path.join("tasks"), "0")?;
            charge.back.push(h.own.join("tasks"));
        }
        Ok((!charge.back.is_empty()).then_some(charge))
    }

    /// The pids in it.
    pub fn procs(&self) -> Result<Vec<i32>> {
        let mut pids = BTreeSet::new();
        for top in self.paths() {
            // A container may make cgroups of its own below ours (nested runtimes); its
            // processes there are still the container's.
            for dir in subtree(&top) {
                let path = dir.join("cgroup.procs");
                let text = match fs::read_to_string(&path) {
                    Ok(t) => t,
                    // Gone meanwhile, or a threaded v2 cgroup that lists no processes.
                    Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                        continue;
                    }
                    Err(source) => return Err(CgroupError::Read { path, source }),
                };
                for line in text.lines().filter(|l| !l.is_empty()) {
                    let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                        path: path.clone(),
                        content: line.to_string(),
                    })?;
                    pids.insert(pid);
                }
            }
        }
        Ok(pids.into_iter().collect())
    }

    /// SIGKILLs every process in it until it is empty (cgroup.kill on v2; on v1 freeze with
    /// the freezer if available, kill, thaw; loop with a bounded wait).
    pub fn kill_all(&self) -> Result<()> {
        let start = Instant::now();
        let me = std::process::id() as i32;
        let mut pause = Duration::from_millis(1);
        loop {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            if pids.contains(&me) {
                return Err(CgroupError::CallerInside {
                    path: self.primary(),
                    pid: me,
                });
            }
            if start.elapsed() > KILL_TIMEOUT {
                return Err(CgroupError::NotEmpty {
                    path: self.primary(),
                    pids,
                    waited: start.elapsed(),
                });
            }
            match &self.layout {
                Layout::V2(dir) => kill_v2(dir, self)?,
                Layout::V1(dirs) => {
                    let freezer = dirs
                        .iter()
                        .find(|d| d.controllers.iter().any(|c| c == "freezer"))
                        .map(|d| d.path.as_path())
                        .filter(|p| p.join("freezer.state").exists());
                    kill_v1(freezer, self)?;
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// kill_all, then removes its directories (retrying rmdir on EBUSY briefly).
    pub fn remove(self) -> Result<()> {
        self.kill_all()?;
        for top in self.paths() {
            // Deepest first: a directory with subdirectories cannot be removed.
            for dir in subtree(&top).iter().rev() {
                rmdir_retrying(dir)?;
            }
            // The shared `lb` directory goes too once it is empty, so that lb leaves no
            // trace in a cgroup that its owner may want to remove; another container's
            // cgroup (or one being created, which retries) keeps it.
            if let Some(parent) = top.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
        Ok(())
    }

    /// The directories, e.g. for joining from `lb exec` or for diagnostics.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1(dirs) => dirs.iter().map(|d| d.path.clone()).collect(),
            Layout::V2(dir) => vec![dir.clone()],
        }
    }

    /// Whether the memory cgroup recorded an OOM kill (memory.events oom_kill on v2,
    /// memory.oom_control oom_kill on v1).
    pub fn oom_killed(&self) -> bool {
        let file = match &self.layout {
            Layout::V2(dir) => dir.join("memory.events"),
            Layout::V1(dirs) => match dirs.iter().find(|d| d.has("memory")) {
                Some(d) => d.path.join("memory.oom_control"),
                None => return false,
            },
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|t| keyed_value(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }

    /// The directory named in errors about the whole cgroup.
    fn primary(&self) -> PathBuf {
        self.paths().into_iter().next().unwrap_or_default()
    }

    fn v1_dir(&self, controller: &str) -> Option<&Path> {
        match &self.layout {
            Layout::V1(dirs) => dirs
                .iter()
                .find(|d| d.has(controller))
                .map(|d| d.path.as_path()),
            Layout::V2(_) => None,
        }
    }

    fn apply_v1(&self, limits: &Limits) -> Result<()> {
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

    fn apply_v2(&self, limits: &Limits) -> Result<()> {
        let Layout::V2(dir) = &self.layout else {
            return Ok(());
        };
        if let Some(mem) = limits.memory {
            apply_v2_memory(dir, mem, limits.swap)?;
        }
        if limits.cpu_quota.is_some() || limits.cpu_period.is_some() {
            // "max" keeps the quota unlimited when only a period is given; a missing period
            // keeps the one in force (100000us by default), as runc does.
            let mut value = match limits.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            if let Some(period) = limits.cpu_period {
                value.push_str(&format!(" {period}"));
            }
            let file = dir.join("cpu.max");
            if file.exists() || limits.cpu_quota.is_some_and(|q| q > 0) {
                write_file(&file, &value)?;
            }
        }
        if let Some(pids) = limits.pids {
            let file = dir.join("pids.max");
            if file.exists() || pids > 0 {
                write_file(&file, &max_or(pids))?;
            }
        }
        Ok(())
    }
}

impl V1Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Container ids are 64 hex digits; anything that could leave `lb/` or name a cgroup
/// interface file's parent is refused.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CgroupError::InvalidName(name.to_string()))
    }
}

/// The limits of a `LinuxResources` that this module applies, normalised: `None` is "not
/// asked", `-1` is "unlimited", any other value is a limit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Limits {
    memory: Option<i64>,
    /// memory + swap, as in the OCI spec and cgroup v1's memsw.
    swap: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    pids: Option<i64>,
    /// Device access rules in cgroup v1's syntax ("a", "c 1:3 rwm"), with whether each
    /// allows (true) or denies, in order.
    devices: Vec<(bool, String)>,
}

impl Limits {
    fn from_resources(res: Option<&LinuxResources>) -> Result<Limits> {
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
    fn needed(&self) -> Vec<&'static str> {
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
    fn what(controller: &str) -> &'static str {
        match controller {
            "memory" => "memory",
            "cpu" => "cpu quota",
            "pids" => "pids",
            _ => "cgroup",
        }
    }
}

/// "max" (or -1 on v1, which both accept for pids) for unlimited, else the number.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

fn apply_v1_memory(dir: &Path, mem: i64, swap: Option<i64>) -> Result<()> {
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

fn apply_v2_memory(dir: &Path, mem: i64, swap: Option<i64>) -> Result<()> {
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
enum Mode {
    V1,
    V2,
}

/// The cgroup hierarchies mounted here and where the calling process sits in each.
#[derive(Debug, Default)]
struct Host {
    v1: Vec<V1Hier>,
    v2: Option<V2Hier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct V1Hier {
    controllers: Vec<String>,
    mountpoint: PathBuf,
    /// The calling process's cgroup in this hierarchy.
    own: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct V2Hier {
    mountpoint: PathBuf,
    own: PathBuf,
    /// What the hierarchy's root (the mount) can hand out: `cgroup.controllers`.
    available: Vec<String>,
}

impl Host {
    fn detect() -> Result<Host> {
        let read = |p: &str| {
            fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: p.into(),
                source,
            })
        };
        let mounts = parse_mountinfo(&read("/proc/self/mountinfo")?);
        let member = parse_proc_cgroup(&read("/proc/self/cgroup")?);
        let mut host = Host::from_parts(&mounts, &member);
        if let Some(v2) = &mut host.v2 {
            v2.available = fs::read_to_string(v2.mountpoint.join("cgroup.controllers"))
                .map(|t| t.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
        }
        if host.v1.is_empty() && host.v2.is_none() {
            return Err(CgroupError::NotMounted);
        }
        Ok(host)
    }

    /// Joins the mounts with the process's membership: for each hierarchy the process is
    /// in, the first mount that shows its cgroup.
    fn from_parts(mounts: &[CgMount], member: &[Membership]) -> Host {
        let mut host = Host::default();
        for m in member {
            if m.controllers.is_empty() {
                if host.v2.is_some() {
                    continue;
                }
                host.v2 = mounts.iter().find(|mt| mt.v2).map(|mt| {
                    // Outside the mount's root (a cgroup namespace shows "/.."): the
                    // mount's root is the closest we can see.
                    let rel = relative(&m.path, &mt.root).unwrap_or_default();
                    V2Hier {
                        mountpoint: mt.mountpoint.clone(),
                        own: join_rel(&mt.mountpoint, &rel),
                        available: Vec::new(),
                    }
                });
                continue;
            }
            let real: Vec<&String> = m
                .controllers
                .iter()
                .filter(|c| !c.starts_with("name="))
                .collect();
            if real.is_empty() {
                continue; // a named hierarchy (name=systemd) limits nothing
            }
            let found = mounts
                .iter()
                .filter(|mt| !mt.v2 && real.iter().all(|c| mt.options.contains(c)))
                .find_map(|mt| {
                    relative(&m.path, &mt.root).map(|rel| V1Hier {
                        controllers: real.iter().map(|c| c.to_string()).collect(),
                        mountpoint: mt.mountpoint.clone(),
                        own: join_rel(&mt.mountpoint, &rel),
                    })
                });
            if let Some(h) = found
                && !host.v1.iter().any(|o| o.mountpoint == h.mountpoint)
            {
                host.v1.push(h);
            }
        }
        host
    }

    fn v1_has(&self, controller: &str) -> bool {
        self.v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| c == controller))
    }

    fn v2_has(&self, controller: &str) -> bool {
        self.v2
            .as_ref()
            .is_some_and(|v| v.available.iter().any(|c| c == controller))
    }

    /// The v1 hierarchies a container joins.
    fn v1_used(&self) -> impl Iterator<Item = &V1Hier> {
        self.v1
            .iter()
            .filter(|h| h.controllers.iter().any(|c| V1_USED.contains(&c.as_str())))
    }

    /// v2 when every controller a container wants that this host has lives there (a pure
    /// v2 host); v1 when some are on v1 hierarchies (a hybrid or v1 host). Then whichever
    /// can enforce the `needed` ones, or an error naming the first missing controller.
    fn choose(&self, needed: &[&'static str]) -> Result<Mode> {
        let v2_mounted = self.v2.is_some();
        let prefer_v2 = v2_mounted
            && WANTED
                .iter()
                .chain(needed)
                .all(|c| !self.v1_has(c) || self.v2_has(c))
            && (self.v1.is_empty() || WANTED.iter().any(|c| self.v2_has(c)));
        let (first, second) = if prefer_v2 {
            (Mode::V2, Mode::V1)
        } else {
            (Mode::V1, Mode::V2)
        };
        let mut missing = None;
        for mode in [first, second] {
            let (mounted, lacks) = match mode {
                Mode::V1 => (
                    self.v1_used().next().is_some(),
                    needed.iter().find(|c| !self.v1_has(c)),
                ),
                Mode::V2 => (v2_mounted, needed.iter().find(|c| !self.v2_has(c))),
            };
            match (mounted, lacks) {
                (false, _) => {}
                (true, None) => return Ok(mode),
                (true, Some(c)) => {
                    missing.get_or_insert(*c);
                }
            }
        }
        let Some(controller) = missing else {
            // Only hierarchies lb does not join (net_cls, a named one) are mounted.
            return Err(CgroupError::NotMounted);
        };
        Err(CgroupError::ControllerMissing {
            controller: controller.to_string(),
            limit: Limits::what(controller),
            detail: String::new(),
        })
    }
}

/// A cgroup file system mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgMount {
    v2: bool,
    /// The cgroup path the mount shows at its mount point.
    root: String,
    mountpoint: PathBuf,
    /// Super-block options: v1 names its controllers there ("rw,cpu,cpuacct").
    options: Vec<String>,
}

/// A cgroup hierarchy as the host mounts it under /sys/fs/cgroup, for a container's own
/// view of it (`rootfs::mount_cgroups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyMount {
    /// The name below /sys/fs/cgroup ("memory", "cpu,cpuacct", "unified"); empty when the
    /// hierarchy is mounted on /sys/fs/cgroup itself (a pure v2 host).
    pub name: String,
    pub v2: bool,
    /// What selects the hierarchy when mounting it again: v1's controllers or `name=`.
    pub options: Vec<String>,
}

/// The cgroup hierarchies mounted under the host's /sys/fs/cgroup that a container joins
/// (v2, and the v1 ones with a controller lb uses), each once: a hierarchy it does not
/// join would show the host's tree from lb's own cgroup down.
pub fn container_hierarchies() -> Result<Vec<HierarchyMount>> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Read {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let base = Path::new("/sys/fs/cgroup");
    let mut found: Vec<HierarchyMount> = Vec::new();
    for m in parse_mountinfo(&text) {
        let Ok(rel) = m.mountpoint.strip_prefix(base) else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        if name.contains('/') || found.iter().any(|f| f.name == name) {
            continue;
        }
        if !m.v2 && !m.options.iter().any(|o| V1_USED.contains(&o.as_str())) {
            continue;
        }
        let options = if m.v2 {
            Vec::new()
        } else {
            // Super-block options other than the hierarchy's identity are the host's
            // business (rw, relatime, ...).
            m.options
                .into_iter()
                .filter(|o| {
                    !matches!(
                        o.as_str(),
                        "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec"
                    ) && !o.starts_with("release_agent")
                })
                .collect()
        };
        found.push(HierarchyMount {
            name,
            v2: m.v2,
            options,
        });
    }
    Ok(found)
}

fn parse_mountinfo(text: &str) -> Vec<CgMount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let _source = post.next()?;
            let options = post.next().unwrap_or_default();
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgMount {
                v2,
                root: unescape_mountinfo(pre.get(3)?),
                mountpoint: PathBuf::from(unescape_mountinfo(pre.get(4)?)),
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A thread charging its CPU time to a container's cgroup (`Cgroup::charge_thread_cpu`);
/// dropped, the thread is back in its process's cgroups.
#[derive(Debug)]
pub struct CpuCharge {
    back: Vec<PathBuf>,
}

impl Drop for CpuCharge {
    fn drop(&mut self) {
        for tasks in &self.back {
            let _ = write_file(tasks, "0");
        }
    }
}

/// One line of /proc/self/cgroup: `id:controllers:path`; v2 has no controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Membership {
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// `path` relative to a mount showing `root`, or None when the mount does not show it
/// (or it climbs out with `..`, as paths outside a cgroup namespace do).
fn relative(path: &str, root: &str) -> Option<PathBuf> {
    let rest = if root == "/" {
        path.strip_prefix('/')?
    } else if path == root {
        ""
    } else {
        path.strip_prefix(root)?.strip_prefix('/')?
    };
    let rel = PathBuf::from(rest);
    rel.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then_some(rel)
}

/// `base/rel`, without the trailing '/' that joining an empty path adds (it would show in
/// every path handed out and error message).
fn join_rel(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// The directories of the v1 hierarchies, made (or found) as `<own>/lb/<name>`.
fn create_v1(host: &Host, name: &str, created: &mut Vec<PathBuf>) -> Result<Vec<V1Dir>> {
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

/// mkdir `<base>/lb` (running `prepare` on it) and `<base>/lb/<name>`, retrying when a
/// concurrent remove() takes the empty `lb` away between the two.
fn make_lb_child(
    base: &Path,
    name: &str,
    created: &mut Vec<PathBuf>,
    prepare: impl Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let lb = base.join(LB_DIR);
    let dir = lb.join(name);
    let mut attempts = 0;
    loop {
        attempts += 1;
        mkdir(&lb)?;
        prepare(&lb)?;
        match fs::create_dir(&dir) {
            Ok(()) => {
                created.push(dir.clone());
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => continue,
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
    }
}

fn mkdir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The v2 directory `<base>/lb/<name>`, and whether this call made it. `base` is the
/// caller's own cgroup when the controllers can be handed out below it, else its nearest
/// ancestor that can: a non-root v2 cgroup with processes in it (the caller's own, always)
/// cannot enable controllers for its children ("no internal processes"), so a container
/// with limits goes beside the caller rather than below it.
fn create_v2(v2: &V2Hier, name: &str, needed: &[&'static str]) -> Result<(PathBuf, bool)> {
    let wanted: Vec<&str> = WANTED
        .iter()
        .chain(needed)
        .copied()
        .filter(|c| v2.available.iter().any(|a| a == c))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let base = find_v2_base(v2, &wanted)
        .or_else(|| find_v2_base(v2, needed))
        .or_else(|| needed.is_empty().then(|| v2.own.clone()));
    let Some(base) = base else {
        let c = needed[0];
        return Err(CgroupError::ControllerMissing {
            controller: c.to_string(),
            limit: Limits::what(c),
            detail: format!(
                " (it cannot be enabled in cgroup.subtree_control of {} or any ancestor)",
                v2.own.display()
            ),
        });
    };
    let mut created = Vec::new();
    let dir = make_lb_child(&base, name, &mut created, |lb| {
        // lb/ holds no processes, so it can pass on whatever its parent gives it; the
        // needed controllers must arrive, the others are welcome.
        let given = read_words(&lb.join("cgroup.controllers"));
        for c in wanted.iter().filter(|c| given.iter().any(|g| g == *c)) {
            enable(lb, &[c]);
        }
        let enabled = read_words(&lb.join("cgroup.subtree_control"));
        match needed.iter().find(|c| !enabled.iter().any(|e| e == *c)) {
            None => Ok(()),
            Some(c) => Err(CgroupError::ControllerMissing {
                controller: c.to_string(),
                limit: Limits::what(c),
                detail: format!(
                    " (cannot enable it in {})",
                    lb.join("cgroup.subtree_control").display()
                ),
            }),
        }
    })?;
    Ok((dir, !created.is_empty()))
}

/// The deepest cgroup from the caller's own upwards whose children can get `controllers`.
fn find_v2_base(v2: &V2Hier, controllers: &[&str]) -> Option<PathBuf> {
    v2.own
        .ancestors()
        .take_while(|a| a.starts_with(&v2.mountpoint))
        .find(|a| delegate(a, &v2.mountpoint, controllers))
        .map(Path::to_path_buf)
}

/// Makes `controllers` enabled in `dir`'s cgroup.subtree_control, first getting them into
/// its cgroup.controllers from its parent if need be; whether that worked.
fn delegate(dir: &Path, root: &Path, controllers: &[&str]) -> bool {
    let enabled = read_words(&dir.join("cgroup.subtree_control"));
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| !enabled.iter().any(|e| e == c))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let offered = read_words(&dir.join("cgroup.controllers"));
    let not_offered: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|c| !offered.iter().any(|o| o == c))
        .collect();
    if !not_offered.is_empty() {
        let parent = match dir.parent() {
            Some(p) if dir != root && p.starts_with(root) => p,
            _ => return false,
        };
        if !delegate(parent, root, &not_offered) {
            return false;
        }
    }
    enable(dir, &missing)
}

/// Writes `+c` for each controller to cgroup.subtree_control; whether all are enabled.
/// The kernel answers EBUSY for a non-root cgroup with processes in it.
fn enable(dir: &Path, controllers: &[&str]) -> bool {
    let file = dir.join("cgroup.subtree_control");
    for c in controllers {
        let _ = write_file(&file, &format!("+{c}"));
    }
    let enabled = read_words(&file);
    controllers.iter().all(|c| enabled.iter().any(|e| e == c))
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `<start-or-ancestor>/lb/<name>` in one hierarchy: first where create() puts it (the
/// caller's own cgroup or, on v2, an ancestor), then anywhere in the hierarchy, because the
/// lb process that made it may have sat in another cgroup than this one.
fn find_cgroup(mountpoint: &Path, own: &Path, name: &str) -> Option<PathBuf> {
    let quick = own
        .ancestors()
        .take_while(|a| a.starts_with(mountpoint))
        .map(|a| a.join(LB_DIR).join(name))
        .find(|p| p.is_dir());
    if quick.is_some() {
        return quick;
    }
    // Breadth first and bounded, so a huge systemd tree costs milliseconds, not seconds.
    const MAX_DIRS: usize = 50_000;
    const MAX_DEPTH: usize = 16;
    let mut queue = VecDeque::from([(mountpoint.to_path_buf(), 0usize)]);
    let mut seen = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        seen += 1;
        if seen > MAX_DIRS {
            break;
        }
        let candidate = dir.join(LB_DIR).join(name);
        if candidate.is_dir() {
            return Some(candidate);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push_back((e.path(), depth + 1));
            }
        }
    }
    None
}

/// `dir` and every cgroup below it, parents before children; empty if `dir` is gone.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out
}

fn kill_v2(dir: &Path, cg: &Cgroup) -> Result<()> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        // One write kills the whole subtree, forks in flight included (Linux 5.14+).
        return write_file(&kill_file, "1");
    }
    let freeze = dir.join("cgroup.freeze");
    let can_freeze = freeze.exists();
    if can_freeze {
        write_file(&freeze, "1")?;
        let events = dir.join("cgroup.events");
        wait_for(Duration::from_secs(1), || {
            fs::read_to_string(&events)
                .ok()
                .and_then(|t| keyed_value(&t, "frozen"))
                == Some(1)
        });
    }
    let result = signal_all(cg);
    if can_freeze {
        write_file(&freeze, "0")?;
    }
    result
}

fn kill_v1(freezer: Option<&Path>, cg: &Cgroup) -> Result<()> {
    // Frozen, nothing in the cgroup can fork between reading cgroup.procs and the kills,
    // so no child escapes the sweep; without a freezer the outer loop catches stragglers.
    if let Some(dir) = freezer {
        freeze_v1(dir)?;
    }
    let result = signal_all(cg);
    if let Some(dir) = freezer {
        // SIGKILL is only acted on once the tasks run again.
        write_file(&dir.join("freezer.state"), "THAWED")?;
    }
    result
}

/// Freezes a v1 freezer cgroup, best effort: a cgroup stuck in FREEZING after a second
/// (tasks in uninterruptible sleep) is killed anyway.
fn freeze_v1(dir: &Path) -> Result<()> {
    let state = dir.join("freezer.state");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        // Old kernels need FROZEN written again while the state reads FREEZING.
        write_file(&state, "FROZEN")?;
        let now = read_string(&state)?;
        if now.trim() == "FROZEN" || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal_all(cg: &Cgroup) -> Result<()> {
    for pid in cg.procs()? {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => return Err(CgroupError::Kill { pid, source }),
        }
    }
    Ok(())
}

fn rmdir_retrying(dir: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if is_gone(&e) => return Ok(()),
            // Tasks that were just killed can hold the cgroup for a moment.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// The number after `key` in a flat keyed file (`memory.events`, `memory.oom_control`).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Writes a cgroup interface file in one write(2): the kernel takes each write as one
/// value, and opening without O_CREAT makes a missing file ENOENT rather than EACCES.
fn write_file(path: &Path, value: &str) -> Result<()> {
    let err = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    let n = f.write(value.as_bytes()).map_err(err)?;
    if n != value.len() {
        return Err(err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write ({n} of {} bytes)", value.len()),
        )));
    }
    Ok(())
}

fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_u64(path: &Path) -> Result<u64> {
    let text = read_string(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{WaitStatus, waitpid};
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    use std::io::Read as _;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::{Command, Stdio};

    /// A fresh 64-hex-digit name, like a container id.
    fn random_name() -> String {
        let mut b = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .expect("read /dev/urandom");
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Forks a child that waits until the parent has moved it into `cg`, then runs `body`
    /// and exits with what it returns. The child of a multi-threaded test process may only
    /// make async-signal-safe calls, hence plain libc in the bodies.
    fn fork_into(cg: &Cgroup, body: fn() -> i32) -> Pid {
        let (rx, tx): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        // SAFETY: the child only calls read(2), `body` (raw syscalls) and _exit(2).
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let mut byte = 0u8;
                // SAFETY: reading one byte into a local from an open pipe.
                unsafe { libc::read(rx.as_raw_fd(), (&raw mut byte).cast(), 1) };
                let code = body();
                // SAFETY: _exit is async-signal-safe and skips the parent's atexit work.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(rx);
                cg.add_process(child.as_raw()).expect("add_process");
                nix::unistd::write(&tx, b"x").expect("wake child");
                child
            }
        }
    }

    fn touch_256_mib() -> i32 {
        const LEN: usize = 256 << 20;
        // SAFETY: a private anonymous mapping, written only inside its bounds.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return 2;
            }
            let p = p.cast::<u8>();
            for off in (0..LEN).step_by(4096) {
                std::ptr::write_volatile(p.add(off), 1);
            }
        }
        0
    }

    /// Forks until the kernel says EAGAIN; the exit code is how many forks worked.
    fn fork_until_refused() -> i32 {
        for n in 0..64 {
            // SAFETY: the grandchild only pauses (killed by the test's kill_all).
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                loop {
                    // SAFETY: pause(2) has no preconditions.
                    unsafe { libc::pause() };
                }
            }
            if pid < 0 {
                return if Errno::last() == Errno::EAGAIN {
                    n
                } else {
                    100
                };
            }
        }
        99
    }

    #[test]
    fn memory_limit_oom_kills_with_sigkill() {
        if !lb_testkit::require_root("cgroup limits") {
            return;
        }
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let cg = Cgroup::create(&random_name(), Some(&res)).expect("create");
        assert!(!cg.oom_killed());
        let child = fork_into(&cg, touch_256_mib);
        let status = waitpid(child, None).expect("waitpid");
        let oom = cg.oom_killed();
        cg.remove().expect("remove");
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
            "{status:?}"
        );
        assert!(oom, "memory cgroup recorded no OOM kill");
    }

    #[test]
    fn pids_limit_refuses_the_ninth_process() {
        if !lb_testkit::require_root("cgroup limits") {
            return;
        }
        let res = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(8).build().unwrap())
            .build()
            .unwrap();
        let cg = Cgroup::create(&random_name(), Some(&res)).expect("create");
        let child = fork_into(&cg, fork_until_refused);
        let status = waitpid(child, None).expect("waitpid");
        // The paused grandchildren are still in it: remove() must kill them first.
        cg.remove().expect("remove");
        // The child itself plus 7 forks make 8.
        assert_eq!(status, WaitStatus::Exited(child, 7));
    }

    #[test]
    fn cpu_quota_written_as_docker_does() {
        if !lb_testkit::require_root("cgroup limits") {
            return;
        }
        // --cpus 0.5
        let res = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let cg = Cgroup::create(&random_name(), Some(&res)).expect("create");
        let read = |f: &str| {
            cg.paths()
                .iter()
                .map(|p| p.join(f))
                .find(|p| p.exists())
                .map(|p| fs::read_to_string(p).unwrap().trim().to_string())
        };
        let v1 = (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us"));
        let v2 = read("cpu.max");
        cg.remove().expect("remove");
        match v2 {
            Some(max) => assert_eq!(max, "50000 100000"),
            None => assert_eq!(v1, (Some("50000".into()), Some("100000".into()))),
        }
    }

    #[test]
    fn kill_all_kills_a_tree_and_remove_leaves_nothing() {
        if !lb_testkit::require_root("cgroup limits") {
            return;
        }
        let name = random_name();
        let cg = Cgroup::create(&name, None).expect("create");
        assert!(!cg.paths().is_empty());
        let mut sleeper = Command::new("sleep").arg("1000").spawn().expect("sleep");
        cg.add_process(sleeper.id() as i32).expect("add sleep");
        // The shell forks its children only once it is inside, so they start inside too.
        let mut sh = Command::new("sh")
            .args(["-c", "read x; sleep 1000 & sleep 1000 & wait"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        cg.add_process(sh.id() as i32).expect("add sh");
        sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(
            wait_for(Duration::from_secs(3), || cg
                .procs()
                .is_ok_and(|p| p.len() == 4)),
            "procs: {:?}",
            cg.procs()
        );

        // Another lb process finds it from the name alone.
        let opened = Cgroup::open(&name).expect("open").expect("found");
        assert_eq!(opened.paths(), cg.paths());
        opened.kill_all().expect("kill_all");
        assert_eq!(cg.procs().unwrap(), Vec::<i32>::new());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(sh.wait().unwrap().signal(), Some(libc::SIGKILL));

        let paths = cg.paths();
        opened.remove().expect("remove");
        for p in &paths {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        assert!(Cgroup::open(&name).expect("open").is_none());
    }

    #[test]
    fn open_finds_by_name_and_not_unknown_names() {
        if !lb_testkit::require_root("cgroup limits") {
            return;
        }
        let name = random_name();
        let cg = Cgroup::create(&name, None).expect("create");
        let found = Cgroup::open(&name).expect("open").expect("found");
        assert_eq!(found.paths(), cg.paths());
        assert!(Cgroup::open(&random_name()).expect("open").is_none());
        cg.remove().expect("remove");
    }

    #[test]
    fn v2_directory_is_listed_killed_and_removed() {
        if !lb_testkit::require_root("cgroup limits") {
            return;
        }
        // On a hybrid host this is the only way to reach the v2 code (create() picks v1);
        // no controller is asked, so nothing is enabled in the host's v2 tree.
        let host = Host::detect().expect("detect");
        let Some(v2) = &host.v2 else {
            lb_testkit::skip("no cgroup v2 hierarchy mounted");
            return;
        };
        let name = random_name();
        let (dir, fresh) = create_v2(v2, &name, &[]).expect("create_v2");
        assert!(fresh && dir.ends_with(Path::new(LB_DIR).join(&name)));
        let cg = Cgroup {
            layout: Layout::V2(dir.clone()),
        };
        let mut sleeper = Command::new("sleep").arg("1000").spawn().expect("sleep");
        cg.add_process(sleeper.id() as i32).expect("add");
        assert_eq!(cg.procs().unwrap(), vec![sleeper.id() as i32]);
        let opened = Cgroup::open(&name).expect("open").expect("found");
        assert_eq!(opened.paths(), vec![dir.clone()]);
        cg.remove().expect("remove");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(!dir.exists());
    }

    #[test]
    fn open_searches_the_whole_hierarchy() {
        // The lb process that made the cgroup may have sat in a sibling cgroup (another
        // login session): the walk up from our own cgroup misses it, the search does not.
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("sessions/mine");
        let theirs = root.path().join("sessions/theirs/lb/c0ffee");
        fs::create_dir_all(&own).unwrap();
        fs::create_dir_all(&theirs).unwrap();
        assert_eq!(find_cgroup(root.path(), &own, "c0ffee"), Some(theirs));
        assert_eq!(find_cgroup(root.path(), &own, "beef"), None);
        let near = root.path().join("sessions/lb/c0ffee");
        fs::create_dir_all(&near).unwrap();
        assert_eq!(find_cgroup(root.path(), &own, "c0ffee"), Some(near));
    }

    #[test]
    fn names_that_leave_lb_are_refused() {
        for bad in ["a/b", "..", "../x", ".", "", "x\0y", "a..b"] {
            assert!(
                matches!(Cgroup::create(bad, None), Err(CgroupError::InvalidName(_))),
                "{bad:?}"
            );
            assert!(
                matches!(Cgroup::open(bad), Err(CgroupError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn limits_are_normalised_like_runc() {
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(0i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            Limits::from_resources(Some(&res)).unwrap(),
            Limits::default()
        );
        let swap_only = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .swap(1i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(Limits::from_resources(Some(&swap_only)).is_err());
        let l = Limits {
            memory: Some(-1),
            cpu_quota: Some(-1),
            pids: Some(-1),
            ..Limits::default()
        };
        assert!(l.needed().is_empty(), "unlimited needs no controller");
    }

    #[test]
    fn hybrid_host_layout_is_v1() {
        // This machine's layout: v1 controllers, v2 with only hugetlb, memory nested.
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let cgroup =
            "9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        let mut host = Host::from_parts(&parse_mountinfo(mountinfo), &parse_proc_cgroup(cgroup));
        host.v2.as_mut().unwrap().available = vec!["hugetlb".into()];
        assert_eq!(host.v1.len(), 4, "{host:?}");
        let mem = host
            .v1
            .iter()
            .find(|h| h.controllers == ["memory"])
            .unwrap();
        assert_eq!(mem.own, Path::new("/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(host.choose(&[]).unwrap(), Mode::V1);
        assert_eq!(host.choose(&["memory", "pids"]).unwrap(), Mode::V1);
        assert!(matches!(
            Host { v1: vec![], ..host }.choose(&["memory"]),
            Err(CgroupError::ControllerMissing { controller, .. }) if controller == "memory"
        ));
    }

    #[test]
    fn pure_v2_host_layout_is_v2() {
        let mountinfo = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroup = "0::/user.slice/user-0.slice/session-1.scope\n";
        let mut host = Host::from_parts(&parse_mountinfo(mountinfo), &parse_proc_cgroup(cgroup));
        let v2 = host.v2.as_mut().unwrap();
        assert_eq!(
            v2.own,
            Path::new("/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope")
        );
        v2.available = ["cpuset", "cpu", "io", "memory", "pids"]
            .map(String::from)
            .into();
        assert_eq!(host.choose(&["memory", "cpu", "pids"]).unwrap(), Mode::V2);
        assert_eq!(host.choose(&[]).unwrap(), Mode::V2);
        assert!(host.choose(&["hugetlb"]).is_err());
    }
}
