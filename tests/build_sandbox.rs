//! The build's sandbox, tried as an attacker would: a hostile Dockerfile, build context or
//! stage that names host paths through symlinks (absolute, `../`, a linked directory or
//! parent), in `COPY`, `COPY --from`, wildcards and `RUN --mount=type=bind` (read-only and
//! `rw`); `.dockerignore` bypasses (a link aliasing an ignored file, a bind mount of the
//! context); secret mounts' owner and mode; the store's permissions for other host users.
//! Each asserts that the host is untouched and that nothing outside the root reached the
//! image, with BuildKit's answer where it has one (a source that resolves to nothing inside
//! its root is "not found").

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::*;

const SECRET: &str = "HOST-SECRET-7f3a";

/// A host directory outside every context: `secret.txt` to leak, `victim/` to write into.
struct Host {
    dir: PathBuf,
}

impl Host {
    fn new(env: &Env) -> Host {
        let dir = env.root.parent().unwrap().join("host");
        std::fs::create_dir_all(dir.join("victim")).unwrap();
        std::fs::write(dir.join("secret.txt"), SECRET).unwrap();
        Host { dir }
    }

    /// Asserts that nothing was written into the host directory.
    fn untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(self.dir.join("victim"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "the build wrote into the host: {names:?}");
        assert_eq!(
            std::fs::read_to_string(self.dir.join("secret.txt")).unwrap(),
            SECRET
        );
    }
}

/// Whether any layer the store unpacked (every image's snapshots) holds `needle` in a
/// file (`grep -r` follows no links).
fn store_holds(env: &Env, needle: &str) -> bool {
    Command::new("grep")
        .args(["-rlqF", needle])
        .arg(env.root.join("snapshots"))
        .status()
        .unwrap()
        .success()
}

/// Builds `ctx` as `tag`: (exit code, progress).
fn build_ctx(env: &Env, ctx: &Path, tag: &str) -> (i32, String) {
    let (code, _, log) = build(
        env,
        &["--progress", "plain", "-t", tag, ctx.to_str().unwrap()],
    );
    (code, log)
}

#[test]
fn copy_never_follows_a_link_out_of_the_context() {
    let Some(env) = setup() else { return };
    let host = Host::new(&env);
    let secret = host.dir.join("secret.txt");
    // (link name, link target, the COPY source that goes through it)
    let depth = "../".repeat(host.dir.components().count() + 2);
    let attacks = [
        ("leak", secret.display().to_string(), "leak"),
        ("upleak", format!("{depth}{}", secret.display()), "upleak"),
        (
            "linkdir",
            host.dir.display().to_string(),
            "linkdir/secret.txt",
        ),
        ("parent", "..".to_string(), "parent/host/secret.txt"),
        ("globdir", host.dir.display().to_string(), "globdir/*.txt"),
    ];
    for (n, (link, target, source)) in attacks.iter().enumerate() {
        let df = format!("FROM busybox\nCOPY {source} /x/\n");
        let ctx = context(&env, &format!("copy-{n}"), &df, &[("ok.txt", "ok")]);
        symlink(target, ctx.join(link)).unwrap();
        let tag = format!("copy{n}");
        let (code, log) = build_ctx(&env, &ctx, &tag);
        assert!(!log.contains(SECRET), "{log}");
        if code == 0 {
            assert!(
                !store_holds(&env, SECRET),
                "COPY {source} through {link} -> {target} put the host file in the image"
            );
        } else {
            assert!(
                log.contains("not found") || log.contains("no source files"),
                "{log}"
            );
        }
    }
    // A link whose target is inside the context is followed inside it, as BuildKit does.
    let ctx = context(
        &env,
        "copy-inside",
        "FROM busybox\nCOPY alias /a\nCOPY /abs/in.txt /b\n",
        &[("real/in.txt", "inside")],
    );
    symlink("real/in.txt", ctx.join("alias")).unwrap();
    symlink("/real", ctx.join("abs")).unwrap();
    let (code, log) = build_ctx(&env, &ctx, "inside");
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(&env, &[], "inside", &["cat", "/a", "/b"]);
    assert_eq!(out, "insideinside");
    host.untouched();
}

