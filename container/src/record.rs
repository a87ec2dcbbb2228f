//! What a container record keeps of how the container runs (`ContainerConfig`, the `config`
//! of the store's `containers/<id>/container.json`), typed and versioned. Records written
//! by earlier lb (no `version`; published ports as the `ps` strings
//! `"0.0.0.0:8080->80/tcp"`; no log configuration) read back as they are: every field has
//! the default such a record meant.

use std::net::IpAddr;
use std::path::PathBuf;

use lb_network::ports::{PortSpec, Proto};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::json_log::LogConfigRecord;

/// The record format written now.
pub const CONFIG_VERSION: u32 = 1;

/// A container's record as the store keeps it.
pub type Record = lb_layerstore::ContainerRecord<ContainerConfig>;

/// How a container runs, as `lb run`/`create` decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// 0 for records made before the format had a version.
    #[serde(default)]
    pub version: u32,
    /// The OCI runtime spec the container starts with.
    pub spec: oci_spec::runtime::Spec,
    /// The user its process runs as (`-u`, else the image's), resolved in its root.
    #[serde(default)]
    pub user: Option<String>,
    /// Whether the default seccomp profile applies (`--security-opt seccomp=unconfined`
    /// turns it off).
    #[serde(default = "default_true")]
    pub seccomp: bool,
    /// The image's STOPSIGNAL, empty for SIGTERM.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stop_signal: String,
    #[serde(default)]
    pub tty: bool,
    /// `-i`: its standard input stays open, for `attach` (docker's `OpenStdin`).
    #[serde(default)]
    pub open_stdin: bool,
    /// `--init`: lb's init runs as PID 1 and reaps.
    #[serde(default)]
    pub init: bool,
    /// The image's snapshots, top first: the container's overlay lowers.
    #[serde(default)]
    pub lowers: Vec<PathBuf>,
    /// The network it was run on (`none`, `host`, `bridge` or a user network's name).
    #[serde(default = "default_network")]
    pub network: String,
    /// `-p` bindings.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// docker's `HostConfig.LogConfig`; none in records made before lb had log options.
    #[serde(default)]
    pub log_config: Option<LogConfigRecord>,
    /// The entrypoint and command the command line was made of (docker's
    /// `Config.Entrypoint` and `Config.Cmd`); none in records made before lb kept them.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// The environment as configured (docker's `Config.Env`); none in records made
    /// before lb kept it.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// `-v` values as given (docker's `HostConfig.Binds`).
    #[serde(default)]
    pub binds: Vec<String>,
    /// The volumes it mounts.
    #[serde(default)]
    pub volumes: Vec<crate::volume::VolumeUse>,
    /// `--volumes-from` values as given (docker's `HostConfig.VolumesFrom`).
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// `--restart`, which its monitor carries out.
    #[serde(default)]
    pub restart: crate::restart::RestartPolicy,
    /// The healthcheck its monitor runs (the image's, or `--health-*`'s).
    #[serde(default)]
    pub health: Option<crate::health::HealthConfig>,
    /// `--label`, `--add-host`, `--dns*`, `--device`, `--sysctl`, namespace modes and the
    /// other host-side flags, as `inspect` shows them; empty in earlier records.
    #[serde(default)]
    pub host: crate::host_config::HostConfigRecord,
}

fn default_true() -> bool {
    true
}

