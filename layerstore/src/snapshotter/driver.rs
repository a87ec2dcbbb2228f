//! Which snapshotter a store uses: its storage driver, chosen when the store is made
//! (`--storage-driver`, `$LB_STORAGE_DRIVER`, else overlay, else vfs where overlayfs cannot
//! be mounted) and remembered in `<root>/storage-driver`, as docker's data root remembers
//! its graph driver: a store's snapshots are only readable by the driver that made them.
//! And the one way an image's layers become the driver's committed snapshots
//! ([`Store::image_chain`]).
//!
//! It knows the store's root and the two drivers; whether overlayfs can be mounted is the
//! caller's question (this crate mounts nothing).

use std::fs;
use std::str::FromStr;

use super::{Chain, OverlaySnapshotter, Snapshot, SnapshotKey, Snapshotter, VfsSnapshotter};
use crate::Error;
use crate::digest::Digest;
use crate::image::Image;
use crate::store::Store;

/// A store's way of keeping file trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageDriver {
    /// Layers stacked by overlayfs (the default).
    #[default]
    Overlay,
    /// Plain full copies, for kernels or containers where overlayfs cannot be mounted.
    Vfs,
}

impl StorageDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageDriver::Overlay => "overlay",
            StorageDriver::Vfs => "vfs",
        }
    }
}

impl std::fmt::Display for StorageDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageDriver {
    type Err = Error;

    fn from_str(s: &str) -> Result<StorageDriver, Error> {
        match s {
            "overlay" | "overlay2" => Ok(StorageDriver::Overlay),
            "vfs" => Ok(StorageDriver::Vfs),
            _ => Err(Error::InvalidSetting {
                variable: "storage driver",
                value: s.to_string(),
                reason: "expected overlay or vfs".into(),
            }),
        }
    }
}

impl Store {
    /// The driver recorded in the store, `None` for a store that has not recorded one.
    pub(crate) fn recorded_driver(&self) -> Result<Option<StorageDriver>, Error> {
        let at = self.layout().storage_driver_file();
        match fs::read_to_string(&at) {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| Error::Corrupt {
                path: at,
                reason: format!("unknown storage driver {:?}", s.trim()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&at, e)),
        }
    }

    /// Records `driver` as a new store's (the caller holds the index lock).
    pub(crate) fn record_driver(&self, driver: StorageDriver) -> Result<StorageDriver, Error> {
        let line = format!("{driver}\n");
        crate::store::write_atomic(&self.layout().storage_driver_file(), line.as_bytes())?;
        Ok(driver)
    }

    /// The driver of an existing store: the recorded one (which `wanted` must match), or
    /// for a store made before drivers were recorded, overlay (the only one then), recorded.
    pub(crate) fn settle_driver(
        &self,
        wanted: Option<StorageDriver>,
    ) -> Result<StorageDriver, Error> {
        let existing = match self.recorded_driver()? {
            Some(d) => d,
            None => {
                let _index = self.lock("index.lock")?;
                match self.recorded_driver()? {
                    Some(d) => d,
                    // Best effort: a reader who may not write the root still reads it.
                    None => self
                        .record_driver(StorageDriver::Overlay)
                        .unwrap_or(StorageDriver::Overlay),
                }
            }
        };
        match wanted {
            Some(w) if w != existing => Err(Error::DriverMismatch {
                wanted: w,
                existing,
                root: self.root().to_path_buf(),
            }),
            _ => Ok(existing),
        }
    }

    /// The store's snapshotter.
    pub fn snapshotter(&self) -> Box<dyn Snapshotter + Send + Sync> {
        match self.storage_driver() {
            StorageDriver::Overlay => Box::new(OverlaySnapshotter::new(self)),
            StorageDriver::Vfs => Box::new(VfsSnapshotter::new(self)),
        }
    }

    /// The committed snapshots of `image`'s layers in the store's driver, made from the
    /// layer blobs where missing; returns their chain. Overlay: `prepare_snapshots` (each
    /// layer unpacked once into `snapshots/`). Vfs: each missing tree is a copy of the one
    /// below with the layer applied, deletions done (checked against its diffID).
    pub fn image_chain(&self, image: &Image) -> Result<Chain, Error> {
        if self.storage_driver() == StorageDriver::Overlay {
            self.prepare_snapshots(image)?;
            return Ok(Chain::of_diff_ids(&image.diff_ids()?));
        }
        let _writing = self.writing()?;
        let (layers, diff_ids) = self.layers_and_diff_ids(image)?;
        let snapshotter = self.snapshotter();
        let mut chain = Chain::default();
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            let below = chain.clone();
            chain = chain.child(diff_id);
            let top = *chain.top().expect("a layer's chain");
            if snapshotter.exists(&Snapshot::Committed(top)) {
                continue;
            }
            let blob = Digest::from_str(layer.digest().as_ref())?;
            let key = SnapshotKey::new(&format!(
                "unpack-{}-{}-{}",
                &top.hex()[..32],
                std::process::id(),
                next_unpack()
            ))?;
            let parent = (!below.ids().is_empty()).then_some(&below);
            let mounts = snapshotter.prepare(&key, parent)?;
            let applied = self
                .content()
                .open_blob(&blob)
                .and_then(|r| crate::differ::apply(r, &mounts))
                .and_then(|stats| match stats.diff_id == *diff_id {
                    true => Ok(()),
                    false => Err(Error::Corrupt {
                        path: self.content().path(&blob),
                        reason: format!(
                            "the layer's diffID is {}, its image says {diff_id}",
                            stats.diff_id
                        ),
                    }),
                })
                .and_then(|()| snapshotter.commit(&key, &top));
            if let Err(e) = applied {
                let _ = snapshotter.remove(&Snapshot::Active(key));
                return Err(e);
            }
        }
        Ok(chain)
    }
}

/// A number for unpack keys, distinct within the process (threads of one build).
fn next_unpack() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_remembers_its_driver_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let s = Store::open_with(&root, None, || StorageDriver::Vfs).unwrap();
        assert_eq!(s.storage_driver(), StorageDriver::Vfs);
        // The default is asked for a new store only.
        let s = Store::open_with(&root, None, || panic!("asked again")).unwrap();
        assert_eq!(s.storage_driver(), StorageDriver::Vfs);
        assert_eq!(
            Store::open(&root).unwrap().storage_driver(),
            StorageDriver::Vfs
        );
        let e = Store::open_with(&root, Some(StorageDriver::Overlay), || panic!()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("\"overlay\" does not match") && text.contains("existing driver \"vfs\""),
            "{text}"
        );
    }

    #[test]
    fn a_store_made_before_drivers_is_overlay() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        fs::remove_file(dir.path().join("storage-driver")).unwrap();
        let e = Store::open_with(dir.path(), Some(StorageDriver::Vfs), || panic!()).unwrap_err();
        assert!(matches!(e, Error::DriverMismatch { .. }), "{e}");
        let s = Store::open_with(dir.path(), None, || panic!("not a new store")).unwrap();
        assert_eq!(s.storage_driver(), StorageDriver::Overlay);
        assert_eq!(
            fs::read_to_string(dir.path().join("storage-driver")).unwrap(),
            "overlay\n"
        );
        assert!("zfs".parse::<StorageDriver>().is_err());
    }
}
