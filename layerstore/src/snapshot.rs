//! Snapshots: each layer of an image unpacked once into `snapshots/<chainid>/`, shared
//! read-only by every container and build that stacks it as an overlay lower directory.
//!
//! A snapshot is applied into a temporary directory beside its final place, checked against
//! the layer's diffID, and committed by rename: a crash leaves a `.tmp-*` directory that
//! prune removes, never a half snapshot under a chain id. Its files are not synced one by
//! one: the store records it as unsynced first (see `unsynced.rs`), so that one a machine
//! crash may have damaged is unpacked again from its blob. Two processes preparing the same
//! snapshot both apply; the first rename wins and the other drops its copy.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::Error;
use crate::apply::{ApplyOptions, apply_layer};
use crate::digest::Digest;
use crate::image::Image;
use crate::store::Store;

/// OCI's ChainID: the first layer's diffID, then sha256(parent chain id + " " + diffID).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl Store {
    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.layout().snapshots()
    }

    /// The directory of the snapshot `chain_id` (whether or not it exists).
    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.layout().snapshot(chain_id)
    }

    /// `image`'s layer descriptors and their diffIDs, as many of each (a manifest and a
    /// config that disagree are a damaged image).
    pub(crate) fn layers_and_diff_ids<'i>(
        &self,
        image: &'i Image,
    ) -> Result<(&'i [oci_spec::image::Descriptor], Vec<Digest>), Error> {
        let diff_ids = image.diff_ids()?;
        let layers = image.manifest.layers();
        if layers.len() != diff_ids.len() {
            return Err(Error::Corrupt {
                path: self.content().path(&image.manifest_digest),
                reason: format!(
                    "{} layers but {} diff_ids in the config",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        Ok((layers, diff_ids))
    }

    /// Unpacks every layer of `image` not unpacked yet; returns the snapshot directories,
    /// lowest layer first.
    pub fn prepare_snapshots(&self, image: &Image) -> Result<Vec<PathBuf>, Error> {
        let _writing = self.writing()?;
        let (layers, diff_ids) = self.layers_and_diff_ids(image)?;
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut out = Vec::new();
        for ((layer, diff_id), chain) in layers.iter().zip(&diff_ids).zip(chain_ids(&diff_ids)) {
            let target = self.snapshot_path(&chain);
            if !target.is_dir() {
                let blob = Digest::from_str(layer.digest().as_ref())?;
                self.unpack_snapshot(self.content().open_blob(&blob)?, diff_id, &chain)?;
            }
            out.push(target);
        }
        Ok(out)
    }

    /// Keeps `dir`, the upper directory a layer was just diffed from (overlay whiteouts and
    /// all: the snapshot format), as the snapshot `chain_id`, by rename: a build step's
    /// result is never unpacked again. When that snapshot exists already, or `dir` is on
    /// another file system, `dir` is removed and the existing or a later unpacked snapshot
    /// serves. Returns whether `dir` became the snapshot.
    pub fn adopt_snapshot(&self, chain_id: &Digest, dir: &Path) -> Result<bool, Error> {
        let snapshots = self.snapshots_dir();
        fs::create_dir_all(&snapshots).map_err(|e| Error::io(&snapshots, e))?;
        let target = self.snapshot_path(chain_id);
        if !target.is_dir() {
            self.mark_unsynced(&chain_id.hex())?;
        }
        if !target.is_dir() && fs::rename(dir, &target).is_ok() {
            fs::File::open(&snapshots)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&snapshots, e))?;
            return Ok(true);
        }
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(false)
    }

    /// Unpacks `layer` (a layer blob's bytes: plain, gzip or zstd) as the snapshot
    /// `chain_id`, checked against `diff_id`: applied into a temporary directory beside it,
    /// committed by rename (a pull streams layers from the network straight through this).
    /// Does nothing when the snapshot exists; the caller holds [`Store::writing`]. Returns
    /// whether this call made the snapshot (a caller that finds the layer's bytes bad
    /// afterwards removes only a snapshot it made).
    pub fn unpack_snapshot(
        &self,
        layer: impl std::io::Read,
        diff_id: &Digest,
        chain_id: &Digest,
    ) -> Result<bool, Error> {
        let target = &self.snapshot_path(chain_id);
        if target.is_dir() {
            return Ok(false);
        }
        let dir = self.snapshots_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        crate::spread_subdirectories(&dir);
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let stats = apply_layer(layer, tmp.path(), ApplyOptions::for_snapshot())
            .map_err(|e| e.unpacking(diff_id))?;
        if stats.diff_id != *diff_id {
            return Err(Error::DigestMismatch {
                expected: *diff_id,
                actual: stats.diff_id,
            });
        }
        let tmp = tmp.keep();
        self.mark_unsynced(&chain_id.hex())?;
        match fs::rename(&tmp, target) {
            Ok(()) => {}
            // Someone else committed the same snapshot first: theirs stands.
            Err(_) if target.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                return Ok(false);
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(Error::io(target, e));
            }
        }
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&dir, e))?;
        Ok(true)
    }

    /// Removes snapshots no named image or container reaches and leftovers of interrupted applies;
    /// returns how many directories went. The caller holds the gc lock.
    pub(crate) fn prune_snapshots(&self, reached: &crate::store::LiveImages) -> Result<u64, Error> {
        let dir = self.snapshots_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut live = std::collections::HashSet::new();
        for image in &reached.images {
            live.extend(chain_ids(&image.diff_ids()?).iter().map(Digest::hex));
        }
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                // Out of sight first: a kill midway leaves no half snapshot under its name.
                self.discard(&entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Reference;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a, b]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn prepared_once_checked_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "etc/motd", &b"hi\n"[..]).unwrap();
        let layer = b.into_inner().unwrap();
        let name: Reference = "snap:1".parse().unwrap();
        store
            .import_rootfs(&layer[..], &name, "test", &Default::default())
            .unwrap();
        let image = store.image(&name).unwrap();
        let dirs = store.prepare_snapshots(&image).unwrap();
        assert_eq!(dirs.len(), 1);
        assert_eq!(fs::read(dirs[0].join("etc/motd")).unwrap(), b"hi\n");
        // Prepared again: the same directory, not applied twice.
        fs::write(dirs[0].join("marker"), b"").unwrap();
        assert_eq!(store.prepare_snapshots(&image).unwrap(), dirs);
        assert!(dirs[0].join("marker").exists());
        // Unnamed, it goes with a prune, together with leftovers of interrupted applies.
        fs::create_dir(dir.path().join("snapshots/.tmp-killed")).unwrap();
        store.remove_name(&name).unwrap();
        store.prune().unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_stored_upper_dir_becomes_its_own_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("app")).unwrap();
        fs::write(upper.join("app/main"), b"built").unwrap();
        let _writing = store.writing().unwrap();
        let layer = store
            .store_layer(
                crate::LayerChanges::Upper(&upper),
                crate::DiffOptions::default(),
            )
            .unwrap();
        assert_eq!(layer.digest, layer.diff_id, "uncompressed");
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        });
        let image = store.write_image(&config, &[], &[layer]).unwrap();
        assert_eq!(image.manifest.layers().len(), 1);
        // The upper dir is moved into place: nothing is unpacked for the image.
        assert!(store.adopt_snapshot(&layer.diff_id, &upper).unwrap());
        assert!(!upper.exists());
        let dirs = store.prepare_snapshots(&image).unwrap();
        assert_eq!(fs::read(dirs[0].join("app/main")).unwrap(), b"built");
        // A second result of the same layer is dropped; the first stands.
        fs::create_dir_all(&upper).unwrap();
        assert!(!store.adopt_snapshot(&layer.diff_id, &upper).unwrap());
        assert!(!upper.exists() && dirs[0].join("app/main").exists());
        // Named, it resolves like any image.
        drop(_writing);
        let name: Reference = "built:1".parse().unwrap();
        store.name_image(&name, &image).unwrap();
        assert_eq!(
            store.image(&name).unwrap().manifest_digest,
            image.manifest_digest
        );
    }

    #[test]
    fn a_layer_that_does_not_match_its_diff_id_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "x", &b"x"[..]).unwrap();
        let layer = b.into_inner().unwrap();
        let blob = store.content().put(&layer).unwrap();
        let wrong = Digest::of(b"something else");
        fs::create_dir_all(dir.path().join("snapshots")).unwrap();
        let e = store
            .unpack_snapshot(
                store.content().open_blob(&blob.digest).unwrap(),
                &wrong,
                &wrong,
            )
            .unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
            0
        );
    }
}
