//! Containers on lb's networks: docker's default `bridge` (lb0) or a user network (a bridge
//! of its own, a /24 of 10.214.0.0/16 not in use on the host, the names of its containers
//! resolvable by each other through their `/etc/hosts`). User networks' definitions live
//! in the store (`<root>/networks/<name>.json`); addresses, links and namespaces are
//! `lb-network`'s, host-wide. A container is attached before it starts and detached when
//! it exits or is removed; `reconcile` frees what a killed lb left.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use lb_layerstore::Store;
use lb_network::Network;
use lb_runtime::state::State;
use serde::{Deserialize, Serialize};

use crate::{ContainerConfig, Error, Record, Result};

/// The networks every host has, which cannot be made or removed.
pub const BUILTIN: [&str; 3] = ["bridge", "host", "none"];

/// A user network as the store keeps it (docker's inspect names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkDefinition {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    #[serde(default = "bridge_driver")]
    pub driver: String,
    /// Its Linux bridge, `lb-<first 12 of id>`.
    pub bridge: String,
    /// `A.B.C.D/N`.
    pub subnet: String,
    pub gateway: String,
    #[serde(default)]
    pub created: String,
    /// `network create --label`s.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn bridge_driver() -> String {
    "bridge".to_string()
}

impl NetworkDefinition {
    /// The network it defines, for `lb-network`.
    pub fn network(&self) -> Result<Network> {
        let (subnet, prefix) = parse_cidr(&self.subnet)?;
        Ok(Network {
            name: self.name.clone(),
            bridge: self.bridge.clone(),
            subnet,
            prefix,
        })
    }
}

fn definitions_dir(store: &Store) -> PathBuf {
    store.layout().networks()
}

/// A user network's definition as stored.
pub fn definition(store: &Store, name: &str) -> Result<Option<NetworkDefinition>> {
    crate::read_json(&definitions_dir(store).join(format!("{name}.json")))
}

/// Every user network, by name.
pub fn definitions(store: &Store) -> Result<Vec<NetworkDefinition>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(definitions_dir(store)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".json") {
                // Only whole definitions: a file that is not one is not a network.
                if let Some(d) = definition(store, n).ok().flatten() {
                    if d.id.len() >= 12 {
                        out.push(d);
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    lb_network::parse_cidr(s).ok_or_else(|| {
        Error::InvalidOption(format!(
            "invalid subnet {s:?}: want A.B.C.D/N with N from 8 to 30"
        ))
    })
}

/// Makes user network `name` (`lb network create`): a free /24 of 10.214.0.0/16 unless
/// `subnet` names one. Its bridge is made when a container first joins it.
pub fn create(
    store: &Store,
    name: &str,
    driver: &str,
    subnet: Option<&str>,
    labels: std::collections::BTreeMap<String, String>,
) -> Result<NetworkDefinition> {
    if driver != "bridge" {
        return Err(Error::InvalidOption(format!(
            "--driver {driver}: only bridge networks"
        )));
    }
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid || BUILTIN.contains(&name) {
        return Err(Error::InvalidOption(format!(
            "network name {name:?} is not valid or is reserved"
        )));
    }
    if definition(store, name)?.is_some() {
        return Err(Error::Conflict(format!(
            "network with name {name} already exists"
        )));
    }
    let taken: Vec<(Ipv4Addr, u8)> = definitions(store)?
        .iter()
        .filter_map(|d| parse_cidr(&d.subnet).ok())
        .collect();
    let (subnet, prefix) = match subnet {
        Some(s) => parse_cidr(s)?,
        None => (0..=255u8)
            .map(|x| (Ipv4Addr::new(10, 214, x, 0), 24))
            .find(|(s, p)| {
                !taken.contains(&(*s, *p)) && !lb_network::subnet_in_use(*s, *p).unwrap_or(true)
            })
            .ok_or_else(|| {
                Error::InvalidOption("no free /24 left in 10.214.0.0/16: give --subnet".into())
            })?,
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let id = {
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .map_err(io(Path::new("/dev/urandom")))?;
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let d = NetworkDefinition {
        name: name.to_string(),
        bridge: format!("lb-{}", &id[..12]),
        id,
        driver: "bridge".into(),
        subnet: format!("{subnet}/{prefix}"),
        gateway: Ipv4Addr::from(u32::from(subnet) + 1).to_string(),
        created: lb_layerstore::rfc3339(lb_layerstore::creation_time()),
        labels,
    };
    let dir = definitions_dir(store);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io(&dir))?;
    serde_json::to_writer_pretty(&mut tmp, &d).map_err(|e| io(&dir)(e.into()))?;
    let target = dir.join(format!("{name}.json"));
    tmp.persist(&target).map_err(|e| io(&target)(e.error))?;
    store.record_event(&lb_layerstore::Event::now(
        "network",
        "create",
        &d.id,
        &[("name", name), ("type", "bridge")],
    ));
    Ok(d)
}

/// The containers of this store run on network `name`.
pub fn users(store: &Store, name: &str) -> Vec<Record> {
    store
        .containers::<ContainerConfig>()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.config.network == name)
        .collect()
}

/// Removes user network `name` (`lb network rm`): refused while containers use it.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    if BUILTIN.contains(&name) {
        return Err(Error::Conflict(format!(
            "{name} is a pre-defined network and cannot be removed"
        )));
    }
    let Some(d) = definition(store, name)? else {
        return Err(Error::NoSuchNetwork(name.to_string()));
    };
    let using = users(store, name);
    if !using.is_empty() {
        let names: Vec<&str> = using.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::Conflict(format!(
            "error while removing network: network {name} has active endpoints ({})",
            names.join(", ")
        )));
    }
    let net = d.network()?;
    lb_network::remove_bridge(&net)?;
    lb_network::forget(&state_dir(), &net);
    let file = definitions_dir(store).join(format!("{name}.json"));
    std::fs::remove_file(&file).map_err(|source| Error::Io { path: file, source })?;
    store.record_event(&lb_layerstore::Event::now(
        "network",
        "destroy",
        &d.id,
        &[("name", name), ("type", "bridge")],
    ));
    Ok(())
}

