//! Trees written and read for COPY and for mounts of the context: the walk of a source
//! (what `.dockerignore` shows), writing it at a destination without following what is
//! there (files `O_EXCL`, sources `O_NOFOLLOW`), the context mirrored for a bind mount,
//! and the content digest of a tree as a build reads it.

use super::*;

/// Removes what is at `path` unless it is a directory (a link is removed, not followed).
fn remove_non_dir(path: &Path) -> Result<(), CopyError> {
    match fs::symlink_metadata(path) {
        Ok(md) if !md.is_dir() => fs::remove_file(path).map_err(|e| CopyError::io(path, e)),
        _ => Ok(()),
    }
}

/// Copies the regular file `from` to a new file `to`; neither end follows a link.
fn copy_file(from: &Path, to: &Path) -> Result<(), CopyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)
        .map_err(|e| CopyError::io(from, e))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| CopyError::write(|| format!("copying {}", from.display()), to, e))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| {
        let what = || format!("copying {}", from.display());
        match NoSpace::from_io(&e, &what(), to) {
            Some(n) => CopyError::NoSpace(n),
            None => CopyError::CopyFile {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                source: e,
            },
        }
    })?;
    Ok(())
}

/// Everything under `path` (itself first), sorted, with paths relative to it. The top is
/// followed when it is a symlink (docker copies what a source names), nothing below.
pub(super) fn walk(
    path: &Path,
    rel: &Path,
    top: bool,
    visible: &Visible,
    out: &mut Vec<(PathBuf, PathBuf, fs::Metadata)>,
) -> Result<(), CopyError> {
    let md = if top {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .map_err(|e| CopyError::io(path, e))?;
    let is_dir = md.is_dir();
    out.push((path.to_path_buf(), rel.to_path_buf(), md));
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(|e| CopyError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for n in names {
            let child = path.join(&n);
            if visible.shows(&child) {
                walk(&child, &rel.join(&n), false, visible, out)?;
            }
        }
    }
    Ok(())
}

/// How [`write_tree`] writes: who owns each entry, its mode, and whether a file may be a
/// hard link to its source (then it is the source's inode, metadata and all, untouched).
pub(super) struct TreeWrite<'a> {
    pub(super) owner: &'a dyn Fn(&fs::Metadata) -> (u32, u32),
    pub(super) mode: &'a dyn Fn(&fs::Metadata) -> u32,
    pub(super) link: bool,
}

/// Writes `files` (as [`walk`] lists them: the top first) at `dest`. What is already there
/// and is not a directory (a link or file an earlier source wrote) is replaced, never
/// followed; files are created `O_EXCL` from sources opened `O_NOFOLLOW`; devices, FIFOs
/// and sockets are left out. Directories get their metadata last, once their contents are
/// written; the top one keeps what it has.
pub(super) fn write_tree(
    files: Vec<(PathBuf, PathBuf, fs::Metadata)>,
    dest: &Path,
    how: &TreeWrite,
    mut guard: Option<&mut SpaceGuard>,
) -> Result<(), CopyError> {
    let mut dirs = Vec::new();
    for (path, rel, md) in files {
        let to = if rel.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(&rel)
        };
        let err =
            |e: std::io::Error| CopyError::write(|| format!("copying {}", path.display()), &to, e);
        if md.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(existing) if existing.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&to).map_err(err)?;
                    fs::create_dir(&to).map_err(err)?;
                }
                Err(_) => fs::create_dir(&to).map_err(err)?,
            }
            if !rel.as_os_str().is_empty() {
                dirs.push((to, md));
            }
            continue;
        }
        if md.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| CopyError::io(&path, e))?;
            remove_non_dir(&to)?;
            std::os::unix::fs::symlink(&target, &to).map_err(err)?;
        } else if md.is_file() {
            remove_non_dir(&to)?;
            if how.link && fs::hard_link(&path, &to).is_ok() {
                continue;
            }
            if let Some(g) = guard.as_deref_mut() {
                g.describe(&format!("copying {}", path.display()), &to);
                g.will_write(md.len()).map_err(CopyError::NoSpace)?;
            }
            copy_file(&path, &to)?;
        } else {
            continue;
        }
        let (uid, gid) = (how.owner)(&md);
        std::os::unix::fs::lchown(&to, Some(uid), Some(gid)).map_err(|source| {
            CopyError::SetOwner {
                path: to.clone(),
                source,
            }
        })?;
        if md.is_file() {
            fs::set_permissions(&to, fs::Permissions::from_mode((how.mode)(&md))).map_err(err)?;
        }
        set_mtime(&to, &md)?;
    }
    for (to, md) in dirs.into_iter().rev() {
        let (uid, gid) = (how.owner)(&md);
        std::os::unix::fs::lchown(&to, Some(uid), Some(gid)).map_err(|source| {
            CopyError::SetOwner {
                path: to.clone(),
                source,
            }
        })?;
        fs::set_permissions(&to, fs::Permissions::from_mode((how.mode)(&md)))
            .map_err(|e| CopyError::io(&to, e))?;
        set_mtime(&to, &md)?;
    }
    Ok(())
}

