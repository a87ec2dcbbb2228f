//! Differential tests against docker's BuildKit: every `testdata/build/` case that docker
//! 20.10 (Debian 12's `docker.io`) can build is built by both, and the results must agree
//! on the flattened file tree (type, mode, owner, size, content, link target; mtimes aside)
//! and on the image config fields a user sees (Env, Cmd, Entrypoint, WorkingDir, User,
//! ExposedPorts, Labels, Volumes, StopSignal, Shell, Healthcheck, OnBuild), and on how
//! their plain progress numbers the steps (`[stage k/n] INSTRUCTION`).
//!
//! The test runs its own dockerd (no bridge, no iptables, a data root of its own that it
//! removes) and loads the same busybox base into both as `busybox`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;
use common::docker::Docker;
use common::*;

/// Cases docker 20.10's built-in Dockerfile frontend (1.2) cannot build, and why. Every
/// other case is compared, so a new case is covered without touching this file.
const NOT_COMPARED: &[(&str, &str)] = &[
    ("failing-run", "fails on purpose"),
    (
        "config-metadata",
        "HEALTHCHECK --start-interval is newer than docker 20.10",
    ),
    (
        "copy-exclude-parents",
        "COPY --exclude/--parents need dockerfile 1.7",
    ),
    ("heredocs", "heredocs need dockerfile 1.4"),
    (
        "multistage-chain",
        "docker 20.10 rejects a mixed-case stage reference",
    ),
    ("run-network-none", "RUN --network needs dockerfile 1.3"),
    ("secret-env", "secret env= needs dockerfile 1.10"),
];

/// Build options a case needs, given to both builders.
fn options(case: &str, secret: &Path) -> Vec<String> {
    match case {
        "arg-env-precedence" => vec!["--build-arg".into(), "UNDECLARED=x".into()],
        "run-mounts" => vec![
            "--secret".into(),
            format!("id=token,src={}", secret.display()),
        ],
        _ => Vec::new(),
    }
}

/// What the tree comparison looks at for one path.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    content: String,
    link: String,
}

/// A flattened image (a tar as `--output type=tar` writes it), path -> entry. A hard link
/// is read as its target's file: which of two linked names a writer stores first is its
/// own choice.
fn tree(tar_path: &Path) -> BTreeMap<String, Entry> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    let mut tree = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = clean(&entry.path().unwrap().to_string_lossy());
        if name.is_empty() {
            continue;
        }
        let h = entry.header();
        let kind = h.entry_type();
        let link = h
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        if kind.is_hard_link() {
            let target: &Entry = &tree[&clean(&link)];
            let copy = Entry {
                link: String::new(),
                content: target.content.clone(),
                ..*target
            };
            tree.insert(name, copy);
            continue;
        }
        let mut content = String::new();
        if kind.is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            content = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        }
        let kind = match () {
            _ if kind.is_file() => 'f',
            _ if kind.is_dir() => 'd',
            _ if kind.is_symlink() => 'l',
            _ => kind.as_byte() as char,
        };
        let h = entry.header();
        tree.insert(
            name,
            Entry {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: if kind == 'f' { h.size().unwrap() } else { 0 },
                content,
                link: if kind == 'l' { link } else { String::new() },
            },
        );
    }
    tree
}

fn clean(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .trim_start_matches('.')
        .to_string()
}

/// The config fields compared, absent and empty read alike (docker writes `null` where
/// BuildKit left a field unset).
fn fields(config: &Value) -> BTreeMap<&'static str, Value> {
    const FIELDS: &[&str] = &[
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Labels",
        "Volumes",
        "StopSignal",
        "Shell",
        "Healthcheck",
        "OnBuild",
    ];
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    FIELDS
        .iter()
        .filter_map(|&f| {
            let v = config.get(f).cloned().unwrap_or(Value::Null);
            (!empty(&v)).then_some((f, v))
        })
        .collect()
}

/// The steps a plain progress names, as `[stage k/n] KEYWORD` (BuildKit names a FROM's
/// image in full, `docker.io/library/busybox`: the keyword is compared, not the words),
/// and how many FROM steps it shows. BuildKit shows one FROM step for every stage (and
/// `--from` source) on the same image, named after any one of them, or with no
/// `[stage k/n]` at all when a `--from` source's name wins: FROM steps are counted, by
/// vertex (a name is printed again when the step's output resumes).
fn step_names(progress: &str) -> (std::collections::BTreeSet<String>, usize) {
    let mut froms = std::collections::BTreeSet::new();
    let names = progress
        .lines()
        .filter_map(|l| {
            let (vertex, rest) = l.strip_prefix('#')?.split_once(' ')?;
            let label_text = match rest.strip_prefix('[') {
                Some(r) => r.split_once("] ")?,
                None => ("", rest),
            };
            let (label, text) = label_text;
            let keyword = text.split_whitespace().next().unwrap_or("");
            if keyword == "FROM" {
                froms.insert(vertex.to_string());
                return None;
            }
            (!label.is_empty() && label != "internal").then(|| format!("[{label}] {keyword}"))
        })
        .collect();
    (names, froms.len())
}

