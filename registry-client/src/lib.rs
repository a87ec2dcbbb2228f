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
pub use client::{
    Body, DEFAULT_NETWORK_TIMEOUT, Http, NETWORK_TIMEOUT_VAR, Options, Registry, api_host,
    is_loopback, network_timeout_from_env, parse_network_timeout,
};
pub use pull::{
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, PullOptions, PullProgress, fetch_blob, fetch_document,
    fetch_layers, get_manifest, manifest_reference, pull,
};
pub use push::{
    Blob, PushOptions, PushProgress, PushReport, PushedLayer, layer_media_type, layers_to_push,
    push, push_blobs, put_manifest, remember_blob,
};

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
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refused: {0}")]
    Verify(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{last} (gave up after {tries} tries)")]
    GaveUp { tries: usize, last: Box<Error> },
    /// A request that moved nothing for the network timeout (`$LB_NETWORK_TIMEOUT`).
    #[error("{method} {url}: {stall}")]
    Stalled {
        method: String,
        url: String,
        stall: Stall,
    },
    /// A setting from the environment that lb cannot use.
    #[error("{name}={value:?}: {reason}")]
    Setting {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A field of a registry's JSON document (`manifest`, `index`) that is missing or
    /// malformed: `found` is the field's JSON text, None when it is missing.
    #[error("{document} {field}: {}", describe_found(found.as_deref(), expected))]
    Field {
        document: &'static str,
        field: String,
        found: Option<String>,
        expected: &'static str,
    },
    #[error(transparent)]
    Store(#[from] lb_layerstore::Error),
}

/// Where a request stalled, and how long it waited there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The connection was not made (TCP, TLS) in time.
    Connect { waited: std::time::Duration },
    /// Connected, the request sent, and no response headers came.
    Response { waited: std::time::Duration },
    /// A request with a body (an upload) got no answer within its deadline: the network
    /// timeout plus the time the body takes at 16 KiB/s (a stalled upload itself is cut by
    /// the kernel after the network timeout, `TCP_USER_TIMEOUT`).
    Upload {
        waited: std::time::Duration,
        bytes: u64,
    },
    /// The response's body stopped: no byte came for `waited` after `after` bytes.
    Body {
        waited: std::time::Duration,
        after: u64,
    },
    /// The body came, but slower than 16 KiB/s after the timeout's grace: `after` bytes in
    /// `waited` (a server dripping a byte at a time would otherwise hold lb forever).
    Trickle {
        waited: std::time::Duration,
        after: u64,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use client::Seconds;
        match self {
            Stall::Connect { waited } => {
                write!(f, "no connection within {}", Seconds(*waited))
            }
            Stall::Response { waited } => write!(
                f,
                "no response within {} (stalled after the connection was accepted)",
                Seconds(*waited)
            ),
            Stall::Upload { waited, bytes } => write!(
                f,
                "no response within {} to an upload of {bytes} bytes",
                Seconds(*waited)
            ),
            Stall::Body { waited, after } => write!(
                f,
                "no data for {} in the body after {after} bytes",
                Seconds(*waited)
            ),
            Stall::Trickle { waited, after } => write!(
                f,
                "only {after} bytes of the body in {} (slower than 16 KiB/s)",
                Seconds(*waited)
            ),
        }
    }
}

fn describe_found(found: Option<&str>, expected: &str) -> String {
    match found {
        Some(v) => format!("{v} is not {expected}"),
        None => format!("missing (want {expected})"),
    }
}