#[test]
fn a_stage_cannot_reach_the_host_through_its_own_links() {
    let Some(env) = setup() else { return };
    let host = Host::new(&env);
    let h = host.dir.display();
    let up = "../".repeat(12);
    let hrel = host.dir.strip_prefix("/").unwrap().display();
    // COPY --from through an absolute and a `../` link the stage made.
    let df = format!(
        "FROM busybox AS s\nRUN ln -s {h} /link && ln -s {up}{hrel} /up\n\
         FROM busybox\nCOPY --from=s /link/secret.txt /a\n"
    );
    let ctx = context(&env, "from-abs", &df, &[]);
    let (code, log) = build_ctx(&env, &ctx, "fromabs");
    assert_ne!(code, 0, "{log}");
    assert!(log.contains("not found"), "{log}");
    let df = format!(
        "FROM busybox AS s\nRUN ln -s {h} /link && ln -s {up}{hrel} /up\n\
         FROM busybox\nCOPY --from=s /up/secret.txt /a\n"
    );
    let ctx = context(&env, "from-up", &df, &[]);
    let (code, log) = build_ctx(&env, &ctx, "fromup");
    assert_ne!(code, 0, "{log}");
    assert!(!log.contains(SECRET), "{log}");
    // RUN --mount=type=bind from the stage, read-only and rw, through both links: the
    // sources are not found inside the stage (BuildKit's answer), nothing is written.
    for (n, (source, rw)) in [("link", ""), ("link", ",rw"), ("up", ",rw")]
        .iter()
        .enumerate()
    {
        let df = format!(
            "FROM busybox AS s\nRUN ln -s {h} /link && ln -s {up}{hrel} /up\n\
             FROM busybox\nRUN --mount=type=bind,from=s,source={source},target=/h{rw} \
             sh -c 'cat /h/secret.txt; echo pwned > /h/victim/pwned'\n"
        );
        let ctx = context(&env, &format!("bind-stage-{n}"), &df, &[]);
        let (code, log) = build_ctx(&env, &ctx, &format!("bindstage{n}"));
        assert_ne!(code, 0, "{log}");
        assert!(log.contains("not found"), "{log}");
        assert!(!log.contains(SECRET), "{log}");
    }
    // A link inside the stage's own tree still works (followed inside the stage).
    let df = "FROM busybox AS s\nRUN mkdir -p /data && echo staged > /data/f && ln -s /data /link\n\
              FROM busybox\nRUN --mount=type=bind,from=s,source=link,target=/h cat /h/f > /seen\n\
              COPY --from=s /link/f /copied\n";
    let ctx = context(&env, "bind-stage-ok", df, &[]);
    let (code, log) = build_ctx(&env, &ctx, "bindok");
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(&env, &[], "bindok", &["cat", "/seen", "/copied"]);
    assert_eq!(out, "staged\nstaged\n");
    host.untouched();
}

#[test]
fn a_context_link_cannot_be_bound_to_the_host() {
    let Some(env) = setup() else { return };
    let host = Host::new(&env);
    for (n, rw) in ["", ",rw"].iter().enumerate() {
        let df = format!(
            "FROM busybox\nRUN --mount=type=bind,source=leak,target=/h{rw} \
             sh -c 'cat /h/secret.txt; echo pwned > /h/victim/pwned'\n"
        );
        let ctx = context(&env, &format!("bind-ctx-{n}"), &df, &[]);
        symlink(&host.dir, ctx.join("leak")).unwrap();
        let (code, log) = build_ctx(&env, &ctx, &format!("bindctx{n}"));
        assert_ne!(code, 0, "{log}");
        assert!(log.contains("not found"), "{log}");
        assert!(!log.contains(SECRET), "{log}");
    }
    host.untouched();
}

