//! `system boot`: after a reboot (or anything that took the monitors away), the containers
//! whose restart policy says they should run are started again, as docker's daemon does
//! when it starts: `always`, and `unless-stopped` unless the user stopped it. Run by an
//! init system (the README's systemd unit) or `@reboot`.

use lb_layerstore::Store;

use super::{Container, list};
use crate::Result;
use crate::restart::RestartName;

/// Starts every stopped container whose policy wants it running; each one's name and
/// how its start went, oldest first.
pub fn boot(store: &Store) -> Result<Vec<(String, Result<()>)>> {
    let mut started = Vec::new();
    let mut records: Vec<_> = list(store, true)?.into_iter().map(|(r, _)| r).collect();
    records.sort_by(|a, b| a.created.cmp(&b.created));
    for record in records {
        let c = Container::of(store, record);
        if c.status().is_live() {
            continue;
        }
        let wanted = match c.record.config.restart.name {
            RestartName::Always => true,
            RestartName::UnlessStopped => !crate::restart::stop_requested(&c.dir),
            RestartName::No | RestartName::OnFailure => false,
        };
        if wanted {
            let name = c.record.name.clone();
            started.push((name, c.start()));
        }
    }
    Ok(started)
}
