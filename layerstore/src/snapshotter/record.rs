//! Active snapshots and views on disk, for every driver: `<driver dir>/active/<key>/`, made
//! whole in a `.tmp-*` directory beside it and renamed into place (a kill leaves no half
//! snapshot under a key; two preparers of one key: the first rename wins), with
//! `record.json` saying whether it is a view, which chain it stands on and which process
//! made it. Making one holds the store's writers' lock (`Store::writing`), so a prune or a
//! check (which hold it exclusively) finds no `.tmp-*` directory in progress, and no
//! snapshot made after it chose what to keep.
//!
//! It knows the layout of one driver's directory, nothing of what the driver keeps in a
//! snapshot's directory besides the record.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::owner::Owner;
use super::{Chain, SnapshotKey};
use crate::Error;
use crate::digest::Digest;
use crate::store::Store;

const RECORD: &str = "record.json";

/// What a key's directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
    Active,
    View,
}

/// The record of an active snapshot or a view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub kind: Kind,
    /// The parent chain's ChainIDs, bottom first.
    pub parent: Vec<Digest>,
    /// The process that made it; `None` in a record of an earlier lb (taken for a process
    /// that is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Record {
    /// The record of a snapshot this process makes.
    pub fn new(kind: Kind, parent: Vec<Digest>) -> Record {
        Record {
            kind,
            parent,
            owner: Owner::current(),
        }
    }

    pub fn chain(&self) -> Chain {
        Chain::from_chain_ids(self.parent.clone())
    }
}

/// One driver's directory of keyed snapshots.
#[derive(Debug, Clone)]
pub(super) struct ActiveDir {
    dir: PathBuf,
}

impl ActiveDir {
    /// The keyed snapshots of the store's driver `driver`.
    pub fn new(store: &Store, driver: crate::StorageDriver) -> ActiveDir {
        ActiveDir {
            dir: store.layout().snapshotter_active(driver.as_str()),
        }
    }

    /// The directory of `key` (whether or not it exists).
    pub fn path(&self, key: &SnapshotKey) -> PathBuf {
        self.dir.join(key.as_str())
    }

    /// Makes `key`'s directory: `fill` writes the driver's content into the temporary
    /// directory it is given, then the record is written and the whole renamed into place.
    /// A key taken already is an error, and what `fill` made is removed.
    pub fn create(
        &self,
        store: &Store,
        key: &SnapshotKey,
        record: &Record,
        fill: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<PathBuf, Error> {
        let target = self.path(key);
        if target.exists() {
            return Err(exists(key));
        }
        // Shared with other writers; a prune (exclusive) never sees one half made.
        let _writing = store.writing()?;
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        // Each snapshot's directory in a block group of its own, as a build's step dirs
        // (see the builder's `run/`): a RUN's upper dir may take many files.
        crate::spread_subdirectories(&self.dir);
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        fill(tmp.path())?;
        let json = serde_json::to_vec(record).expect("a record serialises");
        let at = tmp.path().join(RECORD);
        fs::write(&at, json).map_err(|e| Error::io(&at, e))?;
        // rename(2) replaces an empty directory: a taken key's is never empty (record).
        match fs::rename(tmp.path(), &target) {
            Ok(()) => {
                let _ = tmp.keep();
                Ok(target)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Err(exists(key))
            }
            Err(e) => Err(Error::io(&target, e)),
        }
    }

    /// The record of `key`.
    pub fn read(&self, key: &SnapshotKey) -> Result<Record, Error> {
        let at = self.path(key).join(RECORD);
        let bytes = match fs::read(&at) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(super::not_found(key.as_str(), "active"));
            }
            Err(e) => return Err(Error::io(&at, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: at,
            reason: e.to_string(),
        })
    }

    /// The record of `key`, which is to be committed: a view is refused.
    pub fn read_for_commit(&self, key: &SnapshotKey) -> Result<Record, Error> {
        let record = self.read(key)?;
        if record.kind != Kind::Active {
            return Err(Error::Snapshot {
                key: key.to_string(),
                reason: "a view cannot be committed".into(),
            });
        }
        Ok(record)
    }

    /// Removes `key`'s directory (whole or absent at every instant: `Store::discard`).
    pub fn remove(&self, store: &Store, key: &SnapshotKey) -> Result<(), Error> {
        let dir = self.path(key);
        if !dir.exists() {
            return Err(super::not_found(key.as_str(), "active"));
        }
        store.discard(&dir)
    }

    /// Removes what a commit left of `key` (overlay: its work dir), without `remove`'s
    /// durable removal (a trash rename made durable by an fsync: a RUN step's commit paid
    /// it on top of the snapshot's own): the record goes first, so the key reads as absent
    /// from then on, and a crash that undoes any of it leaves a key whose maker is gone,
    /// which a prune takes (`stale`). Nothing under the key was the snapshot any more.
    pub fn remove_committed_key(&self, key: &SnapshotKey) -> Result<(), Error> {
        let dir = self.path(key);
        let record = dir.join(RECORD);
        fs::remove_file(&record).map_err(|e| Error::io(&record, e))?;
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))
    }

    /// Every key and its record (`None`: unreadable), not the `.tmp-*` being made.
    fn entries(&self) -> Vec<(SnapshotKey, Option<Record>)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| SnapshotKey::new(&e.file_name().to_string_lossy()).ok())
            .map(|key| {
                let record = self.read(&key).ok();
                (key, record)
            })
            .collect()
    }

    /// Whether an active snapshot or view stands on the committed snapshot `id`.
    pub fn uses(&self, id: &Digest) -> Result<Option<String>, Error> {
        Ok(self
            .entries()
            .into_iter()
            .find(|(_, r)| r.as_ref().is_some_and(|r| r.parent.contains(id)))
            .map(|(key, _)| key.to_string()))
    }

    /// The committed snapshots that active snapshots and views stand on.
    pub fn in_use(&self) -> HashSet<Digest> {
        self.entries()
            .into_iter()
            .filter_map(|(_, r)| r)
            .flat_map(|r| r.parent)
            .collect()
    }

    /// The directories of snapshots no one uses any more: not a container's (its key is
    /// one of `containers`, the ids of the store's containers), and the process that made
    /// it gone (a killed build's RUN step or view, a killed unpack, a container whose
    /// removal was cut short). Only for a caller that holds the gc lock exclusively.
    pub fn stale(&self, containers: &HashSet<String>) -> Vec<PathBuf> {
        self.entries()
            .into_iter()
            .filter(|(key, record)| {
                let owner_alive = record
                    .as_ref()
                    .and_then(|r| r.owner.as_ref())
                    .is_some_and(Owner::alive);
                !containers.contains(key.as_str()) && !owner_alive
            })
            .map(|(key, _)| self.path(&key))
            .collect()
    }
}

fn exists(key: &SnapshotKey) -> Error {
    Error::Snapshot {
        key: key.to_string(),
        reason: "a snapshot of this key exists already".into(),
    }
}

/// Removes the committed snapshot directory `dir` (`id`) unless an active snapshot or view
/// in `active` stands on it.
pub(super) fn remove_committed(
    store: &Store,
    active: &ActiveDir,
    id: &Digest,
    dir: &Path,
) -> Result<(), Error> {
    if let Some(user) = active.uses(id)? {
        return Err(Error::Snapshot {
            key: id.to_string(),
            reason: format!("snapshot {user:?} stands on it"),
        });
    }
    if !dir.is_dir() {
        return Err(super::not_found(&id.to_string(), "committed"));
    }
    store.discard(dir)
}
