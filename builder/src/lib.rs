//! lb's builder: a parsed Dockerfile, its context and its arguments become an image. It
//! decides what each instruction does to an image (its config, its history, its layers)
//! with docker's semantics; it asks the layer store for images and layers and the runtime
//! for RUN steps, and knows nothing of how either keeps them. It never parses Dockerfile
//! text itself (that is `lb-parser`'s job) and never prints: progress goes to its caller.
//!
//! - `config`: how metadata instructions (ENV, LABEL, EXPOSE, VOLUME, USER, WORKDIR, CMD,
//!   ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER) change an image
//!   config; also `lb commit --change` and `lb import --change`.
//! - `plan`: the stages as a DAG, and the ones the target needs.
//! - `build`: runs a plan, step by step as their inputs are ready: cache keys, RUN in the runtime, COPY/ADD (`copy`) into a fresh
//!   upper dir, layers and images in the store, progress as events.
//! - `cache_key`: the steps' cache keys, typed, and their digests made in one place.
//! - `digests`: the content digests of files builds read, remembered by their stat.

mod build;
mod cache_key;
pub mod config;
mod context;
mod copy;
mod digests;
mod error;
mod explain;
mod fetch;
mod ignore;
mod mounts;
pub mod plan;

pub use build::{
    BuildOptions, Built, CacheSource, Event, ImageSource, Progress, RunNetwork, SeamError, Seams,
    build, reap_killed_builds, write_flattened, write_merged,
};
pub use config::{Applied, Args, ConfigError, ImageConfig, change_instruction};
pub use context::{BuildContext, ContextError};
pub use copy::CopyError;
pub use digests::DigestError;
pub use error::{BuildError, ErrorKind, ImageError};
pub use fetch::{DownloadError, UrlSource};
pub use ignore::{IgnoreError, PatternError};
pub use mounts::{MountError, SecretSource};
pub use plan::{Base, Plan, Stage, plan};
