//! `lb attach` against docker 20.10's (a dockerd of the test's own): a detached
//! container's output as it comes and its exit status, input to a `-i` container (and
//! none with `--no-stdin`), signals passed on, a terminal left with the detach keys, the
//! refusals; and a foreground `run --restart` handed to a monitor after its exit.

mod common;
use common::docker::{Tool, both};
use common::*;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

/// `ARGS...` with `input` written to its standard input, each piece after its pause; killed
/// after 30 s.
fn with_input(t: &dyn Tool, args: &[&str], input: &[(u64, &[u8])]) -> Output {
    let mut child = t
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<(u64, Vec<u8>)> = input.iter().map(|(d, b)| (*d, b.to_vec())).collect();
    std::thread::spawn(move || {
        for (pause, bytes) in input {
            std::thread::sleep(Duration::from_millis(pause));
            if stdin.write_all(&bytes).is_err() {
                return;
            }
        }
    });
    let pid = child.id() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        // SAFETY: signalling the child this test spawned (harmless if it has ended).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    drop(killer);
    child.wait_with_output().unwrap()
}

fn said(o: &Output) -> String {
    text(&o.stderr)
        .trim()
        .trim_start_matches("lb: ")
        .trim_start_matches("Error response from daemon: ")
        .to_string()
}

#[test]
fn attach_shows_output_and_exit_status_and_refuses_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "out",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "sleep 1; echo o1; echo e1 >&2; sleep 0.3; echo o2; exit 7",
        ]);
        let o = t.run(&["attach", "out"]);
        seen.push((
            o.status.code(),
            text(&o.stdout),
            text(&o.stderr),
            "attached".to_string(),
        ));
        // It has exited: refused.
        let o = t.run(&["attach", "out"]);
        seen.push((o.status.code(), text(&o.stdout), said(&o), "exited".into()));
        // Paused: refused.
        t.ok(&[
            "run",
            "-d",
            "--name",
            "held",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]);
        t.ok(&["pause", "held"]);
        let o = t.run(&["attach", "held"]);
        seen.push((o.status.code(), text(&o.stdout), said(&o), "paused".into()));
        t.ok(&["unpause", "held"]);
        t.ok(&["rm", "-f", "held"]);
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[0].0, Some(7));
    assert_eq!(d[0].1, "o1\no2\n");
}

#[test]
fn attach_feeds_an_interactive_container_and_passes_signals_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    for t in tools {
        let run = |name: &str, opts: &[&str], script: &str| {
            let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
            args.extend_from_slice(opts);
            args.extend_from_slice(&["busybox", "sh", "-c", script]);
            t.ok(&args);
        };
        run(
            "in",
            &["-i"],
            "while read l; do echo got:$l; [ \"$l\" = quit ] && exit 3; done",
        );
        let o = with_input(
            t,
            &["attach", "in"],
            // The input kept open past the exit: docker's client drops the output that
            // follows the end of its input (lb's does not).
            &[(300, b"a\n"), (300, b"b\n"), (300, b"quit\n"), (2000, b"")],
        );
        seen.push((o.status.code(), text(&o.stdout), "input"));

        // --no-stdin: the container's input stays empty.
        run("deaf", &["-i"], "read -t 2 l; echo \"read:$l\"; exit 4");
        let o = with_input(t, &["attach", "--no-stdin", "deaf"], &[(200, b"x\n")]);
        seen.push((o.status.code(), text(&o.stdout), "no-stdin"));

        // --sig-proxy (the default): lb's SIGTERM reaches the container.
        run(
            "sig",
            &[],
            "trap 'echo term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
        );
        let child = t
            .command(&["attach", "sig"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: signalling the child this test spawned.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let o = child.wait_with_output().unwrap();
        seen.push((o.status.code(), text(&o.stdout), "sig-proxy"));
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[0].1, "got:a\ngot:b\ngot:quit\n");
    assert_eq!(d[1], (Some(4), "read:\n".into(), "no-stdin"));
    assert_eq!(d[2].0, Some(9));
}

#[test]
fn detach_keys_leave_a_terminal_running_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "-i",
            "-t",
            "--name",
            "term",
            "--network",
            "none",
            "busybox",
            "sh",
        ]);
        let line = format!(
            "stty rows 30 cols 100; {} attach term; echo rc=$?",
            t.shell_words()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stdin.write_all(b"echo hi-$((6*7))\r").unwrap();
        std::thread::sleep(Duration::from_millis(700));
        stdin.write_all(b"\x10\x11").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(stdin);
        let out = text(&child.wait_with_output().unwrap().stdout);
        assert!(out.contains("hi-42"), "{}: {out:?}", t.name());
        assert!(
            out.contains("read escape sequence"),
            "{}: {out:?}",
            t.name()
        );
        assert!(out.contains("rc=1"), "{}: {out:?}", t.name());
        let running = t.ok(&["inspect", "-f", "{{.State.Running}}", "term"]);
        assert_eq!(
            running.trim(),
            "true",
            "{}: detached, still running",
            t.name()
        );
        t.ok(&["rm", "-f", "term"]);
    }
}

