//! docker's `run`/`create` flags that shape a container's surroundings rather than its
//! command: `--add-host`, `--dns*`, `--label*`, `--device`, `--group-add`, `--shm-size`,
//! `--stop-signal`, `--stop-timeout`, `--sysctl`, `--pid`/`--ipc`/`--uts`, `--expose`,
//! `--network-alias`, `--cidfile`. Here: the flags as given (`HostFlags`), what a record
//! keeps of them (`HostConfigRecord`, docker's `Config`/`HostConfig` fields, all
//! `serde(default)` so earlier records read back) and docker's checks of their values
//! (`parse.rs`), what they change in the OCI spec (`spec.rs`) and in the `/etc` files lb
//! writes for the container (`etc_files.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod etc_files;
mod parse;
pub mod spec;

pub use parse::{check, parse, parse_expose, parse_label_file};

/// The flags as the command line gave them (plain strings: every rule is here, testable
/// without clap).
#[derive(Debug, Default, Clone)]
pub struct HostFlags {
    pub add_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub labels: Vec<String>,
    pub label_files: Vec<PathBuf>,
    pub devices: Vec<String>,
    pub group_add: Vec<String>,
    pub shm_size: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<String>,
    pub sysctls: Vec<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub expose: Vec<String>,
    pub network_aliases: Vec<String>,
    pub cidfile: Option<PathBuf>,
    /// `--memory-swap`: memory plus swap, `-1` for unlimited swap.
    pub memory_swap: Option<String>,
}

/// `--device HOST[:CONTAINER[:PERMS]]` after docker's checks (docker's `DeviceMapping`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// docker's default `/dev/shm` size, 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// What a container record keeps of these flags, as `inspect` shows them.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostConfigRecord {
    /// `--label`/`--label-file` (the image's labels are added when shown).
    pub labels: BTreeMap<String, String>,
    /// `--stop-timeout` seconds; none for docker's 10.
    pub stop_timeout: Option<i64>,
    /// `--expose` ports as `PORT/PROTO` (the image's are added when shown).
    pub exposed_ports: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--group-add` names or ids, resolved in the container's `/etc/group` at start.
    pub group_add: Vec<String>,
    /// Bytes; none for the default.
    pub shm_size: Option<i64>,
    pub sysctls: BTreeMap<String, String>,
    /// `""`, `host` or `container:NAME`.
    pub pid_mode: String,
    /// `""` (docker's `private`), `host`, `private`, `shareable`, `none`, `container:NAME`.
    pub ipc_mode: String,
    /// `""` or `host`.
    pub uts_mode: String,
    /// Made as nodes (with their cgroup device rules) at each start.
    pub devices: Vec<DeviceMapping>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub network_aliases: Vec<String>,
    /// `--cidfile`, as docker's `HostConfig.ContainerIDFile`.
    pub container_id_file: String,
    /// `--memory-swap` bytes (`-1` unlimited), put in the spec beside `--memory`.
    pub memory_swap: Option<i64>,
}

impl HostConfigRecord {
    /// The `/dev/shm` size the container gets.
    pub fn shm_bytes(&self) -> i64 {
        self.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE)
    }
}

/// A namespace mode naming another container (`container:NAME`): that name.
pub fn joined_container(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:")
}
