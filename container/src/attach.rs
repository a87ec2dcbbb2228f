//! Attaching to a detached container's streams (`lb attach`): its monitor listens on a
//! unix socket in the container's directory, sends each attached client the output it
//! copies to the log, and passes what clients type to the container's standard input
//! (kept open with `-i`) or its terminal (`-t`).
//!
//! The wire, both ways on one stream socket:
//! - the client first sends one byte: the streams it wants ([`STDIN`], [`STDOUT`],
//!   [`STDERR`]);
//! - the monitor sends docker's multiplexed frames (its `stdcopy`: a stream byte, three
//!   zero bytes, a big-endian u32 length, the bytes), stream 1 for stdout and 2 for stderr
//!   (1 for a terminal's one stream), and at the container's exit an [`EXIT`] frame whose
//!   4 bytes are its status;
//! - the client sends frames of a kind byte ([`INPUT`] or [`RESIZE`]), a big-endian u32
//!   length and the bytes; closing its writing side ends its input only.
//!
//! The monitor never blocks on a client: output a client does not read is held up to
//! [`MAX_PENDING`] bytes, past which the client is let go (it can attach again); input
//! waits while the container does not read its standard input, and clients' input is not
//! read meanwhile.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;

use crate::{Error, Result};

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// The streams a client wants (the first byte it sends).
pub const STDIN: u8 = 1;
pub const STDOUT: u8 = 2;
pub const STDERR: u8 = 4;

/// Frame kinds, monitor to client: docker's stream numbers, and the exit status.
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;
pub const EXIT: u8 = 0xE0;

/// Frame kinds, client to monitor: bytes for the container's input, a terminal's size
/// (rows and columns, big-endian u16 each).
pub const INPUT: u8 = 0;
pub const RESIZE: u8 = 1;

/// Output held for a client that does not read it, before it is let go.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;
/// Input held for a container that does not read it, before clients are no longer read.
const MAX_INPUT: usize = 64 * 1024;
/// The largest frame a client may send.
const MAX_FRAME: usize = 64 * 1024;

/// The socket's address for `dir`: through the directory's descriptor, as a unix socket's
/// path is limited to 108 bytes and a store's may be longer.
pub(crate) struct SocketPath {
    _dir: OwnedFd,
    path: PathBuf,
}

