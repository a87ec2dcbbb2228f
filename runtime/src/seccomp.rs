//! The system calls a container may make: docker's default seccomp profile (moby's
//! `profiles/seccomp/default.json`), rebuilt as an x86_64 BPF program with seccompiler, so
//! that a program which runs under docker runs under lb and is refused the same things.
//! Like docker's, the filter is an allowlist and anything else fails with EPERM. Calls docker
//! ties to a capability (mounts and namespaces to CAP_SYS_ADMIN, modules to CAP_SYS_MODULE,
//! ...) are allowed only when the container keeps that capability, so the filter is built
//! per container from its bounding set. Without CAP_SYS_ADMIN, `clone` may not create
//! namespaces and `clone3`, whose flags lie in memory a filter cannot read, fails with
//! ENOSYS so that libc falls back to `clone`. Only the native ABI passes: docker also allows
//! i386 and x32 calls, but here an i386 call kills the process (seccompiler's architecture
//! check) and an x32 call, which carries x86_64's architecture tag, matches no allowed
//! number and fails with EPERM.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("the filter has {0} instructions, more than the kernel's {max}", max = libc::BPF_MAXINSNS)]
    TooLong(usize),
    #[error("installing the filter: {0}")]
    Install(#[source] io::Error),
    #[error("installing the filter: thread {0} could not take it")]
    ThreadSync(i64),
}

/// What [`default_filter`] builds and [`install`] installs, as the rest of the runtime names it.
pub type Profile = BpfProgram;

/// The x86_64 numbers, from libc, of the calls named (`SYS_name`).
macro_rules! numbers {
    ($($name:ident)*) => { &[$(libc::$name),*] };
}

