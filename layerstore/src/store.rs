//! The store root: an OCI image layout (`oci-layout`, `index.json`, `blobs/`) that other
//! tools (`skopeo`, `umoci`) read as it is, plus lb's own directories beside it.
//!
//! Names live in `index.json`: one manifest descriptor per name, the full normalised
//! reference in `org.opencontainers.image.ref.name`. Every change takes an exclusive lock
//! (`index.lock`, flock) around read-modify-write, and the new index is written to a
//! temporary file, fsynced and renamed over the old one: concurrent `lb` processes serialise,
//! and a crash leaves either the old or the new index, never a torn one.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::Error;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::layout::{Layout, PRIVATE_DIRS};
use crate::reference::Reference;

/// The annotation that names a manifest in the index (OCI image layout).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a prune removed.
#[derive(Debug)]
pub struct PruneReport {
    pub blobs: u64,
    pub snapshots: u64,
    /// Bytes of blobs and interrupted writes removed (snapshots not counted).
    pub bytes: u64,
    /// References whose image could not be read (the prune went on without them).
    pub broken: Vec<BrokenReference>,
}

/// A name or a container whose image cannot be read.
#[derive(Debug)]
pub struct BrokenReference {
    /// The name (`docker.io/library/x:latest`) or `container <id>`.
    pub reference: String,
    pub error: Error,
}

/// What names and containers reach (see [`Store::live_images`]).
#[derive(Debug, Default)]
pub struct LiveImages {
    pub images: Vec<crate::image::Image>,
    /// Blobs of broken references that are still there (kept by a prune).
    pub partial: std::collections::HashSet<Digest>,
    pub broken: Vec<BrokenReference>,
}

impl LiveImages {
    /// Every blob reached: manifests, configs, layers.
    pub fn blobs(&self) -> std::collections::HashSet<Digest> {
        let mut live = self.partial.clone();
        for image in &self.images {
            live.insert(image.manifest_digest);
            live.insert(image.config_digest);
            for layer in image.manifest.layers() {
                if let Ok(d) = Digest::from_str(layer.digest().as_ref()) {
                    live.insert(d);
                }
            }
        }
        live
    }
}

/// An opened store root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    layout: Layout,
    content: ContentStore,
    /// Settled at open (`snapshotter/driver.rs`).
    driver: crate::StorageDriver,
}

/// Asks the file system to place each new directory in `dir` far from its siblings (ext4's
/// "top directory" flag, `chattr +T`: the Orlov allocator then starts each in a block group
/// of its own). A RUN step's upper dir or a snapshot being unpacked then takes fresh inodes
/// and contiguous blocks instead of filling the groups of earlier ones and scanning past
/// inodes freed there lately: a RUN writing 2000 files of 100 KiB took 2.12 s against 2.27 s
/// (means of 4, alternated, this machine). Not for directories that stay small: starting in
/// a group not used lately reads its bitmaps first (about 5 ms a directory here). Other file
/// systems ignore the flag or refuse it; either is fine.
pub fn spread_subdirectories(dir: &Path) {
    use rustix::fs::IFlags;
    let Ok(d) = std::fs::File::open(dir) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&d)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = rustix::fs::ioctl_setflags(&d, flags | IFlags::TOPDIR);
    }
}

/// The root a command uses: `--root`, else `$LB_ROOT`, else `/var/lib/lb`.
pub fn default_root(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("LB_ROOT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/var/lib/lb"),
    }
}

/// The store root as docker keeps its data root: 0700 (no other host user reaches a file
/// in it: a setuid binary in a snapshot, a lock file to hold), and every directory with
/// content 0700 too, should the root be opened up; a store made by an older lb (0755) is
/// fixed here, on open. A root the caller does not own is left as it is.
fn restrict(root: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let set = |path: &Path, mode: u32| -> Result<(), Error> {
        let md = fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if md.permissions().mode() & 0o7777 != mode {
            match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                other => other.map_err(|e| Error::io(path, e))?,
            }
        }
        Ok(())
    };
    set(root, 0o700)?;
    let layout = Layout::new(root);
    for name in PRIVATE_DIRS {
        let dir = layout.private_dir(name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            // A store from an older lb lacks a newer directory, and a full disk cannot
            // make it: reading the store must still work (its first writer says why not).
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {}
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io(&dir, e));
            }
            _ => set(&dir, 0o700)?,
        }
    }
    Ok(())
}

