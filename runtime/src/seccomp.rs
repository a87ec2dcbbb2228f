//! docker's default seccomp confinement, in effect: every system call docker's default
//! profile refuses to a container with docker's default capabilities fails with EPERM here
//! (kernel modules, kexec, reboot, mounts and the new mount API, keyrings, bpf,
//! perf_event_open, open_by_handle_at, namespace creation through unshare/clone/setns,
//! clock setting, swap, accounting, ...), each re-allowed when the container keeps the
//! capability docker's profile conditions it on; `clone3` fails with ENOSYS so that libc
//! falls back to `clone`, whose flags the filter can inspect. Built as a deny list over
//! seccompiler's BPF (x86_64; other architectures' calls are killed by its arch check).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the filter: {0}")]
    Build(String),
    #[error("installing the filter: {0}")]
    Install(String),
}

/// The compiled profile: filters installed together (one errno each).
pub type Profile = Vec<BpfProgram>;

const NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Denied unless the container keeps the capability (docker's `includes.caps`).
const BY_CAP: &[(&str, &[i64])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
            libc::SYS_quotactl,
            libc::SYS_lookup_dcookie,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_fanotify_init,
            libc::SYS_name_to_handle_at,
            libc::SYS_syslog,
            libc::SYS_vhangup,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_sethostname,
            libc::SYS_setdomainname,
            libc::SYS_iopl,
            libc::SYS_ioperm,
        ],
    ),
    (
        "CAP_SYS_MODULE",
        &[
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
        ],
    ),
    (
        "CAP_SYS_BOOT",
        &[
            libc::SYS_reboot,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
        ],
    ),
    ("CAP_DAC_READ_SEARCH", &[libc::SYS_open_by_handle_at]),
    (
        "CAP_SYS_TIME",
        &[
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_adjtimex,
            libc::SYS_clock_adjtime,
        ],
    ),
    ("CAP_SYS_PACCT", &[libc::SYS_acct]),
    (
        "CAP_SYS_NICE",
        &[
            libc::SYS_get_mempolicy,
            libc::SYS_mbind,
            libc::SYS_set_mempolicy,
        ],
    ),
    (
        "CAP_SYS_PTRACE",
        &[libc::SYS_kcmp, libc::SYS_process_madvise],
    ),
];

/// Denied to every container: docker's profile never allows them.
const ALWAYS: &[i64] = &[
    libc::SYS_add_key,
    libc::SYS_keyctl,
    libc::SYS_request_key,
    libc::SYS_userfaultfd,
    libc::SYS_nfsservctl,
    libc::SYS_uselib,
    libc::SYS_ustat,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_afs_syscall,
    libc::SYS_tuxcall,
    libc::SYS_security,
    libc::SYS_vserver,
];

fn build(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        TargetArch::x86_64,
    )
    .map_err(|e| SeccompError::Build(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Build(e.to_string()))
}

fn flag_rule(arg: u8, flag: u64) -> Result<SeccompRule, SeccompError> {
    let cond = SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(flag),
        flag,
    )
    .map_err(|e| SeccompError::Build(e.to_string()))?;
    SeccompRule::new(vec![cond]).map_err(|e| SeccompError::Build(e.to_string()))
}

/// docker's default profile compiled for a process that keeps `caps` (names like
/// "CAP_SYS_ADMIN") in its bounding set.
pub fn default_filter(caps: &[String]) -> Result<Profile, SeccompError> {
    let has = |c: &str| caps.iter().any(|k| k == c);
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in ALWAYS {
        deny.insert(*nr, vec![]);
    }
    for (cap, calls) in BY_CAP {
        if !has(cap) {
            for nr in *calls {
                deny.insert(*nr, vec![]);
            }
        }
    }
    if !has("CAP_SYS_ADMIN") {
        // Namespaces only through clone flags the filter can see.
        deny.insert(
            libc::SYS_clone,
            NS_FLAGS
                .iter()
                .map(|f| flag_rule(0, *f))
                .collect::<Result<_, _>>()?,
        );
    }
    // No vsock: docker refuses AF_VSOCK sockets.
    let vsock = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_VSOCK as u64,
    )
    .map_err(|e| SeccompError::Build(e.to_string()))?;
    deny.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![vsock]).map_err(|e| SeccompError::Build(e.to_string()))?],
    );
    let mut profile = vec![build(deny, libc::EPERM)?];
    if !has("CAP_SYS_ADMIN") {
        let mut enosys = BTreeMap::new();
        enosys.insert(libc::SYS_clone3, vec![]);
        profile.push(build(enosys, libc::ENOSYS)?);
    }
    Ok(profile)
}

/// Installs the profile on every thread of the calling process. The caller runs it as late
/// as possible before execve; without CAP_SYS_ADMIN it needs no_new_privs set first.
/// (Not seccompiler's `apply_filter`: that always sets no_new_privs, which docker leaves off
/// so that setuid programs in images keep working.)
pub fn install(profile: &Profile) -> Result<(), SeccompError> {
    for prog in profile {
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            // seccompiler's sock_filter is the kernel's struct, #[repr(C)].
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: a valid program that outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_TSYNC,
                &fprog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(SeccompError::Install(
                std::io::Error::last_os_error().to_string(),
            ));
        }
    }
    Ok(())
}
