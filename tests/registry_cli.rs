//! `lb push`, `lb pull`, `lb login`/`logout` and `lb build --push` against real registries
//! the tests run on loopback (Debian's `docker-registry`, the CNCF distribution server):
//! anonymous, with htpasswd Basic auth, and with Bearer tokens from a token server the
//! test itself runs; and skopeo/umoci reading what lb pushed, lb pulling what skopeo did.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use lb_testkit::{RegistryAuth, TestRegistry};

mod common;
use common::*;

/// `lb --root STORE ARGS...` with `LB_AUTH_FILE=auth` and `stdin` as its input.
fn lb_auth(env: &Env, auth: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .env("LB_AUTH_FILE", auth)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lb");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `lb login -u tester --password-stdin ADDR` with `password`.
fn login(env: &Env, auth: &Path, addr: &str, password: &str) -> Output {
    lb_auth(
        env,
        auth,
        &["login", "-u", "tester", "--password-stdin", addr],
        password,
    )
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The digest `lb push` printed (`TAG: digest: sha256:... size: N`).
fn pushed_digest(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in {stdout:?}"))
        .to_string()
}

fn image_id(env: &Env, name: &str) -> String {
    let out = ok(&lb(env, &["inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn push_then_pull_round_trip_with_mounts_and_no_second_upload() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    let name = format!("{}/rt/app:1", reg.addr);
    let (code, _, log) = build(&env, &["-t", &name, case("basic").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let out = lb(&env, &["push", &name]);
    let first = pushed_digest(&ok(&out));
    let err = text(&out.stderr);
    assert!(err.contains(&format!(
        "The push refers to repository [{}/rt/app]",
        reg.addr
    )));
    assert_eq!(
        err.matches(": Pushed").count(),
        5,
        "4 layers and the config: {err}"
    );
    // Nothing is uploaded twice.
    let out = lb(&env, &["push", &name]);
    assert_eq!(pushed_digest(&ok(&out)), first);
    assert_eq!(text(&out.stderr).matches("Layer already exists").count(), 5);

    // Another store pulls it: the same image, and it runs.
    let other = setup().unwrap();
    let out = lb(&other, &["pull", &name]);
    ok(&out);
    let err = text(&out.stderr);
    assert!(err.contains("Pull complete"), "{err}");
    assert!(err.contains(&format!("Digest: {first}")), "{err}");
    assert!(err.contains("Status: Downloaded newer image"), "{err}");
    assert_eq!(image_id(&other, &name), image_id(&env, &name));
    let (code, out, err) = run_image(&other, &[], &name, &["cat", "/app/run.txt"]);
    assert_eq!(code, 0, "{err}");
    let (_, want, _) = run_image(&env, &[], &name, &["cat", "/app/run.txt"]);
    assert_eq!(out, want);
    let out = lb(&other, &["pull", &name]);
    ok(&out);
    assert!(text(&out.stderr).contains("Status: Image is up to date"));

    // The pulled image, pushed to another repository: its blobs are mounted, not sent,
    // and its manifest goes up byte for byte (same digest).
    let moved = format!("{}/moved/app:2", reg.addr);
    ok(&lb(&other, &["tag", &name, &moved]));
    let out = lb(&other, &["push", &moved]);
    assert_eq!(pushed_digest(&ok(&out)), first);
    let err = text(&out.stderr);
    assert_eq!(err.matches("Mounted from rt/app").count(), 5, "{err}");

    // `lb build --push`, and a build whose base is pulled (not in the store).
    let child_ctx = dir.path().join("child");
    std::fs::create_dir_all(&child_ctx).unwrap();
    std::fs::write(
        child_ctx.join("Dockerfile"),
        format!("FROM {moved}\nRUN echo child > /tmp/child.txt\n"),
    )
    .unwrap();
    let child_name = format!("{}/rt/child:1", reg.addr);
    let (code, _, log) = build(
        &env,
        &["--push", "-t", &child_name, child_ctx.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{log}");
    let fresh = setup().unwrap();
    let (code, _, log) = build(&fresh, &["-t", "again", child_ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "the base is pulled: {log}");
    let (code, out, err) = run_image(&fresh, &[], "again", &["cat", "/tmp/child.txt"]);
    assert_eq!((code, out.as_str()), (0, "child\n"), "{err}");
}

/// `PUT` of `body` to a plain-http registry (what a multi-platform push would send).
fn http_put(addr: &str, path: &str, content_type: &str, body: &[u8]) -> String {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(body).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn zstd_layers_and_an_index_resolved_to_the_platform() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    // Two images: the basic case with zstd layers, and busybox with gzip ones.
    let name = format!("{}/z/app:1", reg.addr);
    let (code, _, log) = build(&env, &["-t", &name, case("basic").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let zstd = pushed_digest(&ok(&lb(&env, &["push", "--compression", "zstd", &name])));
    let other_name = format!("{}/z/app:other", reg.addr);
    ok(&lb(&env, &["tag", "busybox", &other_name]));
    let gzip = pushed_digest(&ok(&lb(&env, &["push", &other_name])));
    let other = setup().unwrap();
    ok(&lb(&other, &["pull", &name]));
    let (code, out, _) = run_image(&other, &[], &name, &["cat", "/app/a.txt"]);
    assert_eq!(code, 0);
    assert!(!out.is_empty());

    // An index: this machine's platform is the zstd image, linux/arm64/v8 the other.
    let (os, arch) = (
        "linux",
        if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        },
    );
    let size = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        let blobs = dir.path().join("reg/data/docker/registry/v2/blobs/sha256");
        std::fs::metadata(blobs.join(&hex[..2]).join(hex).join("data"))
            .unwrap()
            .len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": zstd,
              "size": size(&zstd), "platform": { "os": os, "architecture": arch } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": gzip,
              "size": size(&gzip),
              "platform": { "os": "linux", "architecture": "riscv64" } },
        ],
    });
    let answer = http_put(
        &reg.addr,
        "/v2/z/app/manifests/multi",
        "application/vnd.oci.image.index.v1+json",
        index.to_string().as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let multi = format!("{}/z/app:multi", reg.addr);
    let fresh = setup().unwrap();
    ok(&lb(&fresh, &["pull", &multi]));
    assert_eq!(image_id(&fresh, &multi), image_id(&env, &name));
    ok(&lb(
        &fresh,
        &["pull", "--platform", "linux/riscv64", &multi],
    ));
    assert_eq!(image_id(&fresh, &multi), image_id(&env, "busybox"));
    let out = lb(&fresh, &["pull", "--platform", "linux/s390x", &multi]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no matching manifest for linux/s390x"),
        "{}",
        text(&out.stderr)
    );

    let bad = lb(&env, &["push", "--compression", "lz4", &name]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("--compression lz4"));
    let missing = lb(&other, &["pull", &format!("{}/z/nothing:1", reg.addr)]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("MANIFEST_UNKNOWN"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn skopeo_and_umoci_read_what_lb_pushes_and_lb_pulls_what_skopeo_pushes() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools("skopeo and umoci", &["skopeo", "umoci"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous) else {
        return;
    };
    // skopeo copies lb's busybox (the store is an OCI layout) into the registry.
    let sk = format!("{}/sk/busybox:1", reg.addr);
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            env.root.display()
        ))
        .arg(format!("docker://{sk}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = setup().unwrap();
    ok(&lb(&other, &["pull", &sk]));
    let (code, out, err) = run_image(&other, &[], &sk, &["echo", "from skopeo"]);
    assert_eq!((code, out.as_str()), (0, "from skopeo\n"), "{err}");

    // What lb pushes, skopeo inspects and copies, umoci unpacks.
    let name = format!("{}/lb/app:1", reg.addr);
    let (code, _, log) = build(&env, &["-t", &name, case("basic").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    ok(&lb(&env, &["push", &name]));
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 4, "{v}");
    let layout = dir.path().join("oci");
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:app", layout.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bundle = dir.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:app", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run_txt = std::fs::read_to_string(bundle.join("rootfs/app/run.txt")).unwrap();
    let (_, want, _) = run_image(&env, &[], &name, &["cat", "/app/run.txt"]);
    assert_eq!(run_txt, want);
}

#[test]
fn basic_auth_login_push_pull_logout() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools("htpasswd (apache2-utils)", &["/usr/bin/htpasswd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("htpasswd")
        .args(["-Bbn", "tester", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let Some(reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Htpasswd(&htpasswd))
    else {
        return;
    };
    let auth = dir.path().join("auth.json");
    let name = format!("{}/private/app:1", reg.addr);
    ok(&lb(&env, &["tag", "busybox", &name]));

    let out = lb_auth(&env, &auth, &["push", &name], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lb login"),
        "{}",
        text(&out.stderr)
    );

    let out = login(&env, &auth, &reg.addr, "wrong\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("login to"),
        "{}",
        text(&out.stderr)
    );
    assert!(!auth.exists(), "a refused login stores nothing");

    let out = login(&env, &auth, &reg.addr, "s3cret\n");
    assert_eq!(ok(&out), "Login Succeeded\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );

    ok(&lb_auth(&env, &auth, &["push", &name], ""));
    let other = setup().unwrap();
    ok(&lb_auth(&other, &auth, &["pull", &name], ""));
    let (code, out, _) = run_image(&other, &[], &name, &["echo", "in"]);
    assert_eq!((code, out.as_str()), (0, "in\n"));

    let out = lb_auth(&env, &auth, &["logout", &reg.addr], "");
    assert!(ok(&out).contains("Removing login credentials"));
    let out = lb_auth(&other, &auth, &["pull", &name], "");
    assert_eq!(out.status.code(), Some(1));

    // docker's config.json: a credential helper for this registry is asked.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-lbtest");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"tester\\\",\\\"Secret\\\":\\\"s3cret\\\"}\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!("{{\"credHelpers\": {{\"{}\": \"lbtest\"}}}}", reg.addr),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&other.root)
        .args(["pull", &name])
        .env("LB_AUTH_FILE", &auth)
        .env("DOCKER_CONFIG", &docker)
        .env("PATH", path)
        .output()
        .unwrap();
    ok(&out);
}

/// A token server for the Bearer flow: `GET /token?service=..&scope=..` with Basic
/// credentials `tester:s3cret` answers a JWT signed (RS256, by `openssl`) with `key`,
/// carrying `cert` in its `x5c` header, granting the scopes asked for. Counts tokens.
fn token_server(
    key: std::path::PathBuf,
    cert_der: Vec<u8>,
    service: String,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization: basic ") {
                    let cred = line.trim()["authorization: basic ".len()..].to_string();
                    authorized = std_b64.decode(cred).ok().as_deref() == Some(b"tester:s3cret");
                }
            }
            let target = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut access = Vec::new();
            for pair in query.split('&') {
                if let Some(scope) = pair.strip_prefix("scope=") {
                    let scope = percent_decode(scope);
                    let parts: Vec<&str> = scope.split(':').collect();
                    if parts.len() == 3 {
                        access.push(serde_json::json!({
                            "type": parts[0], "name": parts[1],
                            "actions": parts[2].split(',').collect::<Vec<_>>(),
                        }));
                    }
                }
            }
            if !authorized {
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = serde_json::json!({
                "alg": "RS256", "typ": "JWT", "x5c": [std_b64.encode(&cert_der)],
            });
            let claims = serde_json::json!({
                "iss": "lb-test-issuer", "sub": "tester", "aud": service,
                "exp": now + 300, "nbf": now - 10, "iat": now,
                "jti": format!("t{now}-{}", issued.load(std::sync::atomic::Ordering::SeqCst)),
                "access": access,
            });
            let signing = format!(
                "{}.{}",
                b64.encode(header.to_string()),
                b64.encode(claims.to_string())
            );
            let mut sign = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            sign.stdin
                .take()
                .unwrap()
                .write_all(signing.as_bytes())
                .unwrap();
            let mut sig = Vec::new();
            sign.stdout.take().unwrap().read_to_end(&mut sig).unwrap();
            sign.wait().unwrap();
            let token = format!("{signing}.{}", b64.encode(sig));
            issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = serde_json::json!({ "token": token, "expires_in": 300 }).to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bearer_token_flow_against_a_token_server() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools("openssl", &["/usr/bin/openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=lb-test-token-signer", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let service = "lb-test-registry".to_string();
    let port = token_server(key, der, service.clone(), issued.clone());
    let realm = format!("http://127.0.0.1:{port}/token");
    let Some(reg) = TestRegistry::start(
        &dir.path().join("reg"),
        RegistryAuth::Token {
            realm: &realm,
            service: &service,
            issuer: "lb-test-issuer",
            root_cert: &cert,
        },
    ) else {
        return;
    };
    let auth = dir.path().join("auth.json");
    let name = format!("{}/tok/app:1", reg.addr);
    ok(&lb(&env, &["tag", "busybox", &name]));
    // Anonymous: the token server refuses, and lb says so.
    let out = lb_auth(&env, &auth, &["push", &name], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("token server"),
        "{}",
        text(&out.stderr)
    );
    let out = login(&env, &auth, &reg.addr, "s3cret");
    assert_eq!(ok(&out), "Login Succeeded\n");
    let before = issued.load(std::sync::atomic::Ordering::SeqCst);
    ok(&lb_auth(&env, &auth, &["push", &name], ""));
    let tokens = issued.load(std::sync::atomic::Ordering::SeqCst) - before;
    // One token for the push scope, reused by every blob and the manifest.
    assert!(
        tokens <= 2,
        "{tokens} tokens for one push: not cached per scope"
    );
    let other = setup().unwrap();
    ok(&lb_auth(&other, &auth, &["pull", &name], ""));
    let (code, out, _) = run_image(&other, &[], &name, &["echo", "bearer"]);
    assert_eq!((code, out.as_str()), (0, "bearer\n"));
}

/// Polls `cond` every 2 ms for up to 60 s.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

fn spawn_lb(env: &Env, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_registry_killed_mid_push_and_mid_pull_fails_clearly_and_a_rerun_completes() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(mut reg) = TestRegistry::start(&dir.path().join("reg"), RegistryAuth::Anonymous)
    else {
        return;
    };
    // Layers of 40 and 24 MB of random data: long enough to be cut in the middle; the
    // first goes up in 32 MiB chunks.
    let ctx = dir.path().join("big");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN dd if=/dev/urandom of=/a bs=1M count=24\n\
         RUN dd if=/dev/urandom of=/b bs=1M count=24\nRUN dd if=/dev/urandom of=/c bs=1M count=24\n",
    )
    .unwrap();
    let name = format!("{}/faults/big:1", reg.addr);
    let (code, _, log) = build(&env, &["-t", &name, ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");

    // Killed while blobs are being uploaded.
    let uploads = dir
        .path()
        .join("reg/data/docker/registry/v2/repositories/faults/big/_uploads");
    let push = spawn_lb(&env, &["push", &name]);
    wait_for("an upload to start", || dir_has_entries(&uploads));
    reg.kill();
    let out = push.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("pushing {name}")), "{err}");
    assert!(err.contains("gave up after 5 tries"), "{err}");
    // The store is as it was: the image is there and runs.
    let (code, out, _) = run_image(&env, &[], &name, &["ls", "/a", "/b", "/c"]);
    assert_eq!((code, out.as_str()), (0, "/a\n/b\n/c\n"));
    reg.restart();
    ok(&lb(&env, &["push", &name]));

    // Killed while layers are being fetched: nothing is named, a rerun completes.
    let other = setup().unwrap();
    let ingest = other.root.join("ingest");
    let pull = spawn_lb(&other, &["pull", &name]);
    wait_for("a layer download to start", || {
        std::fs::read_dir(&ingest).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20))
        })
    });
    reg.kill();
    let out = pull.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("pulling {name}")));
    let images = ok(&lb(&other, &["images"]));
    assert!(!images.contains("faults/big"), "{images}");
    reg.restart();
    ok(&lb(&other, &["pull", &name]));
    let (code, out, _) = run_image(&other, &[], &name, &["ls", "/a", "/b", "/c"]);
    assert_eq!((code, out.as_str()), (0, "/a\n/b\n/c\n"));
}

/// The file a registry keeps blob `digest` in.
fn registry_blob(reg_dir: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    reg_dir
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[test]
fn blobs_with_the_wrong_bytes_size_or_media_type_are_refused_and_not_stored() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let reg_dir = dir.path().join("reg");
    let Some(reg) = TestRegistry::start(&reg_dir, RegistryAuth::Anonymous) else {
        return;
    };
    let name = format!("{}/bad/app:1", reg.addr);
    let (code, _, log) = build(&env, &["-t", &name, case("basic").to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let digest = pushed_digest(&ok(&lb(&env, &["push", &name])));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry_blob(&reg_dir, &digest)).unwrap()).unwrap();
    let top = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let top_digest = top["digest"].as_str().unwrap().to_string();
    let blob = registry_blob(&reg_dir, &top_digest);
    let good = std::fs::read(&blob).unwrap();
    let other = setup().unwrap();
    let refused = |why: &str| {
        let out = lb(&other, &["pull", &name]);
        assert_eq!(out.status.code(), Some(1), "{why}: {}", text(&out.stderr));
        let hex = top_digest.strip_prefix("sha256:").unwrap();
        assert!(
            !other.root.join("blobs/sha256").join(hex).exists(),
            "{why}: the bad blob was stored"
        );
        assert!(!ok(&lb(&other, &["images"])).contains("bad/app"), "{why}");
        text(&out.stderr)
    };

    // The same size, other bytes.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&blob, &flipped).unwrap();
    refused("flipped byte");
    // Longer than the descriptor says.
    let mut longer = good.clone();
    longer.extend_from_slice(b"more");
    std::fs::write(&blob, &longer).unwrap();
    refused("longer");
    std::fs::write(&blob, &good).unwrap();

    // A manifest whose layer descriptor says zstd for gzip bytes.
    let mut lying = manifest.clone();
    let n = lying["layers"].as_array().unwrap().len();
    lying["layers"][n - 1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    let answer = http_put(
        &reg.addr,
        "/v2/bad/app/manifests/1",
        "application/vnd.oci.image.manifest.v1+json",
        lying.to_string().as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let err = refused("media type");
    assert!(
        err.contains("the descriptor says application/vnd.oci.image.layer.v1.tar+zstd"),
        "{err}"
    );

    // Put right, the pull goes through.
    let answer = http_put(
        &reg.addr,
        "/v2/bad/app/manifests/1",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    ok(&lb(&other, &["pull", &name]));
}

#[test]
fn pull_by_digest_docker_schema2_pull_refresh_tls_and_terminal_bars() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools("skopeo and openssl", &["skopeo", "/usr/bin/openssl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A registry on https with a self-signed certificate: loopback registries are
    // insecure for docker, and for lb (https without checks, else http).
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Some(reg) = TestRegistry::start_with(
        &dir.path().join("reg"),
        RegistryAuth::Anonymous,
        Some((&cert, &key)),
    ) else {
        return;
    };
    // skopeo pushes docker's schema 2 (gzip layers, docker media types).
    let v2 = format!("{}/v2s2/busybox:1", reg.addr);
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--format", "v2s2"])
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            env.root.display()
        ))
        .arg(format!("docker://{v2}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = setup().unwrap();
    let out = lb(&other, &["pull", &v2]);
    ok(&out);
    let digest = text(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("Digest: ").map(str::to_string))
        .unwrap();
    // By digest, in a store that has none of it.
    let fresh = setup().unwrap();
    let pinned = format!("{}/v2s2/busybox@{digest}", reg.addr);
    ok(&lb(&fresh, &["pull", &pinned]));
    let (code, out, err) = run_image(&fresh, &[], &pinned, &["echo", "pinned"]);
    assert_eq!((code, out.as_str()), (0, "pinned\n"), "{err}");
    let wrong = format!("{}/v2s2/busybox@sha256:{}", reg.addr, "0".repeat(64));
    assert_eq!(lb(&fresh, &["pull", &wrong]).status.code(), Some(1));

    // --pull: a build takes the stored base until asked to fetch it again.
    let base = format!("{}/v2s2/base:1", reg.addr);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN cat /version > /seen\n"),
    )
    .unwrap();
    let version = |env: &Env, v: &str| {
        let vctx = dir.path().join(format!("v{v}"));
        std::fs::create_dir_all(&vctx).unwrap();
        std::fs::write(
            vctx.join("Dockerfile"),
            format!("FROM busybox\nRUN echo {v} > /version\n"),
        )
        .unwrap();
        let (code, _, log) = build(env, &["--push", "-t", &base, vctx.to_str().unwrap()]);
        assert_eq!(code, 0, "{log}");
    };
    version(&env, "1");
    let (code, _, log) = build(&other, &["-t", "seen", ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(run_image(&other, &[], "seen", &["cat", "/seen"]).1, "1\n");
    version(&env, "2");
    let (code, _, log) = build(&other, &["-t", "seen", ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        run_image(&other, &[], "seen", &["cat", "/seen"]).1,
        "1\n",
        "the stored base"
    );
    let (code, _, log) = build(&other, &["--pull", "-t", "seen", ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        run_image(&other, &[], "seen", &["cat", "/seen"]).1,
        "2\n",
        "--pull fetched it"
    );

    // On a terminal, a bar per layer, left with docker's last word.
    let bars = setup().unwrap();
    let shown = in_terminal(&bars, &format!("pull {v2}"));
    assert!(shown.contains("Pull complete"), "{shown}");
    assert!(shown.contains("Status: Downloaded newer image"), "{shown}");
}
