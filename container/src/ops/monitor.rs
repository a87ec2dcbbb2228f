//! The monitor of a detached container (`run -d`, `start`): lb forks a process that leaves
//! the terminal's session, starts the container with its output on pipes (or a pty),
//! records it as running, relays its published ports, copies its output into `log.json`
//! (docker's json-file format, its CPU charged to the container), and records its exit.
//! The caller learns through a pipe whether the container started.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use lb_network::ports::Bound;
use lb_runtime::state::{State, Status};

use super::Container;
use super::create::now;
use crate::json_log::LogConfig;
use crate::{Error, Result};

impl Container<'_> {
    /// Starts the container under a monitor of its own; returns once it runs. `ports` are
    /// its published ports' bound host sockets (their relays live in the monitor).
    /// A container that could not start is [`Error::NotStarted`], with the runtime's exit
    /// status, after it is taken off its network (and removed, with `--rm`).
    pub fn start_monitored(&self, ports: Vec<Bound>) -> Result<()> {
        let store = self.store;
        let record = &self.record;
        let dir = self.dir.as_path();
        let auto_remove = record.auto_remove;
        let log_config = LogConfig::from_record(record.config.log_config.as_ref())?;
        let mut launch = self.launch(lb_runtime::Stdio::Inherit)?;
        let pipe = |e| Error::Sys {
            what: "pipe",
            errno: e,
        };
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(pipe)?;
        // SAFETY: lb is single-threaded here; the child only starts and follows the
        // container.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::Sys {
            what: "fork",
            errno: e,
        })? {
            nix::unistd::ForkResult::Child => {
                drop(ready_r);
                let _ = nix::unistd::setsid();
                let mut ready = std::fs::File::from(ready_w);
                // The container's output: a pty's master (`-t`, one stream, as docker logs
                // it) or a pipe for each stream.
                let streams = match log_streams(record.config.tty, &log_config) {
                    Ok((stdio, streams)) => {
                        launch.stdio = stdio;
                        streams
                    }
                    Err(e) => {
                        let _ = write!(ready, "125 {e}");
                        // SAFETY: leaving the forked monitor.
                        unsafe { libc::_exit(1) }
                    }
                };
                let code = match lb_runtime::start(&launch) {
                    Ok(c) => {
                        // The container holds its ends now: ours would keep the logs open.
                        drop(launch);
                        // The published ports' relays live in this monitor, as long as the
                        // container (their threads stay in the monitor's cgroup: they are
                        // made before the charge below).
                        if let Some(ip) = crate::network::address(dir) {
                            for b in ports {
                                lb_network::ports::relay(b, ip);
                            }
                        }
                        // Copying the output is the container's work: its CPU time is
                        // charged to the container's cgroup (v1), so a flood is throttled
                        // by the container's own limits. Charged before the caller is told
                        // the container runs, so no output is ever copied uncharged. Back
                        // out before the container's processes are killed at its end.
                        let charge = lb_runtime::cgroups::Cgroup::open(&record.id)
                            .ok()
                            .flatten()
                            .and_then(|cg| cg.charge_thread_cpu().ok().flatten());
                        let mut st = running_state(c.pid());
                        let _ = st.save(dir, !auto_remove);
                        let _ = write!(ready, "ok");
                        drop(ready);
                        // Nothing of the caller's terminal stays open in the monitor.
                        if let Ok(null) = devnull() {
                            for fd in 0..3 {
                                // SAFETY: replacing the standard descriptors of this process.
                                unsafe { libc::dup2(null.as_raw_fd(), fd) };
                            }
                        }
                        crate::json_log::copy(dir, &log_config, streams);
                        drop(charge);
                        let code = c.wait().unwrap_or(255);
                        // Off the network before the exit is recorded: whoever waits for it
                        // (stop, rm, wait) finds the links and addresses gone.
                        let _ = crate::network::leave(store, record);
                        st.status = Status::Exited;
                        st.exit_code = code;
                        st.finished_at = now();
                        let _ = st.save(dir, !auto_remove);
                        if auto_remove {
                            let _ = store.remove_container(&record.id);
                            crate::volume::release_anonymous(store, record);
                        }
                        0
                    }
                    Err(e) => {
                        let _ = write!(ready, "{} {e}", e.code());
                        let st = State {
                            status: Status::Exited,
                            exit_code: e.code(),
                            finished_at: now(),
                            ..State::default()
                        };
                        let _ = st.save(dir, !auto_remove);
                        1
                    }
                };
                // SAFETY: leaving the forked monitor.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { .. } => {
                drop(ready_w);
                let mut msg = String::new();
                let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
                if msg == "ok" {
                    return Ok(());
                }
                let (code, message) = msg
                    .split_once(' ')
                    .and_then(|(c, t)| Some((c.parse::<u8>().ok()?, t.to_string())))
                    .unwrap_or((125, format!("the container did not start: {msg}")));
                let _ = crate::network::leave(store, record);
                if auto_remove {
                    let _ = store.remove_container(&record.id);
                    crate::volume::release_anonymous(store, record);
                }
                Err(Error::NotStarted { code, message })
            }
        }
    }
}

/// The run state of a container whose first process, `pid`, has just started and whose
/// exit this process (its monitor, or a foreground `run`) will record.
pub fn running_state(pid: i32) -> State {
    State {
        status: Status::Running,
        pid,
        pid_start: lb_runtime::state::pid_start_time(pid).unwrap_or(0),
        monitor: std::process::id() as i32,
        started_at: now(),
        ..State::default()
    }
}

/// A detached container's standard streams, and the ends the monitor reads them from
/// (none with `--log-driver none` and no terminal: the output goes to /dev/null).
fn log_streams(
    tty: bool,
    log_config: &LogConfig,
) -> Result<(lb_runtime::Stdio, Vec<(OwnedFd, &'static str)>)> {
    if tty {
        let pty = lb_runtime::tty::Pty::open()?;
        let stdio = pty.container_stdio()?;
        return Ok((stdio, vec![(pty.close_slave(), "stdout")]));
    }
    if *log_config == LogConfig::None {
        let stdio = lb_runtime::Stdio::Fds {
            stdin: devnull()?,
            stdout: devnull()?,
            stderr: devnull()?,
        };
        return Ok((stdio, Vec::new()));
    }
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Sys {
            what: "pipe",
            errno: e,
        })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = lb_runtime::Stdio::Fds {
        stdin: devnull()?,
        stdout: out_w,
        stderr: err_w,
    };
    Ok((stdio, vec![(out_r, "stdout"), (err_r, "stderr")]))
}

/// `/dev/null`, read and write.
pub fn devnull() -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|source| Error::Io {
            path: "/dev/null".into(),
            source,
        })
}
