//! Nothing hangs: a registry (or an ADD URL's server) that accepts the connection and then
//! stalls — before answering, after the response headers, in the middle of a layer — makes
//! `lb pull` / `lb build` fail within the network timeout and its retries, naming the URL
//! and where it stalled, with nothing named in the store. A manifest whose digest field is
//! malformed is refused naming the field and the value, and a bad `LB_NETWORK_TIMEOUT`
//! naming the variable. The servers are plain-http fakes on loopback, run by the test
//! (lb talks http to loopback registries); no root is needed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// What the fake registry does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    /// (a) Accepts connections and never answers (nor reads).
    Silent,
    /// (b) Answers `/v2/`; the manifest's response headers come, its body never does.
    StallManifestBody,
    /// (c) Manifest and config served; the layer's body stops half way (a `Range` request
    /// for the rest gets its headers and nothing more).
    StallLayer,
    /// A manifest whose layer digest is `sha256:../../x`.
    BadDigest,
    /// The manifest comes a byte every 300 ms: never a pause as long as the timeout.
    TrickleManifest,
    /// `x:good` is the image as it is; `x:latest` names its layer by another digest, under
    /// which the same bytes are served: they fail their check at the end.
    WrongLayerDigest,
}

/// The digest `x:latest` gives its layer in [`Scenario::WrongLayerDigest`].
const WRONG: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// An image of one uncompressed layer: (manifest, config, layer) and their digests.
struct Image {
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
}

fn sha256(b: &[u8]) -> String {
    let hex: String = sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn image(layer_digest_override: Option<&str>) -> Image {
    let mut builder = tar::Builder::new(Vec::new());
    let content = vec![b'x'; 64 << 10];
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello", &content[..])
        .unwrap();
    let layer = builder.into_inner().unwrap();
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest_override.unwrap_or(&layer_digest),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    Image {
        manifest,
        config,
        config_digest,
        layer,
        layer_digest,
    }
}

/// A fake registry on a free loopback port; the request lines it got.
struct Fake {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
    image: Arc<Image>,
}

impl Fake {
    fn start(scenario: Scenario) -> Fake {
        let bad = match scenario {
            Scenario::BadDigest => Some("sha256:../../x"),
            Scenario::WrongLayerDigest => Some(WRONG),
            _ => None,
        };
        let image = Arc::new(image(bad));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (img, reqs) = (image.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (img, reqs) = (img.clone(), reqs.clone());
                std::thread::spawn(move || serve(conn, scenario, &img, &reqs));
            }
        });
        Fake {
            addr,
            requests,
            image,
        }
    }

    fn requests_for(&self, path_part: &str) -> usize {
        let reqs = self.requests.lock().unwrap();
        reqs.iter().filter(|r| r.contains(path_part)).count()
    }
}

/// Holds a connection open, sending nothing (until the test process ends).
fn stall() {
    std::thread::sleep(Duration::from_secs(600));
}

/// One request's head (request line and headers), or None at the end of the connection
/// or when the client speaks TLS (lb tries https first on loopback: refused by closing).
fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        if head.is_empty() && byte[0] == 0x16 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(body);
}

