//! Images: an OCI manifest, its config and its layers, reachable from a name.

use std::io::{self, Read};
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};
use serde_json::json;

use crate::Error;
use crate::apply::decompressed;
use crate::content::BlobInfo;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::Store;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Local layers are kept uncompressed: building never pays for compression.
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image as stored: what a name resolves to.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    /// The image ID, as docker shows it.
    pub config_digest: Digest,
    pub config: ImageConfiguration,
}

impl Image {
    /// Bytes of all layers as stored.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }

    /// The blobs it is made of: its manifest, config and layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let layers = self
            .manifest
            .layers()
            .iter()
            .filter_map(|l| l.digest().as_ref().parse::<Digest>().ok());
        [self.manifest_digest, self.config_digest]
            .into_iter()
            .chain(layers)
            .collect()
    }

    /// Its layers' diffIDs, lowest first, as its config lists them.
    pub fn diff_ids(&self) -> Result<Vec<Digest>, Error> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect()
    }

    /// The chain id of all its layers (OCI's ChainID of the last): its file system's
    /// content, whatever its config says; `None` for an image with no layers.
    pub fn chain_id(&self) -> Result<Option<Digest>, Error> {
        Ok(crate::chain_ids(&self.diff_ids()?).pop())
    }
}

/// The platform this lb runs on, in OCI's words.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// RFC 3339 in UTC for seconds since the epoch (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 time (`2023-11-14T22:13:20.5+01:00`), the form
/// image configs carry; `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let n = s.len();
            let (oh, om) = (num(n - 5..n - 3)?, num(n - 2..n)?);
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days since the epoch from a civil date (Howard Hinnant's algorithm, the inverse of
    // the one in `rfc3339`).
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// Now, or `SOURCE_DATE_EPOCH` when set, for reproducible images.
pub fn creation_time() -> i64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Reads the image `name` points at, verifying manifest and config against their digests.
    pub fn image(&self, name: &Reference) -> Result<Image, Error> {
        let desc = self.resolve(name)?;
        self.image_at(&desc)
    }

    /// Reads the image a manifest descriptor points at.
    pub fn image_at(&self, desc: &Descriptor) -> Result<Image, Error> {
        self.image_by_manifest(Store::descriptor_digest(desc)?)
    }

    /// The image whose manifest is `manifest_digest`, read and verified.
    pub fn image_by_manifest(&self, manifest_digest: Digest) -> Result<Image, Error> {
        let bytes = self.content().read_verified(&manifest_digest)?;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| Error::Corrupt {
            path: self.content().path(&manifest_digest),
            reason: format!("{what}: {e}"),
        };
        let manifest =
            ImageManifest::from_reader(&bytes[..]).map_err(|e| corrupt("manifest", &e))?;
        let config_digest = Digest::from_str(manifest.config().digest().as_ref())?;
        let config_bytes = self.content().read_verified(&config_digest)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| corrupt("image config", &e))?;
        Ok(Image {
            manifest_digest,
            manifest,
            config_digest,
            config,
        })
    }

    /// Whether any named image uses `digest` as manifest, config or layer.
    pub fn blob_is_referenced(&self, digest: &Digest) -> Result<bool, Error> {
        for (_, desc) in self.names()? {
            let Ok(image) = self.image_at(&desc) else {
                continue;
            };
            if image.manifest_digest == *digest
                || image.config_digest == *digest
                || image
                    .manifest
                    .layers()
                    .iter()
                    .any(|l| l.digest().as_ref() == digest.to_string())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `lb import`: a root file system tar (plain, gzip or zstd) becomes a one-layer image
    /// named `name`, with `run_config` as its config's `config` object (docker's
    /// `import --change`). Returns the image (config) digest.
    pub fn import_rootfs(
        &self,
        rootfs: impl Read,
        name: &Reference,
        source: &str,
        run_config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Digest, Error> {
        let _writing = self.writing()?;
        // The layer is stored uncompressed, hashed as it is written: its digest is the diffID.
        let mut tar = decompressed(rootfs)?;
        let mut w = self.content().writer()?;
        io::copy(&mut tar, &mut w).map_err(|e| Error::layer("reading the root file system", e))?;
        let layer = w.commit(None, None)?;
        // A tar must at least read as one: refuse what is not, and leave the store as it was.
        let read_back = || -> io::Result<()> {
            let mut check =
                tar::Archive::new(std::fs::File::open(self.content().path(&layer.digest))?);
            for entry in check.entries()? {
                entry?;
            }
            Ok(())
        };
        if let Err(e) = read_back() {
            if !self.blob_is_referenced(&layer.digest)? {
                self.content().remove(&layer.digest)?;
            }
            return Err(Error::layer("reading the root file system as tar", e));
        }

        let (os, arch) = host_platform();
        let created = rfc3339(creation_time());
        let config = json!({
            "created": created,
            "architecture": arch,
            "os": os,
            "config": run_config,
            "rootfs": { "type": "layers", "diff_ids": [layer.digest.to_string()] },
            "history": [{ "created": created, "created_by": "lb import", "comment": format!("Imported from {source}") }],
        });
        let layer = StoredLayer {
            diff_id: layer.digest,
            digest: layer.digest,
            size: layer.size,
        };
        let image = self.write_image(&config, &[], &[layer])?;
        self.name_image(name, &image)?;
        Ok(image.config_digest)
    }

    /// Points `name` at `image`.
    pub fn name_image(&self, name: &Reference, image: &Image) -> Result<(), Error> {
        let digest = oci_spec::image::Digest::from_str(&image.manifest_digest.to_string())
            .map_err(|e| Error::InvalidDigest(e.to_string()))?;
        let size = self.content().info(&image.manifest_digest)?.size;
        self.set_name(
            name,
            &Descriptor::new(MediaType::ImageManifest, size, digest),
        )
    }

    /// Turns a step's or container's changes (an upper directory, or two trees) into a
    /// stored layer, uncompressed (its digest is its diffID: building never pays for
    /// compression). The caller holds [`Store::writing`] until the layer is named or
    /// referenced, so that a prune cannot take it.
    pub fn store_layer(
        &self,
        changes: crate::LayerChanges<'_>,
        opts: crate::diff::DiffOptions,
    ) -> Result<StoredLayer, Error> {
        // The tar writer hashes the tar for its diffID, which for an uncompressed layer is
        // the blob's digest: the blob writer does not hash it a second time.
        let mut w = self.content().writer_hashed_by_caller()?;
        let diff = changes.write(&mut w, crate::diff::LayerCompression::None, opts)?;
        let blob = w.commit(diff.diff_id, diff.size)?;
        Ok(StoredLayer {
            digest: blob.digest,
            size: blob.size,
            diff_id: diff.diff_id,
        })
    }

    /// Stores an image: `config` (an OCI/docker image config; its `rootfs.diff_ids` should
    /// list the layers') and a manifest of `parent_layers` (descriptors as another
    /// manifest has them) followed by `layers`. Unnamed: the caller names it, or keeps it
    /// reachable otherwise. Returns the image as read back.
    pub fn write_image(
        &self,
        config: &serde_json::Value,
        parent_layers: &[Descriptor],
        layers: &[StoredLayer],
    ) -> Result<Image, Error> {
        let config_bytes = to_bytes(config);
        let config = BlobInfo {
            digest: Digest::of(&config_bytes),
            size: config_bytes.len() as u64,
        };
        let mut all: Vec<serde_json::Value> = parent_layers
            .iter()
            .map(|l| serde_json::to_value(l).expect("descriptor serialises"))
            .collect();
        all.extend(layers.iter().map(|l| {
            json!({ "mediaType": MEDIA_LAYER_TAR, "digest": l.digest.to_string(), "size": l.size })
        }));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": { "mediaType": MEDIA_CONFIG, "digest": config.digest.to_string(), "size": config.size },
            "layers": all,
        });
        let manifest = self
            .content()
            .put_all(&[&config_bytes, &to_bytes(&manifest)])?[1];
        self.image_by_manifest(manifest.digest)
    }
}

