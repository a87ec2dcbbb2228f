//! Container commands: `run`, `start`, `exec` (processes started: `run.rs`) and `ps`,
//! `logs`, `stop`, `kill`, `rm`, `wait`, `commit`, `export` (`manage.rs`). They tie the
//! store (images, snapshots, container records) to the runtime; the rules live in
//! `run_spec` and the crates. What both halves use is here.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Args};
use lb_container::ops::{devnull, now};
use lb_container::{Container, ContainerConfig};
use lb_layerstore::{Reference, Store};
use lb_runtime::state::{State, Status};

use lb_container::run_spec::RunOptions;

mod attach;
mod cp;
mod manage;
mod ps;
mod run;
mod run_flags;
mod stats;

pub use attach::{AttachArgs, attach};
pub use cp::{CpArgs, cp};
pub use manage::{
    CommitArgs, DiffArgs, ExportArgs, KillArgs, LogsArgs, PauseArgs, PortArgs, RenameArgs,
    RestartArgs, RmArgs, StopArgs, UpdateArgs, WaitArgs, commit, diff, export, kill, logs, pause,
    port, rename, restart, rm, stop, unpause, update, wait,
};
pub use ps::{PsArgs, ps};
pub(crate) use ps::{command_column, labels, ports_column, status_column};
pub use run::{ExecArgs, RunArgs, StartArgs, create, exec, run, start};
pub use stats::{StatsArgs, TopArgs, stats, top};

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
fn fail125(e: anyhow::Error) -> ExitCode {
    eprintln!("lb: {}", crate::error_text(&e));
    ExitCode::from(125)
}

fn dup(fd: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: borrowing a standard descriptor for the duration of the dup.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    Ok(b.try_clone_to_owned()?)
}

/// How long ago an RFC 3339 time was, in go-units' words ("3 minutes").
pub(crate) fn ago(rfc: &str) -> String {
    let then = lb_layerstore::parse_rfc3339(rfc).unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::image_cmds::human_duration(now - then)
}

fn status_text(st: &State) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running if st.paused => format!("Up {} (Paused)", ago(&st.started_at)),
        Status::Running => format!("Up {}", ago(&st.started_at)),
        Status::Exited if st.restarting => {
            format!("Restarting ({}) {} ago", st.exit_code, ago(&st.finished_at))
        }
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
    }
}
