//! Hostile input to the command line (issue 14, item 9): a Dockerfile nesting `${}`
//! thousands deep, one of tens of thousands of metadata lines, and a standard output or
//! error closed under lb. None may crash lb (a stack overflow's SIGABRT, a panic's 101) or
//! take time out of proportion to its size.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// `DIR/NAME/Dockerfile` holding `text`; the directory (a build context).
fn dockerfile(dir: &Path, name: &str, text: &str) -> String {
    let ctx = dir.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), text).unwrap();
    ctx.display().to_string()
}

/// `${a:+${a:+...x...}}`, `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}x{}", "${a:+".repeat(depth), "}".repeat(depth))
}

#[test]
fn deep_nesting_is_an_error_at_its_line_not_a_crash() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    for (i, text) in [
        format!("FROM busybox\nENV a=1\nLABEL x={}\n", nested(5_000)),
        // 100,000 deep: over Go's 64 KiB line limit, so on continuation lines.
        format!(
            "FROM busybox\nENV a=1\nRUN echo hi\nWORKDIR /{}x{}{}\n",
            format!("{}\\\n", "${a:+".repeat(1000)).repeat(100),
            format!("{}\\\n", "}".repeat(10_000)).repeat(9),
            "}".repeat(10_000)
        ),
    ]
    .iter()
    .enumerate()
    {
        let ctx = dockerfile(dir, &format!("deep{i}"), text);
        let (code, _, log) = build(&env, &[&ctx]);
        assert_eq!(code, 1, "{}", tail(&log));
        let line = if i == 0 { 3 } else { 4 };
        assert!(
            log.contains(&format!("Dockerfile:{line}\n")),
            "{}",
            tail(&log)
        );
        assert!(
            log.contains("syntax error: more than 200 nested ${} expansions"),
            "{}",
            tail(&log)
        );
        assert!(!log.contains("overflow"), "{}", tail(&log));
    }
    // Within the bound it expands as docker does.
    let ctx = dockerfile(
        dir,
        "deep-ok",
        &format!("FROM busybox\nENV a=1\nLABEL x={}\n", nested(150)),
    );
    let (code, _, log) = build(&env, &["-t", "deep-ok", &ctx]);
    assert_eq!(code, 0, "{}", tail(&log));
    assert_eq!(config(&env, "deep-ok")["Labels"]["x"], "x");
}

/// The end of a long log: the error is there, the 100 KB word need not be.
fn tail(log: &str) -> String {
    let start = log.len().saturating_sub(2000);
    let start = (start..log.len())
        .find(|i| log.is_char_boundary(*i))
        .unwrap_or(0);
    log[start..].to_string()
}

/// 30,000 ENV, LABEL and ARG lines (a quadratic builder took minutes for 10,000) build in time
/// proportional to them; the bound is loose (a debug build on a busy machine), the
/// figures are in `benches/parse.rs`.
#[test]
fn tens_of_thousands_of_env_label_and_arg_lines_build() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let mut text = String::from("FROM busybox\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "ENV e{i}=v{i}\nLABEL l{i}=$e{i}\nARG a{i}=$e{i}-$a{}\n",
            i / 2
        ));
    }
    text.push_str("RUN test \"$e9999\" = v9999 && test \"$a9999\" = v9999-v4999-v2499-v1249-v624-v312-v156-v78-v39-v19-v9-v4-v2-v1-v0-\n");
    let ctx = dockerfile(dir, "many", &text);
    let t = Instant::now();
    let (code, _, log) = build(&env, &["-t", "many", &ctx]);
    let took = t.elapsed();
    assert_eq!(code, 0, "{}", tail(&log));
    assert!(took < Duration::from_secs(120), "{took:?}");
    let c = config(&env, "many");
    assert_eq!(c["Labels"].as_object().unwrap().len(), 10_000);
    assert_eq!(c["Labels"]["l1234"], "v1234");
    // busybox's PATH and the 10,000 set here.
    assert_eq!(c["Env"].as_array().unwrap().len(), 10_001);
    // Unchanged, it comes from the cache: the keys are the same from one build to the next.
    let (code, _, log) = build(&env, &["-t", "many", &ctx]);
    assert_eq!(code, 0, "{}", tail(&log));
    assert!(log.contains("CACHED"), "{}", tail(&log));
}

/// A pipe whose reading end is closed: (its writing end for a child, nothing to read).
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: a valid array of two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just made and are owned here; the reading end is dropped at once.
    drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    unsafe { OwnedFd::from_raw_fd(fds[1]) }
}

/// `lb ARGS` with stdout (or stderr, `on_stderr`) a pipe nobody reads.
fn lb_closed(root: &Path, args: &[&str], on_stderr: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
    c.arg("--root").arg(root).args(args).stdin(Stdio::null());
    if on_stderr {
        c.stdout(Stdio::null()).stderr(closed_pipe());
    } else {
        c.stdout(closed_pipe()).stderr(Stdio::piped());
    }
    c.output().expect("run lb")
}

/// `lb images | head -0` and the like: lb ends as docker does when its reader goes away,
/// by SIGPIPE and silently, never with a panic (exit 101).
#[test]
fn a_closed_stdout_ends_lb_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let big = (0..20_000)
        .map(|i| format!("LABEL l{i}=v\n"))
        .collect::<String>();
    let df = dir.path().join("Dockerfile");
    std::fs::write(&df, format!("FROM busybox\n{big}")).unwrap();
    let df = df.to_str().unwrap();
    let cases: [&[&str]; 6] = [
        &["images"],
        &["images", "--format", "json"],
        &["parse", "-f", df],
        &["parse", "--format", "json", "-f", df],
        &["system", "df"],
        &["--help"],
    ];
    for args in cases {
        let out = lb_closed(&root, args, false);
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
    // Output is what `lb images` always writes: it dies of the closed pipe, as docker does.
    assert_eq!(
        lb_closed(&root, &["images"], false).status.signal(),
        Some(libc::SIGPIPE)
    );
    // A closed stderr with an error to report: the same.
    let out = lb_closed(&root, &["parse", "-f", "/nonexistent/Dockerfile"], true);
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
