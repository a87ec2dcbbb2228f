//! Starting a container and following it: the parent's side of the lifecycle. The process
//! tree is runc's: lb (a child subreaper) forks an intermediate process, which joins the
//! cgroup, unshares the namespaces and forks the container's first process (PID 1 of the new
//! PID namespace) before exiting, so the container is reparented to lb, which waits for it.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::Spec;

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::parent_death::ParentDeath;
use crate::rootfs::Rootfs;

/// Where the container's standard streams go.
pub enum Stdio {
    /// lb's own stdin, stdout and stderr.
    Inherit,
    /// Given descriptors (a detached container's log pipes, `/dev/null`).
    Fds {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pseudo-terminal: the slave becomes the controlling terminal and `/dev/console`.
    Tty { slave: OwnedFd, slave_path: PathBuf },
}

/// Everything needed to start one container.
pub struct Launch {
    /// The container id: names its cgroup.
    pub id: String,
    pub spec: Spec,
    /// What its root file system is made of: an overlay or one directory.
    pub layers: Rootfs,
    /// The host directory the root file system is mounted on (only inside the container's
    /// mount namespace).
    pub rootfs: PathBuf,
    /// A docker-style user (`name`, `uid:gid`, ...) resolved in the container's own
    /// `/etc/passwd`; `None` takes the spec's numeric ids.
    pub user: Option<String>,
    /// `--group-add`: supplementary groups by name or id, resolved in the container's
    /// own `/etc/group` (docker resolves them at start, not at create).
    pub group_add: Vec<String>,
    /// docker's default seccomp profile (`false`: `--security-opt seccomp=unconfined`).
    pub seccomp: bool,
    /// `--init`: a reaping init stays PID 1 and the command runs as its child.
    pub init: bool,
    /// The container is killed when this process dies, however it dies (SIGKILL included):
    /// a build's RUN step. See `parent_death.rs`.
    pub die_with_caller: bool,
    pub stdio: Stdio,
}

/// A started process: a container's first process, which owns its cgroup, or one started
/// in it by `exec`.
pub struct Container {
    pid: Pid,
    /// Removed when the process ends (the first process only).
    cgroup: Option<Cgroup>,
}

fn namespace_flags(spec: &Spec) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    let linux = spec.linux().clone().unwrap_or_default();
    for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
        if ns.path().is_some() {
            continue;
        }
        flags |= namespace_flag(ns.typ());
    }
    flags
}

fn namespace_flag(t: oci_spec::runtime::LinuxNamespaceType) -> CloneFlags {
    use oci_spec::runtime::LinuxNamespaceType as T;
    match t {
        T::Mount => CloneFlags::CLONE_NEWNS,
        T::Pid => CloneFlags::CLONE_NEWPID,
        T::Uts => CloneFlags::CLONE_NEWUTS,
        T::Ipc => CloneFlags::CLONE_NEWIPC,
        T::Network => CloneFlags::CLONE_NEWNET,
        T::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        T::User => CloneFlags::CLONE_NEWUSER,
        T::Time => CloneFlags::empty(),
    }
}

/// The capabilities the container keeps: what its seccomp filter is built for.
fn bounding_caps(spec: &Spec) -> Vec<String> {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .into_iter()
        .flatten()
        .map(crate::defaults::capability_name)
        .collect()
}

/// Sends the error to the parent ([`Error::encode`]) and leaves the forked process.
fn fail(report: &OwnedFd, e: Error) -> ! {
    let msg = e.encode();
    // SAFETY: writing a buffer to a pipe we own, then leaving the forked child.
    unsafe {
        libc::write(report.as_raw_fd(), msg.as_ptr().cast(), msg.len());
        libc::_exit(e.code())
    }
}

