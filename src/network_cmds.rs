//! `lb network create|ls|rm|inspect`, and how a container joins and leaves a network:
//! docker's default `bridge` (lb0) or a user network (a bridge of its own, a /24 of
//! 10.214.0.0/16 not in use on the host, names of its containers resolvable by each other
//! through their `/etc/hosts`). Definitions of user networks live in the store
//! (`<root>/networks/<name>.json`); addresses in the host-wide IPAM of `lb-network`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lb_container::{ContainerConfig, Record};
use lb_layerstore::Store;
use lb_network::Network;
use lb_runtime::state::State;
use serde_json::{Value, json};

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

const BUILTIN: [&str; 3] = ["bridge", "host", "none"];

fn definitions_dir(store: &Store) -> PathBuf {
    store.root().join("networks")
}

/// A user network's definition as stored.
fn definition(store: &Store, name: &str) -> anyhow::Result<Option<Value>> {
    let f = definitions_dir(store).join(format!("{name}.json"));
    match std::fs::read(&f) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| f.display().to_string())?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| f.display().to_string()),
    }
}

fn definitions(store: &Store) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(definitions_dir(store)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".json") {
                // Only whole definitions: a file that is not one is not a network.
                if let Some(d) = definition(store, n).ok().flatten() {
                    if d["Name"].is_string() && d["Id"].as_str().is_some_and(|i| i.len() >= 12) {
                        out.push(d);
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    Ok(out)
}

fn network_of_definition(d: &Value) -> anyhow::Result<Network> {
    let (subnet, prefix) = parse_cidr(d["Subnet"].as_str().unwrap_or(""))?;
    Ok(Network {
        name: d["Name"].as_str().unwrap_or("").to_string(),
        bridge: d["Bridge"].as_str().unwrap_or("").to_string(),
        subnet,
        prefix,
    })
}

fn parse_cidr(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    lb_network::parse_cidr(s)
        .with_context(|| format!("invalid subnet {s:?}: want A.B.C.D/N with N from 8 to 30"))
}

/// The network a `--network` value names: the default bridge, a user network, or None
/// (none, host, container:NAME: no network of lb's).
pub fn lookup(store: &Store, mode: &str) -> anyhow::Result<Option<Network>> {
    match mode {
        "bridge" | "default" => Ok(Some(Network::default_bridge())),
        "none" | "host" => Ok(None),
        m if m.starts_with("container:") => Ok(None),
        name => match definition(store, name)? {
            Some(d) => Ok(Some(network_of_definition(&d)?)),
            None => bail!("network {name} not found"),
        },
    }
}

/// The network a container record was run on.
pub fn of_record(store: &Store, record: &Record) -> Option<Network> {
    lookup(store, &record.config.network).ok().flatten()
}

fn paths_state() -> PathBuf {
    std::env::var_os("LB_NETWORK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/lb/networks"))
}

/// The IPAM's directory (host-wide: `$LB_NETWORK_DIR`, else `/run/lb/networks`, gone at
/// reboot as the links are), container `id`'s namespace file (`<root>/netns/<id>`, outside
/// its directory so removing it never trips over a mount), and the IPAM holder
/// (`<store root>:<id>`).
fn paths(store: &Store, id: &str) -> (PathBuf, PathBuf, String) {
    (
        paths_state(),
        store.root().join("netns").join(id),
        format!("{}:{id}", store.root().display()),
    )
}

/// How many namespaces are kept ready for build steps.
const POOL_SIZE: usize = 6;

/// The host-wide pool of ready namespaces on the default bridge.
pub(crate) fn build_pool() -> lb_network::pool::Pool {
    lb_network::pool::Pool::new(&paths_state(), &Network::default_bridge())
}

/// How long a filler stays after builds stop taking from the pool: builds in a row (a CI
/// job, a benchmark) share one, rather than each paying for starting one (an exec of lb).
const POOL_LINGER_SECS: &str = "5";

/// Starts a filler of the build pool, detached (it outlives this lb to top the pool up for
/// the next build), unless one is at work already. Called from the host's mount namespace
/// (the build has one of its own), so that the namespaces it holds are the host's.
pub(crate) fn start_pool_filler() {
    use std::os::unix::process::CommandExt;
    if build_pool().filling() {
        return;
    }
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

/// Address, namespace and links for `id` on `net` (a container or a build step).
pub(crate) fn attach_links(
    store: &Store,
    net: &Network,
    id: &str,
) -> anyhow::Result<lb_network::Attachment> {
    let (state, netns, holder) = paths(store, id);
    std::fs::create_dir_all(netns.parent().expect("netns dir"))?;
    lb_network::attach(&state, net, &holder, id, &netns)
        .with_context(|| format!("--network {}", net.name))
}

/// DNAT rules for container `id`'s published ports at `ip` (the relays serve loopback).
pub fn publish(
    store: &Store,
    net: &Network,
    id: &str,
    ip: Ipv4Addr,
    ports: &[lb_network::ports::PortSpec],
) -> anyhow::Result<()> {
    let (state, _, holder) = paths(store, id);
    lb_network::publish(&state, net, &holder, ip, ports).context("publishing ports")
}

/// The namespace file a container on a network runs in.
pub fn netns_file(store: &Store, id: &str) -> PathBuf {
    paths(store, id).1
}

/// Puts container `id` (its directory `dir`) on `net`: address, links, its own name in its
/// hosts file; on a user network also the names of the others there, and its name in
/// theirs. Its address.
pub fn attach(store: &Store, net: &Network, id: &str, dir: &Path) -> anyhow::Result<Ipv4Addr> {
    let a = attach_links(store, net, id)?;
    let me = host_names(store, id, dir);
    let mut lines = vec![format!("{}\t{me}", a.ip)];
    if net.name != "bridge" {
        for (other, other_dir, ip) in peers(store, net, id) {
            lines.push(format!("{ip}\t{}", host_names(store, &other, &other_dir)));
            set_hosts_line(&other_dir, &me, Some(&format!("{}\t{me}", a.ip)))?;
        }
    }
    let hosts = dir.join("etc/hosts");
    let text = std::fs::read_to_string(&hosts)?;
    let hostname = std::fs::read_to_string(dir.join("etc/hostname")).unwrap_or_default();
    let mut kept: Vec<String> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) != Some(hostname.trim()))
        .map(str::to_string)
        .collect();
    kept.extend(lines);
    // In place: the file is bind-mounted into the container.
    std::fs::write(&hosts, kept.join("\n") + "\n")?;
    Ok(a.ip)
}