#[test]
fn a_foreground_run_restarts_after_its_exit_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    for t in tools {
        let o = t.run(&[
            "run",
            "--name",
            "again",
            "--network",
            "none",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "echo run; exit 3",
        ]);
        seen.push((o.status.code(), text(&o.stdout)));
        // Two restarts after the first run, then it stays exited.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let state = loop {
            let s = t.ok(&[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
                "again",
            ]);
            if s.trim() == "2 exited 3" || std::time::Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        seen.push((None, state));
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[0], (Some(3), "run\n".to_string()));
    assert_eq!(d[1].1.trim(), "2 exited 3");
}

#[test]
fn a_foreground_run_is_logged_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    let both_streams = "echo out1; echo err1 >&2; echo out2";
    // Plain; -a stdout (stderr not shown, but logged); a terminal (one stream, \r\n kept).
    let runs: [(&str, &[&str], &str); 3] = [
        ("fg", &[], both_streams),
        ("fga", &["-a", "stdout"], both_streams),
        ("fgt", &["-t"], "echo a; echo b >&2"),
    ];
    for t in tools {
        for (name, opts, script) in runs {
            let mut args = vec!["run", "--name", name, "--network", "none"];
            args.extend_from_slice(opts);
            args.extend_from_slice(&["busybox", "sh", "-c", script]);
            for o in [t.run(&args), t.run(&["logs", name])] {
                seen.push((o.status.code(), text(&o.stdout), text(&o.stderr)));
            }
        }
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[1], (Some(0), "out1\nout2\n".into(), "err1\n".into()));
    assert_eq!(d[3], (Some(0), "out1\nout2\n".into(), "err1\n".into()));
    assert_eq!(d[5], (Some(0), "a\r\nb\r\n".into(), "".into()));
}

#[test]
fn start_attach_shows_all_output_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    for t in tools {
        let script = "echo out; echo err >&2; exit 4";
        t.ok(&[
            "create",
            "--name",
            "s1",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ]);
        for _ in 0..2 {
            let o = t.run(&["start", "-a", "s1"]);
            seen.push((o.status.code(), text(&o.stdout), text(&o.stderr)));
        }
        t.ok(&[
            "create",
            "-i",
            "--name",
            "s2",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "read l; echo got:$l; exit 2",
        ]);
        let o = with_input(
            t,
            &["start", "-a", "-i", "s2"],
            &[(200, b"hello\n"), (1500, b"")],
        );
        seen.push((o.status.code(), text(&o.stdout), text(&o.stderr)));
        let o = t.run(&["start", "-a", "s1", "s2"]);
        seen.push((o.status.code(), text(&o.stdout), said(&o)));
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[0], (Some(4), "out\n".into(), "err\n".into()));
    assert_eq!(d[2].1, "got:hello\n");
}

#[test]
fn logs_since_and_until_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "lt",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo first; sleep 2; echo second; sleep 100",
        ]);
        // A time between the two lines.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !t.ok(&["logs", "lt"]).contains("first") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        let between = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let between = format!("{}.{:09}", between.as_secs(), between.subsec_nanos());
        std::thread::sleep(Duration::from_millis(2500));
        for args in [
            &["logs", "--since", &between, "lt"][..],
            &["logs", "--until", &between, "lt"][..],
            &["logs", "--since", "1h", "--until", &between, "lt"][..],
            &["logs", "--since", "xyz", "lt"][..],
        ] {
            let o = t.run(args);
            seen.push((o.status.code(), text(&o.stdout), said(&o)));
        }
        t.ok(&["rm", "-f", "lt"]);
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[0].1, "second\n");
    assert_eq!(d[1].1, "first\n");
}
