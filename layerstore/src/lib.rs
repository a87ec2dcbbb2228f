//! lb's store: the content-addressed centre that builds commit into, `run` mounts from and
//! `push`/`pull` move blobs in and out of.
//!
//! It holds [`Digest`] (the one place digests are computed and parsed), the [`ContentStore`]
//! (blobs written from a stream while hashed, fsynced and renamed into
//! `blobs/sha256/<hex>`, never visible half-written, verifiable on read, stored once),
//! [`apply_layer`] (a layer unpacked so that no entry can write outside its target), docker's
//! image [`Reference`] normalisation, and on top of them images and names, snapshots (each
//! layer unpacked once; a machine crash cannot leave a damaged one in use), layer diffs,
//! compression, build cache records, container records, save/load and GC (ARCHITECTURE.md
//! has the map).
//!
//! This crate knows nothing of Dockerfiles, builds or containers: it stores bytes, images and
//! file trees, and answers what is stored.

mod apply;
mod archive;
mod cache;
mod changes;
mod check;
mod compressed;
mod container;
mod content;
mod diff;
mod differ;
mod digest;
mod error;
mod events;
mod gzip;
mod image;
mod layout;
mod lower;
mod output_file;
mod reference;
mod reserve;
mod snapshot;
mod snapshot_check;
mod snapshotter;
mod spool;
mod store;
mod trash;
mod unsynced;

pub use apply::{ApplyOptions, ApplyStats, Compression, Whiteouts, apply_layer, decompressed};
pub use cache::CacheRecord;
pub use changes::{ChangeKind, PathChange, path_changes};
pub use check::{CheckOptions, CheckReport, Problem, Subject};
pub use container::{ContainerRecord, files_size};
pub use content::{BlobInfo, BlobWriter, CallerHashedWriter, ContentStore};
pub use diff::{DiffOptions, LayerCompression, LayerDiff, write_diff};
pub use differ::{LayerChanges, apply, compare};
pub use digest::{Digest, Digester};
pub use error::{Error, NoSpace, is_no_space};
pub use events::{Actor, Event};
pub use gzip::ParallelGzip;
pub use image::{
    Image, LayerCommit, MEDIA_CONFIG, MEDIA_LAYER_TAR, MEDIA_MANIFEST, StoredLayer, creation_time,
    host_platform, parse_rfc3339, rfc3339,
};
pub use layout::Layout;
pub use output_file::OutputFile;
pub use reference::{DEFAULT_DOMAIN, DEFAULT_TAG, Reference};
pub use reserve::{MinFree, SpaceGuard, human_size, parse_size};
pub use snapshot::chain_ids;
pub use snapshotter::{
    Chain, Mounts, OverlaySnapshotter, Snapshot, SnapshotChanges, SnapshotKey, Snapshotter,
    StorageDriver, UpperDirs, VfsSnapshotter, copy_tree,
};
pub use store::spread_subdirectories;
pub use store::{
    BrokenReference, LiveImages, PruneReport, REF_NAME, Store, default_root, write_atomic,
};
