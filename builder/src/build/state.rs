//! A stage's state between steps: its image config, layers, image, ARGs and cache key,
//! and what steps read of it (working directory, variables in scope, diff IDs).

use super::*;

/// A stage as far as it got: its image config (docker's whole config JSON), its layers,
/// the image written for them (the snapshots RUN and COPY stand on), its ARGs and its
/// cache key.
#[derive(Debug, Clone)]
pub(super) struct StageState {
    pub(super) config: Value,
    pub(super) run: ImageConfig,
    pub(super) layers: Vec<oci_spec::image::Descriptor>,
    pub(super) image: Option<Image>,
    pub(super) args: crate::config::Args,
    pub(super) key: Digest,
    /// When its newest layer was made (RFC 3339): the time its history entries and its
    /// image carry, so that a rebuild from the cache gives the very same image.
    pub(super) created: String,
    /// The stage is in `--no-cache-filter`: its steps run whatever the cache holds.
    pub(super) no_cache: bool,
    /// The image the stage stands on (its manifest digest, or `scratch`): what
    /// `--explain` names when a step's parent is its base.
    pub(super) base: String,
}

impl StageState {
    pub(super) fn diff_ids(&self) -> Vec<Digest> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().and_then(|s| s.parse().ok()))
            .collect()
    }

    /// A string field of the run config (`User`, `WorkingDir`), empty when unset.
    pub(super) fn config_str(&self, key: &str) -> String {
        self.run
            .config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// The working directory steps run and copy in: WORKDIR's, else `/`.
    pub(super) fn workdir(&self) -> String {
        Some(self.config_str("WorkingDir"))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// The variables a step's words expand with: ARGs, then Env over them.
    pub(super) fn scope(&self) -> BTreeMap<String, String> {
        let mut scope: BTreeMap<String, String> = self.args.iter().cloned().collect();
        scope.extend(self.run.env());
        scope
    }

    pub(super) fn from_image(image: Image, config: Value, key: Digest) -> StageState {
        let mut run = ImageConfig::from_base(
            config["config"].as_object().cloned().unwrap_or_default(),
            config["author"].as_str().map(str::to_string),
        );
        // As BuildKit: an image without PATH gets the default one.
        if !run.env().iter().any(|(k, _)| k == "PATH") {
            run.set_env("PATH", lb_runtime::DEFAULT_PATH);
        }
        let created = config["created"].as_str().unwrap_or("").to_string();
        StageState {
            layers: image.manifest.layers().clone(),
            base: image.manifest_digest.to_string(),
            image: Some(image),
            config,
            run,
            args: Default::default(),
            key,
            created,
            no_cache: false,
        }
    }
}
