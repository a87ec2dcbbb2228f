//! A faithful copy of a file tree, for the vfs driver (each of its snapshots is a full
//! tree): owners, modes (set-id bits included), access and modification times to the
//! nanosecond, xattrs, symlinks, device nodes, fifos and the hard links inside the tree.
//! File contents are reflinked (`ioctl FICLONE`: no data copied, blocks shared until
//! written) where the file system can, else copied (`copy_file_range`).
//!
//! It knows trees only: not snapshots, layers or the store's layout. The source must hold
//! still while it is copied (a committed snapshot does).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::Error;
use crate::reserve::SpaceGuard;

const WHAT: &str = "copying a snapshot";

/// Copies the directory `src` to `dst`, which must not exist. What is written counts
/// against the store's free-space reserve (reflinked files take none).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(src).map_err(|e| Error::io(src, e))?;
    if !meta.is_dir() {
        return Err(Error::io(src, io::Error::other("not a directory")));
    }
    fs::create_dir(dst).map_err(|e| Error::io_while(WHAT, dst, e))?;
    let guard = {
        let d = File::open(dst).map_err(|e| Error::io(dst, e))?;
        SpaceGuard::new(d.as_fd(), WHAT, dst)?
    };
    let mut copier = Copier {
        links: HashMap::new(),
        reflink: true,
        root: rustix::process::geteuid().is_root(),
        guard,
    };
    copier.dir_content(src, dst)?;
    copier.metadata(src, dst, &meta, false)
}

/// The bytes of the regular files at `path` (a file, or a directory with all below it),
/// each inode once (`seen` keeps hard links from counting twice): how `docker ps -s` and
/// `system df` count a container's size. What cannot be read counts nothing.
pub(crate) fn file_bytes(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(md) = fs::symlink_metadata(path) else {
        return 0;
    };
    if md.is_file() {
        return if seen.insert((md.dev(), md.ino())) {
            md.len()
        } else {
            0
        };
    }
    if !md.is_dir() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|e| file_bytes(&e.path(), seen)).sum()
}

struct Copier {
    /// (device, inode) of source files with several links, to their first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Cleared at the first file the file system will not clone: the rest are copied.
    reflink: bool,
    /// Root keeps every owner and xattr; others keep what they may (a rootless copy of
    /// root's files cannot give them away), as `apply_layer` unprivileged does.
    root: bool,
    guard: SpaceGuard,
}

impl Copier {
    fn dir_content(&mut self, src: &Path, dst: &Path) -> Result<(), Error> {
        for entry in fs::read_dir(src).map_err(|e| Error::io(src, e))? {
            let entry = entry.map_err(|e| Error::io(src, e))?;
            let (from, to) = (entry.path(), dst.join(entry.file_name()));
            let meta = fs::symlink_metadata(&from).map_err(|e| Error::io(&from, e))?;
            self.guard
                .wrote(512)
                .map_err(|n| Error::NoSpace(n.clone()))?;
            self.entry(&from, &to, &meta)?;
        }
        Ok(())
    }

    fn entry(&mut self, from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), Error> {
        let err = |e| Error::io_while(WHAT, to, e);
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(to).map_err(err)?;
            self.dir_content(from, to)?;
            // Last: making the children changed its times.
            return self.metadata(from, to, meta, false);
        }
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                // A link shares the inode: its metadata is the first copy's already.
                return fs::hard_link(first, to).map_err(err);
            }
            self.links.insert(key, to.to_path_buf());
        }
        if ft.is_file() {
            self.file(from, to, meta)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(from).map_err(|e| Error::io(from, e))?;
            std::os::unix::fs::symlink(&target, to).map_err(err)?;
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else {
                FileType::Socket
            };
            let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
            rustix::fs::mknodat(CWD, to, kind, mode, meta.rdev()).map_err(|e| err(e.into()))?;
        }
        self.metadata(from, to, meta, ft.is_symlink())
    }

    fn file(&mut self, from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), Error> {
        let err = |e| Error::io_while(WHAT, to, e);
        let mut src = File::open(from).map_err(|e| Error::io(from, e))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(to)
            .map_err(err)?;
        if self.reflink {
            match rustix::fs::ioctl_ficlone(&dst, &src) {
                Ok(()) => return Ok(()),
                // Not this file system (or not across these two): copy from now on.
                Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::PERM) => {
                    self.reflink = false;
                }
                Err(e) => return Err(err(e.into())),
            }
        }
        let copied = io::copy(&mut src, &mut dst).map_err(err)?;
        self.guard
            .wrote(copied)
            .map_err(|n| Error::NoSpace(n.clone()))?;
        if copied != meta.len() {
            return Err(err(io::Error::other("the file changed size while copied")));
        }
        Ok(())
    }

    /// Owner, mode, xattrs, then times (owner first: chown clears set-id bits and file
    /// capabilities; times last: setting the others changes none of them but ctime).
    fn metadata(
        &self,
        from: &Path,
        to: &Path,
        meta: &fs::Metadata,
        symlink: bool,
    ) -> Result<(), Error> {
        let err = |e: Errno| Error::io_while(WHAT, to, e.into());
        let owner = rustix::fs::chownat(
            CWD,
            to,
            Some(rustix::fs::Uid::from_raw(meta.uid())),
            Some(rustix::fs::Gid::from_raw(meta.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        match owner {
            Ok(()) => {}
            Err(Errno::PERM) if !self.root => {}
            Err(e) => return Err(err(e)),
        }
        if !symlink {
            let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
            rustix::fs::chmodat(CWD, to, mode, AtFlags::empty()).map_err(err)?;
        }
        let attrs = crate::diff::xattrs(from).map_err(|e| Error::io(from, e))?;
        for (name, value) in attrs {
            match rustix::fs::lsetxattr(to, name.as_str(), &value, XattrFlags::empty()) {
                Ok(()) => {}
                // The target file system keeps no xattrs (or none of this namespace).
                Err(Errno::OPNOTSUPP) => {}
                Err(Errno::PERM) if !self.root || symlink => {}
                Err(e) => return Err(err(e)),
            }
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: meta.atime(),
                tv_nsec: meta.atime_nsec() as _,
            },
            last_modification: Timespec {
                tv_sec: meta.mtime(),
                tv_nsec: meta.mtime_nsec() as _,
            },
        };
        rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(err)
    }
}
