//! `lb cp`: docker's CLI copy, both ways, over the container's archive operations
//! (`Container::stat_path`, `archive_path`, `extract_to_dir`). What is decided here is
//! docker's: where a copy lands (into a directory, as a new name, a directory's contents
//! with `/.`), when it is refused, and the host side of it (read or unpacked on paths the
//! user named; unpacked files belong to whoever runs lb, as docker's `NoLchown`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::anyhow;
use lb_container::archive::{self, Owner};
use lb_container::ops::ExtractOptions;

use super::*;

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH|-
    source: String,
    /// DEST_PATH|- or CONTAINER:DEST_PATH
    destination: String,
}

/// `CONTAINER:PATH` or a local path (absolute, or starting with `.`, or without `:`), as
/// docker's `splitCpArg`.
fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => (Some(c), p),
        _ => (None, arg),
    }
}

pub fn cp(store: &Store, args: CpArgs) -> anyhow::Result<ExitCode> {
    let (src_ctr, src) = split_arg(&args.source);
    let (dst_ctr, dst) = split_arg(&args.destination);
    match (src_ctr, dst_ctr) {
        (None, None) => bail!("must specify at least one container source"),
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (Some(c), None) => from_container(store, c, src, dst, args.follow_link),
        (None, Some(c)) => to_container(store, c, src, dst, &args),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// The container `key` for a copy of `path`; docker names both when either is missing.
fn open<'s>(store: &'s Store, key: &str, path: &str) -> anyhow::Result<Container<'s>> {
    if path.is_empty() {
        // docker 20.10's words, its missing space included.
        bail!("bad parameter: pathcannot be empty");
    }
    match Container::open(store, key) {
        Err(lb_container::Error::Store(lb_layerstore::Error::NoContainer(_))) => {
            bail!("No such container:path: {key}:{path}")
        }
        c => Ok(c?),
    }
}

/// A container operation's error, with docker's words for a path it does not have.
fn path_error(key: &str, path: &str, e: lb_container::Error) -> anyhow::Error {
    match e {
        lb_container::Error::NoSuchPath(_) => anyhow!("No such container:path: {key}:{path}"),
        e => e.into(),
    }
}

/// A local path made absolute (from the working directory), its trailing `/` or `/.`
/// kept.
fn local_path(path: &str) -> anyhow::Result<String> {
    if path.starts_with('/') {
        return Ok(archive::clean_path(path));
    }
    let cwd = std::env::current_dir().context("the working directory")?;
    let joined = format!("{}/{path}", cwd.display());
    Ok(archive::preserve_trailing(
        archive::clean_path(&joined),
        path,
    ))
}

/// docker's `ValidateOutputPath`: the parent must exist; an existing path must be a
/// directory or a regular file.
fn validate_output_path(path: &str) -> anyhow::Result<()> {
    let (dir, _) = archive::split_dir_entry(path.trim_end_matches('/'));
    if !Path::new(&dir).exists() {
        bail!("invalid output path: directory {dir:?} does not exist");
    }
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("stat {path}: {}", lb_container::go_io_text(&e)),
        Ok(md) if !md.is_dir() && !md.is_file() => {
            bail!("invalid output path: {path:?} must be a directory or a regular file")
        }
        Ok(_) => Ok(()),
    }
}

