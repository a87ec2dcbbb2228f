//! The differ, after containerd's: `compare` makes the OCI layer of the changes between two
//! full trees (a vfs snapshot and its parent), `apply` unpacks a layer into an active
//! snapshot's mounts.
//!
//! `compare` writes through diff.rs's one tar writer, and emits what an overlay upper dir
//! holding the same change would hold, so that for the same change its tar is the bytes
//! `write_diff` makes from that upper dir: images built on either driver get the same layer
//! digests. Per name, in the layer's order (bytes of the name, per directory):
//! - only in the new tree: written whole (a directory with everything below it);
//! - only in the old tree: `.wh.NAME`, with what overlayfs gives a whiteout: mode 0, owner
//!   0:0, and (the time of the deletion being lost) the mtime of its directory in the new
//!   tree, which the deletion set. The one difference from overlay: a whiteout made earlier
//!   than its directory's last change (overlayfs shares one whiteout inode per mount, too)
//!   is dated later here; `SOURCE_DATE_EPOCH` clamps both alike;
//! - a directory in both: its entry when its metadata changed or anything below it did (as
//!   overlayfs copies up every directory on the way to a change), then its changes;
//! - a non-directory become a directory: the directory opaque (`.wh..wh..opq`) and whole,
//!   as overlayfs makes a directory created over a whiteout; a directory become anything
//!   else: the new entry alone (it hides the whole old directory);
//! - else the entry when it changed. *Changed*: file type, mode, owner, size, mtime (to the
//!   nanosecond), device number, symlink target or xattrs differ, or more names link to it
//!   than before (overlayfs copies a file up to link it); when all of these are equal and
//!   both mtimes have no fraction of a second (containerd's rule: a tar-unpacked tree,
//!   whose times may have been cut to the second, so an edit within that second that
//!   restored the size would hide), the contents are compared.
//!
//! Not told apart (the new tree holds no history): a directory deleted and made again is
//! its old self with its children's whiteouts, not an opaque directory; the layer applies
//! to the same tree either way. An overlay upper dir does tell it (the directory is
//! opaque), so its layer is written in this form too when its lowers are known
//! ([`LayerChanges::Stacked`]): what the lowers hold at an opaque directory's path is
//! compared with it as here (`lower.rs` reads them as overlayfs merges them).
//!
//! It knows trees and layers, nothing of snapshots' layout, images or builds.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::apply::{ApplyOptions, ApplyStats, Whiteouts, apply_layer};
use crate::diff::{
    DiffOptions, LayerCompression, LayerDiff, Stat, TarSource, TarWriter, UpperDir, is_opaque,
    is_overlay, sorted_children, write_layer, xattrs,
};
use crate::lower::OldDir;
use crate::snapshotter::Mounts;

/// Where a layer's changes are: an overlay upper dir (overlay whiteouts and opaque marks
/// say what was deleted), written as it is (a first layer, a COPY's fresh directory) or,
/// stacked on the layer directories `lowers` (top first), with each opaque directory
/// written in [`compare`]'s form; or two full trees to [`compare`] (a vfs snapshot and its
/// parent).
#[derive(Debug, Clone, Copy)]
pub enum LayerChanges<'a> {
    Upper(&'a Path),
    Stacked {
        upper: &'a Path,
        lowers: &'a [PathBuf],
    },
    Trees {
        lower: &'a Path,
        upper: &'a Path,
    },
}

impl LayerChanges<'_> {
    /// Writes the layer of these changes to `out` ([`crate::write_diff`] or [`compare`]).
    pub fn write(
        self,
        out: impl Write,
        compression: LayerCompression,
        opts: DiffOptions,
    ) -> Result<LayerDiff, Error> {
        match self {
            LayerChanges::Upper(upper) => crate::diff::write_diff(upper, out, compression, opts),
            LayerChanges::Stacked { upper, lowers } => {
                let src = UpperDir { upper, lowers };
                write_layer(&src, upper, out, compression, opts)
            }
            LayerChanges::Trees { lower, upper } => compare(lower, upper, out, compression, opts),
        }
    }
}

