//! `lb attach`: a terminal on a running detached container, docker's way: its output as
//! it comes, lb's input to it when it keeps its input open (`-i`), lb's signals passed on
//! (`--sig-proxy`, without a terminal), the detach keys (`ctrl-p,ctrl-q`) to leave it
//! running, and the container's exit status as lb's.

use super::*;
use lb_container::ops::{AttachEnd, AttachStreams, parse_detach_keys};

#[derive(Args)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", value_name = "BOOL", default_value_t = true,
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    sig_proxy: bool,
    /// The container
    container: String,
}

/// docker's default detach keys.
const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

pub fn attach(store: &Store, args: AttachArgs) -> anyhow::Result<ExitCode> {
    let keys = parse_detach_keys(args.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    let c = Container::open(store, &args.container)?;
    if args.sig_proxy && !c.record.config.tty {
        lb_runtime::hold_signals();
    }
    let attached = c.attach(AttachStreams {
        stdin: !args.no_stdin,
        stdout: true,
        stderr: true,
    })?;
    relay(&c, attached, !args.no_stdin, args.sig_proxy, &keys)
}

/// `start -a [-i]`: the container started by a monitor that waits for this attach first,
/// so none of its output is missed; one that runs already is attached as it is.
pub(super) fn start_attached(
    store: &Store,
    key: &str,
    stdin: bool,
    detach_keys: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let keys = parse_detach_keys(detach_keys.unwrap_or(DEFAULT_DETACH_KEYS))?;
    let c = Container::open(store, key)?;
    if !c.record.config.tty {
        lb_runtime::hold_signals();
    }
    let streams = AttachStreams {
        stdin,
        stdout: true,
        stderr: true,
    };
    let attached = match c.start_for_attach()? {
        Some(starting) => c.attach_starting(starting, streams),
        None => c.attach(streams),
    };
    let attached = match attached {
        Ok(a) => a,
        Err(lb_container::Error::NotStarted { code, message }) => {
            eprintln!("lb: {message}");
            return Ok(ExitCode::from(code));
        }
        Err(e) => return Err(e.into()),
    };
    relay(&c, attached, stdin, true, &keys)
}

/// An attached session run to its end: lb's input to the container (`stdin`), its output
/// to lb's, lb's signals passed on (`sig_proxy`, without a terminal); the container's
/// exit status, or 1 after the detach keys (docker's "read escape sequence").
fn relay(
    c: &Container,
    attached: lb_container::ops::Attached,
    stdin: bool,
    sig_proxy: bool,
    keys: &[u8],
) -> anyhow::Result<ExitCode> {
    let tty = attached.tty;
    if sig_proxy && !tty {
        lb_runtime::forward_signals_to(c.state().pid);
    }
    // A terminal: lb's in raw mode (keys go to the container's as typed), its size given
    // now and again whenever it changes.
    let raw = (tty && attached.takes_input)
        .then(lb_runtime::tty::RawMode::of_stdin)
        .flatten();
    if tty && let Some((rows, cols)) = lb_runtime::tty::window_size(1) {
        attached.resize(rows, cols);
        let resize = attached.resizer();
        std::thread::spawn(move || {
            let mut last = (rows, cols);
            loop {
                std::thread::sleep(Duration::from_millis(250));
                if let Some(now) = lb_runtime::tty::window_size(1)
                    && now != last
                {
                    resize(now.0, now.1);
                    last = now;
                }
            }
        });
    }
    let input: Option<Box<dyn std::io::Read + Send>> =
        stdin.then(|| Box::new(std::io::stdin()) as _);
    let end = attached.relay(input, &mut std::io::stdout(), &mut std::io::stderr(), keys)?;
    drop(raw);
    Ok(match end {
        AttachEnd::Exited(code) => ExitCode::from(code as u8),
        AttachEnd::Detached => {
            eprintln!("read escape sequence");
            ExitCode::from(1)
        }
    })
}
