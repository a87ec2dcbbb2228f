//! Crash safety: `lb import`, `lb load` and `lb commit` killed with SIGKILL at 50 points of their work never leave a
//! a blob that does not match its digest or a name that does not resolve, and a re-run
//! finishes the job; imports and prunes running at once never corrupt the store.

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

/// Every blob matches its digest; every name resolves to an image whose blobs are present.
fn check_store(root: &Path) {
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
    reset();
    let start = Instant::now();
    assert!(command().status().unwrap().success());
    let full = start.elapsed();
    let points = 50;
    for k in 0..points {
        reset();
        let delay = full.mul_f64(k as f64 / points as f64 * 1.1);
        let mut child = command().spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        check_store(root);
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
                let ok = lb(&root)
                    .args(["import", tar.to_str().unwrap(), &format!("busy:{i}")])
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !importer.is_finished() && Instant::now() < deadline {
        assert!(lb(&root).arg("prune").status().unwrap().success());
    }
    importer.join().unwrap();
    check_store(&root);
    let store = Store::open(&root).unwrap();
    assert_eq!(store.names().unwrap().len(), 8);
}
