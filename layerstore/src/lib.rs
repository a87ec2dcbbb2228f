//! lb's store: the content-addressed centre that builds commit into, `run` mounts from and
//! `push`/`pull` move blobs in and out of.
//!
//! Today it holds the foundations: [`Digest`] (the one place digests are computed and
//! parsed), the [`ContentStore`] (blobs written from a stream while hashed, fsynced and
//! renamed into `blobs/sha256/<hex>`, never visible half-written, verifiable on read, stored
//! once), [`apply_layer`] (a layer unpacked so that no entry can write outside its target),
//! and docker's image [`Reference`] normalisation. Images, names, snapshots, layer diff,
//! save/load and GC come next (see the layer-store issue and ARCHITECTURE.md).
//!
//! This crate knows nothing of Dockerfiles, builds or containers: it stores bytes, images and
//! file trees, and answers what is stored.

mod apply;
mod archive;
mod cache;
mod compressed;
mod container;
mod content;
mod diff;
mod digest;
mod error;
mod gzip;
mod image;
mod reference;
mod snapshot;
mod spool;
mod store;

pub use apply::{ApplyOptions, ApplyStats, Compression, Whiteouts, apply_layer, decompressed};
pub use container::ContainerRecord;
pub use content::{BlobInfo, BlobWriter, CallerHashedWriter, ContentStore};
pub use diff::{DiffOptions, LayerCompression, LayerDiff, write_diff};
pub use digest::{Digest, Digester};
pub use error::Error;
pub use gzip::ParallelGzip;
pub use image::{
    Image, LayerCommit, MEDIA_CONFIG, MEDIA_LAYER_TAR, MEDIA_MANIFEST, StoredLayer, creation_time,
    host_platform, parse_rfc3339, rfc3339,
};
pub use reference::{DEFAULT_DOMAIN, DEFAULT_TAG, Reference};
pub use snapshot::chain_ids;
pub use store::{PruneReport, REF_NAME, Store, default_root};
