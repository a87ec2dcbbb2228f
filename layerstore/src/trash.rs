//! Removal of named content: a snapshot, a container's directory, a build's scratch. A
//! directory is deleted file by file, so a process killed midway would leave it under its
//! own name with files missing, and the next reader would take half a snapshot for a whole
//! one. Instead it is first renamed into `<root>/trash/` (one atomic step, made durable
//! with the parent's fsync), then deleted there. Whatever a kill leaves in the trash is
//! emptied by the next process that opens the store; nothing in it is ever read.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::store::Store;

/// The name prefix of what `discard` set aside beside its name, when the trash could not
/// take it.
const ASIDE: &str = ".trash-";

fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Removes a file or a directory tree, whatever it is, ignoring what is gone already.
fn delete(path: &Path) -> std::io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Store {
    pub(crate) fn trash_dir(&self) -> PathBuf {
        self.layout().trash()
    }

    /// Removes `path` (a directory or a file under the store root) so that it is either
    /// whole under its name or absent, at every instant: renamed into the trash, then
    /// deleted. Nothing to do when it is not there. Needs no new block on the disk (a full
    /// disk is when removing matters most): the rename takes a name in the trash, or,
    /// where that fails (the trash's directory cannot grow, another file system), a dot
    /// name beside `path` that no reader takes for content (prune clears it, the check
    /// reports it).
    pub fn discard(&self, path: &Path) -> Result<(), Error> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let trash = self.trash_dir();
        let _ = fs::create_dir(&trash);
        let mut gone = trash.join(&unique);
        let moved = match fs::rename(path, &gone) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                gone = parent.join(format!("{ASIDE}{unique}"));
                fs::rename(path, &gone)
            }
            other => other,
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        }
        sync_dir(parent)?;
        // Gone from its name: that is the removal. Whatever the deletion leaves (another
        // process emptying the trash at the same moment) goes with the next emptying.
        let _ = delete(&gone);
        Ok(())
    }

    /// What killed writers left beside their work: everything in `ingest/`, and the
    /// dot-named temporaries (`.tmp-*`, `.trash-*`, ...) in the root (index writes), `blobs`,
    /// `snapshots`, `containers`, `cache`, `compressed/*` and the snapshotter's directories
    /// (active snapshots being made, vfs trees). Only for a caller that holds the gc lock
    /// exclusively and `containers.lock` and `index.lock` (taken in that order, as every
    /// other holder takes them): then no writer's file in progress is among them.
    pub(crate) fn temporaries(&self) -> Vec<PathBuf> {
        let layout = self.layout();
        let mut dirs: Vec<PathBuf> = vec![
            layout.root().to_path_buf(),
            layout.blobs(),
            layout.snapshots(),
            layout.containers(),
            layout.cache_records(),
            layout.snapshotter_active(crate::StorageDriver::Overlay.as_str()),
            layout.snapshotter_active(crate::StorageDriver::Vfs.as_str()),
            layout.vfs_committed(),
        ];
        if let Ok(algos) = fs::read_dir(layout.compressed_root()) {
            dirs.extend(algos.flatten().map(|e| e.path()));
        }
        let mut found: Vec<PathBuf> = fs::read_dir(layout.ingest())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            found.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path()),
            );
        }
        found
    }

    /// Deletes what killed processes left in the trash. Safe at any time: nothing in the
    /// trash is ever used again (two processes emptying it at once both succeed).
    pub(crate) fn empty_trash(&self) {
        let Ok(entries) = fs::read_dir(self.trash_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let _ = delete(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discarded_trees_and_files_go_and_leftovers_are_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let snap = dir.path().join("snapshots").join("a".repeat(64));
        fs::create_dir_all(snap.join("etc/deep")).unwrap();
        fs::write(snap.join("etc/deep/f"), "x").unwrap();
        store.discard(&snap).unwrap();
        assert!(!snap.exists());
        // Gone already: nothing to do.
        store.discard(&snap).unwrap();
        let file = dir.path().join("cache").join("k");
        fs::write(&file, "m").unwrap();
        store.discard(&file).unwrap();
        assert!(!file.exists());
        assert_eq!(fs::read_dir(store.trash_dir()).unwrap().count(), 0);

        // A kill between the rename and the deletion leaves an entry: the next open
        // empties it (what was set aside beside its name goes with the next prune).
        fs::create_dir_all(store.trash_dir().join("1-2-3/usr/bin")).unwrap();
        store.empty_trash();
        assert_eq!(fs::read_dir(store.trash_dir()).unwrap().count(), 0);
    }

    #[test]
    fn a_prune_clears_what_killed_writers_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let left = [
            ".tmp-index",
            "cache/.tmp-record",
            "compressed/gzip/.tmpAbc",
            "ingest/upload",
            "containers/.rm-abc/upper/f",
            "snapshots/.tmp-unpack/etc/f",
            "snapshots/.trash-1-2-3/x",
        ];
        for l in left {
            let p = dir.path().join(l);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "x").unwrap();
        }
        let report = store.prune().unwrap();
        assert!(report.bytes >= 3, "{report:?}");
        for l in left {
            // The leftover itself: its dot-named component, else the file.
            let parts: Vec<&str> = l.split('/').collect();
            let upto = parts
                .iter()
                .position(|p| p.starts_with('.'))
                .unwrap_or(parts.len() - 1);
            let top: PathBuf = parts[..=upto].iter().collect();
            assert!(!dir.path().join(&top).exists(), "{l} is left");
        }
        assert!(dir.path().join("oci-layout").is_file());
    }
}
