//! `inspect`: a container as docker's `GET /containers/{id}/json` and `docker inspect` show
//! it, with docker's keys, so that tools reading `{{.State.Status}}` or
//! `.NetworkSettings.IPAddress` find them. Values lb has no notion of keep docker's zero
//! (empty strings, `null`, `false`), as docker shows them for a feature not in use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::Container;
use crate::json_log::{LOG_FILE, LogConfig};
use crate::{Result, Status};

/// docker's time for "never" (`StartedAt` of a created container, `FinishedAt` of a
/// running one).
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: InspectState,
    /// The image's id (its config's digest).
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub log_path: String,
    /// `/NAME`, as docker keeps names.
    pub name: String,
    pub restart_count: u32,
    pub driver: String,
    pub platform: String,
    pub host_config: HostConfig,
    pub mounts: Vec<MountPoint>,
    pub config: InspectConfig,
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectState {
    pub status: &'static str,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// With a healthcheck: its status, streak and last results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `-v` values as given; `null` for none.
    pub binds: Option<Vec<String>>,
    #[serde(rename = "ContainerIDFile")]
    pub container_id_file: String,
    pub log_config: InspectLogConfig,
    pub network_mode: String,
    pub port_bindings: BTreeMap<String, Vec<HostPort>>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volumes_from: Option<Vec<String>>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub dns: Vec<String>,
    pub dns_options: Vec<String>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    /// `private` unless asked otherwise, as docker's daemon defaults it.
    pub ipc_mode: String,
    pub pid_mode: String,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub shm_size: i64,
    /// Absent without `--sysctl`, as docker leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<BTreeMap<String, String>>,
    /// Bytes; 0 for no limit.
    pub memory: i64,
    /// CPUs × 10⁹; 0 for no limit.
    pub nano_cpus: i64,
    pub devices: Vec<crate::host_config::DeviceMapping>,
    /// Memory plus swap, bytes: 0 for no limit, -1 for unlimited swap (after `Devices`,
    /// in docker's order).
    pub memory_swap: i64,
    /// `null` for no limit.
    pub pids_limit: Option<i64>,
    /// `--init`; absent otherwise, as docker leaves it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectLogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

/// One host side of a published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPort {
    #[serde(rename = "HostIp")]
    pub host_ip: String,
    #[serde(rename = "HostPort")]
    pub host_port: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    /// A volume's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    /// A volume's driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    /// The image's and `--expose`'s; absent without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// The image as it was named.
    pub image: String,
    pub volumes: Option<BTreeMap<String, Empty>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// docker's `{}` values (a set's members).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub bridge: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    /// Every published port with its host sides.
    pub ports: BTreeMap<String, Option<Vec<HostPort>>>,
    pub sandbox_key: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    pub mac_address: String,
    pub networks: BTreeMap<String, EndpointSettings>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// `--network-alias`es and the short id, on a user network; `null` elsewhere.
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    pub mac_address: String,
}

