//! The container's first process, from the fork to `execve`, as explicit steps (youki's
//! `container_init_process`): stdio, the root file system, hostname and loopback, pivot,
//! masked paths, rlimits, the user, descriptors, the working directory, seccomp,
//! capabilities, no_new_privs, exec. It reports a failure through a pipe as "CODE MESSAGE"
//! and exits; a successful exec closes the pipe (close-on-exec), which the parent reads as
//! success.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::mount::{MsFlags, mount};

use crate::error::{Error, Result};
use crate::launch::{Launch, Stdio};
use crate::parent_death::ParentDeath;
use crate::rootfs;
use crate::user::{ExecUser, resolve};

/// docker's PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the steps; never returns. `report` is the write end of the parent's error pipe.
pub(crate) fn run(
    l: &Launch,
    seccomp: Option<&crate::seccomp::Profile>,
    death: Option<&ParentDeath>,
    report: OwnedFd,
) -> ! {
    let result = steps(l, seccomp, death, report.as_raw_fd());
    exit_with(result, report)
}

/// A process `lb exec` starts in a running container, already in its namespaces and
/// cgroup: the process steps of the container's own first process, from the user on.
pub(crate) fn run_exec(
    e: &crate::launch::Exec,
    seccomp: Option<&crate::seccomp::Profile>,
    report: OwnedFd,
) -> ! {
    let result = (|| {
        reset_signals();
        setup_stdio(&e.stdio)?;
        let process = e.spec.process().clone().unwrap_or_default();
        become_process(
            &process,
            e.user.as_deref(),
            &e.group_add,
            seccomp,
            report.as_raw_fd(),
            false,
            None,
        )
    })();
    exit_with(result, report)
}

fn exit_with(result: Result<Never>, report: OwnedFd) -> ! {
    let err = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let mut f = std::fs::File::from(report);
    let _ = f.write_all(&err.encode());
    drop(f);
    // SAFETY: leaving the forked child without running the parent's exit handlers.
    unsafe { libc::_exit(err.code()) }
}

enum Never {}

fn steps(
    l: &Launch,
    seccomp: Option<&crate::seccomp::Profile>,
    death: Option<&ParentDeath>,
    report: RawFd,
) -> Result<Never> {
    reset_signals();
    setup_stdio(&l.stdio)?;
    let spec = &l.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let own_ns = |t: oci_spec::runtime::LinuxNamespaceType| {
        linux
            .namespaces()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|n| n.typ() == t && n.path().is_none())
    };

    // Root file system, in the new mount namespace: never propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make / rslave", e))?;
    l.layers.mount(&l.rootfs)?;
    let root = nix::fcntl::open(
        &l.rootfs,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", l.rootfs.display()), e).with_path(&l.rootfs))?;
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        rootfs::mount_one(&l.rootfs, root.as_raw_fd(), m)?;
    }
    let console = match &l.stdio {
        Stdio::Tty { slave_path, .. } => Some(slave_path.as_path()),
        _ => None,
    };
    rootfs::populate_dev(root.as_raw_fd(), console)?;
    rootfs::make_devices(root.as_raw_fd(), linux.devices().as_deref().unwrap_or(&[]))?;
    drop(root);

    if own_ns(oci_spec::runtime::LinuxNamespaceType::Uts)
        && let Some(h) = spec.hostname()
    {
        nix::unistd::sethostname(h).map_err(|e| Error::sys(format!("sethostname {h}"), e))?;
    }
    if own_ns(oci_spec::runtime::LinuxNamespaceType::Network) {
        loopback_up()?;
    }

    rootfs::pivot(&l.rootfs)?;
    if let Some(sysctls) = linux.sysctl() {
        rootfs::write_sysctls(sysctls)?;
    }
    rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or(&[]))?;
    rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or(&[]))?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::remount_readonly("/")?;
    }

    let process = spec.process().clone().unwrap_or_default();
    become_process(
        &process,
        l.user.as_deref(),
        &l.group_add,
        seccomp,
        report,
        l.init,
        death,
    )
}

