//! The old side of a comparison (`differ.rs`): one full tree (a vfs snapshot's parent), or
//! the layer directories of an overlay stack read as overlayfs merges them, without
//! mounting them: a name's top-most entry stands, an overlay whiteout (a 0/0 character
//! device) hides the name in the layers below, and a directory merges with the
//! directories of its name below it until one of them is opaque or a layer has a
//! non-directory there. overlayfs' own xattrs are not the files'.
//!
//! Why a stack is read at all: an overlay upper dir shows a directory deleted and made
//! again in one step as an opaque directory, where a vfs tree shows the same change as
//! the old directory with its gone names' whiteouts; the layer is written in the vfs form
//! (against what the lowers hold there), so both drivers make one digest.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::diff::{is_opaque, sorted_children};

/// A directory of the old tree: the directories that merge into it, top first (one for a
/// full tree's).
#[derive(Debug, Clone)]
pub(crate) struct OldDir {
    dirs: Vec<PathBuf>,
    stacked: bool,
}

/// A name of the old tree: its top-most entry, and for a directory of a stack the
/// directories of that name below it that merge with it.
#[derive(Debug, Clone)]
pub(crate) struct OldEntry {
    pub(crate) path: PathBuf,
    below: Vec<PathBuf>,
    stacked: bool,
}

impl OldDir {
    /// The full tree at `root`: read as it is (a 0/0 character device there is a device).
    pub(crate) fn tree(root: &Path) -> OldDir {
        OldDir {
            dirs: vec![root.to_path_buf()],
            stacked: false,
        }
    }

    /// The root of the overlay stack of layer directories `lowers`, top first.
    pub(crate) fn stack(lowers: &[PathBuf]) -> OldDir {
        let mut dirs = Vec::new();
        for dir in lowers {
            dirs.push(dir.clone());
            if is_opaque(dir) {
                break;
            }
        }
        OldDir {
            dirs,
            stacked: true,
        }
    }

    /// The names in this directory, sorted by their bytes (the layer's order).
    pub(crate) fn children(&self) -> Result<Vec<(String, OldEntry)>, Error> {
        if !self.stacked {
            return Ok(sorted_children(&self.dirs[0])?
                .into_iter()
                .map(|(name, path)| {
                    let entry = OldEntry {
                        path,
                        below: Vec::new(),
                        stacked: false,
                    };
                    (name, entry)
                })
                .collect());
        }
        // Each name's entries, top layer first.
        let mut names: BTreeMap<Vec<u8>, (String, Vec<PathBuf>)> = BTreeMap::new();
        for dir in &self.dirs {
            for (name, path) in sorted_children(dir)? {
                let key = path
                    .file_name()
                    .map_or(Vec::new(), |n| n.as_bytes().to_vec());
                names.entry(key).or_insert((name, Vec::new())).1.push(path);
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for (_, (name, paths)) in names {
            if let Some(entry) = merged(paths)? {
                out.push((name, entry));
            }
        }
        Ok(out)
    }

    /// What the stack holds at `rel` (names joined by `/`, from this directory), if
    /// anything.
    pub(crate) fn lookup(&self, rel: &str) -> Result<Option<OldEntry>, Error> {
        let mut dir = self.clone();
        let mut found = None;
        for name in rel.split('/').filter(|n| !n.is_empty()) {
            if let Some(entry) = found.take() {
                match entry_dir(&entry)? {
                    Some(d) => dir = d,
                    None => return Ok(None),
                }
            }
            let paths: Vec<PathBuf> = dir
                .dirs
                .iter()
                .map(|d| d.join(name))
                .filter(|p| fs::symlink_metadata(p).is_ok())
                .collect();
            match merged(paths)? {
                Some(entry) => found = Some(entry),
                None => return Ok(None),
            }
        }
        Ok(found)
    }
}

impl OldEntry {
    /// The directory this entry is (the caller has seen that it is one).
    pub(crate) fn as_dir(&self) -> OldDir {
        let mut dirs = vec![self.path.clone()];
        dirs.extend(self.below.iter().cloned());
        OldDir {
            dirs,
            stacked: self.stacked,
        }
    }
}

/// The entry a directory of the stack has for a name whose entries in the layers are
/// `paths`, top first: none when the top one is a whiteout.
fn merged(paths: Vec<PathBuf>) -> Result<Option<OldEntry>, Error> {
    let mut paths = paths.into_iter();
    let Some(top) = paths.next() else {
        return Ok(None);
    };
    let meta = lstat(&top)?;
    if is_whiteout(&meta) {
        return Ok(None);
    }
    let mut entry = OldEntry {
        path: top,
        below: Vec::new(),
        stacked: true,
    };
    if !meta.is_dir() || is_opaque(&entry.path) {
        return Ok(Some(entry));
    }
    for path in paths {
        if !lstat(&path)?.is_dir() {
            break; // a file or a whiteout ends the merge
        }
        let opaque = is_opaque(&path);
        entry.below.push(path);
        if opaque {
            break;
        }
    }
    Ok(Some(entry))
}

/// `entry` as a directory to look further in, `None` when it is no directory.
fn entry_dir(entry: &OldEntry) -> Result<Option<OldDir>, Error> {
    Ok(lstat(&entry.path)?.is_dir().then(|| entry.as_dir()))
}

fn lstat(path: &Path) -> Result<fs::Metadata, Error> {
    fs::symlink_metadata(path).map_err(|e| Error::io(path, e))
}

/// An overlay whiteout: a character device numbered 0/0.
pub(crate) fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &OldDir) -> Vec<String> {
        dir.children()
            .unwrap()
            .into_iter()
            .map(|(n, e)| format!("{n}:{}", e.below.len()))
            .collect()
    }

    #[test]
    fn a_plain_tree_is_read_as_it_is_and_a_stack_as_overlayfs_merges_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, low) = (tmp.path().join("top"), tmp.path().join("low"));
        for d in [&top, &low] {
            fs::create_dir_all(d.join("d")).unwrap();
        }
        fs::write(low.join("d/a"), b"a").unwrap();
        fs::write(low.join("d/b"), b"b").unwrap();
        fs::write(low.join("f"), b"f").unwrap();
        fs::create_dir(low.join("gone")).unwrap();
        fs::write(top.join("d/c"), b"c").unwrap();
        // A whiteout needs root (mknod); without it the stack's other rules still hold.
        let root = rustix::process::geteuid().is_root();
        if root {
            for w in ["d/b", "gone"] {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    top.join(w),
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                )
                .unwrap();
            }
        }
        let stack = OldDir::stack(&[top.clone(), low.clone()]);
        let want: &[&str] = if root {
            &["d:1", "f:0"]
        } else {
            &["d:1", "f:0", "gone:0"]
        };
        assert_eq!(names(&stack), want);
        let d = stack.lookup("d").unwrap().unwrap();
        let want: &[&str] = if root {
            &["a:0", "c:0"]
        } else {
            &["a:0", "b:0", "c:0"]
        };
        assert_eq!(names(&d.as_dir()), want);
        assert_eq!(stack.lookup("d/a").unwrap().unwrap().path, low.join("d/a"));
        assert!(stack.lookup("f/x").unwrap().is_none(), "below a file");
        assert!(stack.lookup("none").unwrap().is_none());
        // The top layer's directory is what the merged one says of itself.
        assert_eq!(d.path, top.join("d"));
        // A plain tree: nothing merged.
        assert_eq!(names(&OldDir::tree(&low)), ["d:0", "f:0", "gone:0"]);
    }
}
