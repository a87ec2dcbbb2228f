//! `lb build` end to end, as root, on the cases in `testdata/build/`: each is built with the
//! real binary and checked by running the image or reading its config; the cache is checked
//! by rebuilding (unchanged, an edited COPY'd file, an unused build arg) and reproducibility
//! by two `--no-cache` builds under SOURCE_DATE_EPOCH.

use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;
use common::*;

/// A copy of a testdata case in a temporary directory, to edit.
fn scratch_copy(env: &Env, name: &str) -> PathBuf {
    let to = env.root.parent().unwrap().join(format!("ctx-{name}"));
    let st = Command::new("cp")
        .arg("-a")
        .arg(case(name))
        .arg(&to)
        .status()
        .unwrap();
    assert!(st.success());
    to
}

#[test]
fn basic_env_workdir_copy_run_user_cmd() {
    let Some(env) = setup() else { return };
    let (code, id, log) = build(&env, &["-t", "basic", case("basic").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert!(id.starts_with("sha256:"), "{id}");
    // BuildKit's name: the steps it counts (FROM, WORKDIR, COPY, RUN), no stage name for
    // a Dockerfile of one stage, variables in scope expanded.
    assert!(
        log.contains("[4/4] RUN echo \"hello from $(pwd)\" > run.txt"),
        "{log}"
    );
    let (code, out, err) = run_image(&env, &[], "basic", &[]);
    assert_eq!(
        (code, out.as_str()),
        (0, "hello from /app\nfile a\nfile b\n"),
        "{err}"
    );
    let c = config(&env, "basic");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Cmd"], serde_json::json!(["cat", "/app/run.txt"]));
    let envs = c["Env"].as_array().unwrap();
    assert!(
        envs.iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=")),
        "{envs:?}"
    );
    assert!(envs.contains(&serde_json::json!("GREETING=hello")));
    // Copied files are root's, with their modes; the RUN's file is there too.
    let (_, out, _) = run_image(
        &env,
        &[],
        "basic",
        &[
            "stat",
            "-c",
            "%U %a %n",
            "/app/a.txt",
            "/app/sub",
            "/app/run.txt",
        ],
    );
    assert_eq!(
        out,
        "root 644 /app/a.txt\nroot 755 /app/sub\nroot 644 /app/run.txt\n"
    );
    // One history entry per instruction; layers for WORKDIR (it makes /app), COPY, RUN.
    let hist = text(&lb(&env, &["history", "basic"]).stdout);
    assert_eq!(hist.lines().count(), 1 + 1 + 7, "{hist}");
}

#[test]
fn the_cache_reruns_only_what_changed() {
    let Some(env) = setup() else { return };
    let ctx = scratch_copy(&env, "basic");
    let ctx_s = ctx.to_str().unwrap();
    let (code, first, log) = build(&env, &["-t", "c", ctx_s]);
    assert_eq!(code, 0, "{log}");
    // Unchanged: every step CACHED, nothing runs, the same image.
    let (code, again, log) = build(&env, &["-t", "c", ctx_s]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(log.matches("CACHED").count(), 3, "{log}");
    assert!(!log.contains(" hello"), "{log}");
    assert_eq!(again, first);
    // A build arg no stage declares changes nothing.
    let (_, unused, log) = build(&env, &["--build-arg", "UNUSED=1", "-t", "c", ctx_s]);
    assert_eq!(
        (unused.as_str(), log.matches("CACHED").count()),
        (first.as_str(), 3),
        "{log}"
    );
    // An edited COPY'd file reruns that COPY and what follows.
    std::fs::write(ctx.join("src/a.txt"), "edited\n").unwrap();
    let (code, edited, log) = build(&env, &["-t", "c", ctx_s]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(log.matches("CACHED").count(), 1, "only WORKDIR: {log}");
    assert_ne!(edited, first);
    let (_, out, _) = run_image(&env, &[], "c", &[]);
    assert_eq!(out, "hello from /app\nedited\nfile b\n");
    // --no-cache runs everything again.
    let (_, _, log) = build(&env, &["--no-cache", "-t", "c", ctx_s]);
    assert_eq!(log.matches("CACHED").count(), 0, "{log}");
}

#[test]
fn independent_stages_and_copy_from() {
    let Some(env) = setup() else { return };
    let (code, _, log) = build(&env, &["-t", "multi", case("multistage").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains("[unused"),
        "a stage the target does not need ran: {log}"
    );
    let (_, out, _) = run_image(&env, &[], "multi", &["cat", "/out/both.txt"]);
    assert_eq!(out, "one\ntwo\n");
}

#[test]
fn a_failing_run_names_its_line_and_status() {
    let Some(env) = setup() else { return };
    let (code, _, log) = build(
        &env,
        &["-t", "broken", case("failing-run").to_str().unwrap()],
    );
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("Dockerfile:3"), "{log}");
    assert!(
        log.contains(">>> RUN echo \"about to fail\" && exit 3"),
        "{log}"
    );
    assert!(
        log.contains("did not complete successfully: exit code: 3"),
        "{log}"
    );
    assert!(log.contains("about to fail"), "{log}");
    assert!(!text(&lb(&env, &["images"]).stdout).contains("broken"));
    // A Dockerfile that does not parse, and a context that does not exist.
    let bad = env.root.parent().unwrap().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("Dockerfile"), "FROM busybox\nCOPY onlyone\n").unwrap();
    let (code, _, log) = build(&env, &[bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(log.contains("Dockerfile:2"), "{log}");
    let (code, _, log) = build(&env, &["/nonexistent/context"]);
    assert_eq!(code, 1);
    assert!(log.contains("/nonexistent/context"), "{log}");
}

#[test]
fn build_args_and_target() {
    let Some(env) = setup() else { return };
    let dir = case("args-and-target");
    let (code, _, log) = build(
        &env,
        &[
            "--target",
            "first",
            "--build-arg",
            "COLOR=blue",
            "-t",
            "first",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("[second"), "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "first",
        &[
            "sh",
            "-c",
            "cat /color.txt; test -e /second.txt || echo no-second",
        ],
    );
    assert_eq!(out, "color=blue\nno-second\n");
    let (code, _, log) = build(&env, &["-t", "all", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(&env, &[], "all", &["cat", "/color.txt", "/second.txt"]);
    assert_eq!(out, "color=red\nsecond\n");
    let (code, _, log) = build(&env, &["--target", "nope", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        log.contains("target stage \"nope\" could not be found"),
        "{log}"
    );
}

#[test]
fn add_unpacks_a_local_archive_and_copy_does_not() {
    let Some(env) = setup() else { return };
    let (code, _, log) = build(&env, &["-t", "add", case("add-archive").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "add",
        &["sh", "-c", "cat /unpacked/inner/file.txt; ls /copied"],
    );
    assert_eq!(out, "inside\nfiles.tar.gz\n");
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let Some(env) = setup() else { return };
    let iid = env.root.parent().unwrap().join("iid");
    let dir = case("multistage");
    let args = [
        "--no-cache",
        "--iidfile",
        iid.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    let (code, one, log) = build_with(&env, &args, Some("946684800"));
    assert_eq!(code, 0, "{log}");
    let (code, two, log) = build_with(&env, &args, Some("946684800"));
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        one, two,
        "two --no-cache builds under SOURCE_DATE_EPOCH differ"
    );
}

#[test]
fn heredocs_in_run_and_copy() {
    let Some(env) = setup() else { return };
    let (code, _, log) = build(
        &env,
        &["-t", "heredocs", case("heredocs").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{log}");
    let (_, out, err) = run_image(
        &env,
        &[],
        "heredocs",
        &[
            "cat",
            "/first.txt",
            "/script.txt",
            "/fed.txt",
            "/etc/greeting",
            "/etc/literal",
        ],
    );
    assert_eq!(
        out, "first world\nsecond\nscript as /dev/pipes/EOF\nfed to cat\nhello world\nhello $WHO\n",
        "{err}"
    );
}

#[test]
fn run_mounts_cache_bind_tmpfs_secret() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let secret = dir.join("token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let ctx = case("run-mounts");
    let secret_arg = format!("id=token,src={}", secret.display());
    let args = [
        "--secret",
        &secret_arg,
        "-t",
        "mounts",
        ctx.to_str().unwrap(),
    ];
    let (code, _, log) = build(&env, &args);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "mounts",
        &[
            "sh",
            "-c",
            "cat /runs-seen /from-bind.txt /tmpfs-seen /secret-size; find /var/cache/demo /mnt/files /run/secrets /scratch",
        ],
    );
    // The mount points are left as empty directories (as docker 20.10 leaves them), the
    // secret's file stub is gone and its content is in no layer.
    assert_eq!(
        out,
        "1\nbound input\ntmpfs\n6\n/var/cache/demo\n/mnt/files\n/run/secrets\n/scratch\n"
    );
    // The cache mount outlives the build: a --no-cache build sees the first run's file.
    let no_cache = [
        "--no-cache",
        "--secret",
        &secret_arg,
        "-t",
        "mounts2",
        ctx.to_str().unwrap(),
    ];
    let (code, _, log) = build(&env, &no_cache);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(&env, &[], "mounts2", &["cat", "/runs-seen"]);
    assert_eq!(out, "2\n");
    // A secret that is not given is not there (it is not required=true).
    let (code, _, log) = build(&env, &["--no-cache", ctx.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(log.contains("can't open '/run/secrets/token'"), "{log}");
    // One that is required fails the step before it runs, naming it.
    let strict = dir.join("strict");
    std::fs::create_dir_all(&strict).unwrap();
    std::fs::write(
        strict.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=key,required=true true\n",
    )
    .unwrap();
    let (code, _, log) = build(&env, &[strict.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(log.contains("secret key: not provided"), "{log}");
}

#[test]
fn dockerignore_leaves_files_out_of_copies_and_keys() {
    let Some(env) = setup() else { return };
    let ctx = scratch_copy(&env, "dockerignore");
    let ctx_s = ctx.to_str().unwrap();
    let (code, first, log) = build(&env, &["-t", "ign", ctx_s]);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(&env, &[], "ign", &["cat", "/files.txt"]);
    assert_eq!(
        out,
        "/ctx/.dockerignore\n/ctx/Dockerfile\n/ctx/KEEP.md\n/ctx/app/main.sh\n"
    );
    // Editing an ignored file changes nothing; editing a copied one reruns the COPY.
    std::fs::write(ctx.join("app/logs/run.log"), "more log").unwrap();
    std::fs::write(ctx.join("secret.txt"), "changed").unwrap();
    let (_, again, log) = build(&env, &["-t", "ign", ctx_s]);
    assert_eq!(
        (again.as_str(), log.matches("CACHED").count()),
        (first.as_str(), 2),
        "{log}"
    );
    std::fs::write(ctx.join("app/main.sh"), "changed").unwrap();
    let (_, edited, log) = build(&env, &["-t", "ign", ctx_s]);
    assert_ne!(edited, first, "{log}");
    // An ignored file named by COPY is not found, as with docker.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY secret.txt /\n").unwrap();
    let (code, _, log) = build(&env, &[ctx_s]);
    assert_eq!(code, 1);
    assert!(log.contains("\"/secret.txt\": not found"), "{log}");
}

#[test]
fn workdir_makes_its_directory_and_onbuild_triggers_run_in_the_child() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let parent = dir.join("parent");
    std::fs::create_dir_all(&parent).unwrap();
    std::fs::write(
        parent.join("Dockerfile"),
        "FROM busybox\nWORKDIR /srv/empty\nONBUILD RUN echo triggered > /trigger.txt\nONBUILD COPY . /child-ctx/\n",
    )
    .unwrap();
    let (code, _, log) = build(&env, &["-t", "parent", parent.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    // WORKDIR alone made the directory; the triggers did not run in the parent.
    let (_, out, _) = run_image(
        &env,
        &[],
        "parent",
        &[
            "sh",
            "-c",
            "pwd; ls -a /srv/empty | wc -l; test -e /trigger.txt || echo not-yet",
        ],
    );
    assert_eq!(out, "/srv/empty\n2\nnot-yet\n");
    let child = dir.join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(
        child.join("Dockerfile"),
        "FROM parent\nRUN cat /trigger.txt\n",
    )
    .unwrap();
    std::fs::write(child.join("data.txt"), "child data").unwrap();
    let (code, _, log) = build(&env, &["-t", "child", child.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    // Numbered on from the stage's own steps, past their count, as docker 20.10 shows them.
    assert!(log.contains("[2/2] RUN echo triggered"), "{log}");
    assert!(log.contains("[3/2] COPY . /child-ctx/"), "{log}");
    assert!(log.contains("[4/2] RUN cat /trigger.txt"), "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "child",
        &["cat", "/trigger.txt", "/child-ctx/data.txt"],
    );
    assert_eq!(out, "triggered\nchild data");
    // The parent carries its triggers; the child does not pass them on.
    assert_eq!(
        config(&env, "parent")["OnBuild"],
        serde_json::json!(["RUN echo triggered > /trigger.txt", "COPY . /child-ctx/"])
    );
    assert!(
        config(&env, "child")["OnBuild"].is_null(),
        "{}",
        config(&env, "child")
    );
}

#[test]
fn contexts_from_a_tar_file_and_standard_input() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    // The basic case as a gzip tar file.
    let tgz = dir.join("basic.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(case("basic"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let (code, _, log) = build(&env, &["-t", "from-tar", tgz.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(&env, &[], "from-tar", &[]);
    assert_eq!(out, "hello from /app\nfile a\nfile b\n");
    // A tar on standard input, and a bare Dockerfile with no context.
    let stdin_build = |input: std::fs::File, tag: &str| {
        Command::new(env!("CARGO_BIN_EXE_lb"))
            .arg("--root")
            .arg(&env.root)
            .args(["build", "-t", tag, "-"])
            .stdin(input)
            .output()
            .unwrap()
    };
    let out = stdin_build(std::fs::File::open(&tgz).unwrap(), "from-stdin-tar");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bare = dir.join("bare.Dockerfile");
    std::fs::write(&bare, "FROM busybox\nRUN echo bare > /bare.txt\n").unwrap();
    let out = stdin_build(std::fs::File::open(&bare).unwrap(), "bare");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, out, _) = run_image(&env, &[], "bare", &["cat", "/bare.txt"]);
    assert_eq!(out, "bare\n");
}

#[test]
fn a_killed_build_leaves_the_store_whole_and_prune_clears_its_scratch() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap().join("slow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nRUN head -c 1000000 /dev/urandom > /a\nRUN sleep 30\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(["build", "-t", "slow", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed while the second RUN runs.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0 {
        if line.contains("RUN sleep 30") {
            break;
        }
        line.clear();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The store is whole: the base still runs, nothing is named `slow`, and a prune clears
    // the killed build's scratch space.
    let (code, _, _) = run_image(&env, &[], "busybox", &["true"]);
    assert_eq!(code, 0);
    assert!(!text(&lb(&env, &["images"]).stdout).contains("slow"));
    // The killed build's container is gone with it (its process tree was in lb's).
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(lb(&env, &["prune"]).status.success());
    let left = std::fs::read_dir(env.root.join("build"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
    // A rebuild finishes the first step from the cache.
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nRUN head -c 1000000 /dev/urandom > /a\n",
    )
    .unwrap();
    let (code, _, log) = build(&env, &["-t", "slow", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
}

#[test]
fn copy_exclude_and_parents() {
    let Some(env) = setup() else { return };
    let (code, _, log) = build(
        &env,
        &["-t", "xp", case("copy-exclude-parents").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "xp",
        &["find", "/excluded", "/kept", "-type", "f"],
    );
    let mut files: Vec<&str> = out.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/excluded/a/deep/two.txt",
            "/excluded/a/one.txt",
            "/kept/src/a/one.txt",
            "/kept/src/b/three.txt"
        ]
    );
}

#[test]
fn output_writes_an_image_archive_a_file_system_tar_or_a_directory() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let (fs_tar, local, archive) = (dir.join("fs.tar"), dir.join("local"), dir.join("img.tar"));
    let outputs = [
        format!("type=tar,dest={}", fs_tar.display()),
        format!("type=local,dest={}", local.display()),
        format!("type=docker,dest={},name=exported:1", archive.display()),
    ];
    let (code, _, log) = build(
        &env,
        &[
            "-o",
            &outputs[0],
            "-o",
            &outputs[1],
            "--output",
            &outputs[2],
            case("basic").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    // The file system, flattened: the base's files and the build's.
    let mut names = Vec::new();
    for e in tar::Archive::new(std::fs::File::open(&fs_tar).unwrap())
        .entries()
        .unwrap()
    {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(
        names.contains(&"app/run.txt".to_string()) && names.contains(&"bin/busybox".to_string()),
        "{names:?}"
    );
    assert!(names.iter().all(|n| !n.contains(".wh.")));
    assert_eq!(
        std::fs::read_to_string(local.join("app/run.txt")).unwrap(),
        "hello from /app\nfile a\nfile b\n"
    );
    // The image archive loads into another store and runs.
    let other = dir.join("other");
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&other)
        .args(["load", "-i", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&other)
        .args(["run", "--rm", "exported:1"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "hello from /app\nfile a\nfile b\n");
    // An archive needs a name.
    let bad = format!("type=oci,dest={}", dir.join("x.tar").display());
    let (code, _, log) = build(&env, &["-o", &bad, case("basic").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(log.contains("needs a name"), "{log}");
}

#[test]
fn no_cache_filter_reruns_the_named_stages_only_and_platform_is_checked() {
    let Some(env) = setup() else { return };
    let dir = case("multistage");
    let (code, _, log) = build(&env, &[dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (code, _, log) = build(&env, &["--no-cache-filter", "one", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    // Stage one's RUN reruns; stage two's stays cached.
    let one_line = log
        .lines()
        .find(|l| l.contains("[one 2/2] RUN"))
        .expect("stage one's RUN");
    let vertex = one_line.split(' ').next().unwrap();
    assert!(!log.contains(&format!("{vertex} CACHED")), "{log}");
    let two_line = log.lines().find(|l| l.contains("[two 2/2] RUN")).unwrap();
    let vertex = two_line.split(' ').next().unwrap();
    assert!(log.contains(&format!("{vertex} CACHED")), "{log}");
    let (code, _, log) = build(&env, &["--platform", "linux/s390x", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(log.contains("this machine's platform only"), "{log}");
}

/// A one-file HTTP server on loopback: answers every request with `body` (and a
/// Last-Modified date), for as many requests as `count`.
fn serve(body: &'static [u8], count: usize) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut req = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, head.as_bytes());
            let _ = std::io::Write::write_all(&mut stream, body);
        }
    });
    port
}

#[test]
fn add_fetches_a_url_checks_its_checksum_and_keys_on_its_content() {
    let Some(env) = setup() else { return };
    let port = serve(b"fetched body\n", 16);
    let dir = env.root.parent().unwrap().join("url");
    std::fs::create_dir_all(&dir).unwrap();
    let sum = "sha256:6d6b6f2a4a4c48f8f4b2a0d4b7b4c9b5e0d2e5f3a1c9e8d7f6a5b4c3d2e1f0a9";
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM busybox\nADD http://127.0.0.1:{port}/files/data.txt /dl/\nADD http://127.0.0.1:{port}/x /named.txt\n"),
    )
    .unwrap();
    let build_env = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lb"))
            .arg("--root")
            .arg(&env.root)
            .arg("build")
            .args(args)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), text(&out.stderr))
    };
    let (code, log) = build_env(&["-t", "fetched", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "fetched",
        &[
            "sh",
            "-c",
            "cat /dl/data.txt /named.txt; stat -c '%a %Y' /dl/data.txt",
        ],
    );
    assert_eq!(out, "fetched body\nfetched body\n600 784111777\n");
    // Fetched again, same content: the step is a cache hit.
    let (code, log) = build_env(&["-t", "fetched", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(log.matches("CACHED").count(), 2, "{log}");
    // A wrong --checksum fails the step, naming both digests.
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM busybox\nADD --checksum={sum} http://127.0.0.1:{port}/files/data.txt /dl/\n"),
    )
    .unwrap();
    let (code, log) = build_env(&[dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("digest mismatch") && log.contains(sum),
        "{log}"
    );
}

#[test]
fn a_terminal_gets_buildkits_live_view() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nRUN echo from-the-step\nRUN exit 3\n",
    )
    .unwrap();
    let ok = dir.path().join("ok.Dockerfile");
    std::fs::write(&ok, "FROM busybox\nRUN echo from-the-step\n").unwrap();
    let ctx = dir.path().display();
    let shown = in_terminal(&env, &format!("build -t live -f {} {ctx}", ok.display()));
    let plain = strip_escapes(&shown);
    assert!(plain.contains("[+] Building"), "{plain}");
    assert!(plain.contains("(2/2) FINISHED"), "{plain}");
    assert!(plain.contains("=> [2/2] RUN echo from-the-step"), "{plain}");
    assert!(
        plain.contains("=> naming to docker.io/library/live:latest"),
        "{plain}"
    );
    // Not the plain format.
    assert!(!plain.contains("#1 "), "{plain}");
    // A failure: the view says so, then the error as in plain mode.
    let shown = in_terminal(&env, &format!("build {ctx}"));
    let plain = strip_escapes(&shown);
    assert!(plain.contains("FAILED"), "{plain}");
    assert!(plain.contains("exit code: 3"), "{plain}");
    // --progress plain on a terminal is plain.
    let shown = in_terminal(
        &env,
        &format!("build --progress plain -f {} {ctx}", ok.display()),
    );
    assert!(shown.contains("#2 CACHED"), "{shown}");
}

/// The text a terminal shows, without its control sequences.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}
