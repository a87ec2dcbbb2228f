//! The commands that start a container's processes: `run` (foreground, or `-d` under a
//! monitor process), `start` and `exec`.

use super::run_flags::{CidFile, ensure_image};
use super::*;

/// Why a foreground run's container did not start: the runtime's failure, with its
/// status, or the start's own step before it (a `--device` the host lacks), whose status
/// is docker's client's rule on the message (127 for a missing file, 126 for a refusal).
enum StartError {
    Runtime(lb_runtime::Error),
    Container(lb_container::Error),
}

impl StartError {
    fn code(&self) -> i32 {
        match self {
            StartError::Runtime(e) => e.code(),
            StartError::Container(e) => {
                let text = e.to_string();
                if text.contains("no such file or directory")
                    || text.contains("executable file not found")
                {
                    127
                } else if text.contains("permission denied") {
                    126
                } else {
                    125
                }
            }
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Runtime(e) => e.fmt(f),
            StartError::Container(e) => e.fmt(f),
        }
    }
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    #[arg(long, action = ArgAction::Help, help = "Print help")]
    help: Option<bool>,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Restart policy to apply when a container exits (no, on-failure[:N], always,
    /// unless-stopped)
    #[arg(long, default_value = "no")]
    restart: String,
    /// Mount volumes from the specified container(s) (NAME[:ro|rw])
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    health_retries: Option<u32>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h)
    #[arg(long = "health-start-period")]
    health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long = "health-start-interval")]
    health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Publish a container's port on the host ([IP:][HOSTPORT:]CTRPORT[/tcp|udp])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image exposes on a free host port
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    #[command(flatten)]
    process: ProcessArgs,
    /// Overwrite the image's ENTRYPOINT
    #[arg(long)]
    entrypoint: Option<String>,
    /// Name the container
    #[arg(long)]
    name: Option<String>,
    /// Container host name
    #[arg(short, long)]
    hostname: Option<String>,
    /// Bind mount a host path: HOST:CONTAINER[:ro]
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a mount: type=bind|tmpfs,...
    #[arg(long)]
    mount: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS]
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root file system read-only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Memory limit (e.g. 64m)
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// Limit on the number of processes
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Security options (no-new-privileges, seccomp=unconfined)
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    ulimit: Vec<String>,
    /// Network: none, host, bridge (lb0, NAT), a network made with `lb network create`, or
    /// container:NAME (another container's network stack)
    #[arg(long, alias = "net", default_value = "bridge")]
    network: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Logging driver: json-file (the default) or none
    #[arg(long = "log-driver", default_value = "json-file")]
    log_driver: String,
    /// Log driver options: max-size=SIZE (e.g. 10m), max-file=N
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    #[command(flatten)]
    host: super::run_flags::HostArgs,
    /// The image, then the command and its arguments
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    image_and_command: Vec<String>,
}

pub fn run(store: &Store, args: RunArgs) -> ExitCode {
    match run_inner(store, args) {
        Ok(code) => code,
        Err(e) => fail125(e),
    }
}

