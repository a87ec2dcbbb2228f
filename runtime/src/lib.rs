//! lb's native runtime: it starts a process in new namespaces on a root file system (an
//! overlay of read-only lower directories, or one directory bound as it is), confined as
//! docker confines it (capabilities, seccomp, masked paths, cgroups), and follows it to its
//! end. It takes an OCI runtime spec (`oci_spec::runtime::Spec`) and a [`Rootfs`]; it knows
//! nothing of images, layers, stores, storage drivers, names or Dockerfiles — the caller
//! turns an image into a spec and a rootfs. Of the store it reads one type, a snapshot's
//! `lb_layerstore::Mounts` (plain data: lowers and an upper dir, or one directory), which
//! [`Rootfs::of_mounts`] turns into a rootfs for every caller (builder and containers).

pub mod cgroups;
pub mod defaults;
mod error;
mod init;
mod launch;
pub mod mountinfo;
mod parent_death;
pub mod rootfs;
pub mod seccomp;
pub mod state;
pub mod tty;
pub mod user;

pub use error::{Error, Result};
pub use init::DEFAULT_PATH;
pub use launch::{
    Container, Exec, Launch, Stdio, exec, exit_code, forward_signals_to, hold_signals,
    release_signals, start,
};
pub use rootfs::{Rootfs, RootfsLayers};
