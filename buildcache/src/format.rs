//! The cache config document (`application/vnd.buildkit.cacheconfig.v0`) in BuildKit's
//! shape, made from a build's records and read back, and the manifest that carries it.
//!
//! A layer is a blob and the index of the layer below it (`parent`, -1 for none): one
//! layer per (blob, parent), so an image is the chain from its top layer down. A record
//! is a step: its digest (lb's cache key in lb's namespace, [`record_digest`]), its
//! result (`layers`: the top layer of its image), `inputs` (the record of the step below
//! it, where the cache holds one) and, under a key BuildKit does not read, the image
//! config the step made (`lb.image`).

use std::collections::HashMap;
use std::str::FromStr;

use lb_layerstore::{Digest, Image, LayerCompression, Store};
use serde::{Deserialize, Serialize};

use crate::Error;

pub const MEDIA_CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";
pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Larger cache configs are refused on import (a build's records are a few KiB).
pub(crate) const MAX_CONFIG: u64 = 4 << 20;

/// The record digest of lb's cache key `key`: in a namespace of lb's own (and its format's
/// version), so that no BuildKit record digest is ever one of lb's.
pub fn record_digest(key: &Digest) -> Digest {
    Digest::of(format!("lb.buildcache.v1 {key}").as_bytes())
}

/// A blob the cache's manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobRef {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CacheConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<CacheLayer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<CacheRecord>,
    /// The build's cache mounts' contents (`cache-mounts=true`), under a key of lb's own.
    #[serde(rename = "lb.mounts", default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountRecord>,
}

