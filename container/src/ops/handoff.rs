//! The monitor as a process of its own: the forked child of `run -d`/`start` execs lb
//! afresh (`/proc/self/exe`), handing over what it holds (the store's root, the
//! container's id, the pipe that tells the caller it started, the published ports' bound
//! sockets) through inherited descriptors and one environment variable. It execs
//! `lb-monitor` (src/monitor_main.rs) when that is beside lb's executable, else lb. A fresh process
//! has only what a monitor touches in memory, not all of a CLI run's (the limit:
//! under 3 MiB resident). lb's `main` asks [`monitor_from_handoff`] first; when the exec
//! fails, the fork runs the monitor itself, as before.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use lb_network::ports::{Bound, PortSpec, Proto};
use serde::{Deserialize, Serialize};

use super::Container;

/// The environment variable that carries the handoff.
const HANDOFF_VAR: &str = "LB_MONITOR_HANDOFF";

/// Whether this process's executable takes the handoff (lb's `main` says so): another
/// program using this crate (a test binary) would not be a monitor when exec'd again.
static EXEC_TAKES_HANDOFF: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[derive(Serialize, Deserialize)]
struct Handoff {
    root: std::path::PathBuf,
    id: String,
    ready: RawFd,
    ports: Vec<HandedPort>,
    #[serde(default)]
    start: super::monitor::MonitorStart,
}

#[derive(Serialize, Deserialize)]
struct HandedPort {
    fd: RawFd,
    tcp: bool,
    host_ip: IpAddr,
    host_port: u16,
    container_port: u16,
}

impl Container<'_> {
    /// In the forked child: execs lb as this container's monitor, handing `ready` and
    /// `ports` over. Returns only when the exec failed, with them back.
    pub(super) fn exec_monitor(
        &self,
        ready: OwnedFd,
        ports: Vec<Bound>,
        start: super::monitor::MonitorStart,
    ) -> (OwnedFd, Vec<Bound>) {
        if !EXEC_TAKES_HANDOFF.load(std::sync::atomic::Ordering::Relaxed) {
            return (ready, ports);
        }
        let handed: Vec<HandedPort> = ports
            .iter()
            .map(|b| {
                let (fd, spec) = match b {
                    Bound::Tcp(l, s) => (l.as_raw_fd(), *s),
                    Bound::Udp(u, s) => (u.as_raw_fd(), *s),
                };
                HandedPort {
                    fd,
                    tcp: spec.proto == Proto::Tcp,
                    host_ip: spec.host_ip,
                    host_port: spec.host_port,
                    container_port: spec.container_port,
                }
            })
            .collect();
        let handoff = Handoff {
            root: self.store.root().to_path_buf(),
            id: self.record.id.clone(),
            ready: ready.as_raw_fd(),
            ports: handed,
            start,
        };
        let Ok(text) = serde_json::to_string(&handoff) else {
            return (ready, ports);
        };
        let inherit = std::iter::once(ready.as_raw_fd()).chain(handoff.ports.iter().map(|p| p.fd));
        for fd in inherit {
            // SAFETY: clearing close-on-exec on descriptors this process owns.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
        let exe = c"/proc/self/exe";
        let arg0 = c"lb-monitor";
        let Ok(var) = std::ffi::CString::new(format!("{HANDOFF_VAR}={text}")) else {
            return (ready, ports);
        };
        // The environment as it is, with the handoff.
        let mut env: Vec<std::ffi::CString> = std::env::vars_os()
            .filter(|(k, _)| k != HANDOFF_VAR)
            .filter_map(|(k, v)| {
                use std::os::unix::ffi::OsStrExt;
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                std::ffi::CString::new(kv).ok()
            })
            .collect();
        env.push(var);
        // `lb-monitor` beside lb's executable: a small one, the monitor's code alone (its
        // relocated data and code pages are a fraction of lb's); else lb itself.
        if let Some(small) = monitor_executable() {
            let _ = nix::unistd::execve(&small, &[arg0], &env);
        }
        let _ = nix::unistd::execve(exe, &[arg0], &env);
        (ready, ports)
    }
}

/// The environment variable that carries a healthcheck probe to `lb-monitor`.
const PROBE_VAR: &str = "LB_PROBE_HANDOFF";

#[derive(Serialize, Deserialize)]
struct ProbeHandoff {
    root: std::path::PathBuf,
    id: String,
    command: Vec<String>,
    timeout_ms: u64,
}