fn or_zero(time: &str) -> String {
    if time.is_empty() {
        ZERO_TIME.to_string()
    } else {
        time.to_string()
    }
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Container<'_> {
    /// The container as docker's inspect shows it.
    pub fn inspect(&self) -> Result<ContainerInspect> {
        let record = &self.record;
        let config = &record.config;
        let run = self.state();
        let status = self.status();
        let process = config.spec.process().clone().unwrap_or_default();
        let args = process.args().clone().unwrap_or_default();
        let image = self.store.image_by_manifest(record.image).ok();
        let image_config = image
            .as_ref()
            .and_then(|i| i.config.config().clone())
            .unwrap_or_default();
        let etc = self.dir.join("etc");
        let (cmd, entrypoint) = match (&config.entrypoint, &config.cmd) {
            (Some(e), Some(c)) => (
                (!c.is_empty()).then(|| c.clone()),
                (!e.is_empty()).then(|| e.clone()),
            ),
            // Records made before lb kept the two apart: the whole command line as Cmd.
            _ => (Some(args.clone()), None),
        };
        let resources = config
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone());
        let memory = resources
            .as_ref()
            .and_then(|r| r.memory().as_ref().and_then(|m| m.limit()))
            .filter(|l| *l > 0)
            .unwrap_or(0);
        // docker's daemon sets twice the memory when `--memory` comes without
        // `--memory-swap` (the runtime applies that default when the spec has no swap).
        let memory_swap = resources
            .as_ref()
            .and_then(|r| r.memory().as_ref().and_then(|m| m.swap()))
            .unwrap_or(memory * 2);
        let nano_cpus = resources
            .as_ref()
            .and_then(|r| r.cpu().clone())
            .and_then(|c| Some((c.quota()?, c.period()?)))
            .filter(|(_, period)| *period > 0)
            .map_or(0, |(quota, period)| quota * 1_000_000_000 / period as i64);
        let pids_limit = resources
            .as_ref()
            .and_then(|r| r.pids().as_ref().map(|p| p.limit()))
            .filter(|l| *l > 0);
        let log = LogConfig::from_record(config.log_config.as_ref())?;
        let log_config = match &config.log_config {
            Some(l) => InspectLogConfig {
                kind: l.driver.clone(),
                config: l.options.clone().into_iter().collect(),
            },
            None => InspectLogConfig {
                kind: "json-file".into(),
                config: BTreeMap::new(),
            },
        };
        let mut port_bindings: BTreeMap<String, Vec<HostPort>> = BTreeMap::new();
        for p in config.port_specs() {
            port_bindings
                .entry(format!("{}/{}", p.container_port, p.proto))
                .or_default()
                .push(HostPort {
                    host_ip: if p.host_ip.is_unspecified() {
                        String::new()
                    } else {
                        p.host_ip.to_string()
                    },
                    host_port: p.host_port.to_string(),
                });
        }
        let host = &config.host;
        // The image's exposed ports and `--expose`'s, as `PORT/PROTO`.
        let exposed: Vec<String> = image_config
            .exposed_ports()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                }
            })
            .chain(host.exposed_ports.iter().cloned())
            .collect();
        let live = status.is_live();
        // Ports as the network shows them: a running container's bindings, every port it
        // exposes with none (`null`) where nothing is bound.
        let mut ports: BTreeMap<String, Option<Vec<HostPort>>> = BTreeMap::new();
        if live {
            for p in &exposed {
                ports.insert(p.clone(), None);
            }
            for p in config.port_specs() {
                ports
                    .entry(format!("{}/{}", p.container_port, p.proto))
                    .or_insert_with(|| Some(Vec::new()))
                    .get_or_insert_with(Vec::new)
                    .push(HostPort {
                        host_ip: p.host_ip.to_string(),
                        host_port: p.host_port.to_string(),
                    });
            }
        }
        let network = crate::network::of_record(self.store, record);
        let address = network
            .as_ref()
            .filter(|_| live)
            .and_then(|_| crate::network::address(&self.dir));
        let (gateway, ip, prefix) = match (&network, address) {
            (Some(n), Some(ip)) => (n.gateway().to_string(), ip.to_string(), n.prefix),
            _ => (String::new(), String::new(), 0),
        };
        let network_id = crate::network::definition(self.store, &config.network)
            .ok()
            .flatten()
            .map(|d| d.id)
            .unwrap_or_default();
        let user_network = !matches!(config.network.as_str(), "bridge" | "host" | "none");
        let networks = match config.network.as_str() {
            m if m.starts_with("container:") => BTreeMap::new(),
            m => BTreeMap::from([(
                m.to_string(),
                EndpointSettings {
                    aliases: user_network.then(|| {
                        let mut a = host.network_aliases.clone();
                        a.push(record.id[..12].to_string());
                        a
                    }),
                    network_id,
                    gateway: gateway.clone(),
                    ip_address: ip.clone(),
                    ip_prefix_len: prefix,
                    mac_address: String::new(),
                },
            )]),
        };
        // `-v SRC:DST` values; an anonymous `-v /path` is a volume, not a bind.
        let binds: Vec<String> = config
            .binds
            .iter()
            .filter(|b| b.contains(':'))
            .cloned()
            .collect();
        Ok(ContainerInspect {
            id: record.id.clone(),
            created: record.created.clone(),
            path: args.first().cloned().unwrap_or_default(),
            args: args.iter().skip(1).cloned().collect(),
            state: InspectState {
                status: status.as_str(),
                running: matches!(status, crate::Status::Running | crate::Status::Paused),
                paused: status == Status::Paused,
                restarting: status == Status::Restarting,
                oom_killed: run.oom_killed,
                dead: status == Status::Dead,
                pid: if live { run.pid } else { 0 },
                exit_code: run.exit_code,
                error: String::new(),
                started_at: or_zero(&run.started_at),
                finished_at: or_zero(&run.finished_at),
                health: config
                    .health
                    .as_ref()
                    .map(|_| crate::health::Health::load(&self.dir).unwrap_or_default()),
            },
            image: image
                .as_ref()
                .map_or_else(|| record.image.to_string(), |i| i.config_digest.to_string()),
            resolv_conf_path: path_text(&etc.join("resolv.conf")),
            hostname_path: path_text(&etc.join("hostname")),
            hosts_path: path_text(&etc.join("hosts")),
            log_path: if log == LogConfig::None {
                String::new()
            } else {
                path_text(&self.dir.join(LOG_FILE))
            },
            name: format!("/{}", record.name),
            restart_count: run.restart_count,
            driver: self.store.storage_driver().as_str().to_string(),
            platform: "linux".into(),
            host_config: HostConfig {
                binds: (!binds.is_empty()).then_some(binds),
                container_id_file: host.container_id_file.clone(),
                log_config,
                network_mode: match config.network.as_str() {
                    "bridge" => "default".to_string(),
                    m => m.to_string(),
                },
                port_bindings,
                restart_policy: RestartPolicy {
                    name: config.restart.name.as_str().into(),
                    maximum_retry_count: config.restart.maximum_retry_count,
                },
                auto_remove: record.auto_remove,
                volumes_from: (!config.volumes_from.is_empty())
                    .then(|| config.volumes_from.clone()),
                cap_add: (!host.cap_add.is_empty()).then(|| host.cap_add.clone()),
                cap_drop: (!host.cap_drop.is_empty()).then(|| host.cap_drop.clone()),
                dns: host.dns.clone(),
                dns_options: host.dns_options.clone(),
                dns_search: host.dns_search.clone(),
                extra_hosts: (!host.extra_hosts.is_empty()).then(|| host.extra_hosts.clone()),
                group_add: (!host.group_add.is_empty()).then(|| host.group_add.clone()),
                ipc_mode: if host.ipc_mode.is_empty() {
                    "private".into()
                } else {
                    host.ipc_mode.clone()
                },
                pid_mode: host.pid_mode.clone(),
                privileged: false,
                readonly_rootfs: config
                    .spec
                    .root()
                    .as_ref()
                    .and_then(|r| r.readonly())
                    .unwrap_or(false),
                uts_mode: host.uts_mode.clone(),
                shm_size: host.shm_bytes(),
                sysctls: (!host.sysctls.is_empty()).then(|| host.sysctls.clone()),
                memory,
                nano_cpus,
                devices: host.devices.clone(),
                memory_swap,
                pids_limit,
                init: config.init.then_some(true),
            },
            mounts: self.mount_points(),
            config: InspectConfig {
                hostname: config.spec.hostname().clone().unwrap_or_default(),
                domainname: String::new(),
                user: config.user.clone().unwrap_or_default(),
                attach_stdin: false,
                attach_stdout: false,
                attach_stderr: false,
                exposed_ports: (!exposed.is_empty())
                    .then(|| exposed.iter().map(|p| (p.clone(), Empty {})).collect()),
                tty: config.tty,
                open_stdin: config.open_stdin,
                stdin_once: false,
                env: config
                    .env
                    .clone()
                    .unwrap_or_else(|| process.env().clone().unwrap_or_default()),
                cmd,
                image: record.image_name.clone(),
                volumes: image_config
                    .volumes()
                    .clone()
                    .map(|v| v.into_iter().map(|k| (k, Empty {})).collect()),
                working_dir: match path_text(process.cwd()) {
                    // The default, not asked for: docker shows none.
                    cwd if cwd == "/" => image_config.working_dir().clone().unwrap_or_default(),
                    cwd => cwd,
                },
                entrypoint,
                on_build: None,
                // The image's labels, then the container's over them.
                labels: image_config
                    .labels()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(host.labels.clone())
                    .collect(),
                stop_signal: (!config.stop_signal.is_empty()).then(|| config.stop_signal.clone()),
                stop_timeout: host.stop_timeout,
                healthcheck: config.health.clone(),
            },
            network_settings: NetworkSettings {
                bridge: String::new(),
                sandbox_id: String::new(),
                ports,
                sandbox_key: if network.is_some() && live {
                    path_text(&crate::network::netns_file(self.store, &record.id))
                } else {
                    String::new()
                },
                gateway,
                ip_address: ip,
                ip_prefix_len: prefix,
                mac_address: String::new(),
                networks,
            },
        })
    }

    /// The host paths bound into the container (`-v`, `--mount type=bind`), as docker's
    /// `Mounts` lists them; lb's own binds (its /etc files) are not the user's.
    pub fn mount_points(&self) -> Vec<MountPoint> {
        let mounts = self.record.config.spec.mounts().clone().unwrap_or_default();
        mounts
            .iter()
            .filter(|m| m.typ().as_deref() == Some("bind"))
            .filter(|m| {
                m.source()
                    .as_ref()
                    .is_some_and(|s| !s.starts_with(&self.dir))
            })
            .map(|m| {
                let options = m.options().clone().unwrap_or_default();
                let rw = !options.iter().any(|o| o == "ro");
                let propagation = options
                    .iter()
                    .find(|o| {
                        matches!(
                            o.as_str(),
                            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                        )
                    })
                    .cloned()
                    .unwrap_or_else(|| "rprivate".into());
                let destination = path_text(m.destination());
                let volume = self
                    .record
                    .config
                    .volumes
                    .iter()
                    .find(|v| v.destination.trim_end_matches('/') == destination);
                match volume {
                    // A volume's data directory, as docker shows a volume.
                    Some(v) => MountPoint {
                        kind: "volume".into(),
                        name: Some(v.name.clone()),
                        source: m.source().as_deref().map(path_text).unwrap_or_default(),
                        destination,
                        driver: Some("local".into()),
                        mode: if v.anonymous {
                            String::new()
                        } else {
                            "z".into()
                        },
                        rw,
                        propagation: String::new(),
                    },
                    None => MountPoint {
                        kind: "bind".into(),
                        name: None,
                        source: m.source().as_deref().map(path_text).unwrap_or_default(),
                        destination,
                        driver: None,
                        mode: if rw { String::new() } else { "ro".into() },
                        rw,
                        propagation,
                    },
                }
            })
            .collect()
    }
}
