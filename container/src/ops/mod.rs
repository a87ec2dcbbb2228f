//! The operations on containers, one file each (youki's layout): `create`, `start` (under
//! the `monitor`, from the record's `launch`), `attach`, `exec`, `inspect`, `pause`, `rename`, `stop`, `kill`, `remove`, `wait`, and
//! `logs`, and `list` over a store. Each checks the container's state with
//! `state.rs` first, so what docker refuses is refused here, with its message.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lb_layerstore::Store;
use lb_runtime::state::State;
use nix::sys::signal::Signal;

use crate::{ContainerConfig, Error, Record, Result, Status};

mod attach;
mod boot;
mod copy;
mod create;
mod diff;
mod exec;
mod handoff;
mod inspect;
mod kill;
mod launch;
mod list;
mod logs;
mod monitor;
mod pause;
mod remove;
mod rename;
mod start;
mod stats;
mod stop;
mod update;
mod wait;

pub use attach::{AttachEnd, AttachStreams, Attached, parse_detach_keys};
pub use boot::boot;
pub use copy::{ExtractOptions, PathStat};
pub(crate) use create::random_id;
pub use create::{CreateOptions, Created, create, image_run_config, now};
pub use exec::ExecOptions;
pub use handoff::{monitor_from_handoff, probe_from_handoff};
pub use inspect::{ContainerInspect, MountPoint};
pub use list::list;
pub use logs::LogsOptions;
pub use monitor::{Starting, devnull, running_state};
pub use stats::{CgroupStats, StatsSample, Top};
pub use update::UpdateOptions;

/// A container of a store: its record and its directory.
pub struct Container<'s> {
    store: &'s Store,
    pub record: Record,
    pub dir: PathBuf,
    /// The id of the last process `exec_process` made, for its `exec_die` event.
    last_exec: std::sync::Mutex<Option<String>>,
}

impl<'s> Container<'s> {
    /// The container `key` names: a full id, a name, or an unambiguous id prefix (docker's
    /// lookup order).
    pub fn open(store: &'s Store, key: &str) -> Result<Container<'s>> {
        let record = store.container::<ContainerConfig>(key)?;
        Ok(Container::of(store, record))
    }

    /// The container `record` describes.
    pub fn of(store: &'s Store, record: Record) -> Container<'s> {
        Container {
            dir: store.container_dir(&record.id),
            store,
            record,
            last_exec: std::sync::Mutex::new(None),
        }
    }

    /// Its run state now (a container whose processes died unseen reads as exited).
    pub fn state(&self) -> State {
        State::load(&self.dir)
    }

    pub fn status(&self) -> Status {
        Status::of(&self.state())
    }

    /// Logs a container event (`lb events`) with docker's attributes: the image, the
    /// name, and `extra`.
    pub(crate) fn event(&self, action: &str, extra: &[(&str, &str)]) {
        record_event(self.store, &self.record, action, extra);
    }
}

/// [`Container::event`] for a record (a container being made or gone).
pub(crate) fn record_event(store: &Store, record: &Record, action: &str, extra: &[(&str, &str)]) {
    let mut attributes = vec![
        ("image", record.image_name.as_str()),
        ("name", record.name.as_str()),
    ];
    attributes.extend_from_slice(extra);
    store.record_event(&lb_layerstore::Event::now(
        "container",
        action,
        &record.id,
        &attributes,
    ));
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number, as `kill -s` and STOPSIGNAL
/// give it.
pub fn parse_signal(s: &str) -> Result<Signal> {
    use std::str::FromStr;
    let invalid = || Error::InvalidOption(format!("invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| invalid());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).map_err(|_| invalid())
}

/// Waits until the container in `dir` has exited (its monitor recorded it) or `timeout`
/// passes; its state then.
pub fn wait_exited(dir: &Path, timeout: Option<Duration>) -> State {
    let start = Instant::now();
    loop {
        let st = State::load(dir);
        if !st.running() || timeout.is_some_and(|t| start.elapsed() >= t) {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to the first process of the container whose state is `st`; false when
/// that process has just ended (its monitor has not recorded it yet).
fn signal(st: &State, sig: Signal) -> Result<bool> {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid), sig) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(errno) => Err(Error::Signal {
            signal: sig,
            pid: st.pid,
            errno,
        }),
    }
}
