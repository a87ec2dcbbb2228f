//! The snapshots whose files may not be on disk yet. A snapshot's files are written without
//! an fsync each (a layer of thousands of files would wait for thousands of syncs, and a
//! build step's upper dir is mounted `volatile`): the layer blob beside it is the durable
//! copy, and the snapshot a fast, derived one. Only a crash of the machine can lose such
//! writes, and it takes the boot with it, so each snapshot is recorded before it is
//! committed as `unsynced/<boot id>/<chain id hex>` (an empty file, its directory synced):
//!
//! - a record of another boot names a snapshot that may have lost data: the snapshot is
//!   removed, to be unpacked again from its blob when next used;
//! - records of this boot older than [`SETTLE_SECS`] are dropped after a `syncfs` of the
//!   store.
//!
//! Both happen once per process, when it opens the store: before it holds any lock of the
//! store (dropping snapshots takes the gc lock exclusively) or uses any snapshot.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::Error;
use crate::store::Store;

/// Records of this boot at least this old are settled by one `syncfs`. The kernel has
/// written their files back long before (within about 30 s); the sync waits only for what
/// else is dirty on the file system then, so it is done seldom: every build starting more
/// than a minute after the last would otherwise wait for it.
const SETTLE_SECS: u64 = 600;

/// This boot's id (`/proc/sys/kernel/random/boot_id`); "unknown" where there is none, which
/// then makes every boot the same one (the records never expire a snapshot).
pub(crate) fn boot_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .unwrap_or_else(|| "unknown".to_string())
    })
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

impl Store {
    fn unsynced_dir(&self) -> PathBuf {
        self.layout().unsynced()
    }

    /// Records that the snapshot `chain_hex` is about to be committed with files not yet
    /// synced; durable before it returns, so no crash keeps the snapshot without it.
    pub(crate) fn mark_unsynced(&self, chain_hex: &str) -> Result<(), Error> {
        let top = self.unsynced_dir();
        let dir = top.join(boot_id());
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            sync_dir(&top)?;
            sync_dir(self.root())?;
        }
        let mark = dir.join(chain_hex);
        fs::File::create(&mark).map_err(|e| Error::io(&mark, e))?;
        sync_dir(&dir)
    }

    /// Settles the records (see the module's doc) once per process.
    pub(crate) fn settle_unsynced(&self) -> Result<(), Error> {
        static DONE: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut done = DONE.lock().expect("settled stores");
        if done.iter().any(|r| r == self.root()) {
            return Ok(());
        }
        self.settle_unsynced_as(boot_id(), Duration::from_secs(SETTLE_SECS))?;
        done.push(self.root().to_path_buf());
        Ok(())
    }

    /// [`Store::settle_unsynced`] for the boot `boot`, syncing records older than `age`.
    pub(crate) fn settle_unsynced_as(&self, boot: &str, age: Duration) -> Result<(), Error> {
        let top = self.unsynced_dir();
        let boots = match fs::read_dir(&top) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&top, e)),
        };
        let mut earlier = Vec::new();
        let mut this = None;
        for b in boots.flatten() {
            if b.file_name() == boot {
                this = Some(b.path());
            } else {
                earlier.push(b.path());
            }
        }
        if !earlier.is_empty() {
            // Snapshots may be removed: no one may be preparing or pruning meanwhile.
            let _gc = self.lock("gc.lock")?;
            for dir in earlier {
                self.drop_unsynced_snapshots(&dir)?;
            }
        }
        if let Some(dir) = this {
            self.settle_this_boot(&dir, age)?;
        }
        Ok(())
    }

    /// The snapshots recorded in `dir` (an earlier boot's) are removed, then the records.
    fn drop_unsynced_snapshots(&self, dir: &Path) -> Result<(), Error> {
        let marks = match fs::read_dir(dir) {
            Ok(m) => m,
            // Another process settled it first.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for mark in marks.flatten() {
            let name = mark.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.discard(&self.layout().snapshots().join(&name))?;
            }
            let _ = fs::remove_file(mark.path());
        }
        match fs::remove_dir(dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(dir, e)),
            _ => Ok(()),
        }
    }

    /// This boot's records older than `age`: one `syncfs` puts their files on disk, then
    /// they go (records made after the sync began are kept for a later settling).
    fn settle_this_boot(&self, dir: &Path, age: Duration) -> Result<(), Error> {
        let cutoff = SystemTime::now() - age;
        let is_old = |mark: &Path| {
            fs::metadata(mark)
                .and_then(|md| md.modified())
                .is_ok_and(|t| t <= cutoff)
        };
        let old: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
            .map(|m| m.path())
            .filter(|m| is_old(m))
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let root = fs::File::open(self.root()).map_err(|e| Error::io(self.root(), e))?;
        rustix::fs::syncfs(&root).map_err(|e| Error::io(self.root(), e.into()))?;
        // A record made again meanwhile (its snapshot pruned and made anew) is young now and
        // stays.
        for mark in old.iter().filter(|m| is_old(m)) {
            let _ = fs::remove_file(mark);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_an_earlier_boot_drop_their_snapshots_and_old_ones_of_this_boot_settle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let snapshots = dir.path().join("snapshots");
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        for s in [&a, &b] {
            fs::create_dir_all(snapshots.join(s).join("etc")).unwrap();
            fs::write(snapshots.join(s).join("etc/motd"), "hi").unwrap();
        }
        // `a` recorded in this boot, `b` in an earlier one.
        store.mark_unsynced(&a).unwrap();
        fs::create_dir_all(dir.path().join("unsynced/earlier-boot")).unwrap();
        fs::write(dir.path().join("unsynced/earlier-boot").join(&b), "").unwrap();

        // Too young to settle: `a` stays recorded; `b`'s snapshot is gone with its record.
        store
            .settle_unsynced_as(boot_id(), Duration::from_secs(3600))
            .unwrap();
        assert!(snapshots.join(&a).join("etc/motd").is_file());
        assert!(!snapshots.join(&b).exists());
        assert!(!dir.path().join("unsynced/earlier-boot").exists());
        let this = dir.path().join("unsynced").join(boot_id());
        assert!(this.join(&a).is_file());
        // Nothing is left half-removed beside the snapshots.
        let left: Vec<_> = fs::read_dir(&snapshots).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);

        // Old enough: synced, the record goes, the snapshot stays.
        store.settle_unsynced_as(boot_id(), Duration::ZERO).unwrap();
        assert!(!this.join(&a).exists());
        assert!(snapshots.join(&a).join("etc/motd").is_file());
    }
}
