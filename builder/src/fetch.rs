//! ADD of an http(s) URL, as BuildKit does it: the file is fetched on every build (its
//! content, not its URL, is what the step's cache key holds), named after the URL's last
//! path segment, given mode 0600 and the server's Last-Modified time, never unpacked, and
//! checked against `--checksum=sha256:...` when given. The HTTP client trusts the system's
//! roots (`/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`) and honours
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`, as users behind corporate proxies need.

use std::io::Read;
use std::path::{Path, PathBuf};

use lb_layerstore::{Digest, Digester};

/// Whether an ADD source is a URL to fetch.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The file name a URL's content gets: its last path segment.
fn file_name(url: &str) -> Result<String, String> {
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
            _ => Err(format!(
                "{url}: cannot tell a file name from the URL; end the destination without / to name it"
            )),
        },
        None => Err(format!(
            "{url}: cannot tell a file name from the URL; end the destination without / to name it"
        )),
    }
}

/// Fetches `url` into `dir` (a step's scratch directory) and returns the file.
pub fn fetch(url: &str, dir: &Path, checksum: Option<&str>) -> Result<PathBuf, String> {
    let name = file_name(url)?;
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("lb/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("ADD {url}: {e}"))?;
    let mut response = client
        .get(url)
        .send()
        .map_err(|e| format!("ADD {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "ADD {url}: the server answered {}",
            response.status()
        ));
    }
    let modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date);
    let fetched = dir.join("fetched");
    std::fs::create_dir_all(&fetched).map_err(|e| format!("{}: {e}", fetched.display()))?;
    let path = fetched.join(&name);
    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hashed = Digester::new(file);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = response
            .read(&mut buf)
            .map_err(|e| format!("ADD {url}: {e}"))?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut hashed, &buf[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let (digest, _, _) = hashed.finish();
    if let Some(want) = checksum {
        let want: Digest = want
            .parse()
            .map_err(|_| format!("--checksum={want}: want sha256:<64 hex digits>"))?;
        if want != digest {
            return Err(format!(
                "ADD {url}: digest mismatch: expected {want}, got {digest}"
            ));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let t = nix::sys::time::TimeSpec::new(modified.unwrap_or(0), 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| format!("set times of {}: {e}", path.display()))?;
    Ok(path)
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
}
