//! The snapshotter's part of a prune and a check: active snapshots and views whose maker
//! is gone (a killed build's RUN step and views, a killed unpack or export), and for the
//! vfs driver, committed trees no image reaches. Called with the gc lock held exclusively:
//! every maker of a snapshot or a tree holds the writers' lock (`Store::writing`), so
//! nothing is half made then, and what a process still running made is kept by its
//! record's owner.
//!
//! It knows the snapshotter's directories and records, nothing of what holds a snapshot
//! beyond a container's id and a process.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use super::record::ActiveDir;
use crate::Error;
use crate::digest::Digest;
use crate::snapshot::chain_ids;
use crate::store::{LiveImages, Store};

impl Store {
    /// The active snapshot and view directories of the store's driver that nothing uses:
    /// no container's (a container's rootfs is the one of its id) and made by a process
    /// that is gone. The caller holds the gc lock exclusively.
    pub(crate) fn stale_snapshots(&self) -> Result<Vec<PathBuf>, Error> {
        let containers: HashSet<String> = self
            .containers::<serde::de::IgnoredAny>()?
            .into_iter()
            .map(|c| c.id)
            .collect();
        Ok(ActiveDir::new(self, self.storage_driver()).stale(&containers))
    }

    /// The committed snapshots that the store driver's active snapshots and views stand on.
    pub(crate) fn snapshots_in_use(&self) -> HashSet<Digest> {
        ActiveDir::new(self, self.storage_driver()).in_use()
    }

    /// The chain ids of the images in `live` and what active snapshots and views stand on:
    /// the vfs trees to keep.
    fn trees_in_use(&self, live: &LiveImages) -> Result<HashSet<Digest>, Error> {
        let mut keep = self.snapshots_in_use();
        for image in &live.images {
            keep.extend(chain_ids(&image.diff_ids()?));
        }
        Ok(keep)
    }

