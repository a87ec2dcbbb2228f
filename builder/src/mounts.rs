//! `RUN --mount`, as BuildKit gives them: `cache` (a directory kept in the store between
//! builds, by `id` or target, `sharing=shared|locked|private`), `bind` (a path of the
//! context, a stage or an image; read-only unless `rw`, when writes go to a throw-away
//! copy), `tmpfs`, and `secret` (a file or variable given with `--secret`, never part of a
//! layer or a cache key). File mount points the mounts had to create are removed from
//! the step's upper directory afterwards (BuildKit's "mount stubs"); directories made for
//! them stay, as in docker 20.10.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use lb_parser::{MountType, Sharing};
use lb_rootpath::Root;
use oci_spec::runtime::{Mount, MountBuilder};

use crate::cache_key::{MountKey, SourceKey};
use crate::copy::CopyError;
use crate::error::{BuildError, ErrorKind};

/// Why a RUN's `--mount`s (or the build's tmpfs for secrets) could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A secret mount with neither `id=` nor `target=`.
    #[error("a secret mount needs id= or target=")]
    SecretWithoutId,
    /// A mount (its spec as written) that needs `target=`.
    #[error("mount {spec}: target= is required")]
    NoTarget { spec: String },
    /// `type=cache,from=`: not there yet.
    #[error("cache mounts seeded from= a stage are not supported by lb yet")]
    CacheFrom,
    /// `type=ssh`: not there yet.
    #[error("RUN --mount=type=ssh is not supported by lb yet")]
    Ssh,
    /// An I/O error on `path` (a cache directory, the secrets' directory).
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `sharing=locked` cache could not be locked.
    #[error("lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tmpfs for secrets could not be mounted on `path`.
    #[error("mount a tmpfs for secrets on {}: {source}", .path.display())]
    SecretsTmpfs {
        path: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    /// A bind mount's `from=` (a stage or an image) could not be had: its own error.
    #[error(transparent)]
    Unavailable(Box<ErrorKind>),
    /// A bind mount's source, as written, climbs out of its root.
    #[error("mount source {source_path}: outside its root")]
    SourceOutside { source_path: String },
    /// A bind mount's source (relative to its root) is not there, or is hidden.
    #[error("mount source \"/{}\": not found", .path.display())]
    SourceNotFound { path: PathBuf },
    /// A bind mount's tree could not be hashed or copied.
    #[error(transparent)]
    Tree(#[from] CopyError),
    /// A required secret the build was not given.
    #[error("secret {id}: not provided (--secret id={id},src=FILE)")]
    SecretMissing { id: String },
    /// A secret's file could not be read.
    #[error("secret {id}: {}: {source}", .path.display())]
    SecretFile {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A secret's variable is not set (or not Unicode).
    #[error("secret {id}: ${var} is not set")]
    SecretEnv { id: String, var: String },
    /// The step's copy of a secret could not be written.
    #[error("secret {id}: {source}")]
    SecretCopy {
        id: String,
        #[source]
        source: std::io::Error,
    },
}

impl MountError {
    /// The build's error for the instruction `ins`: a `from=` that could not be had as its
    /// own kind, no room to write as such, the rest as a mount's.
    pub(crate) fn at(self, ins: &lb_parser::Instruction) -> BuildError {
        let kind = match self {
            MountError::Unavailable(kind) => *kind,
            MountError::Tree(CopyError::NoSpace(n)) => ErrorKind::NoSpace(n),
            e => ErrorKind::Mount(e),
        };
        BuildError::new(kind).at_line(ins)
    }

    fn io(path: &Path, source: std::io::Error) -> MountError {
        MountError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a secret's value comes from (`--secret id=ID,src=FILE` or `,env=VAR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A RUN's mounts, ready for its spec.
#[derive(Default)]
pub(crate) struct Prepared {
    pub mounts: Vec<Mount>,
    /// Variables secrets are given in (`env=`).
    pub env: Vec<(String, String)>,
    /// What the mounts add to the step's cache key (bind sources' contents; not caches'
    /// or secrets').
    pub key: Vec<MountKey>,
    /// Mount points that did not exist in the image.
    pub stubs: Vec<PathBuf>,
    /// The shared cache mounts (not `sharing=private`): id, directory, and whether this
    /// step made the directory (a cache outside the store may fill it).
    pub caches: Vec<(String, PathBuf, bool)>,
    /// Held for the run: `sharing=locked` caches.
    pub _locks: Vec<std::fs::File>,
    /// The step's private copies of its secrets, removed when the step is done.
    pub _secrets: Vec<SecretCopy>,
}

/// A tmpfs in the build's own mount namespace that holds the copies of secrets the
/// steps mount: never on disk, gone with the build.
pub(crate) struct SecretsTmpfs(PathBuf);

impl SecretsTmpfs {
    pub fn mount(dir: &Path) -> Result<SecretsTmpfs, MountError> {
        std::fs::create_dir(dir).map_err(|e| MountError::io(dir, e))?;
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .map_err(|source| MountError::SecretsTmpfs {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(SecretsTmpfs(dir.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SecretsTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// One secret as a step sees it: a file of its own on the secrets tmpfs with the mount's
/// owner and mode (BuildKit's defaults: uid 0, gid 0, 0400), whatever the source's were.
pub(crate) struct SecretCopy(PathBuf);

impl SecretCopy {
    fn write(
        dir: Option<&Path>,
        name: &str,
        value: &[u8],
        (uid, gid): (u32, u32),
        mode: u32,
    ) -> std::io::Result<SecretCopy> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let dir = dir.ok_or_else(|| std::io::Error::other("no secrets were given to the build"))?;
        let path = dir.join(lb_layerstore::Digest::of(name.as_bytes()).hex());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let copy = SecretCopy(path);
        f.write_all(value)?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        Ok(copy)
    }
}

impl Drop for SecretCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a mount reads from, when it reads from a file system.
pub(crate) enum MountSource {
    /// The context directory and what of it the build sees.
    Context(PathBuf, crate::copy::Visible),
    /// A stage's or image's file system (a view) and the key that names it.
    Image(PathBuf, lb_layerstore::Digest),
}

fn bind(target: &Path, source: &Path, read_only: bool) -> Mount {
    let mut opts = vec!["rbind".to_string()];
    opts.push(if read_only { "ro" } else { "rw" }.into());
    MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(opts)
        .build()
        .expect("bind mount")
}

/// The inputs a step's mounts need, from the builder.
pub(crate) struct MountEnv<'a> {
    pub store_root: &'a Path,
    pub step_dir: &'a Path,
    pub workdir: &'a str,
    /// The image's file system before the step (to tell stubs).
    pub lower_view: &'a Path,
    pub secrets: &'a BTreeMap<String, SecretSource>,
    /// Where secrets' copies are written (a tmpfs), when the build was given any.
    pub secrets_dir: Option<&'a Path>,
    pub digests: &'a crate::digests::FileDigests,
}

pub(crate) fn prepare(
    mounts: &[lb_parser::Mount],
    env: &MountEnv,
    source_of: &dyn Fn(Option<&str>) -> Result<MountSource, ErrorKind>,
) -> Result<Prepared, MountError> {
    let mut p = Prepared::default();
    // The image's file system before the step, to tell which mount points it lacks.
    let lower = Root::open(env.lower_view);
    for (n, m) in mounts.iter().enumerate() {
        let target = m.target.as_deref().map(|t| {
            if t.starts_with('/') {
                PathBuf::from(t)
            } else {
                Path::new(env.workdir).join(t)
            }
        });
        let target = match (m.kind, target) {
            (_, Some(t)) => t,
            (MountType::Secret, None) => {
                let id = m.id.as_deref().ok_or(MountError::SecretWithoutId)?;
                PathBuf::from("/run/secrets").join(id)
            }
            (_, None) => {
                return Err(MountError::NoTarget {
                    spec: m.spec.clone(),
                });
            }
        };
        match m.kind {
            MountType::Cache => {
                if m.from.is_some() {
                    return Err(MountError::CacheFrom);
                }
                let id = m.id.clone().unwrap_or_else(|| target.display().to_string());
                let dir = match m.sharing.unwrap_or(Sharing::Shared) {
                    Sharing::Private => env.step_dir.join(format!("cache-{n}")),
                    _ => lb_layerstore::Layout::new(env.store_root)
                        .cache_mount(&lb_layerstore::Digest::of(id.as_bytes())),
                };
                let fresh = !dir.is_dir();
                std::fs::create_dir_all(&dir).map_err(|e| MountError::io(&dir, e))?;
                if m.sharing != Some(Sharing::Private) {
                    p.caches.push((id.clone(), dir.clone(), fresh));
                }
                if fresh {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = m.mode.unwrap_or(0o755);
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| MountError::io(&dir, e))?;
                    std::os::unix::fs::chown(
                        &dir,
                        Some(m.uid.unwrap_or(0)),
                        Some(m.gid.unwrap_or(0)),
                    )
                    .map_err(|e| MountError::io(&dir, e))?;
                }
                if m.sharing == Some(Sharing::Locked) {
                    let lock = std::fs::File::open(&dir).map_err(|e| MountError::io(&dir, e))?;
                    // SAFETY: flock on a descriptor we own; blocks until the other build is done.
                    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                        return Err(MountError::Lock {
                            path: dir,
                            source: std::io::Error::last_os_error(),
                        });
                    }
                    p._locks.push(lock);
                }
                p.mounts.push(bind(&target, &dir, m.read_only));
                p.key.push(MountKey::Cache {
                    target: target.clone(),
                    id,
                });
            }
            MountType::Bind => {
                let source = m.source.clone().unwrap_or_else(|| "/".into());
                let from = source_of(m.from.as_deref())
                    .map_err(|k| MountError::Unavailable(Box::new(k)))?;
                let (root, from_key, visible) = match from {
                    MountSource::Context(root, visible) => (root, SourceKey::Context, visible),
                    MountSource::Image(root, key) => {
                        (root, SourceKey::Image(key), crate::copy::Visible::default())
                    }
                };
                let from_image = from_key != SourceKey::Context;
                let rel = crate::copy::clean_relative(&source).ok_or_else(|| {
                    MountError::SourceOutside {
                        source_path: source.clone(),
                    }
                })?;
                // Resolved inside its root (a link in the context or the stage names a
                // path of that root, never the host's), visible as named and as resolved.
                let not_found = || MountError::SourceNotFound { path: rel.clone() };
                let path = Root::open(&root)
                    .and_then(|r| r.host_path(&rel, true))
                    .map_err(|_| not_found())?;
                if std::fs::symlink_metadata(&path).is_err()
                    || !visible.shows(&root.join(&rel))
                    || !visible.shows(&path)
                {
                    return Err(not_found());
                }
                let digest = crate::copy::tree_digest(&path, from_image, &visible, env.digests)?;
                let path = if !m.read_only {
                    // Writes to a rw bind are thrown away: they go to a copy.
                    let copy = env.step_dir.join(format!("bind-{n}"));
                    crate::copy::mirror(&path, &visible, &copy, false)?;
                    copy
                } else if visible.hides_anything() {
                    // What .dockerignore leaves out is absent from the mounted tree, as
                    // from the context BuildKit receives: a tree of links to what is seen.
                    let tree = env.step_dir.join(format!("bind-{n}"));
                    crate::copy::mirror(&path, &visible, &tree, true)?;
                    tree
                } else {
                    path
                };
                p.mounts.push(bind(&target, &path, m.read_only));
                p.key.push(MountKey::Bind {
                    target: target.clone(),
                    from: from_key,
                    source,
                    digest,
                    read_only: m.read_only,
                });
            }
            MountType::Tmpfs => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = m.size {
                    opts.push(format!("size={size}"));
                }
                p.mounts.push(
                    MountBuilder::default()
                        .destination(&target)
                        .typ("tmpfs")
                        .source("tmpfs")
                        .options(opts)
                        .build()
                        .expect("tmpfs mount"),
                );
                p.key.push(MountKey::Tmpfs {
                    target: target.clone(),
                });
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| target.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_default();
                let Some(src) = env.secrets.get(&id) else {
                    if m.required {
                        return Err(MountError::SecretMissing { id });
                    }
                    continue;
                };
                let value = match src {
                    SecretSource::File(f) => {
                        std::fs::read(f).map_err(|source| MountError::SecretFile {
                            id: id.clone(),
                            path: f.clone(),
                            source,
                        })?
                    }
                    SecretSource::Env(var) => std::env::var(var)
                        .map_err(|_| MountError::SecretEnv {
                            id: id.clone(),
                            var: var.clone(),
                        })?
                        .into_bytes(),
                };
                if let Some(var) = &m.env {
                    p.env
                        .push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
                    if m.target.is_none() {
                        continue;
                    }
                }
                let copy = SecretCopy::write(
                    env.secrets_dir,
                    &format!("{}-{n}", env.step_dir.display()),
                    &value,
                    (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
                    m.mode.unwrap_or(0o400),
                )
                .map_err(|source| MountError::SecretCopy { id, source })?;
                p.mounts.push(bind(&target, &copy.0, true));
                p._secrets.push(copy);
            }
            MountType::Ssh => return Err(MountError::Ssh),
        }
        let in_image = lower.as_ref().ok().map(|r| r.symlink_metadata(&target));
        if !matches!(in_image, Some(Ok(_))) {
            p.stubs.push(target);
        }
    }
    Ok(p)
}

/// Removes from `upper` the file mount points `stubs` left (empty files absent from the
/// image, `lower_view`). Directories made for mount points stay, as docker 20.10's BuildKit
/// leaves them: that is the reference the differential tests build against (BuildKit 0.10
/// and later remove empty ones too).
pub(crate) fn remove_stubs(upper: &Path, lower_view: &Path, stubs: &[PathBuf]) {
    let (Ok(lower), Ok(upper)) = (Root::open(lower_view), Root::open(upper)) else {
        return;
    };
    for stub in stubs {
        let rel = stub.strip_prefix("/").unwrap_or(stub);
        if rel.as_os_str().is_empty() || lower.symlink_metadata(rel).is_ok() {
            continue;
        }
        // Resolved inside the upper dir: the step may have made a parent a link.
        let Ok(p) = upper.host_path(rel, false) else {
            continue;
        };
        if std::fs::symlink_metadata(&p).is_ok_and(|md| md.is_file() && md.len() == 0) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Each renders as the text lb printed when it was a `String`.
    #[test]
    fn messages_are_the_ones_lb_printed() {
        let cases: Vec<(MountError, &str)> = vec![
            (
                MountError::SecretWithoutId,
                "a secret mount needs id= or target=",
            ),
            (
                MountError::NoTarget {
                    spec: "type=cache".into(),
                },
                "mount type=cache: target= is required",
            ),
            (
                MountError::CacheFrom,
                "cache mounts seeded from= a stage are not supported by lb yet",
            ),
            (
                MountError::Ssh,
                "RUN --mount=type=ssh is not supported by lb yet",
            ),
            (
                MountError::io(Path::new("/c"), io::Error::from_raw_os_error(libc::EACCES)),
                "/c: Permission denied (os error 13)",
            ),
            (
                MountError::Lock {
                    path: "/c".into(),
                    source: io::Error::from_raw_os_error(libc::EINTR),
                },
                "lock /c: Interrupted system call (os error 4)",
            ),
            (
                MountError::SecretsTmpfs {
                    path: "/w/secrets".into(),
                    source: nix::errno::Errno::EPERM,
                },
                "mount a tmpfs for secrets on /w/secrets: EPERM: Operation not permitted",
            ),
            (
                MountError::SourceOutside {
                    source_path: "../x".into(),
                },
                "mount source ../x: outside its root",
            ),
            (
                MountError::SourceNotFound { path: "a/b".into() },
                "mount source \"/a/b\": not found",
            ),
            (
                MountError::SecretMissing { id: "key".into() },
                "secret key: not provided (--secret id=key,src=FILE)",
            ),
            (
                MountError::SecretFile {
                    id: "key".into(),
                    path: "/k".into(),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                },
                "secret key: /k: No such file or directory (os error 2)",
            ),
            (
                MountError::SecretEnv {
                    id: "key".into(),
                    var: "TOKEN".into(),
                },
                "secret key: $TOKEN is not set",
            ),
            (
                MountError::SecretCopy {
                    id: "key".into(),
                    source: io::Error::from_raw_os_error(libc::ENOSPC),
                },
                "secret key: No space left on device (os error 28)",
            ),
            (
                MountError::Unavailable(Box::new(ErrorKind::Invalid(
                    "stage 3 was not built".into(),
                ))),
                "stage 3 was not built",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
