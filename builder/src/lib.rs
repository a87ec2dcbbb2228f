//! lb's builder: a parsed Dockerfile, its context and its arguments become an image. It
//! decides what each instruction does to an image (its config, its history, its layers)
//! with docker's semantics; it asks the layer store for images and layers and the runtime
//! for RUN steps, and knows nothing of how either keeps them. It never parses Dockerfile
//! text itself (that is `lb-parser`'s job) and never prints: progress goes to its caller.
//!
//! Today: `config`, how metadata instructions (ENV, LABEL, EXPOSE, VOLUME, USER, WORKDIR,
//! CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER) change an image
//! config, used by `lb commit --change` and `lb import --change`; the build graph comes
//! with the rest of the builder issue.

pub mod config;

pub use config::{ConfigError, ImageConfig, change_instruction};
