//! The commands that start a container's processes: `run` (foreground, or `-d` under a
//! monitor process), `start` and `exec`.

use super::*;

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    #[arg(long, action = ArgAction::Help, help = "Print help")]
    help: Option<bool>,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
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

fn run_inner(store: &Store, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (image_arg, command) = split_target(&args.image_and_command);
    let name_ref = Reference::parse(image_arg)
        .with_context(|| format!("invalid image reference {image_arg:?}"))?;
    let image = store
        .image(&name_ref)
        .map_err(|_| anyhow::anyhow!("Unable to find image '{image_arg}' locally"))?;
    let lowers = store.prepare_snapshots(&image)?;
    let id = random_id()?;
    let host_network = args.network == "host";
    let network = lb_container::network::lookup(store, &args.network)?;
    let bridge = network.is_some();
    lb_container::network::reconcile(store);
    let mut publish: Vec<lb_network::ports::PortSpec> = args
        .publish
        .iter()
        .map(|p| lb_network::ports::parse_publish(p))
        .collect::<Result<_, _>>()?;
    if args.publish_all {
        for p in image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default()
        {
            let mut spec = lb_network::ports::parse_publish(&p)
                .with_context(|| format!("the image exposes {p:?}"))?;
            spec.host_port = 0;
            publish.push(spec);
        }
    }
    if !publish.is_empty() && !bridge {
        if args.network == "host" {
            eprintln!("WARNING: Published ports are discarded when using host network mode");
            publish.clear();
        } else {
            bail!(
                "conflicting options: port publishing and the network mode {}",
                args.network
            );
        }
    }
    let bound = bind_ports(&publish)?;
    // `--network container:NAME`: that container's network stack, hosts, resolver and
    // host name, as docker shares them.
    let joined = match args.network.strip_prefix("container:") {
        Some(other) => {
            let c = store.container::<ContainerConfig>(other)?;
            let other_dir = store.container_dir(&c.id);
            let st = State::load(&other_dir);
            if !st.running() {
                bail!("--network container:{other}: the container is not running");
            }
            if args.hostname.is_some() {
                bail!(
                    "--hostname: conflicting options: hostname and the network mode container:{other}"
                );
            }
            Some((format!("/proc/{}/ns/net", st.pid), other_dir.join("etc")))
        }
        None => None,
    };
    let hostname = args.hostname.clone().unwrap_or_else(|| {
        if host_network {
            host_hostname()
        } else if let Some((_, etc)) = &joined {
            std::fs::read_to_string(etc.join("hostname"))
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| id[..12].to_string())
        } else {
            id[..12].to_string()
        }
    });
    let opts = RunOptions {
        command: command.to_vec(),
        entrypoint: args.entrypoint.clone(),
        env: args.process.env.clone(),
        env_files: args.process.env_file.clone(),
        workdir: args.process.workdir.clone(),
        user: args.process.user.clone(),
        hostname: hostname.clone(),
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
        join_network: if bridge {
            Some(lb_container::network::netns_file(store, &id))
        } else {
            joined.as_ref().map(|(ns, _)| PathBuf::from(ns))
        },
    };
    let image_cfg = image_run_config(&image);
    // Validate everything before anything is written to the store.
    let dir_guess = store.container_dir(&id);
    let plan = run_spec::plan(&image_cfg, &opts, &dir_guess.join("etc"))?;
    let (_, log_config) =
        lb_container::json_log::LogConfig::from_flags(&args.log_driver, &args.log_opt)?;
    let name = args.name.clone().unwrap_or_else(|| generated_name(&id));
    let record = Record {
        id: id.clone(),
        name,
        image: image.manifest_digest,
        image_name: image_arg.to_string(),
        created: now(),
        auto_remove: args.rm,
        config: ContainerConfig {
            version: lb_container::record::CONFIG_VERSION,
            spec: plan.spec,
            user: Some(plan.user),
            seccomp: plan.seccomp,
            stop_signal: image_cfg.stop_signal.clone(),
            tty: args.process.tty,
            init: args.init,
            lowers,
            network: network
                .as_ref()
                .map_or(args.network.as_str(), |n| n.name.as_str())
                .to_string(),
            ports: bound
                .iter()
                .map(|b| lb_container::PortBinding(b.spec()))
                .collect(),
            log_config: Some(log_config),
        },
    };
    let dir = store.create_container(&record)?;
    lb_runtime::defaults::write_etc_files(&dir, &hostname, host_network)?;
    let mut ip = None;
    if let Some(net) = &network {
        let specs: Vec<_> = bound.iter().map(|b| b.spec()).collect();
        let attached = lb_container::network::attach(store, net, &id, &dir)
            .and_then(|a| lb_container::network::publish(store, net, &id, a, &specs).map(|()| a));
        match attached {
            Ok(a) => ip = Some(a),
            Err(e) => {
                lb_container::network::detach(store, net, &id);
                let _ = store.remove_container(&id);
                return Err(e.into());
            }
        }
    }
    if let Some((_, other_etc)) = &joined {
        for f in ["hosts", "resolv.conf"] {
            std::fs::copy(other_etc.join(f), dir.join("etc").join(f))
                .with_context(|| format!("{}", other_etc.join(f).display()))?;
        }
    }
    let launch = |stdio| launch_of(&record, &dir, stdio);
    if args.process.detach {
        let code = detach(
            store,
            &record,
            &dir,
            launch(lb_runtime::Stdio::Inherit)?,
            bound,
        )?;
        if code == ExitCode::SUCCESS {
            println!("{}", record.id);
        }
        return Ok(code);
    }
    let (stdio, pty) = foreground_stdio(args.process.tty, args.process.interactive)?;
    lb_runtime::hold_signals();
    let started = lb_runtime::start(&launch(stdio)?);
    let code = match started {
        Ok(c) => {
            let relay = pty
                .map(|p| lb_runtime::tty::Relay::start(p.close_slave(), args.process.interactive))
                .transpose()?;
            let mut st = State {
                status: Status::Running,
                pid: c.pid(),
                pid_start: lb_runtime::state::pid_start_time(c.pid()).unwrap_or(0),
                monitor: std::process::id() as i32,
                started_at: now(),
                ..State::default()
            };
            st.save(&dir, !record.auto_remove)?;
            if let Some(ip) = ip {
                for b in bound {
                    lb_network::ports::relay(b, ip);
                }
            }
            c.forward_signals();
            let code = c.wait()?;
            if let Some(r) = relay {
                r.finish();
            }
            st.status = Status::Exited;
            st.exit_code = code;
            st.finished_at = now();
            st.save(&dir, !record.auto_remove)?;
            code
        }
        Err(e) => {
            eprintln!("lb: {}", e.message);
            let st = State {
                status: Status::Exited,
                exit_code: e.code,
                finished_at: now(),
                ..State::default()
            };
            st.save(&dir, !record.auto_remove)?;
            e.code
        }
    };
    if let Some(net) = &network {
        lb_container::network::detach(store, net, &id);
    }
    if args.rm {
        store.remove_container(&id)?;
    }
    Ok(ExitCode::from(code as u8))
}

