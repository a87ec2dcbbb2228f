//! The build's snapshots, through the store's `Snapshotter` whatever its driver: a RUN's
//! rootfs is an active snapshot on the stage's chain (`prepare`: overlay stacks the
//! chain's layers below a fresh upper dir, vfs copies the stage's tree), turned into the
//! runtime's rootfs by `lb_runtime::Rootfs::of_mounts`; its layer is written from the
//! snapshotter's `changes` and the snapshot committed under the layer's ChainID. Views of
//! images (COPY sources and destinations, bind mounts, WORKDIR's lookups) are read-only
//! views made of committed directories as they are (`view_in_place`: an overlay's layers,
//! a vfs tree; nothing is made for them), else (the empty chain) a keyed view.
//!
//! COPY, ADD and WORKDIR write a fresh directory of the layer's changes outside any
//! snapshot (in the build's `run/`), on every driver: an active snapshot would cost vfs a
//! copy of the stage's whole tree per COPY. The snapshotter keeps that directory as the
//! committed snapshot where it keeps layers so (`commit_changes`: overlay renames it into
//! place; vfs makes the tree from the layer blob when a step stands on it).
//!
//! What a build made and did not commit (keyed views, a failed step's snapshot) is
//! removed when the build ends (`Drop`).

use std::sync::atomic::AtomicU64;

use lb_layerstore::{Chain, Mounts, Snapshot, SnapshotChanges, SnapshotKey, Snapshotter};

use super::*;

pub(super) struct StepSnapshots {
    snapshotter: Box<dyn Snapshotter + Send + Sync>,
    /// Keys this build holds: removed at its end unless committed.
    keys: Mutex<Vec<SnapshotKey>>,
    next: AtomicU64,
}

impl StepSnapshots {
    pub(super) fn new(store: &Store) -> StepSnapshots {
        StepSnapshots {
            snapshotter: store.snapshotter(),
            keys: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    fn key(&self, what: &str) -> Result<SnapshotKey, BuildError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = SnapshotKey::new(&format!("build-{}-{what}-{n}", std::process::id()))
            .map_err(store_err)?;
        self.keys.lock().expect("keys").push(key.clone());
        Ok(key)
    }

    fn forget(&self, key: &SnapshotKey) {
        self.keys.lock().expect("keys").retain(|k| k != key);
    }

    /// The chain of `image`'s committed snapshots, made where missing (`None` for no image
    /// or no layers).
    fn chain(store: &Store, image: Option<&Image>) -> Result<Option<Chain>, BuildError> {
        let chain = match image {
            Some(i) => store.image_chain(i).map_err(store_err)?,
            None => Chain::default(),
        };
        Ok((!chain.ids().is_empty()).then_some(chain))
    }

    /// A read-only view of `image`'s file system.
    pub(super) fn view(&self, store: &Store, image: Option<&Image>) -> Result<Mounts, BuildError> {
        let chain = Self::chain(store, image)?;
        if let Some(chain) = &chain
            && let Some(mounts) = self.snapshotter.view_in_place(chain).map_err(store_err)?
        {
            return Ok(mounts);
        }
        let key = self.key("view")?;
        self.snapshotter
            .view(&key, chain.as_ref())
            .map_err(store_err)
    }

    /// A new active snapshot on `image`'s file system, for a RUN step: its key and mounts.
    pub(super) fn prepare(
        &self,
        store: &Store,
        image: Option<&Image>,
    ) -> Result<(SnapshotKey, Mounts), BuildError> {
        let chain = Self::chain(store, image)?;
        let key = self.key("run")?;
        let mounts = self
            .snapshotter
            .prepare(&key, chain.as_ref())
            .map_err(store_err)?;
        Ok((key, mounts))
    }

    /// Where the active snapshot `key`'s changes are, to write its layer from.
    pub(super) fn changes(&self, key: &SnapshotKey) -> Result<SnapshotChanges, BuildError> {
        self.snapshotter.changes(key).map_err(store_err)
    }

    /// The active snapshot `key` becomes the committed snapshot `name`.
    pub(super) fn commit(&self, key: &SnapshotKey, name: &Digest) -> Result<(), BuildError> {
        self.snapshotter.commit(key, name).map_err(store_err)?;
        self.forget(key);
        Ok(())
    }

    /// `dir`, a step's fresh directory of changes, kept as the committed snapshot `name`
    /// where the driver keeps layers so (gone after, either way).
    pub(super) fn commit_changes(&self, dir: &Path, name: &Digest) -> Result<(), BuildError> {
        self.snapshotter
            .commit_changes(dir, name)
            .map_err(store_err)
    }
}

impl Drop for StepSnapshots {
    fn drop(&mut self) {
        for key in self.keys.get_mut().expect("keys").drain(..) {
            let _ = self.snapshotter.remove(&Snapshot::Active(key));
        }
    }
}
