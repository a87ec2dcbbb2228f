//! Whether a snapshot directory is what its layer unpacks to (`apply_layer` with overlay
//! whiteouts): the layer's entries read once, the tree walked once. Compared: every path,
//! its kind, size, mode, owner, link target, device numbers, whiteouts (0/0 character
//! devices) and opaque directories; file contents for a sample of files, or all with
//! `full`. Not compared: times and xattrs other than the opaque mark (no reader depends on
//! them to find a snapshot whole), sockets (no layer holds one).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::Error;
use crate::apply::decompressed;
use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File { size: u64, content: Option<Digest> },
    Symlink(Vec<u8>),
    HardLink(String),
    Char(u64, u64),
    Block(u64, u64),
    Fifo,
    Whiteout,
}

#[derive(Debug)]
struct Expected {
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    opaque: bool,
}

/// Whether a file's content is compared without `full`: about one file in eight, chosen by
/// its path (the same files every time), and every small file (cheap).
fn sampled(path: &str, size: u64) -> bool {
    size <= 4096 || Digest::of(path.as_bytes()).hex().starts_with(['0', '1'])
}

fn clean(name: &[u8]) -> Option<String> {
    let name = String::from_utf8_lossy(name);
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The differences between the layer `layer` and the snapshot `dir` (empty: it matches).
pub(crate) fn compare(layer: impl Read, dir: &Path, full: bool) -> Result<Vec<String>, Error> {
    let expected = read_layer(layer, full)?;
    let mut out = Vec::new();
    for (path, want) in &expected {
        let host = if path.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(path)
        };
        let shown = if path.is_empty() { "/" } else { path.as_str() };
        let md = match fs::symlink_metadata(&host) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push(format!("/{path} is missing"));
                continue;
            }
            Err(e) => return Err(Error::io(&host, e)),
        };
        if let Some(d) = differs(want, &md, &host, dir).map_err(|e| Error::io(&host, e))? {
            out.push(format!("/{} {d}", shown.trim_start_matches('/')));
        }
    }
    // What the snapshot holds beyond the layer: only the parents the layer implies.
    walk(dir, "", &mut |rel, ft| {
        if ft.is_socket() || expected.contains_key(rel) {
            return;
        }
        if !has_below(&expected, rel) {
            out.push(format!("/{rel} is not in the layer"));
        }
    })
    .map_err(|e| Error::io(dir, e))?;
    Ok(out)
}

