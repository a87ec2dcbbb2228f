//! The builder schedules steps, not stages: a stage's steps before its first read of
//! another stage run beside that stage, identical steps of one build run once, and the
//! first failure cancels the rest and is the one reported.

use std::time::{Duration, Instant};

mod common;
use common::*;

/// The final stage's `sleep 1` runs beside the `sleep 1` of the stage it copies from
/// later: about 1 s in all, not 2 (`benches/build_vs_buildkit.sh` measures it; asserted
/// loosely here); with `--jobs 1`, one after the other.
#[test]
fn a_stage_runs_its_steps_before_a_copy_from_beside_the_stage_it_reads() {
    let Some(env) = setup() else { return };
    let ctx = context(
        &env,
        "overlap",
        "FROM busybox AS build\nRUN sleep 1 && echo built > /artefact\n\
         FROM busybox\nRUN sleep 1 && echo final > /final\nCOPY --from=build /artefact /artefact\n",
        &[],
    );
    let started = Instant::now();
    let (code, _, log) = build(&env, &["-t", "overlap", ctx.to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{log}");
    assert!(
        took < Duration::from_millis(1800),
        "took {took:?}: the two sleeps ran one after the other\n{log}"
    );
    let (code, out, err) = run_image(&env, &[], "overlap", &["cat", "/artefact", "/final"]);
    assert_eq!((code, out.as_str()), (0, "built\nfinal\n"), "{err}");
    // `--jobs 1` runs one step at a time: the two sleeps no longer overlap.
    let started = Instant::now();
    let (code, _, log) = build(&env, &["--no-cache", "--jobs", "1", ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{log}");
    let out = lb(&env, &["build", "--jobs", "x", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--jobs"),
        "{}",
        text(&out.stderr)
    );
}

/// Two stages that start with the same FROM and the same RUN run it once (a counter in
/// a cache mount, which both would append to), also under `--no-cache`, as BuildKit
/// merges identical vertices.
#[test]
fn identical_steps_of_two_stages_run_once() {
    let Some(env) = setup() else { return };
    let count = "RUN --mount=type=cache,id=counter,target=/c echo ran >> /c/count\n";
    let dockerfile = format!(
        "FROM busybox AS a\n{count}RUN echo a > /a\n\
         FROM busybox AS b\n{count}RUN echo b > /b\n\
         FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n\
         RUN --mount=type=cache,id=counter,target=/c wc -l < /c/count > /count\n"
    );
    let ctx = context(&env, "twice", &dockerfile, &[]);
    for (tag, extra) in [("once", None), ("once-nocache", Some("--no-cache"))] {
        let mut args: Vec<&str> = extra.into_iter().collect();
        args.extend(["-t", tag, ctx.to_str().unwrap()]);
        let (code, _, log) = build(&env, &args);
        assert_eq!(code, 0, "{log}");
        let (code, out, err) = run_image(&env, &[], tag, &["cat", "/count", "/a", "/b"]);
        assert_eq!(code, 0, "{err}");
        // The first build ran the counting step once; the --no-cache one once more.
        let want = if extra.is_none() { "1" } else { "2" };
        assert_eq!(out, format!("{want}\na\nb\n"), "{tag}: {log}");
    }
}

/// A failing step in one branch stops the other branch's long step at once, and the
/// error is the failing step's, at its line.
#[test]
fn a_failure_cancels_the_other_branches_and_names_its_line() {
    let Some(env) = setup() else { return };
    let ctx = context(
        &env,
        "cancel",
        "FROM busybox AS slow\nRUN sleep 60\n\
         FROM busybox AS broken\nRUN sleep 0.3 && echo breaking && exit 7\n\
         FROM busybox\nCOPY --from=slow /etc/hostname /a\nCOPY --from=broken /etc/hostname /b\n",
        &[],
    );
    let started = Instant::now();
    let (code, _, log) = build(
        &env,
        &["--progress", "plain", "-t", "cancel", ctx.to_str().unwrap()],
    );
    let took = started.elapsed();
    assert_eq!(code, 1, "{log}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?}: the sleeping branch was not canceled\n{log}"
    );
    assert!(log.contains("Dockerfile:4"), "{log}");
    assert!(log.contains("exit code: 7"), "{log}");
    assert!(!log.contains("canceled: another step"), "{log}");
    // The steps say how they ended, as BuildKit's plain progress does.
    let vertex_of = |what: &str| {
        let line = log.lines().find(|l| l.contains(what)).expect(what);
        line.split(' ').next().unwrap().to_string()
    };
    let (broken, slow) = (vertex_of("RUN sleep 0.3"), vertex_of("RUN sleep 60"));
    assert!(
        log.contains(&format!("{broken} ERROR: process \"/bin/sh -c sleep 0.3")),
        "{log}"
    );
    assert!(log.contains(&format!("{slow} CANCELED")), "{log}");
    assert!(!text(&lb(&env, &["images"]).stdout).contains("cancel"));
    // The killed step left no container or cgroup behind: a new build runs as usual.
    let (code, _, log) = build(&env, &["-t", "after", case("basic").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
}
