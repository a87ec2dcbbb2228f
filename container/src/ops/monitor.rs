//! The monitor of a detached container (`run -d`, `start`): lb forks a process that leaves
//! the terminal's session, starts the container with its output on pipes (or a pty),
//! records it as running, relays its published ports, copies its output into `log.json`
//! (docker's json-file format, its CPU charged to the container), and records its exit.
//! The caller learns through a pipe whether the container started.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

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
        self.start_monitored_counting(ports, 0)
    }

    /// [`Container::start_monitored`] with `restarts` made so far: more than none is a
    /// restart, after docker's first back-off.
    pub(super) fn start_monitored_counting(&self, ports: Vec<Bound>, restarts: u32) -> Result<()> {
        let how = MonitorStart {
            restarts,
            attach_first: false,
        };
        self.fork_monitor(ports, how)?.started()
    }

    /// Forks the container's monitor, which starts it as `how` says; the caller learns
    /// how that went from [`Starting::started`].
    pub(super) fn fork_monitor(
        &self,
        ports: Vec<Bound>,
        how: MonitorStart,
    ) -> Result<Starting<'_>> {
        // Refused here, before the fork, rather than in the monitor.
        LogConfig::from_record(self.record.config.log_config.as_ref())?;
        self.launch(lb_runtime::Stdio::Inherit)?;
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
                let (ready_w, ports) = self.exec_monitor(ready_w, ports, how);
                let code = self.run_monitor(ports, std::fs::File::from(ready_w), how);
                // SAFETY: leaving the forked monitor.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { .. } => {
                drop(ready_w);
                Ok(Starting {
                    container: self,
                    ready: std::fs::File::from(ready_r),
                })
            }
        }
    }
}

/// How a monitor begins (handed to an exec'd one).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct MonitorStart {
    /// Restarts made before this monitor (a foreground run's exit).
    pub restarts: u32,
    /// Whether it waits for a client of its attach socket before the container starts
    /// (`start -a`: the client sees all of its output).
    pub attach_first: bool,
}

/// A container whose monitor is starting it.
pub struct Starting<'c> {
    container: &'c Container<'c>,
    ready: std::fs::File,
}

impl Starting<'_> {
    /// Waits until the container runs. One that could not start is
    /// [`Error::NotStarted`], with the runtime's exit status, after it is taken off its
    /// network (and removed, with `--rm`).
    pub fn started(mut self) -> Result<()> {
        let mut msg = String::new();
        let _ = self.ready.read_to_string(&mut msg);
        self.outcome(&msg)
    }

    /// Whether the monitor has already said the container did not start (without
    /// waiting): that error.
    pub(super) fn failed_yet(&mut self) -> Option<Error> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.ready.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).ok()? == 0 {
            return None;
        }
        let mut msg = String::new();
        let _ = self.ready.read_to_string(&mut msg);
        self.outcome(&msg).err()
    }

    fn outcome(&self, msg: &str) -> Result<()> {
        if msg == "ok" {
            return Ok(());
        }
        let (store, record) = (self.container.store, &self.container.record);
        let (code, message) = msg
            .split_once(' ')
            .and_then(|(c, t)| Some((c.parse::<u8>().ok()?, t.to_string())))
            .unwrap_or((125, format!("the container did not start: {msg}")));
        let _ = crate::network::leave(store, record);
        if record.auto_remove {
            let _ = store.remove_container(&record.id);
            crate::volume::release_anonymous(store, record);
        }
        Err(Error::NotStarted { code, message })
    }
}

