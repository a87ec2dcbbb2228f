//! Apply: unpack a layer (plain, gzip or zstd tar, told apart by magic bytes) into a
//! directory, turning OCI whiteouts into overlayfs whiteouts.
//!
//! Safety is structural: every parent directory is opened with
//! `openat2(RESOLVE_IN_ROOT)` from the target's own descriptor, so `..`, absolute symlinks and
//! symlinked parents all resolve inside the target; the entry itself is created with `*at`
//! calls on that parent using one plain name (never `..`, never a path), `O_EXCL|O_NOFOLLOW`
//! for files so nothing is written through a symlink; hard-link targets resolve inside the
//! target too. Names with `..` components are refused outright, as docker refuses them.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps, XattrFlags, chownat, linkat,
    mkdirat, mknodat, statat, symlinkat, unlinkat, utimensat,
};
use rustix::io::Errno;

use crate::Error;
use crate::digest::{Digest, Digester};
use crate::error::NoSpace;
use crate::reserve::SpaceGuard;

/// `openat2` through the one resolver (`lb_rootpath`: `EAGAIN` retried).
fn openat2<Fd: AsFd>(
    dir: Fd,
    path: &str,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    lb_rootpath::openat2_with_mode(
        dir.as_fd(),
        Path::new(path),
        flags.bits() as i32,
        mode.bits(),
        resolve.bits(),
    )
    .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// How whiteouts in the layer are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// As overlayfs whiteouts (0/0 character devices, `trusted.overlay.opaque`): the target
    /// is one snapshot of an overlay stack. Needs CAP_MKNOD and CAP_SYS_ADMIN.
    Overlay,
    /// By deleting what they hide: the target is a flattened root file system.
    Delete,
}

/// What applying may do beyond creating files and directories.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    pub whiteouts: Whiteouts,
    /// Set owners from the layer and create device nodes (as root).
    pub privileged: bool,
}

impl ApplyOptions {
    /// Overlay whiteouts, owners and devices when running as root.
    pub fn for_snapshot() -> Self {
        let root = rustix::process::geteuid().is_root();
        ApplyOptions {
            whiteouts: if root {
                Whiteouts::Overlay
            } else {
                Whiteouts::Delete
            },
            privileged: root,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Digest of the whole uncompressed tar stream: the layer's diffID, to check against
    /// the image config.
    pub diff_id: Digest,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The layer's compression, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The tar stream inside `layer`, decompressed as its magic bytes say.
pub fn decompressed<'a>(layer: impl Read + 'a) -> Result<Box<dyn Read + 'a>, Error> {
    let mut buffered = BufReader::with_capacity(1 << 16, layer);
    let head = buffered
        .fill_buf()
        .map_err(|e| Error::layer("reading layer", e))?;
    Ok(match Compression::detect(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| Error::layer("opening zstd stream", e))?,
        ),
        Compression::None => Box::new(buffered),
    })
}

