//! A container that dies with the process that started it ([`crate::Launch::die_with_caller`]:
//! a build's RUN step, whose only reader and waiter is lb). The container's first process
//! asks for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`); it is PID 1 of its own PID
//! namespace, so the kernel then kills every other process of the container too.
//!
//! Why this and not only a reaper process that kills the cgroups once lb is gone: nothing
//! has to outlive lb for it (a reaper can be killed with lb's process group, or fail to
//! start) and the kernel sends the signal in the same exit of lb, before any other process
//! could notice lb is gone. Its pitfalls, and how they are met:
//! - The signal is sent whenever the process is *reparented*, not only when its parent
//!   process ends. The first process is forked by the runtime's intermediate process, which
//!   exits at once, and only then becomes lb's child (lb is a child subreaper). So the
//!   signal is asked for only once that intermediate is known to have exited (a pidfd of
//!   it, taken before the fork, turns readable after the kernel reparented its children).
//! - "Parent" is a thread: a child is reparented (and signalled) when the thread that is
//!   its parent exits. Reparented to lb, the process's parent is lb's first live thread,
//!   its main thread, which lives as long as lb (a build's stage threads come and go: a
//!   child of one of them would be killed when that stage ends).
//! - Changing credentials clears the request (`commit_creds`: a USER switch), so it is made
//!   after the user and capabilities are set, just before `execve` (which keeps it, but for
//!   a set-user-ID or file-capability program: such a first process outlives a killed lb
//!   until the next build or `lb prune` kills its cgroup).
//! - lb may die between the intermediate's exit and the request: then the process was
//!   reparented without a signal. A pidfd of lb, taken by lb before the fork, is checked
//!   after the request; if lb is gone the process leaves instead of running the step.
//!
//! Kernels without `pidfd_open` (before 5.3) get no request: the step is run as before,
//! and a killed build's containers are reaped by the next build or `lb prune`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering, fence};

use crate::error::{Error, Result};

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new (close-on-exec) descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    // SAFETY: a descriptor the kernel just gave this process.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process `fd` refers to has ended (`wait`: block until it has).
fn ended(fd: RawFd, wait: bool) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, if wait { -1 } else { 0 }) };
        if n >= 0 {
            return n > 0;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // Cannot tell: take it as alive (the step runs as it would have before).
            return false;
        }
    }
}

/// The descriptors the request needs, made before the container's first process exists.
pub(crate) struct ParentDeath {
    /// lb itself.
    caller: OwnedFd,
    /// The intermediate process, opened by itself before it forks the first process (-1
    /// until then, and when the first process is not its child: no new PID namespace).
    intermediate: AtomicI32,
}

impl ParentDeath {
    /// In lb, before the fork; `None` when the kernel has no pidfds.
    pub(crate) fn new() -> Option<ParentDeath> {
        Some(ParentDeath {
            caller: pidfd_open(std::process::id() as libc::pid_t)?,
            intermediate: AtomicI32::new(-1),
        })
    }

    /// In the intermediate process, before it forks the first process.
    pub(crate) fn in_intermediate(&self) {
        if let Some(fd) = pidfd_open(nix::unistd::getpid().as_raw()) {
            // Left open on purpose: the first process inherits it, exec closes it.
            let fd = std::mem::ManuallyDrop::new(fd);
            self.intermediate.store(fd.as_raw_fd(), Ordering::Relaxed);
        }
    }

    /// The descriptors [`ParentDeath::arm`] uses, to keep open until then.
    pub(crate) fn fds(&self) -> [RawFd; 2] {
        [
            self.caller.as_raw_fd(),
            self.intermediate.load(Ordering::Relaxed),
        ]
    }

    /// In the first process, after its last change of credentials and before exec: asks for
    /// SIGKILL when lb dies, then makes sure lb did not die before the request.
    pub(crate) fn arm(&self) -> Result<()> {
        let intermediate = self.intermediate.load(Ordering::Relaxed);
        if intermediate >= 0 {
            // Reparented to lb once the intermediate has ended: a request made earlier
            // would be answered by that reparenting.
            ended(intermediate, true);
        }
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| Error::sys("set the parent-death signal", e))?;
        // The request must be visible before lb's liveness is read: lb's exit reads the
        // request after it reparents, then marks itself ended (store-load ordering).
        fence(Ordering::SeqCst);
        if ended(self.caller.as_raw_fd(), false) {
            return Err(Error::setup("lb, which started this container, is gone"));
        }
        Ok(())
    }
}