impl Container<'_> {
    /// The monitor's life from its record (in the monitor process, exec'd or forked).
    pub(super) fn run_monitor(
        &self,
        ports: Vec<Bound>,
        ready: std::fs::File,
        how: MonitorStart,
    ) -> i32 {
        let fail = |mut ready: std::fs::File, e: &dyn std::fmt::Display| {
            let _ = write!(ready, "125 {e}");
            1
        };
        let log_config = match LogConfig::from_record(self.record.config.log_config.as_ref()) {
            Ok(l) => l,
            Err(e) => return fail(ready, &e),
        };
        let launch = match self.launch(lb_runtime::Stdio::Inherit) {
            Ok(l) => l,
            Err(e) => return fail(ready, &e),
        };
        self.monitor(launch, ports, &log_config, ready, how)
    }

    /// The monitor's life (in the forked child): starts the container, tells the caller
    /// through `ready` ("ok", or "CODE message"), copies its output to the log, records
    /// its exit, and starts it again while its restart policy says so. Returns the
    /// monitor's exit status.
    fn monitor(
        &self,
        first: lb_runtime::Launch,
        ports: Vec<Bound>,
        log_config: &LogConfig,
        ready: std::fs::File,
        how: MonitorStart,
    ) -> i32 {
        let store = self.store;
        let record = &self.record;
        let dir = self.dir.as_path();
        let auto_remove = record.auto_remove;
        let policy = &record.config.restart;
        let mut ready = Some(ready);
        let mut ports = Some(ports);
        let mut launch = Some(first);
        let mut restart_count = how.restarts;
        let mut backoff = crate::restart::Backoff::default();
        if how.restarts > 0 {
            // A restart of an exit this monitor did not see: docker's first back-off.
            std::thread::sleep(backoff.after(std::time::Duration::ZERO));
        }
        // `lb attach`'s way in, for the monitor's whole life (restarts included); a
        // container whose socket cannot be made runs on, unattachable.
        let mut attach = crate::attach::AttachServer::bind(dir).ok();
        if let (true, Some(a)) = (how.attach_first, &mut attach) {
            a.wait_for_client(std::time::Duration::from_secs(10));
        }
        let fail = |ready: &mut Option<std::fs::File>, code: i32, e: &dyn std::fmt::Display| {
            if let Some(mut r) = ready.take() {
                let _ = write!(r, "{code} {e}");
            }
        };
        loop {
            let mut this = match launch
                .take()
                .map_or_else(|| self.launch(lb_runtime::Stdio::Inherit), Ok)
            {
                Ok(l) => l,
                Err(e) => {
                    fail(&mut ready, 125, &e);
                    return 1;
                }
            };
            // The container's output: a pty's master (`-t`, one stream, as docker logs
            // it) or a pipe for each stream.
            let (streams, input) = match log_streams(record.config.tty, record.config.open_stdin) {
                Ok(s) => {
                    this.stdio = s.stdio;
                    (s.output, s.input)
                }
                Err(e) => {
                    fail(&mut ready, 125, &e);
                    return 1;
                }
            };
            // The user's start clears an earlier stop; a restart keeps a request that
            // came while it was being made.
            if restart_count == 0 {
                crate::restart::clear_stop_request(dir);
            }
            let c = match lb_runtime::start(&this) {
                Ok(c) => c,
                Err(e) => {
                    fail(&mut ready, e.code(), &e);
                    let st = State {
                        status: Status::Exited,
                        exit_code: e.code(),
                        finished_at: now(),
                        restart_count,
                        ..State::default()
                    };
                    let _ = st.save(dir, !auto_remove);
                    return 1;
                }
            };
            // The container holds its ends now: ours would keep the logs open.
            drop(this);
            if let Some(a) = &mut attach {
                a.set_input(input, record.config.tty);
            }
            // The published ports' relays live in this monitor, as long as the container
            // and its restarts (their threads stay in the monitor's cgroup: they are made
            // before the charge below).
            if let (Some(ip), Some(ports)) = (crate::network::address(dir), ports.take()) {
                for b in ports {
                    lb_network::ports::relay(b, ip);
                }
            }
            // Copying the output is the container's work: its CPU time is charged to the
            // container's cgroup (v1), so a flood is throttled by the container's own
            // limits. Charged before the caller is told the container runs, so no output
            // is ever copied uncharged. Back out before the container's processes are
            // killed at its end.
            let charge = lb_runtime::cgroups::Cgroup::open(&record.id)
                .ok()
                .flatten()
                .and_then(|cg| cg.charge_thread_cpu().ok().flatten());
            let mut st = running_state(c.pid());
            st.restart_count = restart_count;
            let _ = st.save(dir, !auto_remove);
            self.event("start", &[]);
            if let Some(mut r) = ready.take() {
                let _ = write!(r, "ok");
                drop(r);
                // Nothing of the caller's terminal stays open in the monitor.
                if let Ok(null) = devnull() {
                    for fd in 0..3 {
                        // SAFETY: replacing the standard descriptors of this process.
                        unsafe { libc::dup2(null.as_raw_fd(), fd) };
                    }
                }
            }
            release_code_pages();
            let started = std::time::Instant::now();
            // Healthchecks beside the container, while it runs (a probe in flight ends
            // with the container's PID namespace).
            let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let code = std::thread::scope(|scope| {
                if let Some(h) = &record.config.health {
                    let probing = probing.clone();
                    scope.spawn(move || {
                        crate::health::watch(
                            h,
                            dir,
                            probing,
                            |cmd, t| self.probe_apart(cmd, t),
                            release_code_pages,
                        )
                    });
                }
                crate::json_log::copy(
                    dir,
                    log_config,
                    streams,
                    attach.as_mut().map(|a| a as &mut dyn crate::json_log::Tee),
                );
                drop(charge);
                let code = c.wait().unwrap_or(255);
                probing.store(false, std::sync::atomic::Ordering::Relaxed);
                code
            });
            st.status = Status::Exited;
            st.exit_code = code;
            st.finished_at = now();
            st.paused = false;
            // The record as it is now: its name (a rename while it ran) for the event, its
            // policy (`lb update` may have changed it) for what follows.
            let current = Container::open(store, &record.id).ok();
            current
                .as_ref()
                .unwrap_or(self)
                .event("die", &[("exitCode", &code.to_string())]);
            let stop_requested = crate::restart::stop_requested(dir);
            let policy = current.map_or_else(|| policy.clone(), |c| c.record.config.restart);
            if policy.should_restart(code, restart_count, stop_requested) {
                st.restarting = true;
                let _ = st.save(dir, !auto_remove);
                // Attached clients end with the run they attached to, as docker's.
                if let Some(a) = &mut attach {
                    a.finish(code);
                }
                let wait = backoff.after(started.elapsed());
                if sleep_unless_stopped(dir, wait) {
                    restart_count += 1;
                    continue;
                }
                st.restarting = false;
            }
            // Off the network before the exit is recorded: whoever waits for it (stop, rm,
            // wait) finds the links and addresses gone.
            let _ = crate::network::leave(store, record);
            if let Some(a) = &mut attach {
                a.stop_listening();
            }
            let _ = st.save(dir, !auto_remove);
            if let Some(a) = &mut attach {
                a.finish(code);
            }
            if auto_remove {
                if store.remove_container(&record.id).is_ok() {
                    self.event("destroy", &[]);
                }
                crate::volume::release_anonymous(store, record);
            }
            return 0;
        }
    }
}

