//! COPY and ADD with docker's rules, written into a step's fresh upper directory with no
//! container: sources inside the context (or a stage's or image's file system), wildcards
//! matched as Go's `filepath.Match` does, a directory's contents copied rather than the
//! directory, a destination that is a directory when it ends in `/`, when there are
//! several sources or a wildcard, or when it already is one in the image; relative
//! destinations under WORKDIR. Parent directories that the image has keep its metadata.
//! Files keep their mode and mtime; owners are root (from the context), the source's own
//! (from an image), or `--chown`'s, resolved in the image's `/etc/passwd` and `/etc/group`.
//! ADD unpacks a local tar archive (plain, gzip or zstd) into the destination.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use lb_layerstore::{Digest, Digester, Image, NoSpace, SpaceGuard};
use lb_rootpath::Root;

use crate::digests::FileDigests;

mod error;
mod tree;

pub use error::CopyError;
pub(crate) use tree::mirror;
pub use tree::tree_digest;
use tree::{TreeWrite, set_mtime, tree_listing, walk, write_tree};

/// Where a COPY reads from.
pub enum Source {
    /// The build context directory.
    Context(PathBuf),
    /// A stage's or an image's file system, with the key that names its content.
    Image(Box<Image>, Digest),
}

/// One resolved source: what is read, where it lands (absolute in the image), and whether
/// a directory's contents go there.
#[derive(Debug, Clone)]
struct Item {
    from: PathBuf,
    to: PathBuf,
    unpack: bool,
}

/// Which paths of a source a build sees: all of an image's, the context's less what
/// `.dockerignore` leaves out, less what a COPY's `--exclude` patterns leave out; each
/// filter's patterns are relative to its root.
#[derive(Clone, Default)]
pub struct Visible {
    filters: Vec<(PathBuf, std::sync::Arc<crate::ignore::Ignore>)>,
}

impl std::fmt::Debug for Visible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roots: Vec<_> = self.filters.iter().map(|(r, _)| r.display()).collect();
        write!(f, "Visible(filters at {roots:?})")
    }
}

impl Visible {
    pub fn context(root: &Path, ignore: std::sync::Arc<crate::ignore::Ignore>) -> Visible {
        Visible::default().with(root, ignore)
    }

    /// This, less what `ignore` excludes below `root`.
    pub fn with(mut self, root: &Path, ignore: std::sync::Arc<crate::ignore::Ignore>) -> Visible {
        self.filters.push((root.to_path_buf(), ignore));
        self
    }

    /// Whether some path may be hidden (a filter has patterns).
    pub fn hides_anything(&self) -> bool {
        self.filters.iter().any(|(_, ignore)| !ignore.is_empty())
    }

    pub fn shows(&self, path: &Path) -> bool {
        self.filters
            .iter()
            .all(|(root, ignore)| match path.strip_prefix(root) {
                Ok(rel) if !rel.as_os_str().is_empty() => !ignore.excluded(rel),
                _ => true,
            })
    }
}

/// A COPY or ADD, resolved against its source and the image it writes into.
#[derive(Debug)]
pub struct CopyOp {
    items: Vec<Item>,
    /// The image's file system as it stands (for parent directories' metadata).
    target: PathBuf,
    owner: Option<(u32, u32)>,
    /// From the context, files are root's; from an image they keep their owners.
    keep_owner: bool,
    chmod: Option<u32>,
    visible: Visible,
    excludes: Option<std::sync::Arc<crate::ignore::Ignore>>,
    /// Where the sources were resolved.
    root: PathBuf,
    /// The source's content as a whole, when it has a name for it (an image's chain id).
    content_id: Option<String>,
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `p`'s components with `.` and empty ones dropped and `..` applied (Go's
/// `filepath.Clean`, lexically); the flag says whether a `..` climbed above the start.
pub(crate) fn lexical(p: &str) -> (Vec<&str>, bool) {
    let mut parts: Vec<&str> = Vec::new();
    let mut climbed = false;
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => climbed |= parts.pop().is_none(),
            s => parts.push(s),
        }
    }
    (parts, climbed)
}

/// `p` made relative and clean; `None` when it would climb out of its root.
pub(crate) fn clean_relative(p: &str) -> Option<PathBuf> {
    match lexical(p) {
        (_, true) => None,
        (parts, false) => Some(parts.iter().collect()),
    }
}

/// `dest` as an absolute path in the image, joined to `workdir` when relative.
fn absolute_dest(dest: &str, workdir: &str) -> PathBuf {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{workdir}/{dest}")
    };
    Path::new("/").join(clean_relative(&joined).unwrap_or_default())
}