/// Allowed whatever the capabilities: docker's unconditional group, its amd64-only groups
/// (`arch_prctl`, `modify_ldt`) and, from its profiles since (moby#47341, #50077),
/// `fchmodat2` and `mseal`.
///
/// Left out of docker's names, for want of an x86_64 number in libc:
/// - 32-bit and time64 variants x86_64 does not have: `_llseek`, `_newselect`, `chown32`,
///   `clock_adjtime64`, `clock_getres_time64`, `clock_gettime64`, `clock_nanosleep_time64`,
///   `fadvise64_64`, `fchown32`, `fcntl64`, `fstat64`, `fstatat64`, `fstatfs64`,
///   `ftruncate64`, `futex_time64`, `getegid32`, `geteuid32`, `getgid32`, `getgroups32`,
///   `getresgid32`, `getresuid32`, `getuid32`, `io_pgetevents_time64`, `ipc`, `lchown32`,
///   `lstat64`, `mmap2`, `mq_timedreceive_time64`, `mq_timedsend_time64`, `ppoll_time64`,
///   `pselect6_time64`, `recv`, `recvmmsg_time64`, `rt_sigtimedwait_time64`,
///   `sched_rr_get_interval_time64`, `semtimedop_time64`, `send`, `sendfile64`,
///   `setfsgid32`, `setfsuid32`, `setgid32`, `setgroups32`, `setregid32`, `setresgid32`,
///   `setresuid32`, `setreuid32`, `setuid32`, `sigprocmask`, `sigreturn`, `socketcall`,
///   `stat64`, `statfs64`, `timer_gettime64`, `timer_settime64`, `timerfd_gettime64`,
///   `timerfd_settime64`, `truncate64`, `ugetrlimit`, `utimensat_time64`, `waitpid`;
/// - `io_pgetevents`, which x86_64 has (333) but libc 0.2 does not define;
/// - of the later additions, `cachestat`, `futex_requeue`, `futex_wait`, `futex_wake`,
///   `getxattrat`, `listmount`, `listxattrat`, `map_shadow_stack`, `removexattrat`,
///   `setxattrat`, `statmount` and `uretprobe`, which libc 0.2 does not define either.
const ALLOWED: &[i64] = numbers![
        SYS_accept SYS_accept4 SYS_access SYS_adjtimex SYS_alarm SYS_bind SYS_brk SYS_capget
        SYS_capset SYS_chdir SYS_chmod SYS_chown SYS_clock_adjtime SYS_clock_getres
        SYS_clock_gettime SYS_clock_nanosleep SYS_close SYS_close_range SYS_connect
        SYS_copy_file_range SYS_creat SYS_dup SYS_dup2 SYS_dup3 SYS_epoll_create
        SYS_epoll_create1 SYS_epoll_ctl SYS_epoll_ctl_old SYS_epoll_pwait SYS_epoll_pwait2
        SYS_epoll_wait SYS_epoll_wait_old SYS_eventfd SYS_eventfd2 SYS_execve SYS_execveat
        SYS_exit SYS_exit_group SYS_faccessat SYS_faccessat2 SYS_fadvise64 SYS_fallocate
        SYS_fanotify_mark SYS_fchdir SYS_fchmod SYS_fchmodat SYS_fchmodat2 SYS_fchown
        SYS_fchownat SYS_fcntl SYS_fdatasync SYS_fgetxattr SYS_flistxattr SYS_flock SYS_fork
        SYS_fremovexattr SYS_fsetxattr SYS_fstat SYS_fstatfs SYS_fsync SYS_ftruncate SYS_futex
        SYS_futex_waitv SYS_futimesat SYS_get_robust_list SYS_get_thread_area SYS_getcpu
        SYS_getcwd SYS_getdents SYS_getdents64 SYS_getegid SYS_geteuid SYS_getgid SYS_getgroups
        SYS_getitimer SYS_getpeername SYS_getpgid SYS_getpgrp SYS_getpid SYS_getppid
        SYS_getpriority SYS_getrandom SYS_getresgid SYS_getresuid SYS_getrlimit SYS_getrusage
        SYS_getsid SYS_getsockname SYS_getsockopt SYS_gettid SYS_gettimeofday SYS_getuid
        SYS_getxattr SYS_inotify_add_watch SYS_inotify_init SYS_inotify_init1
        SYS_inotify_rm_watch SYS_io_cancel SYS_io_destroy SYS_io_getevents SYS_io_setup
        SYS_io_submit SYS_io_uring_enter SYS_io_uring_register SYS_io_uring_setup SYS_ioctl
        SYS_ioprio_get SYS_ioprio_set SYS_kill SYS_landlock_add_rule SYS_landlock_create_ruleset
        SYS_landlock_restrict_self SYS_lchown SYS_lgetxattr SYS_link SYS_linkat SYS_listen
        SYS_listxattr SYS_llistxattr SYS_lremovexattr SYS_lseek SYS_lsetxattr SYS_lstat
        SYS_madvise SYS_membarrier SYS_memfd_create SYS_memfd_secret SYS_mincore SYS_mkdir
        SYS_mkdirat SYS_mknod SYS_mknodat SYS_mlock SYS_mlock2 SYS_mlockall SYS_mmap
        SYS_mprotect SYS_mq_getsetattr SYS_mq_notify SYS_mq_open SYS_mq_timedreceive
        SYS_mq_timedsend SYS_mq_unlink SYS_mremap SYS_mseal SYS_msgctl SYS_msgget SYS_msgrcv
        SYS_msgsnd SYS_msync SYS_munlock SYS_munlockall SYS_munmap SYS_name_to_handle_at
        SYS_nanosleep SYS_newfstatat SYS_open SYS_openat SYS_openat2 SYS_pause SYS_pidfd_open
        SYS_pidfd_send_signal SYS_pipe SYS_pipe2 SYS_pkey_alloc SYS_pkey_free SYS_pkey_mprotect
        SYS_poll SYS_ppoll SYS_prctl SYS_pread64 SYS_preadv SYS_preadv2 SYS_prlimit64
        SYS_process_mrelease SYS_pselect6 SYS_pwrite64 SYS_pwritev SYS_pwritev2 SYS_read
        SYS_readahead SYS_readlink SYS_readlinkat SYS_readv SYS_recvfrom SYS_recvmmsg
        SYS_recvmsg SYS_remap_file_pages SYS_removexattr SYS_rename SYS_renameat SYS_renameat2
        SYS_restart_syscall SYS_rmdir SYS_rseq SYS_rt_sigaction SYS_rt_sigpending
        SYS_rt_sigprocmask SYS_rt_sigqueueinfo SYS_rt_sigreturn SYS_rt_sigsuspend
        SYS_rt_sigtimedwait SYS_rt_tgsigqueueinfo SYS_sched_get_priority_max
        SYS_sched_get_priority_min SYS_sched_getaffinity SYS_sched_getattr SYS_sched_getparam
        SYS_sched_getscheduler SYS_sched_rr_get_interval SYS_sched_setaffinity SYS_sched_setattr
        SYS_sched_setparam SYS_sched_setscheduler SYS_sched_yield SYS_seccomp SYS_select
        SYS_semctl SYS_semget SYS_semop SYS_semtimedop SYS_sendfile SYS_sendmmsg SYS_sendmsg
        SYS_sendto SYS_set_robust_list SYS_set_thread_area SYS_set_tid_address SYS_setfsgid
        SYS_setfsuid SYS_setgid SYS_setgroups SYS_setitimer SYS_setpgid SYS_setpriority
        SYS_setregid SYS_setresgid SYS_setresuid SYS_setreuid SYS_setrlimit SYS_setsid
        SYS_setsockopt SYS_setuid SYS_setxattr SYS_shmat SYS_shmctl SYS_shmdt SYS_shmget
        SYS_shutdown SYS_sigaltstack SYS_signalfd SYS_signalfd4 SYS_socketpair SYS_splice
        SYS_stat SYS_statfs SYS_statx SYS_symlink SYS_symlinkat SYS_sync SYS_sync_file_range
        SYS_syncfs SYS_sysinfo SYS_tee SYS_tgkill SYS_time SYS_timer_create SYS_timer_delete
        SYS_timer_getoverrun SYS_timer_gettime SYS_timer_settime SYS_timerfd_create
        SYS_timerfd_gettime SYS_timerfd_settime SYS_times SYS_tkill SYS_truncate SYS_umask
        SYS_uname SYS_unlink SYS_unlinkat SYS_utime SYS_utimensat SYS_utimes SYS_vfork
        SYS_vmsplice SYS_wait4 SYS_waitid SYS_write SYS_writev
        SYS_arch_prctl SYS_modify_ldt
];

