//! Each lifecycle operation of `lb-container` on real containers (root: namespaces,
//! cgroups, overlay), called as a library the way `lb` and a future API server call it:
//! create, start (under the monitor), stop, kill, remove, wait, list, inspect, and the
//! json-file log the monitor writes, read back by logs. The tests run one at a time (a lock): the monitor forks this
//! process, and a fork beside other tests' threads is what `lb` itself never does.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lb_container::ops::{CreateOptions, create, list};
use lb_container::run_spec::RunOptions;
use lb_container::{Container, Error, Status};
use lb_layerstore::{Reference, Store};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
}

/// A store holding the busybox test image as `busybox`; None when the test is skipped.
fn setup() -> Option<Env> {
    if !lb_testkit::require_root("running containers") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = lb_testkit::busybox_rootfs(dir.path())?;
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut config = serde_json::Map::new();
    config.insert(
        "Env".into(),
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
    );
    store
        .import_rootfs(
            std::fs::File::open(&tar).unwrap(),
            &Reference::parse("busybox").unwrap(),
            "test",
            &config,
        )
        .unwrap();
    Some(Env { _dir: dir, store })
}

/// `run`-style options for busybox running `cmd`, on no network.
fn options(cmd: &[&str]) -> CreateOptions {
    CreateOptions {
        image: "busybox".into(),
        log_driver: "json-file".into(),
        run: RunOptions {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            network: "none".into(),
            ..RunOptions::default()
        },
        ..CreateOptions::default()
    }
}

/// A container made and started (detached, under its monitor).
fn started<'s>(env: &'s Env, cmd: &[&str]) -> Container<'s> {
    let created = create(&env.store, &options(cmd)).unwrap();
    let c = Container::of(&env.store, created.record);
    c.start_monitored(created.ports).unwrap();
    c
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_checks_options_before_writing_anything() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let mut bad = options(&["true"]);
    bad.run.memory = Some("1k".into());
    let e = create(&env.store, &bad)
        .err()
        .expect("a 1k memory limit is refused");
    assert!(
        e.to_string()
            .contains("minimum memory limit allowed is 6MB"),
        "{e}"
    );
    let mut missing = options(&["true"]);
    missing.image = "nope".into();
    assert!(matches!(
        create(&env.store, &missing),
        Err(Error::NoSuchImage(_))
    ));
    assert!(
        list(&env.store, true).unwrap().is_empty(),
        "a refused create left a record"
    );
    let created = create(&env.store, &options(&["true"])).unwrap();
    let c = Container::open(&env.store, &created.record.name).unwrap();
    assert_eq!(c.record.id, created.record.id);
    assert_eq!(c.status(), Status::Created);
    assert_eq!(c.record.config.command(), "true");
}

#[test]
fn start_runs_it_under_its_monitor_and_stop_ends_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let c = started(&env, &["sleep", "100"]);
    assert_eq!(c.status(), Status::Running);
    let monitor = c.state().monitor;
    assert!(monitor > 0 && monitor != std::process::id() as i32);
    // Starting a running container leaves it as it is, as docker's start does.
    c.start().unwrap();
    // PID 1 ignores the SIGTERM it has no handler for (as under docker): SIGKILL follows
    // after the timeout.
    let t = Instant::now();
    c.stop(Duration::from_secs(1)).unwrap();
    assert_eq!(c.status(), Status::Exited);
    assert_eq!(c.state().exit_code, 137);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "stopped before the timeout"
    );
    // Started again, from its record; a process that handles SIGTERM ends at once.
    c.start().unwrap();
    assert_eq!(c.status(), Status::Running);
    let trapping = started(
        &env,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    );
    let t = Instant::now();
    trapping.stop(Duration::from_secs(10)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "SIGTERM did not stop it"
    );
    assert_eq!(trapping.state().exit_code, 0);
    c.stop(Duration::from_secs(1)).unwrap();
}

#[test]
fn kill_signals_a_running_container_and_refuses_a_stopped_one() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let c = started(&env, &["sleep", "100"]);
    c.kill(nix::sys::signal::Signal::SIGKILL).unwrap();
    let st = c.wait();
    assert_eq!(st.exit_code, 137);
    let e = c.kill(nix::sys::signal::Signal::SIGKILL).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("container {} is not running", c.record.id)
    );
}

