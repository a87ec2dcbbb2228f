//! The escape suite: what a process inside a default `lb run` container (root in the
//! container, docker's 14 capabilities, seccomp, masked and read-only paths, namespaces,
//! cgroups) must NOT be able to do to the host, tried through the real `lb` binary as root
//! on the busybox test image. Each test attempts one way out (mounting, kernel knobs and
//! secrets under /proc and /sys, kernel modules, host processes, device nodes, gaining
//! capabilities through a setuid binary, writing past a bind mount, exceeding memory, pid or
//! CPU limits, leftovers after the container is gone) and asserts the exact refusal: exit
//! code and error text, or the observed value.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::*;

/// `lb run --rm busybox sh -c SCRIPT`.
fn sh(env: &Env, opts: &[&str], script: &str) -> (i32, String, String) {
    run(env, opts, &["sh", "-c", script])
}

/// Every directory below /sys/fs/cgroup (all hierarchies) whose name starts with `prefix`.
fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path.clone());
            }
            walk(&path, prefix, found);
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), prefix, &mut found);
    found
}

/// The host processes whose NUL-separated command line satisfies `pred`: (pid, argv).
fn host_procs(pred: impl Fn(&[String]) -> bool) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(text)
            .collect();
        if pred(&argv) {
            out.push((pid, argv));
        }
    }
    out
}

/// The host pids whose mount table mentions `needle`.
fn procs_mounting(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("mountinfo")).is_ok_and(|m| m.contains(needle)) {
            out.push(pid);
        }
    }
    out
}

/// A name no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// Mounting a file system, bind mounting and unmounting are refused (no CAP_SYS_ADMIN),
/// and so is gaining CAP_SYS_ADMIN in a new user namespace (`unshare -Urm`) to mount there.
#[test]
fn mount_bind_umount_and_unshare_are_refused() {
    let Some(env) = setup() else { return };
    assert_eq!(
        run(&env, &[], &["mount", "-t", "tmpfs", "none", "/mnt"]),
        (
            1,
            String::new(),
            "mount: permission denied (are you root?)\n".into()
        )
    );
    assert_eq!(
        sh(&env, &[], "mkdir /a /b && mount --bind /a /b"),
        (
            1,
            String::new(),
            "mount: permission denied (are you root?)\n".into()
        )
    );
    assert_eq!(
        run(&env, &[], &["umount", "/proc"]),
        (
            1,
            String::new(),
            "umount: can't unmount /proc: Operation not permitted\n".into()
        )
    );
    // The mount table is what it was: /proc is still procfs, nothing on /mnt.
    let (code, out, err) = sh(
        &env,
        &[],
        "umount /proc 2>/dev/null; grep -cE ' /proc | /mnt ' /proc/self/mountinfo",
    );
    assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");
    let (code, out, err) = run(
        &env,
        &[],
        &["unshare", "-Urm", "mount", "-t", "tmpfs", "none", "/mnt"],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        "unshare: unshare(0x10020000): Operation not permitted\n"
    );
}

/// Kernel memory and secrets under /proc and /sys are masked: /proc/kcore, /proc/keys and
/// /proc/timer_list read as empty (`/dev/null` bound over them; kcore is simply absent on a
/// kernel without it), /sys/firmware is an empty read-only directory.
#[test]
fn proc_and_sys_secrets_are_masked() {
    let Some(env) = setup() else { return };
    let (code, out, err) = sh(&env, &[], "cat /proc/kcore | wc -c");
    if Path::new("/proc/kcore").exists() {
        assert_eq!((code, out.as_str(), err.as_str()), (0, "0\n", ""));
    } else {
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (
                0,
                "0\n",
                "cat: can't open '/proc/kcore': No such file or directory\n"
            )
        );
    }
    // The host sees real content in these; the container sees /dev/null.
    assert!(!std::fs::read("/proc/timer_list").unwrap().is_empty());
    let (code, out, err) = sh(
        &env,
        &[],
        "for f in /proc/keys /proc/timer_list; do echo $f $(stat -c '%F %t,%T' $f) $(cat $f | wc -c); done",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "/proc/keys character special file 1,3 0\n\
         /proc/timer_list character special file 1,3 0\n"
    );
    assert!(std::fs::read_dir("/sys/firmware").unwrap().next().is_some());
    let (code, out, err) = sh(
        &env,
        &[],
        "ls -A /sys/firmware | wc -l; touch /sys/firmware/x",
    );
    assert_eq!((code, out.as_str()), (1, "0\n"));
    assert_eq!(err, "touch: /sys/firmware/x: Read-only file system\n");
}

