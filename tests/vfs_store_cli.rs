//! A vfs store's housekeeping, as `lb` does it: a prune takes the trees no image reaches
//! and what a killed build left, never what a running container or build uses; `system
//! check` reports (and `--repair` removes) a tree of no image; pull, load and import make
//! no overlay snapshot. (`common::setup` makes this binary's stores with vfs.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lb_testkit::{RegistryAuth, TestRegistry};

mod common;
use common::*;

fn lb_child(env: &Env, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lb")
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The names in `dir`, sorted (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn committed(root: &Path) -> PathBuf {
    root.join("snapshotter/vfs/committed")
}

fn active(root: &Path) -> PathBuf {
    root.join("snapshotter/vfs/active")
}

/// The chain ids (hex) of `image`'s layers, bottom first.
fn chain(env: &Env, image: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ok(&lb(env, &["inspect", image]))).unwrap();
    let diff_ids: Vec<lb_layerstore::Digest> = v[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect();
    lb_layerstore::chain_ids(&diff_ids)
        .iter()
        .map(|c| c.hex())
        .collect()
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

/// The RUN step's active snapshot of the build lb `pid` runs, once it is there.
fn run_step_of(env: &Env, build: &mut Child) -> String {
    let prefix = format!("build-{}-run-", build.id());
    wait_for("the RUN step's snapshot", Duration::from_secs(60), || {
        if let Ok(Some(st)) = build.try_wait() {
            panic!("lb build ended before its RUN step was seen: {st}");
        }
        names(&active(&env.root))
            .into_iter()
            .find(|n| n.starts_with(&prefix))
    })
}

#[test]
fn prune_takes_unreached_trees_and_a_killed_builds_but_not_what_runs() {
    let Some(env) = setup() else { return };
    let base = chain(&env, "busybox");
    let ctx = context(&env, "app", "FROM busybox\nRUN echo hi > /f\n", &[]);
    let (code, _, log) = build(&env, &["-t", "app", ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let app = chain(&env, "app");
    let mut all = app.clone();
    all.sort();
    assert_eq!(
        names(&committed(&env.root)),
        all,
        "busybox's tree and app's"
    );

    // A container runs on busybox, whose name then goes: the container keeps it.
    let id = ok(&lb(
        &env,
        &["run", "-d", "--name", "up", "busybox", "sleep", "300"],
    ))
    .trim()
    .to_string();
    ok(&lb(&env, &["rmi", "-f", "busybox"]));

    // A build killed in its RUN step leaves the step's snapshot.
    let ctx = context(&env, "slow", "FROM app\nRUN sleep 78\n", &[]);
    let mut killed = lb_child(&env, &["build", "--network", "none", ctx.to_str().unwrap()]);
    let step = run_step_of(&env, &mut killed);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(names(&active(&env.root)).contains(&step));

    ok(&lb(&env, &["rmi", "app"]));
    let out = ok(&lb(&env, &["prune"]));
    assert!(out.contains("Deleted snapshots: 1"), "app's tree: {out}");
    assert_eq!(
        names(&committed(&env.root)),
        base,
        "the container's image's"
    );
    assert_eq!(names(&active(&env.root)), vec![id.clone()]);
    assert_eq!(names(&env.root.join("snapshots")), Vec::<String>::new());
    // The container still runs on its tree, and its image's tree serves a new one.
    assert_eq!(ok(&lb(&env, &["exec", "up", "echo", "alive"])), "alive\n");
    ok(&lb(&env, &["commit", "up", "again"]));
    ok(&lb(&env, &["rm", "-f", "up"]));
    let (code, out, err) = run_image(&env, &[], "again", &["echo", "ran"]);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");

    // A prune while a build runs waits for it: its trees are the build's.
    let ctx = context(
        &env,
        "later",
        "FROM again\nRUN sleep 2 && echo done > /done\nRUN cat /done\n",
        &[],
    );
    let mut running = lb_child(
        &env,
        &[
            "build",
            "--network",
            "none",
            "-t",
            "later",
            ctx.to_str().unwrap(),
        ],
    );
    run_step_of(&env, &mut running);
    ok(&lb(&env, &["prune"]));
    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, out, err) = run_image(&env, &[], "later", &["cat", "/done"]);
    assert_eq!((code, out.as_str()), (0, "done\n"), "{err}");
    assert_eq!(names(&active(&env.root)), Vec::<String>::new());
}

#[test]
fn system_check_reports_a_tree_of_no_image_and_repair_removes_it() {
    let Some(env) = setup() else { return };
    // Trees are made when an image is first used.
    let (code, _, err) = run(&env, &[], &["true"]);
    assert_eq!(code, 0, "{err}");
    let base = chain(&env, "busybox");
    assert_eq!(names(&committed(&env.root)), base);
    let stray = committed(&env.root).join("ab".repeat(32));
    std::fs::create_dir_all(stray.join("etc")).unwrap();

    let out = ok(&lb(&env, &["system", "check"]));
    let line = format!(
        "leftover {}: of an interrupted operation\n",
        stray.display()
    );
    assert!(out.contains(&line), "{out}");
    assert_eq!(out.matches("leftover").count(), 1, "{out}");
    assert!(stray.is_dir(), "reported, not removed");

    let out = ok(&lb(&env, &["system", "check", "--repair"]));
    assert!(
        out.contains(&format!(
            "leftover {}: of an interrupted operation (removed)",
            stray.display()
        )),
        "{out}"
    );
    assert!(!stray.exists());
    assert_eq!(names(&committed(&env.root)), base);
    let out = ok(&lb(&env, &["system", "check"]));
    assert!(!out.contains("leftover"), "{out}");
}

#[test]
fn pull_load_and_import_make_no_overlay_snapshots() {
    let Some(env) = setup() else { return };
    let snapshots = |e: &Env| names(&e.root.join("snapshots"));
    // import (setup's)
    assert_eq!(snapshots(&env), Vec::<String>::new());
    let base = chain(&env, "busybox");

    // load, into another vfs store
    let archive = env.root.parent().unwrap().join("busybox.archive.tar");
    ok(&lb(
        &env,
        &["save", "-o", archive.to_str().unwrap(), "busybox"],
    ));
    let other = setup().unwrap();
    ok(&lb(&other, &["rmi", "busybox"]));
    ok(&lb(&other, &["prune"]));
    ok(&lb(&other, &["load", "-i", archive.to_str().unwrap()]));
    assert_eq!(snapshots(&other), Vec::<String>::new());
    let (code, out, err) = run(&other, &[], &["echo", "loaded"]);
    assert_eq!((code, out.as_str()), (0, "loaded\n"), "{err}");
    assert_eq!(snapshots(&other), Vec::<String>::new());

    // pull, from a registry on loopback: the image's trees are made, nothing else.
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let name = format!("{}/vfs/busybox:1", reg.addr);
    ok(&lb(&env, &["tag", "busybox", &name]));
    ok(&lb(&env, &["push", &name]));
    let puller = setup().unwrap();
    ok(&lb(&puller, &["rmi", "busybox"]));
    ok(&lb(&puller, &["prune"]));
    assert_eq!(names(&committed(&puller.root)), Vec::<String>::new());
    let out = lb(&puller, &["pull", &name]);
    ok(&out);
    assert!(
        text(&out.stderr).contains("Pull complete"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshots(&puller), Vec::<String>::new());
    assert_eq!(names(&committed(&puller.root)), base);
    let (code, out, err) = run_image(&puller, &[], &name, &["echo", "pulled"]);
    assert_eq!((code, out.as_str()), (0, "pulled\n"), "{err}");
    let out = lb(&puller, &["pull", &name]);
    ok(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("Already exists") && err.contains("Image is up to date"),
        "{err}"
    );
    assert_eq!(snapshots(&puller), Vec::<String>::new());
}
