//! The storage drivers side by side: a store made with vfs never overlay-mounts anything
//! of its own (its containers' and RUN steps' roots are plain directories), builds from the
//! same inputs give the same layers on both drivers, and a store keeps its driver.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

/// `lb --root ROOT ARGS...`.
fn lb_at(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("LB_STORAGE_DRIVER")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A store with busybox imported, made with `driver`, under `dir`.
fn store(dir: &Path, driver: &str, tar: &Path) -> std::path::PathBuf {
    let root = dir.join(driver);
    let o = lb_at(
        &root,
        &[
            "--storage-driver",
            driver,
            "import",
            tar.to_str().unwrap(),
            "busybox",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    root
}

/// Overlay mounts in a mountinfo text whose mount source or options name `root`.
fn overlays_of(mountinfo: &str, root: &Path) -> Vec<String> {
    let root = root.to_str().unwrap();
    mountinfo
        .lines()
        .filter(|l| l.contains(" - overlay ") && l.contains(root))
        .map(str::to_string)
        .collect()
}

const DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /app/data && echo one > /app/data/a && rm /bin/true && rm -r /usr/sbin
COPY file /app/file
WORKDIR /srv/www
RUN echo two > /app/data/a && ln -s /app/file /link && rm /app/file && mkdir /app/file
ENV STEP=three
RUN rm /app/data/a && echo $STEP > /app/data/b && rm /link
RUN test ! -e /app/data/a && cat /app/data/b > /app/data/c && echo four >> /app/data/c && touch /app/data/tmp
RUN cp /app/data/c /c && rm -r /app/data && mkdir -p /app/data/sub && mv /c /app/data/c
";

#[test]
fn vfs_and_overlay_build_the_same_layers_and_vfs_mounts_no_overlay() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let tar = lb_testkit::busybox_rootfs(dir).unwrap();
    let ctx = context(&env, "ctx", DOCKERFILE, &[("file", "content\n")]);
    let mut layers = Vec::new();
    for driver in ["overlay", "vfs"] {
        let root = store(dir, driver, &tar);
        let o = lb_at(&root, &["build", "-t", "same", ctx.to_str().unwrap()]);
        assert!(o.status.success(), "{driver}: {}", text(&o.stderr));
        let o = lb_at(&root, &["inspect", "same"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        layers.push((v[0]["RootFS"]["Layers"].clone(), v[0]["Id"].clone()));
        // The image runs with the changes of every step.
        let o = lb_at(
            &root,
            &[
                "run",
                "--rm",
                "same",
                "sh",
                "-c",
                "cat /app/data/c; pwd; test -d /app/file && echo dir; ls /usr/sbin /bin/true || echo gone; readlink /link || echo unlinked",
            ],
        );
        assert_eq!(
            text(&o.stdout),
            "three\nfour\n/srv/www\ndir\ngone\nunlinked\n",
            "{driver}: {}",
            text(&o.stderr)
        );
    }
    // Overlay stacks each RUN on the one before while that one's layer is written
    // (`pipeline`); vfs commits each in place: the same layers.
    assert_eq!(layers[0].0.as_array().unwrap().len(), 8);
    assert_eq!(layers[0], layers[1], "overlay's layers and image vs vfs's");

    // With vfs, nothing of the store is an overlay: not a RUN step's root, not a
    // container's (seen from inside it, and from the host while it runs).
    let root = dir.join("vfs");
    let ctx = context(
        &env,
        "mi",
        "FROM busybox\nRUN cat /proc/self/mountinfo > /mountinfo\n",
        &[],
    );
    let o = lb_at(
        &root,
        &["build", "--no-cache", "-t", "mi", ctx.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = lb_at(&root, &["run", "--rm", "mi", "cat", "/mountinfo"]);
    let in_step = text(&o.stdout);
    assert!(
        in_step.lines().any(|l| l.split(' ').nth(4) == Some("/")),
        "{in_step}"
    );
    assert!(
        !in_step.contains(" - overlay "),
        "a RUN step's mounts:\n{in_step}"
    );
    let o = lb_at(
        &root,
        &["run", "-d", "--name", "up", "busybox", "sleep", "30"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = lb_at(&root, &["exec", "up", "cat", "/proc/self/mountinfo"]);
    let inside = text(&o.stdout);
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let _ = lb_at(&root, &["rm", "-f", "up"]);
    let root_line = inside.lines().find(|l| l.split(' ').nth(4) == Some("/"));
    assert!(
        root_line.is_some_and(|l| !l.contains(" - overlay ") && l.contains("snapshotter/vfs")),
        "{inside}"
    );
    assert!(!inside.contains(" - overlay "), "{inside}");
    assert_eq!(overlays_of(&host, &root), Vec::<String>::new());
}

#[test]
fn a_store_keeps_its_driver() {
    if !lb_testkit::require_root("making stores") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let o = lb_at(&root, &["--storage-driver", "vfs", "images"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(root.join("storage-driver")).unwrap(),
        "vfs\n"
    );
    // Without a flag the store's own driver; another one is refused, naming both.
    assert!(lb_at(&root, &["images"]).status.success());
    let o = lb_at(&root, &["--storage-driver", "overlay", "images"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "storage driver \"overlay\" does not match the store's existing driver \"vfs\""
        ),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&root)
        .arg("images")
        .env("LB_STORAGE_DRIVER", "zfs")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("invalid LB_STORAGE_DRIVER \"zfs\": expected overlay or vfs"),
        "{}",
        text(&o.stderr)
    );
    // A new store on this machine (overlayfs works here) is overlay, with no notice.
    let fresh = dir.path().join("fresh");
    let o = lb_at(&fresh, &["images"]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join("storage-driver")).unwrap(),
        "overlay\n"
    );
}
