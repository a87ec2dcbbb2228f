//! `wait`: blocks until the container has exited; its state then (the exit code).

use lb_runtime::state::State;

use super::{Container, wait_exited};

impl Container<'_> {
    pub fn wait(&self) -> State {
        wait_exited(&self.dir, None)
    }
}