/// Writes to `out` the layer of what changed from the tree `lower` to the tree `upper`
/// (compressed and hashed in one pass, as [`crate::write_diff`]). Both trees must hold
/// still meanwhile.
pub fn compare(
    lower: &Path,
    upper: &Path,
    out: impl Write,
    compression: LayerCompression,
    opts: DiffOptions,
) -> Result<LayerDiff, Error> {
    let mut changes = Vec::new();
    walk(
        &OldDir::tree(lower),
        upper,
        "",
        Contents::Compared,
        &mut changes,
    )?;
    write_layer(&Changes(changes), upper, out, compression, opts)
}

/// Writes the overlay upper dir `dir` (named `prefix`) over the stack `lowers` (its root):
/// every entry as it is, but an opaque directory as [`compare`] writes the change from
/// what the lowers hold at its path to it.
pub(crate) fn write_stacked<W: Write>(
    tar: &mut TarWriter<'_, W>,
    lowers: &OldDir,
    dir: &Path,
    prefix: &str,
) -> Result<(), Error> {
    for (name, path) in sorted_children(dir)? {
        let meta = metadata(&path)?;
        if !meta.is_dir() {
            tar.child(&path, prefix, &name)?;
            continue;
        }
        let rel = format!("{prefix}{name}");
        if is_opaque(&path) {
            let mut changes = Vec::new();
            match lowers.lookup(&rel)? {
                Some(old) => pair(&old, &path, prefix, &name, Contents::Compared, &mut changes)?,
                None => changes.push(Change::Whole {
                    path,
                    prefix: prefix.to_string(),
                    name,
                }),
            }
            Changes(changes).write_entries(tar)?;
        } else {
            let dname = tar.dir_entry(&path, &rel, &meta, false)?;
            write_stacked(tar, lowers, &path, &dname)?;
        }
    }
    Ok(())
}

/// The bytes of the regular files that changed from the tree `lower` to the tree `upper`,
/// hard links once: what an overlay upper dir holding the same change would hold, as
/// `docker ps -s` and `system df` count a container's size (docker's naive diff driver,
/// behind its vfs driver, counts so too).
///
/// The walk is `compare`'s by metadata only: type, mode, owner, size, mtime to the
/// nanosecond, device, link target, xattrs, link count. No file's content is read: a size
/// costs two `lstat`s and two xattr lists per file, not reading the image twice, which
/// `compare` would do (it compares contents where all metadata is equal and both mtimes
/// are whole seconds: a tar-unpacked file, most of an image). A file written in a
/// container takes a nanosecond mtime, so what is missed here is a change that kept the
/// size and set the mtime back to its old whole second. (Comparing inode numbers or
/// ctimes with the parent's would find every file changed: a vfs tree is a copy.)
pub fn changed_bytes(lower: &Path, upper: &Path) -> Result<u64, Error> {
    let changes = tree_changes(lower, upper)?;
    let mut seen = std::collections::HashSet::new();
    Ok(changes
        .iter()
        .map(|change| match change {
            Change::Whole { path, .. } | Change::Opaque { path, .. } => {
                crate::snapshotter::file_bytes(path, &mut seen)
            }
            Change::Dir { .. } | Change::Whiteout { .. } => 0,
        })
        .sum())
}

/// Whether a walk compares the contents of files whose metadata is equal (see the module
/// doc for when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contents {
    Compared,
    Skipped,
}