/// Waits `wait` unless a stop is asked for meanwhile; whether the whole wait passed.
fn sleep_unless_stopped(dir: &std::path::Path, wait: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + wait;
    while std::time::Instant::now() < end {
        if crate::restart::stop_requested(dir) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20).min(wait));
    }
    !crate::restart::stop_requested(dir)
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

/// A detached container's standard streams: the ends the monitor reads its output from,
/// and (with `-i`) the end that feeds its input. A terminal (`-t`) is one stream both ways,
/// its master; else a pipe for each stream, drained even when nothing is logged
/// (`--log-driver none`): `attach` still shows them.
fn log_streams(tty: bool, open_stdin: bool) -> Result<Streams> {
    if tty {
        let pty = lb_runtime::tty::Pty::open()?;
        let stdio = pty.container_stdio()?;
        let master = pty.close_slave();
        let input = if open_stdin {
            Some(master.try_clone().map_err(|source| Error::Io {
                path: "pty master".into(),
                source,
            })?)
        } else {
            None
        };
        return Ok(Streams {
            stdio,
            output: vec![(master, "stdout")],
            input,
        });
    }
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Sys {
            what: "pipe",
            errno: e,
        })
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin, input) = if open_stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (devnull()?, None)
    };
    let stdio = lb_runtime::Stdio::Fds {
        stdin,
        stdout: out_w,
        stderr: err_w,
    };
    Ok(Streams {
        stdio,
        output: vec![(out_r, "stdout"), (err_r, "stderr")],
        input,
    })
}

