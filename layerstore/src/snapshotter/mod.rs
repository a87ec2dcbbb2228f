//! The snapshotter seam, after containerd's: file trees as snapshots that callers prepare,
//! view, commit and remove, and that they reach only through [`Mounts`], a value saying how
//! to mount a root file system. Builds and containers then never assume a directory
//! layout, and a second way of keeping trees (`vfs`: plain full copies, for file systems
//! or kernels without overlayfs) is one more implementation of [`Snapshotter`].
//!
//! A snapshot is *active* (writable, made by [`Snapshotter::prepare`]), a *view*
//! (read-only, [`Snapshotter::view`]), both named by the caller's [`SnapshotKey`], or
//! *committed* (immutable, made by [`Snapshotter::commit`] from an active one), named by
//! its OCI ChainID so that equal content stacked on equal parents is kept once. A parent
//! is given as a [`Chain`]: the committed snapshots from the bottom layer up, which is all
//! an overlay needs and what an image's diff_ids give (`Chain::of_diff_ids`).
//!
//! This module knows nothing of processes, mount calls, images or builds: [`Mounts`] is
//! data, which the runtime turns into a mount (it must not depend on the runtime crate).

mod driver;
mod gc;
mod overlay;
mod owner;
mod record;
mod tree;
mod vfs;

use std::path::{Path, PathBuf};

use crate::Error;
use crate::differ::LayerChanges;
use crate::digest::Digest;
use crate::snapshot::chain_ids;

pub use driver::StorageDriver;
pub use overlay::OverlaySnapshotter;
pub use tree::copy_tree;
pub(crate) use tree::file_bytes;
pub use vfs::VfsSnapshotter;

/// A committed snapshot's parents: ChainIDs (as [`chain_ids`] computes them), the bottom
/// layer first; the last one is the snapshot the chain names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain(Vec<Digest>);

impl Chain {
    /// The chain of an image whose layers have these diffIDs, bottom first.
    pub fn of_diff_ids(diff_ids: &[Digest]) -> Chain {
        Chain(chain_ids(diff_ids))
    }

    /// The chain of ChainIDs `ids`, bottom first (each one the chain id of its prefix).
    pub fn from_chain_ids(ids: Vec<Digest>) -> Chain {
        Chain(ids)
    }

    /// The ChainIDs, bottom first.
    pub fn ids(&self) -> &[Digest] {
        &self.0
    }

    /// The snapshot the chain names (its top), `None` for the empty chain.
    pub fn top(&self) -> Option<&Digest> {
        self.0.last()
    }

    /// This chain with a layer of `diff_id` on top: the name to commit that layer's
    /// snapshot under.
    pub fn child(&self, diff_id: &Digest) -> Chain {
        let next = match self.top() {
            None => *diff_id,
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        let mut ids = self.0.clone();
        ids.push(next);
        Chain(ids)
    }
}

/// The caller's name of an active snapshot or a view: letters, digits, `_`, `-` and `.`,
/// not starting with `.`, at most 128 bytes, so that a key is never a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotKey(String);

impl SnapshotKey {
    pub fn new(key: &str) -> Result<SnapshotKey, Error> {
        let ok = !key.is_empty()
            && key.len() <= 128
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(Error::Snapshot {
                key: key.to_string(),
                reason: "invalid key: letters, digits, '_', '-' and '.' only, \
                         not starting with '.', at most 128 bytes"
                    .into(),
            });
        }
        Ok(SnapshotKey(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A snapshot to remove: an active one or a view by key, a committed one by ChainID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    Active(SnapshotKey),
    Committed(Digest),
}

/// How to get a snapshot's root file system: what a runtime mounts. Paths are absolute
/// directories of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// An overlay: `lowers` top first (the order overlayfs' `lowerdir` takes; at least one),
    /// and for an active snapshot its `upper` and `work` directories (`None` for a view:
    /// a read-only overlay, which needs at least two lowers).
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<UpperDirs>,
    },
    /// One directory bound as the root: a vfs snapshot, or an overlay snapshot with at most
    /// one layer below it (overlayfs needs a lower directory; containerd binds too).
    Bind { source: PathBuf, read_only: bool },
}

/// The writable part of an overlay: where changes go and overlayfs' scratch directory, on
/// the same file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Mounts {
    /// Whether what is mounted may be written.
    pub fn is_writable(&self) -> bool {
        match self {
            Mounts::Overlay { upper, .. } => upper.is_some(),
            Mounts::Bind { read_only, .. } => !read_only,
        }
    }

    /// The directory that holds what is written through these mounts: an overlay's upper
    /// directory or a writable bind's source (`None` for a view).
    pub fn writable_dir(&self) -> Option<&std::path::Path> {
        match self {
            Mounts::Overlay { upper, .. } => upper.as_ref().map(|u| u.upper.as_path()),
            Mounts::Bind {
                source,
                read_only: false,
            } => Some(source),
            Mounts::Bind { .. } => None,
        }
    }
}