/// Starts the container; returns once its command is executing (or failed to).
pub fn start(l: &Launch) -> Result<Container> {
    let resources = l.spec.linux().as_ref().and_then(|x| x.resources().clone());
    let cgroup = Cgroup::create(&l.id, resources.as_ref())?;
    let flags = namespace_flags(&l.spec);
    let seccomp = if l.seccomp {
        Some(crate::seccomp::default_filter(&bounding_caps(&l.spec))?)
    } else {
        None
    };
    // Namespaces the spec names by path are joined (another container's network stack);
    // opened now, so that a path that is gone fails before anything starts.
    let mut joined = Vec::new();
    for ns in l
        .spec
        .linux()
        .as_ref()
        .and_then(|x| x.namespaces().clone())
        .unwrap_or_default()
    {
        if let Some(path) = ns.path() {
            let flag = namespace_flag(ns.typ());
            let fd = std::fs::File::open(path)
                .map_err(|e| Error::io(format!("open {}", path.display()), e).with_path(path))?;
            joined.push((OwnedFd::from(fd), flag, path.clone()));
        }
    }
    // A PID namespace made or joined (`--pid container:NAME`) holds only processes forked
    // after it is entered: the container's process is forked once more.
    let new_pid_ns = flags.contains(CloneFlags::CLONE_NEWPID)
        || joined
            .iter()
            .any(|(_, flag, _)| *flag == CloneFlags::CLONE_NEWPID);
    let death = if l.die_with_caller {
        ParentDeath::new()
    } else {
        None
    };
    let enter = || {
        // This forked child has one thread: it moves itself the cheap way.
        cgroup.add_self()?;
        if let Some(d) = &death
            && new_pid_ns
        {
            d.in_intermediate();
        }
        for (fd, flag, path) in &joined {
            nix::sched::setns(fd, *flag)
                .map_err(|e| Error::sys(format!("join {}", path.display()), e).with_path(path))?;
        }
        nix::sched::unshare(flags).map_err(|e| Error::sys("unshare namespaces", e))
    };
    match spawn(&enter, new_pid_ns, &|report| {
        crate::init::run(l, seccomp.as_ref(), death.as_ref(), report)
    }) {
        Ok(pid) => Ok(Container {
            pid,
            cgroup: Some(cgroup),
        }),
        Err(e) => {
            let _ = cgroup.remove();
            Err(e)
        }
    }
}

/// A process to start in a running container (`lb exec`): it joins the namespaces of the
/// container's first process and its cgroup, and is confined as the container is.
pub struct Exec {
    /// The container id: names its cgroup.
    pub id: String,
    /// The container's first process, whose namespaces are joined.
    pub pid: i32,
    /// The container's spec with the process to run (args, env, cwd, capabilities).
    pub spec: Spec,
    pub user: Option<String>,
    /// The container's `--group-add`s (docker gives exec'd processes them too).
    pub group_add: Vec<String>,
    pub seccomp: bool,
    pub stdio: Stdio,
}

/// The namespaces `lb exec` joins, in the order runc joins them: the mount namespace last,
/// because entering it moves the process's root into the container.
const JOINED: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Starts `e`'s process in its container; returns once it is executing (or failed to).
pub fn exec(e: &Exec) -> Result<Container> {
    let cgroup = Cgroup::open(&e.id)?;
    let seccomp = if e.seccomp {
        Some(crate::seccomp::default_filter(&bounding_caps(&e.spec))?)
    } else {
        None
    };
    // Opened before any fork, so that a pid reused after the container ended fails here
    // rather than being joined later.
    let mut namespaces = Vec::new();
    for (name, flag) in JOINED {
        let theirs = format!("/proc/{}/ns/{name}", e.pid);
        let same = std::fs::metadata(&theirs)
            .and_then(|t| Ok((t, std::fs::metadata(format!("/proc/self/ns/{name}"))?)))
            .map(|(t, o)| {
                use std::os::unix::fs::MetadataExt;
                t.ino() == o.ino()
            })
            .map_err(|source| Error::NotRunning {
                path: theirs.clone().into(),
                source,
            })?;
        if !same {
            let fd = std::fs::File::open(&theirs)
                .map_err(|err| Error::io(format!("open {theirs}"), err).with_path(&theirs))?;
            namespaces.push((OwnedFd::from(fd), flag));
        }
    }
    let enter = || {
        if let Some(c) = &cgroup {
            c.add_self()?;
        }
        for (fd, flag) in &namespaces {
            nix::sched::setns(fd, *flag)
                .map_err(|err| Error::sys("join the container's namespaces", err))?;
        }
        Ok(())
    };
    let pid = spawn(&enter, true, &|report| {
        crate::init::run_exec(e, seccomp.as_ref(), report)
    })?;
    Ok(Container { pid, cgroup: None })
}

