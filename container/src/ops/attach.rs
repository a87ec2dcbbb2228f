//! `attach`: a running detached container's streams, through its monitor's socket
//! (`crate::attach` has the wire): its output as it comes, what the caller types to its
//! input (when it keeps one open, `-i`), until the container exits or the caller's detach
//! keys are read.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Container;
use crate::attach::{
    EXIT, INPUT, RESIZE, SOCKET, STDERR, STDIN, STDOUT, STREAM_STDERR, STREAM_STDOUT, SocketPath,
};
use crate::{Error, Result};

/// The streams to attach.
#[derive(Debug, Clone, Copy)]
pub struct AttachStreams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// An attached session.
pub struct Attached {
    sock: UnixStream,
    /// The writing side, shared by the input relay and resizes (a frame is written whole).
    writer: Arc<Mutex<UnixStream>>,
    dir: std::path::PathBuf,
    /// Whether the container takes input (`-i`).
    pub takes_input: bool,
    pub tty: bool,
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container exited with this status.
    Exited(i32),
    /// The caller typed its detach keys; the container runs on.
    Detached,
}

impl Container<'_> {
    /// Attaches to the container, which must be running under its monitor. `stdin` is
    /// honoured only when the container keeps its input open (`-i`), as docker's.
    pub fn attach(&self, streams: AttachStreams) -> Result<Attached> {
        self.status().can_attach()?;
        self.connect(streams)
    }

    /// Connects to the monitor's socket and says which streams are wanted.
    fn connect(&self, streams: AttachStreams) -> Result<Attached> {
        let path = SocketPath::of(&self.dir)?;
        let sock = UnixStream::connect(path.path()).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                Error::Conflict(format!(
                    "cannot attach to {}: it runs in the foreground of the lb that started it \
                     (only containers started with -d or `lb start` can be attached)",
                    self.record.name
                ))
            }
            _ => Error::Io {
                path: self.dir.join(SOCKET),
                source: e,
            },
        })?;
        let takes_input = self.record.config.open_stdin;
        let mut wants = 0;
        if streams.stdin && takes_input {
            wants |= STDIN;
        }
        if streams.stdout {
            wants |= STDOUT;
        }
        if streams.stderr {
            wants |= STDERR;
        }
        let io = |source| Error::Io {
            path: self.dir.join(SOCKET),
            source,
        };
        (&sock).write_all(&[wants]).map_err(io)?;
        let writer = Arc::new(Mutex::new(sock.try_clone().map_err(io)?));
        Ok(Attached {
            sock,
            writer,
            dir: self.dir.clone(),
            takes_input: takes_input && streams.stdin,
            tty: self.record.config.tty,
        })
    }
}

