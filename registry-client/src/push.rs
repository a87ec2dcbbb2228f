//! `lb push`: each blob the registry lacks (asked with HEAD first) is mounted from another
//! repository of the same registry when lb knows it is there, else uploaded (in one PUT,
//! or in PATCH chunks when large); the manifest goes last, so the registry never names
//! an image whose blobs it lacks. Layers lb built are kept uncompressed and compressed
//! once for pushing (gzip by default, zstd on request), the result remembered
//! (`Store::compressed_layer`); an image whose layers are all compressed already (a
//! pulled one) is pushed with its manifest byte for byte, so its digest is kept.

use std::io::{Read, Seek, SeekFrom};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use lb_layerstore::{Digest, Image, LayerCompression, Reference, Store};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};

use crate::Error;
use crate::client::{Registry, expect_ok};
use crate::pull::MEDIA_OCI_MANIFEST;

/// How to push.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    /// How local uncompressed layers are compressed: `Gzip(level)` or `Zstd(level)`.
    pub compression: LayerCompression,
    /// Blobs larger than this go up in chunks of this size (PATCH), smaller in one PUT.
    pub chunk_size: u64,
    /// Blobs uploaded at once (docker's default `max-concurrent-uploads`: 5).
    pub parallel: usize,
}

impl Default for PushOptions {
    fn default() -> PushOptions {
        PushOptions {
            compression: LayerCompression::Gzip(6),
            chunk_size: 32 << 20,
            parallel: 5,
        }
    }
}

/// What a push tells as it goes.
pub trait PushProgress: Sync {
    fn line(&self, text: &str);
}

/// Which repositories of a registry are known to hold a blob (from pulls and pushes):
/// `registries/<domain>/<blob hex>`, a repository per line. A hint for cross-repository
/// mounts, never trusted for more.
fn known_dir(store: &Store, domain: &str) -> std::path::PathBuf {
    store.layout().registry_hints(domain)
}

/// Records that `path` on `domain` holds `digest`.
pub fn remember_blob(store: &Store, domain: &str, path: &str, digest: &Digest) {
    let dir = known_dir(store, domain);
    let file = dir.join(digest.hex());
    let mut repos = std::fs::read_to_string(&file).unwrap_or_default();
    if repos.lines().any(|l| l == path) {
        return;
    }
    repos.push_str(path);
    repos.push('\n');
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut tmp, repos.as_bytes())?;
        tmp.persist(&file).map_err(|e| e.error)?;
        Ok(())
    };
    let _ = write();
}

fn known_elsewhere(store: &Store, domain: &str, path: &str, digest: &Digest) -> Option<String> {
    std::fs::read_to_string(known_dir(store, domain).join(digest.hex()))
        .ok()?
        .lines()
        .find(|l| *l != path && !l.is_empty())
        .map(str::to_string)
}

/// A blob to send from the store's content: its digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
}

/// A layer as it goes up: its blob and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedLayer {
    pub blob: Blob,
    pub media_type: String,
}

/// `image`'s layers as they go to a registry: the uncompressed ones lb built compressed
/// with `compression` (once, remembered: `Store::compressed_layer`), the others as they
/// are; and whether any was compressed here (the manifest then is a new one).
pub fn layers_to_push(
    store: &Store,
    image: &Image,
    compression: LayerCompression,
) -> Result<(Vec<PushedLayer>, bool), Error> {
    let mut layers = Vec::new();
    let mut recompressed = false;
    for l in image.manifest.layers() {
        let digest = Digest::from_str(l.digest().as_ref())?;
        let media = l.media_type().to_string();
        if media == lb_layerstore::MEDIA_LAYER_TAR {
            let c = store.compressed_layer(&digest, compression)?;
            let media = layer_media_type(compression);
            layers.push(PushedLayer {
                blob: Blob {
                    digest: c.digest,
                    size: c.size,
                },
                media_type: media.to_string(),
            });
            recompressed = true;
        } else {
            layers.push(PushedLayer {
                blob: Blob {
                    digest,
                    size: l.size(),
                },
                media_type: media,
            });
        }
    }
    Ok((layers, recompressed))
}

/// What a push of blobs did: how many the registry had (or mounted from another
/// repository) and how many went up, with their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushReport {
    pub reused: usize,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
}

