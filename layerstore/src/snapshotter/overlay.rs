//! The overlay driver: lb's model before the seam, behind it. A committed snapshot is one
//! layer's tree (overlay whiteouts and opaque marks included) in `snapshots/<chain hex>/`,
//! where `Store::prepare_snapshots` unpacks pulled layers and `Store::adopt_snapshot`
//! keeps build steps' upper dirs; an active snapshot is an upper and a work directory
//! under `snapshotter/overlay/active/<key>/`, mounted as an overlay of its parent chain.
//! Committing renames the upper dir into place (`adopt_snapshot`): a layer's changes are
//! never copied.
//!
//! It knows the store's snapshot layout and overlayfs' rules for a mount (how many lower
//! directories a read-only or a writable overlay needs), never how to mount one.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::record::{ActiveDir, Kind, Record, remove_committed};
use super::{
    Chain, Mounts, Snapshot, SnapshotChanges, SnapshotKey, Snapshotter, UpperDirs, not_found,
};
use crate::Error;
use crate::digest::Digest;
use crate::store::Store;

/// Names inside an active snapshot's directory.
const UPPER: &str = "upper";
const WORK: &str = "work";
/// A view of nothing binds this empty directory.
const EMPTY: &str = "empty";

/// Snapshots as overlayfs stacks of the store's `snapshots/<chain hex>/` directories.
#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    store: Store,
    active: ActiveDir,
}

impl OverlaySnapshotter {
    pub fn new(store: &Store) -> OverlaySnapshotter {
        OverlaySnapshotter {
            store: store.clone(),
            active: ActiveDir::new(store, crate::StorageDriver::Overlay),
        }
    }

    /// The lower directories of `chain`, top first; each must be committed.
    fn lowers(&self, chain: &Chain) -> Result<Vec<PathBuf>, Error> {
        let mut out = Vec::with_capacity(chain.ids().len());
        for id in chain.ids().iter().rev() {
            let dir = self.store.snapshot_path(id);
            if !dir.is_dir() {
                return Err(not_found(&id.to_string(), "committed"));
            }
            out.push(dir);
        }
        Ok(out)
    }

    fn mounts_of(&self, dir: &Path, record: &Record) -> Result<Mounts, Error> {
        let mut lowers = self.lowers(&record.chain())?;
        Ok(match record.kind {
            // overlayfs wants a lower directory: with none, the upper is the whole tree.
            Kind::Active if lowers.is_empty() => Mounts::Bind {
                source: dir.join(UPPER),
                read_only: false,
            },
            Kind::Active => Mounts::Overlay {
                lowers,
                upper: Some(UpperDirs {
                    upper: dir.join(UPPER),
                    work: dir.join(WORK),
                }),
            },
            Kind::View if lowers.is_empty() => Mounts::Bind {
                source: dir.join(EMPTY),
                read_only: true,
            },
            // A read-only overlay needs two lowers; one is bound as it is.
            Kind::View if lowers.len() == 1 => Mounts::Bind {
                source: lowers.remove(0),
                read_only: true,
            },
            Kind::View => Mounts::Overlay {
                lowers,
                upper: None,
            },
        })
    }

    /// Renames `upper` into place as the committed snapshot `name` (`adopt_snapshot`, which
    /// marks it unsynced: the layer blob is its durable copy); `what` names it in errors.
    fn adopt(&self, upper: &Path, name: &Digest, what: &str) -> Result<(), Error> {
        // Shared with other writers: a prune (exclusive) never sees it half done.
        let _writing = self.store.writing()?;
        self.store.adopt_snapshot(name, upper)?;
        // adopt_snapshot drops the upper dir when the snapshot exists (someone committed
        // equal content first) or the rename failed: only the second is an error.
        if !self.store.snapshot_path(name).is_dir() {
            return Err(Error::Snapshot {
                key: what.to_string(),
                reason: format!("could not be committed as {name}"),
            });
        }
        Ok(())
    }