impl SocketPath {
    pub(crate) fn of(dir: &Path) -> Result<SocketPath> {
        let d = nix::fcntl::open(
            dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::Sys {
            what: "open the container's directory",
            errno: e,
        })?;
        let path = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd()));
        Ok(SocketPath { _dir: d, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A frame header, monitor to client.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// The monitor's side: the listening socket, the clients, and where their input goes.
pub struct AttachServer {
    /// None once the container has ended for good ([`AttachServer::stop_listening`]).
    listener: Option<UnixListener>,
    dir: PathBuf,
    clients: Vec<Client>,
    /// The container's standard input (`-i`: a pipe's writing end) or its terminal's
    /// master (`-t`); none when it reads no input.
    input: Option<File>,
    /// Clients' input the container has not read yet.
    input_pending: Vec<u8>,
    /// Its terminal's master (`-t`), for sizes.
    tty: Option<OwnedFd>,
}

struct Client {
    sock: UnixStream,
    /// The streams it wants, once it has said.
    wants: Option<u8>,
    /// Output it has not read yet.
    out: Vec<u8>,
    /// A frame of its input not whole yet.
    partial: Vec<u8>,
    /// Whether its input goes on.
    reading: bool,
    gone: bool,
}

impl AttachServer {
    /// Listens in `dir` (a stale socket of an earlier monitor is replaced). Only the
    /// monitor's user (root, or the user lb runs as) can connect: the socket is 0600 in the
    /// container's directory, and each client's credentials are checked.
    pub fn bind(dir: &Path) -> Result<AttachServer> {
        let at = dir.join(SOCKET);
        let _ = std::fs::remove_file(&at);
        let path = SocketPath::of(dir)?;
        let listener = UnixListener::bind(path.path()).map_err(|source| Error::Io {
            path: at.clone(),
            source,
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| Error::Io {
                path: at.clone(),
                source,
            },
        )?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Io { path: at, source })?;
        Ok(AttachServer {
            listener: Some(listener),
            dir: dir.to_path_buf(),
            clients: Vec::new(),
            input: None,
            input_pending: Vec::new(),
            tty: None,
        })
    }

    /// Where clients' input goes while the container now started runs: its standard
    /// input's writing end, or its terminal's master (also resized by clients).
    pub fn set_input(&mut self, input: Option<OwnedFd>, tty: bool) {
        self.input_pending.clear();
        self.tty = match (&input, tty) {
            (Some(fd), true) => fd.try_clone().ok(),
            _ => None,
        };
        self.input = input.map(|fd| {
            set_nonblocking(fd.as_fd());
            File::from(fd)
        });
    }

    /// Takes no more clients, and the socket is gone: the container has ended for good.
    /// Done before its exit is recorded, so that a `start -a` that finds it exited never
    /// reaches this monitor.
    pub fn stop_listening(&mut self) {
        self.listener = None;
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
    }

    /// Ends the clients' session at the container's exit: what they have not read yet is
    /// sent (each gets up to a second), then the exit status, and they are let go.
    pub fn finish(&mut self, code: i32) {
        let status = code.to_be_bytes();
        for c in &mut self.clients {
            if c.gone {
                continue;
            }
            c.out.extend_from_slice(&frame_header(EXIT, 4));
            c.out.extend_from_slice(&status);
            let _ = c.sock.set_nonblocking(false);
            let _ = c
                .sock
                .set_write_timeout(Some(std::time::Duration::from_secs(1)));
            let _ = c.sock.write_all(&c.out);
        }
        self.clients.clear();
        self.input = None;
        self.tty = None;
        self.input_pending.clear();
    }

    /// Waits up to `timeout` for a first client and the streams it wants (`start -a`:
    /// attached before the container starts, it misses none of its output).
    pub fn wait_for_client(&mut self, timeout: std::time::Duration) {
        use nix::poll::{PollFd, PollTimeout, poll};
        let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::NONE);
        let Some(listener) = &self.listener else {
            return;
        };
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, ms), Ok(n) if n > 0) {
            return;
        }
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        if !same_user(&sock) {
            return;
        }
        let mut wants = [0u8];
        let _ = sock.set_nonblocking(false);
        let _ = sock.set_read_timeout(Some(timeout));
        if sock.read_exact(&mut wants).is_err() || sock.set_nonblocking(true).is_err() {
            return;
        }
        let _ = sock.set_read_timeout(None);
        self.clients.push(Client {
            sock,
            wants: Some(wants[0]),
            out: Vec::new(),
            partial: Vec::new(),
            reading: true,
            gone: false,
        });
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((sock, _)) = listener.accept() {
            if !same_user(&sock) || sock.set_nonblocking(true).is_err() {
                continue;
            }
            self.clients.push(Client {
                sock,
                wants: None,
                out: Vec::new(),
                partial: Vec::new(),
                reading: true,
                gone: false,
            });
        }
    }

    /// Writes held input to the container as far as it takes it.
    fn write_input(&mut self) {
        let Some(input) = &mut self.input else {
            self.input_pending.clear();
            return;
        };
        while !self.input_pending.is_empty() {
            match input.write(&self.input_pending) {
                Ok(n) => {
                    self.input_pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // The container closed its input: what clients type goes nowhere.
                Err(_) => {
                    self.input = None;
                    self.input_pending.clear();
                    return;
                }
            }
        }
    }

    /// Reads a client's frames while the container takes input.
    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.input_pending.len() >= MAX_INPUT {
                return;
            }
            let c = &mut self.clients[i];
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    c.reading = false;
                    return;
                }
                Ok(n) => {
                    let mut data = &buf[..n];
                    if c.wants.is_none() {
                        c.wants = Some(data[0]);
                        data = &data[1..];
                    }
                    c.partial.extend_from_slice(data);
                    self.take_frames(i);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    c.gone = true;
                    return;
                }
            }
        }
    }

    /// Acts on a client's whole frames.
    fn take_frames(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            if c.partial.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes([c.partial[1], c.partial[2], c.partial[3], c.partial[4]])
                as usize;
            if len > MAX_FRAME {
                // Not lb's client: let it go.
                c.gone = true;
                break;
            }
            if c.partial.len() < 5 + len {
                break;
            }
            let kind = c.partial[0];
            let body: Vec<u8> = c.partial.drain(..5 + len).skip(5).collect();
            let wants_input = c.wants.is_some_and(|w| w & STDIN != 0);
            match kind {
                INPUT if wants_input && self.input.is_some() => {
                    self.input_pending.extend_from_slice(&body)
                }
                RESIZE if body.len() == 4 => {
                    if let Some(tty) = &self.tty {
                        let size = libc::winsize {
                            ws_row: u16::from_be_bytes([body[0], body[1]]),
                            ws_col: u16::from_be_bytes([body[2], body[3]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ with a valid winsize on a pty master.
                        unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                    }
                }
                _ => {}
            }
        }
        self.write_input();
    }
}

impl Client {
    /// Sends what it has not read, as far as its socket takes it; over the limit it is
    /// let go.
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.gone {
            use nix::sys::socket::{MsgFlags, send};
            match send(
                self.sock.as_raw_fd(),
                &self.out,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(_) => self.gone = true,
            }
        }
        if self.out.len() > MAX_PENDING {
            self.gone = true;
        }
    }
}

