//! `lb run` and the container lifecycle end to end, as root, on the busybox test image:
//! exit codes, docker's confinement (capabilities, masked paths, namespaces, no leaked
//! descriptors), options, detached containers (`ps`, `logs`, `stop`, `wait`, `rm`),
//! `commit`, and `rmi` refusing an image a container uses.

use std::process::{Command, Stdio};

mod common;
use common::*;

#[test]
fn exit_codes_output_and_options() {
    let Some(env) = setup() else { return };
    assert_eq!(
        run(&env, &[], &["echo", "hello"]),
        (0, "hello\n".into(), String::new())
    );
    assert_eq!(run(&env, &[], &["sh", "-c", "exit 3"]).0, 3);
    let (code, _, err) = run(&env, &[], &["no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    assert_eq!(run(&env, &[], &["/etc/passwd"]).0, 126);
    let (code, _, err) = run(&env, &[], &[]);
    assert_eq!(code, 125, "no command: {err}");
    let (code, _, err) = lb_err(&env, &["run", "missing-image", "true"]);
    assert_eq!(code, 125);
    // docker's default `--pull missing`: said, then pulled (which fails here).
    assert!(
        err.contains("Unable to find image 'missing-image:latest' locally"),
        "{err}"
    );

    let (_, out, _) = run(
        &env,
        &["-e", "GREETING=hi", "-w", "/made/here"],
        &["sh", "-c", "echo $GREETING; pwd"],
    );
    assert_eq!(out, "hi\n/made/here\n");
    let (_, out, _) = run(&env, &["-u", "1000:1001"], &["id"]);
    assert!(out.starts_with("uid=1000 gid=1001"), "{out}");
    let (_, out, _) = run(&env, &["-h", "box"], &["hostname"]);
    assert_eq!(out, "box\n");
    let (_, out, _) = run(&env, &["--entrypoint", "echo"], &["a", "b"]);
    assert_eq!(out, "a b\n");
    let (code, _, _) = run(&env, &["--read-only"], &["touch", "/x"]);
    assert_ne!(code, 0);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "from host").unwrap();
    let vol = format!("{}:/data:ro", host.path().display());
    let (_, out, _) = run(&env, &["-v", &vol], &["cat", "/data/f"]);
    assert_eq!(out, "from host");
    assert_ne!(run(&env, &["-v", &vol], &["touch", "/data/g"]).0, 0);
    let (_, out, _) = run(
        &env,
        &["--tmpfs", "/scratch"],
        &["sh", "-c", "grep /scratch /proc/mounts"],
    );
    assert!(out.contains("tmpfs"), "{out}");
    // A ulimit above the hard limit is reported, never silently dropped.
    let (code, _, err) = run(&env, &["--ulimit", "nofile=99999999:99999999"], &["true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("nofile"), "{err}");
    let (_, out, _) = run(
        &env,
        &["--ulimit", "nofile=512:512"],
        &["sh", "-c", "ulimit -n"],
    );
    assert_eq!(out, "512\n");

    // A `--rm` container's file system goes with it: mounted `volatile` (its exit does not
    // wait for its writes to reach the disk); a kept container's is synced as docker's.
    let root_mount = "grep ' / / ' /proc/self/mountinfo";
    let (_, out, _) = run(&env, &["--network", "none"], &["sh", "-c", root_mount]);
    if storage_driver() == "overlay" {
        assert!(out.contains("overlay") && out.contains("volatile"), "{out}");
    } else {
        // vfs: the root is a bound tree (not `/` of its file system: no ' / / ' line).
        assert!(!out.contains("overlay"), "{out}");
    }
    let kept = lb(
        &env,
        &[
            "run",
            "--name",
            "kept",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            root_mount,
        ],
    );
    let out = text(&kept.stdout);
    assert!(
        (out.contains("overlay") || storage_driver() == "vfs") && !out.contains("volatile"),
        "{out}"
    );
    assert!(lb(&env, &["rm", "kept"]).status.success());
}

fn lb_err(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = lb(env, args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn confinement_by_default() {
    let Some(env) = setup() else { return };
    // PID namespace: the command is PID 1.
    let (_, out, _) = run(&env, &[], &["sh", "-c", "echo $$"]);
    assert_eq!(out, "1\n");
    // docker's 14 capabilities as the bounding set.
    let (_, out, _) = run(&env, &[], &["grep", "CapBnd", "/proc/self/status"]);
    assert!(out.contains("00000000a80425fb"), "{out}");
    let (_, out, _) = run(
        &env,
        &["--cap-drop", "ALL"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    assert!(out.contains("0000000000000000"), "{out}");
    // Masked and read-only paths.
    let (_, out, _) = run(
        &env,
        &[],
        &[
            "sh",
            "-c",
            "cat /proc/keys | wc -c; ls /sys/firmware | wc -l",
        ],
    );
    assert_eq!(out, "0\n0\n");
    assert_ne!(
        run(
            &env,
            &[],
            &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]
        )
        .0,
        0
    );
    // No mounting, even as root in the container.
    assert_ne!(run(&env, &[], &["mount", "-t", "tmpfs", "t", "/mnt"]).0, 0);
    // No descriptor of lb inside: only stdio (and ls's own directory).
    let (_, out, _) = run(&env, &[], &["ls", "/proc/self/fd"]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{out}"
    );
    // --network none: loopback only, and up.
    let (_, out, _) = run(&env, &["--network", "none"], &["cat", "/proc/net/dev"]);
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .map(|l| l.trim().split(':').next().unwrap())
        .collect();
    assert_eq!(ifaces, ["lo"], "{out}");
    // /dev holds docker's devices.
    let (code, _, err) = run(
        &env,
        &[],
        &[
            "sh",
            "-c",
            "test -c /dev/null && test -c /dev/urandom && test -L /dev/ptmx && echo x > /dev/null",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // no_new_privs only when asked.
    let (_, out, _) = run(&env, &[], &["grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(out.contains('0'), "{out}");
    let (_, out, _) = run(
        &env,
        &["--security-opt", "no-new-privileges"],
        &["grep", "NoNewPrivs", "/proc/self/status"],
    );
    assert!(out.contains('1'), "{out}");
    let (_, out, _) = run(&env, &[], &["grep", "Seccomp:", "/proc/self/status"]);
    assert!(out.contains('2'), "seccomp filter mode: {out}");
    let (_, out, _) = run(
        &env,
        &["--security-opt", "seccomp=unconfined"],
        &["grep", "Seccomp:", "/proc/self/status"],
    );
    assert!(out.contains('0'), "{out}");
}

#[test]
fn detached_lifecycle_commit_and_rmi() {
    let Some(env) = setup() else { return };
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo started; echo oops >&2; touch /made; trap 'exit 7' TERM; while true; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64);
    let ps = text(&lb(&env, &["ps"]).stdout);
    assert!(
        ps.contains("web") && ps.contains(&id[..12]) && ps.contains("Up "),
        "{ps}"
    );
    // Output reaches the log with its stream.
    let mut logs = String::new();
    for _ in 0..100 {
        let o = lb(&env, &["logs", "web"]);
        logs = text(&o.stdout) + &text(&o.stderr);
        if logs.contains("oops") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(logs.contains("started") && logs.contains("oops"), "{logs}");
    assert_eq!(text(&lb(&env, &["logs", "web"]).stderr), "oops\n");
    // A name in use is refused; a running container is not removed without -f.
    assert_eq!(
        lb(&env, &["run", "-d", "--name", "web", "busybox", "true"])
            .status
            .code(),
        Some(125)
    );
    assert!(!lb(&env, &["rm", "web"]).status.success());
    // rmi refuses the image while a container uses it.
    let o = lb(&env, &["rmi", "busybox"]);
    assert!(
        !o.status.success() && text(&o.stderr).contains("must force"),
        "{}",
        text(&o.stderr)
    );
    // stop sends SIGTERM, which the trap turns into exit 7.
    assert!(lb(&env, &["stop", "web"]).status.success());
    assert_eq!(text(&lb(&env, &["wait", "web"]).stdout), "7\n");
    let ps = text(&lb(&env, &["ps", "-a"]).stdout);
    assert!(ps.contains("Exited (7)"), "{ps}");
    assert!(!text(&lb(&env, &["ps"]).stdout).contains("web"));
    // commit: the container's change becomes a layer of a new image.
    let o = lb(&env, &["commit", "web", "snap:1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (code, _, err) = lb_err(&env, &["run", "--rm", "snap:1", "test", "-f", "/made"]);
    assert_eq!(code, 0, "{err}");
    let hist = text(&lb(&env, &["history", "snap:1"]).stdout);
    assert_eq!(hist.lines().count(), 3, "{hist}");
    assert!(lb(&env, &["rm", "web"]).status.success());
    assert!(lb(&env, &["rmi", "busybox"]).status.success());
    // A killed container reports 137.
    let out = lb(&env, &["run", "-d", "snap:1", "sleep", "100"]);
    let id = text(&out.stdout).trim().to_string();
    assert!(lb(&env, &["kill", &id[..12]]).status.success());
    assert_eq!(text(&lb(&env, &["wait", &id]).stdout), "137\n");
    assert!(lb(&env, &["rm", "-f", &id]).status.success());
    assert!(text(&lb(&env, &["ps", "-aq"]).stdout).is_empty());
}

#[test]
fn export_writes_the_merged_file_system() {
    let Some(env) = setup() else { return };
    let out = lb(
        &env,
        &[
            "run",
            "--name",
            "changed",
            "busybox",
            "sh",
            "-c",
            "echo hi > /made && rm /etc/passwd",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = env.root.parent().unwrap().join("fs.tar");
    let o = lb(&env, &["export", "-o", file.to_str().unwrap(), "changed"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut names = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut body = String::new();
        if entry.header().entry_type().is_file() {
            std::io::Read::read_to_string(&mut entry, &mut body).unwrap_or_default();
        }
        names.insert(name, body);
    }
    assert_eq!(names.get("made").map(String::as_str), Some("hi\n"));
    assert!(names.contains_key("bin/busybox") && names.contains_key("etc/group"));
    assert!(!names.contains_key("etc/passwd"), "a deleted file is gone");
    assert!(names.keys().all(|n| !n.contains(".wh.")), "no whiteouts");
    // Nothing of the merged view stays mounted on the host.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(env.root.to_str().unwrap()), "{mounts}");
    // system df counts the stopped container and the image it uses; the container's size
    // is its changes' (on vfs, its tree compared with its image's).
    let df = text(&lb(&env, &["system", "df"]).stdout);
    assert!(df.contains("Images          1         1 "), "{df}");
    assert!(
        df.contains("Containers      1         0         3B        3B (100%)"),
        "{df}"
    );
    // To a pipe too, and a clear error for a container that does not exist.
    let o = lb(&env, &["export", "changed"]);
    assert!(o.status.success() && o.stdout.len() as u64 == std::fs::metadata(&file).unwrap().len());
    let o = lb(&env, &["export", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("nosuch"), "{}", text(&o.stderr));
}

#[test]
fn tty_is_a_real_terminal_with_the_callers_size() {
    let Some(env) = setup() else { return };
    // Without a terminal of its own lb still gives the container one.
    let (code, out, err) = run(
        &env,
        &["-t"],
        &[
            "sh",
            "-c",
            "test -t 0 && test -t 1 && test -c /dev/console && echo tty; echo $TERM",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "tty\r\nxterm\r\n"), "{err}");
    // -i -t without a terminal is refused, as docker refuses it.
    let (code, _, err) = run(&env, &["-i", "-t"], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("not a TTY"), "{err}");
    // The caller's window size reaches the container; the exit status comes back.
    let shown = in_terminal(&env, "run --rm -t busybox stty size");
    assert!(shown.contains("45 123"), "{shown:?}");
    let shown = in_terminal(
        &env,
        "run --rm -i -t busybox sh -c 'stty -a | head -1; exit 3'; echo status=$?",
    );
    assert!(
        shown.contains("rows 45; columns 123") && shown.contains("status=3"),
        "{shown:?}"
    );
    // A detached container's terminal output reaches its log.
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "-t",
            "--name",
            "dt",
            "busybox",
            "sh",
            "-c",
            "test -t 1 && echo tty-log",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&lb(&env, &["wait", "dt"]).stdout), "0\n");
    let logs = text(&lb(&env, &["logs", "dt"]).stdout);
    assert!(logs.contains("tty-log"), "{logs:?}");
}

#[test]
fn init_reaps_forwards_signals_and_keeps_the_status() {
    let Some(env) = setup() else { return };
    // PID 1 is the init; the command is its child.
    let (code, out, err) = run(
        &env,
        &["--init"],
        &["sh", "-c", "echo $$; cat /proc/1/status | grep PPid"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "2\nPPid:\t0\n");
    assert_eq!(run(&env, &["--init"], &["sh", "-c", "exit 9"]).0, 9);
    assert_eq!(run(&env, &["--init"], &["nosuch"]).0, 127);
    // Orphans are reaped: a zombie under PID 1 never lingers.
    let (code, out, _) = run(
        &env,
        &["--init"],
        &[
            "sh",
            "-c",
            "(sleep 0.1 &) ; sleep 0.5; ps -o stat,comm | grep -c Z || true",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "0\n"));
    // stop's SIGTERM reaches the command through the init.
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "--init",
            "--name",
            "ic",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 4' TERM; while true; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(lb(&env, &["stop", "-t", "5", "ic"]).status.success());
    assert_eq!(text(&lb(&env, &["wait", "ic"]).stdout), "4\n");
}

#[test]
fn exec_joins_the_running_container() {
    let Some(env) = setup() else { return };
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "host",
            "-e",
            "FROM_RUN=1",
            "--pids-limit",
            "20",
            "busybox",
            "sh",
            "-c",
            "touch /run-made; sleep 100",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let exec = |args: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        let o = lb(&env, &a);
        (
            o.status.code().unwrap_or(-1),
            text(&o.stdout),
            text(&o.stderr),
        )
    };
    // Same file system, hostname, PID namespace and cgroup as the container's PID 1.
    let (code, out, err) = exec(&[
        "host",
        "sh",
        "-c",
        "test -f /run-made && hostname && ps -o pid,comm | grep -c sleep && test \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" && echo same-cgroup; echo $FROM_RUN",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}\n1\nsame-cgroup\n1\n", &id[..12]));
    // Confined as the container is.
    let (_, out, _) = exec(&[
        "host",
        "grep",
        "-E",
        "CapBnd|Seccomp:|NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(
        out,
        "CapBnd:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t2\n"
    );
    // Options: env, user, working directory; the command's own status.
    let (_, out, _) = exec(&[
        "-e",
        "X=2",
        "-u",
        "1000:1001",
        "-w",
        "/tmp",
        "host",
        "sh",
        "-c",
        "echo $X $(id -u):$(id -g) $(pwd)",
    ]);
    assert_eq!(out, "2 1000:1001 /tmp\n");
    assert_eq!(exec(&["host", "sh", "-c", "exit 6"]).0, 6);
    let (code, _, err) = exec(&["host", "nosuch"]);
    assert_eq!(code, 127, "{err}");
    let (code, out, _) = exec(&["-t", "host", "sh", "-c", "test -t 1 && echo tty"]);
    assert_eq!((code, out.as_str()), (0, "tty\r\n"));
    // -d leaves the process running in the container.
    assert_eq!(
        exec(&["-d", "host", "sh", "-c", "sleep 0.2; touch /from-exec"]).0,
        0
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(exec(&["host", "test", "-f", "/from-exec"]).0, 0);
    // A stopped container cannot be joined; start runs it again on the same file system.
    assert!(lb(&env, &["kill", "host"]).status.success());
    assert_eq!(text(&lb(&env, &["wait", "host"]).stdout), "137\n");
    let (code, _, err) = exec(&["host", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running"), "{err}");
    let o = lb(&env, &["start", "host"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "host\n");
    assert_eq!(exec(&["host", "test", "-f", "/from-exec"]).0, 0);
    assert!(lb(&env, &["rm", "-f", "host"]).status.success());
    let o = lb(&env, &["start", "host"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn signals_reach_a_foreground_container_and_stop_escalates() {
    let Some(env) = setup() else { return };
    // SIGTERM to lb reaches the container, whose trap decides the status.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got; exit 11' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(11), "got\n"));
    // A container that ignores SIGTERM is killed after stop's timeout.
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "stubborn",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; while true; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = std::time::Instant::now();
    assert!(lb(&env, &["stop", "-t", "1", "stubborn"]).status.success());
    let took = t.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(text(&lb(&env, &["wait", "stubborn"]).stdout), "137\n");
}

#[test]
fn privileged_lifts_the_confinement() {
    let Some(env) = setup() else { return };
    // Mounts, every device, no masks: what a default container is refused.
    let (code, out, err) = run(
        &env,
        &["--privileged"],
        &[
            "sh",
            "-c",
            "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted; mknod /tmp/z c 1 5 && head -c 1 /tmp/z | wc -c; grep -c . /proc/keys >/dev/null && echo unmasked; grep Seccomp: /proc/self/status",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "mounted\n1\nunmasked\nSeccomp:\t0\n"),
        "{err}"
    );
}

#[test]
fn more_options_env_file_mounts_stdin_and_caps() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap().to_path_buf();
    let file = dir.join("vars.env");
    std::fs::write(&file, "# comment\nFROM_FILE=one\nBOTH=file\n").unwrap();
    let (code, out, err) = run(
        &env,
        &["--env-file", file.to_str().unwrap(), "-e", "BOTH=flag"],
        &["sh", "-c", "echo $FROM_FILE $BOTH"],
    );
    assert_eq!((code, out.as_str()), (0, "one flag\n"), "{err}");
    let bad = dir.join("bad.env");
    std::fs::write(&bad, "OK=1\nNOT OK=2\n").unwrap();
    let (code, _, err) = run(&env, &["--env-file", bad.to_str().unwrap()], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("bad.env:2"), "{err}");
    // --mount: a read-only bind and a sized tmpfs.
    let host = dir.join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from host").unwrap();
    let bind = format!("type=bind,source={},target=/in,readonly", host.display());
    let (code, out, err) = run(
        &env,
        &[
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,target=/fast,tmpfs-size=1m",
        ],
        &[
            "sh",
            "-c",
            "cat /in/f; touch /in/x 2>/dev/null || echo ro; grep ' /fast ' /proc/mounts | grep -o 'size=[0-9]*k'",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "from hostro\nsize=1024k\n"),
        "{err}"
    );
    // -i passes lb's standard input to the container.
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "# COMMENT\nFROM_FILE=ONE\nBOTH=FILE\n");
    // --cap-add and --cap-drop change the bounding set (CAP_NET_ADMIN is bit 12, CAP_CHOWN 0).
    let (_, out, _) = run(
        &env,
        &["--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN"],
        &["grep", "CapBnd", "/proc/self/status"],
    );
    assert_eq!(out, "CapBnd:\t00000000a80435fa\n");
    let (code, _, err) = run(&env, &["--cap-drop", "CHOWN"], &["chown", "1:1", "/tmp"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    // --memory is written to the container's cgroup (and enforced: see tests/escape.rs).
    let (code, _, err) = run(&env, &["--memory", "1k"], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("minimum memory limit"), "{err}");
}

#[test]
fn the_container_cannot_reach_lb_through_proc() {
    let Some(env) = setup() else { return };
    // With --init, PID 1 is lb itself for the container's whole life: its executable (the
    // lb binary on the host, CVE-2019-5736), memory and descriptors stay out of reach.
    let (code, out, err) = run(
        &env,
        &["--init"],
        &[
            "sh",
            "-c",
            "readlink /proc/1/exe || echo no-link; cat /proc/1/exe >/dev/null 2>&1 || echo no-read; readlink /proc/1/fd/0 >/dev/null 2>&1 || echo no-fds; echo x >> /proc/1/exe 2>/dev/null || echo no-write",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "no-link\nno-read\nno-fds\nno-write\n"),
        "{err}"
    );
}

#[test]
fn lifecycle_details_logs_follow_kill_signal_and_a_lost_monitor() {
    let Some(env) = setup() else { return };
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "fc",
            "busybox",
            "sh",
            "-c",
            "trap 'echo usr1; exit 3' USR1; echo one; while true; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(
        text(&lb(&env, &["ps", "-q"]).stdout),
        format!("{}\n", &id[..12])
    );
    // logs -f follows until the container ends.
    let follow = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(["logs", "-f", "fc"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(lb(&env, &["kill", "-s", "USR1", "fc"]).status.success());
    assert_eq!(text(&lb(&env, &["wait", "fc"]).stdout), "3\n");
    let followed = follow.wait_with_output().unwrap();
    assert_eq!(text(&followed.stdout), "one\nusr1\n");
    // A container whose monitor was killed (kill -9) is still seen running, and exited once
    // its processes die; rm then clears it.
    let out = lb(
        &env,
        &["run", "-d", "--name", "lost", "busybox", "sleep", "1000"],
    );
    assert!(out.status.success());
    let dir = env.root.join("containers").join(text(&out.stdout).trim());
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let (pid, monitor) = (
        state["pid"].as_i64().unwrap() as i32,
        state["monitor"].as_i64().unwrap() as i32,
    );
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(monitor), Signal::SIGKILL).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(text(&lb(&env, &["ps"]).stdout).contains("lost"));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = text(&lb(&env, &["ps", "-a"]).stdout);
    assert!(
        ps.lines()
            .any(|l| l.contains("lost") && l.contains("Exited")),
        "{ps}"
    );
    assert!(lb(&env, &["rm", "lost"]).status.success());
}

#[test]
fn sys_fs_cgroup_shows_the_containers_own_cgroup_read_only() {
    let Some(env) = setup() else { return };
    // Its own limits, as programs that size themselves (JVMs, runtimes) read them; its own
    // processes only; nothing to change.
    let (code, out, err) = run(
        &env,
        &["--memory", "64m", "--pids-limit", "33"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; wc -l < /sys/fs/cgroup/pids/cgroup.procs; mkdir /sys/fs/cgroup/memory/x 2>&1 | grep -c Read-only",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "67108864\n33\n2\n1\n"), "{err}");
}

#[test]
fn the_image_config_is_honoured_as_docker_does() {
    let Some(env) = setup() else { return };
    // An image with a user of its own (and a supplementary group), made by commit --change.
    let out = lb(
        &env,
        &[
            "run",
            "--name",
            "base",
            "busybox",
            "sh",
            "-c",
            "echo app:x:1234:1234::/home/app:/bin/sh >> /etc/passwd && printf 'app:x:1234:\\nextra:x:2000:app\\n' >> /etc/group",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lb(
        &env,
        &[
            "commit",
            "-c",
            "USER app",
            "-c",
            "WORKDIR /home/app",
            "-c",
            "WORKDIR work",
            "-c",
            "ENV GREETING=hello",
            "-c",
            "ENTRYPOINT [\"sh\", \"-c\"]",
            "-c",
            "CMD [\"echo $GREETING $(pwd) $(id -u):$(id -g) $(id -G) $HOME\"]",
            "-c",
            "STOPSIGNAL SIGUSR1",
            "base",
            "configured",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect: serde_json::Value =
        serde_json::from_slice(&lb(&env, &["inspect", "configured"]).stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "app");
    assert_eq!(config["WorkingDir"], "/home/app/work");
    assert_eq!(config["StopSignal"], "SIGUSR1");
    // Entrypoint + Cmd, Env, the working directory created, the user's ids, groups and home.
    let (code, out, err) = run_image(&env, &[], "configured", &[]);
    assert_eq!(
        (code, out.as_str()),
        (0, "hello /home/app/work 1234:1234 1234 2000 /home/app\n"),
        "{err}"
    );
    // Arguments replace Cmd and keep the Entrypoint; --entrypoint replaces both.
    let (_, out, _) = run_image(&env, &[], "configured", &["echo override"]);
    assert_eq!(out, "override\n");
    let (_, out, _) = run_image(
        &env,
        &["--entrypoint", "id", "-u", "0"],
        "configured",
        &["-u"],
    );
    assert_eq!(out, "0\n");
    // stop sends the image's StopSignal.
    let out = lb(
        &env,
        &[
            "run",
            "-d",
            "--name",
            "sc",
            "configured",
            "trap 'exit 5' USR1; while true; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(lb(&env, &["stop", "sc"]).status.success());
    assert_eq!(text(&lb(&env, &["wait", "sc"]).stdout), "5\n");
    // A change that is not a config instruction is refused, naming it.
    let out = lb(&env, &["commit", "-c", "RUN rm -rf /", "base", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("RUN is not a valid change command"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn network_container_mode_joins_another_containers_stack() {
    let Some(env) = setup() else { return };
    let out = lb(
        &env,
        &[
            "run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8080/group && exit 0; sleep 0.2; done; exit 1";
    // Its loopback is web's: httpd answers there; the host name is web's too.
    let (code, out, err) = run(&env, &["--network", "container:web"], &["sh", "-c", fetch]);
    assert_eq!(
        (code, out.as_str()),
        (0, "root:x:0:\nnogroup:x:65534:\n"),
        "{err}"
    );
    let (_, web_host, _) = run(&env, &["--network", "container:web"], &["hostname"]);
    let id = text(&lb(&env, &["ps", "-q", "--no-trunc"]).stdout);
    assert_eq!(web_host.trim(), &id.trim()[..12]);
    // A container with a stack of its own does not see it.
    let (_, out, _) = run(
        &env,
        &[],
        &["sh", "-c", "wget -qO- http://127.0.0.1:8080/group; true"],
    );
    assert_eq!(out, "");
    // Errors name the cause.
    let (code, _, err) = run(&env, &["--network", "container:nope"], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("no such container: nope"), "{err}");
    let (code, _, err) = run(&env, &["--network", "container:web", "-h", "x"], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("conflicting options"), "{err}");
    assert!(lb(&env, &["rm", "-f", "web"]).status.success());
    let (code, _, err) = run(&env, &["--network", "container:web"], &["true"]);
    assert_eq!(code, 125, "{err}");
}