fn serve(mut conn: TcpStream, scenario: Scenario, img: &Image, reqs: &Mutex<Vec<String>>) {
    if scenario == Scenario::Silent {
        reqs.lock().unwrap().push("(connection)".into());
        stall();
        return;
    }
    while let Some(head) = read_head(&mut conn) {
        let line = head.lines().next().unwrap_or("").to_string();
        reqs.lock().unwrap().push(line.clone());
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let range_start: Option<usize> = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("range: bytes=")
                    .map(str::to_string)
            })
            .and_then(|r| r.trim_end_matches('-').parse().ok());
        let json = |t: &str| vec![("Content-Type", t.to_string())];
        if path == "/v2/" {
            respond(&mut conn, "200 OK", &json("application/json"), b"{}");
        } else if path == "/v2/x/manifests/latest" {
            let headers = json("application/vnd.oci.image.manifest.v1+json");
            if scenario == Scenario::StallManifestBody {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 400\r\n\r\n",
                );
                stall();
                return;
            }
            if scenario == Scenario::TrickleManifest {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
                    img.manifest.len()
                );
                let _ = conn.write_all(head.as_bytes());
                for b in &img.manifest {
                    if conn.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                return;
            }
            respond(&mut conn, "200 OK", &headers, &img.manifest);
        } else if path == "/v2/x/manifests/good" && scenario == Scenario::WrongLayerDigest {
            let good = image(None);
            let headers = json("application/vnd.oci.image.manifest.v1+json");
            respond(&mut conn, "200 OK", &headers, &good.manifest);
        } else if path == format!("/v2/x/blobs/{WRONG}")
            || scenario == Scenario::WrongLayerDigest
                && path == format!("/v2/x/blobs/{}", img.layer_digest)
        {
            respond(&mut conn, "200 OK", &[], &img.layer);
        } else if path == format!("/v2/x/blobs/{}", img.config_digest) {
            respond(&mut conn, "200 OK", &[], &img.config);
        } else if path == format!("/v2/x/blobs/{}", img.layer_digest) {
            let n = img.layer.len();
            let head = match range_start {
                Some(k) => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {k}-{}/{n}\r\n\r\n",
                    n - k,
                    n - 1
                ),
                None => format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n"),
            };
            let _ = conn.write_all(head.as_bytes());
            if range_start.is_none() {
                let _ = conn.write_all(&img.layer[..n / 2]);
            }
            let _ = conn.flush();
            stall();
            return;
        } else {
            respond(&mut conn, "404 Not Found", &json("application/json"), b"{}");
        }
    }
}

