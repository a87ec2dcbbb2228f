//! `lb build --cache-to/--cache-from` (a build cache outside the store, for CI runners
//! that start empty) against a registry on loopback and OCI layout directories: a fresh
//! store runs no step and gets the same image, an edit reruns only what depends on it,
//! `mode=min` keeps fewer layers than `max`, concurrent exports leave a valid cache, a
//! registry that is down fails the export unless `ignore-error=true`, and a blob with
//! wrong bytes is a miss, never trusted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lb_testkit::{RegistryAuth, TestRegistry};

mod common;
use common::*;

/// Two stages; every RUN step writes the time it ran, so an image made from the cache
/// is told from one made by running the steps.
const DOCKERFILE: &str = "FROM busybox AS build
RUN date +%s%N > /built-at
COPY app.txt /src/app.txt
RUN cat /src/app.txt /built-at > /artifact && date +%s%N >> /artifact

FROM busybox
RUN date +%s%N > /final-at
COPY --from=build /artifact /artifact
COPY other.txt /other.txt
CMD [\"cat\", \"/final-at\", \"/artifact\"]
";

/// A store whose busybox is the same image in every store (imported from standard input
/// with a fixed time: the config names neither the tar's path nor the time),
/// as a base image pulled from a registry is on every CI runner.
fn store() -> Option<Env> {
    let env = setup()?;
    let tar = env.root.parent().unwrap().join("busybox.tar");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(["import", "-", "busybox"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .env("SOURCE_DATE_EPOCH", "946684800")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some(env)
}

fn files(app: &str) -> [(&'static str, String); 2] {
    [
        ("app.txt", app.to_string()),
        ("other.txt", "other\n".into()),
    ]
}

fn ctx(env: &Env, name: &str, app: &str) -> PathBuf {
    let f = files(app);
    let files: Vec<(&str, &str)> = f.iter().map(|(p, c)| (*p, c.as_str())).collect();
    context(env, name, DOCKERFILE, &files)
}

/// Each step of a plain progress log by its name: `CACHED`, `CACHED (REF)` or `RAN`.
fn outcomes(log: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Some((vertex, rest)) = line.split_once(' ') else {
            continue;
        };
        if rest.starts_with('[') && !rest.contains(" FROM ") {
            names.insert(vertex.to_string(), rest.to_string());
        } else if let Some(name) = names.get(vertex) {
            if rest.starts_with("CACHED") {
                out.insert(name.clone(), rest.to_string());
            } else if rest.starts_with("DONE") {
                out.entry(name.clone()).or_insert_with(|| "RAN".to_string());
            }
        }
    }
    out
}

/// What the image's command prints: the times its RUN steps wrote.
fn stamps(env: &Env, image: &str) -> String {
    let (code, out, err) = run_image(env, &[], image, &[]);
    assert_eq!(code, 0, "{err}");
    out
}

fn built(env: &Env, args: &[&str]) -> (String, String) {
    let mut all = vec!["--progress", "plain"];
    all.extend_from_slice(args);
    let (code, id, log) = build(env, &all);
    assert_eq!(code, 0, "{log}");
    (id, log)
}

/// The cache config of the OCI layout at `dir` (its index's manifest's config).
fn layout_config(dir: &Path) -> serde_json::Value {
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.buildkit.cacheconfig.v0"
    );
    serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()
}

#[test]
fn a_fresh_store_takes_every_step_from_a_registry_cache_and_an_edit_reruns_its_dependents() {
    let Some(a) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let cache = format!("{}/cache/app:buildcache", reg.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    let (id_a, log) = built(
        &a,
        &[
            "-t",
            "app",
            "--cache-to",
            &to,
            ctx(&a, "ctx", "one\n").to_str().unwrap(),
        ],
    );
    assert!(
        log.contains(&format!("exporting cache to {cache}")),
        "{log}"
    );
    assert!(outcomes(&log).values().all(|o| o == "RAN"), "{log}");

    // A fresh store: nothing runs, every step comes from the cache, the same image.
    let Some(b) = store() else { return };
    let from = format!("type=registry,ref={cache}");
    let meta = b.root.parent().unwrap().join("meta.json");
    let (id_b, log) = built(
        &b,
        &[
            "-t",
            "app",
            "--cache-from",
            &from,
            "--cache-to",
            &to,
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx(&b, "ctx", "one\n").to_str().unwrap(),
        ],
    );
    let got = outcomes(&log);
    assert_eq!(got.len(), 6, "{log}");
    for (step, outcome) in &got {
        assert_eq!(outcome, &format!("CACHED ({cache})"), "{step}: {log}");
    }
    assert_eq!(id_b, id_a);
    assert_eq!(stamps(&b, "app"), stamps(&a, "app"));
    // What buildx writes, and lb's figures: all steps cached, the layers fetched once, and
    // the export to the cache it came from sends nothing (the registry has every blob).
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.config.digest"], id_b.as_str());
    assert_eq!(meta["image.name"], "docker.io/library/app:latest");
    let figures = &meta["lb.cache"];
    assert_eq!(figures["steps.cached"], 6, "{meta}");
    assert_eq!(figures["steps.run"], 0, "{meta}");
    assert_eq!(
        figures["blobs.downloaded"], 6,
        "the steps' layers, not busybox's: {meta}"
    );
    assert_eq!(figures["blobs.uploaded"], 0, "{meta}");
    // The cache it made is the one it read from that tag: not even a HEAD was sent.
    assert!(
        log.contains(&format!("exporting cache to {cache}: 6 steps")),
        "{log}"
    );
    assert!(log.contains("(unchanged) done"), "{log}");
    assert!(figures["blobs.reused"].as_u64().unwrap() >= 6, "{meta}");

    // A bare reference is the same cache; an edit of app.txt reruns its COPY and what
    // depends on it, nothing else.
    let Some(c) = store() else { return };
    let (id_c, log) = built(
        &c,
        &[
            "-t",
            "app",
            "--cache-from",
            &cache,
            "--explain",
            ctx(&c, "ctx", "two\n").to_str().unwrap(),
        ],
    );
    // --explain names the file that changed, and the steps that ran after it.
    assert!(log.contains(" explain: app.txt changed\n"), "{log}");
    assert!(log.contains(" explain: a step before it ran"), "{log}");
    assert_ne!(id_c, id_a);
    let got = outcomes(&log);
    let ran: Vec<&str> = got
        .iter()
        .filter(|(_, o)| *o == "RAN")
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(
        ran,
        [
            "[build 3/4] COPY app.txt /src/app.txt",
            "[build 4/4] RUN cat /src/app.txt /built-at > /artifact && date +%s%N >> /artifact",
            "[stage-1 3/4] COPY --from=build /artifact /artifact",
            "[stage-1 4/4] COPY other.txt /other.txt",
        ],
        "{log}"
    );
    let (a_out, c_out) = (stamps(&a, "app"), stamps(&c, "app"));
    // /final-at and /built-at came from the cache: A's times.
    assert_eq!(a_out.lines().next(), c_out.lines().next());
    assert!(c_out.contains("two"), "{c_out}");

    // Interop: skopeo reads the cache's manifest; its config is BuildKit's cache config.
    if lb_testkit::require_tools("skopeo", &["/usr/bin/skopeo"]) {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{cache}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("application/vnd.buildkit.cacheconfig.v0"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn a_local_cache_serves_a_fresh_store_and_min_keeps_fewer_layers_than_max() {
    let Some(a) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (max, min) = (dir.path().join("max"), dir.path().join("min"));
    let to_max = format!("type=local,dest={},mode=max", max.display());
    let to_min = format!("type=local,dest={}", min.display());
    // BuildKit 0.8's form too: an index listing the cache config beside the blobs.
    let index = dir.path().join("index");
    let to_index = format!(
        "type=local,dest={},mode=max,image-manifest=false",
        index.display()
    );
    let context = ctx(&a, "ctx", "one\n");
    let (id_a, _) = built(
        &a,
        &[
            "-t",
            "app",
            "--cache-to",
            &to_max,
            "--cache-to",
            &to_min,
            "--cache-to",
            &to_index,
            context.to_str().unwrap(),
        ],
    );
    let (max_c, min_c) = (layout_config(&max), layout_config(&min));
    let count = |c: &serde_json::Value, k: &str| c[k].as_array().unwrap().len();
    assert!(
        count(&min_c, "layers") < count(&max_c, "layers"),
        "{min_c}\n{max_c}"
    );
    assert!(count(&min_c, "records") < count(&max_c, "records"));
    // Records are lb's: no BuildKit op digest among them, each names its image config.
    for r in max_c["records"].as_array().unwrap() {
        assert!(r["lb.image"]["digest"].is_string(), "{r}");
    }

    // min: the final stage's steps come from the cache, the build stage runs again.
    let Some(b) = store() else { return };
    let from = format!("type=local,src={}", min.display());
    let (id_b, log) = built(
        &b,
        &[
            "-t",
            "app",
            "--cache-from",
            &from,
            ctx(&b, "ctx", "one\n").to_str().unwrap(),
        ],
    );
    let got = outcomes(&log);
    assert_eq!(
        got["[build 2/4] RUN date +%s%N > /built-at"], "RAN",
        "{log}"
    );
    assert_eq!(
        got["[stage-1 2/4] RUN date +%s%N > /final-at"],
        format!("CACHED ({})", min.display())
    );
    assert_ne!(id_b, id_a, "the build stage ran again: another artifact");

    // max, in either form: nothing runs.
    for cache in [&max, &index] {
        let Some(c) = store() else { return };
        let from = format!("type=local,src={}", cache.display());
        let (id_c, log) = built(
            &c,
            &[
                "-t",
                "app",
                "--cache-from",
                &from,
                ctx(&c, "ctx", "one\n").to_str().unwrap(),
            ],
        );
        assert!(
            outcomes(&log).values().all(|o| o.starts_with("CACHED (")),
            "{log}"
        );
        assert_eq!(id_c, id_a);
        assert_eq!(stamps(&c, "app"), stamps(&a, "app"));
    }
    if lb_testkit::require_tools("skopeo", &["/usr/bin/skopeo"]) {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", max.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

#[test]
fn bad_bytes_are_a_miss_and_a_registry_that_is_down_fails_the_export_unless_ignored() {
    let Some(a) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("cache");
    let to = format!("type=local,dest={},mode=max", local.display());
    let context = ctx(&a, "ctx", "one\n");
    built(
        &a,
        &["-t", "app", "--cache-to", &to, context.to_str().unwrap()],
    );

    // Every layer blob of the cache overwritten with other bytes of the same size.
    let config = layout_config(&local);
    for layer in config["layers"].as_array().unwrap() {
        let hex = layer["blob"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let path = local.join("blobs/sha256").join(hex);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![b'x'; len]).unwrap();
    }
    let Some(b) = store() else { return };
    let from = format!("type=local,src={}", local.display());
    let (_, log) = built(
        &b,
        &[
            "-t",
            "app",
            "--cache-from",
            &from,
            ctx(&b, "ctx", "one\n").to_str().unwrap(),
        ],
    );
    assert!(outcomes(&log).values().all(|o| o == "RAN"), "{log}");
    assert!(log.contains("WARNING: cache"), "{log}");
    let (code, out, _) = run_image(&b, &[], "app", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("one"), "{out}");

    // Nothing listens there: the export fails the build (the image is built and named)...
    let down = format!("127.0.0.1:{}/cache/app:c", lb_testkit::free_port());
    let to = format!("type=registry,ref={down}");
    let (code, _, log) = build(
        &a,
        &["-t", "app2", "--cache-to", &to, context.to_str().unwrap()],
    );
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains(&format!("failed to export cache to {down}")),
        "{log}"
    );
    // ...unless asked to go on.
    let to = format!("{to},ignore-error=true");
    let (code, _, log) = build(
        &a,
        &["-t", "app2", "--cache-to", &to, context.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("WARNING: exporting cache"), "{log}");
    // A cache to read from that is down is a warning: the build runs its steps.
    let from = format!("type=registry,ref={down}");
    let (code, _, log) = build(
        &b,
        &[
            "--cache-from",
            &from,
            "--no-cache",
            context.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("WARNING: importing cache manifest"), "{log}");

    // Values lb cannot take are refused before anything runs.
    for (bad, says) in [
        ("type=s3,ref=x", "type=s3"),
        ("type=registry,ref=x,mode=all", "mode=all"),
    ] {
        let (code, _, log) = build(&a, &["--cache-to", bad, context.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(log.contains(says), "{log}");
    }
}

/// A registry that serves other bytes than a layer's digest says (its storage damaged):
/// the step is a miss, the build runs it and succeeds.
#[test]
fn a_registry_serving_wrong_bytes_is_a_miss() {
    let Some(a) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let cache = format!("{}/cache/bad:c", reg.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    built(
        &a,
        &["--cache-to", &to, ctx(&a, "ctx", "one\n").to_str().unwrap()],
    );
    // Every layer blob the registry stores (gzip; not the JSON configs), same size.
    let blobs = reg.dir.join("data/docker/registry/v2/blobs/sha256");
    let mut damaged = 0;
    for prefix in std::fs::read_dir(&blobs).unwrap() {
        for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let data = blob.unwrap().path().join("data");
            let bytes = std::fs::read(&data).unwrap();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut bad = bytes.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0xff;
                std::fs::write(&data, bad).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged >= 5, "{damaged}");
    let Some(b) = store() else { return };
    let (_, log) = built(
        &b,
        &[
            "-t",
            "app",
            "--cache-from",
            &cache,
            ctx(&b, "ctx", "one\n").to_str().unwrap(),
        ],
    );
    assert!(outcomes(&log).values().all(|o| o == "RAN"), "{log}");
    assert!(log.contains("WARNING: cache"), "{log}");
    let (code, out, _) = run_image(&b, &[], "app", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("one"), "{out}");
}

#[test]
fn two_builds_exporting_to_one_ref_at_once_leave_a_valid_cache() {
    let Some(a) = store() else { return };
    let Some(b) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let cache = format!("{}/cache/shared:c", reg.addr);
    let to = format!("type=registry,ref={cache},mode=max");
    let (ca, cb) = (ctx(&a, "ctx", "a\n"), ctx(&b, "ctx", "b\n"));
    let spawn = |env: &Env, context: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lb"))
            .arg("--root")
            .arg(&env.root)
            .args(["build", "-q", "-t", "app", "--cache-to", &to])
            .arg(context)
            .output()
            .unwrap()
    };
    let (oa, ob) = std::thread::scope(|s| {
        let ta = s.spawn(|| spawn(&a, &ca));
        let tb = s.spawn(|| spawn(&b, &cb));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(oa.status.success(), "{}", text(&oa.stderr));
    assert!(ob.status.success(), "{}", text(&ob.stderr));
    // Whichever export came last, the cache is whole: a fresh store takes one of the two
    // builds from it entirely.
    let Some(c) = store() else { return };
    let mut hits = 0;
    for app in ["a\n", "b\n"] {
        let (_, log) = built(
            &c,
            &[
                "--cache-from",
                &cache,
                ctx(&c, "ctx", app).to_str().unwrap(),
            ],
        );
        if outcomes(&log).values().all(|o| o.starts_with("CACHED")) {
            hits += 1;
        }
        assert!(!log.contains("WARNING"), "{log}");
    }
    assert!(hits >= 1, "neither build came whole from the cache");
}

#[test]
fn an_inline_cache_travels_in_the_pushed_image() {
    let Some(a) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let name = format!("{}/app:inline", reg.addr);
    let context = ctx(&a, "ctx", "one\n");
    let (plain, _) = built(&a, &["-t", "plain", context.to_str().unwrap()]);
    let (with_cache, _) = built(
        &a,
        &[
            "-t",
            &name,
            "--cache-to",
            "type=inline",
            "--push",
            context.to_str().unwrap(),
        ],
    );
    assert_ne!(with_cache, plain, "the config holds the records");
    let config = config(&a, &name);
    assert!(config.is_object());

    // A fresh store: the final image's steps come from the image, the build stage (not
    // in a min cache) runs again; its artifact is another (it holds a time), so the COPY
    // of it and what follows run too, as BuildKit's would.
    let Some(b) = store() else { return };
    let (id_b, log) = built(
        &b,
        &[
            "-t",
            "app",
            "--cache-from",
            &name,
            ctx(&b, "ctx", "one\n").to_str().unwrap(),
        ],
    );
    let got = outcomes(&log);
    assert_eq!(
        got["[stage-1 2/4] RUN date +%s%N > /final-at"],
        format!("CACHED ({name})"),
        "{log}"
    );
    for (step, outcome) in &got {
        if step.starts_with("[build ") {
            assert_eq!(outcome, "RAN", "{step}: {log}");
        }
    }
    assert_ne!(id_b, plain);
    // /final-at is A's.
    let (a_out, b_out) = (stamps(&a, "plain"), stamps(&b, "app"));
    assert_eq!(a_out.lines().next(), b_out.lines().next());
}

/// docker 20.10's BuildKit given lb's cache builds (missing: lb's records are in a
/// namespace of their own), and lb given an image docker built with its inline cache
/// builds too (BuildKit's records are not lb's: a miss).
#[test]
fn buildkit_and_lb_read_each_others_caches_as_misses() {
    let Some((env, docker)) = common::docker::both() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let context = ctx(&env, "ctx", "one\n");
    let ctx_s = context.to_str().unwrap();
    for manifest in ["true", "false"] {
        let cache = format!("{}/cache/lb:{manifest}", reg.addr);
        let to = format!("type=registry,ref={cache},mode=max,image-manifest={manifest}");
        built(&env, &["--cache-to", &to, ctx_s]);
        let out = docker
            .cmd(&[
                "build",
                "--network",
                "host",
                "--progress",
                "plain",
                "--cache-from",
                &cache,
                "-t",
                "dapp",
                ctx_s,
            ])
            .output()
            .unwrap();
        let log = text(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(!log.contains("CACHED"), "BuildKit hit lb's cache: {log}");
        // Its own cache of this build goes, so the next one can only hit lb's.
        docker.ok(&["builder", "prune", "-af"]);
    }

    let image = format!("{}/docker/app:inline", reg.addr);
    docker.ok(&[
        "build",
        "--network",
        "host",
        "--build-arg",
        "BUILDKIT_INLINE_CACHE=1",
        "-t",
        &image,
        ctx_s,
    ]);
    docker.ok(&["push", &image]);
    let (code, _, log) = build(
        &env,
        &["--progress", "plain", "--cache-from", &image, ctx_s],
    );
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(&format!("CACHED ({image})")), "{log}");
}

/// `cache-mounts=true`: what a step left in a `RUN --mount=type=cache` in one store is
/// there for a step that runs with that cache in another, through the cache.
#[test]
fn cache_mounts_travel_with_the_cache_when_asked() {
    let Some(a) = store() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let writes = context(
        &a,
        "writes",
        "FROM busybox\nRUN --mount=type=cache,target=/cache,id=deps sh -c 'echo fetched-in-a > /cache/dep; mkdir -p /cache/sub; echo deeper > /cache/sub/f'\n",
        &[],
    );
    let with = format!("{}/cache/mounts:with", reg.addr);
    let without = format!("{}/cache/mounts:without", reg.addr);
    let (_, log) = built(
        &a,
        &[
            "--cache-to",
            &format!("type=registry,ref={with},cache-mounts=true"),
            "--cache-to",
            &format!("type=registry,ref={without}"),
            writes.to_str().unwrap(),
        ],
    );
    assert!(
        log.contains(&format!(
            "exporting cache to {with}: 1 steps, 2 layers, 1 cache mounts"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "exporting cache to {without}: 1 steps, 2 layers, 0 cache mounts"
        )),
        "{log}"
    );

    // Another Dockerfile, the same cache id at another path: a step that runs.
    let reads = "FROM busybox\nRUN --mount=type=cache,target=/var/cache/x,id=deps sh -c 'cat /var/cache/x/dep /var/cache/x/sub/f > /seen || echo none > /seen'\nCMD [\"cat\", \"/seen\"]\n";
    for (cache, want) in [(&without, "none\n"), (&with, "fetched-in-a\ndeeper\n")] {
        let Some(b) = store() else { return };
        let ctx = context(&b, "reads", reads, &[]);
        built(
            &b,
            &["-t", "r", "--cache-from", cache, ctx.to_str().unwrap()],
        );
        let (code, out, err) = run_image(&b, &[], "r", &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, want, "{cache}");
    }
}