/// Unpacks `layer` into the existing directory `target`. A full disk, or the file system
/// about to fall below its free-space reserve (`LB_MIN_FREE`, checked every few MiB
/// written: a decompression bomb stops early), is [`Error::NoSpace`]; what was unpacked
/// stays for the caller to remove (snapshots are applied into a temporary directory).
pub fn apply_layer(
    layer: impl Read,
    target: &Path,
    opts: ApplyOptions,
) -> Result<ApplyStats, Error> {
    let root: OwnedFd = File::open(target).map_err(|e| Error::io(target, e))?.into();
    let mut guard = SpaceGuard::new(&root, "unpacking a layer", target)?;
    // An entry's error; a full disk names the entry's path.
    let entry_err = |name: &str, e: io::Error| {
        let at = target.join(name.trim_start_matches('/'));
        match NoSpace::from_io(&e, "unpacking a layer", &at) {
            Some(n) => Error::NoSpace(n),
            None => Error::entry(name, e),
        }
    };
    let mut archive = tar::Archive::new(Digester::new(decompressed(layer)?));
    let (mut entries_seen, mut bytes_written) = (0u64, 0u64);
    // Directory modes and times are set last: a read-only directory must still take its
    // children, and creating them changes its mtime.
    let mut dir_times: Vec<(Vec<String>, i64, Mode)> = Vec::new();
    // What this layer itself created: an opaque marker in a flattened tree spares it.
    let mut created: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut cached: Option<(Vec<String>, OwnedFd)> = None;
    let mut buf = vec![0u8; 1 << 20];
    let entries = archive
        .entries()
        .map_err(|e| Error::layer("reading tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::layer("reading tar entry", e))?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = clean_path(&raw_name)?;
        entries_seen += 1;
        // Each entry costs an inode and a header's worth at least: a bomb of empty files
        // is looked at too.
        guard
            .wrote(512)
            .map_err(|n| entry_err(&raw_name, n.into_io()))?;
        let Some((name, parents)) = parts.split_last() else {
            continue; // the root itself
        };
        let kind = entry.header().entry_type();
        // Consecutive files in one directory reuse its descriptor; any other kind of entry
        // may change what a path resolves to, so it resolves afresh.
        let parent = match cached.take() {
            Some((p, fd)) if kind.is_file() && p.as_slice() == parents => fd,
            _ => open_dir(&root, parents, true).map_err(|e| entry_err(&raw_name, e))?,
        };

        if name == OPAQUE {
            opaque(&root, parents, &parent, opts, &created).map_err(|e| entry_err(&raw_name, e))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.starts_with(WHITEOUT)
            {
                return Err(Error::entry(
                    &raw_name,
                    io::Error::other("invalid whiteout name"),
                ));
            }
            remove_existing(&parent, hidden).map_err(|e| entry_err(&raw_name, e))?;
            if opts.whiteouts == Whiteouts::Overlay {
                // With the entry's time, as every other entry: a layer written from the
                // tree again is the same bytes.
                let mtime = entry.header().mtime().unwrap_or(0) as i64;
                mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                    .and_then(|()| {
                        utimensat(&parent, hidden, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    })
                    .map_err(|e| entry_err(&raw_name, e.into()))?;
            }
            continue;
        }

        let header = entry.header().clone();
        let mode = Mode::from_raw_mode(header.mode().unwrap_or(0o644) & 0o7777);
        let existing = statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok();
        let keep_dir = kind.is_dir()
            && existing.is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if existing.is_some() && !keep_dir {
            remove_existing(&parent, name).map_err(|e| entry_err(&raw_name, e))?;
        }
        let result: io::Result<()> = (|| {
            match kind {
                k if k.is_dir() => {
                    if !keep_dir {
                        mkdirat(&parent, name.as_str(), Mode::from_raw_mode(0o700))?;
                    }
                }
                k if k.is_file() || k == tar::EntryType::Continuous => {
                    let fd = openat2(
                        &parent,
                        name.as_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
                    )?;
                    let mut file = File::from(fd);
                    loop {
                        let n = entry.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        file.write_all(&buf[..n])?;
                        bytes_written += n as u64;
                        guard.wrote(n as u64).map_err(NoSpace::into_io)?;
                    }
                }
                k if k.is_symlink() => {
                    let link = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    symlinkat(link.as_str(), &parent, name.as_str())?;
                }
                k if k.is_hard_link() => {
                    let link = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let target_parts = clean_path(&link).map_err(io::Error::other)?;
                    let Some((tname, tparents)) = target_parts.split_last() else {
                        return Err(io::Error::other("hard link to the layer root"));
                    };
                    let tparent = open_dir(&root, tparents, false)?;
                    linkat(
                        &tparent,
                        tname.as_str(),
                        &parent,
                        name.as_str(),
                        AtFlags::empty(),
                    )?;
                    return Ok(());
                }
                k if k.is_character_special() || k.is_block_special() || k.is_fifo() => {
                    let ft = if k.is_fifo() {
                        FileType::Fifo
                    } else if k.is_character_special() {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    if ft != FileType::Fifo && !opts.privileged {
                        return Ok(()); // devices need root; a rootless unpack leaves them out
                    }
                    let dev = rustix::fs::makedev(
                        header.device_major().ok().flatten().unwrap_or(0),
                        header.device_minor().ok().flatten().unwrap_or(0),
                    );
                    mknodat(&parent, name.as_str(), ft, mode, dev)?;
                }
                // PAX/GNU metadata records are consumed by the tar reader; anything else
                // (sparse files, volume labels) has no place in an image layer.
                other => {
                    return Err(io::Error::other(format!(
                        "unsupported tar entry type {other:?}"
                    )));
                }
            }
            set_metadata(&parent, name, &mut entry, &header, mode, opts)
        })();
        result.map_err(|e| entry_err(&raw_name, e))?;
        created.insert(parts.join("/"));
        if kind.is_file() {
            cached = Some((parents.to_vec(), parent));
        }
        if kind.is_dir() {
            dir_times.push((parts.clone(), header.mtime().unwrap_or(0) as i64, mode));
        }
    }
    for (parts, mtime, mode) in dir_times.iter().rev() {
        let Some((name, parents)) = parts.split_last() else {
            continue;
        };
        let done = open_dir(&root, parents, false).and_then(|parent| {
            rustix::fs::chmodat(&parent, name.as_str(), *mode, AtFlags::empty())?;
            utimensat(
                &parent,
                name.as_str(),
                &times(*mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
            Ok(())
        });
        done.map_err(|e| entry_err(&parts.join("/"), e))?;
    }
    // The diffID covers the whole stream, the end-of-archive blocks and padding included.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| Error::layer("reading layer", e))?;
    let (diff_id, _, _) = rest.finish();
    Ok(ApplyStats {
        entries: entries_seen,
        bytes: bytes_written,
        diff_id,
    })
}

fn times(mtime: i64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Owner, mode, xattrs and mtime of a created entry (owner first: chown clears set-id bits).
fn set_metadata(
    parent: &OwnedFd,
    name: &str,
    entry: &mut tar::Entry<'_, impl Read>,
    header: &tar::Header,
    mode: Mode,
    opts: ApplyOptions,
) -> io::Result<()> {
    let kind = header.entry_type();
    if opts.privileged {
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        chownat(
            parent,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    if !kind.is_symlink() && !kind.is_dir() {
        rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?;
    }
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let Some(attr) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                continue;
            };
            if !opts.privileged && !attr.starts_with("user.") {
                continue;
            }
            if kind.is_file() || kind.is_dir() {
                let fd = openat2(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
                )?;
                rustix::fs::fsetxattr(&fd, attr, ext.value_bytes(), XattrFlags::empty())?;
            }
        }
    }
    if !kind.is_dir() {
        utimensat(
            parent,
            name,
            &times(header.mtime().unwrap_or(0) as i64),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

/// An entry name as path components: `./a//b/` is `[a, b]`; a leading `/` is dropped (names
/// are relative to the layer root); any `..` is refused.
fn clean_path(name: &str) -> Result<Vec<String>, Error> {
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Error::entry(
                    name,
                    io::Error::other("path leads outside the layer root"),
                ));
            }
            c => parts.push(c.to_string()),
        }
    }
    Ok(parts)
}

/// Opens the directory `parts` inside `root`, resolving every symlink inside `root`, and
/// creating missing directories when `create`.
fn open_dir(root: &OwnedFd, parts: &[String], create: bool) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let path = if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    };
    match openat2(root, path.as_str(), flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) if create => {
            // Make the missing directories one level at a time, each inside the root.
            let mut fd = openat2(root, ".", flags, Mode::empty(), resolve)?;
            for i in 0..parts.len() {
                let prefix = parts[..=i].join("/");
                fd = match openat2(root, prefix.as_str(), flags, Mode::empty(), resolve) {
                    Ok(next) => next,
                    Err(Errno::NOENT) => {
                        match mkdirat(&fd, parts[i].as_str(), Mode::from_raw_mode(0o755)) {
                            Err(Errno::EXIST) => {
                                return Err(io::Error::other(format!(
                                    "{prefix} is a symlink to a missing directory"
                                )));
                            }
                            other => other?,
                        }
                        openat2(root, prefix.as_str(), flags, Mode::empty(), resolve)?
                    }
                    Err(e) => return Err(e.into()),
                };
            }
            Ok(fd)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `parent`, a whole tree if it is a directory.
fn remove_existing(parent: &OwnedFd, name: &str) -> io::Result<()> {
    match statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            let dir = openat2(
                parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            )?;
            let children: Vec<String> = rustix::fs::Dir::read_from(&dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "." && n != "..")
                .collect();
            for child in children {
                remove_existing(&dir, &child)?;
            }
            unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(Into::into)
        }
        Ok(_) => unlinkat(parent, name, AtFlags::empty()).map_err(Into::into),
    }
}

/// `.wh..wh..opq`: the directory hides everything below it in lower layers.
fn opaque(
    root: &OwnedFd,
    parents: &[String],
    parent: &OwnedFd,
    opts: ApplyOptions,
    created: &std::collections::HashSet<String>,
) -> io::Result<()> {
    match opts.whiteouts {
        Whiteouts::Overlay => {
            let path = if parents.is_empty() {
                ".".to_string()
            } else {
                parents.join("/")
            };
            let dir = openat2(
                root,
                path.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )?;
            rustix::fs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())?;
            Ok(())
        }
        Whiteouts::Delete => {
            // Flattened: what lower layers put in the directory goes; this layer's own
            // entries stay.
            let dir = openat2(
                parent.as_fd(),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH,
            )?;
            let children: Vec<String> = rustix::fs::Dir::read_from(&dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "." && n != "..")
                .filter(|n| {
                    let mut p = parents.to_vec();
                    p.push(n.clone());
                    !created.contains(&p.join("/"))
                })
                .collect();
            for child in children {
                remove_existing(&dir, &child)?;
            }
            Ok(())
        }
    }
}