/// The network a `--network` value names: the default bridge, a user network, or None
/// (none, host, container:NAME: no network of lb's).
pub fn lookup(store: &Store, mode: &str) -> Result<Option<Network>> {
    match mode {
        "bridge" | "default" => Ok(Some(Network::default_bridge())),
        "none" | "host" => Ok(None),
        m if m.starts_with("container:") => Ok(None),
        name => match definition(store, name)? {
            Some(d) => Ok(Some(d.network()?)),
            None => Err(Error::NoSuchNetwork(name.to_string())),
        },
    }
}

/// Takes `record`'s container off its network, if it is on one of lb's.
pub fn leave(store: &Store, record: &Record) -> Result<()> {
    match of_record(store, record) {
        Some(net) => detach(store, &net, &record.id),
        None => Ok(()),
    }
}

/// The network a container record was run on.
pub fn of_record(store: &Store, record: &Record) -> Option<Network> {
    lookup(store, &record.config.network).ok().flatten()
}
/// The host-wide network state (`$LB_NETWORK_DIR`, else `/run/lb/networks`): the IPAM,
/// the build pool.
pub fn state_dir() -> PathBuf {
    std::env::var_os("LB_NETWORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/lb/networks"))
}

/// The IPAM's directory (host-wide: `$LB_NETWORK_DIR`, else `/run/lb/networks`, gone at
/// reboot as the links are), container `id`'s namespace file (`<root>/netns/<id>`, outside
/// its directory so removing it never trips over a mount), and the IPAM holder
/// (`<store root>:<id>`).
fn paths(store: &Store, id: &str) -> (PathBuf, PathBuf, String) {
    (
        state_dir(),
        store.layout().netns_file(id),
        format!("{}:{id}", store.root().display()),
    )
}

/// Address, namespace and links for `id` on `net` (a container or a build step).
pub fn attach_links(store: &Store, net: &Network, id: &str) -> Result<lb_network::Attachment> {
    let (state, netns, holder) = paths(store, id);
    let dir = netns.parent().expect("netns dir");
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    lb_network::attach(&state, net, &holder, id, &netns).map_err(|source| Error::Attach {
        network: net.name.clone(),
        source,
    })
}

/// DNAT rules for container `id`'s published ports at `ip` (the relays serve loopback).
pub fn publish(
    store: &Store,
    net: &Network,
    id: &str,
    ip: Ipv4Addr,
    ports: &[lb_network::ports::PortSpec],
) -> Result<()> {
    let (state, _, holder) = paths(store, id);
    lb_network::publish(&state, net, &holder, ip, ports).map_err(Error::Publish)
}

/// The namespace file a container on a network runs in.
pub fn netns_file(store: &Store, id: &str) -> PathBuf {
    paths(store, id).1
}

/// Puts container `id` (its directory `dir`) on `net`: address, links, its own name in its
/// hosts file; on a user network also the names of the others there, and its name in
/// theirs. Its address.
pub fn attach(store: &Store, net: &Network, id: &str, dir: &Path) -> Result<Ipv4Addr> {
    let a = attach_links(store, net, id)?;
    let me = host_names(store, id, dir);
    let mut lines = vec![format!("{}\t{me}", a.ip)];
    if net.name != "bridge" {
        for (other, other_dir, ip) in peers(store, net, id) {
            lines.push(format!("{ip}\t{}", host_names(store, &other, &other_dir)));
            set_hosts_line(&other_dir, &me, Some(&format!("{}\t{me}", a.ip)))?;
        }
    }
    let hosts = dir.join("etc/hosts");
    let text = std::fs::read_to_string(&hosts).map_err(|source| Error::Io {
        path: hosts.clone(),
        source,
    })?;
    let hostname = std::fs::read_to_string(dir.join("etc/hostname")).unwrap_or_default();
    let mut kept: Vec<String> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) != Some(hostname.trim()))
        .map(str::to_string)
        .collect();
    kept.extend(lines);
    // In place: the file is bind-mounted into the container.
    std::fs::write(&hosts, kept.join("\n") + "\n").map_err(|source| Error::Io {
        path: hosts,
        source,
    })?;
    Ok(a.ip)
}

