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
        self.root().join("trash")
    }

    /// Removes `path` (a directory or a file under the store root) so that it is either
    /// whole under its name or absent, at every instant: renamed into the trash, then
    /// deleted. Nothing to do when it is not there.
    pub fn discard(&self, path: &Path) -> Result<(), Error> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let trash = self.trash_dir();
        let slot = match tempfile::Builder::new().prefix("d-").tempdir_in(&trash) {
            Ok(slot) => slot.keep(),
            Err(e) => return Err(Error::io(&trash, e)),
        };
        let target = slot.join("x");
        match fs::rename(path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let _ = fs::remove_dir(&slot);
                return Ok(());
            }
            // A directory of the store mounted from another file system: a sibling name
            // no reader takes for content (prune and the trash's emptying clear it).
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let _ = fs::remove_dir(&slot);
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let aside = parent.join(format!(".trash-{}-{name}", std::process::id()));
                fs::rename(path, &aside).map_err(|e| Error::io(path, e))?;
                sync_dir(parent)?;
                return delete(&aside).map_err(|e| Error::io(&aside, e));
            }
            Err(e) => {
                let _ = fs::remove_dir(&slot);
                return Err(Error::io(path, e));
            }
        }
        sync_dir(parent)?;
        delete(&slot).map_err(|e| Error::io(&slot, e))
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

        // A kill between the rename and the deletion leaves a slot: the next open empties it.
        let slot = store.trash_dir().join("d-left");
        fs::create_dir_all(slot.join("x/usr/bin")).unwrap();
        store.empty_trash();
        assert_eq!(fs::read_dir(store.trash_dir()).unwrap().count(), 0);
    }
}
