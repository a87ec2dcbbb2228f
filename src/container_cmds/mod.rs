//! Container commands: `run`, `start`, `exec` (processes started: `run.rs`) and `ps`,
//! `logs`, `stop`, `kill`, `rm`, `wait`, `commit`, `export` (`manage.rs`). They tie the
//! store (images, snapshots, container records) to the runtime; the rules live in
//! `run_spec` and the crates. What both halves use is here.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{ArgAction, Args};
use lb_container::{Container, ContainerConfig, Record};
use lb_layerstore::{Reference, Store};
use lb_runtime::state::{State, Status};

use lb_container::run_spec::{self, ImageRunConfig, RunOptions};

mod manage;
mod run;

pub use manage::{
    CommitArgs, ExportArgs, KillArgs, LogsArgs, PsArgs, RmArgs, StopArgs, WaitArgs, commit, export,
    kill, logs, ps, rm, stop, wait,
};
pub use run::{ExecArgs, RunArgs, StartArgs, exec, run, start};

/// The options `run` and `exec` share: how the process runs and what it sees.
#[derive(Args)]
struct ProcessArgs {
    /// Run in the background (run: print the container id)
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass lb's own)
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name|uid[:group|gid])
    #[arg(short, long)]
    user: Option<String>,
}

/// `IMAGE [COMMAND] [ARG...]` (run) and `CONTAINER COMMAND [ARG...]` (exec) are one list to
/// clap, as to docker: everything after the first word belongs to the command, flags
/// included (`lb run IMAGE ls -l`).
fn split_target(words: &[String]) -> (&str, &[String]) {
    match words.split_first() {
        Some((first, rest)) => (first, rest),
        None => ("", &[]),
    }
}

/// lb's own failures in `run` exit 125, as docker's.
fn fail125(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("lb: {e:#}");
    ExitCode::from(125)
}

fn random_id() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// docker-style generated names: adjective_noun.
fn generated_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "sharp", "tender", "witty",
    ];
    const NOUN: [&str; 16] = [
        "turing", "hopper", "lovelace", "ritchie", "thompson", "knuth", "dijkstra", "liskov",
        "torvalds", "hamilton", "noether", "curie", "babbage", "shannon", "backus", "kay",
    ];
    let n = u32::from_str_radix(&id[..8], 16).unwrap_or(0) as usize;
    format!("{}_{}_{}", ADJ[n % 16], NOUN[(n / 16) % 16], &id[8..12])
}

fn image_run_config(image: &lb_layerstore::Image) -> ImageRunConfig {
    let c = image.config.config().clone().unwrap_or_default();
    ImageRunConfig {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        stop_signal: c.stop_signal().clone().unwrap_or_default(),
    }
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Binds the host sockets of `specs` (before the container starts: a port in use fails
/// the run), returning them with the ports actually bound.
fn bind_ports(
    specs: &[lb_network::ports::PortSpec],
) -> anyhow::Result<Vec<lb_network::ports::Bound>> {
    specs
        .iter()
        .map(|s| lb_network::ports::bind(*s).map_err(anyhow::Error::from))
        .collect()
}

fn now() -> String {
    lb_layerstore::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

fn devnull() -> anyhow::Result<OwnedFd> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

fn dup(fd: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: borrowing a standard descriptor for the duration of the dup.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Ok(b.try_clone_to_owned()?)
}

fn ago(rfc: &str) -> String {
    let then = lb_layerstore::parse_rfc3339(rfc).unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::image_cmds::human_duration(now - then)
}

fn status_text(st: &State) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(&st.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
    }
}
