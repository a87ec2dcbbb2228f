//! `lb build`'s RUN steps on the default bridge: the builder's `RunNetwork` over
//! `lb_container::step_network` (claims ahead from the host-wide pool), whose filler is a
//! process of lb's (`lb network pool-fill`).

use std::path::PathBuf;

use lb_container::step_network::StepNetworks;
use lb_layerstore::Store;

pub struct BuildBridge<'a>(StepNetworks<'a>);

impl<'a> BuildBridge<'a> {
    pub fn new(store: &'a Store) -> Self {
        BuildBridge(StepNetworks::new(
            store,
            crate::network_cmds::start_pool_filler,
        ))
    }
}

impl lb_builder::RunNetwork for BuildBridge<'_> {
    fn attach(&self, id: &str) -> Result<PathBuf, lb_builder::SeamError> {
        Ok(self.0.attach(id)?)
    }

    fn detach(&self, id: &str) {
        if let Err(e) = self.0.detach(id) {
            eprintln!("lb: {e}");
        }
    }

    fn warm_up(&self) {
        self.0.warm_up();
    }
}
