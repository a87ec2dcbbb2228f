//! Trees as tar streams and back, for `cp` (docker's pkg/archive, narrowed to what its
//! copy needs): [`write_tree`] makes the stream of one file or directory under a name of
//! the caller's choosing, [`untar`] unpacks a stream into a directory, and the path rules
//! docker's copy decides by ([`split_dir_entry`], [`asserts_directory`],
//! [`clean_path`]).
//!
//! Both ends run where the paths they are given cannot leave the tree they mean: the
//! container's side in a process whose root is the container's (`ops/copy.rs`), the
//! host's side on paths the user named. Neither follows a symlink it finds in a tree: a
//! link is written as a link, and unpacking refuses any entry whose parent resolves
//! outside the destination (the `tar` crate's check). Nothing here looks up user or group
//! names (no NSS inside a container's root: CVE-2019-14271).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `path` as docker's copy reads a path (a container's, or an absolute one of the host):
/// absolute, cleaned lexically (`..` stops at the root), with a trailing `/` or `/.`
/// kept (they ask for a directory, or for its contents).
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let clean = format!("/{}", parts.join("/"));
    preserve_trailing(clean, path)
}

/// `clean` with the trailing `/.` or `/` that `original` had (docker's
/// `PreserveTrailingDotOrSeparator`).
pub fn preserve_trailing(mut clean: String, original: &str) -> String {
    if specifies_current_dir(original) && !specifies_current_dir(&clean) {
        if !clean.ends_with('/') {
            clean.push('/');
        }
        clean.push('.');
    } else if original.ends_with('/') && !clean.ends_with('/') {
        clean.push('/');
    }
    clean
}

/// Whether `path` names a directory's contents (`.` as its last element).
pub fn specifies_current_dir(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// Whether `path` must name a directory: it ends with `/` or `/.`.
pub fn asserts_directory(path: &str) -> bool {
    path.ends_with('/') || specifies_current_dir(path)
}

/// `path`'s directory and last element, docker's `SplitPathDirEntry`: `/d/.` is
/// (`/d`, `.`), `/d/` is (`/`, `d`), `/` is (`/`, `.`).
pub fn split_dir_entry(path: &str) -> (String, String) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return ("/".into(), ".".into());
    }
    if specifies_current_dir(path) {
        let dir = trimmed.strip_suffix("/.").unwrap_or(".");
        return (if dir.is_empty() { "/" } else { dir }.into(), ".".into());
    }
    match trimmed.rsplit_once('/') {
        Some(("", base)) => ("/".into(), base.into()),
        Some((dir, base)) => (dir.into(), base.into()),
        None => (".".into(), trimmed.into()),
    }
}

/// Writes to `out` the tar stream of `path` (not followed when it is a symlink) named
/// `name`, and everything below it when it is a directory (`name/child`...), in the
/// names' order, as docker's `TarWithOptions` does. Owners are numeric; hard links within
/// the tree are links; sockets are left out. A file whose length changes while it is
/// read is cut or padded to the length its header gave.
pub fn write_tree(out: impl Write, path: &Path, name: &str) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut links = HashMap::new();
    append(&mut tar, path, name.trim_end_matches('/'), &mut links)?;
    tar.into_inner()?.flush()
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    links: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    if ft.is_socket() {
        return Ok(());
    }
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
    if ft.is_dir() {
        h.set_size(0);
        let dir_name = if name.is_empty() {
            "./".to_string()
        } else {
            format!("{name}/")
        };
        tar.append_data(&mut h, &dir_name, io::empty())?;
        let mut children: Vec<_> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for child in children {
            let child_name = format!("{name}/{}", child.to_string_lossy());
            append(tar, &path.join(&child), &child_name, links)?;
        }
        return Ok(());
    }
    if md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            return tar.append_link(&mut h, name, first);
        }
        links.insert((md.dev(), md.ino()), name.to_string());
    }
    if ft.is_symlink() {
        let target = fs::read_link(path)?;
        h.set_size(0);
        return append_symlink(tar, &mut h, name, target.as_os_str().as_bytes());
    }
    if !ft.is_file() {
        // Devices and fifos: their header says all.
        h.set_size(0);
        return tar.append_data(&mut h, name, io::empty());
    }
    // Opened without following a link and without blocking (a file swapped for a fifo
    // meanwhile would hang the copy): what is read is what the header describes.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let fmd = file.metadata()?;
    if !fmd.is_file() {
        return Err(io::Error::other(format!(
            "{}: changed while it was copied",
            path.display()
        )));
    }
    h.set_metadata_in_mode(&fmd, tar::HeaderMode::Complete);
    let size = fmd.len();
    tar.append_data(&mut h, name, Exact::new(file, size))
}