/// How to start the container `record` describes (its directory `dir`): run and start
/// both start it from its record.
fn launch_of(
    record: &Record,
    dir: &Path,
    stdio: lb_runtime::Stdio,
) -> anyhow::Result<lb_runtime::Launch> {
    let config = &record.config;
    // Overlay lowers are listed top first; snapshots come bottom first.
    let mut lowers: Vec<PathBuf> = config.lowers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty);
    }
    Ok(lb_runtime::Launch {
        id: record.id.clone(),
        spec: config.spec.clone(),
        layers: lb_runtime::RootfsLayers {
            lowers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            // A container's upper dir is its state (`lb commit`, `lb start` again): synced
            // when it is unmounted, as docker's. A `--rm` container's goes with it, so its
            // exit need not wait for its writes to reach the disk (podman's choice too).
            volatile: record.auto_remove,
        },
        rootfs: dir.join("rootfs"),
        user: config.user.clone(),
        seccomp: config.seccomp,
        init: config.init,
        // A container outlives a killed lb, as docker's outlives a killed client: it has a
        // record, and `lb ps`/`stop`/`rm` reach it.
        die_with_caller: false,
        stdio,
    })
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

/// `run -d` and `start`: a monitor process (lb, forked and detached from the terminal) starts the
/// container with its output going to pipes, records it as running, writes its output to
/// `log.json` in docker's json-file format, and records the exit. The caller learns through
/// a pipe that the container started, prints its id and returns.
fn detach(
    store: &Store,
    record: &Record,
    dir: &Path,
    mut launch: lb_runtime::Launch,
    ports: Vec<lb_network::ports::Bound>,
) -> anyhow::Result<ExitCode> {
    let auto_remove = record.auto_remove;
    let tty = record.config.tty;
    let log_config =
        lb_container::json_log::LogConfig::from_record(record.config.log_config.as_ref())?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: lb is single-threaded here; the child only starts and follows the container.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            let mut ready = std::fs::File::from(ready_w);
            // The container's output: a pty's master (`-t`, one stream, as docker logs it)
            // or a pipe for each stream.
            let streams = match log_streams(tty, &log_config) {
                Ok((stdio, streams)) => {
                    launch.stdio = stdio;
                    streams
                }
                Err(e) => {
                    let _ = write!(ready, "125 {e}");
                    // SAFETY: leaving the forked monitor.
                    unsafe { libc::_exit(1) }
                }
            };
            let code = match lb_runtime::start(&launch) {
                Ok(c) => {
                    // The container holds its ends now: ours would keep the logs open.
                    drop(launch);
                    // The published ports' relays live in this monitor, as long as the
                    // container (their threads stay in the monitor's cgroup: they are
                    // made before the charge below).
                    if let Some(ip) = lb_container::network::address(dir) {
                        for b in ports {
                            lb_network::ports::relay(b, ip);
                        }
                    }
                    // Copying the output is the container's work: its CPU time is
                    // charged to the container's cgroup (v1), so a flood is throttled by
                    // the container's own limits. Charged before the caller is told the
                    // container runs, so no output is ever copied uncharged. Back out
                    // before the container's processes are killed at its end (`wait`).
                    let charge = lb_runtime::cgroups::Cgroup::open(&record.id)
                        .ok()
                        .flatten()
                        .and_then(|cg| cg.charge_thread_cpu().ok().flatten());
                    let mut st = State {
                        status: Status::Running,
                        pid: c.pid(),
                        pid_start: lb_runtime::state::pid_start_time(c.pid()).unwrap_or(0),
                        monitor: std::process::id() as i32,
                        started_at: now(),
                        ..State::default()
                    };
                    let _ = st.save(dir, !record.auto_remove);
                    let _ = write!(ready, "ok");
                    drop(ready);
                    // Nothing of the caller's terminal stays open in the monitor.
                    if let Ok(null) = devnull() {
                        for fd in 0..3 {
                            // SAFETY: replacing the standard descriptors of this process.
                            unsafe { libc::dup2(null.as_raw_fd(), fd) };
                        }
                    }
                    lb_container::json_log::copy(dir, &log_config, streams);
                    drop(charge);
                    let code = c.wait().unwrap_or(255);
                    // Off the network before the exit is recorded: whoever waits for it
                    // (stop, rm, wait) finds the links and addresses gone.
                    lb_container::network::leave(store, record);
                    st.status = Status::Exited;
                    st.exit_code = code;
                    st.finished_at = now();
                    let _ = st.save(dir, !record.auto_remove);
                    if auto_remove {
                        let _ = store.remove_container(&record.id);
                    }
                    0
                }
                Err(e) => {
                    let _ = write!(ready, "{} {}", e.code, e.message);
                    let st = State {
                        status: Status::Exited,
                        exit_code: e.code,
                        finished_at: now(),
                        ..State::default()
                    };
                    let _ = st.save(dir, !record.auto_remove);
                    1
                }
            };
            // SAFETY: leaving the forked monitor.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut msg = String::new();
            std::fs::File::from(ready_r).read_to_string(&mut msg)?;
            if msg == "ok" {
                return Ok(ExitCode::SUCCESS);
            }
            let (code, text) = msg
                .split_once(' ')
                .and_then(|(c, t)| Some((c.parse::<u8>().ok()?, t.to_string())))
                .unwrap_or((125, format!("the container did not start: {msg}")));
            eprintln!("lb: {text}");
            lb_container::network::leave(store, record);
            if auto_remove {
                let _ = store.remove_container(&record.id);
            }
            Ok(ExitCode::from(code))
        }
    }
}

