//! What the container tests share: a store holding the busybox test image, and `lb` run
//! against it. Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// `lb --root STORE ARGS...`, with no input.
pub fn lb(env: &Env, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run lb")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A store with the busybox test image as `busybox`, or None when the test is skipped.
pub fn setup() -> Option<Env> {
    if !lb_testkit::require_root("running containers") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = lb_testkit::busybox_rootfs(dir.path())?;
    let env = Env {
        root: dir.path().join("store"),
        _dir: dir,
    };
    let out = lb(&env, &["import", tar.to_str().unwrap(), "busybox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some(env)
}

/// `lb run --rm OPTS... IMAGE ARGS...`: (exit code, stdout, stderr).
pub fn run_image(env: &Env, opts: &[&str], image: &str, cmd: &[&str]) -> (i32, String, String) {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(opts);
    args.push(image);
    args.extend_from_slice(cmd);
    let out = lb(env, &args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// `lb run --rm OPTS... busybox ARGS...`: (exit code, stdout, stderr).
pub fn run(env: &Env, opts: &[&str], cmd: &[&str]) -> (i32, String, String) {
    run_image(env, opts, "busybox", cmd)
}