/// `lb --root DIR/store ARGS...` with `LB_NETWORK_TIMEOUT=timeout` (when given), no
/// credentials and no proxies; its output and how long it took.
fn lb(dir: &Path, timeout: Option<&str>, args: &[&str]) -> (Output, Duration) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
    c.arg("--root")
        .arg(dir.join("store"))
        .args(args)
        .env("LB_AUTH_FILE", dir.join("auth.json"))
        .env("DOCKER_CONFIG", dir.join("docker"))
        .stdin(Stdio::null());
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(v);
    }
    match timeout {
        Some(t) => c.env("LB_NETWORK_TIMEOUT", t),
        None => c.env_remove("LB_NETWORK_TIMEOUT"),
    };
    let started = Instant::now();
    let out = c.output().expect("run lb");
    (out, started.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lb pull ADDR/x:latest` fails within `bound` with `want` in its message, and the store
/// names no image.
fn pull_fails(fake: &Fake, want: &str, bound: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/x:latest", fake.addr);
    let (out, took) = lb(dir.path(), Some("1s"), &["pull", &image]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "pull succeeded: {err}");
    assert!(took < bound, "took {took:?} (bound {bound:?}): {err}");
    assert!(err.contains(want), "want {want:?} in:\n{err}");
    let (images, _) = lb(dir.path(), None, &["images", "-q"]);
    assert!(images.status.success(), "{}", text(&images.stderr));
    assert_eq!(text(&images.stdout), "", "an image was named");
    eprintln!("pull failed in {took:?}: {err}");
    err
}

#[test]
fn a_registry_that_accepts_and_never_answers_fails_the_pull_in_time() {
    let fake = Fake::start(Scenario::Silent);
    let want = format!(
        "GET http://{}/v2/x/manifests/latest: no response within 1 s (stalled after the connection was accepted) (gave up after 5 tries)",
        fake.addr
    );
    // The https attempt (1 s), five tries of 1 s, 3 s of back-off.
    pull_fails(&fake, &want, Duration::from_secs(20));
}

#[test]
fn a_manifest_that_trickles_in_fails_the_pull_in_time() {
    let fake = Fake::start(Scenario::TrickleManifest);
    // A byte every 300 ms would take minutes; each try is cut after about 1 s.
    let err = pull_fails(&fake, "(slower than 16 KiB/s)", Duration::from_secs(20));
    assert!(err.contains("/v2/x/manifests/latest"), "{err}");
}

#[test]
fn a_manifest_that_stalls_after_its_headers_fails_the_pull_in_time() {
    let fake = Fake::start(Scenario::StallManifestBody);
    let want = format!(
        "GET http://{}/v2/x/manifests/latest: no data for 1 s in the body after 0 bytes (gave up after 5 tries)",
        fake.addr
    );
    pull_fails(&fake, &want, Duration::from_secs(20));
    assert_eq!(fake.requests_for("/manifests/latest"), 5);
}

#[test]
fn a_layer_that_stalls_mid_body_fails_the_pull_in_time_after_resuming_tries() {
    let fake = Fake::start(Scenario::StallLayer);
    let layer = fake.image.layer_digest.clone();
    let half = fake.image.layer.len() / 2;
    let want = format!(
        "GET http://{}/v2/x/blobs/{layer}: no data for 1 s in the body after {half} bytes (gave up after 5 tries)",
        fake.addr
    );
    pull_fails(&fake, &want, Duration::from_secs(25));
    // The first GET and four that resumed where it stopped (Range).
    assert_eq!(fake.requests_for(&format!("/blobs/{layer}")), 5);
}

#[test]
fn a_malformed_layer_digest_is_named_with_its_field_and_value() {
    let fake = Fake::start(Scenario::BadDigest);
    let want = r#"manifest layers[0].digest: "sha256:../../x" is not a sha256 digest"#;
    pull_fails(&fake, want, Duration::from_secs(10));
    assert_eq!(fake.requests_for("/blobs/"), 0, "nothing fetched for it");
}

#[test]
fn a_bad_network_timeout_is_refused_naming_the_variable() {
    let fake = Fake::start(Scenario::BadDigest);
    let image = format!("{}/x:latest", fake.addr);
    for (value, why) in [
        (
            "abc",
            "want seconds or a duration such as 500ms, 2s or 1m30s",
        ),
        ("0", "must be more than zero"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = lb(dir.path(), Some(value), &["pull", &image]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{value}: {err}");
        assert!(
            err.contains(&format!("LB_NETWORK_TIMEOUT={value:?}: {why}")),
            "{value}: {err}"
        );
    }
    assert_eq!(fake.requests_for(""), 0, "no request with a bad timeout");
}

/// ADD of a URL whose server sends the headers and a part of the body, then nothing: the
/// build fails within the deadline and its retries, naming the URL and the stall.
#[test]
fn add_of_a_url_that_stalls_mid_body_fails_the_build_in_time() {
    if !lb_testkit::require_root("lb build") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let gets = Arc::new(Mutex::new(0usize));
    let counted = gets.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counted = counted.clone();
            std::thread::spawn(move || {
                if read_head(&mut conn).is_none() {
                    return;
                }
                *counted.lock().unwrap() += 1;
                let _ =
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
                stall();
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD http://{addr}/f /f\n"),
    )
    .unwrap();
    let (out, took) = lb(
        dir.path(),
        Some("500ms"),
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "stalled",
            ctx.to_str().unwrap(),
        ],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {err}");
    let want = format!(
        "ADD: GET http://{addr}/f: no data for 500 ms in the body after 10 bytes (gave up after 5 tries)"
    );
    assert!(err.contains(&want), "want {want:?} in:\n{err}");
    assert_eq!(*gets.lock().unwrap(), 5);
    let (images, _) = lb(dir.path(), None, &["images", "-q"]);
    assert_eq!(text(&images.stdout), "", "an image was named");
    eprintln!("build failed in {took:?}");
}

#[test]
fn a_failed_pull_keeps_the_snapshot_it_did_not_make() {
    if !lb_testkit::require_root("unpacking layers as their owners") {
        return;
    }
    let fake = Fake::start(Scenario::WrongLayerDigest);
    let dir = tempfile::tempdir().unwrap();
    let good = format!("{}/x:good", fake.addr);
    let (out, _) = lb(dir.path(), Some("5s"), &["pull", &good]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The layer's snapshot (one layer: its chain id is its diffID).
    let snapshot = dir
        .path()
        .join("store/snapshots")
        .join(fake.image.layer_digest.trim_start_matches("sha256:"));
    assert!(snapshot.join("hello").is_file());

    // The same diffID, bytes that fail their digest: the pull fails and removes nothing
    // it did not make.
    let (out, _) = lb(
        dir.path(),
        Some("5s"),
        &["pull", &format!("{}/x:latest", fake.addr)],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "pull succeeded: {err}");
    assert!(err.contains("hash to"), "{err}");
    assert!(
        snapshot.join("hello").is_file(),
        "the good image's snapshot went"
    );
    let (check, _) = lb(dir.path(), None, &["system", "check", "--full"]);
    assert!(check.status.success(), "{}", text(&check.stdout));
}