/// A layer in the content store: its blob and the diffID of what it unpacks to (equal
/// for the uncompressed layers lb makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredLayer {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// What a new layer on top of an image says about itself (its history entry) and how it
/// changes the image's run config.
#[derive(Debug, Clone, Default)]
pub struct LayerCommit {
    pub created_by: String,
    pub comment: String,
    pub author: String,
    /// Replaces keys of the image config's `config` object (docker's `commit --change`).
    pub config_changes: serde_json::Map<String, serde_json::Value>,
}

impl Store {
    /// Makes a container's changes a new layer on top of `parent` (an image with one more
    /// layer, stored uncompressed so its digest is its diffID) and names it `name` when
    /// given. Returns the new image.
    pub fn commit_layer(
        &self,
        parent: &Image,
        changes: crate::LayerChanges<'_>,
        name: Option<&Reference>,
        what: &LayerCommit,
    ) -> Result<Image, Error> {
        let _writing = self.writing()?;
        let layer = self.store_layer(changes, crate::diff::DiffOptions::default())?;
        let parent_config = self.content().read_verified(&parent.config_digest)?;
        let mut config: serde_json::Value =
            serde_json::from_slice(&parent_config).map_err(|e| Error::Corrupt {
                path: self.content().path(&parent.config_digest),
                reason: e.to_string(),
            })?;
        let created = rfc3339(creation_time());
        config["created"] = json!(created);
        if !what.author.is_empty() {
            config["author"] = json!(what.author);
        }
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        for (k, v) in &what.config_changes {
            config["config"][k] = v.clone();
        }
        if !config["rootfs"]["diff_ids"].is_array() {
            config["rootfs"] = json!({ "type": "layers", "diff_ids": [] });
        }
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("array")
            .push(json!(layer.digest.to_string()));
        let mut entry = json!({ "created": created, "created_by": what.created_by });
        if !what.comment.is_empty() {
            entry["comment"] = json!(what.comment);
        }
        if !what.author.is_empty() {
            entry["author"] = json!(what.author);
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => config["history"] = json!([entry]),
        }
        let image = self.write_image(&config, parent.manifest.layers(), &[layer])?;
        if let Some(name) = name {
            self.name_image(name, &image)?;
        }
        Ok(image)
    }
}

fn to_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 1_700_000_000, 951_782_400, -86_401, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20"), None);
        assert_eq!(parse_rfc3339("2023-13-14T22:13:20Z"), None);
    }

    #[test]
    fn import_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hello", &b"hi\n"[..]).unwrap();
        let layer = b.into_inner().unwrap();
        let name: Reference = "imported:v1".parse().unwrap();
        let id = store
            .import_rootfs(&layer[..], &name, "rootfs.tar", &Default::default())
            .unwrap();
        let image = store.image(&name).unwrap();
        assert_eq!(image.config_digest, id);
        assert_eq!(image.manifest.layers().len(), 1);
        assert_eq!(image.size(), layer.len() as u64);
        assert_eq!(
            image.config.rootfs().diff_ids()[0],
            Digest::of(&layer).to_string()
        );
        // Not a tar: refused, and the name is not created.
        let bad: Reference = "bad".parse().unwrap();
        assert!(
            store
                .import_rootfs(
                    &b"not a tar at all, clearly"[..],
                    &bad,
                    "x",
                    &Default::default()
                )
                .is_err()
        );
        assert!(store.resolve(&bad).is_err());
        assert_eq!(store.content().list().unwrap().len(), 3);
    }
}
