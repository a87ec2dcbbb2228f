//! ADD of an http(s) URL, as BuildKit does it: the file is fetched on every build (its
//! content, not its URL, is what the step's cache key holds), named after the URL's last
//! path segment, given mode 0600 and the server's Last-Modified time, never unpacked, and
//! checked against `--checksum=sha256:...` when given. The download itself is the
//! caller's ([`UrlSource`]: lb's is the registry client's HTTP client, with the system's
//! roots, the environment's proxies, the network timeout and its retries): the builder
//! makes no request of its own.

use std::path::{Path, PathBuf};

use lb_layerstore::{Digest, Digester};

/// Where ADD's URLs are downloaded from, wired in by the caller.
pub trait UrlSource: Sync {
    /// Downloads `url` into the file `to` (made or replaced); the server's
    /// `Last-Modified` header, when it sent one.
    fn download(&self, url: &str, to: &Path) -> Result<Option<String>, DownloadError>;
}

/// Why a download failed, as the caller's client says it.
pub type DownloadError = Box<dyn std::error::Error + Send + Sync>;

/// Why an ADD of a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "{url}: cannot tell a file name from the URL; end the destination without / to name it"
    )]
    NoFileName { url: String },
    #[error("ADD {url}: no way to download URLs in this build")]
    NoSource { url: String },
    /// The download's own error names the request (`GET URL: ...`).
    #[error("ADD: {source}")]
    Download {
        url: String,
        #[source]
        source: DownloadError,
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

/// Fetches `url` into `dir` (a step's scratch directory) through `source` and returns the
/// file.
pub fn fetch(
    url: &str,
    dir: &Path,
    checksum: Option<&str>,
    source: Option<&dyn UrlSource>,
) -> Result<PathBuf, FetchError> {
    let name = file_name(url)?;
    let want: Option<Digest> = checksum
        .map(|c| c.parse().map_err(|_| FetchError::BadChecksum(c.into())))
        .transpose()?;
    let source = source.ok_or_else(|| FetchError::NoSource { url: url.into() })?;
    let fetched = dir.join("fetched");
    std::fs::create_dir_all(&fetched).map_err(|source| FetchError::Io {
        path: fetched.clone(),
        source,
    })?;
    let path = fetched.join(&name);
    let modified = source
        .download(url, &path)
        .map_err(|source| FetchError::Download {
            url: url.into(),
            source,
        })?
        .as_deref()
        .and_then(http_date);
    let io = |source| FetchError::Io {
        path: path.clone(),
        source,
    };
    if let Some(want) = want {
        let mut hashing = Digester::new(std::fs::File::open(&path).map_err(io)?);
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io)?;
        let (got, _, _) = hashing.finish();
        if want != got {
            return Err(FetchError::Mismatch {
                url: url.into(),
                want,
                got,
            });
        }
    }
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
