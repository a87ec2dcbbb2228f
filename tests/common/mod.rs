//! What the container tests share: a store holding the busybox test image, and `lb` run
//! against it. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod docker;

use std::path::{Path, PathBuf};
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

/// Cells of an aligned table (columns at least three spaces apart), per line.
pub fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The storage driver this test binary's stores are made with: the `vfs_*` binaries run
/// test files a second time on vfs (the store remembers its driver, so only the command
/// that makes it says so).
pub fn storage_driver() -> &'static str {
    if env!("CARGO_CRATE_NAME").starts_with("vfs_") {
        "vfs"
    } else {
        "overlay"
    }
}

/// A store with the busybox test image as `busybox`, on this binary's storage driver, or
/// None when the test is skipped.
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
    let out = lb(
        &env,
        &[
            "--storage-driver",
            storage_driver(),
            "import",
            tar.to_str().unwrap(),
            "busybox",
        ],
    );
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

/// A fresh context directory `name` beside the store, holding `Dockerfile` and `files`
/// (path, content).
pub fn context(env: &Env, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let ctx = env.root.parent().unwrap().join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let p = ctx.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    ctx
}

/// The build case `testdata/build/NAME`.
pub fn case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/build")
        .join(name)
}

/// `lb build ARGS...` with SOURCE_DATE_EPOCH as given: (exit code, image id from the
/// iidfile when the args name `ENVDIR/iid`, progress).
pub fn build_with<S: AsRef<std::ffi::OsStr>>(
    env: &Env,
    args: &[S],
    epoch: Option<&str>,
) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
    c.arg("--root")
        .arg(&env.root)
        .arg("build")
        .args(args)
        .stdin(Stdio::null());
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    let out: Output = c.output().expect("run lb build");
    let iid = env.root.parent().unwrap().join("iid");
    let id = std::fs::read_to_string(&iid).unwrap_or_default();
    let _ = std::fs::remove_file(&iid);
    (out.status.code().unwrap_or(-1), id, text(&out.stderr))
}

/// `lb build --iidfile IID ARGS...`: (exit code, image id, progress).
pub fn build(env: &Env, args: &[&str]) -> (i32, String, String) {
    let iid = env.root.parent().unwrap().join("iid");
    let mut all = vec!["--iidfile".to_string(), iid.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    build_with(env, &all, None)
}

/// The image's `Config` as `lb inspect` shows it.
pub fn config(env: &Env, image: &str) -> serde_json::Value {
    let out = lb(env, &["inspect", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Config"].clone()
}

/// Runs `lb ARGS` under a pseudo-terminal of 45 rows and 123 columns (util-linux `script`),
/// as a user's shell would; returns what the terminal showed.
pub fn in_terminal(env: &Env, args: &str) -> String {
    let cmd = format!(
        "stty rows 45 cols 123; {} --root {} {args}",
        env!("CARGO_BIN_EXE_lb"),
        env.root.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux)");
    text(&out.stdout)
}
