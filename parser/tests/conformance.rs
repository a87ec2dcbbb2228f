//! BuildKit's own parser and shell-word test vectors (`../shared/conformance/buildkit`, or
//! `$LB_CONFORMANCE_DIR`): every parser case must dump byte-for-byte as BuildKit's, every
//! negative case must be refused, and every expansion vector must give BuildKit's result.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use lb_parser::shell::Lexer;

/// The data directory, or `None` (with the reason printed) when the test must be skipped.
fn data_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LB_CONFORMANCE_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "LB_CONFORMANCE_DIR={} is not a directory",
            dir.display()
        );
        return Some(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/buildkit");
    if dir.is_dir() {
        return Some(dir);
    }
    lb_testkit::skip(&format!("conformance data not found at {}", dir.display()));
    None
}

/// One part of the data set. The shared set must be complete; another set given through
/// `$LB_CONFORMANCE_DIR` may hold only some kinds of vectors.
fn data(part: &str) -> Option<PathBuf> {
    let path = data_dir()?.join(part);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("LB_CONFORMANCE_DIR").is_some(),
        "the conformance data lacks {}",
        path.display()
    );
    eprintln!("this conformance set has no {part}");
    None
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn conformance_parser_cases() {
    let Some(dir) = data("parser/cases") else {
        return;
    };
    let cases = subdirs(&dir);
    let mut failures = Vec::new();
    for case in &cases {
        let src = fs::read(case.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(case.join("result")).unwrap();
        match lb_parser::parse_syntax(&src) {
            Ok(tree) => {
                let got = tree.dump();
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error: {e}", case.display())),
        }
    }
    assert!(!cases.is_empty(), "no cases under {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} parser cases passed", cases.len());
}

#[test]
fn conformance_negative_cases() {
    let Some(dir) = data("parser/negative") else {
        return;
    };
    let cases = subdirs(&dir);
    let accepted: Vec<String> = cases
        .iter()
        .filter(|case| {
            let src = fs::read(case.join("Dockerfile")).unwrap();
            lb_parser::parse_syntax(&src).is_ok()
        })
        .map(|c| c.display().to_string())
        .collect();
    assert!(accepted.is_empty(), "negative cases accepted: {accepted:?}");
    eprintln!("{} negative cases refused", cases.len());
}

#[test]
fn conformance_line_numbers() {
    let Some(path) = data("parser/line-numbers.Dockerfile") else {
        return;
    };
    let tree = lb_parser::parse_syntax(&fs::read(&path).unwrap()).unwrap();
    let spans: Vec<(usize, usize)> = tree
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(spans, vec![(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn conformance_env_var_test() {
    let Some(path) = data("shell/envVarTest") else {
        return;
    };
    let text = fs::read_to_string(&path).unwrap();
    let env: HashMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lex = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "{}:{}: bad vector", path.display(), n + 1);
        if fields[0] == "W" {
            continue;
        }
        checked += 1;
        let (input, expected) = (fields[1], fields[2]);
        match (lex.process_word(input, &env), expected) {
            (Err(_), "error") => {}
            (Ok(got), e) if got == e => {}
            (got, e) => failures.push(format!(
                "line {}: {input:?}: expected {e:?}, got {got:?}",
                n + 1
            )),
        }
    }
    report(&failures, checked, "envVarTest");
}

#[test]
fn conformance_words_test() {
    let Some(path) = data("shell/wordsTest") else {
        return;
    };
    let text = fs::read_to_string(&path).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let lex = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            let def = def.trim_start();
            let (k, v) = def.split_once('=').unwrap_or((def, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("{}:{}: bad vector", path.display(), n + 1));
        let input = input.trim();
        let expected = expected.trim_start();
        checked += 1;
        match lex.process_words(input, &env) {
            Err(_) if expected == "error" => {}
            Ok(words)
                if expected != "error" && words == expected.split(',').collect::<Vec<_>>() => {}
            got => failures.push(format!(
                "line {}: {input:?}: expected {expected:?}, got {got:?}",
                n + 1
            )),
        }
    }
    report(&failures, checked, "wordsTest");
}

fn report(failures: &[String], checked: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {checked} {what} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} {what} vectors passed");
}
