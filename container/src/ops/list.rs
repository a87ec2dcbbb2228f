//! `ps`: the store's containers, newest first, with their states.

use lb_layerstore::Store;
use lb_runtime::state::State;

use crate::{ContainerConfig, Record, Result};

/// Every container (`all`) or the running ones, newest first, each with its run state.
pub fn list(store: &Store, all: bool) -> Result<Vec<(Record, State)>> {
    let mut rows = Vec::new();
    for c in store.containers::<ContainerConfig>()?.into_iter().rev() {
        let st = State::load(&store.container_dir(&c.id));
        if all || st.running() {
            rows.push((c, st));
        }
    }
    Ok(rows)
}