/// The last steps, in the container's root: rlimits, the user, descriptors, the working
/// directory, seccomp, capabilities and no_new_privs, then exec (under a reaping init when
/// `init`); with `death`, the process dies with lb from then on (`parent_death.rs`).
fn become_process(
    process: &oci_spec::runtime::Process,
    user: Option<&str>,
    group_add: &[String],
    seccomp: Option<&crate::seccomp::Profile>,
    report: RawFd,
    init: bool,
    death: Option<&ParentDeath>,
) -> Result<Never> {
    set_rlimits(process)?;
    let group_file = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut user = match user {
        Some(u) => resolve(
            u,
            &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
            &group_file,
        )
        .map_err(Error::User)?,
        None => ExecUser {
            uid: process.user().uid(),
            gid: process.user().gid(),
            additional_gids: process.user().additional_gids().clone().unwrap_or_default(),
            home: "/".into(),
        },
    };
    // `--group-add`: names or ids, looked up in the container's own group file; and the
    // primary group as a supplementary one too, as docker's runtime sets it since
    // CVE-2023-25173 (a group-restricted file must not become readable by dropping the
    // primary group with setgroups).
    let extra = crate::user::additional_groups(group_add, &group_file).map_err(Error::User)?;
    for gid in extra.into_iter().chain([user.gid]) {
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if let Some(e) = env.iter().find(|e| !e.contains('=')) {
        return Err(Error::invalid(format!("invalid environment entry {e:?}")));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }

    // No descriptor of lb survives into the container (CVE-2024-21626): everything but
    // stdio and the report pipe is closed before the working directory is even looked at.
    let mut keep = vec![report];
    keep.extend(death.map(ParentDeath::fds).into_iter().flatten());
    close_other_fds(&keep)?;
    enter_workdir(process.cwd())?;
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o022) };

    let nnp = process.no_new_privileges().unwrap_or(false);
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we have it.
    if let Some(p) = seccomp
        && !nnp
    {
        crate::seccomp::install(p)?;
    }
    switch_user_and_caps(&user, process.capabilities().as_ref())?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(|e| Error::sys("no_new_privs", e))?;
        if let Some(p) = seccomp {
            crate::seccomp::install(p)?;
        }
    }
    // After the last change of credentials, which would clear it.
    if let Some(d) = death {
        d.arm()?;
    }
    if init {
        become_init(report)?;
    }
    exec(process.args().as_deref().unwrap_or(&[]), &env)
}

/// `--init`: this process stays as PID 1, a tiny init in the way of docker's tini, and its
/// child goes on to exec the command. The init forwards every signal it receives to the
/// child, reaps every orphan the container leaves to it, and exits with the child's
/// status once the child ends. Returns in the child only.
fn become_init(report: RawFd) -> Result<()> {
    // Blocked before the fork, so that no signal (a quick child's SIGCHLD above all) comes
    // before the init waits for it; the child unblocks them before its exec.
    let mut all = nix::sys::signal::SigSet::all();
    all.remove(nix::sys::signal::SIGKILL);
    all.remove(nix::sys::signal::SIGSTOP);
    all.thread_block()
        .map_err(|e| Error::sys("block signals", e))?;
    // SAFETY: the process is single-threaded; the child returns to exec.
    let child =
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork under init", e))? {
            nix::unistd::ForkResult::Child => {
                all.thread_unblock()
                    .map_err(|e| Error::sys("unblock signals", e))?;
                return Ok(());
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
    // The child's exec closes its copy of the report pipe; this copy must not keep it open.
    // SAFETY: closing a descriptor this process owns and no longer uses.
    unsafe { libc::close(report) };
    loop {
        let Ok(sig) = all.wait() else { continue };
        if sig != nix::sys::signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) if st.pid() == Some(child) => {
                    let code = crate::launch::exit_code(st).unwrap_or(255);
                    // SAFETY: leaving PID 1; the kernel ends the rest of the namespace.
                    unsafe { libc::_exit(code) }
                }
                Ok(_) => {}
            }
        }
    }
}

