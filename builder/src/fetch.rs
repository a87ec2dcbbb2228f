//! ADD of an http(s) URL, as BuildKit does it: the file is fetched on every build (its
//! content, not its URL, is what the step's cache key holds), named after the URL's last
//! path segment, given mode 0600 and the server's Last-Modified time, never unpacked, and
//! checked against `--checksum=sha256:...` when given. The HTTP client trusts the system's
//! roots (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`) and honours
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, as users behind corporate proxies need.
//!
//! No fetch waits forever: connecting, the wait for the response and each read of its body
//! are bounded by the network timeout (the caller's: lb reads `$LB_NETWORK_TIMEOUT` by
//! the registry client's rules; 30 s by default), a slow download going on as long as bytes come. A stalled or
//! dropped fetch, or a 5xx, is tried again from the start with the registry client's
//! back-off (five tries), then fails naming the URL and where it stalled.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_layerstore::{Digest, Digester};

/// Why an ADD of a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "{url}: cannot tell a file name from the URL; end the destination without / to name it"
    )]
    NoFileName { url: String },
    #[error("ADD {url}: {}", chain(source))]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("ADD {url}: {stall}")]
    Stalled { url: String, stall: Stall },
    #[error("ADD {url}: the server answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--checksum={0}: want sha256:<64 hex digits>")]
    BadChecksum(String),
    #[error("ADD {url}: digest mismatch: expected {want}, got {got}")]
    Mismatch {
        url: String,
        want: Digest,
        got: Digest,
    },
    #[error("{last} (gave up after {tries} tries)")]
    GaveUp { tries: usize, last: Box<FetchError> },
}

/// Where a fetch stalled, and how long it waited there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    Connect {
        waited: Duration,
    },
    Response {
        waited: Duration,
    },
    Body {
        waited: Duration,
        after: u64,
    },
    /// Slower than [`SLOWEST_RATE`] after one timeout's grace (a server dripping a byte
    /// at a time, never pausing for the timeout).
    Trickle {
        waited: Duration,
        after: u64,
    },
}

/// The slowest a body may come on average, after one timeout's grace (the registry
/// client's rule for every body).
const SLOWEST_RATE: u64 = 16 << 10;

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stall::Connect { waited } => {
                write!(f, "no connection within {}", Seconds(*waited))
            }
            Stall::Response { waited } => write!(
                f,
                "no response within {} (stalled after the connection was accepted)",
                Seconds(*waited)
            ),
            Stall::Body { waited, after } => write!(
                f,
                "no data for {} in the body after {after} bytes",
                Seconds(*waited)
            ),
            Stall::Trickle { waited, after } => write!(
                f,
                "only {after} bytes of the body in {} (slower than 16 KiB/s)",
                Seconds(*waited)
            ),
        }
    }
}

/// The builder's steps keep their errors as text.
impl From<FetchError> for String {
    fn from(e: FetchError) -> String {
        e.to_string()
    }
}

impl FetchError {
    /// Whether trying again may pass: a stall, a dropped or refused connection, a 5xx.
    fn transient(&self) -> bool {
        match self {
            FetchError::Stalled { .. } => true,
            FetchError::Request { source, .. } => {
                source.is_connect() || source.is_request() || source.is_body()
            }
            FetchError::Status { status, .. } => status.is_server_error() || status.as_u16() == 429,
            _ => false,
        }
    }
}

/// An error and its sources, `: `-separated (reqwest's own text hides the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The network timeout when the caller sets none (`BuildOptions::network_timeout`; lb sets
/// it from `$LB_NETWORK_TIMEOUT`, read by the registry client's rules).
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than the timeout the wait for response headers may take: the connect
/// timeout fires first when connecting is what stalls.
const RESPONSE_GRACE: Duration = Duration::from_millis(100);
/// Waits before each retry (the registry client's): five tries.
const BACKOFF_MS: [u64; 4] = [200, 400, 800, 1600];

/// A duration as messages show it: `30 s`, `1.5 s`, `500 ms`.
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        if d >= Duration::from_secs(1) {
            let text = format!("{:.3}", d.as_secs_f64());
            let text = text.trim_end_matches('0').trim_end_matches('.');
            write!(f, "{text} s")
        } else if d >= Duration::from_millis(1) {
            write!(f, "{} ms", d.as_millis())
        } else {
            write!(f, "{} µs", d.as_micros())
        }
    }
}