fn default_network() -> String {
    "none".to_string()
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A published port: `HOST_IP:HOST_PORT` on the host to `CONTAINER_PORT/PROTO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBinding(pub PortSpec);

/// Stored as an object; records of earlier lb hold the `ps` form, a string.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredPort {
    Binding {
        host_ip: IpAddr,
        host_port: u16,
        container_port: u16,
        proto: StoredProto,
    },
    Shown(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredProto {
    Tcp,
    Udp,
}

impl Serialize for PortBinding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        StoredPort::Binding {
            host_ip: p.host_ip,
            host_port: p.host_port,
            container_port: p.container_port,
            proto: match p.proto {
                Proto::Tcp => StoredProto::Tcp,
                Proto::Udp => StoredProto::Udp,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PortBinding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortBinding, D::Error> {
        match StoredPort::deserialize(d)? {
            StoredPort::Binding {
                host_ip,
                host_port,
                container_port,
                proto,
            } => Ok(PortBinding(PortSpec {
                host_ip,
                host_port,
                container_port,
                proto: match proto {
                    StoredProto::Tcp => Proto::Tcp,
                    StoredProto::Udp => Proto::Udp,
                },
            })),
            StoredPort::Shown(text) => parse_shown(&text)
                .map(PortBinding)
                .ok_or_else(|| serde::de::Error::custom(format!("bad port binding {text:?}"))),
        }
    }
}

/// `"IP:HOST->CTR/PROTO"`, as `ps` shows a binding and earlier records kept it.
fn parse_shown(text: &str) -> Option<PortSpec> {
    let (host, ctr) = text.split_once("->")?;
    let (ip, hp) = host.rsplit_once(':')?;
    lb_network::ports::parse_publish(&format!("{ip}:{hp}:{ctr}")).ok()
}

impl ContainerConfig {
    /// The command line the container runs, as `ps` shows it.
    pub fn command(&self) -> String {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default()
            .join(" ")
    }

    /// The published ports.
    pub fn port_specs(&self) -> Vec<PortSpec> {
        self.ports.iter().map(|p| p.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record's config as lb wrote it before the format was typed (session 7's lb).
    const EARLIER: &str = r#"{
        "spec": {"ociVersion": "1.0.2", "process": {"args": ["nc", "-l", "-p", "80"], "cwd": "/", "user": {"uid": 0, "gid": 0}}},
        "user": null, "seccomp": true, "stop_signal": null, "tty": false, "init": false,
        "lowers": ["/s/snapshots/aa"], "network": "bridge",
        "ports": ["0.0.0.0:8080->80/tcp", "127.0.0.1:53->53/udp"],
        "log_config": {"Type": "json-file", "Config": {"max-size": "1k"}}
    }"#;

    #[test]
    fn an_earlier_record_reads_back() {
        let c: ContainerConfig = serde_json::from_str(EARLIER).unwrap();
        assert_eq!(c.version, 0);
        assert_eq!(c.command(), "nc -l -p 80");
        assert_eq!(c.network, "bridge");
        assert_eq!(c.stop_signal, "");
        assert_eq!(
            c.port_specs()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["0.0.0.0:8080->80/tcp", "127.0.0.1:53->53/udp"]
        );
        assert_eq!(
            c.log_config.as_ref().unwrap().options["max-size"],
            "1k".to_string()
        );
        // Written again, it reads back the same, ports as objects now.
        let again = serde_json::to_string(&c).unwrap();
        assert!(again.contains(r#""host_port":8080"#), "{again}");
        assert_eq!(serde_json::from_str::<ContainerConfig>(&again).unwrap(), c);
    }

    #[test]
    fn the_oldest_records_miss_fields_and_get_their_defaults() {
        let c: ContainerConfig =
            serde_json::from_str(r#"{"spec": {"ociVersion": "1.0.2"}}"#).unwrap();
        assert!(c.seccomp);
        assert_eq!(c.network, "none");
        assert!(c.ports.is_empty() && c.log_config.is_none() && c.lowers.is_empty());
        assert_eq!(c.host, crate::host_config::HostConfigRecord::default());
        assert_eq!(c.command(), "");
    }

    #[test]
    fn a_bad_port_is_an_error_not_a_silent_drop() {
        let bad = EARLIER.replace("0.0.0.0:8080->80/tcp", "nonsense");
        assert!(serde_json::from_str::<ContainerConfig>(&bad).is_err());
    }
}
