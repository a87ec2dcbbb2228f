//! An inline cache (`--cache-to type=inline`): the records of the final image's steps in
//! the image's own config, under a key of lb's own, pushed with the image. A record
//! names how many of the image's layers its step's image has, and holds that image's
//! config (its bytes as text, so the image made from it is the very one: same ID).
//! Read back from the image (`--cache-from IMAGE`) by `import`.

use lb_layerstore::{Digest, Image, Store};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::export::chosen;
use crate::format::record_digest;
use crate::spec::CacheMode;

/// The key of an image config that holds lb's inline cache (BuildKit's is
/// `moby.buildkit.cache.v0`: the two never meet).
pub const INLINE_KEY: &str = "lb.buildcache.v1";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct InlineCache {
    pub records: Vec<InlineRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InlineRecord {
    /// The step's cache key in lb's namespace ([`record_digest`]).
    pub digest: Digest,
    /// How many of the image's layers (bottom first) are the step's image's.
    pub layers: usize,
    /// The step's image config, as its bytes.
    pub config: String,
    /// The step's inputs (the builder's document: what `--explain` compares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
}

/// `image` with the inline cache of `steps` (those of the final image's chain) in its
/// config: a new image in the store (its ID is another: the config changed).
pub fn with_inline_cache(
    store: &Store,
    steps: &[(Digest, Image)],
    image: &Image,
) -> Result<Image, Error> {
    let mut cache = InlineCache::default();
    for (key, step) in chosen(steps, image, CacheMode::Min) {
        let bytes = store.content().read_verified(&step.config_digest)?;
        let config = String::from_utf8(bytes).map_err(|_| {
            Error::format(
                "inline cache",
                format!("config {} is not UTF-8", step.config_digest),
            )
        })?;
        cache.records.push(InlineRecord {
            digest: record_digest(&key),
            layers: step.manifest.layers().len(),
            config,
            inputs: store
                .cache_inputs(&key)
                .and_then(|t| serde_json::from_str(&t).ok()),
        });
    }
    cache.records.sort_by_key(|r| (r.layers, r.digest));
    let raw = store.content().read_verified(&image.config_digest)?;
    let mut config: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| {
        Error::format(
            "inline cache",
            format!("config {}: {e}", image.config_digest),
        )
    })?;
    config[INLINE_KEY] = serde_json::to_value(&cache).expect("an inline cache serialises");
    Ok(store.write_image(&config, image.manifest.layers(), &[])?)
}

/// The inline cache in the image config `config` (bytes), if it holds lb's.
pub(crate) fn read(cache: &str, config: &[u8]) -> Result<Option<InlineCache>, Error> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| Error::format(cache, format!("the image config: {e}")))?;
    match v.get(INLINE_KEY) {
        None => Ok(None),
        Some(c) => serde_json::from_value(c.clone())
            .map(Some)
            .map_err(|e| Error::format(cache, format!("its inline cache: {e}"))),
    }
}