/// Unpacks `layer` (plain, gzip or zstd) into the writable part of `mounts`, without
/// mounting: a vfs tree or an overlay's first layer takes the changes with deletions done
/// (`Whiteouts::Delete`), an overlay's upper dir keeps them as overlay whiteouts for the
/// lowers below (root only, as any overlay). This is [`apply_layer`], nothing more.
pub fn apply(layer: impl Read, mounts: &Mounts) -> Result<ApplyStats, Error> {
    let privileged = rustix::process::geteuid().is_root();
    let (target, whiteouts) = match mounts {
        Mounts::Bind {
            source,
            read_only: false,
        } => (source, Whiteouts::Delete),
        Mounts::Overlay { upper: Some(u), .. } => (&u.upper, Whiteouts::Overlay),
        _ => {
            return Err(Error::Snapshot {
                key: format!("{mounts:?}"),
                reason: "read-only: a layer is applied to an active snapshot".into(),
            });
        }
    };
    apply_layer(
        layer,
        target,
        ApplyOptions {
            whiteouts,
            privileged,
        },
    )
}

/// One thing the layer says, in the layer's order.
#[derive(Debug)]
pub(crate) enum Change {
    /// `path`, named `prefix` + `name`, as it is now (a directory with all below it).
    Whole {
        path: PathBuf,
        prefix: String,
        name: String,
    },
    /// The entry of the directory `path` alone; its changes follow.
    Dir { path: PathBuf, rel: String },
    /// The directory `path` opaque and whole: it replaced a non-directory.
    Opaque { path: PathBuf, rel: String },
    /// `prefix` + `.wh.` + `name`.
    Whiteout {
        prefix: String,
        name: String,
        mtime: i64,
    },
}

struct Changes(Vec<Change>);

impl TarSource for Changes {
    fn write_entries<W: Write>(&self, tar: &mut TarWriter<'_, W>) -> Result<(), Error> {
        for change in &self.0 {
            match change {
                Change::Whole { path, prefix, name } => tar.child(path, prefix, name)?,
                Change::Dir { path, rel } => {
                    tar.dir_entry(path, rel, &metadata(path)?, false)?;
                }
                Change::Opaque { path, rel } => {
                    let prefix = tar.dir_entry(path, rel, &metadata(path)?, true)?;
                    tar.dir(path, &prefix)?;
                }
                Change::Whiteout {
                    prefix,
                    name,
                    mtime,
                } => {
                    let stat = Stat {
                        mode: 0,
                        uid: 0,
                        gid: 0,
                        mtime: *mtime,
                        rdev: 0,
                    };
                    tar.whiteout(prefix, name, &stat)
                        .map_err(|e| Error::io(Path::new(name), e))?;
                }
            }
        }
        Ok(())
    }
}

fn metadata(path: &Path) -> Result<fs::Metadata, Error> {
    fs::symlink_metadata(path).map_err(|e| Error::io(path, e))
}

fn raw_name(path: &Path) -> &[u8] {
    path.file_name().map_or(&[][..], |n| n.as_bytes())
}

/// The changes from directory `lower` to directory `upper` (named `prefix` in the layer),
/// by metadata only (see [`changed_bytes`]).
pub(crate) fn tree_changes(lower: &Path, upper: &Path) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::new();
    walk(
        &OldDir::tree(lower),
        upper,
        "",
        Contents::Skipped,
        &mut changes,
    )?;
    Ok(changes)
}

/// The changes from directory `lower` to directory `upper` (named `prefix` in the layer).
fn walk(
    lower: &OldDir,
    upper: &Path,
    prefix: &str,
    contents: Contents,
    out: &mut Vec<Change>,
) -> Result<(), Error> {
    let old = lower.children()?;
    let new = sorted_children(upper)?;
    let dir_mtime = metadata(upper)?.mtime();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some((_, o)), Some((_, n))) => raw_name(&o.path).cmp(raw_name(n)),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.push(Change::Whiteout {
                    prefix: prefix.to_string(),
                    name: old[i].0.clone(),
                    mtime: dir_mtime,
                });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (name, path) = &new[j];
                out.push(Change::Whole {
                    path: path.clone(),
                    prefix: prefix.to_string(),
                    name: name.clone(),
                });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                pair(&old[i].1, &new[j].1, prefix, &new[j].0, contents, out)?;
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

