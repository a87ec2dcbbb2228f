//! One registry over HTTP: the distribution API's requests, with authentication done the
//! way registries ask for it. A request goes out with what is cached for its scope; a 401
//! answers with a challenge: Basic gets the stored credentials, Bearer sends us to the
//! token server named in the challenge (with the credentials when there are some) for a
//! token of that scope, cached per scope and fetched again on the next 401.
//!
//! No request waits forever: connecting is bounded by the network timeout
//! (`$LB_NETWORK_TIMEOUT`, 30 s by default), and so is every wait for progress after it —
//! the response's headers, and each read of its body (a big layer takes as long as it
//! takes, as long as bytes keep coming). A stall is an [`Error::Stalled`] naming the
//! request and where it stopped; it is transient, so [`retrying`] tries it again.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::Value;

use crate::{Error, Stall};

use crate::auth::{AuthFiles, Challenge, Credentials, parse_challenge};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--tls-verify=false`: the registry is insecure, as loopback ones always are:
    /// https without certificate checks, and plain http when it does not speak https.
    pub tls_verify: bool,
    /// Directories holding `<registry>/ca.crt` (and any `*.crt`): CAs trusted for that
    /// registry on top of the system's (docker's `/etc/docker/certs.d`).
    pub cert_dirs: Vec<PathBuf>,
    pub auth: AuthFiles,
    /// How long a request may make no progress (connecting, waiting for the response,
    /// between two reads of its body) before it is cut. None: `$LB_NETWORK_TIMEOUT`, else
    /// [`DEFAULT_NETWORK_TIMEOUT`] (read when a [`Registry`] is made).
    pub network_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            tls_verify: true,
            cert_dirs: vec![
                PathBuf::from("/etc/docker/certs.d"),
                PathBuf::from("/etc/containers/certs.d"),
            ],
            auth: AuthFiles::from_env(),
            network_timeout: None,
        }
    }
}

/// The environment variable that sets the network timeout.
pub const NETWORK_TIMEOUT_VAR: &str = "LB_NETWORK_TIMEOUT";
/// The network timeout when `$LB_NETWORK_TIMEOUT` is unset: connecting, and any wait for
/// progress after it.
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest network timeout taken (a timeout is never infinite).
const MAX_NETWORK_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// How much longer than the network timeout a request may take to get its response
/// headers: the connect timeout fires first when the connection is what stalls.
const RESPONSE_GRACE: Duration = Duration::from_millis(100);
/// The slowest upload rate a request body's deadline allows for (bytes per second).
const SLOWEST_UPLOAD: u64 = 16 << 10;

/// `$LB_NETWORK_TIMEOUT` (see [`parse_network_timeout`]), else [`DEFAULT_NETWORK_TIMEOUT`].
pub fn network_timeout_from_env() -> Result<Duration, Error> {
    match std::env::var(NETWORK_TIMEOUT_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_NETWORK_TIMEOUT),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::Setting {
            name: NETWORK_TIMEOUT_VAR,
            value: v.to_string_lossy().into_owned(),
            reason: "not UTF-8",
        }),
        Ok(v) => parse_network_timeout(&v).map_err(|reason| Error::Setting {
            name: NETWORK_TIMEOUT_VAR,
            value: v,
            reason,
        }),
    }
}

/// A network timeout as written: seconds (`30`, `1.5`) or a Go duration (`500ms`, `2s`,
/// `1m30s`; units ns, us, µs, ms, s, m, h); more than zero and at most a day. It bounds
/// registry requests and ADD's URLs alike ([`Http`]).
pub fn parse_network_timeout(value: &str) -> Result<Duration, &'static str> {
    const WANT: &str = "want seconds or a duration such as 500ms, 2s or 1m30s";
    let v = value.trim();
    let nanos: f64 = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        v.parse::<f64>().map_err(|_| WANT)? * 1e9
    } else {
        let mut rest = v;
        let mut total = 0f64;
        if rest.is_empty() {
            return Err(WANT);
        }
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let number: f64 = rest[..num_len].parse().map_err(|_| WANT)?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(WANT),
            };
            rest = &rest[unit_len..];
            total += number * scale;
        }
        total
    };
    if !nanos.is_finite() || nanos < 1.0 {
        return Err("must be more than zero (a network timeout is never infinite)");
    }
    if nanos > MAX_NETWORK_TIMEOUT.as_nanos() as f64 {
        return Err("must be at most a day (24h)");
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// A duration as messages show it: `30 s`, `1.5 s`, `500 ms`.
pub(crate) struct Seconds(pub Duration);

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

/// Registries docker talks plain http to without being told: loopback ones.
pub fn is_loopback(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => domain.rsplit_once(':').map_or(domain, |(h, _)| h),
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host a reference's domain is served from (Docker Hub's API is not at docker.io).
pub fn api_host(domain: &str) -> &str {
    if domain == "docker.io" || domain == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// An HTTP client under lb's network rules: the system's roots and the environment's
/// proxies, and no wait without progress longer than the network timeout (connecting, the
/// response's headers, each read of a body, an upload's answer; a body slower than
/// 16 KiB/s after that grace is cut too). Registries and ADD's URLs both go through it.
pub struct Http {
    client: Client,
    /// How long a request may make no progress.
    timeout: Duration,
}

impl Http {
    /// The client's settings, before a registry's own (its CAs, insecure TLS).
    fn builder(timeout: Duration) -> reqwest::blocking::ClientBuilder {
        // reqwest's blocking `timeout` bounds the wait for a response's headers (from the
        // start: the connect timeout, shorter, fires first when connecting stalls) and each
        // read of its body separately: a no-progress deadline, never one for the whole
        // transfer. TCP_USER_TIMEOUT cuts a connection whose sent bytes go unacknowledged
        // (an upload the registry stopped reading).
        Client::builder()
            .user_agent(concat!("lb/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .timeout(timeout + RESPONSE_GRACE)
            .tcp_user_timeout(timeout)
            .pool_max_idle_per_host(8)
    }

    /// A client for plain URLs (ADD): the network timeout of `opts`, else
    /// `$LB_NETWORK_TIMEOUT`.
    pub fn new(opts: &Options) -> Result<Http, Error> {
        let timeout = match opts.network_timeout {
            Some(t) => t,
            None => network_timeout_from_env()?,
        };
        let client = Http::builder(timeout).build().map_err(|e| transport(&e))?;
        Ok(Http { client, timeout })
    }

    /// Sends `req` (with `auth` as its Authorization), bounded as the type says: an
    /// upload's deadline for its response grows with its body. A timeout is a
    /// [`Error::Stalled`] naming the request.
    fn execute(&self, req: RequestBuilder, auth: Option<&str>) -> Result<Response, Error> {
        let req = match auth {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        };
        let mut req = req.build().map_err(|e| transport(&e))?;
        let method = req.method().to_string();
        let url = req.url().to_string();
        let upload = req
            .body()
            .and_then(|b| b.as_bytes())
            .map_or(0, |b| b.len() as u64);
        if upload > 0 {
            *req.timeout_mut() = Some(self.upload_deadline(upload));
        }
        self.client.execute(req).map_err(|e| {
            if !e.is_timeout() {
                return transport(&e);
            }
            let stall = if e.is_connect() {
                Stall::Connect {
                    waited: self.timeout,
                }
            } else if upload > 0 {
                Stall::Upload {
                    waited: self.upload_deadline(upload),
                    bytes: upload,
                }
            } else {
                Stall::Response {
                    waited: self.timeout,
                }
            };
            Error::Stalled { method, url, stall }
        })
    }

    /// How long a request with a body of `bytes` may take to get its response: the
    /// network timeout, plus the body's time at the slowest rate allowed.
    fn upload_deadline(&self, bytes: u64) -> Duration {
        self.timeout + RESPONSE_GRACE + Duration::from_secs(bytes.div_ceil(SLOWEST_UPLOAD))
    }

    /// The body of a GET's response, read under the no-progress deadline (see [`Body`]).
    pub fn body(&self, resp: Response) -> Body {
        Body {
            url: resp.url().to_string(),
            resp,
            waited: self.timeout,
            seen: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Downloads `url` into the file `to` (made anew on every try: transient failures and
    /// stalls are tried again, as registry requests are); the server's `Last-Modified`.
    pub fn download(&self, url: &str, to: &std::path::Path) -> Result<Option<String>, Error> {
        retrying(|| {
            let resp = self.execute(self.client.get(url), None)?;
            let resp = expect_ok(resp, url)?;
            let modified = resp
                .headers()
                .get(reqwest::header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut file = std::fs::File::create(to).map_err(|e| Error::Io {
                path: to.to_path_buf(),
                source: e,
            })?;
            let mut body = self.body(resp);
            io::copy(&mut body, &mut file).map_err(|e| match e.kind() {
                // A write to the file (a full disk), not the network.
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::Io {
                    path: to.to_path_buf(),
                    source: e,
                },
                _ => body.error(e),
            })?;
            Ok(modified)
        })
    }
}

/// A registry, authenticated as the stored credentials say.
pub struct Registry {
    pub domain: String,
    base: String,
    net: Http,
    creds: Option<Credentials>,
    /// Authorization values by scope.
    tokens: Mutex<HashMap<String, String>>,
}

/// What makes two registry clients the same: insecure or not, the CA files added, the
/// network timeout.
type ClientKey = (bool, Vec<PathBuf>, Duration);

/// The HTTP clients made in this process, shared by every [`Registry`] they fit: making
/// one reads the system's roots and seeds its TLS stack (~10 ms), and a build talks to a
/// registry through several (its bases' pulls, its caches, its push), which share
/// connections this way too.
static CLIENTS: std::sync::LazyLock<Mutex<HashMap<ClientKey, reqwest::blocking::Client>>> =
    std::sync::LazyLock::new(Default::default);

fn shared_client(
    insecure: bool,
    cert_files: &[PathBuf],
    timeout: Duration,
) -> Result<reqwest::blocking::Client, Error> {
    let key = (insecure, cert_files.to_vec(), timeout);
    if let Some(c) = CLIENTS.lock().expect("clients").get(&key) {
        return Ok(c.clone());
    }
    let mut b = Http::builder(timeout);
    if insecure {
        // docker's insecure registries (loopback ones by default): https whatever its
        // certificate, else plain http.
        b = b.tls_danger_accept_invalid_certs(true);
    }
    for p in cert_files {
        let pem = std::fs::read(p).map_err(|e| Error::Config {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        b = b.tls_certs_merge(certs);
    }
    let client = b.build().map_err(|e| Error::Transport {
        url: "a registry client".to_string(),
        reason: e.to_string(),
    })?;
    CLIENTS.lock().expect("clients").insert(key, client.clone());
    Ok(client)
}

/// Insecure registries' hosts, and whether each answered https, in this process.
static SPEAKS_HTTPS: std::sync::LazyLock<Mutex<HashMap<String, bool>>> =
    std::sync::LazyLock::new(Default::default);

impl Registry {
    /// Connects to `domain` (`localhost:5000`, `docker.io`): https, or plain http for a
    /// loopback registry or with `tls_verify` off when https is not answered.
    pub fn new(domain: &str, opts: &Options) -> Result<Registry, Error> {
        let creds = opts.auth.lookup(domain)?;
        Registry::with_credentials(domain, opts, creds)
    }

    /// As [`Registry::new`], with these credentials instead of the stored ones (`login`).
    pub fn with_credentials(
        domain: &str,
        opts: &Options,
        creds: Option<Credentials>,
    ) -> Result<Registry, Error> {
        let host = api_host(domain);
        let insecure = !opts.tls_verify || is_loopback(domain);
        let timeout = match opts.network_timeout {
            Some(t) => t,
            None => network_timeout_from_env()?,
        };
        // The CA files this registry's certificate directories hold.
        let mut cert_files = Vec::new();
        for dir in &opts.cert_dirs {
            let Ok(entries) = std::fs::read_dir(dir.join(domain)) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "crt") {
                    cert_files.push(p);
                }
            }
        }
        cert_files.sort();
        let client = shared_client(insecure, &cert_files, timeout)?;
        let mut reg = Registry {
            domain: domain.to_string(),
            base: format!("https://{host}"),
            net: Http { client, timeout },
            creds,
            tokens: Mutex::new(HashMap::new()),
        };
        if insecure {
            // As docker with an insecure registry: https when it answers, else http. Asked
            // once a process: a build talks to one registry through several clients (its
            // base's pull, its caches, its push), and each question cost ~25 ms here.
            let known = SPEAKS_HTTPS.lock().expect("schemes").get(host).copied();
            let https = match known {
                Some(https) => https,
                None => {
                    let https = reg
                        .net
                        .client
                        .get(format!("{}/v2/", reg.base))
                        .send()
                        .is_ok();
                    SPEAKS_HTTPS
                        .lock()
                        .expect("schemes")
                        .insert(host.to_string(), https);
                    https
                }
            };
            if !https {
                reg.base = format!("http://{host}");
            }
        }
        Ok(reg)
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends the request `build` makes (again after authenticating when the registry
    /// asks), for `scope` (`repository:NAME:pull`, or several separated by spaces).
    pub fn send(
        &self,
        scope: &str,
        build: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, Error> {
        let cached = self.tokens.lock().expect("tokens").get(scope).cloned();
        let resp = self.execute(build(&self.net.client), cached.as_deref())?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .next();
        let auth = match challenge {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic(),
                None => return Err(self.unauthorized(resp, "no credentials (lb login)")),
            },
            Some(Challenge::Bearer { params }) => self.token(&params, scope)?,
            None => return Err(self.unauthorized(resp, "no challenge the client knows")),
        };
        self.tokens
            .lock()
            .expect("tokens")
            .insert(scope.to_string(), auth.clone());
        let resp = self.execute(build(&self.net.client), Some(&auth))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.tokens.lock().expect("tokens").remove(scope);
            let why = if self.creds.is_some() {
                "the credentials were refused"
            } else {
                "anonymous access refused (lb login)"
            };
            return Err(self.unauthorized(resp, why));
        }
        Ok(resp)
    }

    fn execute(&self, req: RequestBuilder, auth: Option<&str>) -> Result<Response, Error> {
        self.net.execute(req, auth)
    }

    /// The body of a GET's response, read under the no-progress deadline (see [`Body`]).
    pub fn body(&self, resp: Response) -> Body {
        self.net.body(resp)
    }

    fn unauthorized(&self, resp: Response, why: &str) -> Error {
        Error::Auth(format!(
            "{}: {} {}: {why}",
            self.domain,
            resp.url(),
            resp.status()
        ))
    }

    /// A Bearer token from the challenge's realm for `scope` (each space-separated scope
    /// a `scope` parameter), with Basic credentials when there are some.
    fn token(
        &self,
        params: &std::collections::BTreeMap<String, String>,
        scope: &str,
    ) -> Result<String, Error> {
        let realm = params.get("realm").ok_or_else(|| {
            Error::Auth(format!("{}: Bearer challenge without realm", self.domain))
        })?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = params.get("service") {
            query.push(("service", s));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s));
        }
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let basic = self.creds.as_ref().map(Credentials::basic);
        let resp = self.execute(self.net.client.get(&url), basic.as_deref())?;
        if !resp.status().is_success() {
            return Err(Error::Auth(format!(
                "{}: the token server {realm} answered {}",
                self.domain,
                resp.status()
            )));
        }
        let mut text = Vec::new();
        let mut reader = self.body(resp);
        (&mut reader)
            .take(MAX_TOKEN_ANSWER)
            .read_to_end(&mut text)
            .map_err(|e| reader.error(e))?;
        let body: Value =
            serde_json::from_slice(&text).map_err(|e| Error::Auth(format!("{realm}: {e}")))?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth(format!("{realm}: no token in the answer")))?;
        Ok(format!("Bearer {token}"))
    }

    /// `GET /v2/`: whether the registry answers and takes our credentials (`login`).
    pub fn check(&self) -> Result<(), Error> {
        let url = self.url("/v2/");
        let resp = self.send("", &|c| c.get(&url))?;
        expect_ok(resp, &url).map(|_| ())
    }
}

/// A token server's answer is read up to this size.
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// A response's body read under the no-progress deadline: a read that waits longer than
/// the network timeout fails with a [`Stall::Body`] naming the request and how many bytes
/// had come (inside the `io::Error`; [`Body::error`] and [`from_io`] take it out again).
pub struct Body {
    resp: Response,
    url: String,
    waited: Duration,
    /// Bytes read so far.
    pub seen: u64,
    started: std::time::Instant,
}

impl Body {
    /// The typed error a failed read of this body means.
    pub fn error(&self, e: io::Error) -> Error {
        from_io(e, &self.url)
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.resp.read(buf) {
            Ok(n) => {
                self.seen += n as u64;
                // A server that sends a byte now and then, never pausing as long as the
                // timeout, is cut too: the body must come at the slowest rate allowed
                // (an upload's), after one timeout's grace.
                let took = self.started.elapsed();
                let allowed = self.waited + Duration::from_secs(self.seen / SLOWEST_UPLOAD);
                if n > 0 && took > allowed {
                    return Err(io::Error::other(Error::Stalled {
                        method: "GET".into(),
                        url: self.url.clone(),
                        stall: Stall::Trickle {
                            waited: took,
                            after: self.seen,
                        },
                    }));
                }
                Ok(n)
            }
            Err(e) if io_timed_out(&e) => Err(io::Error::other(Error::Stalled {
                method: "GET".into(),
                url: self.url.clone(),
                stall: Stall::Body {
                    waited: self.waited,
                    after: self.seen,
                },
            })),
            Err(e) => Err(io::Error::other(Error::Transport {
                url: self.url.clone(),
                reason: chain(&e),
            })),
        }
    }
}

/// Whether a read failed because its deadline passed.
fn io_timed_out(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::TimedOut {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|s| s as _);
    while let Some(s) = source {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || s.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The registry error inside an `io::Error` (from a [`Body`] or a [`crate::pull`] reader),
/// else the `io::Error` as a transport failure of `url`.
pub fn from_io(e: io::Error, url: &str) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        let inner = e.into_inner().expect("checked");
        return *inner.downcast::<Error>().expect("checked");
    }
    Error::Transport {
        url: url.to_string(),
        reason: chain(&e),
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !reason.ends_with(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = s.source();
    }
    reason
}

/// The 12 hex digits docker shows of a digest.
pub(crate) fn short_id(d: &lb_layerstore::Digest) -> String {
    d.hex()[..12].to_string()
}

/// Waits before each retry of a transient failure: five tries in about three seconds.
pub(crate) const BACKOFF_MS: [u64; 4] = [200, 400, 800, 1600];

/// Whether `e` may pass if tried again: a dropped, refused or stalled connection, a 5xx.
pub fn transient(e: &Error) -> bool {
    match e {
        Error::Transport { .. } | Error::Stalled { .. } => true,
        Error::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails for good, or has failed transiently five times
/// (backing off in between); the last error says how many tries it took.
pub fn retrying<T>(mut op: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut tries = 0;
    loop {
        match op() {
            Err(e) if transient(&e) && tries < BACKOFF_MS.len() => {
                std::thread::sleep(Duration::from_millis(BACKOFF_MS[tries]));
                tries += 1;
            }
            Err(e) if tries > 0 && transient(&e) => {
                return Err(Error::GaveUp {
                    tries: tries + 1,
                    last: Box::new(e),
                });
            }
            r => return r,
        }
    }
}

/// `s` with everything but RFC 3986's unreserved characters percent-encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The response when it succeeded, else the registry's error (its JSON `errors` when it
/// sent some).
pub fn expect_ok(resp: Response, url: &str) -> Result<Response, Error> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            let errs = v["errors"].as_array()?.clone();
            Some(
                errs.iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(Error::Status {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    })
}

pub fn transport(e: &reqwest::Error) -> Error {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    Error::Transport {
        url: e.url().map(|u| u.to_string()).unwrap_or_default(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_told_apart() {
        for d in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
        ] {
            assert!(is_loopback(d), "{d}");
        }
        for d in ["docker.io", "registry.example:5000", "10.0.0.1:5000"] {
            assert!(!is_loopback(d), "{d}");
        }
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }

    #[test]
    fn network_timeouts_parse_as_seconds_or_go_durations_and_are_never_infinite() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("30", ms(30_000)),
            ("1.5", ms(1_500)),
            ("500ms", ms(500)),
            ("2s", ms(2_000)),
            ("1m30s", ms(90_000)),
            ("1.5h", ms(5_400_000)),
            (" 2s ", ms(2_000)),
        ] {
            assert_eq!(parse_network_timeout(text), Ok(want), "{text}");
        }
        for bad in [
            "", "0", "0s", "-1s", "abc", "5x", "s", "1..5s", "25h", "inf", "NaN",
        ] {
            assert!(parse_network_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(Seconds(ms(30_000)).to_string(), "30 s");
        assert_eq!(Seconds(ms(1_500)).to_string(), "1.5 s");
        assert_eq!(Seconds(ms(500)).to_string(), "500 ms");
        let e = Error::Setting {
            name: NETWORK_TIMEOUT_VAR,
            value: "5x".into(),
            reason: parse_network_timeout("5x").unwrap_err(),
        };
        assert_eq!(
            e.to_string(),
            "LB_NETWORK_TIMEOUT=\"5x\": want seconds or a duration such as 500ms, 2s or 1m30s"
        );
    }

    /// A loopback server answering every request with `head`, then sending `body` a piece
    /// every `gap`; its address.
    fn serve_slowly(head: &'static str, piece: &'static [u8], gap: Duration) -> String {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(head.as_bytes());
                    for _ in 0..2000 {
                        if conn.write_all(piece).is_err() {
                            return;
                        }
                        std::thread::sleep(gap);
                    }
                });
            }
        });
        addr
    }

    /// A download that stops, and one that trickles (a byte every 50 ms, never pausing
    /// for the timeout), are cut, tried five times and named with the URL and the stall.
    #[test]
    fn stalled_and_trickling_downloads_are_cut_and_named() {
        let ms = Duration::from_millis;
        let http = Http::new(&Options {
            network_timeout: Some(ms(300)),
            ..Options::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
        for (gap, piece, want) in [
            (
                Duration::from_secs(60),
                &b"0123456789"[..],
                "no data for 300 ms in the body after 10 bytes",
            ),
            (ms(50), &b"x"[..], "(slower than 16 KiB/s)"),
        ] {
            let url = format!("http://{}/f", serve_slowly(head, piece, gap));
            let started = std::time::Instant::now();
            let e = http.download(&url, &dir.path().join("f")).unwrap_err();
            // Five tries of about 0.3 s (0.35 s for the trickle), 3 s of back-off.
            assert!(started.elapsed() < Duration::from_secs(8), "{e}");
            let text = e.to_string();
            assert!(text.contains(&url) && text.contains(want), "{text}");
            assert!(text.contains("(gave up after 5 tries)"), "{text}");
        }
    }
}
