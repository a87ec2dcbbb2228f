//! Crash safety: `lb import`, `lb load`, `lb commit`, `lb prune`, `lb build` and `lb pull`
//! killed with SIGKILL at points spread over their work never leave a blob that does not
//! match its digest, a name that does not resolve or a snapshot that differs from its layer
//! (`lb system check` finds the store clean after every kill), and a re-run finishes the
//! job; imports and prunes, builds and prunes running at once never corrupt the store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lb_layerstore::{Reference, Store};

fn lb(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
    c.arg("--root")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A root file system tar of `mib` MiB of pseudo-random data in 64 files.
fn big_rootfs(path: &Path, mib: usize) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut state = 0x2545f4914f6cdd1du64;
    let size = mib * 1024 * 1024 / 64;
    let mut data = vec![0u8; size];
    for i in 0..64 {
        for chunk in data.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("data/f{i:02}"), &data[..])
            .unwrap();
    }
    b.finish().unwrap();
}

/// Every blob matches its digest; every name resolves to an image whose blobs are present;
/// `lb system check --full` (snapshots against their layers too) finds nothing wrong.
fn check_store(root: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(root)
        .args(["system", "check", "--full"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("no problems found"),
        "lb system check: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(root).unwrap();
    for blob in store.content().list().unwrap() {
        store
            .content()
            .verify(&blob.digest)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for (name, _) in store.names().unwrap() {
        let image = store.image(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for layer in image.manifest.layers() {
            let d = layer.digest().as_ref().parse().unwrap();
            store
                .content()
                .verify(&d)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// Runs `command` to completion once to learn how long it takes, then 50 more times, each
/// killed with SIGKILL at a point spread over that time (the last few after it ends),
/// checking the store after every kill; `reset` runs before each attempt.
fn kill_at_50_points(root: &Path, command: impl Fn() -> Command, reset: impl Fn()) {
    kill_at_points(50, root, command, reset, || {})
}

/// [`kill_at_50_points`] with `points` points, and `after` run after each kill's check.
fn kill_at_points(
    points: u32,
    root: &Path,
    command: impl Fn() -> Command,
    reset: impl Fn(),
    after: impl Fn(),
) {
    reset();
    let start = Instant::now();
    assert!(command().status().unwrap().success());
    let full = start.elapsed();
    for k in 0..points {
        reset();
        let delay = full.mul_f64(k as f64 / points as f64 * 1.1);
        let mut child = command().spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        check_store(root);
        after();
    }
    // A re-run finishes the job.
    assert!(command().status().unwrap().success());
    check_store(root);
}

#[test]
fn import_killed_at_50_points() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = dir.path().join("rootfs.tar");
    big_rootfs(&tar, 32);
    kill_at_50_points(
        &root,
        || {
            let mut c = lb(&root);
            c.args(["import", tar.to_str().unwrap(), "victim:final"]);
            c
        },
        || {
            let _ = lb(&root).args(["rmi", "victim:final"]).status();
        },
    );
    let store = Store::open(&root).unwrap();
    store
        .image(&Reference::parse("victim:final").unwrap())
        .unwrap();
    // Interrupted writes leave nothing a prune cannot clear.
    assert!(lb(&root).arg("prune").status().unwrap().success());
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);
    check_store(&root);
}

#[test]
fn load_killed_at_50_points() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let tar = dir.path().join("rootfs.tar");
    big_rootfs(&tar, 32);
    let archive = dir.path().join("image.tar");
    assert!(
        lb(&source)
            .args(["import", tar.to_str().unwrap(), "saved:1"])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        lb(&source)
            .args(["save", "saved:1", "-o", archive.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let root = dir.path().join("store");
    // Each attempt starts from an empty store, so every kill lands in real work.
    kill_at_50_points(
        &root,
        || {
            let mut c = lb(&root);
            c.args(["load", "-i", archive.to_str().unwrap()]);
            c
        },
        || {
            let _ = lb(&root).args(["rmi", "saved:1"]).status();
            let _ = lb(&root).arg("prune").status();
        },
    );
    let store = Store::open(&root).unwrap();
    store.image(&Reference::parse("saved:1").unwrap()).unwrap();
    assert!(lb(&root).arg("prune").status().unwrap().success());
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);
}

#[test]
fn commit_killed_at_50_points() {
    if !lb_testkit::require_root("committing a container") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tar) = lb_testkit::busybox_rootfs(dir.path()) else {
        return;
    };
    let root = dir.path().join("store");
    assert!(
        lb(&root)
            .args(["import", tar.to_str().unwrap(), "base"])
            .status()
            .unwrap()
            .success()
    );
    // A container whose upper dir holds 32 MiB of new data: the layer commit turns into a blob.
    let made = lb(&root)
        .args(["run", "--name", "writer", "base", "sh", "-c"])
        .arg("head -c 33554432 /dev/urandom > /data")
        .status()
        .unwrap();
    assert!(made.success());
    kill_at_50_points(
        &root,
        || {
            let mut c = lb(&root);
            c.args(["commit", "writer", "victim:c"]);
            c
        },
        || {
            let _ = lb(&root).args(["rmi", "victim:c"]).status();
            let _ = lb(&root).arg("prune").status();
        },
    );
    let store = Store::open(&root).unwrap();
    let image = store.image(&Reference::parse("victim:c").unwrap()).unwrap();
    assert_eq!(image.manifest.layers().len(), 2);
    assert!(lb(&root).arg("prune").status().unwrap().success());
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);
    check_store(&root);
}

#[test]
fn imports_and_prunes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = dir.path().join("rootfs.tar");
    big_rootfs(&tar, 4);
    std::fs::create_dir_all(&root).unwrap();
    let importer = {
        let (root, tar) = (root.clone(), tar.clone());
        std::thread::spawn(move || {
            for i in 0..8 {
                let out = lb(&root)
                    .args(["import", tar.to_str().unwrap(), &format!("busy:{i}")])
                    .stderr(Stdio::piped())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "import {i}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !importer.is_finished() && Instant::now() < deadline {
        let out = lb(&root)
            .arg("prune")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "prune: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    importer.join().unwrap();
    check_store(&root);
    let store = Store::open(&root).unwrap();
    assert_eq!(store.names().unwrap().len(), 8);
}

/// A store at `dir/store` holding busybox as `base`; None when the test is skipped.
fn store_with_base(dir: &Path, what: &str) -> Option<std::path::PathBuf> {
    if !lb_testkit::require_root(what) {
        return None;
    }
    let tar = lb_testkit::busybox_rootfs(dir)?;
    let root = dir.join("store");
    let ok = lb(&root)
        .args(["import", tar.to_str().unwrap(), "base"])
        .status()
        .unwrap();
    assert!(ok.success());
    Some(root)
}

/// A build context `dir/name` whose RUN writes `files` small files in 30 directories and
/// a 4 MiB one, each build different from the last (`SEED`).
fn busy_context(dir: &Path, name: &str, files: u32) -> std::path::PathBuf {
    let ctx = dir.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM base\nARG SEED=0\n\
             RUN for d in $(seq 1 30); do mkdir -p /w/$d; done && \
                 for i in $(seq 1 {files}); do echo $SEED $i > /w/$((i % 30 + 1))/f$i; done\n\
             RUN head -c 4194304 /dev/urandom > /w/big && echo $SEED > /w/seed\n"
        ),
    )
    .unwrap();
    ctx
}

fn lb_ok(root: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A live image's files, read through a container: its snapshots are whole.
fn live_image_reads(root: &Path, image: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(root)
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "cat",
            "/w/seed",
            "/w/7/f6",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prune_killed_at_24_points() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = store_with_base(dir.path(), "building images to prune") else {
        return;
    };
    let ctx = busy_context(dir.path(), "ctx", 3000);
    // One image stays named: its snapshots must come out of every prune whole.
    lb_ok(
        &root,
        &[
            "build",
            "-q",
            "-t",
            "keep",
            "--build-arg",
            "SEED=keep",
            ctx.to_str().unwrap(),
        ],
    );
    let seed = std::sync::atomic::AtomicU32::new(0);
    kill_at_points(
        24,
        &root,
        || {
            let mut c = lb(&root);
            c.arg("prune");
            c
        },
        // Two images made and unnamed: their blobs and snapshots (3,000 files) are garbage.
        || {
            for _ in 0..2 {
                let n = seed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let arg = format!("SEED={n}");
                lb_ok(
                    &root,
                    &[
                        "build",
                        "-q",
                        "-t",
                        "victim",
                        "--build-arg",
                        &arg,
                        ctx.to_str().unwrap(),
                    ],
                );
                lb_ok(&root, &["rmi", "victim"]);
            }
        },
        || live_image_reads(&root, "keep"),
    );
    lb_ok(&root, &["prune"]);
    check_store(&root);
    // Nothing but the live images' snapshots is left.
    let snapshots = std::fs::read_dir(root.join("snapshots")).unwrap().count();
    assert_eq!(snapshots, 3, "base, and keep's two RUN layers");
}

#[test]
fn build_killed_at_20_points() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = store_with_base(dir.path(), "building images") else {
        return;
    };
    let ctx = busy_context(dir.path(), "ctx", 1500);
    kill_at_points(
        20,
        &root,
        || {
            let mut c = lb(&root);
            c.args(["build", "-q", "-t", "victim", ctx.to_str().unwrap()]);
            c
        },
        // From nothing each time: no cached step spares the work.
        || {
            let _ = lb(&root).args(["rmi", "victim"]).status();
            lb_ok(&root, &["prune"]);
        },
        || {},
    );
    live_image_reads(&root, "victim");
}

#[test]
fn pull_killed_at_20_points() {
    let dir = tempfile::tempdir().unwrap();
    let Some(source) = store_with_base(dir.path(), "building an image to pull") else {
        return;
    };
    let Some(reg) = lb_testkit::TestRegistry::start(
        &dir.path().join("reg"),
        lb_testkit::RegistryAuth::Anonymous,
    ) else {
        return;
    };
    let ctx = busy_context(dir.path(), "ctx", 1500);
    let name = format!("{}/sweep/victim:1", reg.addr);
    lb_ok(
        &source,
        &["build", "-q", "-t", &name, ctx.to_str().unwrap()],
    );
    lb_ok(&source, &["push", &name]);
    let root = dir.path().join("pulled");
    kill_at_points(
        20,
        &root,
        || {
            let mut c = lb(&root);
            c.args(["pull", &name]);
            c
        },
        || {
            let _ = lb(&root).args(["rmi", &name]).status();
            lb_ok(&root, &["prune"]);
        },
        || {},
    );
    live_image_reads(&root, &name);
}

#[test]
fn builds_beside_a_prune_loop_stay_named_and_whole() {
    let dir = tempfile::tempdir().unwrap();
    let Some(root) = store_with_base(dir.path(), "building images") else {
        return;
    };
    let ctx = busy_context(dir.path(), "ctx", 200);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (root, done) = (root.clone(), done.clone());
        std::thread::spawn(move || {
            let mut prunes = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                lb_ok(&root, &["prune"]);
                prunes += 1;
            }
            prunes
        })
    };
    for i in 0..10 {
        let (tag, arg) = (format!("b:{i}"), format!("SEED={i}"));
        lb_ok(
            &root,
            &[
                "build",
                "-q",
                "-t",
                &tag,
                "--build-arg",
                &arg,
                ctx.to_str().unwrap(),
            ],
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let prunes = pruner.join().unwrap();
    assert!(prunes >= 2, "the prune loop ran {prunes} times");
    check_store(&root);
    for i in 0..10 {
        live_image_reads(&root, &format!("b:{i}"));
    }
}
