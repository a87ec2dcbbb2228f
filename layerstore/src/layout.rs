//! Every path under a store's root, named in one place: the store's own modules, the
//! builder, the container crate and the registry client ask `Store::layout()` for a
//! directory instead of joining names onto the root themselves, so the layout can be read
//! (and changed) here alone.
//!
//! ```text
//! <root>/oci-layout, index.json       an OCI image layout: the names
//! <root>/storage-driver               the store's storage driver (overlay or vfs)
//! <root>/{gc,index,containers}.lock   the store's locks
//! <root>/blobs/sha256/<hex>           content (manifests, configs, layers)
//! <root>/ingest/                      blobs being written
//! <root>/snapshots/<chain id hex>/    unpacked layers (overlay lowers)
//! <root>/snapshotter/<driver>/active/<key>/
//!                                     the snapshotter seam's active snapshots and views
//! <root>/snapshotter/vfs/committed/<chain id hex>/
//!                                     the vfs driver's committed trees
//! <root>/unsynced/<boot id>/          snapshots not yet known to be on disk
//! <root>/compressed/<algo>/<hex>      layers compressed once for pushes
//! <root>/cache/                       build cache records
//! <root>/cache-mounts/<id hex>/       RUN --mount=type=cache directories
//! <root>/build/                       builds' scratch directories
//! <root>/containers/<id>/             container records, upper dirs, logs, state
//! <root>/netns/<id>                   containers' network namespace files
//! <root>/networks/<name>.json         user network definitions
//! <root>/volumes/<name>/              volumes: volume.json, and _data (what containers see)
//! <root>/registries/<domain>/<hex>    which repositories hold a blob (mount hints)
//! <root>/trash/                       what is being deleted
//! ```

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// The directories that hold image or container files (setuid binaries among them): made
/// and kept 0700, so no other host user reaches them.
pub(crate) const PRIVATE_DIRS: &[&str] = &[
    BLOBS,
    INGEST,
    SNAPSHOTS,
    CONTAINERS,
    BUILD,
    CACHE,
    CACHE_MOUNTS,
    COMPRESSED,
    UNSYNCED,
    NETNS,
    NETWORKS,
    VOLUMES,
    REGISTRIES,
    TRASH,
];

const BLOBS: &str = "blobs";
const INGEST: &str = "ingest";
const SNAPSHOTS: &str = "snapshots";
const CONTAINERS: &str = "containers";
const BUILD: &str = "build";
const CACHE: &str = "cache";
const CACHE_MOUNTS: &str = "cache-mounts";
const COMPRESSED: &str = "compressed";
const UNSYNCED: &str = "unsynced";
const NETNS: &str = "netns";
const NETWORKS: &str = "networks";
const VOLUMES: &str = "volumes";
const REGISTRIES: &str = "registries";
const TRASH: &str = "trash";

/// The paths of a store rooted at `root`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the root itself: `oci-layout`, `index.json`, a lock.
    pub(crate) fn root_file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The file naming the store's storage driver.
    pub(crate) fn storage_driver_file(&self) -> PathBuf {
        self.root_file("storage-driver")
    }

    pub(crate) fn private_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `blobs/sha256`.
    pub fn blobs(&self) -> PathBuf {
        self.root.join(BLOBS).join("sha256")
    }

    pub fn ingest(&self) -> PathBuf {
        self.root.join(INGEST)
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join(SNAPSHOTS)
    }

    /// The unpacked layers of the chain `chain_id` ends.
    pub fn snapshot(&self, chain_id: &Digest) -> PathBuf {
        self.snapshots().join(chain_id.hex())
    }

    /// The snapshotter seam's area of `driver`.
    pub fn snapshotter(&self, driver: &str) -> PathBuf {
        self.root.join("snapshotter").join(driver)
    }

    /// `driver`'s active snapshots and views, one directory per key.
    pub fn snapshotter_active(&self, driver: &str) -> PathBuf {
        self.snapshotter(driver).join("active")
    }

    /// The vfs driver's committed trees.
    pub fn vfs_committed(&self) -> PathBuf {
        self.snapshotter("vfs").join("committed")
    }

    /// The vfs tree of the chain `chain_id` ends (whether or not it exists).
    pub fn vfs_tree(&self, chain_id: &Digest) -> PathBuf {
        self.vfs_committed().join(chain_id.hex())
    }

    pub fn unsynced(&self) -> PathBuf {
        self.root.join(UNSYNCED)
    }

    /// Compressed layers by algorithm (`gzip`, `zstd`).
    pub fn compressed(&self, algo: &str) -> PathBuf {
        self.compressed_root().join(algo)
    }

    pub(crate) fn compressed_root(&self) -> PathBuf {
        self.root.join(COMPRESSED)
    }

    /// Build cache records.
    pub fn cache_records(&self) -> PathBuf {
        self.root.join(CACHE)
    }

    /// The directory of the cache mount whose id hashes to `id`.
    pub fn cache_mount(&self, id: &Digest) -> PathBuf {
        self.cache_mounts().join(id.hex())
    }

    /// Where the volumes are, one directory each.
    pub fn volumes(&self) -> PathBuf {
        self.root.join(VOLUMES)
    }

    /// Where the cache mounts are.
    pub fn cache_mounts(&self) -> PathBuf {
        self.root.join(CACHE_MOUNTS)
    }

    /// Builds' scratch directories.
    pub fn build_scratch(&self) -> PathBuf {
        self.root.join(BUILD)
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join(CONTAINERS)
    }

    /// Container `id`'s directory.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// Container `id`'s network namespace file (outside its directory, so that removing
    /// the directory never trips over a mount).
    pub fn netns_file(&self, id: &str) -> PathBuf {
        self.root.join(NETNS).join(id)
    }

    /// User networks' definitions.
    pub fn networks(&self) -> PathBuf {
        self.root.join(NETWORKS)
    }

    /// Which repositories of registry `domain` hold which blobs.
    pub fn registry_hints(&self, domain: &str) -> PathBuf {
        self.root.join(REGISTRIES).join(domain.replace('/', "_"))
    }

    pub fn trash(&self) -> PathBuf {
        self.root.join(TRASH)
    }

    /// The store's event log (`lb events`) and the one older file it rotates to.
    pub fn events(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    pub fn events_old(&self) -> PathBuf {
        self.root.join("events.jsonl.1")
    }
}