impl Container<'_> {
    /// A healthcheck probe run by a process of its own (`lb-monitor` again, told so by
    /// one environment variable): an exec's setup touches code and memory the monitor's
    /// loop never does, and the monitor's resident size rose by ~1.5 MiB for each probe
    /// (the limit is 3 MiB). In this process when that executable is not there.
    pub(super) fn probe_apart(
        &self,
        command: &[String],
        timeout: std::time::Duration,
    ) -> (i32, String) {
        let Some(exe) = monitor_executable() else {
            return self.probe(command, timeout);
        };
        let handoff = ProbeHandoff {
            root: self.store.root().to_path_buf(),
            id: self.record.id.clone(),
            command: command.to_vec(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let Ok(text) = serde_json::to_string(&handoff) else {
            return self.probe(command, timeout);
        };
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        let spawned = std::process::Command::new(std::ffi::OsStr::from_bytes(exe.as_bytes()))
            .arg0("lb-monitor")
            .env(PROBE_VAR, text)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = spawned else {
            return (-1, "the probe could not be started".into());
        };
        // The probe keeps its own timeout; this one only guards against a stuck helper.
        // Its answer (at most 4 KiB of output) fits in the pipe, so it exits unread.
        let deadline = std::time::Instant::now() + timeout + std::time::Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return (-1, "the probe did not answer".into());
                }
            }
        }
        let mut answer = String::new();
        if let Some(mut out) = child.stdout.take() {
            use std::io::Read;
            let _ = out.read_to_string(&mut answer);
        }
        match answer.split_once('\n') {
            Some((code, output)) => (code.parse().unwrap_or(-1), output.to_string()),
            None => (-1, "the probe did not answer".into()),
        }
    }
}

/// In `lb-monitor`'s main: when its monitor asked it for a healthcheck probe, runs it
/// and prints its exit code and output; `None` otherwise.
pub fn probe_from_handoff() -> Option<i32> {
    let text = std::env::var(PROBE_VAR).ok()?;
    // SAFETY: single-threaded at the start of main; nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(PROBE_VAR) };
    let h: ProbeHandoff = serde_json::from_str(&text).ok()?;
    let timeout = std::time::Duration::from_millis(h.timeout_ms);
    let (code, output) = match lb_layerstore::Store::open(&h.root) {
        Ok(store) => match Container::open(&store, &h.id) {
            Ok(c) => c.probe(&h.command, timeout),
            Err(e) => (-1, e.to_string()),
        },
        Err(e) => (-1, e.to_string()),
    };
    print!("{code}\n{output}");
    Some(0)
}

/// `lb-monitor` in the directory of this process's executable, when it is there.
fn monitor_executable() -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let small = exe.parent()?.join("lb-monitor");
    let meta = std::fs::metadata(&small).ok()?;
    use std::os::unix::fs::PermissionsExt;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return None;
    }
    std::ffi::CString::new(small.as_os_str().as_bytes()).ok()
}

/// In lb's `main`, first: when this process is a monitor lb handed a container to, runs
/// it and returns the monitor's exit status; else `None`, and monitors this process
/// starts later are lb exec'd afresh (this executable takes the handoff).
pub fn monitor_from_handoff() -> Option<i32> {
    EXEC_TAKES_HANDOFF.store(true, std::sync::atomic::Ordering::Relaxed);
    let text = std::env::var(HANDOFF_VAR).ok()?;
    // SAFETY: single-threaded at the start of main; nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(HANDOFF_VAR) };
    let handoff: Handoff = serde_json::from_str(&text).ok()?;
    // `ps` and `top` name it as what it is (exec'd through /proc/self/exe, it is "exe").
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"lb-monitor".as_ptr()) };
    // SAFETY: the descriptors were handed over by the process that exec'd this one, which
    // owned them; each is taken once.
    let ready = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(handoff.ready) });
    let ports: Vec<Bound> = handoff
        .ports
        .iter()
        .map(|p| {
            let spec = PortSpec {
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_port: p.container_port,
                proto: if p.tcp { Proto::Tcp } else { Proto::Udp },
            };
            // SAFETY: as above.
            let fd = unsafe { OwnedFd::from_raw_fd(p.fd) };
            if p.tcp {
                Bound::Tcp(std::net::TcpListener::from(fd), spec)
            } else {
                Bound::Udp(std::net::UdpSocket::from(fd), spec)
            }
        })
        .collect();
    // The handed descriptors go to no process the monitor starts.
    for fd in std::iter::once(handoff.ready).chain(handoff.ports.iter().map(|p| p.fd)) {
        // SAFETY: setting close-on-exec on descriptors this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let report = |mut ready: std::fs::File, e: &dyn std::fmt::Display| {
        use std::io::Write;
        let _ = write!(ready, "125 {e}");
        1
    };
    let store = match lb_layerstore::Store::open(&handoff.root) {
        Ok(s) => s,
        Err(e) => return Some(report(ready, &e)),
    };
    let c = match Container::open(&store, &handoff.id) {
        Ok(c) => c,
        Err(e) => return Some(report(ready, &e)),
    };
    Some(c.run_monitor(ports, ready, handoff.start))
}
