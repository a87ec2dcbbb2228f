//! The vfs driver: every snapshot a plain, full directory tree, for file systems or kernels
//! where overlayfs cannot be used (docker's and containerd's "vfs"/"native"). Preparing a
//! snapshot copies its parent's tree (`tree.rs`: reflinked where the file system can, so
//! the copy costs metadata only); committing renames the tree to
//! `snapshotter/vfs/committed/<chain hex>/`; a view binds a committed tree read-only,
//! without copying it. A layer's changes are found by comparing two trees (`differ.rs`).
//!
//! It knows its directory layout, nothing of layers, mounting or overlayfs.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::record::{ActiveDir, Kind, Record, remove_committed};
use super::{Chain, Mounts, Snapshot, SnapshotChanges, SnapshotKey, Snapshotter, not_found};
use crate::Error;
use crate::digest::Digest;
use crate::store::Store;

/// The tree inside an active snapshot's (or an empty view's) directory.
const FS: &str = "fs";

/// Snapshots as full directory trees.
#[derive(Debug, Clone)]
pub struct VfsSnapshotter {
    store: Store,
    committed: PathBuf,
    active: ActiveDir,
}

impl VfsSnapshotter {
    pub fn new(store: &Store) -> VfsSnapshotter {
        VfsSnapshotter {
            store: store.clone(),
            committed: store.layout().vfs_committed(),
            active: ActiveDir::new(store, crate::StorageDriver::Vfs),
        }
    }

    fn committed_path(&self, id: &Digest) -> PathBuf {
        self.store.layout().vfs_tree(id)
    }

    /// The committed tree `chain` names (`None` for the empty chain); it must exist. Only
    /// the top counts: a vfs tree holds its whole chain.
    fn parent_tree(&self, chain: Option<&Chain>) -> Result<Option<PathBuf>, Error> {
        let Some(top) = chain.and_then(Chain::top) else {
            return Ok(None);
        };
        let dir = self.committed_path(top);
        if !dir.is_dir() {
            return Err(not_found(&top.to_string(), "committed"));
        }
        Ok(Some(dir))
    }

    fn mounts_of(&self, dir: &Path, record: &Record) -> Result<Mounts, Error> {
        Ok(match record.kind {
            Kind::Active => Mounts::Bind {
                source: dir.join(FS),
                read_only: false,
            },
            Kind::View => Mounts::Bind {
                source: match self.parent_tree(Some(&record.chain()))? {
                    Some(tree) => tree,
                    None => dir.join(FS),
                },
                read_only: true,
            },
        })
    }

    fn create(
        &self,
        key: &SnapshotKey,
        parent: Option<&Chain>,
        kind: Kind,
    ) -> Result<Mounts, Error> {
        let tree = self.parent_tree(parent)?;
        let record = Record::new(kind, parent.map(|c| c.ids().to_vec()).unwrap_or_default());
        let dir = self.active.create(&self.store, key, &record, |tmp| {
            let at = tmp.join(FS);
            match (&tree, kind) {
                (Some(tree), Kind::Active) => super::tree::copy_tree(tree, &at),
                // A view of a tree binds that tree: nothing to copy.
                (Some(_), Kind::View) => Ok(()),
                (None, _) => fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&at)
                    .map_err(|e| Error::io(&at, e)),
            }
        })?;
        self.mounts_of(&dir, &record)
    }
}

impl Snapshotter for VfsSnapshotter {
    fn prepare(&self, key: &SnapshotKey, parent: Option<&Chain>) -> Result<Mounts, Error> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &SnapshotKey, parent: Option<&Chain>) -> Result<Mounts, Error> {
        self.create(key, parent, Kind::View)
    }

    /// The caller has stopped writing the tree.
    fn commit(&self, key: &SnapshotKey, name: &Digest) -> Result<(), Error> {
        self.active.read_for_commit(key)?;
        let _writing = self.store.writing()?;
        let tree = self.active.path(key).join(FS);
        let target = self.committed_path(name);
        if !target.is_dir() {
            fs::create_dir_all(&self.committed).map_err(|e| Error::io(&self.committed, e))?;
            // Durable before it is named: the store's unsynced records (unsynced.rs) cover
            // overlay snapshots only, so one syncfs here (vfs, the fallback, pays it)
            // keeps a machine crash from leaving a cut tree under a chain id.
            let fd = fs::File::open(&tree).map_err(|e| Error::io(&tree, e))?;
            rustix::fs::syncfs(&fd).map_err(|e| Error::io(&tree, e.into()))?;
            match fs::rename(&tree, &target) {
                Ok(()) => fs::File::open(&self.committed)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::io(&self.committed, e))?,
                // Someone committed equal content first: theirs stands.
                Err(_) if target.is_dir() => {}
                Err(e) => return Err(Error::io(&target, e)),
            }
        }
        self.active.remove(&self.store, key)
    }

    /// Any tree is its own view, bound read-only: nothing is copied or made.
    fn view_in_place(&self, parent: &Chain) -> Result<Option<Mounts>, Error> {
        Ok(self.parent_tree(Some(parent))?.map(|tree| Mounts::Bind {
            source: tree,
            read_only: true,
        }))
    }

    /// The tree and its parent's, to compare; a tree on nothing is all changes (what an
    /// overlay's first layer holds).
    fn changes(&self, key: &SnapshotKey) -> Result<SnapshotChanges, Error> {
        let record = self.active.read_for_commit(key)?;
        let tree = self.active.path(key).join(FS);
        Ok(match self.parent_tree(Some(&record.chain()))? {
            Some(lower) => SnapshotChanges::Trees { lower, upper: tree },
            None => SnapshotChanges::Upper(tree),
        })
    }

    /// A tree is a whole file system, not a layer's changes: `dir` is dropped, and the tree
    /// made from the layer blob by `Store::image_chain` when a step stands on it (copying
    /// the parent's tree here, for every COPY, would cost that copy even where no later
    /// step needs the tree).
    fn commit_changes(&self, dir: &Path, _name: &Digest) -> Result<(), Error> {
        fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    fn remove(&self, snapshot: &Snapshot) -> Result<(), Error> {
        match snapshot {
            Snapshot::Active(key) => self.active.remove(&self.store, key),
            Snapshot::Committed(id) => {
                remove_committed(&self.store, &self.active, id, &self.committed_path(id))
            }
        }
    }

    fn mounts(&self, key: &SnapshotKey) -> Result<Mounts, Error> {
        let record = self.active.read(key)?;
        self.mounts_of(&self.active.path(key), &record)
    }

    fn exists(&self, snapshot: &Snapshot) -> bool {
        match snapshot {
            Snapshot::Active(key) => self.active.read(key).is_ok(),
            Snapshot::Committed(id) => self.committed_path(id).is_dir(),
        }
    }

    /// The differ's comparison with the parent tree, by metadata only
    /// ([`crate::differ::changed_bytes`]: cheap, no file content is read).
    fn usage(&self, key: &SnapshotKey) -> Result<u64, Error> {
        let record = self.active.read(key)?;
        if record.kind == Kind::View {
            return Ok(0);
        }
        let tree = self.active.path(key).join(FS);
        match self.parent_tree(Some(&record.chain()))? {
            Some(parent) => crate::differ::changed_bytes(&parent, &tree),
            None => Ok(super::file_bytes(&tree, &mut Default::default())),
        }
    }
}
