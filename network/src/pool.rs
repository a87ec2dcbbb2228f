//! Network namespaces made ready ahead of need, so that a build's RUN step gets one of its
//! own (an address on the bridge, its veth, `eth0`, a default route) without waiting for
//! the ~60 ms the kernel takes to make and move a veth pair. BuildKit keeps such a pool;
//! here it is host-wide, as the bridge and the IPAM are, and outlives the lb that filled it.
//!
//! Every entry is a namespace file `ns-<token>` in `<state dir>/pool-<bridge>/` (a mount
//! point: it cannot be renamed) beside an empty marker whose name is the entry's state;
//! each change of state is one `rename` of the marker (whoever renames first owns the
//! entry): `making-<pid>-<token>` (being set up by a filler) -> `ready-<token>` ->
//! `taken-<pid>-<token>` (claimed by a build) -> `ready-<token>` again when its step is done
//! (reused, as BuildKit reuses its pool's namespaces), or `spent-<token>` when it is bad. A
//! filler turns spent entries and those of dead processes back into nothing (the namespace
//! file unmounted, which frees the namespace and the veth pair with it, and the address
//! released) and tops the pool up. An entry's address is held as `pool:<token>`; its
//! namespace's sysfs is kept mounted on `sys-<token>` (`netns::hold_sysfs`), so steps
//! reuse one sysfs superblock instead of each building its own.

use std::path::{Path, PathBuf};

use crate::{Error, Network, Result};

/// The IPAM holder of an entry's address.
pub const HOLDER_PREFIX: &str = "pool:";

/// The pool of ready namespaces on one network.
pub struct Pool {
    state_dir: PathBuf,
    dir: PathBuf,
    net: Network,
}

/// A namespace a build claimed: the file its step joins.
#[derive(Debug)]
pub struct Claimed {
    pub file: PathBuf,
    marker: PathBuf,
    token: String,
}

/// Takes `lock` exclusively if no one holds it; false if someone does.
fn try_lock(lock: &std::fs::File) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(lock),
            libc::LOCK_EX | libc::LOCK_NB,
        ) == 0
    }
}