impl crate::json_log::Tee for AttachServer {
    fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds: Vec<(BorrowedFd<'_>, PollFlags)> = self
            .listener
            .iter()
            .map(|l| (l.as_fd(), PollFlags::POLLIN))
            .collect();
        for c in &self.clients {
            let mut want = PollFlags::empty();
            if c.reading && self.input_pending.len() < MAX_INPUT {
                want |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                want |= PollFlags::POLLOUT;
            }
            fds.push((c.sock.as_fd(), want));
        }
        if let (Some(input), false) = (&self.input, self.input_pending.is_empty()) {
            fds.push((input.as_fd(), PollFlags::POLLOUT));
        }
        fds
    }

    fn ready(&mut self, revents: &[PollFlags]) {
        let clients = self.clients.len();
        let first = usize::from(self.listener.is_some());
        for (i, ev) in revents.iter().enumerate().skip(first).take(clients) {
            let i = i - first;
            if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.read_client(i);
            }
            if ev.contains(PollFlags::POLLOUT) {
                self.clients[i].flush();
            }
        }
        if !self.input_pending.is_empty() {
            self.write_input();
        }
        self.clients.retain(|c| !c.gone);
        if first == 1
            && revents
                .first()
                .is_some_and(|e| e.contains(PollFlags::POLLIN))
        {
            self.accept();
        }
    }

    fn output(&mut self, stream: &'static str, data: &[u8]) -> bool {
        let (bit, number) = match stream {
            "stderr" => (STDERR, STREAM_STDERR),
            _ => (STDOUT, STREAM_STDOUT),
        };
        for c in &mut self.clients {
            // A client that has not said yet what it wants gets nothing it did not ask for.
            if c.wants.is_some_and(|w| w & bit != 0) {
                c.out.extend_from_slice(&frame_header(number, data.len()));
                c.out.extend_from_slice(data);
                c.flush();
            }
        }
        self.clients.retain(|c| !c.gone);
        true
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        // Once it stopped listening, the path may be a later monitor's socket.
        if self.listener.is_some() {
            let _ = std::fs::remove_file(self.dir.join(SOCKET));
        }
    }
}

/// Whether the peer of `sock` runs as this process's user (or root).
fn same_user(sock: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(sock, PeerCredentials) {
        Ok(cred) => cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => false,
    }
}

fn set_nonblocking(fd: BorrowedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
        );
    }
}