fn reset_signals() {
    // Ignored signals stay ignored across exec, and the parent may block some: give the
    // container a clean slate.
    // SAFETY: plain signal calls on valid signal numbers.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn setup_stdio(stdio: &Stdio) -> Result<()> {
    let dup = |from: RawFd, to: RawFd| -> Result<()> {
        if from != to {
            // SAFETY: dup2 on descriptors this process owns.
            if unsafe { libc::dup2(from, to) } < 0 {
                return Err(Error::io("dup2", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    };
    match stdio {
        Stdio::Inherit => Ok(()),
        Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            dup(stdin.as_raw_fd(), 0)?;
            dup(stdout.as_raw_fd(), 1)?;
            dup(stderr.as_raw_fd(), 2)
        }
        Stdio::Tty { slave, .. } => {
            nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
            // SAFETY: TIOCSCTTY on the pty slave we own.
            if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
                return Err(Error::io(
                    "set controlling terminal",
                    std::io::Error::last_os_error(),
                ));
            }
            for fd in 0..3 {
                dup(slave.as_raw_fd(), fd)?;
            }
            Ok(())
        }
    }
}

/// A new network namespace starts with `lo` down; docker's containers have it up.
fn loopback_up() -> Result<()> {
    // SAFETY: an ioctl on a socket we own, with a zeroed ifreq naming "lo".
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(Error::io("socket", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let e = std::io::Error::last_os_error();
        libc::close(sock);
        if r < 0 {
            return Err(Error::io("bring up lo", e));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn set_rlimits(process: &oci_spec::runtime::Process) -> Result<()> {
    for r in process.rlimits().as_deref().unwrap_or(&[]) {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let res = rlimit_resource(&name)
            .ok_or_else(|| Error::invalid(format!("unknown rlimit {name}")))?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid resource and struct.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            let e = std::io::Error::last_os_error();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: as above.
            unsafe { libc::getrlimit(res, &mut cur) };
            let short = name.trim_start_matches("RLIMIT_").to_lowercase();
            return Err(Error::Rlimit {
                name: short,
                soft: r.soft(),
                hard: r.hard(),
                max: cur.rlim_max,
                source: e,
            });
        }
    }
    Ok(())
}

fn close_other_fds(keep: &[RawFd]) -> Result<()> {
    // Everything but stdio and `keep`: the report pipe and the parent-death pidfds (all
    // close-on-exec).
    let close = |from: RawFd, to: u32| -> Result<()> {
        // SAFETY: closing descriptors nothing in this process uses any more.
        if unsafe { libc::syscall(libc::SYS_close_range, from as u32, to, 0u32) } < 0 {
            return Err(Error::io("close_range", std::io::Error::last_os_error()));
        }
        Ok(())
    };
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3;
    for fd in keep {
        if fd > from {
            close(from, fd as u32 - 1)?;
        }
        from = fd + 1;
    }
    close(from, u32::MAX)
}

fn enter_workdir(cwd: &Path) -> Result<()> {
    if !cwd.is_absolute() {
        return Err(Error::invalid(format!(
            "the working directory '{}' is invalid: it needs to be an absolute path",
            cwd.display()
        )));
    }
    std::fs::create_dir_all(cwd).map_err(|e| {
        Error::io(format!("create working directory {}", cwd.display()), e).with_path(cwd)
    })?;
    nix::unistd::chdir(cwd)
        .map_err(|e| Error::sys(format!("chdir to cwd {}", cwd.display()), e).with_path(cwd))?;
    // A directory reached through a leaked descriptor is outside the root: the kernel
    // reports it as "(unreachable)/...", never as an absolute path.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::setup(format!(
            "working directory {} is outside the container's root",
            cwd.display()
        ))),
    }
}

fn to_caps(set: Option<&oci_spec::runtime::Capabilities>) -> caps::CapsHashSet {
    set.into_iter()
        .flatten()
        .filter_map(|c| caps::Capability::from_str(&crate::defaults::capability_name(c)).ok())
        .collect()
}

fn switch_user_and_caps(
    user: &ExecUser,
    c: Option<&oci_spec::runtime::LinuxCapabilities>,
) -> Result<()> {
    use caps::CapSet;
    // What lb itself may hold: a capability outside its own bounding set (a sandbox that
    // withholds one) cannot be given, and asking for it would fail --privileged outright.
    let held = caps::read(None, CapSet::Bounding).unwrap_or_else(|_| caps::all());
    let to_caps =
        |set| -> caps::CapsHashSet { to_caps(set).intersection(&held).copied().collect() };
    let bounding = to_caps(c.and_then(|c| c.bounding().as_ref()));
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            // A capability this kernel does not know fails with EINVAL: nothing to drop.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("keepcaps", e))?;
    let groups: Vec<nix::unistd::Gid> = user
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| Error::sys("setgroups", e))?;
    nix::unistd::setresgid(user.gid.into(), user.gid.into(), user.gid.into())
        .map_err(|e| Error::sys(format!("setgid {}", user.gid), e))?;
    nix::unistd::setresuid(user.uid.into(), user.uid.into(), user.uid.into())
        .map_err(|e| Error::sys(format!("setuid {}", user.uid), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("keepcaps", e))?;
    let set = |which: CapSet, caps: caps::CapsHashSet| {
        caps::set(None, which, &caps).map_err(|source| Error::Capabilities { set: which, source })
    };
    // docker: a non-root user keeps the bounding set but starts with no effective powers.
    let (effective, permitted, inheritable) = if user.uid == 0 {
        (
            to_caps(c.and_then(|c| c.effective().as_ref())),
            to_caps(c.and_then(|c| c.permitted().as_ref())),
            to_caps(c.and_then(|c| c.inheritable().as_ref())),
        )
    } else {
        Default::default()
    };
    set(CapSet::Inheritable, inheritable)?;
    set(CapSet::Effective, Default::default())?;
    set(CapSet::Permitted, permitted)?;
    set(CapSet::Effective, effective)?;
    let _ = caps::clear(None, CapSet::Ambient);
    Ok(())
}

/// The program to run: `args[0]` as a path, or looked up in the container's own PATH.
fn find_program(name: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = || Error::NotInPath { name: name.into() };
    if name.is_empty() {
        return Err(not_found());
    }
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match std::fs::metadata(&p) {
            Ok(_) => Ok(p),
            Err(source) => Err(Error::Stat {
                name: name.into(),
                source,
            }),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if let Ok(md) = std::fs::metadata(&p)
            && md.is_file()
            && nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok()
        {
            return Ok(p);
        }
    }
    Err(not_found())
}

fn exec(args: &[String], env: &[String]) -> Result<Never> {
    let name = args.first().map(String::as_str).unwrap_or("");
    let program = find_program(name, env)?;
    let c = |s: &str| CString::new(s).map_err(|_| Error::invalid(format!("NUL byte in {s:?}")));
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let prog =
        CString::new(program.as_os_str().as_bytes()).map_err(|_| Error::invalid("NUL in path"))?;
    let e = nix::unistd::execve(&prog, &argv, &envp).unwrap_err();
    Err(Error::Exec {
        name: name.into(),
        path: program,
        errno: e,
    })
}