#[test]
fn testdata_cases_build_as_docker_builds_them() {
    let Some(env) = setup() else { return };
    let Some(docker) = Docker::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let base = lb_testkit::busybox_rootfs(work.path()).unwrap();
    docker.ok(&["import", base.to_str().unwrap(), "busybox"]);
    let secret = work.path().join("token");
    std::fs::write(&secret, "s3cret\n").unwrap();

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/build");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| NOT_COMPARED.iter().all(|(skip, _)| skip != n))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "only {} cases compared", cases.len());

    let mut report = Vec::new();
    for name in &cases {
        let ctx = case(name);
        let ctx = ctx.to_str().unwrap();
        let opts = options(name, &secret);
        let tag = format!("diff-{name}");
        let tars: Vec<PathBuf> = ["docker", "lb"]
            .iter()
            .map(|who| work.path().join(format!("{name}.{who}.tar")))
            .collect();
        let out_tar = |t: &PathBuf| format!("type=tar,dest={}", t.display());

        // docker: the image (for its config, and its progress for the steps' names), then
        // the same build as a flat tar (cached).
        let mut args: Vec<&str> = vec!["build", "--progress", "plain", "--network", "host"];
        args.extend(["-t", &tag]);
        args.extend(opts.iter().map(String::as_str));
        args.push(ctx);
        let out = docker.cmd(&args).output().unwrap();
        assert!(
            out.status.success(),
            "docker build {name}: {}",
            text(&out.stderr)
        );
        let (docker_steps, docker_froms) = step_names(&text(&out.stderr));
        let docker_out = out_tar(&tars[0]);
        let mut args: Vec<&str> = vec!["build", "-q", "--network", "host", "-o", &docker_out];
        args.extend(opts.iter().map(String::as_str));
        args.push(ctx);
        docker.ok(&args);
        let inspect: Value = serde_json::from_str(&docker.ok(&["image", "inspect", &tag])).unwrap();
        let docker_config = fields(&inspect[0]["Config"]);

        // lb: the same two builds.
        let mut args: Vec<&str> = vec!["--progress", "plain", "-t", &tag];
        args.extend(opts.iter().map(String::as_str));
        args.push(ctx);
        let (code, id, log) = build(&env, &args);
        assert_eq!(code, 0, "lb build {name}: {log}");
        // The steps as numbered: the same `[stage k/n] INSTRUCTION`s (BuildKit also shows
        // a WORKDIR whose directory is there; lb has no step to show for it).
        let (lb_steps, lb_froms) = step_names(&log);
        if docker_froms != lb_froms {
            report.push(format!(
                "{name}: FROM steps: docker {docker_froms}, lb {lb_froms}"
            ));
        }
        for step in docker_steps.symmetric_difference(&lb_steps) {
            let docker_only_workdir = docker_steps.contains(step) && step.ends_with("] WORKDIR");
            if !docker_only_workdir {
                report.push(format!(
                    "{name}: step {step:?} only in {}'s progress: docker {docker_steps:?}, lb {lb_steps:?}",
                    if lb_steps.contains(step) { "lb" } else { "docker" }
                ));
            }
        }
        let lb_out = out_tar(&tars[1]);
        let mut args: Vec<&str> = vec!["-o", &lb_out];
        args.extend(opts.iter().map(String::as_str));
        args.push(ctx);
        let (code, _, log) = build(&env, &args);
        assert_eq!(code, 0, "lb build -o {name}: {log}");
        let blob = env
            .root
            .join("blobs/sha256")
            .join(id.trim().strip_prefix("sha256:").unwrap());
        let lb_image: Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
        let lb_config = fields(&lb_image["config"]);

        let (theirs, ours) = (tree(&tars[0]), tree(&tars[1]));
        assert!(!theirs.is_empty(), "{name}: docker's tree is empty");
        for path in theirs
            .keys()
            .chain(ours.keys().filter(|p| !theirs.contains_key(*p)))
        {
            if theirs.get(path) != ours.get(path) {
                report.push(format!(
                    "{name}: /{path}: docker {:?}, lb {:?}",
                    theirs.get(path),
                    ours.get(path)
                ));
            }
        }
        for field in docker_config.keys().chain(lb_config.keys()) {
            if docker_config.get(field) != lb_config.get(field) {
                report.push(format!(
                    "{name}: config {field}: docker {:?}, lb {:?}",
                    docker_config.get(field),
                    lb_config.get(field)
                ));
            }
        }
    }
    report.dedup();
    assert!(
        report.is_empty(),
        "lb and docker differ ({} cases compared):\n{}",
        cases.len(),
        report.join("\n")
    );
}
