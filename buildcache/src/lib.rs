//! lb's build cache outside the store, for builds on machines that start empty (CI): the
//! cache records of a build's steps (cache key → image) and the layers and configs of
//! those images, exported to a registry reference or an OCI layout directory and looked
//! up from them by later builds (`--cache-to`, `--cache-from`).
//!
//! The container is BuildKit's, so every registry and tool takes it: an OCI image
//! manifest (or, asked for, an OCI index) whose config is a `cacheconfig.v0` document
//! listing layers (`blob`, `parent`) and records (`digest`, `layers`, `inputs`). A
//! record's digest is lb's cache key hashed into a namespace of lb's own (`format.rs`),
//! so BuildKit reading lb's cache, or lb reading BuildKit's, misses and never hits
//! falsely; each record also names the image config its step made (`lb.image`), a blob
//! of the manifest like the layers.
//!
//! - `spec`: the `--cache-to`/`--cache-from` values (buildx's syntax).
//! - `format`: the cache config document, made from records and read back.
//! - `export`: to a registry (blobs the registry has are not sent) or a directory.
//! - `inline`: the final image's steps in its own config (`type=inline`).
//! - `import`: the records read once; a step's image fetched (every blob checked
//!   against its digest, every layer against its diffID) only when a build looks its
//!   key up and the store lacks it.
//!
//! It knows the store, the registry client and these formats; nothing of Dockerfiles,
//! the builder's keys' meaning, or how a build runs.

mod error;
mod export;
mod format;
mod import;
mod inline;
mod layout;
mod spec;

pub use error::Error;
pub use export::{BuildRecords, ExportReport, ExportVia, Seen, export};
pub use format::{MEDIA_CACHE_CONFIG, record_digest};
pub use import::Importer;
pub use inline::{INLINE_KEY, with_inline_cache};
pub use spec::{CacheExport, CacheImport, CacheMode, ExportTarget, ImportSource};
