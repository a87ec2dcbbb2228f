//! A detached container's logs end to end, as root, on the busybox test image: docker's
//! json-file entries (lines cut at 16 KiB), a flood that leaves the monitor small,
//! `--log-opt max-size/max-file` rotation kept across `lb start`, `--log-driver none`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::*;

const MAX_LINE: usize = 16 * 1024;

/// `lb run -d ARGS...`: the container's directory.
fn run_detached(env: &Env, args: &[&str]) -> PathBuf {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    let out = lb(env, &all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    env.root.join("containers").join(text(&out.stdout).trim())
}

fn entries(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap()
}

fn vm_rss_kib(pid: i64) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a process, in clock ticks (100 a second).
fn cpu_ticks(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn long_lines_are_cut_into_16k_entries() {
    let Some(env) = setup() else { return };
    // 100 KiB with no newline, then a 20 KiB line and a short one.
    let script = "head -c 102400 /dev/zero | tr '\\0' a; echo; \
                  head -c 20480 /dev/zero | tr '\\0' b; echo; echo end; \
                  head -c 40000 /dev/zero | tr '\\0' c";
    let dir = run_detached(&env, &["--name", "long", "busybox", "sh", "-c", script]);
    assert_eq!(text(&lb(&env, &["wait", "long"]).stdout), "0\n");
    let logs = entries(&dir.join("log.json"));
    let pieces: Vec<&str> = logs.iter().map(|e| e["log"].as_str().unwrap()).collect();
    for p in &pieces {
        assert!(p.len() <= MAX_LINE + 1, "an entry of {} bytes", p.len());
        // Only a line's last piece ends with a newline.
        assert!(p.len() <= MAX_LINE || p.ends_with('\n'));
    }
    let a = "a".repeat(102400);
    let b = "b".repeat(20480);
    let c = "c".repeat(40000);
    let want = format!("{a}\n{b}\nend\n{c}");
    assert_eq!(pieces.concat(), want);
    // docker's cut: full 16 KiB partial pieces, then the rest with the newline.
    let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    assert_eq!(
        lens,
        [
            MAX_LINE,
            MAX_LINE,
            MAX_LINE,
            MAX_LINE,
            MAX_LINE,
            MAX_LINE,
            102400 - 6 * MAX_LINE + 1,
            MAX_LINE,
            20480 - MAX_LINE + 1,
            4,
            MAX_LINE,
            MAX_LINE,
            40000 - 2 * MAX_LINE,
        ]
    );
    // A line's pieces share its first piece's time.
    assert_eq!(logs[0]["time"], logs[6]["time"]);
    assert!(logs.iter().all(|e| e["stream"] == "stdout"));
    let out = lb(&env, &["logs", "long"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), want);
    assert!(lb(&env, &["rm", "long"]).status.success());
}

#[test]
fn a_flood_leaves_the_monitor_small() {
    let Some(env) = setup() else { return };
    for cmd in [&["cat", "/dev/zero"][..], &["yes"][..]] {
        let mut args = vec![
            "--name",
            "flood",
            "--memory",
            "32m",
            "--cpus",
            "0.5",
            "--log-opt",
            "max-size=2m",
            "--log-opt",
            "max-file=2",
            "busybox",
        ];
        args.extend_from_slice(cmd);
        let dir = run_detached(&env, &args);
        let monitor = state(&dir)["monitor"].as_i64().unwrap();
        // On a v1 host the copying thread's CPU time is the container's: it sits in the
        // container's cpu cgroup and within its --cpus.
        let id = dir.file_name().unwrap().to_str().unwrap().to_string();
        let cgroup = std::fs::read_to_string(format!("/proc/{monitor}/task/{monitor}/cgroup"))
            .unwrap_or_default();
        let v1_cpu = cgroup
            .lines()
            .filter_map(|l| l.split_once(':')?.1.split_once(':'))
            .find(|(c, _)| c.split(',').any(|c| c == "cpu"));
        let cpu_before = cpu_ticks(monitor);
        let start = Instant::now();
        let mut peak = 0;
        while start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(250));
            peak = peak.max(vm_rss_kib(monitor).expect("the monitor runs"));
        }
        let used = (cpu_ticks(monitor) - cpu_before) as f64 / 100.0;
        if let Some((_, path)) = v1_cpu {
            assert!(path.ends_with(&id), "{cmd:?}: the copier is in {path}");
            let allowed = 0.5 * start.elapsed().as_secs_f64() * 1.3 + 0.2;
            assert!(used < allowed, "{cmd:?}: the monitor used {used} s of CPU");
        }
        let logged: u64 = ["log.json", "log.json.1"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum();
        assert!(lb(&env, &["rm", "-f", "flood"]).status.success());
        assert!(
            peak < 20 * 1024,
            "{cmd:?}: the monitor's RSS reached {peak} KiB"
        );
        // It was logging all along, and rotating: two files of about 2 MB at most.
        assert!(logged > 0, "{cmd:?}: nothing logged");
        assert!(logged < 2 * 2_200_000, "{cmd:?}: {logged} bytes kept");
    }
}

#[test]
fn max_size_and_max_file_rotate_and_survive_a_restart() {
    let Some(env) = setup() else { return };
    // stderr last, once stdout is surely read: the two streams are copied side by side, so
    // without the pause a loaded machine may log "err" between stdout lines (then rotated out).
    let script =
        "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; sleep 0.5; echo err >&2";
    let dir = run_detached(
        &env,
        &[
            "--name",
            "rot",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(text(&lb(&env, &["wait", "rot"]).stdout), "0\n");
    let check = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("log.json"))
            .collect();
        names.sort();
        assert_eq!(names, ["log.json", "log.json.1", "log.json.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.join(n)).unwrap().len();
            // One entry (under 100 bytes here) past max-size at most.
            assert!(len < 1100, "{n}: {len} bytes");
        }
        // `lb logs` shows what is kept, oldest first, ending with the last lines.
        let out = lb(&env, &["logs", "rot"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines.len() > 10 && lines.len() < 300, "{}", lines.len());
        let first: usize = lines[0].strip_prefix("line ").unwrap().parse().unwrap();
        for (k, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("line {}", first + k));
        }
        assert_eq!(*lines.last().unwrap(), "line 299");
        assert_eq!(text(&out.stderr), "err\n");
        let out = lb(&env, &["logs", "--tail", "3", "rot"]);
        assert_eq!(text(&out.stdout), "line 298\nline 299\n");
        assert_eq!(text(&out.stderr), "err\n");
    };
    check(&dir);
    // Started again, it keeps its log options.
    assert!(lb(&env, &["start", "rot"]).status.success());
    assert_eq!(text(&lb(&env, &["wait", "rot"]).stdout), "0\n");
    check(&dir);
    assert!(lb(&env, &["rm", "rot"]).status.success());
}

#[test]
fn log_driver_none_and_bad_options() {
    let Some(env) = setup() else { return };
    let dir = run_detached(
        &env,
        &[
            "--name",
            "quiet",
            "--log-driver",
            "none",
            "busybox",
            "echo",
            "hi",
        ],
    );
    assert_eq!(text(&lb(&env, &["wait", "quiet"]).stdout), "0\n");
    assert!(!dir.join("log.json").exists());
    let out = lb(&env, &["logs", "quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("configured logging driver does not support reading"),
        "{}",
        text(&out.stderr)
    );
    assert!(lb(&env, &["rm", "quiet"]).status.success());
    for (opts, msg) in [
        (
            &["--log-opt", "max-file=0"][..],
            "max-file cannot be less than 1",
        ),
        (&["--log-opt", "max-size=ten"][..], "invalid size: 'ten'"),
        (&["--log-opt", "bogus=1"][..], "unknown log opt 'bogus'"),
        (
            &["--log-driver", "syslog"][..],
            "no log driver named 'syslog'",
        ),
    ] {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["busybox", "true"]);
        let out = lb(&env, &args);
        assert_eq!(out.status.code(), Some(125), "{opts:?}");
        assert!(
            text(&out.stderr).contains(msg),
            "{opts:?}: {}",
            text(&out.stderr)
        );
    }
    // Nothing was made for the refused runs.
    assert_eq!(text(&lb(&env, &["ps", "-aq"]).stdout), "");
}

#[test]
fn follow_goes_on_across_rotations() {
    let Some(env) = setup() else { return };
    // About 25 entries a file: a rotation every quarter of a second or so.
    let script =
        "sleep 0.3; i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); sleep 0.01; done";
    run_detached(
        &env,
        &[
            "--name",
            "fol",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=2",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    // Follows until the container ends: every line once, in order.
    let out = lb(&env, &["logs", "-f", "fol"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want: String = (0..200).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text(&out.stdout), want);
    assert!(lb(&env, &["rm", "fol"]).status.success());
}