/// What became of one blob.
enum Sent {
    Reused,
    Uploaded(u64),
}

/// The media type of a layer blob compressed with `compression`.
pub fn layer_media_type(compression: LayerCompression) -> &'static str {
    match compression {
        LayerCompression::Zstd(_) => "application/vnd.oci.image.layer.v1.tar+zstd",
        LayerCompression::Gzip(_) => "application/vnd.oci.image.layer.v1.tar+gzip",
        LayerCompression::None => lb_layerstore::MEDIA_LAYER_TAR,
    }
}

/// Sends each of `blobs` (in the store's content) that the repository `path` lacks,
/// `opts.parallel` at once, largest first: HEAD, else a mount from a repository lb knows
/// holds it, else an upload.
pub fn push_blobs(
    store: &Store,
    reg: &Registry,
    path: &str,
    blobs: &[Blob],
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<PushReport, Error> {
    let mut blobs = blobs.to_vec();
    blobs.sort_by_key(|b| b.digest);
    blobs.dedup();
    // Largest first: the last uploads to start are the shortest.
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let report = Mutex::new(PushReport::default());
    std::thread::scope(|s| {
        for _ in 0..opts.parallel.clamp(1, 16).min(blobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= blobs.len() || failed.lock().expect("failed").is_some() {
                        return;
                    }
                    let up = || upload_blob(store, reg, path, &blobs[i], opts, progress);
                    match crate::client::retrying(up) {
                        Ok(sent) => {
                            let mut r = report.lock().expect("report");
                            match sent {
                                Sent::Reused => r.reused += 1,
                                Sent::Uploaded(bytes) => {
                                    r.uploaded += 1;
                                    r.uploaded_bytes += bytes;
                                }
                            }
                        }
                        Err(e) => {
                            failed.lock().expect("failed").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("failed") {
        Some(e) => Err(e),
        None => Ok(report.into_inner().expect("report")),
    }
}

/// `PUT /v2/PATH/manifests/REFERENCE` of the manifest `bytes` (tried again after
/// transient failures): the last request of a push, once every blob it names is there.
pub fn put_manifest(
    reg: &Registry,
    path: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
) -> Result<(), Error> {
    let url = reg.url(&format!("/v2/{path}/manifests/{reference}"));
    let scope = format!("repository:{path}:pull,push");
    let body = bytes::Bytes::copy_from_slice(bytes);
    crate::client::retrying(|| {
        let resp = reg.send(&scope, &|c| {
            c.put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(body.clone())
        })?;
        expect_ok(resp, &url)
    })?;
    Ok(())
}

/// Pushes `image` to `target` (its registry is `reg`); the pushed manifest's digest.
pub fn push(
    store: &Store,
    reg: &Registry,
    image: &Image,
    target: &Reference,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<(Digest, u64), Error> {
    let _writing = store.writing()?;
    let path = target.path.as_str();
    let (layers, recompressed) = layers_to_push(store, image, opts.compression)?;
    let mut blobs: Vec<Blob> = layers.iter().map(|l| l.blob).collect();
    blobs.push(Blob {
        digest: image.config_digest,
        size: image.manifest.config().size(),
    });
    push_blobs(store, reg, path, &blobs, opts, progress)?;

    // The manifest last: the stored one as it is, or one naming the compressed layers.
    let (bytes, media_type) = if recompressed {
        let config = image.manifest.config();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {
                "mediaType": config.media_type().to_string(),
                "digest": config.digest().to_string(),
                "size": config.size(),
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type,
                "digest": l.blob.digest.to_string(),
                "size": l.blob.size,
            })).collect::<Vec<Value>>(),
        });
        (
            serde_json::to_vec(&manifest).expect("manifest serialises"),
            MEDIA_OCI_MANIFEST.to_string(),
        )
    } else {
        let bytes = store.content().read_verified(&image.manifest_digest)?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let media = v["mediaType"]
            .as_str()
            .unwrap_or(MEDIA_OCI_MANIFEST)
            .to_string();
        (bytes, media)
    };
    let reference = target
        .tag
        .clone()
        .unwrap_or_else(|| Digest::of(&bytes).to_string());
    put_manifest(reg, path, &reference, &bytes, &media_type)?;
    Ok((Digest::of(&bytes), bytes.len() as u64))
}

/// A blob the registry may lack: HEAD, then a mount, then an upload.
fn upload_blob(
    store: &Store,
    reg: &Registry,
    path: &str,
    blob: &Blob,
    opts: &PushOptions,
    progress: &dyn PushProgress,
) -> Result<Sent, Error> {
    let scope = format!("repository:{path}:pull,push");
    let head_url = reg.url(&format!("/v2/{path}/blobs/{}", blob.digest));
    let head = reg.send(&scope, &|c| c.head(&head_url))?;
    if head.status().is_success() {
        progress.line(&format!(
            "{}: Layer already exists",
            crate::client::short_id(&blob.digest)
        ));
        remember_blob(store, &reg.domain, path, &blob.digest);
        return Ok(Sent::Reused);
    }
    let mut location = None;
    if let Some(from) = known_elsewhere(store, &reg.domain, path, &blob.digest) {
        let url = reg.url(&format!(
            "/v2/{path}/blobs/uploads/?mount={}&from={from}",
            blob.digest
        ));
        let scopes = format!("{scope} repository:{from}:pull");
        let resp = reg.send(&scopes, &|c| c.post(&url).header(CONTENT_LENGTH, "0"))?;
        if resp.status() == StatusCode::CREATED {
            progress.line(&format!(
                "{}: Mounted from {from}",
                crate::client::short_id(&blob.digest)
            ));
            remember_blob(store, &reg.domain, path, &blob.digest);
            return Ok(Sent::Reused);
        }
        if resp.status() == StatusCode::ACCEPTED {
            location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
    }
    let mut location = match location {
        Some(l) => l,
        None => {
            let url = reg.url(&format!("/v2/{path}/blobs/uploads/"));
            let resp = reg.send(&scope, &|c| c.post(&url).header(CONTENT_LENGTH, "0"))?;
            let resp = expect_ok(resp, &url)?;
            upload_location(&resp, &url)?
        }
    };
    // Each request's body is read into memory first (at most `chunk_size` bytes): reqwest's
    // blocking client would otherwise stream a file in 8 KiB pieces through a channel,
    // which measured slower than the registry itself.
    let file = store.content().path(&blob.digest);
    let read_range = |start: u64, len: u64| -> Result<bytes::Bytes, Error> {
        let io_err = |source: std::io::Error| Error::Io {
            path: file.clone(),
            source,
        };
        let mut f = std::fs::File::open(&file).map_err(io_err)?;
        f.seek(SeekFrom::Start(start)).map_err(io_err)?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf).map_err(io_err)?;
        if buf.len() as u64 != len {
            return Err(Error::Io {
                path: file.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} bytes where {len} were expected", buf.len()),
                ),
            });
        }
        Ok(bytes::Bytes::from(buf))
    };
    if blob.size > opts.chunk_size {
        let mut start = 0u64;
        while start < blob.size {
            let len = opts.chunk_size.min(blob.size - start);
            let chunk = read_range(start, len)?;
            let url = reg.url(&location);
            let resp = reg.send(&scope, &|c| {
                c.patch(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{start}-{}", start + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .body(chunk.clone())
            })?;
            let resp = expect_ok(resp, &url)?;
            location = upload_location(&resp, &url)?;
            start += len;
        }
        let url = with_digest(&reg.url(&location), &blob.digest);
        let resp = reg.send(&scope, &|c| c.put(&url).header(CONTENT_LENGTH, "0"))?;
        expect_ok(resp, &url)?;
    } else {
        let body = read_range(0, blob.size)?;
        let url = with_digest(&reg.url(&location), &blob.digest);
        let resp = reg.send(&scope, &|c| {
            c.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, blob.size)
                .body(body.clone())
        })?;
        expect_ok(resp, &url)?;
    }
    remember_blob(store, &reg.domain, path, &blob.digest);
    progress.line(&format!(
        "{}: Pushed",
        crate::client::short_id(&blob.digest)
    ));
    Ok(Sent::Uploaded(blob.size))
}

fn upload_location(resp: &reqwest::blocking::Response, url: &str) -> Result<String, Error> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
            message: "no Location for the upload".into(),
        })
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