    /// The vfs trees (`snapshotter/vfs/committed/<chain hex>`) whose chain is not in
    /// `keep`. Dot-named temporaries there are `temporaries()`' business.
    pub(crate) fn vfs_trees_outside(&self, keep: &HashSet<Digest>) -> Vec<PathBuf> {
        let dir = self.layout().vfs_committed();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                Digest::from_hex(&e.file_name().to_string_lossy()).is_ok_and(|d| !keep.contains(&d))
            })
            .map(|e| e.path())
            .collect()
    }

    /// A prune's sweep of snapshots; returns how many committed ones went. First what
    /// killed processes left (active snapshots and views), so that what they stood on is
    /// free; then overlay's `snapshots/` as always, or on vfs the trees no named image or
    /// container reaches and all of `snapshots/` (unpacked layers that a vfs store never
    /// reads: an earlier lb's pulls made them). The caller holds the gc lock exclusively.
    pub(crate) fn prune_all_snapshots(&self, reached: &LiveImages) -> Result<u64, Error> {
        for dir in self.stale_snapshots()? {
            self.discard(&dir)?;
        }
        if self.storage_driver() == crate::StorageDriver::Overlay {
            return self.prune_snapshots(reached);
        }
        let trees = self.vfs_trees_outside(&self.trees_in_use(reached)?);
        for tree in &trees {
            self.discard(tree)?;
        }
        let unpacked = self.prune_snapshots(&LiveImages::default())?;
        Ok(trees.len() as u64 + unpacked)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::snapshotter::{Chain, Snapshot, SnapshotKey, Snapshotter, VfsSnapshotter};
    use crate::{CheckOptions, ContainerRecord, Reference, StorageDriver};

    fn vfs_store(dir: &Path) -> Store {
        Store::open_with(dir, Some(StorageDriver::Vfs), || unreachable!()).unwrap()
    }

    fn key(k: &str) -> SnapshotKey {
        SnapshotKey::new(k).unwrap()
    }

    fn name(n: &str) -> Reference {
        n.parse().unwrap()
    }

    /// An image of one layer holding `file`, named `image`, with its trees made.
    fn image(store: &Store, image: &str, file: &str) -> Chain {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, file, &b"x"[..]).unwrap();
        let layer = b.into_inner().unwrap();
        store
            .import_rootfs(&layer[..], &name(image), "test", &Default::default())
            .unwrap();
        store
            .image_chain(&store.image(&name(image)).unwrap())
            .unwrap()
    }

    /// Makes `key`'s record say that a process that has ended made it.
    fn made_by_an_ended_process(store: &Store, key: &str) {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let at = store
            .layout()
            .snapshotter_active("vfs")
            .join(key)
            .join("record.json");
        let mut record: serde_json::Value =
            serde_json::from_slice(&fs::read(&at).unwrap()).unwrap();
        record["owner"]["pid"] = pid.into();
        fs::write(&at, serde_json::to_vec(&record).unwrap()).unwrap();
    }

    fn names(dir: PathBuf) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn a_prune_takes_unreached_trees_and_what_ended_processes_left() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = vfs_store(dir.path());
        let kept = image(&store, "kept:1", "a");
        let gone = image(&store, "gone:1", "b");
        let held = image(&store, "held:1", "c");
        store.remove_name(&name("gone:1")).unwrap();
        store.remove_name(&name("held:1")).unwrap();
        let vfs = VfsSnapshotter::new(&store);
        // This process's view keeps the unnamed tree it stands on; a killed build's RUN
        // step and view go.
        vfs.view(&key("export-view"), Some(&held)).unwrap();
        vfs.prepare(&key("build-1-run-0"), Some(&kept)).unwrap();
        made_by_an_ended_process(&store, "build-1-run-0");
        vfs.view(&key("build-1-view-1"), Some(&gone)).unwrap();
        made_by_an_ended_process(&store, "build-1-view-1");
        // A container's rootfs stays, whoever made it; one whose container is gone goes.
        let id = "c".repeat(64);
        store
            .create_container(&ContainerRecord {
                id: id.clone(),
                name: "ctr".into(),
                image: store.image(&name("kept:1")).unwrap().manifest_digest,
                image_name: "kept".into(),
                created: "2026-01-01T00:00:00Z".into(),
                auto_remove: false,
                config: serde_json::json!({}),
            })
            .unwrap();
        vfs.prepare(&key(&id), Some(&kept)).unwrap();
        made_by_an_ended_process(&store, &id);
        let orphan = "d".repeat(64);
        vfs.prepare(&key(&orphan), Some(&kept)).unwrap();
        made_by_an_ended_process(&store, &orphan);
        // Leftovers of killed makers, and an unpacked layer, which a vfs store never reads.
        let active = store.layout().snapshotter_active("vfs");
        fs::create_dir(active.join(".tmp-killed")).unwrap();
        fs::create_dir_all(store.layout().vfs_committed().join(".tmp-x")).unwrap();
        fs::create_dir_all(store.layout().snapshot(kept.top().unwrap())).unwrap();

        let report = store.prune().unwrap();
        assert_eq!(report.snapshots, 2, "gone's tree and the unpacked layer");
        assert_eq!(
            names(store.layout().vfs_committed()),
            sorted(vec![kept.top().unwrap().hex(), held.top().unwrap().hex()])
        );
        assert_eq!(
            names(active.clone()),
            sorted(vec![id.clone(), "export-view".into()])
        );
        assert_eq!(names(store.layout().snapshots()), Vec::<String>::new());
        // Without the view, the unnamed image's tree goes too.
        vfs.remove(&Snapshot::Active(key("export-view"))).unwrap();
        assert_eq!(store.prune().unwrap().snapshots, 1);
        assert_eq!(
            names(store.layout().vfs_committed()),
            vec![kept.top().unwrap().hex()]
        );
        assert_eq!(names(active), vec![id]);
    }

    #[test]
    fn a_check_reports_a_tree_of_no_image_and_repair_removes_it() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = vfs_store(dir.path());
        let kept = image(&store, "kept:1", "a");
        let stray = store.layout().vfs_tree(&Digest::of(b"no image's chain"));
        fs::create_dir_all(stray.join("etc")).unwrap();
        let vfs = VfsSnapshotter::new(&store);
        vfs.prepare(&key("build-1-run-0"), Some(&kept)).unwrap();
        made_by_an_ended_process(&store, "build-1-run-0");
        let killed = store
            .layout()
            .snapshotter_active("vfs")
            .join("build-1-run-0");

        let report = store.check(CheckOptions::default()).unwrap();
        assert!(!report.has_unrepaired(), "{:?}", report.problems);
        assert_eq!(report.leftovers, vec![killed.clone(), stray.clone()]);
        assert!(stray.is_dir() && killed.is_dir(), "reported, not removed");

        let repair = CheckOptions {
            repair: true,
            ..Default::default()
        };
        let report = store.check(repair).unwrap();
        assert_eq!(report.leftovers.len(), 2);
        assert!(!stray.exists() && !killed.exists());
        assert!(store.layout().vfs_tree(kept.top().unwrap()).is_dir());
        assert!(
            store
                .check(CheckOptions::default())
                .unwrap()
                .leftovers
                .is_empty()
        );
    }
}
