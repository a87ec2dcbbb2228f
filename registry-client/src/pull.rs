//! `lb pull`: manifest (an index or manifest list resolved to this platform's image),
//! config, then the layers, several at once, each streamed once: the bytes from the
//! network go into the content store (checked against the descriptor's digest and size)
//! and, decompressed on the way, straight into the layer's snapshot (checked against the
//! config's diffID). Layers already stored are skipped. Nothing is named until all of it
//! is in; a failed or killed pull leaves only unnamed blobs and temporary directories
//! that `lb prune` removes, and a re-run fetches what is missing.
//!
//! On a vfs store, whose trees are whole file systems each made on the one below, the
//! layers are only stored as they arrive (in any order); the image's trees are then made
//! from the blobs, each layer checked against its diffID there (`Store::image_chain`),
//! before the image is named. No overlay snapshot is made.

use std::io::{self, Read};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use lb_layerstore::{
    Compression, Digest, Digester, Image, Reference, Snapshot, StorageDriver, Store,
};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use crate::Error;
use crate::client::{BACKOFF_MS, Body, Registry, expect_ok, from_io, retrying};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPTED: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";
/// Larger manifests and configs are refused (distribution's own limit is 4 MiB).
const MAX_DOCUMENT: u64 = 4 << 20;

/// What to pull for.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `os/arch[/variant]`; default this machine's.
    pub platform: Option<String>,
    /// Layers fetched at once.
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: None,
            parallel: 4,
        }
    }
}

/// What a pull tells as it goes: docker's lines (`ID: Pull complete`), and the bytes of
/// each layer as they arrive (for progress bars; ignored by default).
pub trait PullProgress: Sync {
    fn line(&self, text: &str);
    /// `done` of the `total` bytes of the layer `id` (a short digest) are in.
    fn bytes(&self, _id: &str, _done: u64, _total: u64) {}
}

/// A manifest as fetched: its bytes (verified against `digest`), media type, digest.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// `GET /v2/NAME/manifests/REF`, checked against the digest when REF is one (tried again
/// after transient failures).
pub fn get_manifest(reg: &Registry, path: &str, reference: &str) -> Result<Fetched, Error> {
    crate::client::retrying(|| get_manifest_once(reg, path, reference))
}

fn get_manifest_once(reg: &Registry, path: &str, reference: &str) -> Result<Fetched, Error> {
    let url = reg.url(&format!("/v2/{path}/manifests/{reference}"));
    let scope = format!("repository:{path}:pull");
    let resp = reg.send(&scope, &|c| c.get(&url).header(ACCEPT, ACCEPTED))?;
    let resp = expect_ok(resp, &url)?;
    let header_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
    let bytes = read_limited(&mut reg.body(resp), MAX_DOCUMENT, &url)?;
    let digest = Digest::of(&bytes);
    if let Ok(want) = Digest::from_str(reference) {
        if want != digest {
            return Err(Error::Verify(format!(
                "{url}: the manifest's digest is {digest}, not {want}"
            )));
        }
    }
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Verify(format!("{url}: the manifest is not JSON: {e}")))?;
    let media_type = body["mediaType"]
        .as_str()
        .map(str::to_string)
        .or(header_type)
        .unwrap_or_else(|| {
            if body.get("manifests").is_some() {
                MEDIA_OCI_INDEX.to_string()
            } else {
                MEDIA_OCI_MANIFEST.to_string()
            }
        });
    if body["schemaVersion"].as_i64() != Some(2) {
        return Err(Error::Unsupported(format!(
            "{url}: manifest schema {} (only schema 2 is supported)",
            body["schemaVersion"]
        )));
    }
    check_digests(&body, &media_type)?;
    Ok(Fetched {
        bytes,
        media_type,
        digest,
    })
}