/// Whether a read failed because its deadline passed.
fn timed_out(e: &std::io::Error) -> bool {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|s| s as _);
    while let Some(s) = source {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || s.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether an ADD source is a URL to fetch.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The file name a URL's content gets: its last path segment.
fn file_name(url: &str) -> Result<String, FetchError> {
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(url)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    match path.split_once('/') {
        Some((_, p)) => match p.rsplit('/').next() {
            Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(name.to_string()),
            _ => Err(FetchError::NoFileName { url: url.into() }),
        },
        None => Err(FetchError::NoFileName { url: url.into() }),
    }
}

/// Fetches `url` into `dir` (a step's scratch directory) and returns the file; no wait for
/// progress (connecting, the response, a read of the body) lasts longer than `timeout`.
pub fn fetch(
    url: &str,
    dir: &Path,
    checksum: Option<&str>,
    timeout: Duration,
) -> Result<PathBuf, FetchError> {
    let name = file_name(url)?;
    let want: Option<Digest> = checksum
        .map(|c| c.parse().map_err(|_| FetchError::BadChecksum(c.into())))
        .transpose()?;
    // reqwest's blocking `timeout` bounds the wait for the response's headers and each
    // read of the body on its own: no progress for that long, never the whole download.
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("lb/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        .timeout(timeout + RESPONSE_GRACE)
        .build()
        .map_err(|source| FetchError::Request {
            url: url.into(),
            source,
        })?;
    let fetched = dir.join("fetched");
    std::fs::create_dir_all(&fetched).map_err(|source| FetchError::Io {
        path: fetched.clone(),
        source,
    })?;
    let path = fetched.join(&name);
    let mut tries = 0;
    let (digest, modified) = loop {
        match download(&client, url, &path, timeout) {
            Err(e) if e.transient() && tries < BACKOFF_MS.len() => {
                std::thread::sleep(Duration::from_millis(BACKOFF_MS[tries]));
                tries += 1;
            }
            Err(e) if e.transient() && tries > 0 => {
                return Err(FetchError::GaveUp {
                    tries: tries + 1,
                    last: Box::new(e),
                });
            }
            r => break r?,
        }
    };
    if let Some(want) = want {
        if want != digest {
            return Err(FetchError::Mismatch {
                url: url.into(),
                want,
                got: digest,
            });
        }
    }
    let io = |source| FetchError::Io {
        path: path.clone(),
        source,
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let t = nix::sys::time::TimeSpec::new(modified.unwrap_or(0), 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io(e.into()))?;
    Ok(path)
}

/// One try: `url`'s body into `path` (created afresh); its digest and Last-Modified time.
fn download(
    client: &reqwest::blocking::Client,
    url: &str,
    path: &Path,
    timeout: Duration,
) -> Result<(Digest, Option<i64>), FetchError> {
    let mut response = client.get(url).send().map_err(|source| {
        if !source.is_timeout() {
            return FetchError::Request {
                url: url.into(),
                source,
            };
        }
        let stall = if source.is_connect() {
            Stall::Connect { waited: timeout }
        } else {
            Stall::Response { waited: timeout }
        };
        FetchError::Stalled {
            url: url.into(),
            stall,
        }
    })?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.into(),
            status: response.status(),
        });
    }
    let modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date);
    let io = |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut hashed = Digester::new(file);
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = 0u64;
    let started = std::time::Instant::now();
    loop {
        let n = match response.read(&mut buf) {
            Ok(n) => n,
            Err(e) if timed_out(&e) => {
                return Err(FetchError::Stalled {
                    url: url.into(),
                    stall: Stall::Body {
                        waited: timeout,
                        after: seen,
                    },
                });
            }
            Err(e) if e.get_ref().is_some_and(|i| i.is::<reqwest::Error>()) => {
                // A dropped connection: reqwest's error inside the io::Error.
                let inner = e.into_inner().expect("checked");
                return Err(FetchError::Request {
                    url: url.into(),
                    source: *inner.downcast::<reqwest::Error>().expect("checked"),
                });
            }
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        seen += n as u64;
        let took = started.elapsed();
        if took > timeout + Duration::from_secs(seen / SLOWEST_RATE) {
            return Err(FetchError::Stalled {
                url: url.into(),
                stall: Stall::Trickle {
                    waited: took,
                    after: seen,
                },
            });
        }
        std::io::Write::write_all(&mut hashed, &buf[..n]).map_err(io)?;
    }
    let (digest, _, _) = hashed.finish();
    Ok((digest, modified))
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 7231's preferred form) as seconds
/// since the epoch.
fn http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let hms: Vec<i64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let [h, m, sec] = hms[..] else { return None };
    let rfc = format!(
        "{year}-{month:02}-{:02}T{h:02}:{m:02}:{sec:02}Z",
        day.parse::<i64>().ok()?
    );
    lb_layerstore::parse_rfc3339(&rfc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(
            file_name("https://example.org/a/b/tool.tar.gz?x=1").unwrap(),
            "tool.tar.gz"
        );
        assert!(file_name("https://example.org/").is_err());
        assert!(file_name("https://example.org").is_err());
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(http_date("yesterday"), None);
        assert!(is_url("https://x/y") && !is_url("git@github.com:x/y"));
    }

    #[test]
    fn stalls_are_said_in_seconds_or_milliseconds() {
        let ms = Duration::from_millis;
        assert_eq!(Seconds(ms(1_000)).to_string(), "1 s");
        assert_eq!(Seconds(ms(250)).to_string(), "250 ms");
    }

    /// A loopback server that sends headers and a part of the body, then nothing: the
    /// fetch is cut after the timeout, tried five times, and names the URL and the stall.
    #[test]
    fn a_stalled_download_is_cut_and_named() {
        use std::io::Write;
        let ms = Duration::from_millis;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ =
                        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
                    std::thread::sleep(Duration::from_secs(60));
                });
            }
        });
        let client = reqwest::blocking::Client::builder()
            .timeout(ms(300))
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}/f");
        let started = std::time::Instant::now();
        let e = download(&client, &url, &dir.path().join("f"), ms(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        assert!(e.transient());
        assert_eq!(
            e.to_string(),
            format!("ADD {url}: no data for 300 ms in the body after 10 bytes")
        );
    }
}

#[cfg(test)]
mod trickle_tests {
    use super::*;

    /// A loopback server that sends a byte every 50 ms (never pausing for the timeout):
    /// the download is cut once it runs slower than 16 KiB/s past the timeout's grace.
    #[test]
    fn a_trickling_download_is_cut_and_named() {
        use std::io::Write;
        let ms = Duration::from_millis;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
                    for _ in 0..2000 {
                        if conn.write_all(b"x").is_err() {
                            return;
                        }
                        std::thread::sleep(ms(50));
                    }
                });
            }
        });
        let client = reqwest::blocking::Client::builder()
            .timeout(ms(300))
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}/f");
        let started = std::time::Instant::now();
        let e = download(&client, &url, &dir.path().join("f"), ms(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "{e}");
        assert!(e.transient());
        assert!(e.to_string().contains("(slower than 16 KiB/s)"), "{e}");
    }
}