/// [`log_streams`]' answer.
struct Streams {
    /// The container's side.
    stdio: lb_runtime::Stdio,
    /// The monitor's: output to read, named by stream.
    output: Vec<(OwnedFd, &'static str)>,
    /// The monitor's: where attached clients' input goes.
    input: Option<OwnedFd>,
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

impl Container<'_> {
    /// One healthcheck probe: `command` exec'd in the container with the container's user
    /// and confinement; its exit code (-1 when it could not run or ran past `timeout`,
    /// then killed) and the first 4 KiB of its output.
    pub(super) fn probe(&self, command: &[String], timeout: std::time::Duration) -> (i32, String) {
        let opts = crate::ops::ExecOptions {
            command: command.to_vec(),
            ..Default::default()
        };
        let pipe = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        let (Ok(mut exec), Ok((out_r, out_w))) = (self.exec_process(&self.record.id, &opts), pipe)
        else {
            return (-1, "the probe could not be set up".into());
        };
        let (Ok(err_w), Ok(stdin)) = (out_w.try_clone(), devnull()) else {
            return (-1, "the probe could not be set up".into());
        };
        exec.stdio = lb_runtime::Stdio::Fds {
            stdin,
            stdout: out_w,
            stderr: err_w,
        };
        let process = match lb_runtime::exec(&exec) {
            Ok(p) => p,
            Err(e) => return (-1, e.to_string()),
        };
        drop(exec);
        let reader =
            std::thread::spawn(move || crate::health::read_output(std::fs::File::from(out_r)));
        let pid = nix::unistd::Pid::from_raw(process.pid());
        let end = std::time::Instant::now() + timeout;
        let code = loop {
            use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
            match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(_, c)) => break c,
                Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                Ok(_) if std::time::Instant::now() < end => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Ok(_) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
                    return (
                        -1,
                        format!(
                            "Health check exceeded timeout ({})",
                            crate::go_duration(timeout.as_nanos() as i64)
                        ),
                    );
                }
                Err(_) => break -1,
            }
        };
        self.exec_ended(code);
        (code, reader.join().unwrap_or_default())
    }
}

/// Lets go of the resident pages of the process's code and read-only data (every
/// mapping of a file that is not writable and holds no page the process changed: lb's
/// text and constants and its libraries'; not the relocated read-only part, which was
/// written at load): the monitor's start (opening the store, starting the container, a
/// probe's exec) ran code the loop that follows never runs again. What the loop runs
/// comes back from the page cache as it runs, one page at a time (`MADV_RANDOM`: no
/// read-around of neighbouring pages); nothing is lost, as `MADV_DONTNEED` on a private
/// file mapping drops only the process's mapping of pages it never wrote. This keeps a
/// long-running monitor's resident set to what it uses (the limit: 3 MiB).
pub(crate) fn release_code_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let release = |range: Option<(usize, usize)>| {
        if let Some((start, end)) = range {
            // SAFETY: the range is a whole mapping of this process, of a file, never
            // written (checked by the caller): its pages are read again from the file.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_RANDOM);
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    };
    // The mapping being read: its range, when it may be released so far.
    let mut current: Option<(usize, usize)> = None;
    let mut stack: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            release(current.take());
            let perms = f.next().unwrap_or("");
            let inode = f.nth(2).unwrap_or("0");
            if f.next() == Some("[stack]") {
                stack = Some((start, end));
            }
            // Not writable, private, a file's.
            if perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-') && inode != "0" {
                current = Some((start, end));
            }
        } else if first == "Anonymous:" && f.next().is_some_and(|kb| kb != "0") {
            // Written (relocations): its pages are the process's own.
            current = None;
        }
    }
    release(current);
    // The main thread's stack below where it is now: pages the start's deep calls left
    // behind (a page of room is kept).
    let here = &stack as *const _ as usize;
    if let Some((start, end)) = stack
        && (start..end).contains(&here)
    {
        let page = 4096;
        let top = (here & !(page - 1)).saturating_sub(page);
        if top > start {
            // SAFETY: the range lies below the stack pointer of the only thread that
            // uses this stack: no live frame is in it; its pages come back zeroed.
            unsafe { libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_DONTNEED) };
        }
    }
    // Free heap pages (the start's allocations) back to the system.
    // SAFETY: glibc's malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}