impl Container<'_> {
    /// Attaches to a container whose monitor (`start -a`) waits for this before it
    /// starts it; then waits until it runs. The monitor's socket is tried until it is
    /// there (the monitor makes it first thing), or the monitor says the start failed.
    pub fn attach_starting(
        &self,
        mut starting: super::monitor::Starting<'_>,
        streams: AttachStreams,
    ) -> Result<Attached> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let attached = loop {
            match self.connect(streams) {
                Ok(a) => break a,
                Err(e) => {
                    if let Some(failed) = starting.failed_yet() {
                        return Err(failed);
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        };
        starting.started()?;
        Ok(attached)
    }
}

/// A frame to the monitor.
fn send_frame(writer: &Mutex<UnixStream>, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(kind);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    w.write_all(&frame)
}

impl Attached {
    /// Tells the container's terminal its size.
    pub fn resize(&self, rows: u16, cols: u16) {
        let mut body = rows.to_be_bytes().to_vec();
        body.extend_from_slice(&cols.to_be_bytes());
        let _ = send_frame(&self.writer, RESIZE, &body);
    }

    /// A handle that resizes the container's terminal from another thread.
    pub fn resizer(&self) -> impl Fn(u16, u16) + Send + 'static {
        let writer = self.writer.clone();
        move |rows: u16, cols: u16| {
            let mut body = rows.to_be_bytes().to_vec();
            body.extend_from_slice(&cols.to_be_bytes());
            let _ = send_frame(&writer, RESIZE, &body);
        }
    }

    /// Relays until the container exits or `detach_keys` are read from `input`: `input`
    /// (read in a thread of its own) to the container, its output to `out` and `err`.
    /// The keys are looked for only on a terminal (`-t`), as docker's.
    pub fn relay(
        self,
        input: Option<Box<dyn Read + Send>>,
        out: &mut dyn Write,
        err: &mut dyn Write,
        detach_keys: &[u8],
    ) -> Result<AttachEnd> {
        let detached = Arc::new(AtomicBool::new(false));
        if let (Some(mut input), true) = (input, self.takes_input) {
            let writer = self.writer.clone();
            let detached = detached.clone();
            let keys = if self.tty {
                detach_keys.to_vec()
            } else {
                Vec::new()
            };
            let sock = self.sock.try_clone().ok();
            std::thread::spawn(move || {
                let mut escape = Escape::new(keys);
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let (pass, hit) = escape.scan(&buf[..n]);
                    if !pass.is_empty() && send_frame(&writer, INPUT, &pass).is_err() {
                        return;
                    }
                    if hit {
                        detached.store(true, Ordering::SeqCst);
                        if let Some(s) = &sock {
                            let _ = s.shutdown(std::net::Shutdown::Both);
                        }
                        return;
                    }
                }
                // The caller's input ended: the container's stays open (docker's, for
                // a container that is not `--attach`ed from its start).
                let w = writer.lock().unwrap_or_else(|p| p.into_inner());
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
        let mut reader = std::io::BufReader::new(&self.sock);
        let mut header = [0u8; 8];
        loop {
            if reader.read_exact(&mut header).is_err() {
                break;
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let mut body = vec![0u8; len.min(16 * 1024 * 1024)];
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            match header[0] {
                STREAM_STDOUT => {
                    let _ = out.write_all(&body);
                    let _ = out.flush();
                }
                STREAM_STDERR => {
                    let _ = err.write_all(&body);
                    let _ = err.flush();
                }
                EXIT if body.len() == 4 => {
                    return Ok(AttachEnd::Exited(i32::from_be_bytes([
                        body[0], body[1], body[2], body[3],
                    ])));
                }
                _ => {}
            }
        }
        if detached.load(Ordering::SeqCst) {
            return Ok(AttachEnd::Detached);
        }
        // The monitor went away without a word (killed): the record says how it ended.
        let st = super::wait_exited(&self.dir, Some(std::time::Duration::from_secs(10)));
        Ok(AttachEnd::Exited(st.exit_code))
    }
}

/// Finds the detach keys in the input: bytes that may start them are held back until the
/// sequence is whole (detach) or broken (they are passed on), as docker's escape proxy.
struct Escape {
    keys: Vec<u8>,
    held: usize,
}

impl Escape {
    fn new(keys: Vec<u8>) -> Escape {
        Escape { keys, held: 0 }
    }

    /// The bytes to pass on, and whether the keys were read.
    fn scan(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut pass = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            pass.extend_from_slice(data);
            return (pass, false);
        }
        for &b in data {
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (pass, true);
                }
            } else {
                pass.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
                if b == self.keys[0] {
                    self.held = 1;
                    if self.keys.len() == 1 {
                        return (pass, true);
                    }
                } else {
                    pass.push(b);
                }
            }
        }
        (pass, false)
    }
}

/// docker's `--detach-keys` value (`ctrl-p,ctrl-q`, `a,ctrl-[`): the bytes it stands for.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let bad = || Error::InvalidOption(format!("Invalid detach keys ({spec}) provided"));
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c.as_bytes();
                if c.len() != 1 {
                    return Err(bad());
                }
                match c[0] {
                    b'a'..=b'z' => Ok(c[0] - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' => Ok(27),
                    b'\\' => Ok(28),
                    b']' => Ok(29),
                    b'^' => Ok(30),
                    b'_' => Ok(31),
                    _ => Err(bad()),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(bad())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_docker_s() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-[").unwrap(), vec![b'a', 27]);
        assert!(parse_detach_keys("ctrl-pp").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn escape_holds_a_started_sequence_and_passes_a_broken_one() {
        let mut e = Escape::new(vec![16, 17]);
        assert_eq!(e.scan(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(e.scan(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(e.scan(b"x\x10\x10"), (b"x\x10".to_vec(), false));
        assert_eq!(e.scan(b"\x11rest"), (Vec::new(), true));
    }
}