/// Every digest a manifest or index names (`config.digest`, `layers[i].digest`,
/// `manifests[i].digest`) is a sha256 digest, or the document is refused naming the field
/// and its value: such a digest is put in blob URLs and store paths, and an index entry's
/// is what the manifest it names is checked against.
fn check_digests(body: &Value, media_type: &str) -> Result<(), Error> {
    let index = media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST;
    let document = if index { "index" } else { "manifest" };
    let check = |field: String, value: Option<&Value>| match value
        .and_then(Value::as_str)
        .map(Digest::from_str)
    {
        Some(Ok(_)) => Ok(()),
        _ => Err(Error::Field {
            document,
            field,
            found: value.map(Value::to_string),
            expected: "a sha256 digest",
        }),
    };
    let list = |name: &str| -> Vec<Value> { body[name].as_array().cloned().unwrap_or_default() };
    if index {
        for (i, m) in list("manifests").iter().enumerate() {
            check(format!("manifests[{i}].digest"), m.get("digest"))?;
        }
    } else {
        check("config.digest".into(), body["config"].get("digest"))?;
        for (i, l) in list("layers").iter().enumerate() {
            check(format!("layers[{i}].digest"), l.get("digest"))?;
        }
    }
    Ok(())
}

/// At most `limit` bytes of `body`; a failed read is the registry error it carries
/// (a stall names the request), else a transport failure of `url`.
fn read_limited(body: &mut impl Read, limit: u64, url: &str) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    body.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| from_io(e, url))?;
    if bytes.len() as u64 > limit {
        return Err(Error::Verify(format!("{url}: larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// The (os, architecture, variant) wanted.
fn wanted_platform(p: Option<&str>) -> Result<(String, String, Option<String>), Error> {
    match p {
        None => {
            let (os, arch) = lb_layerstore::host_platform();
            Ok((os.into(), arch.into(), None))
        }
        Some(p) => {
            let parts: Vec<&str> = p.split('/').collect();
            match parts[..] {
                [os, arch] => Ok((os.into(), arch.into(), None)),
                [os, arch, v] => Ok((os.into(), arch.into(), Some(v.into()))),
                _ => Err(Error::Unsupported(format!(
                    "--platform {p}: want os/arch[/variant]"
                ))),
            }
        }
    }
}

/// The image manifest for the platform: `fetched` itself, or the index entry that
/// matches (fetched by digest).
fn resolve_platform(
    reg: &Registry,
    path: &str,
    fetched: Fetched,
    platform: Option<&str>,
) -> Result<Fetched, Error> {
    if fetched.media_type != MEDIA_OCI_INDEX && fetched.media_type != MEDIA_DOCKER_LIST {
        return Ok(fetched);
    }
    let (os, arch, variant) = wanted_platform(platform)?;
    let index: Value = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| Error::Verify(format!("the index: {e}")))?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let matches = |e: &Value| {
        let p = &e["platform"];
        p["os"] == os.as_str()
            && p["architecture"] == arch.as_str()
            && variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    };
    let chosen = entries.iter().find(|e| matches(e)).ok_or_else(|| {
        Error::NotFound(format!(
            "no matching manifest for {os}/{arch}{} in the manifest list entries",
            variant
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default()
        ))
    })?;
    let digest = chosen["digest"]
        .as_str()
        .ok_or_else(|| Error::Verify("an index entry without digest".into()))?;
    get_manifest(reg, path, digest)
}

/// A blob's bytes from the registry (`GET /v2/NAME/blobs/DIGEST`), read through
/// connections that drop or stall: the reader connects again (backing off, five tries per
/// failure) and goes on where it was, with a `Range` request when the registry serves
/// ranges, else skipping what it had. Whoever reads it never sees the interruption; a
/// download that fails five times in a row at the same byte ends, and the error is kept
/// typed in `failure` (the `io::Error` the reader returns goes through the store's unpacking,
/// which wraps it).
struct BlobReader<'a> {
    reg: &'a Registry,
    url: String,
    scope: String,
    resp: Option<Body>,
    offset: u64,
    /// Failures in a row at `failed_at` (bytes of the blob read when they happened).
    failures: usize,
    failed_at: u64,
    /// Why the download ended, once it has.
    failure: Option<Error>,
}

impl<'a> BlobReader<'a> {
    fn open(reg: &'a Registry, path: &str, digest: &str) -> Result<BlobReader<'a>, Error> {
        let mut r = BlobReader {
            reg,
            url: reg.url(&format!("/v2/{path}/blobs/{digest}")),
            scope: format!("repository:{path}:pull"),
            resp: None,
            offset: 0,
            failures: 0,
            failed_at: 0,
            failure: None,
        };
        r.resp = Some(retrying(|| r.connect())?);
        Ok(r)
    }

    /// All of the blob, up to `limit` bytes (a config).
    fn read_all(mut self, limit: u64) -> Result<Vec<u8>, Error> {
        let url = self.url.clone();
        let read = read_limited(&mut self, limit, &url);
        match self.failure.take() {
            Some(e) => Err(e),
            None => read,
        }
    }

    /// Why the download ended, when it did (else `other`).
    fn failure_or(&mut self, other: Error) -> Error {
        self.failure.take().unwrap_or(other)
    }

    /// A response positioned at `offset`.
    fn connect(&self) -> Result<Body, Error> {
        let offset = self.offset;
        let resp = self.reg.send(&self.scope, &|c| {
            let req = c.get(&self.url);
            if offset > 0 {
                req.header(reqwest::header::RANGE, format!("bytes={offset}-"))
            } else {
                req
            }
        })?;
        let ranged = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let mut body = self.reg.body(expect_ok(resp, &self.url)?);
        if ranged {
            // A stall in it counts the blob's bytes, not this response's.
            body.seen = offset;
        } else if offset > 0 {
            // No ranges here: read past what was had already.
            let skipped = io::copy(&mut (&mut body).take(offset), &mut io::sink())
                .map_err(|e| body.error(e))?;
            if skipped < offset {
                return Err(Error::Transport {
                    url: self.url.clone(),
                    reason: format!("the blob ended after {skipped} bytes, {offset} were had"),
                });
            }
        }
        Ok(body)
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failure {
            return Err(io::Error::other(e.to_string()));
        }
        loop {
            let failed = match self.resp.as_mut() {
                Some(body) => match body.read(buf) {
                    Ok(n) => {
                        self.offset += n as u64;
                        return Ok(n);
                    }
                    Err(e) => from_io(e, &self.url),
                },
                None => Error::Transport {
                    url: self.url.clone(),
                    reason: "not connected".into(),
                },
            };
            self.resp = None;
            // Stalled or dropped again at the same byte: counted, so a registry that always
            // stops there ends the pull instead of holding it forever.
            if self.failures > 0 && self.failed_at == self.offset {
                self.failures += 1;
            } else {
                self.failures = 1;
                self.failed_at = self.offset;
            }
            let ended = if !crate::client::transient(&failed) {
                Some(failed)
            } else if self.failures > BACKOFF_MS.len() {
                Some(Error::GaveUp {
                    tries: self.failures,
                    last: Box::new(failed),
                })
            } else {
                std::thread::sleep(std::time::Duration::from_millis(
                    BACKOFF_MS[self.failures - 1],
                ));
                match retrying(|| self.connect()) {
                    Ok(again) => {
                        self.resp = Some(again);
                        None
                    }
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = ended {
                let text = e.to_string();
                self.failure = Some(e);
                return Err(io::Error::other(text));
            }
        }
    }
}

/// Reads through `inner` into the blob being stored, counting and hashing (the one hash
/// of these bytes: the blob writer takes the digest from here), and fails the read that
/// goes past the descriptor's size or ends with the wrong digest: the unpacking that reads
/// through it then fails before its snapshot is committed.
struct Checked<'a, R> {
    inner: R,
    /// Until the end of the stream: the bytes go to the blob through a digester.
    out: Option<Digester<&'a mut lb_layerstore::CallerHashedWriter>>,
    seen: u64,
    size: u64,
    digest: Digest,
    progress: &'a dyn PullProgress,
}

impl<R: Read> Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(out) = self.out.as_mut() else {
            return Ok(0); // checked at the end already
        };
        let n = self.inner.read(buf)?;
        if n == 0 {
            let (got, _, _) = self.out.take().expect("digester").finish();
            if self.seen != self.size {
                return Err(io::Error::other(format!(
                    "blob {}: {} bytes, the descriptor says {}",
                    self.digest, self.seen, self.size
                )));
            }
            if got != self.digest {
                return Err(io::Error::other(format!(
                    "blob {}: the bytes hash to {got}",
                    self.digest
                )));
            }
            return Ok(0);
        }
        let before = self.seen;
        self.seen += n as u64;
        if before >> 19 != self.seen >> 19 || self.seen == self.size {
            self.progress
                .bytes(&crate::client::short_id(&self.digest), self.seen, self.size);
        }
        if self.seen > self.size {
            return Err(io::Error::other(format!(
                "blob {}: more bytes than the descriptor's {}",
                self.digest, self.size
            )));
        }
        io::Write::write_all(out, &buf[..n])?;
        Ok(n)
    }
}

/// The compression a layer media type says (None: not a layer type lb can unpack).
fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// What `GET /v2/NAME/manifests/...` asks for to get `reference`: its digest, else its
/// tag, else `latest`.
pub fn manifest_reference(reference: &Reference) -> String {
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => lb_layerstore::DEFAULT_TAG.to_string(),
    }
}

/// Pulls `reference` into `store` and names it; the image.
pub fn pull(
    store: &Store,
    reg: &Registry,
    reference: &Reference,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Image, Error> {
    let path = &reference.path;
    let tag_or_digest = manifest_reference(reference);
    let _writing = store.writing()?;
    let top = get_manifest(reg, path, &tag_or_digest)?;
    let top_digest = top.digest;
    let fetched = resolve_platform(reg, path, top, opts.platform.as_deref())?;
    if fetched.media_type != MEDIA_OCI_MANIFEST && fetched.media_type != MEDIA_DOCKER_MANIFEST {
        return Err(Error::Unsupported(format!(
            "{reference}: manifest media type {}",
            fetched.media_type
        )));
    }
    // serde_json's own error names the line and column (oci-spec's says "serde failed").
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| Error::Verify(format!("{reference}: the manifest: {e}")))?;

    // The config, checked against its descriptor, read for the diffIDs.
    let cdesc = manifest.config();
    let config_digest = Digest::from_str(cdesc.digest().as_ref())?;
    let config_bytes = if store.content().contains(&config_digest) {
        store.content().read_verified(&config_digest)?
    } else {
        fetch_document(reg, path, &config_digest, cdesc.size())
            .map_err(|e| Error::Verify(format!("{reference}: the config blob: {e}")))?
    };
    let config = ImageConfiguration::from_reader(&config_bytes[..])
        .map_err(|e| Error::Verify(format!("{reference}: the image config: {e}")))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::from_str(d))
        .collect::<Result<Vec<_>, _>>()?;
    let layers = manifest.layers();
    if layers.len() != diff_ids.len() {
        return Err(Error::Verify(format!(
            "{reference}: {} layers but {} diff_ids in the config",
            layers.len(),
            diff_ids.len()
        )));
    }
    fetch_layers(store, reg, path, layers, &diff_ids, opts.parallel, progress)?;

    let config_info = store.content().put(&config_bytes)?;
    debug_assert_eq!(config_info.digest, config_digest);
    let stored = store.content().put(&fetched.bytes)?;
    let desc = Descriptor::new(
        MediaType::from(fetched.media_type.as_str()),
        stored.size,
        oci_spec::image::Digest::from_str(&stored.digest.to_string())
            .map_err(|e| Error::Verify(e.to_string()))?,
    );
    let image = store.image_by_manifest(stored.digest)?;
    if !unpacks_as_it_fetches(store) {
        store.image_chain(&image)?;
    }
    store.set_name(reference, &desc)?;
    // Where these blobs are, for cross-repository mounts when pushing them elsewhere.
    for l in layers {
        if let Ok(d) = Digest::from_str(l.digest().as_ref()) {
            crate::push::remember_blob(store, &reg.domain, path, &d);
        }
    }
    crate::push::remember_blob(store, &reg.domain, path, &config_digest);
    progress.line(&format!("Digest: {top_digest}"));
    Ok(image)
}