/// Go's `filepath.Match` pattern in the glob crate's syntax (`[^...]` is `[!...]` there).
fn glob_pattern(p: &str) -> String {
    p.replace("[^", "[!")
}

/// The paths inside `root` that `pattern` (relative; Go's `filepath.Match` syntax in each
/// component) matches, sorted. Each directory on the way is listed where it resolves
/// inside the root, so a symlinked directory never lists the host's.
fn glob_in_root(root: &Root, pattern: &Path) -> Result<Vec<PathBuf>, glob::PatternError> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut found = vec![PathBuf::new()];
    for part in pattern.components() {
        let Component::Normal(part) = part else {
            continue;
        };
        let text = part.to_string_lossy();
        if !has_wildcard(&text) {
            found.iter_mut().for_each(|f| f.push(part));
            continue;
        }
        let pat = glob::Pattern::new(&glob_pattern(&text))?;
        let mut next = Vec::new();
        for dir in &found {
            let Ok(host) = root.host_path(dir, true) else {
                continue;
            };
            let Ok(entries) = fs::read_dir(&host) else {
                continue;
            };
            let mut names: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            next.extend(
                names
                    .into_iter()
                    .filter(|n| pat.matches_with(&n.to_string_lossy(), opts))
                    .map(|n| dir.join(n)),
            );
        }
        found = next;
    }
    found.sort();
    Ok(found)
}

/// Whether `path` is a tar archive, perhaps compressed (what ADD unpacks).
fn is_archive(path: &Path) -> bool {
    // Only a regular file is opened: a FIFO in the context would block the build forever.
    if !fs::metadata(path).is_ok_and(|md| md.is_file()) {
        return false;
    }
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = lb_layerstore::decompressed(f) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

/// What a COPY or ADD instruction asks, its words expanded.
pub struct CopySpec<'a> {
    pub sources: &'a [String],
    /// Heredoc sources, already written as files.
    pub inline: &'a [PathBuf],
    pub dest: &'a str,
    pub workdir: &'a str,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    /// ADD: local archives are unpacked.
    pub unpack: bool,
    /// `--exclude` patterns, relative to each source.
    pub excludes: Option<std::sync::Arc<crate::ignore::Ignore>>,
    /// `--parents`: each source lands under the destination at its own path from the
    /// source's root.
    pub parents: bool,
}

impl CopyOp {
    /// Resolves `spec` against `root` (the context, or an image's file system when
    /// `from_image`: then files keep their owners) and `target`, the file system the copy
    /// writes into.
    pub fn resolve(
        root: &Path,
        visible: &Visible,
        from_image: bool,
        target: &Path,
        spec: &CopySpec,
    ) -> Result<CopyOp, CopyError> {
        let CopySpec {
            sources,
            inline,
            dest,
            workdir,
            chown,
            chmod,
            unpack,
            parents,
            ref excludes,
        } = *spec;
        let src_root = Root::open(root).map_err(|e| CopyError::root(root, e))?;
        let dst_root = Root::open(target).map_err(|e| CopyError::root(target, e))?;
        // The destination as the image sees it: symlinks in the image followed inside it.
        let to = dst_root
            .resolve(&absolute_dest(dest, workdir), true)
            .map_err(|source| CopyError::Destination {
                dest: dest.to_string(),
                source,
            })?;
        // (the path as written, the path it resolves to inside the root)
        let mut matched: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut wildcard = false;
        for src in sources {
            let rel = clean_relative(src).ok_or_else(|| CopyError::OutsideContext {
                src: src.to_string(),
            })?;
            let named = if has_wildcard(src) {
                wildcard = true;
                glob_in_root(&src_root, &rel).map_err(|source| CopyError::BadPattern {
                    src: src.to_string(),
                    source,
                })?
            } else {
                vec![rel.clone()]
            };
            for name in named {
                // A source is read where it resolves inside its root (a symlink's target
                // in the context or the stage, never on the host), and must be visible
                // both as named and as resolved (a link cannot alias an ignored file).
                let found = src_root
                    .host_path(&name, true)
                    .ok()
                    .filter(|p| fs::symlink_metadata(p).is_ok())
                    .filter(|p| visible.shows(&root.join(&name)) && visible.shows(p));
                match found {
                    Some(p) => matched.push((root.join(&name), p)),
                    None if has_wildcard(src) => {}
                    None => return Err(CopyError::NotFound { path: rel }),
                }
            }
        }
        // Inline sources (heredocs, fetched URLs) are never unpacked.
        let local = matched.len();
        matched.extend(inline.iter().map(|p| (p.clone(), p.clone())));
        if matched.is_empty() {
            return Err(CopyError::NoSources);
        }
        let dest_is_dir = dest.ends_with('/')
            || dest.ends_with("/.")
            || matched.len() > 1
            || wildcard
            || dst_root.metadata(&to).is_ok_and(|md| md.is_dir());
        let mut items = Vec::new();
        for (n, (named, from)) in matched.into_iter().enumerate() {
            let unpack = unpack && n < local;
            let md = fs::metadata(&from).map_err(|e| CopyError::io(&named, e))?;
            let item = if parents && named.starts_with(root) {
                let rel = named.strip_prefix(root).unwrap_or(&named).to_path_buf();
                Item {
                    to: to.join(rel),
                    from,
                    unpack: false,
                }
            } else if md.is_dir() {
                Item {
                    from,
                    to: to.clone(),
                    unpack: false,
                }
            } else if unpack && is_archive(&from) {
                Item {
                    from,
                    to: to.clone(),
                    unpack: true,
                }
            } else if dest_is_dir {
                let name = named.file_name().map(PathBuf::from).unwrap_or_default();
                Item {
                    to: to.join(name),
                    from,
                    unpack: false,
                }
            } else {
                Item {
                    from,
                    to: to.clone(),
                    unpack: false,
                }
            };
            items.push(item);
        }
        let owner = chown.map(|c| resolve_owner(c, target)).transpose()?;
        let chmod = chmod
            .map(|m| {
                u32::from_str_radix(m, 8).map_err(|_| CopyError::Chmod {
                    mode: m.to_string(),
                })
            })
            .transpose()?;
        Ok(CopyOp {
            items,
            target: target.to_path_buf(),
            owner,
            keep_owner: from_image,
            visible: visible.clone(),
            excludes: excludes.clone(),
            chmod,
            root: root.to_path_buf(),
            content_id: None,
        })
    }

