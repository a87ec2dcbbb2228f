//! Active snapshots and views on disk, for every driver: `<driver dir>/active/<key>/`, made
//! whole in a `.tmp-*` directory beside it and renamed into place (a kill leaves no half
//! snapshot under a key; two preparers of one key: the first rename wins), with
//! `record.json` saying whether it is a view and which chain it stands on.
//!
//! It knows the layout of one driver's directory, nothing of what the driver keeps in a
//! snapshot's directory besides the record.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

impl Record {
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
    pub fn new(driver_dir: &Path) -> ActiveDir {
        ActiveDir {
            dir: driver_dir.join("active"),
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
        key: &SnapshotKey,
        record: &Record,
        fill: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<PathBuf, Error> {
        let target = self.path(key);
        if target.exists() {
            return Err(exists(key));
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
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

    /// Whether an active snapshot or view stands on the committed snapshot `id`.
    pub fn uses(&self, id: &Digest) -> Result<Option<String>, Error> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(None);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(key) = SnapshotKey::new(&name) else {
                continue; // a .tmp-* being made
            };
            match self.read(&key) {
                Ok(r) if r.parent.contains(id) => return Ok(Some(name)),
                _ => {}
            }
        }
        Ok(None)
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