/// A cache mount's contents: its id and the layer (a tar of its directory) holding them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MountRecord {
    pub id: String,
    pub layer: BlobRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheLayer {
    pub blob: Digest,
    #[serde(default)]
    pub parent: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<LayerAnnotations>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerAnnotations {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    #[serde(rename = "diffID", default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    #[serde(default)]
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheRecord {
    #[serde(rename = "layers", default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<CacheResult>,
    /// BuildKit's chained results: read (so its caches parse), never written.
    #[serde(rename = "chains", default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<serde_json::Value>,
    /// Kept as text: BuildKit's records may use digests of other algorithms.
    #[serde(default)]
    pub digest: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<Vec<CacheInput>>,
    #[serde(rename = "lb.image", default, skip_serializing_if = "Option::is_none")]
    pub image: Option<BlobRef>,
    /// The step's inputs (the builder's document: what `--explain` compares).
    #[serde(rename = "lb.inputs", default, skip_serializing_if = "Option::is_none")]
    pub inputs_doc: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheResult {
    pub layer: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CacheInput {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    pub link: i64,
}

/// A cache config made from records, and every blob it needs (layers, then the images'
/// configs), in the manifest's order.
pub(crate) struct Made {
    pub config: CacheConfig,
    pub blobs: Vec<BlobRef>,
}

/// The cache config of `records` (cache key, the image its step made), their layers as
/// a registry takes them (uncompressed ones compressed with `compression`, once), and of
/// the cache mounts `mounts` (id, directory): each one's tree as a layer.
pub(crate) fn make(
    store: &Store,
    records: &[(Digest, Image)],
    mounts: &[(String, std::path::PathBuf)],
    compression: LayerCompression,
) -> Result<Made, Error> {
    let mut config = CacheConfig::default();
    let mut blobs: Vec<BlobRef> = Vec::new();
    let mut configs: Vec<BlobRef> = Vec::new();
    let mut layer_index: HashMap<(Digest, i64), i64> = HashMap::new();
    // The record whose result is each layer, for the next record's `inputs`.
    let mut record_of_top: HashMap<i64, i64> = HashMap::new();
    let mut sorted: Vec<&(Digest, Image)> = records.iter().collect();
    // Shorter images first: a step's record comes before the steps on top of it.
    sorted.sort_by_key(|(key, image)| (image.manifest.layers().len(), *key));
    for (key, image) in sorted {
        let (layers, _) = lb_registry::layers_to_push(store, image, compression)?;
        let diff_ids = image.diff_ids()?;
        if layers.is_empty() || layers.len() != diff_ids.len() {
            continue; // no layer to find the step by, or a damaged image
        }
        let mut parent = -1;
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            let blob = layer.blob.digest;
            parent = match layer_index.get(&(blob, parent)) {
                Some(&i) => i,
                None => {
                    let i = config.layers.len() as i64;
                    config.layers.push(CacheLayer {
                        blob,
                        parent,
                        annotations: Some(LayerAnnotations {
                            media_type: layer.media_type.clone(),
                            diff_id: Some(*diff_id),
                            size: layer.blob.size,
                        }),
                    });
                    layer_index.insert((blob, parent), i);
                    if !blobs.iter().any(|b| b.digest == blob) {
                        blobs.push(BlobRef {
                            media_type: layer.media_type.clone(),
                            digest: blob,
                            size: layer.blob.size,
                        });
                    }
                    i
                }
            };
        }
        let below = config.layers[parent as usize].parent;
        let inputs = match record_of_top.get(&below) {
            Some(&r) => vec![vec![CacheInput {
                selector: String::new(),
                link: r,
            }]],
            None => Vec::new(),
        };
        let image_config = BlobRef {
            media_type: image.manifest.config().media_type().to_string(),
            digest: image.config_digest,
            size: image.manifest.config().size(),
        };
        if !configs.iter().any(|c| c.digest == image_config.digest) {
            configs.push(image_config.clone());
        }
        record_of_top.insert(parent, config.records.len() as i64);
        config.records.push(CacheRecord {
            results: vec![CacheResult { layer: parent }],
            chains: Vec::new(),
            digest: record_digest(key).to_string(),
            inputs,
            image: Some(image_config),
            inputs_doc: store
                .cache_inputs(key)
                .and_then(|t| serde_json::from_str(&t).ok()),
        });
    }
    blobs.extend(configs);
    for (id, dir) in mounts {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue; // removed meanwhile (`builder prune`)
        };
        if entries.count() == 0 {
            continue;
        }
        let tar = store.store_layer(
            lb_layerstore::LayerChanges::Upper(dir),
            lb_layerstore::DiffOptions::default(),
        )?;
        let c = store.compressed_layer(&tar.digest, compression)?;
        let layer = BlobRef {
            media_type: lb_registry::layer_media_type(compression).to_string(),
            digest: c.digest,
            size: c.size,
        };
        blobs.push(layer.clone());
        config.mounts.push(MountRecord {
            id: id.clone(),
            layer,
        });
    }
    Ok(Made { config, blobs })
}

/// The most a cache config may hold (registries and BuildKit read it whole).
pub(crate) const MAX_EXPORTED: usize = 1 << 20;

/// `config`'s bytes, under [`MAX_EXPORTED`]: when the steps' inputs make it larger, their
/// copies' file lists go first, then the inputs (`--explain` then says less, the cache
/// hits the same).
pub(crate) fn fit(config: &mut CacheConfig) -> Result<Vec<u8>, Error> {
    let bytes = |c: &CacheConfig| serde_json::to_vec(c).expect("a cache config serialises");
    let mut out = bytes(config);
    if out.len() > MAX_EXPORTED {
        for r in &mut config.records {
            if let Some(serde_json::Value::Object(doc)) = &mut r.inputs_doc {
                doc.remove("files");
            }
        }
        out = bytes(config);
    }
    if out.len() > MAX_EXPORTED {
        for r in &mut config.records {
            r.inputs_doc = None;
        }
        out = bytes(config);
    }
    if out.len() > MAX_EXPORTED {
        return Err(Error::format(
            "the cache config",
            format!(
                "{} records make {} bytes, more than {MAX_EXPORTED}",
                config.records.len(),
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// The document that carries a cache config: an OCI image manifest whose config it is,
/// or (BuildKit 0.8's form) an OCI index listing it beside the blobs. Bytes and media type.
pub(crate) fn manifest(
    config: &BlobRef,
    blobs: &[BlobRef],
    image_manifest: bool,
) -> (Vec<u8>, &'static str) {
    let doc = if image_manifest {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": config,
            "layers": blobs,
        })
    } else {
        let mut all = blobs.to_vec();
        all.push(config.clone());
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": all,
        })
    };
    let media = if image_manifest {
        MEDIA_OCI_MANIFEST
    } else {
        MEDIA_OCI_INDEX
    };
    (
        serde_json::to_vec(&doc).expect("a manifest serialises"),
        media,
    )
}

/// What a cache's top document says: its cache config's blob and the blobs beside it.
#[derive(Debug)]
pub(crate) struct Carried {
    pub config: BlobRef,
    pub blobs: HashMap<Digest, BlobRef>,
}

/// A cache's top document: a cache (manifest or index), or an image (whose config may
/// hold an inline cache).
#[derive(Debug)]
pub(crate) enum Top {
    Cache(Carried),
    Image {
        config: BlobRef,
        layers: Vec<BlobRef>,
    },
}

/// Reads a cache's top document (`cache` names it in errors): a manifest whose config is
/// a cache config, an index listing one, or an image's manifest.
pub(crate) fn top(cache: &str, bytes: &[u8]) -> Result<Top, Error> {
    #[derive(Deserialize)]
    struct Doc {
        config: Option<BlobRef>,
        #[serde(default)]
        layers: Vec<BlobRef>,
        #[serde(default)]
        manifests: Vec<BlobRef>,
    }
    let doc: Doc = serde_json::from_slice(bytes)
        .map_err(|e| Error::format(cache, format!("the cache manifest: {e}")))?;
    let (config, rest) = match doc.config {
        Some(config) if config.media_type != MEDIA_CACHE_CONFIG => {
            if config.size > MAX_CONFIG {
                return Err(Error::format(
                    cache,
                    format!("an image config of {} bytes", config.size),
                ));
            }
            return Ok(Top::Image {
                config,
                layers: doc.layers,
            });
        }
        Some(config) => (config, doc.layers),
        None => {
            let mut rest = doc.manifests;
            let at = rest
                .iter()
                .position(|m| m.media_type == MEDIA_CACHE_CONFIG)
                .ok_or_else(|| {
                    Error::format(
                        cache,
                        "an index that lists no cache config (a multi-platform image is no cache)",
                    )
                })?;
            (rest.remove(at), rest)
        }
    };
    if config.size > MAX_CONFIG {
        return Err(Error::format(
            cache,
            format!("a cache config of {} bytes", config.size),
        ));
    }
    Ok(Top::Cache(Carried {
        config,
        blobs: rest.into_iter().map(|b| (b.digest, b)).collect(),
    }))
}

impl CacheConfig {
    /// Parses a cache config (`cache` names it in errors).
    pub(crate) fn parse(cache: &str, bytes: &[u8]) -> Result<CacheConfig, Error> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::format(cache, format!("the cache config: {e}")))
    }

    /// The record of lb's cache key `key`, by its record digest.
    pub(crate) fn records_by_digest(&self) -> HashMap<Digest, usize> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((Digest::from_str(&r.digest).ok()?, i)))
            .collect()
    }

    /// The layers of record `record`'s image, bottom first; `None` when the record holds
    /// no image lb can use (no result, a broken chain).
    pub(crate) fn chain(&self, record: &CacheRecord) -> Option<Vec<&CacheLayer>> {
        let mut at = record.results.first()?.layer;
        let mut out = Vec::new();
        while at >= 0 {
            let layer = self.layers.get(at as usize)?;
            out.push(layer);
            if out.len() > self.layers.len() {
                return None; // a cycle
            }
            at = layer.parent;
        }
        out.reverse();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_too_large_sheds_file_lists_then_inputs() {
        let files: serde_json::Map<String, serde_json::Value> = (0..2000)
            .map(|i| {
                (
                    format!("src/some/deep/path/file-{i:05}.rs"),
                    serde_json::json!(
                        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                    ),
                )
            })
            .collect();
        let record = |n: u8| CacheRecord {
            results: vec![CacheResult { layer: 0 }],
            chains: Vec::new(),
            digest: Digest::of(&[n]).to_string(),
            inputs: Vec::new(),
            image: None,
            inputs_doc: Some(serde_json::json!({"instruction": "COPY . /app", "files": files})),
        };
        let mut config = CacheConfig {
            records: (0..8).map(record).collect(),
            ..Default::default()
        };
        assert!(serde_json::to_vec(&config).unwrap().len() > MAX_EXPORTED);
        let bytes = fit(&mut config).unwrap();
        assert!(bytes.len() <= MAX_EXPORTED);
        let doc = config.records[0].inputs_doc.as_ref().unwrap();
        assert!(doc.get("files").is_none() && doc.get("instruction").is_some());
    }

    #[test]
    fn record_digests_are_lbs_own_and_the_documents_read_back() {
        let key = Digest::of(b"a step");
        assert_ne!(record_digest(&key), key);
        assert_eq!(record_digest(&key), record_digest(&key));

        let blob = |n: &[u8], media: &str| BlobRef {
            media_type: media.into(),
            digest: Digest::of(n),
            size: n.len() as u64,
        };
        let config = blob(b"{}", MEDIA_CACHE_CONFIG);
        let layers = vec![blob(b"l1", "application/vnd.oci.image.layer.v1.tar+gzip")];
        for image_manifest in [true, false] {
            let (bytes, media) = manifest(&config, &layers, image_manifest);
            assert_eq!(media == MEDIA_OCI_MANIFEST, image_manifest);
            let Top::Cache(c) = top("c", &bytes).unwrap() else {
                panic!("a cache")
            };
            assert_eq!(c.config, config);
            assert_eq!(c.blobs.len(), 1);
        }
        // An image is told apart by its config's media type.
        let image = serde_json::json!({"schemaVersion": 2, "config": blob(b"{}", "application/vnd.oci.image.config.v1+json"), "layers": layers});
        let got = top("app:1", &serde_json::to_vec(&image).unwrap()).unwrap();
        assert!(matches!(got, Top::Image { layers, .. } if layers.len() == 1));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": layers});
        let e = top("app:1", &serde_json::to_vec(&index).unwrap()).unwrap_err();
        assert!(e.to_string().contains("lists no cache config"), "{e}");

        // BuildKit's own shape parses (parent omitted is 0, chains, foreign digests).
        let bk = br#"{"layers":[{"blob":"sha256:6ae8a75555209fd6c44157c0aed8016e763ff435a19cf186f76863140143ff72","parent":-1},{"blob":"sha256:6ae8a75555209fd6c44157c0aed8016e763ff435a19cf186f76863140143ff72"}],
            "records":[{"layers":[{"layer":1,"createdAt":"2020-01-01T00:00:00Z"}],"digest":"random:abc","chains":[{"layers":[0]}]},{"digest":"sha256:6ae8a75555209fd6c44157c0aed8016e763ff435a19cf186f76863140143ff72","inputs":[[{"selector":"x","link":0}]]}]}"#;
        let parsed = CacheConfig::parse("bk", bk).unwrap();
        assert_eq!(parsed.chain(&parsed.records[0]).unwrap().len(), 2);
        assert!(parsed.chain(&parsed.records[1]).is_none(), "no result");
        assert_eq!(parsed.records_by_digest().len(), 1);
    }
}
