//! lb's container networking: a bridge on the host (`lb0`, 10.213.0.0/16 by default: a
//! private range unlikely to clash), a network namespace per container kept in a file
//! (bind-mounted, so the container's runtime joins it by path), a veth pair between the two
//! with an address from an IPAM kept beside the store, a default route, and outbound NAT.
//! Links, addresses and routes go through netlink (rtnetlink); NAT and forwarding through
//! the host's iptables. It knows nothing of images or containers beyond an id: the caller
//! attaches a container before starting it and detaches it after.

mod ipam;
mod link;
mod nat;
mod netns;
pub mod pool;
pub mod ports;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use ipam::Ipam;

/// What can go wrong setting a network up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
}

impl Error {
    pub(crate) fn setup(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
        Error::Setup {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Makes `dir` (the host-wide state: addresses, locks, the namespace pool) 0700 when it is
/// not: no other host user may open a lock file in it and hold it.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(dir).map_err(|e| Error::setup(dir.display().to_string(), e))?;
    if md.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::setup(dir.display().to_string(), e))?;
    }
    Ok(())
}

/// A bridge network: its bridge device and IPv4 subnet (the gateway is its first address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
}

impl Network {
    /// docker's default network, `bridge`, here on `lb0`: 10.213.0.0/16, or the subnet in
    /// `$LB_BRIDGE_SUBNET` (docker's `--bip`; set it before the first container runs).
    pub fn default_bridge() -> Network {
        let (subnet, prefix) = std::env::var("LB_BRIDGE_SUBNET")
            .ok()
            .and_then(|s| parse_cidr(&s))
            .unwrap_or((Ipv4Addr::new(10, 213, 0, 0), 16));
        Network {
            name: "bridge".into(),
            bridge: "lb0".into(),
            subnet,
            prefix,
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

/// `A.B.C.D/N` with N from 8 to 30, as the network address (host bits cleared).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p))?;
    let mask = u32::MAX << (32 - u32::from(prefix));
    Some((Ipv4Addr::from(u32::from(ip) & mask), prefix))
}

/// A container's place on a network.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    /// The file holding the container's network namespace: the runtime joins it by path.
    pub netns: PathBuf,
    /// The host end of the veth pair.
    pub host_link: String,
}

/// The host end's name: `lbv` + the id's last 11 characters (IFNAMSIZ is 15; the end of a
/// container id or of a build step's `build-<pid>-<hash>` is what differs).
pub fn host_link(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(11)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("lbv{tail}")
}

/// Sets up container `id` on `net`: the bridge (made on first use, with NAT), an address
/// from the IPAM in `state_dir` (held under `holder`: one IPAM serves every store on the
/// host, as the bridge does), a network namespace in `netns_file`, the veth pair, `eth0`
/// with the address, `lo` up and a default route through the bridge. Undone when any step
/// fails.
pub fn attach(
    state_dir: &Path,
    net: &Network,
    holder: &str,
    id: &str,
    netns_file: &Path,
) -> Result<Attachment> {
    link::ensure_bridge(net)?;
    // The NAT rules once per boot (the state dir is on /run): iptables costs a process
    // each, most of a bridge container's start otherwise.
    let nat_done = state_dir.join(format!("{}.nat", net.bridge));
    if !nat_done.exists() {
        nat::ensure(net)?;
        std::fs::create_dir_all(state_dir)
            .map_err(|e| Error::setup(state_dir.display().to_string(), e))?;
        let _ = std::fs::write(&nat_done, "");
    }
    let ipam = Ipam::open(state_dir, net)?;
    let ip = ipam.allocate(holder)?;
    let host = host_link(id);
    let done = (|| {
        netns::create(netns_file)?;
        link::connect(net, &host, netns_file, ip)?;
        Ok(Attachment {
            ip,
            netns: netns_file.to_path_buf(),
            host_link: host.clone(),
        })
    })();
    if done.is_err() {
        let _ = link::remove(&host);
        let _ = netns::remove(netns_file);
        let _ = ipam.release(holder);
    }
    done
}

/// Undoes [`attach`]: the veth pair, the namespace file, the address. Parts already gone
/// are fine (a second detach, or one after a crash, finishes the job).
pub fn detach(
    state_dir: &Path,
    net: &Network,
    holder: &str,
    id: &str,
    netns_file: &Path,
) -> Result<()> {
    let link = link::remove(&host_link(id));
    // Port rules are looked for (an iptables process or two) only for a holder that made
    // some.
    let marker = ports_marker(state_dir, holder);
    let rules = if marker.exists() {
        nat::remove_ports(holder).and_then(|()| match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::setup(marker.display().to_string(), e))
            }
            _ => Ok(()),
        })
    } else {
        Ok(())
    };
    let ns = netns::remove(netns_file);
    let ip = Ipam::open(state_dir, net)?.release(holder);
    link.and(rules).and(ns).and(ip)
}

/// The holders of addresses on `net` in `state_dir` (for reconciling after a crash).
pub fn attached(state_dir: &Path, net: &Network) -> Result<Vec<String>> {
    Ipam::open(state_dir, net)?.holders()
}

/// DNAT rules for `ports` of the container at `ip` (tagged with `holder`; a relay still
/// serves loopback and the bridge itself).
pub fn publish(
    state_dir: &Path,
    net: &Network,
    holder: &str,
    ip: Ipv4Addr,
    ports: &[ports::PortSpec],
) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    // Detaching looks for this holder's port rules only when it made some.
    let marker = ports_marker(state_dir, holder);
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::setup(dir.display().to_string(), e))?;
    }
    std::fs::write(&marker, holder).map_err(|e| Error::setup(marker.display().to_string(), e))?;
    for p in ports {
        nat::add_port(net, p, ip, holder)?;
    }
    Ok(())
}

/// The file that says `holder` published ports: `ports/<container id>` (holders end in the
/// container's id, unique across stores).
fn ports_marker(state_dir: &Path, holder: &str) -> PathBuf {
    let id = holder.rsplit([':', '/']).next().unwrap_or(holder);
    state_dir.join("ports").join(id)
}

/// Whether an address of this host is in `subnet/prefix`.
pub fn subnet_in_use(subnet: Ipv4Addr, prefix: u8) -> Result<bool> {
    link::subnet_in_use(subnet, prefix)
}

/// Removes `net`'s bridge (when no container uses it any more).
pub fn remove_bridge(net: &Network) -> Result<()> {
    link::remove(&net.bridge)
}

/// Drops `net`'s IPAM state (the network is gone).
pub fn forget(state_dir: &Path, net: &Network) {
    for ext in ["json", "lock", "nat", "next"] {
        let _ = std::fs::remove_file(state_dir.join(format!("{}.{ext}", net.bridge)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_to_their_network_address() {
        assert_eq!(
            parse_cidr("10.1.2.3/16"),
            Some((Ipv4Addr::new(10, 1, 0, 0), 16))
        );
        assert_eq!(
            parse_cidr("172.30.5.0/24"),
            Some((Ipv4Addr::new(172, 30, 5, 0), 24))
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/31",
            "10.0.0.0/4",
            "x/16",
            "10.0.0.0/x",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }
}