    /// Names the source's whole content (an image's chain id, with anything else that
    /// decides which of its files are copied, such as `--exclude`'s patterns): the digest
    /// then takes the name and each source's path instead of reading the files, since
    /// the same name means the same files.
    pub fn with_content_id(mut self, id: String) -> CopyOp {
        self.content_id = Some(id);
        self
    }

    /// What of `item` is copied: the source's visible paths less `--exclude`'s, whose
    /// patterns are relative to the item.
    fn visible_in(&self, item: &Item) -> Visible {
        match &self.excludes {
            Some(ex) => self.visible.clone().with(&item.from, ex.clone()),
            None => self.visible.clone(),
        }
    }

    /// The digest of everything the copy writes: paths where they land, types, modes,
    /// owners, sizes, contents and link targets (not mtimes: an unchanged file touched
    /// again is the same input, as in BuildKit). Into `listing`, when given: each source
    /// path (relative to the source's root) with the digest of what was taken of it.
    pub fn digest(
        &self,
        digests: &FileDigests,
        mut listing: Option<&mut Vec<(String, Digest)>>,
    ) -> Result<Digest, CopyError> {
        let mut h = Digester::new(std::io::sink());
        let mut add = |s: &str| {
            use std::io::Write;
            let _ = h.write_all(s.as_bytes());
            let _ = h.write_all(b"\0");
        };
        add(&format!(
            "{:?} {:?} {}",
            self.owner, self.chmod, self.keep_owner
        ));
        for item in &self.items {
            add(&format!(
                "item {} unpack={}",
                item.to.display(),
                item.unpack
            ));
            match &self.content_id {
                Some(id) => {
                    let rel = item.from.strip_prefix(&self.root).unwrap_or(&item.from);
                    add(&format!("content {id} {}", rel.display()));
                }
                None => {
                    let visible = self.visible_in(item);
                    let mut files = Vec::new();
                    let want = listing.is_some().then_some(&mut files);
                    let d = tree_listing(&item.from, self.keep_owner, &visible, digests, want)?;
                    add(&d.to_string());
                    if let Some(l) = listing.as_deref_mut() {
                        let base = item.from.strip_prefix(&self.root).unwrap_or(&item.from);
                        let room = (crate::explain::MAX_FILES + 1).saturating_sub(l.len());
                        l.extend(files.into_iter().take(room).map(|(rel, d)| {
                            let path = base.join(&rel);
                            (
                                path.display().to_string().trim_end_matches('/').to_string(),
                                d,
                            )
                        }));
                    }
                }
            }
        }
        Ok(h.finish().0)
    }

