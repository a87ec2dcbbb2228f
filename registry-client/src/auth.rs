//! Who we are to a registry: credentials from `lb login` (lb's own file, docker's format,
//! mode 0600) or from docker's `config.json` (`auths`, and `credHelpers`/`credsStore`
//! through `docker-credential-*` helpers on PATH), and the parsing of the
//! `WWW-Authenticate` challenges a registry answers with (Basic, or Bearer with realm,
//! service and scope for the token flow).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};

use crate::Error;

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The key a registry has in `auths`: docker keeps Docker Hub under its v1 index URL.
pub fn config_key(domain: &str) -> String {
    if domain == "docker.io" || domain == "index.docker.io" || domain == "registry-1.docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        domain.to_string()
    }
}

/// Where credentials are looked up and stored.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    /// lb's own file, written by `lb login` (`$LB_AUTH_FILE`, else
    /// `$XDG_CONFIG_HOME/lb/auth.json`, else `~/.config/lb/auth.json`).
    pub lb: PathBuf,
    /// docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker: PathBuf,
}

impl AuthFiles {
    pub fn from_env() -> AuthFiles {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        let lb = match std::env::var_os("LB_AUTH_FILE") {
            Some(f) => PathBuf::from(f),
            None => std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config"))
                .join("lb/auth.json"),
        };
        let docker = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".docker"))
            .join("config.json");
        AuthFiles { lb, docker }
    }

    /// The credentials for `domain`: lb's file first, then docker's (a credential helper
    /// for the registry, the global store, or inline `auths`). None: anonymous.
    pub fn lookup(&self, domain: &str) -> Result<Option<Credentials>, Error> {
        let key = config_key(domain);
        if let Some(c) = inline(&read_json(&self.lb)?, &key, domain)? {
            return Ok(Some(c));
        }
        let docker = read_json(&self.docker)?;
        let helper = docker["credHelpers"][&key]
            .as_str()
            .or_else(|| docker["credHelpers"][domain].as_str())
            .or_else(|| docker["credsStore"].as_str());
        if let Some(helper) = helper {
            if let Some(c) = from_helper(helper, &key)? {
                return Ok(Some(c));
            }
        }
        inline(&docker, &key, domain)
    }

    /// Stores `creds` for `domain` in lb's file (created with mode 0600, replaced
    /// atomically).
    pub fn store(&self, domain: &str, creds: &Credentials) -> Result<(), Error> {
        let mut config = read_json(&self.lb)?;
        if !config.is_object() {
            config = json!({});
        }
        let raw = format!("{}:{}", creds.username, creds.password);
        config["auths"][config_key(domain)] =
            json!({ "auth": base64::engine::general_purpose::STANDARD.encode(raw) });
        write_private(&self.lb, &config)
    }

    /// Removes `domain` from lb's file; whether it was there.
    pub fn remove(&self, domain: &str) -> Result<bool, Error> {
        let mut config = read_json(&self.lb)?;
        let removed = config["auths"]
            .as_object_mut()
            .is_some_and(|a| a.remove(&config_key(domain)).is_some());
        if removed {
            write_private(&self.lb, &config)?;
        }
        Ok(removed)
    }
}

fn read_json(path: &Path) -> Result<Value, Error> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(Error::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn write_private(path: &Path, value: &Value) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| Error::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    serde_json::to_writer_pretty(&mut tmp, value).map_err(|e| err(e.into()))?;
    tmp.write_all(b"\n").map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// `auths[key].auth` (base64 of `user:password`), or `username`/`password` fields.
fn inline(config: &Value, key: &str, domain: &str) -> Result<Option<Credentials>, Error> {
    let entry = config["auths"]
        .get(key)
        .or_else(|| config["auths"].get(domain))
        .or_else(|| config["auths"].get(format!("https://{domain}")));
    let Some(entry) = entry else { return Ok(None) };
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::Auth(format!(
                    "the stored credentials for {domain} are not base64"
                ))
            })?;
        let (u, p) = raw.split_once(':').ok_or_else(|| {
            Error::Auth(format!("the stored credentials for {domain} have no ':'"))
        })?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })),
        _ => Ok(None),
    }
}

/// `docker-credential-HELPER get` with the server URL on stdin: `{Username, Secret}`.
fn from_helper(helper: &str, key: &str) -> Result<Option<Credentials>, Error> {
    let program = format!("docker-credential-{helper}");
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return Err(Error::Auth(format!("{program}: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(key.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Auth(format!("{program}: {e}")))?;
    if !out.status.success() {
        // "credentials not found in native keychain": anonymous, as docker goes on.
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Auth(format!("{program} get: {e}")))?;
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(Some(Credentials {
            username: u.to_string(),
            password: s.to_string(),
        })),
        _ => Ok(None),
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { params: BTreeMap<String, String> },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            params: auth_params(rest),
        }),
        _ => None,
    }
}

/// `k="v", k2=v2` pairs (quoted values may hold commas).
fn auth_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        let Some(Challenge::Bearer { params }) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        ) else {
            panic!()
        };
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn login_is_stored_private_and_read_back_and_docker_config_is_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = AuthFiles {
            lb: dir.path().join("lb/auth.json"),
            docker: dir.path().join("docker/config.json"),
        };
        assert_eq!(files.lookup("localhost:5000").unwrap(), None);
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        files.store("localhost:5000", &c).unwrap();
        let mode = std::fs::metadata(&files.lb).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(files.lookup("localhost:5000").unwrap(), Some(c));
        assert!(files.remove("localhost:5000").unwrap());
        assert_eq!(files.lookup("localhost:5000").unwrap(), None);
        // docker's file, Docker Hub under its v1 key.
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::write(
            &files.docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"ZG9jOmh1Yg=="}}}"#,
        )
        .unwrap();
        assert_eq!(
            files.lookup("docker.io").unwrap(),
            Some(Credentials {
                username: "doc".into(),
                password: "hub".into()
            })
        );
    }
}
