use super::*;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
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