/// Kernel knobs are read-only: writing /proc/sys/kernel/hostname, /proc/sys/vm/drop_caches
/// or /proc/sysrq-trigger fails (read-only bind; sysrq-trigger is absent on a kernel
/// without it), and the host's values are unchanged.
#[test]
fn proc_sys_and_sysrq_are_read_only() {
    let Some(env) = setup() else { return };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        sh(&env, &[], "echo escaped > /proc/sys/kernel/hostname"),
        (
            1,
            String::new(),
            "sh: can't create /proc/sys/kernel/hostname: Read-only file system\n".into()
        )
    );
    assert_eq!(
        sh(&env, &[], "echo 3 > /proc/sys/vm/drop_caches"),
        (
            1,
            String::new(),
            "sh: can't create /proc/sys/vm/drop_caches: Read-only file system\n".into()
        )
    );
    let why = if Path::new("/proc/sysrq-trigger").exists() {
        "Read-only file system"
    } else {
        "nonexistent directory"
    };
    assert_eq!(
        sh(&env, &[], "echo h > /proc/sysrq-trigger"),
        (
            1,
            String::new(),
            format!("sh: can't create /proc/sysrq-trigger: {why}\n")
        )
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname
    );
}

/// Loading a kernel module is refused (no CAP_SYS_MODULE, and seccomp): busybox's insmod
/// gets EPERM before the kernel even looks at the (junk) module; modprobe finds no modules.
#[test]
fn kernel_modules_cannot_be_loaded() {
    let Some(env) = setup() else { return };
    assert_eq!(
        sh(
            &env,
            &[],
            "head -c 4096 /dev/zero > /tmp/m.ko && busybox insmod /tmp/m.ko"
        ),
        (
            1,
            String::new(),
            "insmod: can't insert '/tmp/m.ko': Operation not permitted\n".into()
        )
    );
    let (code, _, err) = run(&env, &[], &["busybox", "modprobe", "dummy"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        "modprobe: can't change directory to '/lib/modules': No such file or directory\n"
    );
}

/// The container's PID namespace shows only its own few processes: `ps` lists the shell
/// (PID 1) and itself, /proc has single-digit pids only, and the host's test process (this pid) is
/// unknown to `kill -0`.
#[test]
fn host_processes_are_invisible() {
    let Some(env) = setup() else { return };
    let me = std::process::id();
    let (code, out, err) = sh(
        &env,
        &[],
        &format!("ps -o pid,comm; echo ---; ls /proc | grep -E '^[0-9]+$'; echo ---; kill -0 {me}"),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err, format!("sh: can't kill pid {me}: No such process\n"));
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    let ps: Vec<(u32, &str)> = parts[0]
        .lines()
        .skip(1)
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().parse().unwrap(), w.next().unwrap())
        })
        .collect();
    assert_eq!(ps.len(), 2, "{out}");
    assert_eq!(ps[0], (1, "sh"), "{out}");
    assert_eq!(ps[1].1, "ps", "{out}");
    let pids: Vec<u32> = parts[1].lines().map(|l| l.parse().unwrap()).collect();
    assert!(
        pids.contains(&1) && pids.len() <= 4 && pids.iter().all(|&p| p < 10 && p != me),
        "{out}"
    );
}

/// A block device node can be made (docker keeps CAP_MKNOD), but opening it must fail as
/// docker's device cgroup makes it fail: a host disk is not readable from the container.
/// The device used is the first host block device the host itself can open (a loop device
/// here).
#[test]
fn created_block_devices_cannot_be_opened() {
    let Some(env) = setup() else { return };
    let probe = tempfile::tempdir().unwrap();
    let mut found = None;
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/block")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for dir in names {
        let Ok(dev) = std::fs::read_to_string(dir.join("dev")) else {
            continue;
        };
        let Some((major, minor)) = dev.trim().split_once(':') else {
            continue;
        };
        let node = probe.path().join("blk");
        let _ = std::fs::remove_file(&node);
        let made = Command::new("mknod")
            .arg(&node)
            .args(["b", major, minor])
            .status()
            .is_ok_and(|s| s.success());
        if made && std::fs::File::open(&node).is_ok() {
            found = Some((major.to_string(), minor.to_string()));
            break;
        }
    }
    let Some((major, minor)) = found else {
        lb_testkit::skip("no host block device that root can open");
        return;
    };
    let (code, out, err) = sh(
        &env,
        &[],
        &format!(
            "mknod /tmp/blk b {major} {minor} && echo made && head -c 1 /tmp/blk >/dev/null && echo opened"
        ),
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "made\n", "head: /tmp/blk: Operation not permitted\n"),
        "block device {major}:{minor}"
    );
}

