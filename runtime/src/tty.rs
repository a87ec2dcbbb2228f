//! A container's terminal (`-t`): a pseudo-terminal whose slave becomes the container's
//! controlling terminal and `/dev/console`, and whose master lb relays to its own standard
//! streams. lb's terminal, when it has one, is put in raw mode for the relay (keys, ^C and
//! line editing go to the container's shell, as with docker) and its size is copied to the
//! pty at start and on every SIGWINCH.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::error::{Error, Result};
use crate::launch::Stdio;

/// A pseudo-terminal pair.
pub struct Pty {
    pub master: OwnedFd,
    slave: OwnedFd,
    slave_path: std::path::PathBuf,
}

impl Pty {
    /// Opens a pty sized like lb's own terminal (standard output's), if it has one.
    pub fn open() -> Result<Pty> {
        let pair = nix::pty::openpty(None, None).map_err(|e| Error::sys("openpty", e))?;
        for fd in [&pair.master, &pair.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(|e| Error::sys("pty close-on-exec", e))?;
        }
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd()))
            .map_err(|e| Error::io("the pty's name", e))?;
        let pty = Pty {
            master: pair.master,
            slave: pair.slave,
            slave_path,
        };
        copy_window_size(1, pty.master.as_raw_fd());
        Ok(pty)
    }

    /// The container's side, as its standard streams; the master stays with the caller.
    pub fn container_stdio(&self) -> Result<Stdio> {
        Ok(Stdio::Tty {
            slave: self
                .slave
                .try_clone()
                .map_err(|e| Error::io("dup pty", e))?,
            slave_path: self.slave_path.clone(),
        })
    }

    /// Gives up lb's copy of the slave once the container holds its own, so that the master
    /// reads end-of-file (EIO) when the container's last process closes it.
    pub fn close_slave(self) -> OwnedFd {
        drop(self.slave);
        self.master
    }
}

/// The size of the terminal on `fd` (rows, columns), if it is one.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ with a valid winsize buffer.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0).then_some((ws.ws_row, ws.ws_col))
    }
}

fn copy_window_size(from: RawFd, to: RawFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize buffer; failures (no terminal)
    // leave the pty's default size.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The master that SIGWINCH resizes (-1: none).
static RESIZE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let master = RESIZE.load(Ordering::Relaxed);
    if master >= 0 {
        copy_window_size(1, master);
    }
}

/// lb's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// lb's standard input in raw mode, when it is a terminal.
    pub fn of_stdin() -> Option<RawMode> {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            RawMode::enter(std::io::stdin().as_fd())
        } else {
            None
        }
    }

    fn enter(fd: BorrowedFd) -> Option<RawMode> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Relays a container's terminal while it runs: the master's output to lb's standard
/// output, and (with `interactive`) lb's standard input to the master. Returns a guard; its
/// `finish` waits until the container side is closed and everything is written, then
/// restores lb's terminal.
pub struct Relay {
    output: std::thread::JoinHandle<()>,
    _raw: Option<RawMode>,
}

/// What else a relay does with the container's output (a foreground run's log).
pub type Also = Box<dyn FnMut(&[u8]) + Send>;

impl Relay {
    pub fn start(master: OwnedFd, interactive: bool) -> Result<Relay> {
        Relay::start_with(master, interactive, None)
    }

    /// [`Relay::start`], each piece of output also handed to `also`.
    pub fn start_with(master: OwnedFd, interactive: bool, mut also: Option<Also>) -> Result<Relay> {
        let raw = if interactive {
            RawMode::of_stdin()
        } else {
            None
        };
        RESIZE.store(master.as_raw_fd(), Ordering::Relaxed);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_winch),
            nix::sys::signal::SaFlags::SA_RESTART,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only makes two ioctls.
        let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::SIGWINCH, &action) };
        if interactive {
            let mut to = std::fs::File::from(
                master
                    .try_clone()
                    .map_err(|e| Error::io("dup pty master", e))?,
            );
            // Ends with lb: a read of lb's stdin cannot be interrupted portably.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        let mut from = std::fs::File::from(master);
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            let mut out = std::io::stdout();
            // EIO: every holder of the slave has closed it.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(f) = &mut also {
                    f(&buf[..n]);
                }
                if out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
            RESIZE.store(-1, Ordering::Relaxed);
        });
        Ok(Relay { output, _raw: raw })
    }

    /// Waits for the container's side of the terminal to close and its output to be
    /// written, then restores lb's terminal.
    pub fn finish(self) {
        let _ = self.output.join();
    }
}