/// A small blob (a config: at most 4 MiB) of the repository `path`, checked against its
/// digest and size.
pub fn fetch_document(
    reg: &Registry,
    path: &str,
    digest: &Digest,
    size: u64,
) -> Result<Vec<u8>, Error> {
    if size > MAX_DOCUMENT {
        return Err(Error::Verify(format!(
            "blob {digest}: {size} bytes, more than a document's {MAX_DOCUMENT}"
        )));
    }
    let bytes = BlobReader::open(reg, path, &digest.to_string())?.read_all(MAX_DOCUMENT)?;
    if Digest::of(&bytes) != *digest || bytes.len() as u64 != size {
        return Err(Error::Verify(format!(
            "blob {digest}: the bytes served do not match its descriptor ({size} bytes)"
        )));
    }
    Ok(bytes)
}

/// The blob `digest` of the repository `path` into the store's content, checked against
/// its digest and size; nothing is fetched when the store has it.
pub fn fetch_blob(
    store: &Store,
    reg: &Registry,
    path: &str,
    digest: &Digest,
    size: u64,
) -> Result<(), Error> {
    if store.content().info(digest).is_ok_and(|i| i.size == size) {
        return Ok(());
    }
    let mut reader = BlobReader::open(reg, path, &digest.to_string())?;
    let stored = store
        .content()
        .ingest(&mut reader, Some(digest), Some(size));
    match reader.failure.take() {
        Some(e) => Err(e),
        None => Ok(stored.map(|_| ())?),
    }
}

