//! Image references normalised as docker normalises them: `busybox` is
//! `docker.io/library/busybox:latest`, `host:5000/team/app:1.0` keeps its registry, and
//! `name@sha256:...` pins a manifest (the grammar of distribution's `reference` package).

use std::fmt;
use std::str::FromStr;

use crate::Error;
use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host, with a port when given (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// Repository path (`library/busybox`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`; a reference with neither tag nor digest gets `latest`.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let bad = |why: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: why.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad("cannot specify 64-byte hexadecimal strings"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(d).map_err(|e| bad(&e))?)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(bad(&format!("invalid tag {tag:?}")));
            }
        }
        let (domain, path) = split_domain(name);
        if path.to_ascii_lowercase() != path || path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(&format!("repository name ({path}) must be lowercase")));
        }
        if !valid_domain(&domain) {
            return Err(bad(&format!("invalid registry host {domain:?}")));
        }
        if path.split('/').any(|c| !valid_component(c)) {
            return Err(bad(&format!("invalid repository name {path:?}")));
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(bad("repository name must not be more than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`: the repository, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form of the repository alone: `busybox`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The short form docker shows: `busybox:latest`, `localhost:5000/app:1`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    /// The full form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse(s)
    }
}

fn parse_digest(d: &str) -> Result<Digest, String> {
    d.parse::<Digest>().map_err(|e| e.to_string())
}

/// docker's `splitDockerDomain`: the first component is a registry when it has a `.` or a
/// `:`, is `localhost`, or has upper-case letters.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !rest.contains('/') {
        rest = format!("{OFFICIAL_PREFIX}{rest}");
    }
    (domain, rest)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A host name or `[ipv6]`, with an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        if !after.is_empty() && !after.starts_with(':') {
            return false;
        }
        (None, after.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                })
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalised_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            full("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/a/b/c:2"), "localhost:5000/a/b/c:2");
        assert_eq!(
            full("registry.example.com/x"),
            "registry.example.com/x:latest"
        );
        assert_eq!(full("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(
            full("my_app-x.y__z"),
            "docker.io/library/my_app-x.y__z:latest"
        );
        let d = Digest::of(b"m");
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.familiar(), format!("busybox@{d}"));
        let r = Reference::parse(&format!("127.0.0.1:5000/app:1@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/app:1@{d}"));
    }

    #[test]
    fn familiar_form() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar();
        assert_eq!(f("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(f("docker.io/team/app"), "team/app:latest");
        assert_eq!(f("localhost:5000/app:1"), "localhost:5000/app:1");
    }

    #[test]
    fn bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            ":tag",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a:b:c",
            "busybox:-x",
            "busybox@sha256:abc",
            "host:port/app",
            "[::1]x/app",
            "a/b@md5:aaaa",
            &"a".repeat(260),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(e.contains("must be lowercase"), "{e}");
    }
}
