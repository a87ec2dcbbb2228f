//! A killed lb takes its work with it: a `lb build` killed with SIGKILL leaves no RUN
//! process running, and a killed `lb save -o FILE` leaves no partial file behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn lb_child(env: &Env, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run lb")
}

/// A process's parent and state letter, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(i32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold anything, so cut after its last ')'.
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Whether `pid` is a descendant of `ancestor`.
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..64 {
        match stat(pid) {
            Some((ppid, _)) if ppid == ancestor => return true,
            Some((ppid, _)) if ppid > 1 => pid = ppid,
            _ => return false,
        }
    }
    false
}

/// The live processes whose command line is `argv`.
fn processes_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want)
                && stat(*pid).is_some_and(|(_, s)| s != 'Z' && s != 'X')
        })
        .collect()
}

/// The cgroups `build-<pid>-*` lb made for a build's steps, in any hierarchy this process is in.
fn build_cgroups(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("build-{pid}-");
    let mut found = Vec::new();
    for line in std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
    {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next());
        let Some(path) = path else { continue };
        let mounts: Vec<String> = if controllers.is_empty() {
            vec!["unified".into(), String::new()]
        } else {
            controllers
                .split(',')
                .map(|c| c.trim_start_matches("name=").to_string())
                .collect()
        };
        for m in mounts {
            let dir = Path::new("/sys/fs/cgroup")
                .join(m)
                .join(path.trim_start_matches('/'))
                .join("lb");
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_build_takes_its_run_processes_with_it() {
    let Some(env) = setup() else { return };
    // Told from other `sleep 77`s by descending from the build's lb.
    let secs = "77";
    let ctx = context(
        &env,
        "ctx-sleep",
        &format!("FROM busybox\nRUN sleep {secs}\n"),
        &[],
    );
    for network in ["none", "bridge"] {
        let mut lb = lb_child(
            &env,
            &["build", "--network", network, ctx.to_str().unwrap()],
        );
        let lb_pid = lb.id() as i32;
        let sleepers = wait_for("the RUN step's sleep", Duration::from_secs(60), || {
            if let Ok(Some(st)) = lb.try_wait() {
                panic!("lb build ended before its RUN step was seen: {st}");
            }
            let mine: Vec<i32> = processes_running(&["sleep", secs])
                .into_iter()
                .filter(|&p| descends_from(p, lb_pid))
                .collect();
            (!mine.is_empty()).then_some(mine)
        });
        lb.kill().unwrap(); // SIGKILL
        lb.wait().unwrap();
        let killed = Instant::now();
        wait_for(
            "the RUN step's processes to die with lb",
            Duration::from_secs(2),
            || {
                sleepers
                    .iter()
                    .all(|&p| stat(p).is_none_or(|(_, s)| s == 'Z' || s == 'X'))
                    .then_some(())
            },
        );
        eprintln!(
            "network {network}: the step's processes were gone {:?} after lb was killed",
            killed.elapsed()
        );
        assert!(
            processes_running(&["sleep", secs]).is_empty(),
            "a `sleep {secs}` is still running"
        );
        // The next build reaps the killed build's cgroups, and works.
        let ok = context(&env, "ctx-ok", "FROM busybox\nRUN echo fine > /f\n", &[]);
        let (code, _, out) = build(&env, &["--network", "none", ok.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(build_cgroups(lb_pid as u32), Vec::<PathBuf>::new());
    }
    let out = lb(&env, &["prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Bytes `pid` has written so far (`/proc/PID/io`).
fn written(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar: ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_killed_save_leaves_no_partial_archive() {
    let Some(env) = setup() else { return };
    // 200 MB that do not compress: a save takes long enough to be killed midway.
    let ctx = context(
        &env,
        "ctx-big",
        "FROM busybox\nRUN head -c 200000000 /dev/urandom > /big\n",
        &[],
    );
    let (code, _, out) = build(
        &env,
        &["--network", "none", "-t", "big", ctx.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let dir = env.root.parent().unwrap().join("out");
    std::fs::create_dir(&dir).unwrap();
    let target = dir.join("big.tar");
    let mut save = lb_child(&env, &["save", "-o", target.to_str().unwrap(), "big"]);
    let pid = save.id();
    wait_for("lb save to write", Duration::from_secs(60), || {
        (written(pid) > 1 << 20).then_some(())
    });
    let finished = save.try_wait().unwrap().is_some();
    save.kill().unwrap();
    save.wait().unwrap();
    assert!(!finished, "lb save ended before it could be killed");
    assert!(!target.exists(), "a killed save left {}", target.display());
    // Nothing at all is visible (an unnamed O_TMPFILE), else a file named for the dead lb.
    let left = entries(&dir);
    assert!(
        left.iter()
            .all(|n| n.starts_with(".big.tar.lb-tmp-") && n.contains(&format!("-{pid}-"))),
        "{left:?}"
    );

    // A named leftover of a killed lb (a file system without O_TMPFILE, or lb killed
    // between the link and the rename) goes with the next save into that directory; one of
    // an lb that still runs stays.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = format!(".big.tar.lb-tmp-{}-0", gone.id());
    let alive = format!(".other.tar.lb-tmp-{}-0", std::process::id());
    std::fs::write(dir.join(&dead), "partial").unwrap();
    std::fs::write(dir.join(&alive), "in progress").unwrap();
    let out = lb(&env, &["save", "-o", target.to_str().unwrap(), "big"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(entries(&dir), vec![alive, "big.tar".to_string()]);
    assert!(std::fs::metadata(&target).unwrap().len() > 200_000_000);
    let out = lb(&env, &["load", "-i", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A detached container's monitor killed with SIGKILL loses nothing: the record reads,
/// `ps` and `inspect` tell the truth (running while the container runs, exited once it
/// ended unseen), its log keeps what was copied, and stop and rm still work.
#[test]
fn a_killed_monitor_leaves_the_truth_behind() {
    let Some(env) = setup() else { return };
    let ok = |args: &[&str]| {
        let o = lb(&env, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    for name in ["watched", "stopped"] {
        ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo hi; exec sleep 300",
        ]);
    }
    wait_for("the first line in the log", Duration::from_secs(10), || {
        (ok(&["logs", "watched"]) == "hi\n").then_some(())
    });
    for name in ["watched", "stopped"] {
        let pid: i32 = ok(&["inspect", "-f", "{{.State.Pid}}", name])
            .trim()
            .parse()
            .unwrap();
        let (monitor, _) = stat(pid).expect("the container's process");
        assert!(
            std::fs::read_to_string(format!("/proc/{monitor}/cmdline"))
                .unwrap()
                .contains("lb"),
            "pid {monitor} is not lb's monitor"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        wait_for("the monitor's end", Duration::from_secs(10), || {
            (stat(monitor).is_none_or(|(_, s)| s == 'Z')).then_some(())
        });
    }
    // The containers run on, and say so.
    let ps = ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert!(
        ps.contains("watched running") && ps.contains("stopped running"),
        "{ps}"
    );
    assert_eq!(
        ok(&["inspect", "-f", "{{.State.Status}}", "watched"]),
        "running\n"
    );
    assert_eq!(ok(&["logs", "watched"]), "hi\n");
    // One ends unseen (killed from the host): exited, as it is.
    let pid: i32 = ok(&["inspect", "-f", "{{.State.Pid}}", "watched"])
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    wait_for("the container's end", Duration::from_secs(10), || {
        (ok(&["inspect", "-f", "{{.State.Status}}", "watched"]) == "exited\n").then_some(())
    });
    assert!(ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]).contains("watched exited"));
    // The other is stopped by lb, with no monitor to record it.
    ok(&["stop", "-t", "1", "stopped"]);
    assert_eq!(
        ok(&["inspect", "-f", "{{.State.Status}}", "stopped"]),
        "exited\n"
    );
    ok(&["rm", "watched", "stopped"]);
    assert_eq!(ok(&["ps", "-aq"]), "");
}

/// After a reboot (here: every monitor and container killed with SIGKILL, as a power cut
/// leaves them), `lb system boot` starts what the restart policies want running:
/// `always`, and `unless-stopped` unless the user stopped it; not `no`.
#[test]
fn system_boot_starts_what_the_policies_want() {
    let Some(env) = setup() else { return };
    let ok = |args: &[&str]| {
        let o = lb(&env, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    for (name, policy) in [
        ("aa", "always"),
        ("uu", "unless-stopped"),
        ("us", "unless-stopped"),
        ("nn", "no"),
    ] {
        ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "--network",
            "none",
            "busybox",
            "sleep",
            "300",
        ]);
    }
    ok(&["stop", "-t", "0", "us"]);
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    };
    for name in ["aa", "uu", "nn"] {
        let pid: i32 = ok(&["inspect", "-f", "{{.State.Pid}}", name])
            .trim()
            .parse()
            .unwrap();
        let (monitor, _) = stat(pid).expect("the container's process");
        kill(monitor);
        kill(pid);
    }
    wait_for("every container's end", Duration::from_secs(10), || {
        ok(&["ps", "-q"]).is_empty().then_some(())
    });
    let mut booted: Vec<String> = ok(&["system", "boot"])
        .lines()
        .map(str::to_string)
        .collect();
    booted.sort();
    assert_eq!(booted, ["aa", "uu"]);
    let ps = ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    for want in ["aa running", "uu running", "us exited", "nn exited"] {
        assert!(ps.contains(want), "{want} in {ps}");
    }
    // Booting again starts nothing: they run.
    assert_eq!(ok(&["system", "boot"]), "");
    ok(&["rm", "-f", "aa", "uu", "us", "nn"]);
}
