//! `--cache-to`: the records a build chose (`mode`) written as a cache, to a registry
//! reference (blobs sent as `lb push` sends them: those the registry has are skipped by
//! HEAD or mounted, the rest uploaded in parallel, largest first; the manifest last) or
//! to an OCI layout directory.

use lb_layerstore::{Digest, Image, Store};
use lb_registry::{Blob, PushOptions, PushProgress, Registry};

use crate::format::{self, BlobRef, MEDIA_CACHE_CONFIG};
use crate::spec::{CacheExport, CacheMode, ExportTarget};
use crate::{Error, layout};

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportReport {
    /// Records (steps) in the cache.
    pub records: usize,
    /// Layers the cache config lists.
    pub layers: usize,
    /// Blobs the cache's manifest names (layers, image configs, cache mounts' layers).
    pub blobs: usize,
    /// Cache mounts whose contents the cache holds.
    pub mounts: usize,
    /// Blobs sent (uploaded, or copied into the directory), with their bytes.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs the target had already (or a registry mounted from another repository).
    pub reused: usize,
    /// The top document's digest.
    pub digest: Option<Digest>,
    /// The cache made is the one the build read from the target: nothing was sent.
    pub unchanged: bool,
}

/// The steps `spec.mode` keeps of `steps` (cache key, image): with `min`, those whose
/// image is the final image or one below it (its layers a prefix of the final's).
pub(crate) fn chosen(
    steps: &[(Digest, Image)],
    final_image: &Image,
    mode: CacheMode,
) -> Vec<(Digest, Image)> {
    let top: Vec<String> = final_image
        .manifest
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    steps
        .iter()
        .filter(|(_, image)| {
            mode == CacheMode::Max || {
                let layers = image.manifest.layers();
                layers.len() <= top.len()
                    && layers
                        .iter()
                        .zip(&top)
                        .all(|(l, t)| l.digest().to_string() == *t)
            }
        })
        .cloned()
        .collect()
}

/// What a cache read from a registry showed to be there: its repository and tag, its
/// top document's digest, and the blobs that document names (a registry took it only
/// with every one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub domain: String,
    pub path: String,
    pub tag: String,
    pub top: Digest,
    pub blobs: std::collections::HashSet<Digest>,
}

/// How an export reaches its target: registry options, where per-blob lines go, and
/// what the build's caches showed a registry has (no HEAD for those; nothing at all when
/// the cache made is the one read from that very tag).
pub struct ExportVia<'a> {
    pub registry: &'a lb_registry::Options,
    pub progress: &'a dyn PushProgress,
    pub seen: &'a [Seen],
}

/// What a build made that an export keeps: its layer steps (cache key, image) and its
/// shared cache mounts (id, directory).
#[derive(Debug, Clone, Copy)]
pub struct BuildRecords<'a> {
    pub steps: &'a [(Digest, Image)],
    pub mounts: &'a [(String, std::path::PathBuf)],
}

/// Exports the steps of a build (`built`, `final_image` its result) as `spec` says, and
/// with `cache-mounts=true` the contents of its cache mounts.
/// An inline export is the caller's (it goes into the image's config).
pub fn export(
    store: &Store,
    spec: &CacheExport,
    built: BuildRecords<'_>,
    final_image: &Image,
    via: &ExportVia<'_>,
) -> Result<ExportReport, Error> {
    let records = chosen(built.steps, final_image, spec.mode);
    let mounts = if spec.cache_mounts { built.mounts } else { &[] };
    let mut made = format::make(store, &records, mounts, spec.compression)?;
    let config_bytes = format::fit(&mut made.config)?;
    let stored = store.content().put(&config_bytes)?;
    let config = BlobRef {
        media_type: MEDIA_CACHE_CONFIG.to_string(),
        digest: stored.digest,
        size: stored.size,
    };
    let (doc, media_type) = format::manifest(&config, &made.blobs, spec.image_manifest);
    let mut blobs: Vec<(Digest, u64)> = made.blobs.iter().map(|b| (b.digest, b.size)).collect();
    blobs.push((config.digest, config.size));
    let mut report = ExportReport {
        records: made.config.records.len(),
        layers: made.config.layers.len(),
        blobs: made.blobs.len(),
        mounts: made.config.mounts.len(),
        digest: Some(Digest::of(&doc)),
        ..Default::default()
    };
    match &spec.target {
        ExportTarget::Registry(reference) => {
            let path = reference.path.as_str();
            let tag = reference
                .tag
                .as_deref()
                .unwrap_or(lb_layerstore::DEFAULT_TAG);
            let here: Vec<&Seen> = via
                .seen
                .iter()
                .filter(|s| s.domain == reference.domain && s.path == path)
                .collect();
            // The very cache the build read from this tag: nothing to send.
            if here
                .iter()
                .any(|s| s.tag == tag && s.top == Digest::of(&doc))
            {
                report.reused = blobs.len();
                report.unchanged = true;
                return Ok(report);
            }
            let known = |d: &Digest| here.iter().any(|s| s.blobs.contains(d));
            let to_send: Vec<Blob> = blobs
                .iter()
                .filter(|(digest, _)| !known(digest))
                .map(|(digest, size)| Blob {
                    digest: *digest,
                    size: *size,
                })
                .collect();
            let reg = Registry::new(&reference.domain, via.registry)?;
            let opts = PushOptions {
                compression: spec.compression,
                ..Default::default()
            };
            let sent = lb_registry::push_blobs(store, &reg, path, &to_send, &opts, via.progress)?;
            report.uploaded = sent.uploaded;
            report.uploaded_bytes = sent.uploaded_bytes;
            report.reused = sent.reused + (blobs.len() - to_send.len());
            lb_registry::put_manifest(&reg, path, tag, &doc, media_type)?;
        }
        ExportTarget::Local(dir) => {
            let copied = layout::write(store, dir, &blobs, &doc, media_type)?;
            report.uploaded = copied.len();
            report.uploaded_bytes = copied.iter().sum();
            report.reused = blobs.len() - copied.len();
        }
        ExportTarget::Inline => {
            return Err(Error::Spec {
                flag: "--cache-to",
                value: "type=inline".into(),
                reason: "an inline cache is written into the image by the build".into(),
            });
        }
    }
    Ok(report)
}
