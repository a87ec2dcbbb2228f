//! `start`: a stopped container again, detached, on the file system it left (its upper
//! directory), with the configuration it was created with; back on its network first.

use std::time::{Duration, Instant};

use lb_runtime::state::State;

use super::Container;
use super::create::bind_ports;
use super::monitor::{MonitorStart, Starting};
use crate::Result;

impl Container<'_> {
    /// Starts the container under its monitor; a running one is left as it is.
    pub fn start(&self) -> Result<()> {
        self.start_counting(0)
    }

    /// Starts again, under a monitor, a container that a foreground `run` ran and whose
    /// restart policy wants it running after its exit (docker's daemon restarts it once
    /// the client has its exit status): its first restart.
    pub fn restart_after_foreground_run(&self) -> Result<()> {
        self.start_counting(1)
    }

    /// [`Container::start`], the restarts so far being `restarts`.
    fn start_counting(&self, restarts: u32) -> Result<()> {
        match self.ports_to_start()? {
            Some(ports) => self.start_monitored_counting(ports, restarts),
            None => Ok(()),
        }
    }

    /// `start -a`: starts the container under a monitor that waits for the caller to
    /// attach first ([`Container::attach_starting`]); none when it runs already (docker
    /// then attaches to it as it is).
    pub fn start_for_attach(&self) -> Result<Option<Starting<'_>>> {
        let Some(ports) = self.ports_to_start()? else {
            return Ok(None);
        };
        let how = MonitorStart {
            restarts: 0,
            attach_first: true,
        };
        self.fork_monitor(ports, how).map(Some)
    }

    /// Checks that the container may start and puts it back on its network: its ports'
    /// bound sockets, or none when it runs already.
    fn ports_to_start(&self) -> Result<Option<Vec<lb_network::ports::Bound>>> {
        let status = self.status();
        status.can_start(&self.record.id)?;
        if status.is_live() {
            return Ok(None);
        }
        let mut ports = Vec::new();
        if let Some(net) = crate::network::of_record(self.store, &self.record) {
            crate::network::reconcile(self.store);
            // Created again, not exited: a reconcile by another lb meanwhile must not
            // take the network this start is setting up.
            State::default()
                .save(&self.dir, true)
                .map_err(|source| crate::Error::Io {
                    path: self.dir.join("state.json"),
                    source,
                })?;
            // The monitor of the last run may still be letting go of the ports.
            let deadline = Instant::now() + Duration::from_secs(3);
            ports = loop {
                match bind_ports(&self.record.config.port_specs()) {
                    Ok(p) => break p,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => return Err(e),
                }
            };
            let ip = crate::network::attach(self.store, &net, &self.record.id, &self.dir)?;
            let specs: Vec<_> = ports.iter().map(|b| b.spec()).collect();
            crate::network::publish(self.store, &net, &self.record.id, ip, &specs)?;
        }
        Ok(Some(ports))
    }
}
