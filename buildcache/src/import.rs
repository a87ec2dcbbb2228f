//! `--cache-from`: a cache's records read once (its top document and cache config); a
//! step's image brought into the store only when the build looks its key up and the
//! cache has it: its config, then the layers the store lacks (from a registry, each
//! streamed once into the store and its snapshot and checked there; from a directory,
//! copied in and checked), then its manifest and the store's own record of the key.
//! Whatever fails a check is an error the caller takes as a miss: nothing unchecked is
//! ever used. An image given as a cache is read for lb's inline cache in its config.

use std::collections::HashMap;
use std::path::PathBuf;

use lb_layerstore::{Digest, Image, Store};
use lb_registry::Registry;
use oci_spec::image::Descriptor;

use crate::format::{self, BlobRef, CacheConfig, MEDIA_OCI_MANIFEST, Top};
use crate::inline::{self, InlineRecord};
use crate::spec::{CacheImport, ImportSource};
use crate::{Error, layout};

/// Where the cache's blobs are.
enum Location {
    Registry { reg: Registry, path: String },
    Local(PathBuf),
}

/// The records a cache holds: a cache config's (a cache manifest), or an image's own
/// (an inline cache: its steps' images are its first layers).
enum Records {
    Manifest {
        config: CacheConfig,
        by_digest: HashMap<Digest, usize>,
        blobs: HashMap<Digest, BlobRef>,
    },
    Inline {
        layers: Vec<BlobRef>,
        by_digest: HashMap<Digest, InlineRecord>,
    },
}

/// One cache, its records read.
pub struct Importer {
    name: String,
    /// What reading it from a registry showed to be there (`export`'s shortcut).
    seen: Option<crate::export::Seen>,
    store: Store,
    location: Location,
    records: Records,
    /// Blobs fetched from the cache (layers, cache mounts), and their bytes.
    downloaded: std::sync::atomic::AtomicUsize,
    downloaded_bytes: std::sync::atomic::AtomicU64,
}

/// Pull progress nobody sees: a cache hit is shown as `CACHED (REF)`.
struct Quiet;

impl lb_registry::PullProgress for Quiet {
    fn line(&self, _: &str) {}
}

impl Importer {
    /// Reads the records of the cache `spec` names: a cache manifest, or an image whose
    /// config holds lb's inline cache (an image without one, such as BuildKit's inline
    /// cache, holds no record lb reads: every lookup misses).
    pub fn open(
        store: &Store,
        spec: &CacheImport,
        registry: &lb_registry::Options,
    ) -> Result<Importer, Error> {
        let name = spec.name();
        let mut seen = None;
        let (location, top) = match &spec.source {
            ImportSource::Registry(reference) => {
                let reg = Registry::new(&reference.domain, registry)?;
                let path = reference.path.clone();
                let tag = lb_registry::manifest_reference(reference);
                let top = lb_registry::get_manifest(&reg, &path, &tag)?;
                seen = Some(crate::export::Seen {
                    domain: reference.domain.clone(),
                    path: path.clone(),
                    tag,
                    top: top.digest,
                    blobs: Default::default(),
                });
                (Location::Registry { reg, path }, top.bytes)
            }
            ImportSource::Local(dir) => (Location::Local(dir.clone()), layout::read_top(dir)?),
        };
        let mut importer = Importer {
            name,
            seen,
            store: store.clone(),
            location,
            records: Records::Inline {
                layers: Vec::new(),
                by_digest: HashMap::new(),
            },
            downloaded: Default::default(),
            downloaded_bytes: Default::default(),
        };
        let top = format::top(&importer.name, &top)?;
        if let Some(seen) = &mut importer.seen {
            seen.blobs = match &top {
                Top::Cache(c) => c.blobs.keys().chain([&c.config.digest]).copied().collect(),
                Top::Image { config, layers } => {
                    layers.iter().chain([config]).map(|b| b.digest).collect()
                }
            };
        }
        importer.records = match top {
            Top::Cache(carried) => {
                let bytes = importer.document(&carried.config)?;
                let config = CacheConfig::parse(&importer.name, &bytes)?;
                Records::Manifest {
                    by_digest: config.records_by_digest(),
                    config,
                    blobs: carried.blobs,
                }
            }
            Top::Image { config, layers } => {
                let bytes = importer.document(&config)?;
                let records = inline::read(&importer.name, &bytes)?.unwrap_or_default();
                Records::Inline {
                    layers,
                    by_digest: records.records.into_iter().map(|r| (r.digest, r)).collect(),
                }
            }
        };
        Ok(importer)
    }

