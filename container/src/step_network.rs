//! Networks for build steps on the default bridge: each step container
//! (`build-<lb pid>-<hash>`) gets a network namespace of its own with an address and links.
//! One the host-wide pool made ready, else one made for it here (~60 ms).
//!
//! Pool entries are claimed by a worker thread that lives in the host's mount namespace
//! (the build has one of its own, and the filler's mounts of the namespace files are the
//! host's): it claims the next step's entry ahead of the step, so a step pays neither the
//! claim nor a thread and `setns` per claim, and it starts the pool's filler when the pool
//! runs low. A step's entry goes back to the pool when the step is done (`Pool::put_back`).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Mutex, mpsc};

use lb_layerstore::Store;
use lb_network::Network;
use lb_network::pool::Claimed;

use crate::Result;
use crate::network::{attach_links, detach};

/// How many namespaces the pool keeps ready for build steps.
pub const POOL_SIZE: usize = 6;

/// The host-wide pool of ready namespaces on the default bridge.
pub fn build_pool() -> lb_network::pool::Pool {
    lb_network::pool::Pool::new(&crate::network::state_dir(), &Network::default_bridge())
}

/// A claimed pool entry and the descriptor its step joins it through (opened in the host's
/// mount namespace: the namespace file is a mount there).
type Entry = (Claimed, File);

/// What the build asks of the host-side worker.
enum Ask {
    /// An entry for a step now (`None`: the pool has none ready).
    Take(mpsc::SyncSender<Option<Entry>>),
}

/// The worker: its requests, and the thread to join at the end of the build.
struct HostSide {
    asks: mpsc::Sender<Ask>,
    worker: std::thread::JoinHandle<lb_runtime::Result<()>>,
}

/// The networks of one build's steps.
pub struct StepNetworks<'a> {
    store: &'a Store,
    /// Starts a filler process for the pool (the caller's: it is a command of lb's).
    start_filler: fn(),
    /// Steps' claimed pool entries, by step container id.
    claimed: Mutex<HashMap<String, Entry>>,
    /// Started at the build's first cache miss (`warm_up`) or its first RUN step.
    host: Mutex<Option<HostSide>>,
}

impl<'a> StepNetworks<'a> {
    /// Networks for a build on `store`; `start_filler` starts the pool's filler when the
    /// pool runs low (unless one is at work: `Pool::filling`).
    pub fn new(store: &'a Store, start_filler: fn()) -> Self {
        StepNetworks {
            store,
            start_filler,
            claimed: Mutex::default(),
            host: Mutex::default(),
        }
    }

    /// Sends `ask` to the worker, starting it first if need be; false if it is gone.
    fn ask(&self, ask: Option<Ask>) -> bool {
        let mut host = self.host.lock().expect("host side");
        let host = host.get_or_insert_with(|| {
            let (asks, rx) = mpsc::channel();
            let start_filler = self.start_filler;
            HostSide {
                asks,
                worker: lb_runtime::rootfs::spawn_in_host_mount_namespace(move || {
                    serve(rx, start_filler)
                }),
            }
        });
        ask.is_none_or(|a| host.asks.send(a).is_ok())
    }
}

/// The worker's loop: an entry claimed ahead is handed to the next step that asks, and the
/// one after it claimed at once. When the build is done (the channel closes), the entry
/// claimed ahead goes back to the pool unused.
fn serve(asks: mpsc::Receiver<Ask>, start_filler: fn()) {
    let pool = build_pool();
    let claim = || pool.claim(std::process::id());
    let mut ahead = claim();
    let mut filling = false;
    while let Ok(Ask::Take(reply)) = asks.recv() {
        let entry = ahead.take().or_else(claim);
        let short = entry.is_none();
        let _ = reply.send(entry);
        ahead = claim();
        // Steps hand their entries back for reuse, so the pool runs low only when builds
        // run side by side or entries were lost (a killed build's): the filler then tops it
        // up, while this build runs and after it (at nice 19).
        if !filling && (short || ahead.is_none() || pool.ready() < 2) {
            if !pool.filling() {
                start_filler();
            }
            filling = true;
        }
    }
    if let Some((c, f)) = ahead {
        drop(f);
        pool.put_back(c);
    }
}

impl Drop for StepNetworks<'_> {
    fn drop(&mut self) {
        if let Some(host) = self.host.lock().expect("host side").take() {
            drop(host.asks);
            let _ = host.worker.join();
        }
    }
}

impl StepNetworks<'_> {
    /// Starts the worker at the build's first cache miss, so that it has an entry claimed
    /// before the first RUN step needs one. A build from the cache starts none; one whose
    /// misses are all file steps hands the entry back unused.
    pub fn warm_up(&self) {
        self.ask(None);
    }

    /// A network namespace for step container `id`: the file its spec joins.
    pub fn attach(&self, id: &str) -> Result<PathBuf> {
        let (reply, entry) = mpsc::sync_channel(1);
        let taken = self.ask(Some(Ask::Take(reply)));
        if let Some((c, f)) = taken.then(|| entry.recv().ok().flatten()).flatten() {
            use std::os::fd::AsRawFd;
            let path = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()));
            self.claimed
                .lock()
                .expect("claimed")
                .insert(id.to_string(), (c, f));
            return Ok(path);
        }
        attach_links(self.store, &Network::default_bridge(), id).map(|a| a.netns)
    }

    /// Gives step `id`'s namespace back (to the pool, or undone when it was made for it).
    pub fn detach(&self, id: &str) -> Result<()> {
        let pooled = self.claimed.lock().expect("claimed").remove(id);
        match pooled {
            Some((c, f)) => {
                drop(f);
                build_pool().put_back(c);
                Ok(())
            }
            None => detach(self.store, &Network::default_bridge(), id),
        }
    }
}
