//! lb's registry client: images travel between lb's store and registries speaking the OCI
//! distribution API (Docker Hub, the CNCF distribution server, any OCI registry). It
//! knows references, manifests, blobs, the registry's HTTP API and its authentication
//! (Basic, and the Bearer token flow), and reads and writes images only through
//! `lb-layerstore`'s `Store`; it never prints (progress goes to its caller) and knows
//! nothing of Dockerfiles or containers.
//!
//! - `auth`: credentials (`lb login`'s file, docker's `config.json` and credential
//!   helpers) and `WWW-Authenticate` challenges.
//! - `client`: one registry over HTTP (https, plain http for loopback, CAs per registry),
//!   requests authenticated as the registry asks, tokens cached per scope.
//! - `pull`: manifest (index resolved to the platform), config, layers in parallel, each
//!   streamed once into the content store and its snapshot, checked on the way.
//! - `push`: HEAD, cross-repository mount, monolithic or chunked upload, manifest last.

mod auth;
mod client;
mod pull;
mod push;

pub use auth::{AuthFiles, Challenge, Credentials, config_key, parse_challenge};
pub use client::{Options, Registry, api_host, is_loopback};
pub use pull::{PullOptions, PullProgress, get_manifest, pull};
pub use push::{PushOptions, PushProgress, push, remember_blob};

/// What can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: the registry answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("authentication: {0}")]
    Auth(String),
    #[error("{path}: {reason}")]
    Config {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Io {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("refused: {0}")]
    Verify(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{last} (gave up after {tries} tries)")]
    GaveUp { tries: usize, last: Box<Error> },
    #[error(transparent)]
    Store(#[from] lb_layerstore::Error),
}