/// A symlink entry whose target is the link's bytes as they are (the `tar` crate's
/// `append_link` cleans a target as a path: `/` became `//`, `a//b` `a/b`); a target too
/// long for the header goes first in a GNU long-link entry, as GNU tar writes it.
fn append_symlink<W: Write>(
    tar: &mut tar::Builder<W>,
    h: &mut tar::Header,
    name: &str,
    target: &[u8],
) -> io::Result<()> {
    const FIELD: usize = 100;
    if target.len() >= FIELD {
        let mut long = tar::Header::new_gnu();
        let gnu = long.as_gnu_mut().expect("a GNU header");
        gnu.name[..13].copy_from_slice(b"././@LongLink");
        long.set_mode(0o644);
        long.set_mtime(0);
        long.set_size(target.len() as u64 + 1);
        long.set_entry_type(tar::EntryType::GNULongLink);
        long.set_cksum();
        tar.append(&long, target.chain(&[0u8][..]))?;
        h.set_link_name_literal(&target[..FIELD - 1])?;
    } else {
        h.set_link_name_literal(target)?;
    }
    tar.append_data(h, name, io::empty())
}

/// `size` bytes of a file: what it has up to there, then zeros.
struct Exact {
    file: io::Take<File>,
    left: u64,
}

impl Exact {
    fn new(file: File, size: u64) -> Exact {
        Exact {
            file: file.take(size),
            left: size,
        }
    }
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = match self.file.read(buf)? {
            0 => {
                let n = buf.len().min(self.left as usize);
                buf[..n].fill(0);
                n
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Who unpacked files belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The tar headers' uid and gid (docker's extraction into a container).
    Kept,
    /// Whoever unpacks (docker's `NoLchown`: a copy to the host).
    Unpacker,
    /// This uid and gid (`cp -a` into a container run as a user).
    Set(u32, u32),
}

/// Why a stream was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UntarError {
    /// docker's `NoOverwriteDirNonDir` refusals, in its words.
    #[error("cannot overwrite {existing} {path:?} with {new} {name:?}")]
    WouldReplace {
        existing: &'static str,
        new: &'static str,
        path: String,
        name: String,
    },
    #[error("{}", chain(.0))]
    Io(#[from] io::Error),
}

/// An error with its causes (the `tar` crate says which entry in its own message and
/// why in its source).
fn chain(e: &io::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Unpacks the tar stream `input` into the directory `dst`: modes and times as the
/// headers give them, owners as `owner` says. An entry never replaces a directory with a
/// non-directory or the other way round (docker's copy refuses both); an entry whose
/// path leaves `dst` (`..`, or a parent that resolves outside through a symlink) is
/// refused by the `tar` crate.
pub fn untar(input: impl Read, dst: &Path, owner: Owner) -> Result<(), UntarError> {
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    ar.set_preserve_ownerships(owner == Owner::Kept);
    // Directories' times are set again at the end: what is unpacked into them moves them.
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel: PathBuf = entry
            .path()?
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        let at = dst.join(&rel);
        let is_dir = entry.header().entry_type().is_dir();
        if !rel.as_os_str().is_empty()
            && let Ok(existing) = fs::symlink_metadata(&at)
            && existing.is_dir() != is_dir
        {
            let kind = |d: bool| if d { "directory" } else { "non-directory" };
            return Err(UntarError::WouldReplace {
                existing: kind(existing.is_dir()),
                new: kind(is_dir),
                path: at.display().to_string(),
                name: rel.display().to_string(),
            });
        }
        if !entry.unpack_in(dst)? {
            continue;
        }
        if let Owner::Set(uid, gid) = owner {
            std::os::unix::fs::lchown(&at, Some(uid), Some(gid))?;
        }
        if is_dir {
            dirs.push((at, entry.header().mtime().unwrap_or(0)));
        }
    }
    for (dir, mtime) in dirs.iter().rev() {
        let t = nix::sys::time::TimeSpec::new(*mtime as i64, 0);
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            dir,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_cleaned_and_keep_what_their_end_asks() {
        assert_eq!(clean_path("d/a"), "/d/a");
        assert_eq!(clean_path("/../../etc//passwd"), "/etc/passwd");
        assert_eq!(clean_path("/d/"), "/d/");
        assert_eq!(clean_path("/d/."), "/d/.");
        assert_eq!(clean_path("/d/x/.."), "/d");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("."), "/.");
    }

    #[test]
    fn split_as_docker_splits() {
        assert_eq!(split_dir_entry("/d/."), ("/d".into(), ".".into()));
        assert_eq!(split_dir_entry("/d/"), ("/".into(), "d".into()));
        assert_eq!(split_dir_entry("/d/a"), ("/d".into(), "a".into()));
        assert_eq!(split_dir_entry("/"), ("/".into(), ".".into()));
        assert_eq!(split_dir_entry("/."), ("/".into(), ".".into()));
        assert_eq!(split_dir_entry("a"), (".".into(), "a".into()));
        assert!(asserts_directory("/x/") && asserts_directory("x/.") && !asserts_directory("x"));
    }

    #[test]
    fn a_tree_goes_through_a_stream_with_links_kept_as_links() {
        let src = tempfile::tempdir().unwrap();
        let d = src.path().join("d");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a"), b"hi").unwrap();
        fs::hard_link(d.join("a"), d.join("sub/hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("out")).unwrap();
        std::os::unix::fs::symlink("/", d.join("root")).unwrap();
        let long = format!("./{}//x", "l".repeat(150));
        std::os::unix::fs::symlink(&long, d.join("long")).unwrap();
        let mut stream = Vec::new();
        write_tree(&mut stream, &d, "copy").unwrap();
        let names: Vec<String> = tar::Archive::new(&stream[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "copy/",
                "copy/a",
                "copy/long",
                "copy/out",
                "copy/root",
                "copy/sub/",
                "copy/sub/hard"
            ]
        );
        let dst = tempfile::tempdir().unwrap();
        untar(&stream[..], dst.path(), Owner::Unpacker).unwrap();
        let got = dst.path().join("copy");
        assert_eq!(fs::read(got.join("sub/hard")).unwrap(), b"hi");
        assert_eq!(
            fs::metadata(got.join("a")).unwrap().ino(),
            fs::metadata(got.join("sub/hard")).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(got.join("out")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(fs::read_link(got.join("root")).unwrap(), Path::new("/"));
        assert_eq!(fs::read_link(got.join("long")).unwrap(), Path::new(&long));
        // Once more: a directory is never replaced by a file, nor a file by a directory.
        let mut file_named_sub = Vec::new();
        fs::write(src.path().join("sub"), b"x").unwrap();
        write_tree(&mut file_named_sub, &src.path().join("sub"), "copy/sub").unwrap();
        let e = untar(&file_named_sub[..], dst.path(), Owner::Unpacker).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot overwrite directory"),
            "{e}"
        );
    }

    #[test]
    fn nothing_is_written_through_a_symlink_of_the_stream() {
        // A link to outside, then an entry below it: refused, nothing written outside.
        let outside = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "esc", outside.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/planted", &b"x"[..]).unwrap();
        let stream = b.into_inner().unwrap();
        let dst = tempfile::tempdir().unwrap();
        assert!(untar(&stream[..], dst.path(), Owner::Unpacker).is_err());
        assert!(!outside.path().join("planted").exists());
    }
}