/// docker allows these from kernel 4.8 on, where a tracer can no longer lead its tracee
/// around the filter; before, only with CAP_SYS_PTRACE.
const ALLOWED_FROM_KERNEL_4_8: &[i64] =
    numbers![SYS_process_vm_readv SYS_process_vm_writev SYS_ptrace];

/// Allowed when the container keeps the capability: docker's groups with `includes.caps`.
/// Left out: `umount`, `stime` and `clock_settime64` (no x86_64 number), and the
/// CAP_SYS_ADMIN `lsm_get_self_attr`, `lsm_set_self_attr`, `lsm_list_modules` of docker's
/// newer profiles (moby#50097), which libc 0.2 does not define.
const ALLOWED_WITH_CAP: &[(&str, &[i64])] = &[
    ("CAP_DAC_READ_SEARCH", numbers![SYS_open_by_handle_at]),
    (
        "CAP_SYS_ADMIN",
        numbers![
            SYS_bpf SYS_clone SYS_clone3 SYS_fanotify_init SYS_fsconfig SYS_fsmount SYS_fsopen
            SYS_fspick SYS_lookup_dcookie SYS_mount SYS_mount_setattr SYS_move_mount
            SYS_open_tree SYS_perf_event_open SYS_quotactl SYS_quotactl_fd SYS_setdomainname
            SYS_sethostname SYS_setns SYS_syslog SYS_umount2 SYS_unshare
        ],
    ),
    ("CAP_SYS_BOOT", numbers![SYS_reboot]),
    ("CAP_SYS_CHROOT", numbers![SYS_chroot]),
    (
        "CAP_SYS_MODULE",
        numbers![SYS_delete_module SYS_init_module SYS_finit_module],
    ),
    ("CAP_SYS_PACCT", numbers![SYS_acct]),
    (
        "CAP_SYS_PTRACE",
        numbers![
            SYS_kcmp SYS_pidfd_getfd SYS_process_madvise SYS_process_vm_readv
            SYS_process_vm_writev SYS_ptrace
        ],
    ),
    ("CAP_SYS_RAWIO", numbers![SYS_iopl SYS_ioperm]),
    ("CAP_SYS_TIME", numbers![SYS_settimeofday SYS_clock_settime]),
    ("CAP_SYS_TTY_CONFIG", numbers![SYS_vhangup]),
    (
        "CAP_SYS_NICE",
        numbers![SYS_get_mempolicy SYS_mbind SYS_set_mempolicy SYS_set_mempolicy_home_node],
    ),
    ("CAP_SYSLOG", numbers![SYS_syslog]),
    ("CAP_BPF", numbers![SYS_bpf]),
    ("CAP_PERFMON", numbers![SYS_perf_event_open]),
];