#[test]
fn dockerignore_holds_for_bind_mounts_and_aliases() {
    let Some(env) = setup() else { return };
    let files = [
        (".dockerignore", "secret.txt\nprivate/\n"),
        ("secret.txt", SECRET),
        ("private/key", SECRET),
        ("public.txt", "public"),
    ];
    // The whole context bound (read-only and rw): ignored files are absent.
    let df = "FROM busybox\n\
              RUN --mount=type=bind,target=/c sh -c 'ls -a /c | sort > /ro; cat /c/secret.txt /c/private/key /c/alias 2>/dev/null; true'\n\
              RUN --mount=type=bind,target=/c,rw sh -c 'ls -a /c | sort > /rw; cat /c/secret.txt 2>/dev/null; true'\n";
    let ctx = context(&env, "ignore-bind", df, &files);
    symlink("secret.txt", ctx.join("alias")).unwrap();
    let (code, log) = build_ctx(&env, &ctx, "ignorebind");
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(SECRET), "{log}");
    let (_, out, _) = run_image(&env, &[], "ignorebind", &["cat", "/ro", "/rw"]);
    let listing = ".\n..\n.dockerignore\nDockerfile\nalias\npublic.txt\n";
    assert_eq!(out, format!("{listing}{listing}"));
    // An ignored file as a mount's source, or a link to it, is not found.
    for (n, source) in ["secret.txt", "alias", "private"].iter().enumerate() {
        let df = format!("FROM busybox\nRUN --mount=type=bind,source={source},target=/s cat /s\n");
        let ctx = context(&env, &format!("ignore-src-{n}"), &df, &files);
        symlink("secret.txt", ctx.join("alias")).unwrap();
        let (code, log) = build_ctx(&env, &ctx, &format!("ignoresrc{n}"));
        assert_ne!(code, 0, "{log}");
        assert!(log.contains("not found"), "{log}");
        assert!(!log.contains(SECRET), "{log}");
    }
    // COPY of a link that aliases an ignored file (or a directory link into an ignored
    // directory) is not found, as from the context BuildKit receives.
    for (n, (link, target)) in [("alias", "secret.txt"), ("pdir", "private")]
        .iter()
        .enumerate()
    {
        let source = if *link == "pdir" { "pdir/key" } else { link };
        let df = format!("FROM busybox\nCOPY {source} /x\n");
        let ctx = context(&env, &format!("ignore-copy-{n}"), &df, &files);
        symlink(target, ctx.join(link)).unwrap();
        let (code, log) = build_ctx(&env, &ctx, &format!("ignorecopy{n}"));
        assert_ne!(code, 0, "{log}");
        assert!(log.contains("not found"), "{log}");
    }
}

#[test]
fn secrets_are_private_copies_with_buildkits_owner_and_mode() {
    let Some(env) = setup() else { return };
    let dir = env.root.parent().unwrap();
    let secret = dir.join("token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let df = "FROM busybox\n\
              RUN --mount=type=secret,id=token stat -c '%a %u %g' /run/secrets/token > /default\n\
              RUN --mount=type=secret,id=token,uid=1000,gid=1001,mode=0440 stat -c '%a %u %g' /run/secrets/token > /custom\n\
              RUN --mount=type=secret,id=token,target=/tok sh -c 'echo gone > /tok' 2> /write-err; true\n\
              USER 1000\n\
              RUN --mount=type=secret,id=token sh -c 'cat /run/secrets/token || echo denied' > /tmp/user\n";
    let ctx = context(&env, "secrets", df, &[]);
    let arg = format!("id=token,src={}", secret.display());
    let (code, _, log) = build(
        &env,
        &[
            "--progress",
            "plain",
            "--secret",
            &arg,
            "-t",
            "secrets",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(
        &env,
        &[],
        "secrets",
        &["cat", "/default", "/custom", "/tmp/user", "/write-err"],
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("400 0 0"));
    assert_eq!(lines.next(), Some("440 1000 1001"));
    assert_eq!(lines.next(), Some("denied"));
    assert!(
        lines.next().unwrap_or("").contains("Read-only file system"),
        "{out}"
    );
    // The host file is as it was, and the secret is in no layer.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cr3t");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(!store_holds(&env, "s3cr3t"));
}

#[test]
fn the_store_is_roots_alone() {
    let Some(env) = setup() else { return };
    // Open to the world above the store, so only the store's own modes protect it.
    let parent = env.root.parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A setuid root shell in an image's snapshot and in a container's upper dir.
    let ctx = context(
        &env,
        "suid",
        "FROM busybox\nRUN cp /bin/busybox /suid-sh && chmod 4755 /suid-sh\n",
        &[],
    );
    let (code, log) = build_ctx(&env, &ctx, "suid");
    assert_eq!(code, 0, "{log}");
    let out = lb(
        &env,
        &["run", "-d", "--name", "keep", "suid", "sleep", "30"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&env.root), 0o700);
    for d in ["containers", "snapshots", "build", "cache-mounts", "blobs"] {
        assert_eq!(mode(&env.root.join(d)), 0o700, "{d}");
    }
    // Host user nobody finds no way in: every setuid copy below the store is out of reach.
    let found = Command::new("find")
        .arg(&env.root)
        .args(["-perm", "-4000", "-type", "f"])
        .output()
        .unwrap();
    let suid: Vec<String> = text(&found.stdout).lines().map(String::from).collect();
    assert!(!suid.is_empty(), "the test's setuid file was not found");
    for path in &suid {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                path,
                "-c",
                "id -u",
            ])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "nobody ran {path}: {}",
            text(&out.stdout)
        );
    }
    // Nor can it hold a lock file of the store's (or of the host-wide network state) to
    // stall every lb.
    for lock in [env.root.join("index.lock"), env.root.join("gc.lock")] {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "flock",
                "-n",
            ])
            .arg(&lock)
            .arg("true")
            .output()
            .unwrap();
        assert!(!out.status.success(), "nobody locked {}", lock.display());
    }
    assert_eq!(mode(Path::new("/run/lb/networks")), 0o700);
    let _ = lb(&env, &["rm", "-f", "keep"]);
    // A store an older lb left open is closed again when it is next opened.
    for d in [&env.root, &env.root.join("snapshots")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(lb(&env, &["images"]).status.success());
    assert_eq!(mode(&env.root), 0o700);
    assert_eq!(mode(&env.root.join("snapshots")), 0o700);
}

