//! The commands on existing containers: `logs`, `stop`, `kill`, `rm`, `wait`,
//! `commit`, `export`.

use std::io::Write;

use super::*;

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Number of lines to show from the end
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42
    /// minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for
    /// 42 minutes)
    #[arg(long)]
    until: Option<String>,
    container: String,
}

pub fn logs(store: &Store, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().with_context(|| format!("invalid --tail {n}"))?),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let time = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| {
                crate::events_cmd::timestamp(v, now)
                    .with_context(|| format!("invalid value for \"{name}\""))
            })
            .transpose()
    };
    let opts = lb_container::ops::LogsOptions {
        follow: args.follow,
        timestamps: args.timestamps,
        tail,
        since: time("since", &args.since)?,
        until: time("until", &args.until)?,
    };
    Container::open(store, &args.container)?.logs(
        &opts,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(store: &Store, args: StopArgs) -> anyhow::Result<ExitCode> {
    each(&args.containers, |key| {
        let c = Container::open(store, key)?;
        c.stop(
            args.time
                .map_or_else(|| c.stop_timeout(), Duration::from_secs),
        )
    })
}

/// Runs `op` on each container named, printing each name done and each error (docker's
/// way with `stop a b c`): exit 1 if any failed.
fn each(
    keys: &[String],
    op: impl Fn(&str) -> lb_container::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for key in keys {
        match op(key) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("lb: {}", crate::error_text(&e.into()));
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct RestartArgs {
    /// Seconds to wait for stop before killing the container (default: its --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `lb restart`: stop (as `lb stop`), then start again under a monitor.
pub fn restart(store: &Store, args: RestartArgs) -> anyhow::Result<ExitCode> {
    each(&args.containers, |key| {
        let c = Container::open(store, key)?;
        c.stop(
            args.time
                .map_or_else(|| c.stop_timeout(), Duration::from_secs),
        )?;
        // Its monitor has recorded the exit: open it again for the start.
        Container::open(store, key)?.start()
    })
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

/// `lb rename`: quiet on success, as docker.
pub fn rename(store: &Store, args: RenameArgs) -> anyhow::Result<ExitCode> {
    let renamed =
        Container::open(store, &args.container).and_then(|mut c| c.rename(&args.new_name));
    Ok(match renamed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb: {}", crate::error_text(&e.into()));
            eprintln!("Error: failed to rename container named {}", args.container);
            ExitCode::from(1)
        }
    })
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// `lb port`: the container's published ports (`80/tcp -> 0.0.0.0:8080`), or the host
/// sides of one.
pub fn port(store: &Store, args: PortArgs) -> anyhow::Result<ExitCode> {
    let c = Container::open(store, &args.container)?;
    let specs = c.record.config.port_specs();
    let wanted = args.port.as_deref().map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut shown = 0;
    for p in &specs {
        let key = format!("{}/{}", p.container_port, p.proto);
        let host = format!("{}:{}", p.host_ip, p.host_port);
        match &wanted {
            Some(w) if *w != key => {}
            Some(_) => {
                println!("{host}");
                shown += 1;
            }
            None => println!("{key} -> {host}"),
        }
    }
    if let Some(w) = wanted
        && shown == 0
    {
        eprintln!(
            "Error: No public port '{w}' published for {}",
            args.container
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `lb pause`: each container's processes frozen.
pub fn pause(store: &Store, args: PauseArgs) -> anyhow::Result<ExitCode> {
    each(&args.containers, |key| Container::open(store, key)?.pause())
}

/// `lb unpause`.
pub fn unpause(store: &Store, args: PauseArgs) -> anyhow::Result<ExitCode> {
    each(&args.containers, |key| {
        Container::open(store, key)?.unpause()
    })
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn kill(store: &Store, args: KillArgs) -> anyhow::Result<ExitCode> {
    let sig = lb_container::ops::parse_signal(&args.signal)?;
    each(&args.containers, |key| {
        Container::open(store, key)?.kill(sig)
    })
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill and remove a running container
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(store: &Store, args: RmArgs) -> anyhow::Result<ExitCode> {
    lb_container::network::reconcile(store);
    each(&args.containers, |key| {
        Container::open(store, key)?.remove(args.force, args.volumes)
    })
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(store: &Store, args: WaitArgs) -> anyhow::Result<ExitCode> {
    for key in &args.containers {
        println!("{}", Container::open(store, key)?.wait().exit_code);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct CommitArgs {
    /// Commit message
    #[arg(short, long, default_value = "")]
    message: String,
    /// Author
    #[arg(short, long, default_value = "")]
    author: String,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, SHELL)
    #[arg(short, long)]
    change: Vec<String>,
    container: String,
    /// Name for the new image
    name: Option<String>,
}

pub fn commit(store: &Store, args: CommitArgs) -> anyhow::Result<ExitCode> {
    let c = store.container::<ContainerConfig>(&args.container)?;
    let parent = store.image_by_manifest(c.image)?;
    let name = args
        .name
        .as_deref()
        .map(Reference::parse)
        .transpose()
        .with_context(|| format!("invalid reference {:?}", args.name))?;
    // The parent's run config with the changes applied replaces it whole.
    let base = match serde_json::to_value(parent.config.config())? {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    let mut cfg = lb_builder::ImageConfig::from_base(base, None);
    crate::image_cmds::apply_changes(&mut cfg, &args.change)?;
    let what = lb_layerstore::LayerCommit {
        created_by: c.config.command(),
        comment: args.message.clone(),
        author: args.author.clone(),
        config_changes: if args.change.is_empty() {
            Default::default()
        } else {
            cfg.config
        },
    };
    let dir = store.container_dir(&c.id);
    let image = lb_container::rootfs::with_changes(store, &c, &dir, |changes| {
        Ok(store.commit_layer(&parent, changes, name.as_ref(), &what)?)
    })?;
    println!("{}", image.config_digest);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output
    #[arg(short, long)]
    output: Option<PathBuf>,
    container: String,
}

/// `lb export`: the container's whole file system (its image's layers with its own changes
/// on top) as one tar, as `docker export` writes it (`write_merged`: a read-only overlay in
/// a mount namespace of this process's own, seen by no one and gone with the process; on
/// vfs the container's tree as it is).
pub fn export(store: &Store, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let c = store.container::<ContainerConfig>(&args.container)?;
    let dir = store.container_dir(&c.id);
    let merged = lb_container::rootfs::merged(store, &c, &dir)?;
    crate::image_cmds::write_archive(args.output.as_deref(), |out| {
        Ok(lb_builder::write_merged(&merged, &dir, out)?)
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

/// `lb diff`: docker's `C`/`A`/`D` lines, sorted by path.
pub fn diff(store: &Store, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let changes = Container::open(store, &args.container)?.changes()?;
    let mut out = std::io::stdout().lock();
    for c in changes {
        writeln!(out, "{} {}", c.kind.letter(), c.path)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `lb update`: each container's name as given once it is updated; a failure is said
/// and the others are still updated (exit 1), as docker's.
pub fn update(store: &Store, args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let opts = lb_container::ops::UpdateOptions {
        memory: args.memory.clone(),
        memory_swap: args.memory_swap.clone(),
        cpus: args.cpus,
        cpu_period: args.cpu_period,
        cpu_quota: args.cpu_quota,
        pids_limit: args.pids_limit,
        restart: args.restart.clone(),
    };
    let nothing = opts.memory.is_none()
        && opts.memory_swap.is_none()
        && opts.cpus.is_none()
        && opts.cpu_period.is_none()
        && opts.cpu_quota.is_none()
        && opts.pids_limit.is_none()
        && opts.restart.is_none();
    if nothing {
        bail!("you must provide one or more flags when using this command");
    }
    let mut code = ExitCode::SUCCESS;
    for key in &args.containers {
        match Container::open(store, key).and_then(|mut c| c.update(&opts)) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("lb: {}", crate::error_text(&e.into()));
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}
