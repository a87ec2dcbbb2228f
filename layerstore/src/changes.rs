//! What a container changed against its image, as `docker diff` lists it: each path
//! added (`A`), changed (`C`: a file's contents or metadata, or a directory something
//! below changed in) or deleted (`D`: the top of what went), sorted by path.
//!
//! From an overlay upper dir (whiteouts say what went; whether a path is new is asked of
//! the image's tree) or from two full trees (a vfs container's and its image's, walked as
//! the differ walks them). The image's tree is read with `lb-rootpath`: a link in the
//! image never sends the question outside it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::Error;
use crate::differ::{Change, LayerChanges, tree_changes};

/// docker's three kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
}

impl ChangeKind {
    /// docker's letter (`C`, `A`, `D`) and its `Kind` number in the Engine API (0, 1, 2).
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, absolute in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChange {
    pub kind: ChangeKind,
    pub path: String,
}

/// The changes `changes` holds against `image`, the image's whole tree, sorted by path.
pub fn path_changes(changes: LayerChanges<'_>, image: &Path) -> Result<Vec<PathChange>, Error> {
    let image = lb_rootpath::Root::open(image).map_err(|e| Error::io(image, e))?;
    // What the image has at `rel`: nothing, a directory (`Some(true)`), or else.
    let in_image = |rel: &str| {
        image
            .symlink_metadata(Path::new(rel))
            .ok()
            .map(|m| m.is_dir())
    };
    let mut out = Vec::new();
    match changes {
        LayerChanges::Upper(upper) | LayerChanges::Stacked { upper, .. } => {
            upper_changes(upper, "", &in_image, false, &mut out)?
        }
        LayerChanges::Trees { lower, upper } => {
            for change in tree_changes(lower, upper)? {
                match change {
                    Change::Whole { path, prefix, name } => {
                        let rel = format!("{prefix}{name}");
                        if in_image(&rel).is_some() {
                            push(&mut out, ChangeKind::Modified, &rel);
                        } else {
                            added_tree(&path, &rel, &mut out)?;
                        }
                    }
                    Change::Dir { rel, .. } => push(&mut out, ChangeKind::Modified, &rel),
                    Change::Opaque { path, rel } => {
                        push(&mut out, ChangeKind::Modified, &rel);
                        added_children(&path, &rel, &mut out)?;
                    }
                    Change::Whiteout { prefix, name, .. } => {
                        push(&mut out, ChangeKind::Deleted, &format!("{prefix}{name}"));
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn push(out: &mut Vec<PathChange>, kind: ChangeKind, rel: &str) {
    out.push(PathChange {
        kind,
        path: format!("/{rel}"),
    });
}

/// `path` (named `rel`) and everything below it, added.
fn added_tree(path: &Path, rel: &str, out: &mut Vec<PathChange>) -> Result<(), Error> {
    push(out, ChangeKind::Added, rel);
    let md = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if md.is_dir() {
        added_children(path, rel, out)?;
    }
    Ok(())
}

fn added_children(path: &Path, rel: &str, out: &mut Vec<PathChange>) -> Result<(), Error> {
    for (name, child) in crate::diff::sorted_children(path)? {
        added_tree(&child, &format!("{rel}/{name}"), out)?;
    }
    Ok(())
}

/// The changes an overlay upper dir `dir` (named `prefix`) holds; `hidden`: below a
/// directory that hides the image's (opaque, new, or made over a non-directory).
fn upper_changes(
    dir: &Path,
    prefix: &str,
    in_image: &dyn Fn(&str) -> Option<bool>,
    hidden: bool,
    out: &mut Vec<PathChange>,
) -> Result<(), Error> {
    for (name, path) in crate::diff::sorted_children(dir)? {
        let rel = format!("{prefix}{name}");
        let md = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if md.file_type().is_char_device() && md.rdev() == 0 {
            push(out, ChangeKind::Deleted, &rel);
            continue;
        }
        let lower = if hidden { None } else { in_image(&rel) };
        let kind = if lower.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        push(out, kind, &rel);
        if md.is_dir() {
            let opaque = crate::diff::is_opaque(&path);
            let merged = lower == Some(true) && !opaque;
            upper_changes(&path, &format!("{rel}/"), in_image, !merged, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn listing(c: &[PathChange]) -> Vec<String> {
        c.iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect()
    }

    #[test]
    fn two_trees_give_what_docker_diff_gives() {
        let image = tempfile::tempdir().unwrap();
        let ctr = tempfile::tempdir().unwrap();
        for t in [image.path(), ctr.path()] {
            fs::create_dir_all(t.join("etc")).unwrap();
            fs::create_dir_all(t.join("home/u")).unwrap();
            fs::write(t.join("etc/passwd"), "root").unwrap();
            fs::write(t.join("etc/group"), "g").unwrap();
            fs::write(t.join("home/u/f"), "f").unwrap();
            fs::write(t.join("keep"), "k").unwrap();
        }
        // Same times for what did not change.
        for rel in ["etc", "home", "home/u", "home/u/f", "etc/group", "keep", ""] {
            let t = fs::metadata(image.path().join(rel))
                .unwrap()
                .modified()
                .unwrap();
            fs::File::options()
                .write(rel.is_empty() || !fs::metadata(ctr.path().join(rel)).unwrap().is_dir())
                .read(true)
                .open(ctr.path().join(rel))
                .map(|f| f.set_modified(t))
                .ok();
        }
        let c = ctr.path();
        fs::write(c.join("etc/passwd"), "root\nu").unwrap();
        fs::remove_dir_all(c.join("home")).unwrap();
        fs::create_dir_all(c.join("new/sub")).unwrap();
        fs::write(c.join("new/sub/f"), "x").unwrap();
        let got = path_changes(
            LayerChanges::Trees {
                lower: image.path(),
                upper: c,
            },
            image.path(),
        )
        .unwrap();
        let got = listing(&got);
        for want in [
            "C /etc",
            "C /etc/passwd",
            "D /home",
            "A /new",
            "A /new/sub",
            "A /new/sub/f",
        ] {
            assert!(got.contains(&want.to_string()), "{want} in {got:?}");
        }
        assert!(
            !got.iter()
                .any(|l| l.contains("/keep") || l.contains("group")),
            "{got:?}"
        );
    }

    #[test]
    fn an_upper_dir_says_what_went_and_the_image_what_is_new() {
        let image = tempfile::tempdir().unwrap();
        fs::create_dir_all(image.path().join("etc")).unwrap();
        fs::write(image.path().join("etc/passwd"), "root").unwrap();
        // A link in the image to the host's root: never followed.
        std::os::unix::fs::symlink("/", image.path().join("host")).unwrap();
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        fs::create_dir_all(u.join("etc")).unwrap();
        fs::write(u.join("etc/passwd"), "root\nu").unwrap();
        fs::write(u.join("etc/new"), "n").unwrap();
        fs::create_dir_all(u.join("host")).unwrap();
        fs::write(u.join("host/etc"), "x").unwrap();
        let got = listing(&path_changes(LayerChanges::Upper(u), image.path()).unwrap());
        assert_eq!(
            got,
            [
                "C /etc",
                "A /etc/new",
                "C /etc/passwd",
                "C /host",
                "A /host/etc"
            ]
        );
    }
}