#[test]
fn a_heredoc_name_cannot_write_outside_the_build() {
    let Some(env) = setup() else { return };
    let host = Host::new(&env);
    let up = "../".repeat(16);
    let victim = host.dir.join("victim/pwned");
    let name = format!("{up}{}", victim.strip_prefix("/").unwrap().display());
    let df = format!("FROM busybox\nCOPY <<{name} /x/\nhello\n{name}\n");
    let ctx = context(&env, "heredoc-name", &df, &[]);
    let (code, log) = build_ctx(&env, &ctx, "heredocname");
    assert_eq!(code, 0, "{log}");
    host.untouched();
    let (_, out, _) = run_image(
        &env,
        &["--network", "none"],
        "heredocname",
        &["cat", "/x/pwned"],
    );
    assert_eq!(out, "hello\n");
}

#[test]
fn a_context_cannot_make_a_host_file_its_dockerfile() {
    let Some(env) = setup() else { return };
    let host = Host::new(&env);
    let ctx = env.root.parent().unwrap().join("df-link");
    std::fs::create_dir_all(&ctx).unwrap();
    symlink(host.dir.join("secret.txt"), ctx.join("Dockerfile")).unwrap();
    let (code, log) = build_ctx(&env, &ctx, "dflink");
    assert_ne!(code, 0, "{log}");
    assert!(!log.contains(SECRET), "{log}");
    assert!(log.contains("failed to read the Dockerfile"), "{log}");
}

#[test]
fn a_context_lb_unpacks_is_roots_alone_and_a_fifo_cannot_hang_it() {
    let Some(env) = setup() else { return };
    // A tar context (a setuid file in it) while its build runs: its directory is 0700.
    let ctx = context(
        &env,
        "tar-ctx",
        "FROM busybox\nADD p.tar /x/\nRUN sleep 2\n",
        &[("suid", "#!/bin/sh\n")],
    );
    std::fs::set_permissions(ctx.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(ctx.join("p.tar"))
            .status()
            .unwrap()
            .success()
    );
    let tar = env.root.parent().unwrap().join("ctx.tar");
    assert!(
        Command::new("tar")
            .arg("-C")
            .arg(&ctx)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    let before: Vec<PathBuf> = context_dirs();
    let child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(["build", "-q", "-"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut seen = None;
    while started.elapsed() < std::time::Duration::from_secs(10) && seen.is_none() {
        seen = context_dirs().into_iter().find(|d| !before.contains(d));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dir = seen.expect("the build's context directory");
    let mode = std::fs::metadata(&dir).map(|m| m.permissions().mode() & 0o777);
    // The FIFO is no archive to open (and no file to copy): the build does not hang on it.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    if let Ok(mode) = mode {
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

/// The directories lb unpacks contexts into.
fn context_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lb-context-"))
        })
        .collect()
}

#[test]
fn workdir_through_a_link_makes_the_directory_at_its_target() {
    let Some(env) = setup() else { return };
    let ctx = context(
        &env,
        "workdir-link",
        "FROM busybox\nRUN mkdir /x && ln -s /x /app\nWORKDIR /app/sub\nRUN pwd > /where\n",
        &[],
    );
    let (code, log) = build_ctx(&env, &ctx, "workdirlink");
    assert_eq!(code, 0, "{log}");
    let (_, out, _) = run_image(
        &env,
        &["--network", "none"],
        "workdirlink",
        &["sh", "-c", "test -L /app && test -d /x/sub && cat /where"],
    );
    // The step ran in the directory (its physical path: no shell set $PWD for it).
    assert_eq!(out, "/x/sub\n");
}
