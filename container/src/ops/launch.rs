//! How a container's record becomes the runtime's `Launch`: `run`, `start` and the monitor
//! all start a container from its record, never from options again.

use std::path::PathBuf;

use super::Container;
use crate::{Error, Result};

impl Container<'_> {
    /// The runtime's description of this container's start, its process given `stdio`.
    pub fn launch(&self, stdio: lb_runtime::Stdio) -> Result<lb_runtime::Launch> {
        let config = &self.record.config;
        // Overlay lowers are listed top first; snapshots come bottom first.
        let mut lowers: Vec<PathBuf> = config.lowers.iter().rev().cloned().collect();
        if lowers.is_empty() {
            let empty = self.dir.join("empty");
            std::fs::create_dir_all(&empty).map_err(|source| Error::Io {
                path: empty.clone(),
                source,
            })?;
            lowers.push(empty);
        }
        Ok(lb_runtime::Launch {
            id: self.record.id.clone(),
            spec: config.spec.clone(),
            layers: lb_runtime::RootfsLayers {
                lowers,
                upper: self.dir.join("upper"),
                work: self.dir.join("work"),
                // A container's upper dir is its state (`lb commit`, `lb start` again):
                // synced when it is unmounted, as docker's. A `--rm` container's goes with
                // it, so its exit need not wait for its writes to reach the disk (podman's
                // choice too).
                volatile: self.record.auto_remove,
            },
            rootfs: self.dir.join("rootfs"),
            user: config.user.clone(),
            seccomp: config.seccomp,
            init: config.init,
            // A container outlives a killed lb, as docker's outlives a killed client: it
            // has a record, and `lb ps`/`stop`/`rm` reach it.
            die_with_caller: false,
            stdio,
        })
    }
}