/// `lb create`: the container made (its record, file system, volumes), not started; its
/// id printed. It joins its network when it starts, as docker's.
pub fn create(store: &Store, args: RunArgs) -> ExitCode {
    // What docker's CLI refuses exits 125; what its daemon refuses, 1.
    let opts = match create_options(&args) {
        Ok(o) => o,
        Err(e) => return fail125(e),
    };
    let made = (|| -> anyhow::Result<String> {
        let cid = CidFile::claim(args.host.cidfile())?;
        ensure_image(store, &opts.image, &args.host)?;
        let created = lb_container::ops::create(store, &opts)?;
        for w in &created.warnings {
            eprintln!("WARNING: {w}");
        }
        lb_container::network::leave(store, &created.record)?;
        cid.write(&created.record.id)?;
        Ok(created.record.id)
    })();
    match made {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lb: {}", crate::error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// A `--health-*` duration (Go's form: `30s`, `1m30s`, `500ms`).
fn health_duration(flag: &str, v: &Option<String>) -> anyhow::Result<Option<Duration>> {
    v.as_deref()
        .map(|s| {
            let ns = lb_parser::parse_duration(s).map_err(|e| {
                anyhow::anyhow!("invalid argument {s:?} for \"--{flag}\" flag: {e}")
            })?;
            Ok(Duration::from_nanos(ns.max(0) as u64))
        })
        .transpose()
}

/// What `run` and `create` ask `lb_container::ops::create` for.
fn create_options(args: &RunArgs) -> anyhow::Result<lb_container::ops::CreateOptions> {
    let (image_arg, command) = split_target(&args.image_and_command);
    // The flags' own rules, before anything is looked up (docker's CLI makes them).
    args.host.attached()?;
    lb_container::host_config::parse(&args.host.flags(), &args.network)?;
    let health = lb_container::health::HealthOptions {
        cmd: args.health_cmd.clone(),
        interval: health_duration("health-interval", &args.health_interval)?,
        timeout: health_duration("health-timeout", &args.health_timeout)?,
        start_period: health_duration("health-start-period", &args.health_start_period)?,
        start_interval: health_duration("health-start-interval", &args.health_start_interval)?,
        retries: args.health_retries,
        disable: args.no_healthcheck,
    };
    Ok(lb_container::ops::CreateOptions {
        health,
        volumes_from: args.volumes_from.clone(),
        image: image_arg.to_string(),
        name: args.name.clone(),
        auto_remove: args.rm,
        init: args.init,
        open_stdin: args.process.interactive,
        publish: args.publish.clone(),
        publish_all: args.publish_all,
        hostname: args.hostname.clone(),
        restart: args.restart.clone(),
        log_driver: args.log_driver.clone(),
        log_opts: args.log_opt.clone(),
        host: args.host.flags(),
        run: RunOptions {
            command: command.to_vec(),
            entrypoint: args.entrypoint.clone(),
            env: args.process.env.clone(),
            env_files: args.process.env_file.clone(),
            workdir: args.process.workdir.clone(),
            user: args.process.user.clone(),
            tty: args.process.tty,
            volumes: args.volume.clone(),
            mounts: args.mount.clone(),
            tmpfs: args.tmpfs.clone(),
            read_only: args.read_only,
            memory: args.memory.clone(),
            cpus: args.cpus,
            pids_limit: args.pids_limit,
            cap_add: args.cap_add.clone(),
            cap_drop: args.cap_drop.clone(),
            privileged: args.privileged,
            security_opt: args.security_opt.clone(),
            ulimits: args.ulimit.clone(),
            network: args.network.clone(),
            ..RunOptions::default()
        },
    })
}

fn run_inner(store: &Store, args: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = create_options(&args)?;
    let attach = args.host.attached()?;
    if attach.is_some() && args.process.detach {
        eprintln!("Conflicting options: -a and -d");
        return Ok(ExitCode::from(1));
    }
    let cid = CidFile::claim(args.host.cidfile())?;
    ensure_image(store, &opts.image, &args.host)?;
    let created = lb_container::ops::create(store, &opts)?;
    cid.write(&created.record.id)?;
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    let lb_container::ops::Created {
        record,
        dir,
        network,
        ip,
        ports: bound,
        ..
    } = created;
    let id = record.id.clone();
    let container = Container::of(store, record);
    // `-a stdin` alone connects no output: docker then starts it as `-d` does.
    let no_output = attach.is_some_and(|a| !a.stdout && !a.stderr) && !args.process.tty;
    if args.process.detach || no_output {
        return Ok(match container.start_monitored(bound) {
            Ok(()) => {
                println!("{id}");
                ExitCode::SUCCESS
            }
            Err(lb_container::Error::NotStarted { code, message }) => {
                eprintln!("lb: {message}");
                ExitCode::from(code)
            }
            Err(e) => return Err(e.into()),
        });
    }
    let (stdio, pty) = foreground_stdio(args.process.tty, args.process.interactive)?;
    let stdio = match (attach, stdio) {
        (
            Some(a),
            lb_runtime::Stdio::Fds {
                stdin,
                stdout,
                stderr,
            },
        ) => lb_runtime::Stdio::Fds {
            stdin,
            stdout: if a.stdout { stdout } else { devnull()? },
            stderr: if a.stderr { stderr } else { devnull()? },
        },
        (_, s) => s,
    };
    lb_runtime::hold_signals();
    // What a foreground run prints is logged too, as docker's (`lb logs` shows it). Not
    // with --rm (the log would go with the container); a terminal's (-t) is logged by its
    // relay. The copying
    // thread is made with the signals held, so they reach lb's main thread only.
    let (stdio, copier) = if args.rm || args.process.tty {
        (stdio, None)
    } else {
        logged(stdio, &dir, &container.record)?
    };
    let started = match container.launch(stdio) {
        Ok(l) => lb_runtime::start(&l).map_err(StartError::Runtime),
        Err(e) => Err(StartError::Container(e)),
    };
    let durable = !container.record.auto_remove;
    let ran = started.is_ok();
    let code = match started {
        Ok(c) => {
            // A terminal's output is logged as it is relayed (not with --rm).
            let also = (!args.rm)
                .then(|| terminal_log(&dir, &container.record))
                .flatten();
            let relay = pty
                .map(|p| {
                    lb_runtime::tty::Relay::start_with(
                        p.close_slave(),
                        args.process.interactive,
                        also,
                    )
                })
                .transpose()?;
            let mut st = lb_container::ops::running_state(c.pid());
            st.save(&dir, durable)?;
            if let Some(ip) = ip {
                for b in bound {
                    lb_network::ports::relay(b, ip);
                }
            }
            // `--sig-proxy=false`: lb's signals end lb, not the container (with a
            // terminal the pty carries them, as docker's).
            if args.host.sig_proxy || args.process.tty {
                c.forward_signals();
            } else {
                lb_runtime::release_signals();
            }
            let code = c.wait()?;
            if let Some(r) = relay {
                r.finish();
            }
            st.status = Status::Exited;
            st.exit_code = code;
            st.finished_at = now();
            st.save(&dir, durable)?;
            code
        }
        Err(e) => {
            eprintln!("lb: {e}");
            let st = State {
                status: Status::Exited,
                exit_code: e.code(),
                finished_at: now(),
                ..State::default()
            };
            st.save(&dir, durable)?;
            e.code()
        }
    };
    // Everything the container wrote is copied before lb says how it ended.
    if let Some(t) = copier {
        let _ = t.join();
    }
    if let Some(net) = &network {
        if let Err(e) = lb_container::network::detach(store, net, &id) {
            eprintln!("lb: {e}");
        }
    }
    // Its restart policy, as docker's daemon applies it once the client has the exit
    // status: a monitor takes the container over (a user's `lb stop` meanwhile is kept).
    let policy = &container.record.config.restart;
    if ran && policy.should_restart(code, 0, lb_container::restart::stop_requested(&dir)) {
        if let Err(e) = container.restart_after_foreground_run() {
            eprintln!("lb: {}", crate::error_text(&e.into()));
        }
    }
    if args.rm {
        store.remove_container(&id)?;
        // docker's --rm takes the container's anonymous volumes with it.
        lb_container::volume::release_anonymous(store, &container.record);
    }
    Ok(ExitCode::from(code as u8))
}

/// A foreground run's terminal output into its log, as the relay hands it over; none with
/// `--log-driver none`.
fn terminal_log(
    dir: &std::path::Path,
    record: &lb_container::Record,
) -> Option<lb_runtime::tty::Also> {
    use lb_container::json_log::{LogConfig, Writer};
    let config = LogConfig::from_record(record.config.log_config.as_ref()).ok()?;
    if config == LogConfig::None {
        return None;
    }
    let mut log = Writer::open(dir, &config, "stdout");
    Some(Box::new(move |data: &[u8]| log.write(data)))
}

/// A foreground run's output through pipes that a thread copies into the container's
/// log and on to `stdio`'s own output descriptors (a stream docker's `-a` leaves out is
/// only logged); the container's streams, and the thread. When lb's output and error are
/// one file (a terminal, `2>&1`), the container gets one pipe for both, so that the order
/// of what it writes to the two is kept (logged as stdout).
fn logged(
    stdio: lb_runtime::Stdio,
    dir: &std::path::Path,
    record: &lb_container::Record,
) -> anyhow::Result<(lb_runtime::Stdio, Option<std::thread::JoinHandle<()>>)> {
    use lb_container::json_log::{Echo, LogConfig};
    let config = LogConfig::from_record(record.config.log_config.as_ref())?;
    if config == LogConfig::None {
        return Ok((stdio, None));
    }
    let (stdin, out, err) = match stdio {
        lb_runtime::Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } => (stdin, stdout, stderr),
        lb_runtime::Stdio::Inherit => (dup(0)?, dup(1)?, dup(2)?),
        other => return Ok((other, None)),
    };
    let same = {
        use std::os::unix::fs::MetadataExt;
        let meta = |fd: &OwnedFd| std::fs::File::from(fd.try_clone()?).metadata();
        match (meta(&out), meta(&err)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("a pipe");
    let (out_r, out_w) = pipe()?;
    let (streams, err_w, echo) = if same {
        let echo = Echo {
            stdout: Some(std::fs::File::from(out)),
            stderr: None,
        };
        (vec![(out_r, "stdout")], out_w.try_clone()?, echo)
    } else {
        let (err_r, err_w) = pipe()?;
        let echo = Echo {
            stdout: Some(std::fs::File::from(out)),
            stderr: Some(std::fs::File::from(err)),
        };
        (vec![(out_r, "stdout"), (err_r, "stderr")], err_w, echo)
    };
    let dir = dir.to_path_buf();
    let copier = std::thread::spawn(move || {
        let mut echo = echo;
        lb_container::json_log::copy(&dir, &config, streams, Some(&mut echo));
    });
    let stdio = lb_runtime::Stdio::Fds {
        stdin,
        stdout: out_w,
        stderr: err_w,
    };
    Ok((stdio, Some(copier)))
}

/// The standard streams of a process run in the foreground: a pty relayed to lb's own
/// (`-t`), lb's own (`-i`), or lb's output with no input.
fn foreground_stdio(
    tty: bool,
    interactive: bool,
) -> anyhow::Result<(lb_runtime::Stdio, Option<lb_runtime::tty::Pty>)> {
    if tty {
        if interactive && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!("the input device is not a TTY");
        }
        let pty = lb_runtime::tty::Pty::open()?;
        return Ok((pty.container_stdio()?, Some(pty)));
    }
    let stdio = if interactive {
        lb_runtime::Stdio::Inherit
    } else {
        lb_runtime::Stdio::Fds {
            stdin: devnull()?,
            stdout: dup(1)?,
            stderr: dup(2)?,
        }
    };
    Ok((stdio, None))
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    process: ProcessArgs,
    /// The container, then the command and its arguments
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        required = true,
        num_args = 2..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    container_and_command: Vec<String>,
}

/// `lb exec`: a new process in a running container's namespaces and cgroup, with the
/// container's confinement (capabilities, seccomp, no_new_privs) and environment.
pub fn exec(store: &Store, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let (key, command) = split_target(&args.container_and_command);
    let c = Container::open(store, key)?;
    let opts = lb_container::ops::ExecOptions {
        command: command.to_vec(),
        env: args.process.env.clone(),
        env_files: args.process.env_file.clone(),
        workdir: args.process.workdir.clone(),
        user: args.process.user.clone(),
        tty: args.process.tty,
    };
    let mut e = c.exec_process(key, &opts)?;
    let (stdio, pty) = if args.process.detach {
        let stdio = lb_runtime::Stdio::Fds {
            stdin: devnull()?,
            stdout: devnull()?,
            stderr: devnull()?,
        };
        (stdio, None)
    } else {
        foreground_stdio(args.process.tty, args.process.interactive)?
    };
    e.stdio = stdio;
    if !args.process.detach {
        lb_runtime::hold_signals();
    }
    let started = match lb_runtime::exec(&e) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("lb: {err}");
            return Ok(ExitCode::from(err.code() as u8));
        }
    };
    drop(e);
    if args.process.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let relay = pty
        .map(|p| lb_runtime::tty::Relay::start(p.close_slave(), args.process.interactive))
        .transpose()?;
    started.forward_signals();
    let code = started.wait()?;
    c.exec_ended(code);
    if let Some(r) = relay {
        r.finish();
    }
    Ok(ExitCode::from(code as u8))
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    /// Containers to start
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `lb start`: starts stopped containers again, detached, on the file system they left
/// (their upper directory), with the configuration they were created with.
pub fn start(store: &Store, args: StartArgs) -> anyhow::Result<ExitCode> {
    if args.attach || args.interactive {
        if args.containers.len() > 1 {
            eprintln!("lb: you cannot start and attach multiple containers at once");
            return Ok(ExitCode::from(1));
        }
        return super::attach::start_attached(
            store,
            &args.containers[0],
            args.interactive,
            args.detach_keys.as_deref(),
        );
    }
    let mut failed = false;
    for key in &args.containers {
        match Container::open(store, key).and_then(|c| c.start()) {
            Ok(()) => println!("{key}"),
            Err(lb_container::Error::NotStarted { message, .. }) => {
                eprintln!("lb: {message}");
                failed = true;
            }
            Err(e) => {
                eprintln!("lb: {key}: {}", crate::error_text(&e.into()));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