/// A detached container's standard streams, and the ends the monitor reads them from
/// (none with `--log-driver none` and no terminal: the output goes to /dev/null).
fn log_streams(
    tty: bool,
    log_config: &lb_container::json_log::LogConfig,
) -> anyhow::Result<(lb_runtime::Stdio, Vec<(OwnedFd, &'static str)>)> {
    if tty {
        let pty = lb_runtime::tty::Pty::open()?;
        let stdio = pty.container_stdio()?;
        return Ok((stdio, vec![(pty.close_slave(), "stdout")]));
    }
    if *log_config == lb_container::json_log::LogConfig::None {
        let stdio = lb_runtime::Stdio::Fds {
            stdin: devnull()?,
            stdout: devnull()?,
            stderr: devnull()?,
        };
        return Ok((stdio, Vec::new()));
    }
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let stdio = lb_runtime::Stdio::Fds {
        stdin: devnull()?,
        stdout: out_w,
        stderr: err_w,
    };
    Ok((stdio, vec![(out_r, "stdout"), (err_r, "stderr")]))
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
    let c = store.container::<ContainerConfig>(key)?;
    let st = State::load(&store.container_dir(&c.id));
    lb_container::Status::of(&st).can_exec(key)?;
    let mut spec = c.config.spec.clone();
    let mut process = spec.process().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    if args.process.tty {
        env.retain(|e| !e.starts_with("TERM="));
        env.push("TERM=xterm".into());
    }
    run_spec::add_env(&mut env, &args.process.env_file, &args.process.env)?;
    process.set_env(Some(env));
    process.set_args(Some(command.to_vec()));
    process.set_terminal(Some(args.process.tty));
    if let Some(w) = &args.process.workdir {
        process.set_cwd(PathBuf::from(w));
    }
    spec.set_process(Some(process));
    let user = args.process.user.clone().or_else(|| c.config.user.clone());
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
    if !args.process.detach {
        lb_runtime::hold_signals();
    }
    let e = lb_runtime::Exec {
        id: c.id.clone(),
        pid: st.pid,
        spec,
        user,
        seccomp: c.config.seccomp,
        stdio,
    };
    let started = match lb_runtime::exec(&e) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("lb: {}", err.message);
            return Ok(ExitCode::from(err.code as u8));
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
    if let Some(r) = relay {
        r.finish();
    }
    Ok(ExitCode::from(code as u8))
}

#[derive(Args)]
pub struct StartArgs {
    /// Containers to start
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `lb start`: starts stopped containers again, detached, on the file system they left
/// (their upper directory), with the configuration they were created with.
pub fn start(store: &Store, args: StartArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for key in &args.containers {
        let result = (|| -> anyhow::Result<ExitCode> {
            let c = store.container::<ContainerConfig>(key)?;
            let dir = store.container_dir(&c.id);
            if State::load(&dir).running() {
                return Ok(ExitCode::SUCCESS);
            }
            let mut ports = Vec::new();
            if let Some(net) = lb_container::network::of_record(store, &c) {
                lb_container::network::reconcile(store);
                // Created again, not exited: a reconcile by another lb meanwhile must not
                // take the network this start is setting up.
                State::default().save(&dir, true)?;
                // The monitor of the last run may still be letting go of the ports.
                let deadline = Instant::now() + Duration::from_secs(3);
                ports = loop {
                    match bind_ports(&c.config.port_specs()) {
                        Ok(p) => break p,
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => return Err(e),
                    }
                };
                let ip = lb_container::network::attach(store, &net, &c.id, &dir)?;
                let specs: Vec<_> = ports.iter().map(|b| b.spec()).collect();
                lb_container::network::publish(store, &net, &c.id, ip, &specs)?;
            }
            detach(
                store,
                &c,
                &dir,
                launch_of(&c, &dir, lb_runtime::Stdio::Inherit)?,
                ports,
            )
        })();
        match result {
            Ok(code) if code == ExitCode::SUCCESS => println!("{key}"),
            Ok(_) => failed = true,
            Err(e) => {
                eprintln!("lb: {key}: {e:#}");
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