/// Where an active snapshot's changes are, as [`Snapshotter::changes`] finds them: a first
/// layer's whole tree, an overlay upper dir and its parent's layer directories (top
/// first), or a vfs tree and its parent's tree. The owned form of [`LayerChanges`], which
/// the layer is written from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotChanges {
    Upper(PathBuf),
    Stacked {
        upper: PathBuf,
        lowers: Vec<PathBuf>,
    },
    Trees {
        lower: PathBuf,
        upper: PathBuf,
    },
}

impl SnapshotChanges {
    /// The changes to write a layer from (`Store::store_layer`).
    pub fn layer(&self) -> LayerChanges<'_> {
        match self {
            SnapshotChanges::Upper(upper) => LayerChanges::Upper(upper),
            SnapshotChanges::Stacked { upper, lowers } => LayerChanges::Stacked { upper, lowers },
            SnapshotChanges::Trees { lower, upper } => LayerChanges::Trees { lower, upper },
        }
    }
}

/// containerd's snapshotter, narrowed to what lb uses. Implementations are safe to share
/// between threads of one process and between processes on one store: a key or a name is
/// taken by an atomic `mkdir` or `rename`, the first wins.
pub trait Snapshotter {
    /// A new active snapshot `key` on top of `parent` (empty when `None`): writable.
    fn prepare(&self, key: &SnapshotKey, parent: Option<&Chain>) -> Result<Mounts, Error>;

    /// A new view `key` of `parent`: read-only. Committing a view is refused.
    fn view(&self, key: &SnapshotKey, parent: Option<&Chain>) -> Result<Mounts, Error>;

    /// The active snapshot `key` becomes the committed snapshot `name` (the ChainID of its
    /// parent chain plus the layer of its changes; see [`Chain::child`]); `key` is gone
    /// after. When `name` exists already (equal content committed by someone else), that
    /// one stands and `key`'s is dropped.
    fn commit(&self, key: &SnapshotKey, name: &Digest) -> Result<(), Error>;

    /// The mounts of a read-only view of the committed `parent` made of committed
    /// directories as they are (overlay: a single layer bound, several stacked; vfs: the
    /// tree bound): no key, nothing made, nothing to remove after. `None` when a view needs
    /// [`Snapshotter::view`] (the empty chain: an empty directory to bind). Nothing keeps
    /// `parent` from removal meanwhile but the caller (a build holds `Store::writing`,
    /// which a prune waits for).
    fn view_in_place(&self, parent: &Chain) -> Result<Option<Mounts>, Error>;

    /// Where the changes of the active snapshot `key` against its parent are, to write its
    /// layer from; the snapshot must hold still meanwhile.
    fn changes(&self, key: &SnapshotKey) -> Result<SnapshotChanges, Error>;

    /// `dir`, a directory holding one layer's changes as an overlay upper dir holds them
    /// (made outside any snapshot: a build's COPY writes one, which costs no copy of the
    /// parent's tree on any driver), kept as the committed snapshot `name` where this
    /// driver keeps layers so (overlay: renamed into place, as `commit`); a driver of full
    /// trees (vfs) removes it, and makes the tree from the layer's blob when it is wanted
    /// (`Store::image_chain`). `dir` is gone after, either way.
    fn commit_changes(&self, dir: &Path, name: &Digest) -> Result<(), Error>;

    /// Removes a snapshot. A committed one that an active snapshot or view of this
    /// snapshotter stands on is refused.
    fn remove(&self, snapshot: &Snapshot) -> Result<(), Error>;

    /// The mounts of the active snapshot or view `key`, as `prepare` or `view` gave them.
    fn mounts(&self, key: &SnapshotKey) -> Result<Mounts, Error>;

    /// Whether `snapshot` is there (containerd's `Stat`, narrowed to what callers ask).
    fn exists(&self, snapshot: &Snapshot) -> bool;

    /// The bytes of the regular files the active snapshot `key` changed or added against
    /// its parent, hard links once (containerd's `Usage`, narrowed to what `docker ps -s`
    /// shows): what an overlay upper dir holding its changes would hold. 0 for a view.
    fn usage(&self, key: &SnapshotKey) -> Result<u64, Error>;
}

fn not_found(key: &str, what: &str) -> Error {
    Error::Snapshot {
        key: key.to_string(),
        reason: format!("no such {what} snapshot"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_never_paths() {
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(SnapshotKey::new(bad).is_err(), "{bad:?}");
        }
        for good in ["build-1.step_2", "abc", "0"] {
            assert_eq!(SnapshotKey::new(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn a_chain_grows_as_chain_ids_do() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let chain = Chain::default().child(&a).child(&b);
        assert_eq!(chain, Chain::of_diff_ids(&[a, b]));
        assert_eq!(chain.top(), Some(&chain_ids(&[a, b])[1]));
    }
}
