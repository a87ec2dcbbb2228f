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

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use oci_spec::runtime::LinuxResources;

/// The directory, below a process's own cgroup, that holds one cgroup per container.
const LB_DIR: &str = "lb";

/// How long kill_all waits for the cgroup to empty before giving up.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Pausing needs the freezer (v1) or cgroup.freeze (v2).
    #[error("the freezer cgroup controller is not available on this host")]
    NoFreezer,
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

    /// Writes `resources`' limits (`lb update`) into this existing cgroup, as `create`
    /// writes them.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let limits = Limits::from_resources(Some(resources))?;
        match &self.layout {
            Layout::V1(_) => self.apply_v1(&limits),
            Layout::V2(_) => self.apply_v2(&limits),
        }
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
}

impl V1Dir {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The host's cgroup version as docker reports it (`info`'s Cgroup Version): 2 on a host
/// with only the unified hierarchy, 1 where v1 controllers are mounted (a hybrid host too).
pub fn host_version() -> Result<u8> {
    let host = host::Host::detect()?;
    Ok(if host.v1.is_empty() { 2 } else { 1 })
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

mod dirs;
mod freezer;
mod host;
mod kill;
mod limits;
mod stats;
mod v1;
mod v2;

use dirs::*;
use host::*;
pub use host::{HierarchyMount, container_hierarchies};
use kill::*;
use limits::*;
pub use stats::CgroupStats;
use v1::*;
use v2::*;

#[cfg(test)]
mod tests;