/// Takes container `id` off `net` (what is left of it: safe to repeat), and its name out
/// of the others' hosts files.
pub fn detach(store: &Store, net: &Network, id: &str) {
    let (state, netns, holder) = paths(store, id);
    if let Err(e) = lb_network::detach(&state, net, &holder, id, &netns) {
        eprintln!("lb: network cleanup of {id}: {e}");
    }
    if net.name != "bridge" {
        let dir = store.container_dir(id);
        let me = host_names(store, id, &dir);
        for (_, other_dir, _) in peers(store, net, id) {
            let _ = set_hosts_line(&other_dir, &me, None);
        }
    }
}

/// "HOSTNAME NAME": how a container is known on its network.
fn host_names(store: &Store, id: &str, dir: &Path) -> String {
    let hostname = std::fs::read_to_string(dir.join("etc/hostname")).unwrap_or_default();
    let name = store
        .container::<ContainerConfig>(id)
        .map(|c| c.name)
        .unwrap_or_default();
    let hostname = hostname.trim();
    if name.is_empty() || name == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {name}")
    }
}

/// Replaces (or with None removes) the line naming `names` in the hosts file of `dir`.
fn set_hosts_line(dir: &Path, names: &str, line: Option<&str>) -> anyhow::Result<()> {
    let hosts = dir.join("etc/hosts");
    let text = std::fs::read_to_string(&hosts)?;
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_once(char::is_whitespace).map(|(_, n)| n.trim()) != Some(names))
        .collect();
    if let Some(l) = line {
        lines.push(l);
    }
    std::fs::write(&hosts, lines.join("\n") + "\n")?;
    Ok(())
}