    /// Writes the copy into `upper`, a fresh upper directory over the target image.
    /// Every destination is resolved inside `upper` (a link an earlier source of this
    /// copy wrote is followed within it, never to the host); sources are read where they
    /// were resolved, files opened without following a link.
    pub(crate) fn write(&self, upper: &Path) -> Result<(), CopyError> {
        let upper_root = Root::open(upper).map_err(|e| CopyError::root(upper, e))?;
        // Big copies stop before the store's file system falls below its reserve.
        let mut guard = SpaceGuard::for_path(upper, "copying").map_err(CopyError::Reserve)?;
        for item in &self.items {
            let from_md = fs::metadata(&item.from).map_err(|e| CopyError::io(&item.from, e))?;
            // A directory's contents land in `to`, which becomes a directory itself.
            let into_dir = from_md.is_dir() || item.unpack;
            let parent_of = if into_dir {
                Some(item.to.as_path())
            } else {
                item.to.parent()
            };
            if let Some(p) = parent_of {
                make_dirs(upper, &self.target, p, self.owner)?;
            }
            let dest = upper_root
                .host_path(&item.to, into_dir)
                .map_err(|e| CopyError::io(&item.to, e))?;
            if item.unpack {
                let f = fs::File::open(&item.from).map_err(|e| CopyError::io(&item.from, e))?;
                lb_layerstore::apply_layer(
                    f,
                    &dest,
                    lb_layerstore::ApplyOptions {
                        whiteouts: lb_layerstore::Whiteouts::Delete,
                        privileged: true,
                    },
                )
                .map_err(|e| match e {
                    lb_layerstore::Error::NoSpace(mut n) => {
                        n.what = format!("unpacking {}", item.from.display());
                        CopyError::NoSpace(n)
                    }
                    source => CopyError::Unpack {
                        path: item.from.clone(),
                        source,
                    },
                })?;
                continue;
            }
            let mut files = Vec::new();
            walk(
                &item.from,
                Path::new(""),
                true,
                &self.visible_in(item),
                &mut files,
            )?;
            let how = TreeWrite {
                owner: &|md| self.owner_of(md),
                mode: &|md| self.chmod.unwrap_or(md.mode() & 0o7777),
                link: false,
            };
            write_tree(files, &dest, &how, Some(&mut guard))?;
        }
        Ok(())
    }

    /// Who owns a copied file: `--chown`'s, else the source's (from an image), else root.
    fn owner_of(&self, md: &fs::Metadata) -> (u32, u32) {
        match self.owner {
            Some(o) => o,
            None if self.keep_owner => (md.uid(), md.gid()),
            None => (0, 0),
        }
    }
}

/// Creates `dir` (absolute in the image) and its parents in `upper`, each with the
/// metadata the image (`target`, its file system) gives it, or 0755 and `owner` (root
/// when none) where the image has no such directory.
pub(crate) fn make_dirs(
    upper: &Path,
    target: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), CopyError> {
    let upper_root = Root::open(upper).map_err(|e| CopyError::root(upper, e))?;
    let target_root = Root::open(target).map_err(|e| CopyError::root(target, e))?;
    let mut at = PathBuf::from("/");
    for c in dir.components() {
        let Component::Normal(n) = c else { continue };
        at.push(n);
        let in_upper = upper_root
            .host_path(&at, true)
            .map_err(|e| CopyError::io(&at, e))?;
        if fs::symlink_metadata(&in_upper).is_ok_and(|md| md.is_dir()) {
            continue;
        }
        fs::create_dir(&in_upper)
            .map_err(|e| CopyError::write(|| format!("making {}", at.display()), &in_upper, e))?;
        let err = |e: std::io::Error| CopyError::io(&at, e);
        match target_root.metadata(&at) {
            Ok(md) if md.is_dir() => {
                std::os::unix::fs::lchown(&in_upper, Some(md.uid()), Some(md.gid()))
                    .map_err(err)?;
                fs::set_permissions(&in_upper, fs::Permissions::from_mode(md.mode() & 0o7777))
                    .map_err(err)?;
                set_mtime(&in_upper, &md)?;
            }
            _ => {
                fs::set_permissions(&in_upper, fs::Permissions::from_mode(0o755)).map_err(err)?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&in_upper, Some(uid), Some(gid)).map_err(err)?;
                }
            }
        }
    }
    Ok(())
}