/// The personalities docker lets `personality` set: Linux and 32-bit Linux (PER_LINUX32),
/// each also with 2.6-style version numbers (UNAME26), and 0xffffffff, which only queries.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The `clone` flags that make namespaces, which docker keeps for CAP_SYS_ADMIN.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// docker's default profile compiled for a process that keeps `caps` (names like
/// "CAP_SYS_ADMIN") in its bounding set.
pub fn default_filter(caps: &[String]) -> Result<BpfProgram, SeccompError> {
    let keeps = |cap: &str| caps.iter().any(|c| c == cap);
    let sys_admin = keeps("CAP_SYS_ADMIN");

    let mut unconditional: BTreeSet<i64> = ALLOWED.iter().copied().collect();
    if !kernel_older_than(4, 8) {
        unconditional.extend(ALLOWED_FROM_KERNEL_4_8);
    }
    for (cap, calls) in ALLOWED_WITH_CAP {
        if keeps(cap) {
            unconditional.extend(*calls);
        }
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = unconditional
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();

    // The kernel reads `socket`'s family and `personality`'s persona as 32-bit values, so
    // only the low halves are compared: a value with high bits set cannot slip past.
    let mut with_args = vec![
        (
            libc::SYS_socket,
            vec![first_arg(
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_VSOCK as u64,
            )?],
        ),
        (
            libc::SYS_personality,
            PERSONALITIES
                .iter()
                .map(|p| first_arg(SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *p))
                .collect::<Result<_, _>>()?,
        ),
    ];
    if !sys_admin {
        with_args.push((
            libc::SYS_clone,
            vec![first_arg(
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
                0,
            )?],
        ));
    }
    for (nr, conditions) in with_args {
        // A call allowed outright stays so: conditions would only narrow it.
        rules.entry(nr).or_insert(conditions);
    }

    let allowlist = compile(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )?;
    if sys_admin {
        return Ok(allowlist);
    }
    let no_clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    followed_by(no_clone3, allowlist)
}

/// Installs `prog` on every thread of the calling process (SECCOMP_FILTER_FLAG_TSYNC). The
/// caller runs it as late as possible before execve; without CAP_SYS_ADMIN it needs
/// no_new_privs set first. (Not seccompiler's `apply_filter_all_threads`: that always sets
/// no_new_privs, which docker leaves off so that setuid programs in images keep working.)
pub fn install(prog: &BpfProgram) -> Result<(), SeccompError> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| SeccompError::TooLong(prog.len()))?,
        // seccompiler's sock_filter is the kernel's struct, #[repr(C)] like libc's.
        filter: prog.as_ptr().cast_mut().cast(),
    };
    // SAFETY: the kernel only reads the program, which outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    match r {
        0 => Ok(()),
        // With TSYNC, a positive result is a thread that cannot take the filter.
        tid if tid > 0 => Err(SeccompError::ThreadSync(tid)),
        _ => Err(SeccompError::Install(io::Error::last_os_error())),
    }
}