/// The running containers of this store on `net`, but `id`: (id, directory, address).
fn peers(store: &Store, net: &Network, id: &str) -> Vec<(String, PathBuf, Ipv4Addr)> {
    let Ok(all) = store.containers::<ContainerConfig>() else {
        return Vec::new();
    };
    all.into_iter()
        .filter(|c| c.id != id && c.config.network == net.name)
        .filter_map(|c| {
            let dir = store.container_dir(&c.id);
            if !State::load(&dir).running() {
                return None;
            }
            let ip = address(&dir)?;
            Some((c.id, dir, ip))
        })
        .collect()
}

/// A container's address, from the line of its hosts file that names its host name.
pub fn address(dir: &Path) -> Option<Ipv4Addr> {
    let hostname = std::fs::read_to_string(dir.join("etc/hostname")).ok()?;
    let hosts = std::fs::read_to_string(dir.join("etc/hosts")).ok()?;
    hosts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(hostname.trim()))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a killed lb left on lb's networks: the addresses, links and namespaces of
/// containers that are gone or have exited (in any store, so a deleted store's too). Run
/// by every `lb run`, `ps`, `rm` and `start`.
pub fn reconcile(store: &Store) {
    let (state, _, mine) = paths(store, "");
    if !state.exists() {
        return;
    }
    let mut nets = vec![Network::default_bridge()];
    for d in definitions(store).unwrap_or_default() {
        if let Ok(n) = network_of_definition(&d) {
            nets.push(n);
        }
    }
    for net in nets {
        let Ok(holders) = lb_network::attached(&state, &net) else {
            continue;
        };
        for holder in holders {
            let Some((root, id)) = holder.rsplit_once(':') else {
                continue;
            };
            if holder.starts_with(lb_network::pool::HOLDER_PREFIX) {
                continue; // the pool's filler keeps its own
            }
            // Gone, or exited (a dead process reads as exited), in whichever store it was
            // (a test's deleted store included); a container still being created
            // (attached, not yet started) is left alone.
            // Its directory: where this store keeps a container, under its store's root.
            let own = store.container_dir(id);
            let rel = own.strip_prefix(store.root()).unwrap_or(&own);
            let dir = Path::new(root).join(rel);
            let ended = match build_pid(id) {
                // A build step's: ended when that build's lb is gone.
                Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
                None => {
                    !dir.exists() || State::load(&dir).status == lb_runtime::state::Status::Exited
                }
            };
            if !ended {
                continue;
            }
            if holder.starts_with(&mine) {
                detach(store, &net, id);
            } else {
                let netns = Path::new(root).join("netns").join(id);
                let _ = lb_network::detach(&state, &net, &holder, id, &netns);
            }
        }
    }
}

/// The lb pid in a build step's id (`build-<pid>-<hash>`).
fn build_pid(id: &str) -> Option<u32> {
    id.strip_prefix("build-")?.split('-').next()?.parse().ok()
}