/// `--chown=user[:group]`, names looked up in the image's own files; a bare numeric user
/// gets the same numeric group, as in BuildKit.
pub(crate) fn resolve_owner(spec: &str, target: &Path) -> Result<(u32, u32), CopyError> {
    let root = Root::open(target).map_err(|e| CopyError::root(target, e))?;
    let read = |f: &str| {
        root.read(Path::new(f))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let u = lb_runtime::user::resolve(spec, &read("etc/passwd"), &read("etc/group")).map_err(
        |source| CopyError::Chown {
            spec: spec.to_string(),
            source,
        },
    )?;
    let gid = match spec.split_once(':') {
        None if spec.parse::<u32>().is_ok() => u.uid,
        _ => u.gid,
    };
    Ok((u.uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_dockers_rules() {
        assert_eq!(absolute_dest("app/", "/srv"), PathBuf::from("/srv/app"));
        assert_eq!(absolute_dest("/x/../y", "/srv"), PathBuf::from("/y"));
        assert_eq!(absolute_dest(".", "/"), PathBuf::from("/"));
        assert_eq!(clean_relative("../../etc/passwd"), None);
        assert_eq!(clean_relative("/a/./b/../c"), Some(PathBuf::from("a/c")));
        assert_eq!(glob_pattern("[^a]*.txt"), "[!a]*.txt");
    }

    #[test]
    fn a_copy_resolves_sources_and_hashes_what_it_writes() {
        let ctx = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        fs::create_dir_all(ctx.path().join("src/sub")).unwrap();
        fs::write(ctx.path().join("src/a.txt"), "a").unwrap();
        fs::write(ctx.path().join("src/sub/b.txt"), "b").unwrap();
        fs::write(ctx.path().join("one.txt"), "1").unwrap();
        fs::create_dir_all(target.path().join("existing")).unwrap();
        let op = |srcs: &[&str], dest: &str| {
            let sources: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
            let spec = CopySpec {
                sources: &sources,
                inline: &[],
                dest,
                workdir: "/w",
                chown: None,
                chmod: None,
                unpack: false,
                parents: false,
                excludes: None,
            };
            CopyOp::resolve(ctx.path(), &Visible::default(), false, target.path(), &spec)
        };
        // A file to a file name, into an existing directory, a directory's contents.
        assert_eq!(
            op(&["one.txt"], "two.txt").unwrap().items[0].to,
            PathBuf::from("/w/two.txt")
        );
        assert_eq!(
            op(&["one.txt"], "/existing").unwrap().items[0].to,
            PathBuf::from("/existing/one.txt")
        );
        assert_eq!(
            op(&["src"], "/app").unwrap().items[0].to,
            PathBuf::from("/app")
        );
        assert_eq!(
            op(&["src/*.txt"], "/d").unwrap().items[0].to,
            PathBuf::from("/d/a.txt")
        );
        assert_eq!(
            op(&["nope"], "/").unwrap_err().to_string(),
            "failed to compute cache key: \"/nope\": not found"
        );
        assert_eq!(
            op(&["../x"], "/").unwrap_err().to_string(),
            "../x: outside the build context"
        );
        assert_eq!(
            op(&["*.none"], "/").unwrap_err().to_string(),
            "no source files were specified"
        );
        // The digest changes with content, not with mtimes.
        let d1 = op(&["src"], "/app")
            .unwrap()
            .digest(&FileDigests::default(), None)
            .unwrap();
        fs::write(ctx.path().join("src/sub/b.txt"), "b").unwrap();
        assert_eq!(
            op(&["src"], "/app")
                .unwrap()
                .digest(&FileDigests::default(), None)
                .unwrap(),
            d1
        );
        fs::write(ctx.path().join("src/sub/b.txt"), "B").unwrap();
        assert_ne!(
            op(&["src"], "/app")
                .unwrap()
                .digest(&FileDigests::default(), None)
                .unwrap(),
            d1
        );
        // Written: contents, modes, parents.
        let upper = tempfile::tempdir().unwrap();
        op(&["src"], "/app/").unwrap().write(upper.path()).unwrap();
        assert_eq!(
            fs::read_to_string(upper.path().join("app/sub/b.txt")).unwrap(),
            "B"
        );
        assert!(upper.path().join("app/a.txt").is_file());

        // A source named by its content id is not read: the id and the paths decide.
        let named = |id: &str, src: &str| {
            op(&[src], "/app")
                .unwrap()
                .with_content_id(id.into())
                .digest(&FileDigests::default(), None)
                .unwrap()
        };
        let before = named("chain-1", "src");
        fs::write(
            ctx.path().join("src/sub/b.txt"),
            "changed under the same id",
        )
        .unwrap();
        assert_eq!(named("chain-1", "src"), before);
        assert_ne!(named("chain-2", "src"), before);
        assert_ne!(named("chain-1", "src/sub"), before);
    }
}