fn first_arg(
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompRule, SeccompError> {
    Ok(SeccompRule::new(vec![SeccompCondition::new(
        0, len, op, value,
    )?])?)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    Ok(SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)?.try_into()?)
}

/// One program that runs `first` and, where `first` would allow the call, `then`: a
/// seccompiler filter has a single action for its matches, and docker's profile needs two
/// errnos (EPERM, and ENOSYS for clone3). Each of `first`'s "allow" returns becomes a jump
/// to `then`, appended after it; classic BPF jumps only forward, relative to the next
/// instruction, so `then`'s own jumps are unchanged.
fn followed_by(mut first: BpfProgram, then: BpfProgram) -> Result<BpfProgram, SeccompError> {
    let allow = sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    };
    let len = first.len();
    for (i, insn) in first.iter_mut().enumerate() {
        if *insn == allow {
            *insn = sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JA) as u16,
                jt: 0,
                jf: 0,
                k: (len - i - 1) as u32,
            };
        }
    }
    first.extend(then);
    if first.len() > libc::BPF_MAXINSNS as usize {
        return Err(SeccompError::TooLong(first.len()));
    }
    Ok(first)
}

/// Whether the running kernel is older than `major.minor`; an unreadable release counts as
/// older, the stricter answer.
fn kernel_older_than(major: u32, minor: u32) -> bool {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid utsname to fill.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return true;
    }
    // SAFETY: uname NUL-terminates release.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    match (
        numbers.next().and_then(|n| n.parse::<u32>().ok()),
        numbers.next().and_then(|n| n.parse::<u32>().ok()),
    ) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use nix::sys::signal::Signal;
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};

    /// The filter's answer to what it refuses.
    const REFUSED: Result<(), i32> = Err(libc::EPERM);
    /// Where the kernel numbers x32 calls: x86_64's architecture tag, this bit set.
    const X32_SYSCALL_BIT: i64 = 0x4000_0000;

    fn docker_caps_and(extra: &[&str]) -> Vec<String> {
        crate::defaults::DEFAULT_CAPS
            .iter()
            .chain(extra)
            .map(|c| c.to_string())
            .collect()
    }

    /// A raw system call (missing arguments are 0) and what it must give under the filter:
    /// `Ok` for any result >= 0, `Err` for that errno. The arguments are such that a refused
    /// call the filter let through would do no harm (null pointers, unknown flags, no
    /// reboot magic) and, for root, fail with another errno; an unprivileged caller may get
    /// EPERM from the kernel's own capability check as well.
    struct Call {
        name: &'static str,
        nr: i64,
        args: &'static [i64],
        expect: Result<(), i32>,
    }

    const fn call(
        name: &'static str,
        nr: i64,
        args: &'static [i64],
        expect: Result<(), i32>,
    ) -> Call {
        Call {
            name,
            nr,
            args,
            expect,
        }
    }

    /// Makes each call in turn; 0 when all gave what they should, else the first that did
    /// not, counted from 1.
    fn first_failure(calls: &[Call]) -> i32 {
        // SAFETY (all blocks): raw system calls with integer arguments, and _exit.
        let me = unsafe { libc::getpid() };
        for (i, c) in calls.iter().enumerate() {
            let arg = |n: usize| c.args.get(n).copied().unwrap_or(0);
            let r = unsafe { libc::syscall(c.nr, arg(0), arg(1), arg(2), arg(3), arg(4), arg(5)) };
            if unsafe { libc::getpid() } != me {
                // The child of a namespace-making clone the filter let through.
                unsafe { libc::_exit(0) };
            }
            let got = if r >= 0 {
                Ok(())
            } else {
                Err(Errno::last_raw())
            };
            if got != c.expect {
                return i as i32 + 1;
            }
        }
        0
    }

    /// Forks a child that sets no_new_privs (so that no root is needed to install a filter),
    /// installs `prog` if any and exits with what `checks` returns; returns how it ended.
    fn in_child(prog: Option<&BpfProgram>, checks: impl FnOnce() -> i32) -> WaitStatus {
        // SAFETY: the child makes system calls only and leaves with _exit.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = if nix::sys::prctl::set_no_new_privs().is_err() {
                    101
                } else if prog.is_some_and(|p| install(p).is_err()) {
                    102
                } else {
                    checks()
                };
                // SAFETY: leaving the forked child without running the parent's exit code.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
        }
    }

    fn assert_calls(caps: &[String], calls: &[Call]) {
        let prog = default_filter(caps).expect("building the filter");
        match in_child(Some(&prog), || first_failure(calls)) {
            WaitStatus::Exited(_, 0) => {}
            WaitStatus::Exited(_, n) if n >= 1 && n as usize <= calls.len() => {
                let c = &calls[n as usize - 1];
                panic!(
                    "{} should give {:?}",
                    c.name,
                    c.expect.map_err(Errno::from_raw)
                );
            }
            other => panic!("the confined child ended with {other:?}"),
        }
    }

    #[test]
    fn refuses_what_docker_refuses() {
        use libc::*;
        let calls = [
            call("mount", SYS_mount, &[], REFUSED),
            call("umount2", SYS_umount2, &[0, 0x100], REFUSED),
            call("reboot", SYS_reboot, &[], REFUSED),
            call("kexec_load", SYS_kexec_load, &[0, 0, 0, 0x8000], REFUSED),
            call(
                "kexec_file_load",
                SYS_kexec_file_load,
                &[-1, -1, 0, 0, 0x8000],
                REFUSED,
            ),
            call("init_module", SYS_init_module, &[], REFUSED),
            call("finit_module", SYS_finit_module, &[-1], REFUSED),
            call("delete_module", SYS_delete_module, &[], REFUSED),
            call("open_by_handle_at", SYS_open_by_handle_at, &[-1], REFUSED),
            call("keyctl", SYS_keyctl, &[9999], REFUSED),
            call("add_key", SYS_add_key, &[], REFUSED),
            call("request_key", SYS_request_key, &[], REFUSED),
            call("bpf", SYS_bpf, &[9999], REFUSED),
            call(
                "perf_event_open",
                SYS_perf_event_open,
                &[0, 0, -1, -1],
                REFUSED,
            ),
            call("fsopen", SYS_fsopen, &[0, 0xff], REFUSED),
            call("setns", SYS_setns, &[-1], REFUSED),
            call("unshare(0)", SYS_unshare, &[0], REFUSED),
            call(
                "unshare(CLONE_NEWUSER)",
                SYS_unshare,
                &[CLONE_NEWUSER as i64],
                REFUSED,
            ),
            call(
                "clone(CLONE_NEWUSER)",
                SYS_clone,
                &[(CLONE_NEWUSER | SIGCHLD) as i64],
                REFUSED,
            ),
            call("sethostname", SYS_sethostname, &[0, 9999], REFUSED),
            call("syslog", SYS_syslog, &[9999], REFUSED),
            call("swapoff", SYS_swapoff, &[], REFUSED),
            call("clock_settime", SYS_clock_settime, &[0], REFUSED),
            call("kcmp", SYS_kcmp, &[], REFUSED),
            call("pidfd_getfd", SYS_pidfd_getfd, &[-1, -1], REFUSED),
            call("iopl", SYS_iopl, &[4], REFUSED),
            call("set_mempolicy", SYS_set_mempolicy, &[99], REFUSED),
            call("userfaultfd", SYS_userfaultfd, &[0xffff], REFUSED),
            call(
                "socket(AF_VSOCK)",
                SYS_socket,
                &[AF_VSOCK as i64, SOCK_STREAM as i64],
                REFUSED,
            ),
            call("personality(PER_BSD)", SYS_personality, &[6], REFUSED),
            call("x32 getpid", X32_SYSCALL_BIT | SYS_getpid, &[], REFUSED),
            call("clone3", SYS_clone3, &[], Err(ENOSYS)),
        ];
        assert_calls(&docker_caps_and(&[]), &calls);
    }

    #[test]
    fn allows_what_docker_allows() {
        use libc::*;
        let mut calls = vec![
            call("getpid", SYS_getpid, &[], Ok(())),
            call(
                "personality(query)",
                SYS_personality,
                &[0xffff_ffff],
                Ok(()),
            ),
            call(
                "socket(AF_UNIX)",
                SYS_socket,
                &[AF_UNIX as i64, SOCK_STREAM as i64],
                Ok(()),
            ),
            // CAP_SYS_CHROOT is one of docker's defaults.
            call("chroot", SYS_chroot, &[], Err(EFAULT)),
        ];
        if !kernel_older_than(4, 8) {
            calls.push(call("process_vm_readv", SYS_process_vm_readv, &[0], Ok(())));
        }
        assert_calls(&docker_caps_and(&[]), &calls);

        let prog = default_filter(&docker_caps_and(&[])).expect("building the filter");
        // SAFETY: plain system calls on descriptors and buffers of this function.
        let status = in_child(Some(&prog), || unsafe {
            let mut fds = [0; 2];
            if libc::pipe2(fds.as_mut_ptr(), O_CLOEXEC) != 0 {
                return 1;
            }
            if libc::write(fds[1], b"x".as_ptr().cast(), 1) != 1 {
                return 2;
            }
            if libc::openat(AT_FDCWD, c"/dev/null".as_ptr(), O_RDONLY) < 0 {
                return 3;
            }
            // glibc's fork is a clone without namespace flags.
            match libc::fork() {
                -1 => 4,
                0 => libc::_exit(7),
                pid => {
                    let mut status = 0;
                    if libc::waitpid(pid, &mut status, 0) == pid
                        && WIFEXITED(status)
                        && WEXITSTATUS(status) == 7
                    {
                        0
                    } else {
                        5
                    }
                }
            }
        });
        assert!(
            matches!(status, WaitStatus::Exited(_, 0)),
            "pipe/write (1, 2), openat (3), fork (4, 5): {status:?}"
        );
    }

    #[test]
    fn cap_sys_admin_lets_namespaces_and_mounts_through() {
        use libc::*;
        // The kernel's own answers: the filter no longer stands in the way.
        let calls = [
            call("unshare(0)", SYS_unshare, &[0], Ok(())),
            call("setns", SYS_setns, &[-1], Err(EBADF)),
            call("mount", SYS_mount, &[], Err(EFAULT)),
            call("umount2", SYS_umount2, &[0, 0x100], Err(EINVAL)),
            call("clone3", SYS_clone3, &[], Err(EINVAL)),
            // Still refused: modules need CAP_SYS_MODULE.
            call("init_module", SYS_init_module, &[], REFUSED),
        ];
        assert_calls(&docker_caps_and(&["CAP_SYS_ADMIN"]), &calls);
    }

    #[test]
    fn i386_calls_kill_the_process() {
        let i386_getpid = || {
            let mut eax: u32 = 20; // getpid in the i386 table
            // SAFETY: the i386 entry with a call without arguments; it returns in eax and,
            // on some kernels, clobbers r8-r11.
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inout("eax") eax,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    options(nostack),
                )
            };
            if eax as i32 > 0 { 0 } else { 1 }
        };
        if !matches!(in_child(None, i386_getpid), WaitStatus::Exited(_, 0)) {
            lb_testkit::skip("the kernel runs no i386 system calls (no ia32 emulation)");
            return;
        }
        let prog = default_filter(&docker_caps_and(&[])).expect("building the filter");
        let status = in_child(Some(&prog), || {
            // No core file for the expected death.
            let _ = nix::sys::prctl::set_dumpable(false);
            i386_getpid()
        });
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
            "{status:?}"
        );
    }

    #[test]
    fn the_filter_is_deterministic() {
        for extra in [&[][..], &["CAP_SYS_ADMIN"]] {
            let caps = docker_caps_and(extra);
            assert_eq!(
                default_filter(&caps).expect("building the filter"),
                default_filter(&caps).expect("building the filter")
            );
        }
    }
}
