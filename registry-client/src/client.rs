//! One registry over HTTP: the distribution API's requests, with authentication done the
//! way registries ask for it. A request goes out with what is cached for its scope; a 401
//! answers with a challenge: Basic gets the stored credentials, Bearer sends us to the
//! token server named in the challenge (with the credentials when there are some) for a
//! token of that scope, cached per scope and fetched again on the next 401.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::Value;

use crate::Error;
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

/// A registry, authenticated as the stored credentials say.
pub struct Registry {
    pub domain: String,
    base: String,
    http: Client,
    creds: Option<Credentials>,
    /// Authorization values by scope.
    tokens: Mutex<HashMap<String, String>>,
}

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
        let mut b = Client::builder()
            .user_agent(concat!("lb/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(None)
            .pool_max_idle_per_host(8);
        if insecure {
            // docker's insecure registries (loopback ones by default): https whatever its
            // certificate, else plain http.
            b = b.tls_danger_accept_invalid_certs(true);
        }
        for dir in &opts.cert_dirs {
            let Ok(entries) = std::fs::read_dir(dir.join(domain)) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "crt") {
                    let pem = std::fs::read(&p).map_err(|e| Error::Config {
                        path: p.clone(),
                        reason: e.to_string(),
                    })?;
                    let certs =
                        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                            path: p.clone(),
                            reason: e.to_string(),
                        })?;
                    b = b.tls_certs_merge(certs);
                }
            }
        }
        let http = b.build().map_err(|e| Error::Transport {
            url: domain.to_string(),
            reason: e.to_string(),
        })?;
        let mut reg = Registry {
            domain: domain.to_string(),
            base: format!("https://{host}"),
            http,
            creds,
            tokens: Mutex::new(HashMap::new()),
        };
        if insecure {
            // As docker with an insecure registry: https when it answers, else http.
            let https = reg.http.get(format!("{}/v2/", reg.base)).send();
            if https.is_err() {
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
        let mut req = build(&self.http);
        if let Some(a) = &cached {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req.send().map_err(|e| transport(&e))?;
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
        let resp = build(&self.http)
            .header(AUTHORIZATION, auth)
            .send()
            .map_err(|e| transport(&e))?;
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
        let mut req = self.http.get(&url);
        if let Some(c) = &self.creds {
            req = req.header(AUTHORIZATION, c.basic());
        }
        let resp = req.send().map_err(|e| transport(&e))?;
        if !resp.status().is_success() {
            return Err(Error::Auth(format!(
                "{}: the token server {realm} answered {}",
                self.domain,
                resp.status()
            )));
        }
        let text = resp
            .text()
            .map_err(|e| Error::Auth(format!("{realm}: {e}")))?;
        let body: Value =
            serde_json::from_str(&text).map_err(|e| Error::Auth(format!("{realm}: {e}")))?;
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

/// The 12 hex digits docker shows of a digest.
pub(crate) fn short_id(d: &lb_layerstore::Digest) -> String {
    d.hex()[..12].to_string()
}

/// Waits before each retry of a transient failure: five tries in about three seconds.
const BACKOFF_MS: [u64; 4] = [200, 400, 800, 1600];

/// Whether `e` may pass if tried again: a dropped or refused connection, a 5xx.
pub fn transient(e: &Error) -> bool {
    match e {
        Error::Transport { .. } => true,
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
}
