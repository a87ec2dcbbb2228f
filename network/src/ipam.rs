//! Addresses handed out on a network: `<state>/<network>.json` maps container ids to
//! addresses, changed under an exclusive flock and replaced atomically, so two `lb run`s
//! never get the same address and an address is free again once released.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{Error, Network, Result};

pub struct Ipam {
    file: PathBuf,
    lock: PathBuf,
    /// The offset of the address handed out last.
    cursor: PathBuf,
    net: Network,
}

struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Ipam {
    pub fn open(dir: &Path, net: &Network) -> Result<Ipam> {
        std::fs::create_dir_all(dir).map_err(|e| Error::setup(dir.display().to_string(), e))?;
        // root's alone: another host user holding a lock file here would stall every lb.
        crate::private_dir(dir)?;
        Ok(Ipam {
            // Named after the bridge: unique on the host, as network names across stores
            // need not be.
            file: dir.join(format!("{}.json", net.bridge)),
            lock: dir.join(format!("{}.lock", net.bridge)),
            cursor: dir.join(format!("{}.next", net.bridge)),
            net: net.clone(),
        })
    }

    fn locked(&self) -> Result<Locked> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| Error::setup(self.lock.display().to_string(), e))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::setup(
                self.lock.display().to_string(),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Locked(f))
    }

    fn read(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        match std::fs::read(&self.file) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::setup(self.file.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::setup(self.file.display().to_string(), e)),
        }
    }

    fn write(&self, map: &BTreeMap<String, Ipv4Addr>) -> Result<()> {
        let err = |e: std::io::Error| Error::setup(self.file.display().to_string(), e);
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        serde_json::to_writer(&mut tmp, map).map_err(|e| err(e.into()))?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&self.file).map_err(|e| err(e.error))?;
        Ok(())
    }

    /// A free address for `id` (its own when it has one already): the first free one after
    /// the last handed out, wrapping around, as docker's IPAM does. An address just freed is
    /// not handed out again at once: the host's neighbour cache still maps it to the last
    /// holder's MAC for up to a minute, and a new holder would be unreachable meanwhile
    /// (build steps take and free addresses many times a minute).
    pub fn allocate(&self, id: &str) -> Result<Ipv4Addr> {
        let _l = self.locked()?;
        let mut map = self.read()?;
        if let Some(ip) = map.get(id) {
            return Ok(*ip);
        }
        let base = u32::from(self.net.subnet);
        let size = 1u32 << (32 - u32::from(self.net.prefix));
        let used: std::collections::HashSet<Ipv4Addr> = map.values().copied().collect();
        // .0 is the network, .1 the gateway, the last the broadcast address: offsets 2 to
        // size - 2 are handed out.
        let count = size - 3;
        let last = std::fs::read_to_string(&self.cursor)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|o| (2..size - 1).contains(o))
            .unwrap_or(size - 2);
        let offset = (1..=count)
            .map(|k| 2 + (last - 2 + k) % count)
            .find(|o| !used.contains(&Ipv4Addr::from(base + o)))
            .ok_or_else(|| Error::setup(format!("network {}", self.net.name), "no address left"))?;
        let ip = Ipv4Addr::from(base + offset);
        map.insert(id.to_string(), ip);
        self.write(&map)?;
        let _ = std::fs::write(&self.cursor, offset.to_string());
        Ok(ip)
    }

    /// Frees `id`'s address (nothing when it has none).
    pub fn release(&self, id: &str) -> Result<()> {
        let _l = self.locked()?;
        let mut map = self.read()?;
        if map.remove(id).is_some() {
            self.write(&map)?;
        }
        Ok(())
    }

    /// The ids holding addresses.
    pub fn holders(&self) -> Result<Vec<String>> {
        let _l = self.locked()?;
        Ok(self.read()?.into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_while_held_and_handed_out_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let net = Network {
            prefix: 29, // 8 addresses: .2 to .6 usable
            ..Network::default_bridge()
        };
        let ipam = Ipam::open(dir.path(), &net).unwrap();
        let a = ipam.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(
            ipam.allocate("a").unwrap(),
            a,
            "the same id keeps its address"
        );
        let got: Vec<_> = ["b", "c", "d", "e"]
            .iter()
            .map(|id| ipam.allocate(id).unwrap())
            .collect();
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 213, 0, 6)));
        assert!(ipam.allocate("f").is_err(), "the subnet is full");
        ipam.release("c").unwrap();
        assert_eq!(ipam.allocate("f").unwrap(), Ipv4Addr::new(10, 213, 0, 4));
        assert_eq!(ipam.holders().unwrap(), ["a", "b", "d", "e", "f"]);
        // Freed addresses come back in turn, not the one just freed at once.
        ipam.release("a").unwrap();
        ipam.release("b").unwrap();
        assert_eq!(ipam.allocate("g").unwrap(), Ipv4Addr::new(10, 213, 0, 2));
        ipam.release("g").unwrap();
        assert_eq!(ipam.allocate("h").unwrap(), Ipv4Addr::new(10, 213, 0, 3));
    }
}