impl Store {
    /// Opens the store at `root`, creating its layout on first use; a new store records
    /// the default driver (overlay).
    pub fn open(root: &Path) -> Result<Store, Error> {
        Store::open_with(root, None, crate::StorageDriver::default)
    }

    /// Opens the store at `root` with the storage driver `wanted` (an error when the store
    /// records another); with none wanted, a new store takes what `default` says (the
    /// caller's question whether overlayfs can be mounted here) and records it.
    pub fn open_with(
        root: &Path,
        wanted: Option<crate::StorageDriver>,
        default: impl FnOnce() -> crate::StorageDriver,
    ) -> Result<Store, Error> {
        fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        restrict(root)?;
        let content = ContentStore::open(root)?;
        let mut store = Store {
            root: root.to_path_buf(),
            layout: Layout::new(root),
            content,
            driver: crate::StorageDriver::default(),
        };
        let layout = store.layout.root_file("oci-layout");
        let mut made = None;
        if !layout.exists() {
            // Under the index's lock, as every file written in the root: a prune clears
            // the root's temporaries while it holds that lock.
            let _index = store.lock("index.lock")?;
            if !layout.exists() {
                // A new store: its driver is recorded before the layout, so whoever sees
                // the layout sees the driver.
                made = Some(store.record_driver(wanted.unwrap_or_else(default))?);
                write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            }
        }
        store.driver = match made {
            Some(d) => d,
            None => store.settle_driver(wanted)?,
        };
        store.empty_trash();
        store.settle_unsynced()?;
        Ok(store)
    }

    /// The store's storage driver.
    pub fn storage_driver(&self) -> crate::StorageDriver {
        self.driver
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where everything under the root is.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    fn index_path(&self) -> PathBuf {
        self.layout.root_file("index.json")
    }

    fn read_index(&self) -> Result<ImageIndex, Error> {
        self.read_index_bytes().map(|(index, _)| index)
    }

    /// The index and the bytes it was read from (none when there is no file yet).
    fn read_index_bytes(&self) -> Result<(ImageIndex, Option<Vec<u8>>), Error> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => ImageIndex::from_reader(&bytes[..])
                .map(|index| (index, Some(bytes)))
                .map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((empty_index(), None)),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Runs `change` on the index under the store's lock and saves the result atomically.
    fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _lock = self.lock("index.lock")?;
        let (mut index, before) = self.read_index_bytes()?;
        let mut manifests = index.manifests().clone();
        let out = change(&mut manifests)?;
        index.set_manifests(manifests);
        let text = index.to_string_pretty().map_err(|e| Error::Corrupt {
            path: self.index_path(),
            reason: e.to_string(),
        })?;
        // A name set again to what it was (every cached rebuild's tag) writes nothing: the
        // file on disk is already durable, and its rewrite cost two syncs.
        if before.as_deref() != Some(text.as_bytes()) {
            write_atomic(&self.index_path(), text.as_bytes())?;
        }
        Ok(out)
    }

    /// An exclusive lock on `root/<name>`, released when the returned file is dropped.
    pub fn lock(&self, name: &str) -> Result<File, Error> {
        self.flock(name, rustix::fs::FlockOperation::LockExclusive)
    }

    /// Held (shared) by every operation that writes blobs before naming them, so that a
    /// prune (which takes it exclusively) never removes a blob about to be named.
    pub fn writing(&self) -> Result<File, Error> {
        self.flock("gc.lock", rustix::fs::FlockOperation::LockShared)
    }