/// Takes container `id` off `net` (what is left of it: safe to repeat), and its name out
/// of the others' hosts files.
/// The others' hosts files are cleaned whether or not the links could be; what could not
/// be undone is the error (a later `reconcile` tries again).
pub fn detach(store: &Store, net: &Network, id: &str) -> Result<()> {
    let (state, netns, holder) = paths(store, id);
    let links =
        lb_network::detach(&state, net, &holder, id, &netns).map_err(|source| Error::Cleanup {
            id: id.to_string(),
            source,
        });
    if net.name != "bridge" {
        let dir = store.container_dir(id);
        let me = host_names(store, id, &dir);
        for (_, other_dir, _) in peers(store, net, id) {
            let _ = set_hosts_line(&other_dir, &me, None);
        }
    }
    links
}

/// "HOSTNAME NAME ALIAS...": how a container is known on its network (its
/// `--network-alias`es too: the others' hosts files are lb's name resolution).
fn host_names(store: &Store, id: &str, dir: &Path) -> String {
    let hostname = std::fs::read_to_string(dir.join("etc/hostname")).unwrap_or_default();
    let (name, aliases) = store
        .container::<ContainerConfig>(id)
        .map(|c| (c.name, c.config.host.network_aliases))
        .unwrap_or_default();
    let mut names = vec![hostname.trim().to_string()];
    for n in std::iter::once(name).chain(aliases) {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names.join(" ")
}

/// Replaces (or with None removes) the line naming `names` in the hosts file of `dir`.
fn set_hosts_line(dir: &Path, names: &str, line: Option<&str>) -> Result<()> {
    let hosts = dir.join("etc/hosts");
    let io = |source| Error::Io {
        path: hosts.clone(),
        source,
    };
    let text = std::fs::read_to_string(&hosts).map_err(io)?;
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_once(char::is_whitespace).map(|(_, n)| n.trim()) != Some(names))
        .collect();
    if let Some(l) = line {
        lines.push(l);
    }
    std::fs::write(&hosts, lines.join("\n") + "\n").map_err(io)
}

/// The running containers of this store on `net`, but `id`: (id, directory, address).
fn peers(store: &Store, net: &Network, id: &str) -> Vec<(String, PathBuf, Ipv4Addr)> {
    let Ok(all) = store.containers::<ContainerConfig>() else {
        return Vec::new();
    };
    all.into_iter()
        .filter(|c| c.id != id && c.config.network == net.name)
        .filter_map(|c| {
            let dir = store.container_dir(&c.id);
            if !State::load(&dir).running() {
                return None;
            }
            let ip = address(&dir)?;
            Some((c.id, dir, ip))
        })
        .collect()
}

/// A container's address, from the line of its hosts file that names its host name.
pub fn address(dir: &Path) -> Option<Ipv4Addr> {
    let hostname = std::fs::read_to_string(dir.join("etc/hostname")).ok()?;
    let hosts = std::fs::read_to_string(dir.join("etc/hosts")).ok()?;
    hosts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(hostname.trim()))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a killed lb left on lb's networks: the addresses, links and namespaces of
/// containers that are gone or have exited (in any store, so a deleted store's too). Run
/// by every `lb run`, `ps`, `rm` and `start`.
pub fn reconcile(store: &Store) {
    let (state, _, mine) = paths(store, "");
    if !state.exists() {
        return;
    }
    let mut nets = vec![Network::default_bridge()];
    for d in definitions(store).unwrap_or_default() {
        if let Ok(n) = d.network() {
            nets.push(n);
        }
    }
    for net in nets {
        let Ok(holders) = lb_network::attached(&state, &net) else {
            continue;
        };
        for holder in holders {
            let Some((root, id)) = holder.rsplit_once(':') else {
                continue;
            };
            if holder.starts_with(lb_network::pool::HOLDER_PREFIX) {
                continue; // the pool's filler keeps its own
            }
            // Gone, or exited (a dead process reads as exited), in whichever store it was
            // (a test's deleted store included); a container still being created
            // (attached, not yet started) is left alone.
            // Its directory: where this store keeps a container, under its store's root.
            let own = store.container_dir(id);
            let rel = own.strip_prefix(store.root()).unwrap_or(&own);
            let dir = Path::new(root).join(rel);
            let ended = match build_pid(id) {
                // A build step's: ended when that build's lb is gone.
                Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                None => {
                    !dir.exists() || State::load(&dir).status == lb_runtime::state::Status::Exited
                }
            };
            if !ended {
                continue;
            }
            if holder.starts_with(&mine) {
                let _ = detach(store, &net, id);
            } else {
                let netns = Path::new(root).join("netns").join(id);
                let _ = lb_network::detach(&state, &net, &holder, id, &netns);
            }
        }
    }
}

/// The lb pid in a build step's id (`build-<pid>-<hash>`).
fn build_pid(id: &str) -> Option<u32> {
    id.strip_prefix("build-")?.split('-').next()?.parse().ok()
}
