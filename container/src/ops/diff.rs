//! `diff`: what the container changed against its image (`docker diff`): from its overlay
//! upper dir (asked of the image's tree, mounted read-only in a forked child's own mount
//! namespace) or from its vfs tree and the image's. The files lb makes for every
//! container (the mount points of `/etc/hosts` and the like) are left out, as docker's
//! init layer hides them.

use lb_layerstore::{ChangeKind, LayerChanges, PathChange};

use super::Container;
use crate::{Error, Result};

/// docker's init layer: what it makes under every container, never listed.
const MADE_FOR_EVERY_CONTAINER: &[&str] = &[
    "/dev/pts",
    "/dev/shm",
    "/dev/console",
    "/proc",
    "/sys",
    "/.dockerenv",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/mtab",
];

impl Container<'_> {
    /// What the container changed, sorted by path.
    pub fn changes(&self) -> Result<Vec<PathChange>> {
        let all = if self.store.storage_driver() == lb_layerstore::StorageDriver::Vfs {
            crate::rootfs::with_changes(self.store, &self.record, &self.dir, |c| match c {
                LayerChanges::Trees { lower, .. } => Ok(lb_layerstore::path_changes(c, lower)?),
                // An image of no layers: its tree is empty, all of the container's is new.
                LayerChanges::Upper(_) | LayerChanges::Stacked { .. } => {
                    let empty = tempfile::tempdir_in(&self.dir).map_err(|source| Error::Io {
                        path: self.dir.clone(),
                        source,
                    })?;
                    Ok(lb_layerstore::path_changes(c, empty.path())?)
                }
            })?
        } else {
            self.upper_changes()?
        };
        Ok(without_init_files(all))
    }

    /// An overlay container's changes: its upper dir against the image's tree, which only
    /// a child process mounts; the list comes back through a file in its directory.
    fn upper_changes(&self) -> Result<Vec<PathChange>> {
        let upper = self.dir.join("upper");
        if !upper.is_dir() {
            return Ok(Vec::new());
        }
        let out = self.dir.join(format!("diff-{}", std::process::id()));
        let io = |path: &std::path::Path, source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        crate::rootfs::with_image_tree(self.store, &self.record, &self.dir, |view| {
            let changes = lb_layerstore::path_changes(LayerChanges::Upper(&upper), view)?;
            let mut text = Vec::new();
            for c in changes {
                text.push(c.kind.letter() as u8);
                text.extend_from_slice(c.path.as_bytes());
                text.push(0);
            }
            std::fs::write(&out, text).map_err(|e| io(&out, e))
        })?;
        let text = std::fs::read(&out).map_err(|e| io(&out, e));
        let _ = std::fs::remove_file(&out);
        Ok(text?
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .map(|r| PathChange {
                kind: match r[0] {
                    b'A' => ChangeKind::Added,
                    b'D' => ChangeKind::Deleted,
                    _ => ChangeKind::Modified,
                },
                path: String::from_utf8_lossy(&r[1..]).into_owned(),
            })
            .collect())
    }
}

/// `changes` without docker's init files, nor the directories that are changed only
/// because those are in them.
fn without_init_files(changes: Vec<PathChange>) -> Vec<PathChange> {
    let init = |p: &str| MADE_FOR_EVERY_CONTAINER.contains(&p);
    let kept: Vec<PathChange> = changes.into_iter().filter(|c| !init(&c.path)).collect();
    let holds_init = |dir: &str| {
        MADE_FOR_EVERY_CONTAINER
            .iter()
            .any(|i| i.strip_prefix(dir).is_some_and(|r| r.starts_with('/')))
    };
    let holds_kept = |dir: &str, all: &[PathChange]| {
        all.iter()
            .any(|c| c.path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')))
    };
    kept.iter()
        .filter(|c| {
            !(c.kind == ChangeKind::Modified && holds_init(&c.path) && !holds_kept(&c.path, &kept))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_files_and_their_directories_are_not_listed() {
        let c = |kind, path: &str| PathChange {
            kind,
            path: path.into(),
        };
        let got = without_init_files(vec![
            c(ChangeKind::Modified, "/dev"),
            c(ChangeKind::Added, "/dev/console"),
            c(ChangeKind::Modified, "/etc"),
            c(ChangeKind::Added, "/etc/hosts"),
            c(ChangeKind::Added, "/etc/new"),
            c(ChangeKind::Added, "/tmp"),
        ]);
        let paths: Vec<_> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/etc", "/etc/new", "/tmp"]);
    }
}