/// The changes of one name present in both trees.
fn pair(
    entry: &crate::lower::OldEntry,
    new: &Path,
    prefix: &str,
    name: &str,
    contents: Contents,
    out: &mut Vec<Change>,
) -> Result<(), Error> {
    let old = entry.path.as_path();
    let (om, nm) = (metadata(old)?, metadata(new)?);
    let rel = format!("{prefix}{name}");
    match (om.is_dir(), nm.is_dir()) {
        (true, true) => {
            let at = out.len();
            out.push(Change::Dir {
                path: new.to_path_buf(),
                rel: rel.clone(),
            });
            walk(&entry.as_dir(), new, &format!("{rel}/"), contents, out)?;
            if out.len() == at + 1 && same_dir(old, &om, new, &nm)? {
                out.pop(); // neither it nor anything below it changed
            }
        }
        (false, true) => out.push(Change::Opaque {
            path: new.to_path_buf(),
            rel,
        }),
        (_, false) => {
            if om.is_dir() || !same_entry(old, &om, new, &nm, contents)? {
                out.push(Change::Whole {
                    path: new.to_path_buf(),
                    prefix: prefix.to_string(),
                    name: name.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// What a directory's entry says, equal in both trees.
fn same_dir(old: &Path, om: &fs::Metadata, new: &Path, nm: &fs::Metadata) -> Result<bool, Error> {
    Ok(same_inode_meta(om, nm) && same_xattrs(old, new)?)
}

fn same_inode_meta(om: &fs::Metadata, nm: &fs::Metadata) -> bool {
    om.mode() == nm.mode()
        && om.uid() == nm.uid()
        && om.gid() == nm.gid()
        && om.mtime() == nm.mtime()
        && om.mtime_nsec() == nm.mtime_nsec()
}

/// Whether the xattrs of `old` and `new` are equal, overlayfs' own left out (a layer
/// directory's opaque mark or a copied-up file's origin are not the file's).
fn same_xattrs(old: &Path, new: &Path) -> Result<bool, Error> {
    let own = |path: &Path| -> Result<Vec<_>, Error> {
        let mut x = xattrs(path).map_err(|e| Error::io(path, e))?;
        x.retain(|(k, _)| !is_overlay(k));
        Ok(x)
    };
    Ok(own(old)? == own(new)?)
}

/// Whether the non-directory `new` is unchanged from `old` (the rule in the module doc).
fn same_entry(
    old: &Path,
    om: &fs::Metadata,
    new: &Path,
    nm: &fs::Metadata,
    contents: Contents,
) -> Result<bool, Error> {
    let (ot, nt) = (om.file_type(), nm.file_type());
    if !same_inode_meta(om, nm) || om.len() != nm.len() {
        return Ok(false);
    }
    if (ot.is_char_device() || ot.is_block_device()) && om.rdev() != nm.rdev() {
        return Ok(false);
    }
    if ot.is_file() && nm.nlink() > om.nlink() {
        return Ok(false);
    }
    if ot.is_symlink() {
        let o = fs::read_link(old).map_err(|e| Error::io(old, e))?;
        let n = fs::read_link(new).map_err(|e| Error::io(new, e))?;
        if o != n {
            return Ok(false);
        }
    }
    if !same_xattrs(old, new)? {
        return Ok(false);
    }
    if contents == Contents::Compared && nt.is_file() && om.mtime_nsec() == 0 && nm.len() > 0 {
        return same_content(old, new);
    }
    Ok(true)
}

fn same_content(old: &Path, new: &Path) -> Result<bool, Error> {
    let mut a = File::open(old).map_err(|e| Error::io(old, e))?;
    let mut b = File::open(new).map_err(|e| Error::io(new, e))?;
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut a, &mut x).map_err(|e| Error::io(old, e))?;
        let m = read_full(&mut b, &mut y).map_err(|e| Error::io(new, e))?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