/// The layer's entries as `apply_layer` leaves them (a later entry for a path replaces an
/// earlier one).
fn read_layer(layer: impl Read, full: bool) -> Result<BTreeMap<String, Expected>, Error> {
    let mut archive = tar::Archive::new(decompressed(layer)?);
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let implied_dir = || Expected {
        kind: Kind::Dir,
        mode: 0,
        uid: 0,
        gid: 0,
        opaque: false,
    };
    let entries = archive
        .entries()
        .map_err(|e| Error::layer("reading tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::layer("reading tar entry", e))?;
        let raw = entry.path_bytes().into_owned();
        let Some(path) = clean(&raw) else {
            return Err(Error::entry(
                &String::from_utf8_lossy(&raw),
                io::Error::other("path leads outside the layer root"),
            ));
        };
        if path.is_empty() {
            continue; // the root itself: apply leaves it as it is
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            if !parent.is_empty() {
                expected.entry(parent).or_insert_with(implied_dir).opaque = true;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            remove_below(&mut expected, &target);
            expected.insert(
                target,
                Expected {
                    kind: Kind::Whiteout,
                    ..implied_dir()
                },
            );
            continue;
        }
        let header = entry.header().clone();
        let link = || clean(&entry.link_name_bytes().unwrap_or_default()).unwrap_or_default();
        let dev = || {
            (
                header.device_major().ok().flatten().unwrap_or(0) as u64,
                header.device_minor().ok().flatten().unwrap_or(0) as u64,
            )
        };
        let t = header.entry_type();
        let kind = if t.is_dir() {
            Kind::Dir
        } else if t.is_file() || t == tar::EntryType::Continuous {
            let size = header.size().unwrap_or(0);
            let content = if full || sampled(&path, size) {
                let mut hashing = crate::digest::Digester::new(&mut entry);
                io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::entry(&path, e))?;
                Some(hashing.finish().0)
            } else {
                None
            };
            Kind::File { size, content }
        } else if t.is_symlink() {
            Kind::Symlink(entry.link_name_bytes().unwrap_or_default().into_owned())
        } else if t.is_hard_link() {
            Kind::HardLink(link())
        } else if t.is_character_special() {
            let (a, b) = dev();
            Kind::Char(a, b)
        } else if t.is_block_special() {
            let (a, b) = dev();
            Kind::Block(a, b)
        } else if t.is_fifo() {
            Kind::Fifo
        } else {
            continue;
        };
        let opaque = kind == Kind::Dir && expected.get(&path).is_some_and(|e| e.opaque);
        if kind != Kind::Dir {
            // A non-directory replaces whatever was there, and what was below it.
            remove_below(&mut expected, &path);
        }
        expected.insert(
            path,
            Expected {
                kind,
                mode: header.mode().unwrap_or(0o644) & 0o7777,
                uid: header.uid().unwrap_or(0),
                gid: header.gid().unwrap_or(0),
                opaque,
            },
        );
    }
    Ok(expected)
}

/// How `md` (the snapshot's entry at `host`) differs from `want`, if it does.
fn differs(
    want: &Expected,
    md: &fs::Metadata,
    host: &Path,
    root: &Path,
) -> io::Result<Option<String>> {
    let ft = md.file_type();
    let kind_ok = match &want.kind {
        Kind::Dir => ft.is_dir(),
        Kind::File { .. } | Kind::HardLink(_) => ft.is_file(),
        Kind::Symlink(_) => ft.is_symlink(),
        Kind::Char(..) | Kind::Whiteout => ft.is_char_device(),
        Kind::Block(..) => ft.is_block_device(),
        Kind::Fifo => ft.is_fifo(),
    };
    if !kind_ok {
        return Ok(Some(format!(
            "is {}, the layer has {}",
            type_name(ft),
            want.kind.name()
        )));
    }
    let rdev = || {
        (
            rustix::fs::major(md.rdev()) as u64,
            rustix::fs::minor(md.rdev()) as u64,
        )
    };
    match &want.kind {
        Kind::Whiteout => {
            return Ok((rdev() != (0, 0)).then(|| "is not a whiteout".to_string()));
        }
        Kind::File { size, content } => {
            if md.len() != *size {
                return Ok(Some(format!("has {} bytes, the layer {size}", md.len())));
            }
            if let Some(want) = content {
                let file = fs::File::open(host)?;
                let mut hashing = crate::digest::Digester::new(io::BufReader::new(file));
                io::copy(&mut hashing, &mut io::sink())?;
                if hashing.finish().0 != *want {
                    return Ok(Some("has other content than the layer".to_string()));
                }
            }
        }
        Kind::Symlink(target) => {
            use std::os::unix::ffi::OsStrExt;
            if fs::read_link(host)?.as_os_str().as_bytes() != target.as_slice() {
                return Ok(Some("links elsewhere than in the layer".to_string()));
            }
            return Ok(None);
        }
        Kind::HardLink(target) => {
            // Same inode as its target (when the target is in the layer as a file).
            if let Ok(t) = fs::symlink_metadata(root.join(target))
                && (t.dev(), t.ino()) != (md.dev(), md.ino())
            {
                return Ok(Some(format!("is not a hard link to /{target}")));
            }
            return Ok(None);
        }
        Kind::Char(a, b) | Kind::Block(a, b) => {
            if rdev() != (*a, *b) {
                return Ok(Some("has other device numbers than the layer".to_string()));
            }
        }
        Kind::Dir | Kind::Fifo => {}
    }
    if want.kind == Kind::Dir && want.opaque {
        let mut buf = [0u8; 4];
        let mark = rustix::fs::lgetxattr(host, "trusted.overlay.opaque", &mut buf).ok();
        if mark.map(|n| &buf[..n]) != Some(&b"y"[..]) {
            return Ok(Some("lacks its opaque mark".to_string()));
        }
    }
    let implied = want.kind == Kind::Dir && want.mode == 0;
    if !implied && md.mode() & 0o7777 != want.mode {
        return Ok(Some(format!(
            "has mode {:o}, the layer {:o}",
            md.mode() & 0o7777,
            want.mode
        )));
    }
    if !implied && (u64::from(md.uid()), u64::from(md.gid())) != (want.uid, want.gid) {
        return Ok(Some(format!(
            "is owned by {}:{}, the layer says {}:{}",
            md.uid(),
            md.gid(),
            want.uid,
            want.gid
        )));
    }
    Ok(None)
}

/// Whether `map` holds a path below `dir`.
fn has_below(map: &BTreeMap<String, Expected>, dir: &str) -> bool {
    let prefix = format!("{dir}/");
    map.range(prefix.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// Drops every path below `dir` from `map`.
fn remove_below(map: &mut BTreeMap<String, Expected>, dir: &str) {
    let prefix = format!("{dir}/");
    let below: Vec<String> = map
        .range(prefix.clone()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    for k in below {
        map.remove(&k);
    }
}

fn type_name(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a file"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else {
        "a socket"
    }
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File { .. } => "a file",
            Kind::Symlink(_) => "a symlink",
            Kind::HardLink(_) => "a hard link",
            Kind::Char(..) => "a character device",
            Kind::Block(..) => "a block device",
            Kind::Fifo => "a FIFO",
            Kind::Whiteout => "a whiteout",
        }
    }
}

/// Calls `visit` with every path below `dir` (relative, `/`-separated) and its type.
fn walk(dir: &Path, rel: &str, visit: &mut dyn FnMut(&str, fs::FileType)) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type()?;
        visit(&path, ft);
        if ft.is_dir() {
            walk(&e.path(), &path, visit)?;
        }
    }
    Ok(())
}
