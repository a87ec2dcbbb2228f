//! `lb network create|ls|rm|inspect` (arguments and output; the networks themselves are
//! `lb_container::network`'s), and the build pool's filler (`lb network pool-fill`, a
//! process of its own that outlives the build that started it).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use lb_container::{network, step_network};
use lb_layerstore::Store;
use lb_network::Network;
use lb_runtime::state::State;
use serde_json::json;

#[derive(Subcommand)]
pub enum NetworkCommands {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls,
    /// Remove networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Show networks as JSON
    Inspect(InspectArgs),
    /// Remove all unused networks
    Prune(crate::prune_cmds::PruneArgs),
    /// Keep namespaces ready for build steps on the default bridge (started by lb build)
    #[command(hide = true)]
    PoolFill(PoolFillArgs),
}

#[derive(Args)]
pub struct PoolFillArgs {
    /// Keep the pool full until builds have taken nothing for this many seconds
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Subnet in CIDR form (default: a free /24 of 10.214.0.0/16)
    #[arg(long)]
    subnet: Option<String>,
    /// Driver (only bridge)
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Set metadata on a network
    #[arg(long = "label")]
    labels: Vec<String>,
    name: String,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    networks: Vec<String>,
}

/// How long a filler stays after builds stop taking from the pool: builds in a row (a CI
/// job, a benchmark) share one, rather than each paying for starting one (an exec of lb).
const POOL_LINGER_SECS: &str = "5";

/// Starts a filler of the build pool, detached (it outlives this lb to top the pool up for
/// the next build). Called from the host's mount namespace (the build has one of its own),
/// so that the namespaces it holds are the host's.
pub(crate) fn start_pool_filler() {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["network", "pool-fill", "--linger", POOL_LINGER_SECS])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // A process group of its own: a Ctrl-C at the terminal is not for it. (No pre_exec
    // hook: the spawn stays a vfork-style posix_spawn, not a fork of this whole process.)
    cmd.process_group(0);
    if let Ok(mut child) = cmd.spawn() {
        // Reaped by a thread so that it never lingers as a zombie of ours.
        std::thread::spawn(move || child.wait());
    }
}

pub fn run(store: &Store, cmd: NetworkCommands) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommands::Create(a) => create(store, a),
        NetworkCommands::Ls => ls(store),
        NetworkCommands::Rm(a) => rm(store, a),
        NetworkCommands::Inspect(a) => inspect(store, a),
        NetworkCommands::Prune(a) => crate::prune_cmds::network_prune(store, a),
        NetworkCommands::PoolFill(a) => {
            // Refilling is for later builds: it yields the CPU to the build beside it
            // (nice 19, inherited by its threads; not SCHED_IDLE, which a busy machine
            // would starve, leaving every step to make its own namespace).
            // SAFETY: sets this thread's own nice value; a refusal leaves it as it was.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            let linger = std::time::Duration::try_from_secs_f64(a.linger)
                .map_err(|_| anyhow::anyhow!("--linger {}: want seconds", a.linger))?;
            step_network::build_pool().fill(step_network::POOL_SIZE, linger)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(store: &Store, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let labels = crate::volume_cmds::label_map(&a.labels);
    let d = network::create(store, &a.name, &a.driver, a.subnet.as_deref(), labels)?;
    println!("{}", d.id);
    Ok(ExitCode::SUCCESS)
}

fn ls(store: &Store) -> anyhow::Result<ExitCode> {
    println!("{:<14} {:<20} {:<8} SCOPE", "NETWORK ID", "NAME", "DRIVER");
    for (id, name, driver) in [
        ("000000000001", "bridge", "bridge"),
        ("000000000002", "host", "host"),
        ("000000000003", "none", "null"),
    ] {
        println!("{id:<14} {name:<20} {driver:<8} local");
    }
    for d in network::definitions(store)? {
        println!("{:<14} {:<20} {:<8} local", &d.id[..12], d.name, "bridge");
    }
    Ok(ExitCode::SUCCESS)
}

fn rm(store: &Store, a: RmArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in &a.networks {
        match network::remove(store, name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("lb: {}", crate::error_text(&e.into()));
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

fn inspect(store: &Store, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    for name in &a.networks {
        let d = match name.as_str() {
            "bridge" => {
                let n = Network::default_bridge();
                network::NetworkDefinition {
                    name: "bridge".into(),
                    id: "000000000001".into(),
                    driver: "bridge".into(),
                    bridge: n.bridge.clone(),
                    subnet: n.cidr(),
                    gateway: n.gateway().to_string(),
                    created: String::new(),
                    labels: Default::default(),
                }
            }
            _ => network::definition(store, name)?
                .ok_or_else(|| lb_container::Error::NoSuchNetwork(name.clone()))?,
        };
        let prefix = d.subnet.split('/').nth(1).unwrap_or("");
        let mut containers = serde_json::Map::new();
        for c in network::users(store, name) {
            let dir = store.container_dir(&c.id);
            if State::load(&dir).running() {
                containers.insert(
                    c.id.clone(),
                    json!({ "Name": c.name, "IPv4Address": network::address(&dir)
                        .map(|ip| format!("{ip}/{prefix}")) }),
                );
            }
        }
        let created = (!d.created.is_empty()).then_some(&d.created);
        out.push(json!({
            "Name": d.name, "Id": d.id, "Created": created, "Scope": "local",
            "Driver": "bridge", "EnableIPv6": false,
            "IPAM": { "Driver": "default", "Config": [ { "Subnet": d.subnet, "Gateway": d.gateway } ] },
            "Options": { "com.docker.network.bridge.name": d.bridge },
            "Containers": containers,
            "Labels": d.labels,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