    fn flock(&self, name: &str, how: rustix::fs::FlockOperation) -> Result<File, Error> {
        let path = self.layout.root_file(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        rustix::fs::flock(&file, how).map_err(|e| Error::io(&path, e.into()))?;
        Ok(file)
    }

    /// Removes every blob and snapshot no name reaches, and leftovers of interrupted writes.
    pub fn prune(&self) -> Result<PruneReport, Error> {
        self.prune_keeping(&std::collections::HashSet::new())
    }

    /// [`Store::prune`], but the blobs in `keep` stay even when nothing reaches them (a
    /// prune whose filters leave the build cache and unnamed images alone; their
    /// snapshots may go, and are unpacked again when used).
    pub fn prune_keeping(
        &self,
        keep: &std::collections::HashSet<Digest>,
    ) -> Result<PruneReport, Error> {
        let _gc = self.lock("gc.lock")?;
        let reached = self.live_images()?;
        let snapshots = self.prune_all_snapshots(&reached)?;
        let live = reached.blobs();
        let (mut count, mut bytes) = (0, 0);
        for blob in self.content.list()? {
            if !live.contains(&blob.digest) && !keep.contains(&blob.digest) {
                bytes += self.content.remove(&blob.digest)?;
                count += 1;
            }
        }
        self.prune_cache();
        // Scratch space of builds: a build holds the writers' lock, so none runs now and
        // whatever is left is from one that was killed.
        if let Ok(entries) = fs::read_dir(self.layout.build_scratch()) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        // No writer holds the shared lock now, so nothing in ingest/ is in use, and none of
        // the other temporaries under these two locks.
        let _containers = self.lock("containers.lock")?;
        let _index = self.lock("index.lock")?;
        for t in self.temporaries() {
            bytes += fs::symlink_metadata(&t).map_or(0, |m| if m.is_file() { m.len() } else { 0 });
            let _ = self.discard(&t);
        }
        Ok(PruneReport {
            blobs: count,
            snapshots,
            bytes,
            broken: reached.broken,
        })
    }

    /// Every image a name or a container reaches, and the references whose image cannot be
    /// read (a manifest or config missing or damaged: they are reported, never a reason to
    /// stop, so one broken name cannot wedge `images` or `prune`).
    pub fn live_images(&self) -> Result<LiveImages, Error> {
        let mut seen = std::collections::HashSet::new();
        let mut out = LiveImages::default();
        let mut refs: Vec<(String, Digest)> = Vec::new();
        for (name, d) in self.names()? {
            match Store::descriptor_digest(&d) {
                Ok(digest) => refs.push((name.to_string(), digest)),
                Err(error) => out.broken.push(BrokenReference {
                    reference: name.to_string(),
                    error,
                }),
            }
        }
        for c in self.containers::<serde::de::IgnoredAny>()? {
            refs.push((format!("container {}", c.id), c.image));
        }
        for (reference, digest) in refs {
            if !seen.insert(digest) {
                continue;
            }
            match self.image_by_manifest(digest) {
                Ok(image) => out.images.push(image),
                Err(error) => {
                    // What can still be read of it stays: its manifest and whatever the
                    // manifest names, so a prune removes no more than it must.
                    if let Ok(bytes) = self.content.read_verified(&digest) {
                        out.partial.insert(digest);
                        if let Ok(m) = oci_spec::image::ImageManifest::from_reader(&bytes[..]) {
                            let named = std::iter::once(m.config()).chain(m.layers());
                            out.partial.extend(
                                named.filter_map(|d| Digest::from_str(d.digest().as_ref()).ok()),
                            );
                        }
                    }
                    out.broken.push(BrokenReference { reference, error });
                }
            }
        }
        Ok(out)
    }

    /// Every blob a name or a container reaches: manifests, configs, layers.
    pub fn reachable(&self) -> Result<std::collections::HashSet<Digest>, Error> {
        Ok(self.live_images()?.blobs())
    }

    /// Points `name` at `manifest` (replacing what it pointed at).
    pub fn set_name(&self, name: &Reference, manifest: &Descriptor) -> Result<(), Error> {
        let full = name.to_string();
        self.update_index(|manifests| {
            manifests.retain(|d| ref_name(d).as_deref() != Some(full.as_str()));
            let mut d = manifest.clone();
            let mut notes: HashMap<String, String> = d.annotations().clone().unwrap_or_default();
            notes.insert(REF_NAME.to_string(), full.clone());
            d.set_annotations(Some(notes));
            manifests.push(d);
            manifests.sort_by_key(ref_name);
            Ok(())
        })
    }

    /// Removes `name`; returns what it pointed at.
    pub fn remove_name(&self, name: &Reference) -> Result<Option<Descriptor>, Error> {
        let full = name.to_string();
        self.update_index(|manifests| {
            let pos = manifests
                .iter()
                .position(|d| ref_name(d).as_deref() == Some(full.as_str()));
            Ok(pos.map(|i| manifests.remove(i)))
        })
    }

    /// The manifest descriptor `name` points at.
    pub fn resolve(&self, name: &Reference) -> Result<Descriptor, Error> {
        let full = name.to_string();
        self.read_index()?
            .manifests()
            .iter()
            .find(|d| ref_name(d).as_deref() == Some(full.as_str()))
            .cloned()
            .ok_or_else(|| Error::NameNotFound(name.familiar()))
    }

    /// Every name with its manifest descriptor, sorted by name.
    pub fn names(&self) -> Result<Vec<(Reference, Descriptor)>, Error> {
        let mut out = Vec::new();
        for d in self.read_index()?.manifests() {
            if let Some(r) = ref_name(d).and_then(|n| Reference::from_str(&n).ok()) {
                out.push((r, d.clone()));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The digest of a descriptor, in lb's type.
    pub fn descriptor_digest(d: &Descriptor) -> Result<Digest, Error> {
        Digest::from_str(d.digest().as_ref())
    }
}

fn ref_name(d: &Descriptor) -> Option<String> {
    d.annotations().as_ref()?.get(REF_NAME).cloned()
}

fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .expect("an index with no manifests is complete")
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(store: &Store, body: &[u8]) -> Descriptor {
        let info = store.content().put(body).unwrap();
        let digest = oci_spec::image::Digest::from_str(&info.digest.to_string()).unwrap();
        Descriptor::new(MediaType::ImageManifest, info.size, digest)
    }

    #[test]
    fn names_set_resolve_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = manifest(&store, b"{\"a\":1}");
        let b = manifest(&store, b"{\"b\":2}");
        let busybox: Reference = "busybox".parse().unwrap();
        let app: Reference = "localhost:5000/app:1".parse().unwrap();
        store.set_name(&busybox, &a).unwrap();
        store.set_name(&app, &a).unwrap();
        store.set_name(&busybox, &b).unwrap();
        assert_eq!(store.resolve(&busybox).unwrap().digest(), b.digest());
        let names: Vec<String> = store
            .names()
            .unwrap()
            .iter()
            .map(|(r, _)| r.to_string())
            .collect();
        assert_eq!(
            names,
            vec!["docker.io/library/busybox:latest", "localhost:5000/app:1"]
        );
        assert!(store.remove_name(&app).unwrap().is_some());
        assert!(matches!(store.resolve(&app), Err(Error::NameNotFound(_))));
        // The root is an OCI layout other tools read.
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME],
            "docker.io/library/busybox:latest"
        );
        assert!(dir.path().join("oci-layout").is_file());
    }

    #[test]
    fn a_name_set_to_what_it_is_writes_nothing() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (
            manifest(&store, b"{\"a\":1}"),
            manifest(&store, b"{\"b\":2}"),
        );
        let app: Reference = "app".parse().unwrap();
        let inode = || fs::metadata(dir.path().join("index.json")).unwrap().ino();
        store.set_name(&app, &a).unwrap();
        let written = inode();
        store.set_name(&app, &a).unwrap();
        assert_eq!(inode(), written, "the same name again replaced index.json");
        store.set_name(&app, &b).unwrap();
        assert_ne!(inode(), written, "a changed name must be written");
        assert_eq!(store.resolve(&app).unwrap().digest(), b.digest());
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = manifest(&store, b"{}");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, d) = (store.clone(), d.clone());
                s.spawn(move || {
                    for i in 0..10 {
                        let r: Reference = format!("app{t}:{i}").parse().unwrap();
                        store.set_name(&r, &d).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.names().unwrap().len(), 40);
    }
}