/// The capability sets are docker's 14 (0xa80425fb) and no more; a setuid-root binary run
/// by an unprivileged user gains exactly that bounding set, never a capability outside it,
/// and with no-new-privileges gains nothing at all.
#[test]
fn capabilities_never_exceed_the_default_bounding_set() {
    let Some(env) = setup() else { return };
    let (code, out, err) = run(&env, &[], &["grep", "^Cap", "/proc/self/status"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    );
    let (code, out, err) = run(
        &env,
        &["-u", "1000"],
        &["grep", "^Cap", "/proc/self/status"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n"
    );
    // A setuid-root copy of busybox as `su` (an applet that keeps its privileges), reached
    // through a bind mount; it waits for a password on a pipe while its status is read.
    let host = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let su = host.path().join("su");
    std::fs::copy("/bin/busybox", &su).unwrap();
    std::fs::set_permissions(&su, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let vol = format!("{}:/x:ro", host.path().display());
    let (code, out, err) = sh(
        &env,
        &["-u", "1000", "-v", &vol],
        "sleep 5 | /x/su root -c true >/dev/null & pid=$!; \
         for i in $(seq 100); do grep -q '^Name:.su$' /proc/$pid/status && break; sleep 0.05; done; \
         grep -E '^(Name|Uid|CapPrm|CapEff|CapBnd)' /proc/$pid/status; kill $pid",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Name:\tsu\nUid:\t1000\t0\t0\t0\nCapPrm:\t00000000a80425fb\n\
         CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n",
        "{err}"
    );
    let (code, out, err) = run(
        &env,
        &[
            "-u",
            "1000",
            "-v",
            &vol,
            "--security-opt",
            "no-new-privileges",
        ],
        &["/x/su", "root", "-c", "true"],
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "su: must be suid to work properly\n")
    );
}

/// Bind mounts do not lead out: a read-only bind refuses writes; a symlink to `/` planted in
/// a rw bind, `../` paths and a mount destination through an image symlink pointing far
/// above `/` all resolve inside the container, and the host root gets nothing.
#[test]
fn writes_stay_inside_binds_and_the_container() {
    let Some(env) = setup() else { return };
    let host = tempfile::tempdir().unwrap();
    let vol_ro = format!("{}:/data:ro", host.path().display());
    assert_eq!(
        sh(&env, &["-v", &vol_ro], "echo x > /data/x"),
        (
            1,
            String::new(),
            "sh: can't create /data/x: Read-only file system\n".into()
        )
    );
    assert!(!host.path().join("x").exists());

    let via_link = unique("lb-escape-link");
    let via_dots = unique("lb-escape-dots");
    let vol = format!("{}:/data", host.path().display());
    let (code, out, err) = sh(
        &env,
        &["-v", &vol],
        &format!(
            "ln -s / /data/escape && echo link > /data/escape/{via_link} && \
             echo dots > /data/../../../../{via_dots} && cat /{via_link} /{via_dots}"
        ),
    );
    assert_eq!((code, out.as_str()), (0, "link\ndots\n"), "{err}");
    // The symlink is on the host now, pointing at the host's root: the writes did not go there.
    assert_eq!(
        std::fs::read_link(host.path().join("escape")).unwrap(),
        Path::new("/")
    );
    for name in [&via_link, &via_dots] {
        assert!(!Path::new("/").join(name).exists(), "/{name} on the host");
        assert!(!host.path().parent().unwrap().join(name).exists());
    }

    // An image whose /link climbs far above `/`: a bind mounted at /link/TARGET lands at
    // the container's /TARGET, not at the host's.
    let o = lb(
        &env,
        &[
            "run",
            "--name",
            "linker",
            "busybox",
            "ln",
            "-s",
            "../../../../../../..",
            "/link",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(lb(&env, &["commit", "linker", "linked"]).status.success());
    assert!(lb(&env, &["rm", "linker"]).status.success());
    let target = unique("lb-escape-target");
    let vol = format!("{}:/link/{target}", host.path().display());
    let (code, out, err) = run_image(
        &env,
        &["-v", &vol],
        "linked",
        &[
            "sh",
            "-c",
            &format!("touch /{target}/inside && ls /{target}"),
        ],
    );
    assert_eq!((code, out.as_str()), (0, "escape\ninside\n"), "{err}");
    assert!(
        !Path::new("/").join(&target).exists(),
        "/{target} on the host"
    );
    assert!(host.path().join("inside").exists());
}

/// `--memory 32m` holds: a shell that grows a 100 MB variable is OOM-killed (137), while
/// the same command without the limit completes.
#[test]
fn memory_limit_kills_with_137() {
    let Some(env) = setup() else { return };
    let script = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let (code, out, err) = sh(&env, &[], script);
    assert_eq!((code, out.as_str()), (0, "100000000\n"), "{err}");
    let (code, out, err) = sh(&env, &["--memory", "32m"], script);
    assert_eq!((code, out.as_str()), (137, ""), "{err}");
}

/// `--pids-limit 10` holds: the shell plus 9 background sleeps fill it, the 10th fork
/// fails with EAGAIN and busybox's shell gives up.
#[test]
fn pids_limit_stops_forks() {
    let Some(env) = setup() else { return };
    let (code, out, err) = sh(
        &env,
        &["--pids-limit", "10"],
        "for i in $(seq 1 30); do sleep 5 & echo started $i; done; wait",
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err, "sh: can't fork: Resource temporarily unavailable\n");
    let expected: String = (1..=9).map(|i| format!("started {i}\n")).collect();
    assert_eq!(out, expected);
}

/// `--cpus 0.5` becomes a CFS quota of 50000us per 100000us period in the container's cgroup
/// (`lb/<id>` in the cpu hierarchy, or cpu.max on cgroup v2), read from the host while a
/// detached container runs.
#[test]
fn cpus_sets_the_cfs_quota() {
    let Some(env) = setup() else { return };
    let o = lb(
        &env,
        &["run", "-d", "--cpus", "0.5", "busybox", "sleep", "300"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    let dirs = cgroup_dirs(&id);
    let limits: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            if let Ok(max) = std::fs::read_to_string(d.join("cpu.max")) {
                return Some(max.trim().to_string());
            }
            let quota = std::fs::read_to_string(d.join("cpu.cfs_quota_us")).ok()?;
            let period = std::fs::read_to_string(d.join("cpu.cfs_period_us")).ok()?;
            Some(format!("{} {}", quota.trim(), period.trim()))
        })
        .collect();
    let rm = lb(&env, &["rm", "-f", &id]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(
        dirs.iter().all(|d| d.ends_with(Path::new("lb").join(&id))),
        "{dirs:?}"
    );
    assert_eq!(limits, ["50000 100000"], "{dirs:?}");
}

/// Nothing outlives a container: during `lb run --rm` its cgroups exist, afterwards no
/// cgroup directory, container record or mount of the store remains; a detached
/// `sleep MARKER` is a host process with cgroups and the store's overlay in its mount table,
/// and after `lb rm -f` no process with the marker, no cgroup and no such mount remains.
#[test]
fn nothing_remains_after_the_container() {
    let Some(env) = setup() else { return };
    let store = env.root.to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(["run", "--rm", "busybox", "sh", "-c", "hostname; sleep 1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut short_id = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut short_id)
        .unwrap();
    let short_id = short_id.trim().to_string();
    assert_eq!(short_id.len(), 12, "{short_id:?}");
    let during = cgroup_dirs(&short_id);
    assert!(!during.is_empty(), "no cgroup for {short_id} while it runs");
    assert!(child.wait().unwrap().success());
    assert_eq!(cgroup_dirs(&short_id), Vec::<PathBuf>::new());
    assert!(during.iter().all(|d| !d.exists()), "{during:?}");
    assert_eq!(text(&lb(&env, &["ps", "-aq"]).stdout), "");
    assert_eq!(
        std::fs::read_dir(env.root.join("containers"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&store), "{mounts}");
    assert_eq!(procs_mounting(&store), Vec::<u32>::new());

    let marker = format!("31337{}", std::process::id());
    let o = lb(&env, &["run", "-d", "busybox", "sleep", &marker]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    let sleepers = host_procs(|a| a == ["sleep", marker.as_str()]);
    assert_eq!(sleepers.len(), 1, "{sleepers:?}");
    let dirs = cgroup_dirs(&id);
    assert!(!dirs.is_empty(), "no cgroup for {id}");
    assert!(procs_mounting(&store).contains(&sleepers[0].0));

    let rm = lb(&env, &["rm", "-f", &id]);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert_eq!(
        host_procs(|a| a.iter().any(|w| w.contains(&marker))),
        Vec::new()
    );
    assert_eq!(cgroup_dirs(&id), Vec::<PathBuf>::new());
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?}");
    assert_eq!(procs_mounting(&store), Vec::<u32>::new());
    assert!(!env.root.join("containers").join(&id).exists());
}