pub fn run(store: &Store, cmd: NetworkCommands) -> anyhow::Result<ExitCode> {
    match cmd {
        NetworkCommands::Create(a) => create(store, a),
        NetworkCommands::Ls => ls(store),
        NetworkCommands::Rm(a) => rm(store, a),
        NetworkCommands::Inspect(a) => inspect(store, a),
        NetworkCommands::PoolFill(a) => {
            // Refilling is for later builds: it yields the CPU to the build beside it
            // (nice 19, inherited by its threads; not SCHED_IDLE, which a busy machine
            // would starve, leaving every step to make its own namespace).
            // SAFETY: sets this thread's own nice value; a refusal leaves it as it was.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            let linger = std::time::Duration::try_from_secs_f64(a.linger)
                .map_err(|_| anyhow::anyhow!("--linger {}: want seconds", a.linger))?;
            build_pool().fill(POOL_SIZE, linger)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(store: &Store, a: CreateArgs) -> anyhow::Result<ExitCode> {
    if a.driver != "bridge" {
        bail!("--driver {}: only bridge networks", a.driver);
    }
    let valid = !a.name.is_empty()
        && a.name.len() <= 64
        && a.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid || BUILTIN.contains(&a.name.as_str()) {
        bail!("network name {:?} is not valid or is reserved", a.name);
    }
    if definition(store, &a.name)?.is_some() {
        bail!("network with name {} already exists", a.name);
    }
    let taken: Vec<(Ipv4Addr, u8)> = definitions(store)?
        .iter()
        .filter_map(|d| parse_cidr(d["Subnet"].as_str()?).ok())
        .collect();
    let (subnet, prefix) = match &a.subnet {
        Some(s) => parse_cidr(s)?,
        None => (0..=255u8)
            .map(|x| (Ipv4Addr::new(10, 214, x, 0), 24))
            .find(|(s, p)| {
                !taken.contains(&(*s, *p)) && !lb_network::subnet_in_use(*s, *p).unwrap_or(true)
            })
            .context("no free /24 left in 10.214.0.0/16: give --subnet")?,
    };
    let id = {
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    let d = json!({
        "Name": a.name,
        "Id": id,
        "Driver": "bridge",
        "Bridge": format!("lb-{}", &id[..12]),
        "Subnet": format!("{subnet}/{prefix}"),
        "Gateway": Ipv4Addr::from(u32::from(subnet) + 1).to_string(),
        "Created": lb_layerstore::rfc3339(lb_layerstore::creation_time()),
    });
    let dir = definitions_dir(store);
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    serde_json::to_writer_pretty(&mut tmp, &d)?;
    tmp.persist(dir.join(format!("{}.json", a.name)))?;
    println!("{id}");
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
    for d in definitions(store)? {
        println!(
            "{:<14} {:<20} {:<8} local",
            &d["Id"].as_str().unwrap_or("")[..12],
            d["Name"].as_str().unwrap_or(""),
            "bridge"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn users(store: &Store, name: &str) -> Vec<Record> {
    store
        .containers::<ContainerConfig>()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.config.network == name)
        .collect()
}

fn rm(store: &Store, a: RmArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in &a.networks {
        let result = (|| -> anyhow::Result<()> {
            if BUILTIN.contains(&name.as_str()) {
                bail!("{name} is a pre-defined network and cannot be removed");
            }
            let Some(d) = definition(store, name)? else {
                bail!("network {name} not found");
            };
            let using = users(store, name);
            if !using.is_empty() {
                let names: Vec<&str> = using.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "error while removing network: network {name} has active endpoints ({})",
                    names.join(", ")
                );
            }
            let net = network_of_definition(&d)?;
            lb_network::remove_bridge(&net)?;
            lb_network::forget(&paths(store, "").0, &net);
            std::fs::remove_file(definitions_dir(store).join(format!("{name}.json")))?;
            Ok(())
        })();
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("lb: {e:#}");
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
                json!({ "Name": "bridge", "Id": "000000000001", "Driver": "bridge",
                        "Bridge": n.bridge, "Subnet": n.cidr(), "Gateway": n.gateway().to_string() })
            }
            _ => definition(store, name)?.with_context(|| format!("network {name} not found"))?,
        };
        let mut containers = serde_json::Map::new();
        for c in users(store, name) {
            let dir = store.container_dir(&c.id);
            if State::load(&dir).running() {
                containers.insert(
                    c.id.clone(),
                    json!({ "Name": c.name, "IPv4Address": address(&dir)
                        .map(|ip| format!("{ip}/{}", d["Subnet"].as_str().and_then(|s| s.split('/').nth(1)).unwrap_or(""))) }),
                );
            }
        }
        out.push(json!({
            "Name": d["Name"], "Id": d["Id"], "Created": d["Created"], "Scope": "local",
            "Driver": "bridge", "EnableIPv6": false,
            "IPAM": { "Driver": "default", "Config": [ { "Subnet": d["Subnet"], "Gateway": d["Gateway"] } ] },
            "Options": { "com.docker.network.bridge.name": d["Bridge"] },
            "Containers": containers,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