/// Whether `file` is a namespace (nsfs), not the empty file it is mounted over.
fn holds_namespace(file: &std::fs::File) -> bool {
    nix::sys::statfs::fstatfs(file)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A fresh token: 11 hex digits (the host link's name is `lbv` + the id's last 11).
fn token() -> String {
    let mut b = [0u8; 6];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    hex[..11].to_string()
}

impl Pool {
    pub fn new(state_dir: &Path, net: &Network) -> Pool {
        Pool {
            state_dir: state_dir.to_path_buf(),
            dir: state_dir.join(format!("pool-{}", net.bridge)),
            net: net.clone(),
        }
    }

    fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    }

    /// The number of ready entries.
    pub fn ready(&self) -> usize {
        self.names()
            .iter()
            .filter(|n| n.starts_with("ready-"))
            .count()
    }

    /// Takes a ready entry for process `pid`, if there is one, and opens its namespace file
    /// (the caller must see the mounts of the filler's mount namespace, the host's). An
    /// entry whose file holds no namespace (a `/run` that outlived a reboot keeps markers
    /// and empty files) is handed to the filler to free, and the next one tried.
    pub fn claim(&self, pid: u32) -> Option<(Claimed, std::fs::File)> {
        for name in self.names() {
            let Some(token) = name.strip_prefix("ready-") else {
                continue;
            };
            let marker = self.dir.join(format!("taken-{pid}-{token}"));
            if std::fs::rename(self.dir.join(&name), &marker).is_err() {
                continue;
            }
            let claimed = Claimed {
                file: self.dir.join(format!("ns-{token}")),
                marker,
                token: token.to_string(),
            };
            match std::fs::File::open(&claimed.file) {
                Ok(f) if holds_namespace(&f) => return Some((claimed, f)),
                _ => self.discard(claimed),
            }
        }
        None
    }

    /// Hands a claimed entry back, ready for the next step. Entries are reused, as
    /// BuildKit's pool reuses its namespaces: a step cannot change what it leaves behind
    /// (no CAP_NET_ADMIN: addresses, routes, rules and sysctls stay as made; its
    /// processes, and their sockets, are gone when its PID namespace is), and making and
    /// freeing one per step cost ~15 ms of CPU beside the build.
    pub fn put_back(&self, claimed: Claimed) {
        let ready = self.dir.join(format!("ready-{}", claimed.token));
        let _ = std::fs::rename(&claimed.marker, ready);
    }

    /// Hands a claimed entry back to be freed by the next filler.
    pub fn discard(&self, claimed: Claimed) {
        let spent = self.dir.join(format!("spent-{}", claimed.token));
        let _ = std::fs::rename(&claimed.marker, spent);
    }

    /// Whether a filler is at work on this pool now (it holds the fill lock).
    pub fn filling(&self) -> bool {
        let Ok(lock) = std::fs::File::open(self.dir.join("fill.lock")) else {
            return false;
        };
        !try_lock(&lock)
    }

    /// Frees what is spent or was left by a dead process, then makes entries until `keep`
    /// are ready; keeps doing so while builds take entries, until none has been taken for
    /// `linger` (builds in a row are served by one filler, not one started for each). One
    /// filler at a time: another running makes this return at once.
    pub fn fill(&self, keep: usize, linger: std::time::Duration) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::setup(self.dir.display().to_string(), e))?;
        let lock = std::fs::File::create(self.dir.join("fill.lock"))
            .map_err(|e| Error::setup(self.dir.display().to_string(), e))?;
        if !try_lock(&lock) {
            return Ok(());
        }
        self.collect(true);
        let mut last_taken = std::time::Instant::now();
        loop {
            let missing = keep.saturating_sub(self.ready());
            if missing > 0 {
                // In parallel: making one is mostly waiting on the kernel (RCU grace
                // periods), hardly CPU.
                std::thread::scope(|s| {
                    let made: Vec<_> = (0..missing).map(|_| s.spawn(|| self.make())).collect();
                    made.into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(Error::setup("pool", "a maker panicked")))
                        })
                        .collect::<Result<Vec<()>>>()
                })?;
            }
            if missing > 0 || self.names().iter().any(|n| n.starts_with("taken-")) {
                last_taken = std::time::Instant::now();
            }
            if last_taken.elapsed() >= linger {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.collect(false);
        }
        self.collect(true);
        Ok(())
    }

    /// Where an entry's namespace's sysfs is held mounted (`netns::hold_sysfs`).
    fn sysfs_dir(&self, token: &str) -> PathBuf {
        self.dir.join(format!("sys-{token}"))
    }

    /// Makes one ready entry.
    fn make(&self) -> Result<()> {
        let token = token();
        let making = self
            .dir
            .join(format!("making-{}-{token}", std::process::id()));
        let err = |e: std::io::Error| Error::setup(making.display().to_string(), e);
        std::fs::File::create(&making).map_err(err)?;
        let holder = format!("{HOLDER_PREFIX}{token}");
        let ns = self.dir.join(format!("ns-{token}"));
        if let Err(e) = crate::attach(
            &self.state_dir,
            &self.net,
            &holder,
            &format!("pool-{token}"),
            &ns,
        ) {
            let _ = std::fs::remove_file(&making);
            return Err(e);
        }
        // Best effort: without it, a step's start builds the sysfs superblock itself.
        let _ = crate::netns::hold_sysfs(&ns, &self.sysfs_dir(&token));
        std::fs::rename(&making, self.dir.join(format!("ready-{token}"))).map_err(err)
    }

    /// Frees one entry: its namespace file unmounted (the kernel then tears the namespace
    /// down and the veth pair with it, in its own time), its address released, its
    /// marker removed. One a maker may have left half made loses its host link too.
    fn free(&self, marker: &str, token: &str, half_made: bool) {
        let holder = format!("{HOLDER_PREFIX}{token}");
        // The sysfs mount holds the namespace too.
        if crate::netns::drop_sysfs(&self.sysfs_dir(token)).is_err() {
            return;
        }
        let freed = if half_made {
            crate::detach(
                &self.state_dir,
                &self.net,
                &holder,
                &format!("pool-{token}"),
                &self.dir.join(format!("ns-{token}")),
            )
        } else {
            crate::netns::remove(&self.dir.join(format!("ns-{token}")))
                .and_then(|()| crate::Ipam::open(&self.state_dir, &self.net)?.release(&holder))
        };
        if freed.is_ok() {
            let _ = std::fs::remove_file(self.dir.join(marker));
        }
    }

    /// Frees spent entries, those whose claimant or maker is gone, and (with `orphans`)
    /// addresses held for entries that no longer exist.
    fn collect(&self, orphans: bool) {
        let names = self.names();
        let mut live_tokens = Vec::new();
        // (marker, token, whether it may be half made)
        let mut dead_entries: Vec<(String, String, bool)> = Vec::new();
        for name in &names {
            let (state, rest) = name.split_once('-').unwrap_or((name, ""));
            // Dead: spent, or its claimant's or maker's process is gone.
            let (dead, token) = match state {
                "ready" => (false, rest),
                "spent" => (true, rest),
                "taken" | "making" => match rest.split_once('-') {
                    Some((pid, token)) => (!pid.parse().is_ok_and(alive), token),
                    None => continue,
                },
                _ => continue,
            };
            if dead {
                dead_entries.push((name.clone(), token.to_string(), state == "making"));
            } else {
                live_tokens.push(token.to_string());
            }
        }
        std::thread::scope(|s| {
            for (marker, token, half_made) in &dead_entries {
                s.spawn(move || self.free(marker, token, *half_made));
            }
        });
        if !orphans {
            return;
        }
        let Ok(ipam) = crate::Ipam::open(&self.state_dir, &self.net) else {
            return;
        };
        for holder in ipam.holders().unwrap_or_default() {
            if let Some(token) = holder.strip_prefix(HOLDER_PREFIX)
                && !live_tokens.iter().any(|t| t == token)
            {
                let _ = ipam.release(&holder);
            }
        }
    }
}