#[test]
fn remove_refuses_a_running_container_unless_forced() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let c = started(&env, &["sleep", "100"]);
    let id = c.record.id.clone();
    let e = Container::open(&env.store, &id)
        .unwrap()
        .remove(false, false)
        .unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert!(e.to_string().contains("remove a running container"), "{e}");
    Container::open(&env.store, &id)
        .unwrap()
        .remove(true, false)
        .unwrap();
    assert!(Container::open(&env.store, &id).is_err());
    assert!(!env.store.container_dir(&id).exists());
    // Its cgroup went with it.
    assert!(matches!(lb_runtime::cgroups::Cgroup::open(&id), Ok(None)));
    drop(c);
}

#[test]
fn wait_returns_the_exit_code_and_the_monitor_keeps_the_log() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let c = started(&env, &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(c.wait().exit_code, 3);
    assert_eq!(c.status(), Status::Exited);
    let log = std::fs::read_to_string(c.dir.join("log.json")).unwrap();
    let entries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e["log"].as_str().unwrap(), e["stream"].as_str().unwrap()))
        .collect();
    assert!(got.contains(&("out\n", "stdout")), "{log}");
    assert!(got.contains(&("err\n", "stderr")), "{log}");
    assert!(
        entries.iter().all(|e| e["time"].as_str().is_some()),
        "{log}"
    );
}

#[test]
fn list_shows_running_containers_or_all_newest_first() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let done = started(&env, &["true"]);
    until("the first container's exit", || {
        done.status() == Status::Exited
    });
    let running = started(&env, &["sleep", "100"]);
    let ids = |all| -> Vec<String> {
        list(&env.store, all)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.id)
            .collect()
    };
    assert_eq!(ids(false), std::slice::from_ref(&running.record.id));
    assert_eq!(ids(true).len(), 2);
    running.kill(nix::sys::signal::Signal::SIGKILL).unwrap();
    running.wait();
    assert!(ids(false).is_empty());
}

#[test]
fn logs_writes_each_stream_to_its_writer_and_tail_keeps_the_last() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    // stderr first: the two streams' copies interleave as they come.
    let c = started(
        &env,
        &["sh", "-c", "echo e >&2; sleep 0.3; echo 1; echo 2; echo 3"],
    );
    assert_eq!(c.wait().exit_code, 0);
    let logs = |opts: &lb_container::ops::LogsOptions| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        c.logs(opts, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    };
    let all = lb_container::ops::LogsOptions::default();
    assert_eq!(logs(&all), ("1\n2\n3\n".to_string(), "e\n".to_string()));
    let last = lb_container::ops::LogsOptions {
        tail: Some(1),
        timestamps: true,
        ..all
    };
    let (out, err) = logs(&last);
    assert!(out.ends_with(" 3\n") && out.lines().count() == 1, "{out}");
    assert!(out.starts_with("20"), "a timestamp first: {out}");
    assert_eq!(err, "");

    // A container logging to nowhere has no logs to read: docker's refusal.
    let quiet = create(
        &env.store,
        &CreateOptions {
            log_driver: "none".into(),
            ..options(&["true"])
        },
    )
    .unwrap();
    let quiet = Container::of(&env.store, quiet.record);
    let e = quiet
        .logs(
            &lb_container::ops::LogsOptions::default(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "configured logging driver does not support reading"
    );
}

#[test]
fn inspect_follows_the_container_through_its_states() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(env) = setup() else { return };
    let created = create(&env.store, &options(&["sleep", "100"])).unwrap();
    let c = Container::of(&env.store, created.record);
    let i = c.inspect().unwrap();
    assert_eq!(
        (i.state.status, i.state.running, i.state.pid),
        ("created", false, 0)
    );
    assert_eq!(i.state.started_at, "0001-01-01T00:00:00Z");
    assert_eq!(
        (i.path.as_str(), i.args.as_slice()),
        ("sleep", &["100".to_string()][..])
    );
    assert_eq!(i.name, format!("/{}", c.record.name));
    assert_eq!(
        i.config.cmd,
        Some(vec!["sleep".to_string(), "100".to_string()])
    );
    assert!(i.image.starts_with("sha256:"));

    c.start_monitored(created.ports).unwrap();
    let i = c.inspect().unwrap();
    assert_eq!((i.state.status, i.state.running), ("running", true));
    assert!(i.state.pid > 0);
    assert_eq!(i.state.finished_at, "0001-01-01T00:00:00Z");

    c.kill(nix::sys::signal::Signal::SIGKILL).unwrap();
    c.wait();
    let i = c.inspect().unwrap();
    assert_eq!(
        (
            i.state.status,
            i.state.running,
            i.state.exit_code,
            i.state.pid
        ),
        ("exited", false, 137, 0)
    );
    assert!(!i.state.finished_at.starts_with("0001"));
}