    /// What reading the cache from a registry showed to be there.
    pub fn seen(&self) -> Option<&crate::export::Seen> {
        self.seen.as_ref()
    }

    /// The cache's name, as a hit shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Blobs this cache's lookups fetched (the store lacked them), and their bytes.
    pub fn downloaded(&self) -> (usize, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            self.downloaded.load(SeqCst),
            self.downloaded_bytes.load(SeqCst),
        )
    }

    /// Counts a blob of `size` bytes about to be fetched.
    fn count_download(&self, size: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.downloaded.fetch_add(1, SeqCst);
        self.downloaded_bytes.fetch_add(size, SeqCst);
    }

    /// The inputs documents of every record (`--explain` compares a step that ran with
    /// them).
    pub fn inputs(&self) -> Vec<String> {
        let docs: Vec<&serde_json::Value> = match &self.records {
            Records::Manifest { config, .. } => config
                .records
                .iter()
                .filter_map(|r| r.inputs_doc.as_ref())
                .collect(),
            Records::Inline { by_digest, .. } => by_digest
                .values()
                .filter_map(|r| r.inputs.as_ref())
                .collect(),
        };
        docs.into_iter().map(|d| d.to_string()).collect()
    }

    /// The config (its bytes), layers (with their diffIDs where the cache says them) and
    /// inputs of the image the step of `key` made, where the cache has it.
    fn find(&self, key: &Digest) -> Result<Option<Found>, Error> {
        let digest = format::record_digest(key);
        match &self.records {
            Records::Manifest {
                config,
                by_digest,
                blobs,
            } => {
                let Some(&at) = by_digest.get(&digest) else {
                    return Ok(None);
                };
                let record = &config.records[at];
                let (Some(config_ref), Some(chain)) = (&record.image, config.chain(record)) else {
                    return Ok(None);
                };
                let bytes = match self.store.content().contains(&config_ref.digest) {
                    true => self.store.content().read_verified(&config_ref.digest)?,
                    false => self.document(config_ref)?,
                };
                let mut layers = Vec::with_capacity(chain.len());
                for layer in chain {
                    let blob = blobs.get(&layer.blob).ok_or_else(|| {
                        Error::format(
                            &self.name,
                            format!("layer {} is not in the manifest", layer.blob),
                        )
                    })?;
                    let diff_id = layer.annotations.as_ref().and_then(|a| a.diff_id);
                    layers.push((blob.clone(), diff_id));
                }
                let inputs = record.inputs_doc.as_ref().map(|d| d.to_string());
                Ok(Some((bytes, layers, inputs)))
            }
            Records::Inline { layers, by_digest } => {
                let Some(record) = by_digest.get(&digest) else {
                    return Ok(None);
                };
                let Some(below) = layers.get(..record.layers) else {
                    return Err(Error::format(
                        &self.name,
                        format!(
                            "a record of {} layers in an image of {}",
                            record.layers,
                            layers.len()
                        ),
                    ));
                };
                let layers = below.iter().map(|b| (b.clone(), None)).collect();
                let inputs = record.inputs.as_ref().map(|d| d.to_string());
                Ok(Some((record.config.as_bytes().to_vec(), layers, inputs)))
            }
        }
    }

    /// The image the step of cache key `key` made, brought into the store and recorded
    /// there under `key`; `None` when the cache has no such step.
    pub fn lookup(&self, key: &Digest) -> Result<Option<Image>, Error> {
        let Some((config_bytes, chain, inputs)) = self.find(key)? else {
            return Ok(None);
        };
        let config_digest = Digest::of(&config_bytes);
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::format(&self.name, format!("image config {config_digest}: {e}")))?;
        let diff_ids = config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect::<Result<Vec<_>, _>>()?;
        if diff_ids.len() != chain.len() {
            return Err(Error::format(
                &self.name,
                format!(
                    "image config {config_digest} lists {} layers, the record {}",
                    diff_ids.len(),
                    chain.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(chain.len());
        for ((blob, said), diff_id) in chain.iter().zip(&diff_ids) {
            if said.is_some_and(|d| d != *diff_id) {
                return Err(Error::format(
                    &self.name,
                    format!("layer {}: its diffID is not the config's", blob.digest),
                ));
            }
            // A layer the store keeps uncompressed (one it built or imported: its blob is
            // named by its diffID) is not fetched again in another compression.
            let local = self.store.content().info(diff_id).ok();
            layers.push(match local {
                Some(info) => descriptor(&BlobRef {
                    media_type: lb_layerstore::MEDIA_LAYER_TAR.to_string(),
                    digest: *diff_id,
                    size: info.size,
                })?,
                None => descriptor(blob)?,
            });
        }
        self.fetch_layers(&layers, &diff_ids)?;
        let stored = self.store.content().put(&config_bytes)?;
        let config_ref = BlobRef {
            media_type: "application/vnd.oci.image.config.v1+json".to_string(),
            digest: stored.digest,
            size: stored.size,
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config_ref,
            "layers": layers,
        });
        let stored = self
            .store
            .content()
            .put(&serde_json::to_vec(&manifest).expect("a manifest serialises"))?;
        let image = self.store.image_by_manifest(stored.digest)?;
        // Every layer's snapshot (vfs: its tree) made and checked against its diffID.
        self.store.image_chain(&image)?;
        self.store.cache_put(key, &image, inputs.as_deref())?;
        Ok(Some(image))
    }

    /// Fills `dir`, the empty directory of the cache mount `id`, with the contents the
    /// cache holds for it (its layer fetched and checked against its digest first); whether
    /// the cache had any.
    pub fn restore_mount(&self, id: &str, dir: &std::path::Path) -> Result<bool, Error> {
        let Records::Manifest { config, .. } = &self.records else {
            return Ok(false);
        };
        let Some(mount) = config.mounts.iter().find(|m| m.id == id) else {
            return Ok(false);
        };
        let digest = mount.layer.digest;
        self.fetch_blob(&digest, mount.layer.size)?;
        let blob = self.store.content().open_blob(&digest)?;
        // Unpacked as any layer is: nothing in it can write outside the directory.
        lb_layerstore::apply_layer(
            blob,
            dir,
            lb_layerstore::ApplyOptions {
                whiteouts: lb_layerstore::Whiteouts::Delete,
                privileged: rustix::process::geteuid().is_root(),
            },
        )?;
        Ok(true)
    }

    /// A small blob of the cache (a cache config, an image config), checked.
    fn document(&self, blob: &BlobRef) -> Result<Vec<u8>, Error> {
        Ok(match &self.location {
            Location::Registry { reg, path } => {
                lb_registry::fetch_document(reg, path, &blob.digest, blob.size)?
            }
            Location::Local(dir) => layout::read_blob(dir, &blob.digest, format::MAX_CONFIG)?,
        })
    }

    /// The cache's blob `digest` (`size` bytes) into the store unless it is there, checked
    /// against its digest and size, and counted as downloaded.
    fn fetch_blob(&self, digest: &Digest, size: u64) -> Result<(), Error> {
        if self.store.content().contains(digest) {
            return Ok(());
        }
        self.count_download(size);
        match &self.location {
            Location::Registry { reg, path } => {
                lb_registry::fetch_blob(&self.store, reg, path, digest, size)?;
            }
            Location::Local(dir) => {
                let path = layout::blob_path(dir, digest);
                let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                self.store
                    .content()
                    .ingest(&mut file, Some(digest), Some(size))?;
            }
        }
        Ok(())
    }

    /// The layers the store lacks, into it, checked: from a registry each streamed once
    /// into its blob and snapshot (counted here), from a directory blob by blob.
    fn fetch_layers(&self, layers: &[Descriptor], diff_ids: &[Digest]) -> Result<(), Error> {
        match &self.location {
            Location::Registry { reg, path } => {
                for layer in layers {
                    let digest: Digest = layer.digest().as_ref().parse()?;
                    if !self.store.content().contains(&digest) {
                        self.count_download(layer.size());
                    }
                }
                lb_registry::fetch_layers(&self.store, reg, path, layers, diff_ids, 4, &Quiet)?;
            }
            Location::Local(_) => {
                for layer in layers {
                    self.fetch_blob(&layer.digest().as_ref().parse()?, layer.size())?;
                }
            }
        }
        Ok(())
    }
}

/// What [`Importer::find`] finds: an image config's bytes, its layers with their diffIDs
/// where the cache says them, and the step's inputs document.
type Found = (Vec<u8>, Vec<(BlobRef, Option<Digest>)>, Option<String>);

fn descriptor(blob: &BlobRef) -> Result<Descriptor, Error> {
    let digest: oci_spec::image::Digest = blob
        .digest
        .to_string()
        .parse()
        .map_err(|e| Error::format("a layer", format!("{}: {e}", blob.digest)))?;
    Ok(Descriptor::new(
        oci_spec::image::MediaType::from(blob.media_type.as_str()),
        blob.size,
        digest,
    ))
}
