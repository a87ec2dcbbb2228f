//! A closed standard output (`lb images | head -0`) ends lb as it ends docker and other
//! Unix tools: silently, by SIGPIPE (a shell shows 141), not with a panic (exit 101).
//!
//! lb keeps Rust's default of SIGPIPE ignored rather than restoring the default action for
//! the whole process: lb writes to pipes and sockets other than its standard output (a
//! RUN heredoc script fed through a pipe, a container's stdin, published-port relays, log
//! monitors, registry connections), where a reader that goes away must be an EPIPE error
//! that the writer handles, never the death of lb with its containers half set up. So only
//! the printing path is caught: `println!` and `eprintln!` panic when the stream is closed;
//! a panic hook keeps that quiet, the command unwinds (its guards and temporary files are
//! dropped) and `main` then dies of SIGPIPE. An error a command returns after writing to
//! a closed standard output (`?` on a write) is treated the same way.

use std::any::Any;
use std::os::fd::RawFd;

/// Whether `message` is the panic of `print!`/`eprint!` on a stream whose reader is gone.
fn is_closed_print(message: &str) -> bool {
    let broken = std::io::Error::from_raw_os_error(libc::EPIPE).to_string();
    (message.starts_with("failed printing to stdout")
        || message.starts_with("failed printing to stderr"))
        && message.ends_with(&broken)
}

/// A panic's message, when it is a string.
fn payload_text(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// Whether the panic payload `payload` is that of a print to a closed stream.
pub fn is_closed_print_panic(payload: &(dyn Any + Send)) -> bool {
    payload_text(payload).is_some_and(is_closed_print)
}

/// Installs the panic hook that keeps a print to a closed stream quiet (on any thread:
/// the command unwinds and its caller decides); other panics are reported as before.
pub fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_closed_print_panic(info.payload()) {
            return;
        }
        default(info);
    }));
}

/// Whether `fd` is a pipe or socket whose reading end is closed (poll reports an error or
/// a hang-up on it); false for files and terminals.
fn reader_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Whether `err` comes from writing to a standard output nobody reads any more.
pub fn is_closed_stdout_error(err: &anyhow::Error) -> bool {
    let broken = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken && reader_gone(libc::STDOUT_FILENO)
}

/// Ends the process as a write to a closed pipe ends a program that does not ignore
/// SIGPIPE; the exit status a shell would show for that if the signal cannot be raised.
pub fn die_of_sigpipe() -> std::process::ExitCode {
    // SAFETY: restoring a signal's default action, unblocking and raising it are
    // async-signal-safe calls with valid arguments; nothing runs after a delivered SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGPIPE);
    }
    std::process::ExitCode::from(128 + libc::SIGPIPE as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_panics_are_told_apart() {
        let broken = std::io::Error::from_raw_os_error(libc::EPIPE);
        assert!(is_closed_print(&format!(
            "failed printing to stdout: {broken}"
        )));
        assert!(is_closed_print(&format!(
            "failed printing to stderr: {broken}"
        )));
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(!is_closed_print(&format!(
            "failed printing to stdout: {other}"
        )));
        assert!(!is_closed_print("index out of bounds"));
        let payload: Box<dyn Any + Send> = Box::new(format!("failed printing to stdout: {broken}"));
        assert!(is_closed_print_panic(payload.as_ref()));
    }

    #[test]
    fn a_pipe_without_reader_is_seen() {
        let mut fds = [0; 2];
        // SAFETY: a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!reader_gone(fds[1]));
        // SAFETY: closing descriptors this test owns.
        unsafe { libc::close(fds[0]) };
        assert!(reader_gone(fds[1]));
        unsafe { libc::close(fds[1]) };
    }
}