    fn create(
        &self,
        key: &SnapshotKey,
        parent: Option<&Chain>,
        kind: Kind,
    ) -> Result<Mounts, Error> {
        let chain = parent.cloned().unwrap_or_default();
        // Refused before anything is made: every layer below must be there.
        self.lowers(&chain)?;
        let record = Record::new(kind, chain.ids().to_vec());
        let dir = self.active.create(&self.store, key, &record, |tmp| {
            let names: &[&str] = match kind {
                Kind::Active => &[UPPER, WORK],
                Kind::View => &[EMPTY],
            };
            for name in names {
                // 0755: an overlay's root takes its upper directory's mode and owner.
                let at = tmp.join(name);
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&at)
                    .map_err(|e| Error::io(&at, e))?;
            }
            Ok(())
        })?;
        self.mounts_of(&dir, &record)
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &SnapshotKey, parent: Option<&Chain>) -> Result<Mounts, Error> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &SnapshotKey, parent: Option<&Chain>) -> Result<Mounts, Error> {
        self.create(key, parent, Kind::View)
    }

    /// The caller has unmounted the overlay (its upper dir must hold still).
    fn commit(&self, key: &SnapshotKey, name: &Digest) -> Result<(), Error> {
        self.active.read_for_commit(key)?;
        self.adopt(&self.active.path(key).join(UPPER), name, key.as_str())?;
        self.active.remove_committed_key(key)
    }

    /// Layers are their own view: a single one bound read-only, several stacked.
    fn view_in_place(&self, parent: &Chain) -> Result<Option<Mounts>, Error> {
        let mut lowers = self.lowers(parent)?;
        Ok(match lowers.len() {
            0 => None,
            1 => Some(Mounts::Bind {
                source: lowers.remove(0),
                read_only: true,
            }),
            _ => Some(Mounts::Overlay {
                lowers,
                upper: None,
            }),
        })
    }

    /// The upper dir: it holds the changes alone (the whole tree of a first layer, which
    /// is that layer's changes too).
    fn changes(&self, key: &SnapshotKey) -> Result<SnapshotChanges, Error> {
        let record = self.active.read_for_commit(key)?;
        let upper = self.active.path(key).join(UPPER);
        let lowers = self.lowers(&record.chain())?;
        Ok(if lowers.is_empty() {
            SnapshotChanges::Upper(upper)
        } else {
            SnapshotChanges::Stacked { upper, lowers }
        })
    }

    /// `dir` is in the snapshot format already (overlay whiteouts and opaque marks).
    fn commit_changes(&self, dir: &Path, name: &Digest) -> Result<(), Error> {
        self.adopt(dir, name, &dir.display().to_string())
    }

    fn remove(&self, snapshot: &Snapshot) -> Result<(), Error> {
        match snapshot {
            Snapshot::Active(key) => self.active.remove(&self.store, key),
            // Chains of committed overlay snapshots are not recorded (a pulled image's
            // layers are unpacked one by one): keeping a committed snapshot that an image
            // stacks is the store's prune's business, as before the seam.
            Snapshot::Committed(id) => {
                remove_committed(&self.store, &self.active, id, &self.store.snapshot_path(id))
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
            Snapshot::Committed(id) => self.store.snapshot_path(id).is_dir(),
        }
    }

    fn usage(&self, key: &SnapshotKey) -> Result<u64, Error> {
        Ok(match self.active.read(key)?.kind {
            Kind::Active => {
                super::file_bytes(&self.active.path(key).join(UPPER), &mut Default::default())
            }
            Kind::View => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> SnapshotKey {
        SnapshotKey::new(k).unwrap()
    }

    #[test]
    fn mounts_stack_the_chain_top_first_and_commit_renames_the_upper_dir() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = OverlaySnapshotter::new(&store);
        let (a, b) = (Digest::of(b"layer a"), Digest::of(b"layer b"));

        // The first layer: nothing below, so its upper dir is bound.
        let m = s.prepare(&key("base"), None).unwrap();
        let Mounts::Bind { source, read_only } = &m else {
            panic!("{m:?}")
        };
        assert!(!read_only);
        fs::write(source.join("a"), b"a").unwrap();
        let base = Chain::default().child(&a);
        s.commit(&key("base"), base.top().unwrap()).unwrap();
        assert!(
            s.mounts(&key("base")).is_err(),
            "committed: no longer active"
        );
        assert!(!dir.path().join("snapshotter/overlay/active/base").exists());
        let base_dir = store.snapshot_path(base.top().unwrap());
        assert_eq!(fs::read(base_dir.join("a")).unwrap(), b"a");

        // A second layer on it: an overlay whose upper becomes the second snapshot.
        let m = s.prepare(&key("step"), Some(&base)).unwrap();
        let Mounts::Overlay { lowers, upper } = &m else {
            panic!("{m:?}")
        };
        assert_eq!(lowers, std::slice::from_ref(&base_dir));
        let upper = upper.clone().unwrap();
        assert!(upper.upper.is_dir() && upper.work.is_dir());
        assert_eq!(s.mounts(&key("step")).unwrap(), m);
        fs::write(upper.upper.join("b"), b"b").unwrap();
        let two = base.child(&b);
        s.commit(&key("step"), two.top().unwrap()).unwrap();

        // Views: one lower is bound read-only, two are a read-only overlay, top first.
        let v = s.view(&key("v1"), Some(&base)).unwrap();
        assert_eq!(
            v,
            Mounts::Bind {
                source: base_dir.clone(),
                read_only: true
            }
        );
        let v = s.view(&key("v2"), Some(&two)).unwrap();
        let top_dir = store.snapshot_path(two.top().unwrap());
        assert_eq!(
            v,
            Mounts::Overlay {
                lowers: vec![top_dir, base_dir.clone()],
                upper: None
            }
        );
        assert!(s.commit(&key("v2"), &Digest::of(b"x")).is_err());
        // A committed snapshot a view stands on stays; without the view it goes.
        assert!(
            s.remove(&Snapshot::Committed(*base.top().unwrap()))
                .is_err()
        );
        s.remove(&Snapshot::Active(key("v1"))).unwrap();
        s.remove(&Snapshot::Active(key("v2"))).unwrap();
        s.remove(&Snapshot::Committed(*base.top().unwrap()))
            .unwrap();
        assert!(!base_dir.exists());
        // A parent that is not there is refused before anything is made.
        assert!(s.prepare(&key("orphan"), Some(&base)).is_err());
        assert!(s.mounts(&key("orphan")).is_err());
    }

    #[test]
    fn changes_are_the_upper_dir_one_layer_is_its_own_view_and_fresh_changes_are_adopted() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = OverlaySnapshotter::new(&store);
        let (a, b) = (Digest::of(b"layer a"), Digest::of(b"layer b"));

        // A directory of changes made outside any snapshot becomes the committed one.
        let fresh = dir.path().join("fresh");
        fs::create_dir(&fresh).unwrap();
        fs::write(fresh.join("a"), b"a").unwrap();
        let base = Chain::default().child(&a);
        s.commit_changes(&fresh, base.top().unwrap()).unwrap();
        assert!(!fresh.exists(), "renamed into place");
        let base_dir = store.snapshot_path(base.top().unwrap());
        assert_eq!(fs::read(base_dir.join("a")).unwrap(), b"a");

        // An active snapshot's changes are its upper dir, on nothing or on its parent's
        // layer directories.
        let m = s.prepare(&key("first"), None).unwrap();
        assert_eq!(
            s.changes(&key("first")).unwrap(),
            SnapshotChanges::Upper(m.writable_dir().unwrap().to_path_buf())
        );
        let m = s.prepare(&key("step"), Some(&base)).unwrap();
        assert_eq!(
            s.changes(&key("step")).unwrap(),
            SnapshotChanges::Stacked {
                upper: m.writable_dir().unwrap().to_path_buf(),
                lowers: vec![base_dir.clone()],
            }
        );

        let two = base.child(&b);
        s.commit(&key("step"), two.top().unwrap()).unwrap();
        let two_dir = store.snapshot_path(two.top().unwrap());

        // Layers are viewed in place, with no directory made; nothing needs a keyed view.
        let active = dir.path().join("snapshotter/overlay/active");
        let before = fs::read_dir(&active).unwrap().count();
        assert_eq!(
            s.view_in_place(&base).unwrap(),
            Some(Mounts::Bind {
                source: base_dir.clone(),
                read_only: true
            })
        );
        assert_eq!(
            s.view_in_place(&two).unwrap(),
            Some(Mounts::Overlay {
                lowers: vec![two_dir, base_dir.clone()],
                upper: None
            })
        );
        assert_eq!(s.view_in_place(&Chain::default()).unwrap(), None);
        assert!(s.view_in_place(&two.child(&a)).is_err(), "not committed");
        assert_eq!(fs::read_dir(&active).unwrap().count(), before);
        s.view(&key("v"), Some(&base)).unwrap();
        assert!(s.changes(&key("v")).is_err(), "a view has no changes");

        // Equal content committed first stands; the second directory goes.
        let again = dir.path().join("again");
        fs::create_dir(&again).unwrap();
        s.commit_changes(&again, base.top().unwrap()).unwrap();
        assert!(!again.exists());
        assert_eq!(fs::read(base_dir.join("a")).unwrap(), b"a");
    }

    #[test]
    fn a_key_is_taken_once() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = OverlaySnapshotter::new(&store);
        s.prepare(&key("k"), None).unwrap();
        let e = s.prepare(&key("k"), None).unwrap_err();
        assert!(e.to_string().contains("exists"), "{e}");
        s.remove(&Snapshot::Active(key("k"))).unwrap();
        s.prepare(&key("k"), None).unwrap();
    }
}
