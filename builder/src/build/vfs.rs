//! Steps on a store whose storage driver is vfs (no overlayfs): a RUN's rootfs is an active
//! snapshot, a full copy of the stage's tree, bound as the container's root; its layer is the
//! comparison of that tree with its parent (`LayerChanges::Trees`), and the tree becomes
//! the layer's snapshot. Views of images (COPY sources and destinations, bind mounts) are
//! the committed trees themselves. COPY, ADD and WORKDIR keep writing a fresh upper dir (as
//! on overlay): their layer is that dir's, and its tree is made from the layer blob when a
//! later step needs it (`Store::image_chain`). The overlay path does not come here.
//!
//! What a build made and did not commit (views, a failed step's snapshot) is removed when
//! the build ends.

use std::sync::atomic::AtomicU64;

use lb_layerstore::{Chain, Mounts, Snapshot, SnapshotKey, Snapshotter};

use super::*;

pub(super) struct VfsSteps {
    snapshotter: Box<dyn Snapshotter + Send + Sync>,
    /// Keys this build holds: removed at its end unless committed.
    keys: Mutex<Vec<SnapshotKey>>,
    next: AtomicU64,
}

impl VfsSteps {
    /// For a vfs store; `None` for overlay.
    pub(super) fn of(store: &Store) -> Option<VfsSteps> {
        (store.storage_driver() == lb_layerstore::StorageDriver::Vfs).then(|| VfsSteps {
            snapshotter: store.snapshotter(),
            keys: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        })
    }

    fn key(&self, what: &str) -> Result<SnapshotKey, BuildError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = SnapshotKey::new(&format!("build-{}-{what}-{n}", std::process::id()))
            .map_err(store_err)?;
        self.keys.lock().expect("keys").push(key.clone());
        Ok(key)
    }

    /// The chain of `image`'s trees, made where missing (`None` for no image or no layers).
    fn chain(store: &Store, image: Option<&Image>) -> Result<Option<Chain>, BuildError> {
        let chain = match image {
            Some(i) => store.image_chain(i).map_err(store_err)?,
            None => Chain::default(),
        };
        Ok((!chain.ids().is_empty()).then_some(chain))
    }

    /// The tree of `image`, read-only by convention (nothing mounts it writable).
    pub(super) fn view(&self, store: &Store, image: Option<&Image>) -> Result<PathBuf, BuildError> {
        let chain = Self::chain(store, image)?;
        let key = self.key("view")?;
        let mounts = self
            .snapshotter
            .view(&key, chain.as_ref())
            .map_err(store_err)?;
        tree_of(mounts)
    }

    /// A writable copy of `image`'s tree for a RUN step: its key and directory.
    pub(super) fn prepare(
        &self,
        store: &Store,
        image: Option<&Image>,
    ) -> Result<(SnapshotKey, PathBuf), BuildError> {
        let chain = Self::chain(store, image)?;
        let key = self.key("run")?;
        let mounts = self
            .snapshotter
            .prepare(&key, chain.as_ref())
            .map_err(store_err)?;
        Ok((key, tree_of(mounts)?))
    }

    /// The step's tree becomes the committed snapshot `name`.
    pub(super) fn commit(&self, key: &SnapshotKey, name: &Digest) -> Result<(), BuildError> {
        self.snapshotter.commit(key, name).map_err(store_err)?;
        self.keys.lock().expect("keys").retain(|k| k != key);
        Ok(())
    }
}

impl Drop for VfsSteps {
    fn drop(&mut self) {
        for key in self.keys.get_mut().expect("keys").drain(..) {
            let _ = self.snapshotter.remove(&Snapshot::Active(key));
        }
    }
}

/// A vfs snapshot's directory (vfs gives nothing but binds).
fn tree_of(mounts: Mounts) -> Result<PathBuf, BuildError> {
    match mounts {
        Mounts::Bind { source, .. } => Ok(source),
        m => Err(store_err(lb_layerstore::Error::Snapshot {
            key: format!("{m:?}"),
            reason: "a vfs snapshot that is not a directory".into(),
        })),
    }
}