/// Makes `to` (absent) a tree of what of `from` is visible, owners and modes kept: files
/// hard-linked when `link` (a read-only view: the same inodes, nothing copied) or copied
/// (a throw-away copy to write to).
pub(crate) fn mirror(
    from: &Path,
    visible: &Visible,
    to: &Path,
    link: bool,
) -> Result<(), CopyError> {
    let mut files = Vec::new();
    walk(from, Path::new(""), true, visible, &mut files)?;
    let top = files.first().map(|(_, _, md)| md.clone());
    let how = TreeWrite {
        owner: &|md| (md.uid(), md.gid()),
        mode: &|md| md.mode() & 0o7777,
        link,
    };
    write_tree(files, to, &how, None)?;
    // The top is new here: it takes the source's metadata too.
    if let Some(md) = top.filter(|md| md.is_dir()) {
        let err = |e: std::io::Error| CopyError::io(to, e);
        std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid())).map_err(err)?;
        fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777)).map_err(err)?;
        set_mtime(to, &md)?;
    }
    Ok(())
}

/// The digest of a file or tree as a build reads it: relative paths, types, modes, sizes,
/// contents and link targets, and owners when `with_owners` (not mtimes). File contents
/// are hashed in parallel, or taken from `digests` when their stat is unchanged.
pub fn tree_digest(
    path: &Path,
    with_owners: bool,
    visible: &Visible,
    digests: &FileDigests,
) -> Result<Digest, CopyError> {
    tree_listing(path, with_owners, visible, digests, None)
}

/// [`tree_digest`], and into `listing` (when given) each path under `path` with the
/// digest of what the tree's digest took of it (`--explain` names the paths that changed),
/// up to one more than [`crate::explain::MAX_FILES`] (a longer list is not kept).
pub fn tree_listing(
    path: &Path,
    with_owners: bool,
    visible: &Visible,
    digests: &FileDigests,
    mut listing: Option<&mut Vec<(String, Digest)>>,
) -> Result<Digest, CopyError> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    walk(path, Path::new(""), true, visible, &mut files)?;
    let contents: Vec<Option<Digest>> = files
        .par_iter()
        .map(|(path, _, md)| md.is_file().then(|| digests.digest(path, md)).transpose())
        .collect::<Result<_, _>>()?;
    let mut h = Digester::new(std::io::sink());
    for ((path, rel, md), content) in files.iter().zip(contents) {
        let kind = if md.is_dir() {
            "d".to_string()
        } else if md.file_type().is_symlink() {
            let target = fs::read_link(path).map(|t| t.display().to_string());
            format!("l {}", target.unwrap_or_default())
        } else if let Some(content) = content {
            format!("f {} {content}", md.len())
        } else {
            "o".to_string()
        };
        let owner = if with_owners {
            format!("{}:{}", md.uid(), md.gid())
        } else {
            String::new()
        };
        let line = format!(
            "{} {:o} {owner} {kind}\0",
            rel.display(),
            md.mode() & 0o7777
        );
        // Into a sink: the hash is all it does, and it cannot fail.
        let _ = std::io::Write::write_all(&mut h, line.as_bytes());
        if let Some(l) = listing.as_deref_mut()
            && l.len() <= crate::explain::MAX_FILES
        {
            l.push((rel.display().to_string(), Digest::of(line.as_bytes())));
        }
    }
    Ok(h.finish().0)
}

pub(super) fn set_mtime(path: &Path, md: &fs::Metadata) -> Result<(), CopyError> {
    let t = nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|source| CopyError::SetTimes {
        path: path.to_path_buf(),
        source,
    })
}
