//! `lb parse` end to end: the real binary on files, standard input and bad input, and the
//! conformance cases through `lb parse --format dump` as the hidden set is run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn lb(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lb");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn conformance_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("LB_CONFORMANCE_DIR") {
        return Some(PathBuf::from(d));
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/buildkit");
    if d.is_dir() {
        return Some(d);
    }
    lb_testkit::skip(&format!("conformance data not found at {}", d.display()));
    None
}

#[test]
fn conformance_cli_dump_matches_every_case() {
    let Some(dir) = conformance_dir() else { return };
    if !dir.join("parser/cases").is_dir() && std::env::var_os("LB_CONFORMANCE_DIR").is_some() {
        eprintln!("this conformance set has no parser cases");
        return;
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("parser/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let file = case.join("Dockerfile");
        let out = lb(
            &["parse", "-f", file.to_str().unwrap(), "--format", "dump"],
            None,
        );
        assert!(
            out.status.success(),
            "{}: {}",
            case.display(),
            text(&out.stderr)
        );
        let expected = std::fs::read(case.join("result")).unwrap();
        assert_eq!(text(&out.stdout), text(&expected), "{}", case.display());
    }
    for case in std::fs::read_dir(dir.join("parser/negative"))
        .into_iter()
        .flatten()
    {
        let file = case.unwrap().path().join("Dockerfile");
        let out = lb(
            &["parse", "-f", file.to_str().unwrap(), "--format", "dump"],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{}", file.display());
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn stdin_and_default_format() {
    let out = lb(
        &["parse", "-f", "-"],
        Some(b"FROM busybox\nRUN echo \\\n  hi\n"),
    );
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "(from \"busybox\")\n(run \"echo   hi\")\n"
    );
}

#[test]
fn json_is_typed_with_lines_flags_and_heredocs() {
    let src = b"FROM a AS build\nCOPY --from=build --link <<EOF /etc/motd\nhello\nEOF\n";
    let out = lb(&["parse", "-f", "-", "--format", "json"], Some(src));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    let copy = &v["instructions"][1];
    assert_eq!(copy["instruction"], "copy");
    assert_eq!(
        (copy["start_line"].as_u64(), copy["end_line"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(copy["flags"], serde_json::json!(["--from=build", "--link"]));
    assert_eq!(copy["from"], "build");
    assert_eq!(copy["link"], true);
    assert_eq!(copy["inline"][0]["content"], "hello\n");
    assert_eq!(copy["dest"], "/etc/motd");
}

#[test]
fn bad_dockerfile_names_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Dockerfile.bad");
    std::fs::write(&path, "FROM a\n\nCOPY --chmod=0644 only-one\n").unwrap();
    let out = lb(
        &["parse", "-f", path.to_str().unwrap(), "--format", "json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:3: COPY requires at least two arguments",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("3 | COPY --chmod=0644 only-one"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = lb(&["parse", "-f", "/nonexistent/Dockerfile"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read /nonexistent/Dockerfile"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_and_help() {
    let out = lb(&["--version"], None);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("lb "));
    let out = lb(&["help"], None);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("parse"));
    let out = lb(&["parse", "--format", "yaml"], None);
    assert_eq!(out.status.code(), Some(2));
}