/// Where a copy's destination is, as docker's `CopyInfo`.
struct Destination {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// docker's `CopyInfoDestinationPath`: a local destination with its symlinks followed
/// (at most 10); one that does not exist needs its parent directory.
fn local_destination(path: &str) -> anyhow::Result<Destination> {
    let mut path = path.to_string();
    let mut md = std::fs::symlink_metadata(&path);
    let mut n = 0;
    while let Ok(m) = &md
        && m.file_type().is_symlink()
    {
        n += 1;
        if n > 10 {
            bail!("too many symlinks in {path}");
        }
        let target = std::fs::read_link(&path)?;
        let target = target.to_string_lossy();
        path = if target.starts_with('/') {
            target.into_owned()
        } else {
            let (parent, _) = archive::split_dir_entry(&path);
            archive::clean_path(&format!("{parent}/{target}"))
        };
        md = std::fs::symlink_metadata(&path);
    }
    match md {
        Ok(m) => Ok(Destination {
            path,
            exists: true,
            is_dir: m.is_dir(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (parent, _) = archive::split_dir_entry(&path);
            let pm = std::fs::metadata(&parent).with_context(|| format!("stat {parent}"))?;
            if !pm.is_dir() {
                bail!("not a directory");
            }
            Ok(Destination {
                path,
                exists: false,
                is_dir: false,
            })
        }
        Err(e) => Err(anyhow!("lstat {path}: {e}")),
    }
}

/// docker's `PrepareArchiveCopy`: the directory to unpack into and the name the source's
/// top entry gets there (`src_name`: its name in the stream).
fn prepare(
    src_is_dir: bool,
    src_name: &str,
    dst: &Destination,
) -> anyhow::Result<(String, String)> {
    let (dst_dir, dst_base) = archive::split_dir_entry(&dst.path);
    match () {
        _ if dst.exists && dst.is_dir => Ok((dst.path.clone(), src_name.to_string())),
        _ if dst.exists && src_is_dir => bail!("cannot copy directory"),
        _ if !dst.exists && !src_is_dir && archive::asserts_directory(&dst.path) => {
            bail!("no such directory")
        }
        _ => Ok((dst_dir, dst_base)),
    }
}

/// The last element of `path` as Go's `filepath.Base` gives it (trailing `/` ignored).
fn base(path: &str) -> String {
    let t = path.trim_end_matches('/');
    match t.rsplit_once('/') {
        Some((_, b)) => b.to_string(),
        None if t.is_empty() => "/".into(),
        None => t.to_string(),
    }
}

/// docker's `GetRebaseName`: `resolved` with `path`'s trailing `/` or `/.`, and the name
/// the copy keeps when the link changed the last element.
fn rebase_name(path: &str, resolved: &str) -> (String, Option<String>) {
    let resolved = archive::preserve_trailing(resolved.to_string(), path);
    let name = (base(path) != base(&resolved)).then(|| base(path));
    (resolved, name)
}

fn from_container(
    store: &Store,
    key: &str,
    src: &str,
    dst: &str,
    follow: bool,
) -> anyhow::Result<()> {
    let dst = if dst == "-" {
        dst.to_string()
    } else {
        let d = local_path(dst)?;
        validate_output_path(&d)?;
        d
    };
    let c = open(store, key, src)?;
    let mut src_path = src.to_string();
    let mut rebase = None;
    if follow
        && let Ok(st) = c.stat_path(src)
        && st.is_symlink()
    {
        (src_path, rebase) = rebase_name(src, &st.link_target);
    }
    let stat = c
        .stat_path(&src_path)
        .map_err(|e| path_error(key, &src_path, e))?;
    if dst == "-" {
        let mut out = std::io::stdout().lock();
        let mut copy = |r: &mut dyn Read| std::io::copy(r, &mut out).map(drop);
        c.archive_path(&src_path, None, &mut copy)
            .map_err(|e| path_error(key, &src_path, e))?;
        return Ok(out.flush()?);
    }
    let abs = archive::clean_path(&src_path);
    let src_name = rebase.unwrap_or_else(|| archive::split_dir_entry(&abs).1);
    let destination = local_destination(&dst)?;
    let (dir, name) = prepare(stat.is_dir(), &src_name, &destination)?;
    let mut unpack = |r: &mut dyn Read| {
        archive::untar(r, Path::new(&dir), Owner::Unpacker).map_err(std::io::Error::other)
    };
    c.archive_path(&src_path, Some(&name), &mut unpack)
        .map_err(|e| path_error(key, &src_path, e))
}

fn to_container(
    store: &Store,
    key: &str,
    src: &str,
    dst: &str,
    args: &CpArgs,
) -> anyhow::Result<()> {
    let src = if src == "-" {
        src.to_string()
    } else {
        local_path(src)?
    };
    let c = open(store, key, dst)?;
    let mut dst_info = Destination {
        path: dst.to_string(),
        exists: false,
        is_dir: false,
    };
    let mut stat = c.stat_path(dst);
    if let Ok(st) = &stat
        && st.is_symlink()
    {
        dst_info.path = st.link_target.clone();
        stat = c.stat_path(&dst_info.path);
    }
    if let Ok(st) = &stat {
        let kind = st.mode & libc::S_IFMT;
        if kind != libc::S_IFDIR && kind != libc::S_IFREG {
            bail!("destination \"{key}:{dst}\" must be a directory or a regular file");
        }
        dst_info.exists = true;
        dst_info.is_dir = st.is_dir();
    }
    let opts = ExtractOptions {
        copy_uid_gid: args.archive,
    };
    if src == "-" {
        if !dst_info.is_dir {
            bail!("destination \"{key}:{dst}\" must be a directory");
        }
        let mut input = std::io::stdin().lock();
        let mut feed = |w: &mut dyn Write| std::io::copy(&mut input, w).map(drop);
        return c
            .extract_to_dir(&dst_info.path, &mut feed, opts)
            .map_err(|e| path_error(key, &dst_info.path, e));
    }
    // docker's `CopyInfoSourcePath`: the source's directory resolved, its last element
    // followed only with -L.
    let (src_path, rebase) = if args.follow_link {
        let real = std::fs::canonicalize(&src).with_context(|| format!("lstat {src}"))?;
        rebase_name(&src, &real.to_string_lossy())
    } else {
        (src.clone(), None)
    };
    let md = std::fs::symlink_metadata(src_path.trim_end_matches("/."))
        .map_err(|e| anyhow!("lstat {src_path}: {}", lb_container::go_io_text(&e)))?;
    let src_name = rebase.unwrap_or_else(|| archive::split_dir_entry(&src_path).1);
    let (dir, name) = prepare(md.is_dir(), &src_name, &dst_info)?;
    let tree = archive::split_dir_entry(&src_path);
    let tree = Path::new(&tree.0).join(&tree.1);
    let mut feed = |w: &mut dyn Write| archive::write_tree(w, &tree, &name);
    c.extract_to_dir(&dir, &mut feed, opts)
        .map_err(|e| path_error(key, &dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_as_dockers() {
        assert_eq!(split_arg("c1:/x"), (Some("c1"), "/x"));
        assert_eq!(split_arg("/a:b"), (None, "/a:b"));
        assert_eq!(split_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_arg("file"), (None, "file"));
        assert_eq!(split_arg("c1:"), (Some("c1"), ""));
    }

    #[test]
    fn where_a_copy_lands() {
        let d = |path: &str, exists, is_dir| Destination {
            path: path.into(),
            exists,
            is_dir,
        };
        // Into an existing directory, under the source's name.
        assert_eq!(
            prepare(false, "a", &d("/t/ex", true, true)).unwrap(),
            ("/t/ex".into(), "a".into())
        );
        // As a new name (file or directory), in its parent.
        assert_eq!(
            prepare(true, "d", &d("/t/new", false, false)).unwrap(),
            ("/t".into(), "new".into())
        );
        assert_eq!(
            prepare(false, "a", &d("/t/f", true, false)).unwrap(),
            ("/t".into(), "f".into())
        );
        assert_eq!(
            prepare(true, "d", &d("/t/f", true, false))
                .unwrap_err()
                .to_string(),
            "cannot copy directory"
        );
        assert_eq!(
            prepare(false, "a", &d("/t/new/", false, false))
                .unwrap_err()
                .to_string(),
            "no such directory"
        );
        assert_eq!(
            rebase_name("/lnk", "/etc/hostname"),
            ("/etc/hostname".into(), Some("lnk".into()))
        );
        assert_eq!(rebase_name("/d/.", "/e"), ("/e/.".into(), None));
    }
}