/// The process tree of runc: an intermediate process runs `enter` (cgroup, namespaces) and,
/// when `fork_again` (a new or joined PID namespace applies only to children), forks the
/// process that runs `body`, then exits; lb, a child subreaper, becomes that process's
/// parent. `body` reports a failure as "CODE MESSAGE" on the descriptor it is given.
fn spawn(enter: &dyn Fn() -> Result<()>, fork_again: bool, body: &dyn Fn(OwnedFd)) -> Result<Pid> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set child subreaper", e))?;
    let (mut pid_r, pid_w) = pipe()?;
    let (mut err_r, err_w) = pipe()?;

    // SAFETY: the child only runs the setup steps and then execs or _exits.
    let first = match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            drop(pid_r);
            drop(err_r);
            // Nothing in the container may read this process's memory or open its
            // /proc/PID/exe (the lb binary: CVE-2019-5736) before it execs the container's
            // program, which resets this.
            let _ = nix::sys::prctl::set_dumpable(false);
            if let Err(e) = enter() {
                fail(&err_w, e);
            }
            if fork_again {
                // SAFETY: as above; in a new PID namespace the child is its PID 1.
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => {
                        drop(pid_w);
                        body(err_w);
                        // SAFETY: `body` never returns; leaving the child if it did.
                        unsafe { libc::_exit(125) }
                    }
                    Ok(ForkResult::Parent { child }) => {
                        let b = child.as_raw().to_le_bytes();
                        // SAFETY: as in `fail`.
                        unsafe {
                            libc::write(pid_w.as_raw_fd(), b.as_ptr().cast(), 4);
                            libc::_exit(0)
                        }
                    }
                    Err(e) => fail(&err_w, Error::sys("fork the container's process", e)),
                }
            }
            let b = nix::unistd::getpid().as_raw().to_le_bytes();
            // SAFETY: as in `fail`.
            unsafe { libc::write(pid_w.as_raw_fd(), b.as_ptr().cast(), 4) };
            drop(pid_w);
            body(err_w);
            // SAFETY: as above.
            unsafe { libc::_exit(125) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(pid_w);
    drop(err_w);
    let mut b = [0u8; 4];
    let got_pid = pid_r.read_exact(&mut b).is_ok();
    let pid = Pid::from_raw(i32::from_le_bytes(b));
    if got_pid && pid != first {
        let _ = waitpid(first, None);
    }
    let mut report = Vec::new();
    let _ = err_r.read_to_end(&mut report);
    if !report.is_empty() || !got_pid {
        // Reap whatever ran and report its message.
        let _ = waitpid(if got_pid { pid } else { first }, None);
        return Err(Error::decode(&report));
    }
    Ok(pid)
}

fn pipe() -> Result<(std::fs::File, OwnedFd)> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))?;
    Ok((std::fs::File::from(r), w))
}

/// The signals a foreground lb passes on to its container.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn forwarded_set() -> nix::sys::signal::SigSet {
    FORWARDED.into_iter().collect()
}

/// Holds the signals a foreground lb forwards until [`Container::forward_signals`]: one
/// that comes while the container starts is passed on then, instead of ending lb and
/// leaving the container behind. (The container's process unblocks them for itself.)
pub fn hold_signals() {
    let _ = forwarded_set().thread_block();
}

/// Lets the held signals act on lb itself again (`run --sig-proxy=false`): they end
/// lb, as docker's client, and the container goes on.
pub fn release_signals() {
    let _ = forwarded_set().thread_unblock();
}

/// The pid signals are forwarded to (0: none).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Forwards the signals a foreground lb passes on (those [`hold_signals`] holds) to `pid`
/// from now on: a container's first process, or an attached one's (`attach --sig-proxy`).
pub fn forward_signals_to(pid: i32) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    for sig in FORWARDED {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(forward),
            nix::sys::signal::SaFlags::SA_RESTART,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only calls kill.
        let _ = unsafe { nix::sys::signal::sigaction(sig, &action) };
    }
    let _ = forwarded_set().thread_unblock();
}

/// A docker exit status from a wait status: the code, or 128 + the signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

impl Container {
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Passes the signals of [`hold_signals`] that lb receives on to the process
    /// (docker's `--sig-proxy`), those that came while it started included.
    pub fn forward_signals(&self) {
        forward_signals_to(self.pid.as_raw());
    }

    /// Waits for the process to end and returns its docker exit status; for a container's
    /// first process every other process of the container is then killed and the cgroup
    /// removed.
    pub fn wait(self) -> Result<i32> {
        let code = loop {
            match waitpid(self.pid, Some(WaitPidFlag::__WALL)) {
                Ok(st) => {
                    if let Some(code) = exit_code(st) {
                        break code;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for the container", e)),
            }
        };
        FORWARD_TO.store(0, Ordering::Relaxed);
        if let Some(cgroup) = self.cgroup {
            cgroup.remove()?;
        }
        Ok(code)
    }
}