/// The layers `layers` of the repository `path` (an image's, bottom first, whose config
/// says `diff_ids`) into the store, `parallel` at once: each blob checked against its
/// digest and size, its snapshot (on overlay) against its diffID, as it streams in;
/// layers stored already are skipped.
pub fn fetch_layers(
    store: &Store,
    reg: &Registry,
    path: &str,
    layers: &[Descriptor],
    diff_ids: &[Digest],
    parallel: usize,
    progress: &dyn PullProgress,
) -> Result<(), Error> {
    if layers.len() != diff_ids.len() {
        return Err(Error::Verify(format!(
            "{} layers but {} diff_ids in the config",
            layers.len(),
            diff_ids.len()
        )));
    }
    let chains = lb_layerstore::chain_ids(diff_ids);
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, 16).min(layers.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= layers.len() || failed.lock().expect("failed").is_some() {
                        return;
                    }
                    let r = fetch_layer(
                        store,
                        reg,
                        path,
                        &layers[i],
                        &diff_ids[i],
                        &chains[i],
                        progress,
                    );
                    if let Err(e) = r {
                        failed.lock().expect("failed").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("failed") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether layers are unpacked into their snapshots as they arrive (overlay); a vfs store
/// makes its trees once all layers are in.
fn unpacks_as_it_fetches(store: &Store) -> bool {
    store.storage_driver() == StorageDriver::Overlay
}

/// One layer: nothing when its blob and snapshot are stored; its snapshot from the blob
/// when only the blob is; else fetched, stored and unpacked in one pass. On vfs the
/// snapshot is the layer's tree, made after the fetch: here the blob alone.
fn fetch_layer(
    store: &Store,
    reg: &Registry,
    path: &str,
    desc: &Descriptor,
    diff_id: &Digest,
    chain: &Digest,
    progress: &dyn PullProgress,
) -> Result<(), Error> {
    let digest = Digest::from_str(desc.digest().as_ref())?;
    let have_blob = store
        .content()
        .info(&digest)
        .is_ok_and(|i| i.size == desc.size());
    let unpack = unpacks_as_it_fetches(store);
    let have_snapshot = store.snapshotter().exists(&Snapshot::Committed(*chain));
    if have_blob && have_snapshot {
        progress.line(&format!(
            "{}: Already exists",
            crate::client::short_id(&digest)
        ));
        return Ok(());
    }
    if have_blob {
        if unpack {
            store.unpack_snapshot(store.content().open_blob(&digest)?, diff_id, chain)?;
        }
        progress.line(&format!(
            "{}: Pull complete",
            crate::client::short_id(&digest)
        ));
        return Ok(());
    }
    let media_type = desc.media_type().to_string();
    let Some(compression) = layer_compression(&media_type) else {
        return Err(Error::Unsupported(format!(
            "layer {digest}: media type {media_type}"
        )));
    };
    let resp = BlobReader::open(reg, path, &digest.to_string())?;
    let mut writer = store.content().writer_hashed_by_caller()?;
    let mut checked = Checked {
        inner: io::BufReader::with_capacity(1 << 20, resp),
        out: Some(Digester::new(&mut writer)),
        seen: 0,
        size: desc.size(),
        digest,
        progress,
    };
    // The bytes must be what the media type says: a gzip descriptor served zstd (or
    // plain) bytes is refused before anything is unpacked.
    let head = match io::BufRead::fill_buf(&mut checked.inner) {
        Ok(head) => head,
        Err(e) => {
            let url = checked.inner.get_ref().url.clone();
            return Err(checked.inner.get_mut().failure_or(from_io(e, &url)));
        }
    };
    let served = Compression::detect(head);
    if served != compression && !(compression == Compression::None && head.is_empty()) {
        return Err(Error::Verify(format!(
            "layer {digest}: the descriptor says {media_type} but the bytes are {served:?}"
        )));
    }
    // A download that ended fails the unpacking; its own error says why.
    let unpacked = match unpack {
        true => store.unpack_snapshot(&mut checked, diff_id, chain),
        false => Ok(false),
    };
    let made = match unpacked {
        Ok(made) => made,
        Err(e) => return Err(checked.inner.get_mut().failure_or(e.into())),
    };
    // A snapshot made from bytes that then fail their check goes again; one that was there
    // before (another image's, with the same diffID) is not this pull's to remove.
    let undo = || {
        if made {
            let _ = store.discard(&store.snapshot_path(chain));
        }
    };
    // Whatever the unpacking left unread (on vfs, all of it) still belongs to the blob, and
    // is checked.
    let rest = io::copy(&mut checked, &mut io::sink());
    let network = checked.inner.get_mut().failure.take();
    let ended = checked.out.is_none();
    drop(checked);
    let rest = match network {
        Some(e) => {
            undo();
            return Err(e);
        }
        None => rest,
    };
    // The digest and size were checked at the end of the stream (`Checked`).
    let committed = rest
        .map_err(|e| Error::Verify(e.to_string()))
        .and_then(|_| {
            if !ended {
                return Err(Error::Verify(format!("blob {digest}: not read to its end")));
            }
            Ok(writer.commit(digest, desc.size())?)
        });
    if let Err(e) = committed {
        undo();
        return Err(e);
    }
    progress.line(&format!(
        "{}: Pull complete",
        crate::client::short_id(&digest)
    ));
    Ok(())
}
