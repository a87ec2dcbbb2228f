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
use crate::rootfs::RootfsLayers;

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
    pub layers: RootfsLayers,
    /// The host directory the overlay is mounted on (only inside the container's mount
    /// namespace).
    pub rootfs: PathBuf,
    /// A docker-style user (`name`, `uid:gid`, ...) resolved in the container's own
    /// `/etc/passwd`; `None` takes the spec's numeric ids.
    pub user: Option<String>,
    /// docker's default seccomp profile (`false`: `--security-opt seccomp=unconfined`).
    pub seccomp: bool,
    pub stdio: Stdio,
}

/// A started container: its first process and its cgroup.
pub struct Container {
    pid: Pid,
    cgroup: Cgroup,
}

fn namespace_flags(spec: &Spec) -> CloneFlags {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let mut flags = CloneFlags::empty();
    let linux = spec.linux().clone().unwrap_or_default();
    for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
        if ns.path().is_some() {
            continue;
        }
        flags |= match ns.typ() {
            T::Mount => CloneFlags::CLONE_NEWNS,
            T::Pid => CloneFlags::CLONE_NEWPID,
            T::Uts => CloneFlags::CLONE_NEWUTS,
            T::Ipc => CloneFlags::CLONE_NEWIPC,
            T::Network => CloneFlags::CLONE_NEWNET,
            T::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            T::User => CloneFlags::CLONE_NEWUSER,
            T::Time => CloneFlags::empty(),
        };
    }
    flags
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

/// Writes "CODE MESSAGE" for the parent and leaves the forked process.
fn fail(report: &OwnedFd, e: Error) -> ! {
    let msg = format!("{} {}", e.code, e.message);
    // SAFETY: writing a buffer to a pipe we own, then leaving the forked child.
    unsafe {
        libc::write(report.as_raw_fd(), msg.as_ptr().cast(), msg.len());
        libc::_exit(e.code)
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
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set child subreaper", e))?;
    let (mut pid_r, pid_w) = pipe()?;
    let (mut err_r, err_w) = pipe()?;

    // SAFETY: the child only runs the setup steps and then execs or _exits.
    let first = match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            drop(pid_r);
            drop(err_r);
            if let Err(e) = cgroup.add_process(nix::unistd::getpid().as_raw()) {
                fail(&err_w, e.into());
            }
            if let Err(e) = nix::sched::unshare(flags) {
                fail(&err_w, Error::sys("unshare namespaces", e));
            }
            if flags.contains(CloneFlags::CLONE_NEWPID) {
                // SAFETY: as above; the new child is PID 1 of the new namespace.
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => {
                        drop(pid_w);
                        crate::init::run(l, seccomp.as_ref(), err_w)
                    }
                    Ok(ForkResult::Parent { child }) => {
                        let b = child.as_raw().to_le_bytes();
                        // SAFETY: as in `fail`.
                        unsafe {
                            libc::write(pid_w.as_raw_fd(), b.as_ptr().cast(), 4);
                            libc::_exit(0)
                        }
                    }
                    Err(e) => fail(&err_w, Error::sys("fork container init", e)),
                }
            }
            let b = nix::unistd::getpid().as_raw().to_le_bytes();
            // SAFETY: as in `fail`.
            unsafe { libc::write(pid_w.as_raw_fd(), b.as_ptr().cast(), 4) };
            drop(pid_w);
            crate::init::run(l, seccomp.as_ref(), err_w)
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
    let mut report = String::new();
    let _ = err_r.read_to_string(&mut report);
    if !report.is_empty() || !got_pid {
        // Reap whatever ran and report its message.
        let _ = waitpid(if got_pid { pid } else { first }, None);
        let _ = cgroup.remove();
        let (code, message) = report
            .split_once(' ')
            .and_then(|(c, m)| Some((c.parse().ok()?, m.to_string())))
            .unwrap_or((125, format!("container setup failed: {report}")));
        return Err(Error { message, code });
    }
    Ok(Container { pid, cgroup })
}

fn pipe() -> Result<(std::fs::File, OwnedFd)> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))?;
    Ok((std::fs::File::from(r), w))
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

    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Passes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 that lb receives on
    /// to the container (docker's `--sig-proxy`).
    pub fn forward_signals(&self) {
        FORWARD_TO.store(self.pid.as_raw(), Ordering::Relaxed);
        for sig in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            let action = nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::Handler(forward),
                nix::sys::signal::SaFlags::SA_RESTART,
                nix::sys::signal::SigSet::empty(),
            );
            // SAFETY: the handler only calls kill.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &action) };
        }
    }

    /// Waits for the container's first process to end and returns its docker exit status;
    /// every other process of the container is then killed and the cgroup removed.
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
        let oom = self.cgroup.oom_killed();
        self.cgroup.remove()?;
        Ok(if oom && code == 137 { 137 } else { code })
    }
}
