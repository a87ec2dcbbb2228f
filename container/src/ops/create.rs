//! `create` (the first half of `run`): an image and options become a container record, its
//! directory, its `/etc` files and its place on a network, all checked before anything is
//! written. Nothing runs yet.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use lb_layerstore::{Reference, Store};
use lb_network::Network;
use lb_network::ports::{Bound, PortSpec};
use lb_runtime::state::State;

use crate::record::CONFIG_VERSION;
use crate::run_spec::{ImageRunConfig, RunOptions};
use crate::{ContainerConfig, Error, PortBinding, Record, Result, network, run_spec};

/// What `run`/`create` are asked for, besides the spec options (`run`).
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    /// The image as the user named it.
    pub image: String,
    /// `--name`; a generated one otherwise.
    pub name: Option<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--init`.
    pub init: bool,
    /// `-i`: its standard input is kept open for `attach` (docker's `OpenStdin`).
    pub open_stdin: bool,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `-P`: every port the image exposes, on a free host port.
    pub publish_all: bool,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
    /// `--restart` (empty: no).
    pub restart: String,
    /// `--health-*`, `--no-healthcheck`.
    pub health: crate::health::HealthOptions,
    /// `--log-driver` and `--log-opt`s.
    pub log_driver: String,
    pub log_opts: Vec<String>,
    /// Everything that shapes the spec; its `hostname` and `join_network` are decided here.
    pub run: RunOptions,
    /// `--label`, `--add-host`, `--dns*`, `--device`, `--sysctl`, `--pid`/`--ipc`/`--uts`...
    pub host: crate::host_config::HostFlags,
}

/// A container made and on its network, not started.
pub struct Created {
    pub record: Record,
    pub dir: PathBuf,
    /// The lb network it is attached to, and its address there.
    pub network: Option<Network>,
    pub ip: Option<Ipv4Addr>,
    /// Its published ports' host sockets, bound (a port in use fails the create).
    pub ports: Vec<Bound>,
    /// What docker would print as `WARNING: …` (the caller prints them).
    pub warnings: Vec<String>,
}

/// Makes a container from `opts` (docker's checks first, nothing written on a refusal).
pub fn create(store: &Store, opts: &CreateOptions) -> Result<Created> {
    let image_arg = opts.image.as_str();
    // The flags' own checks come first, as docker's CLI makes them before asking the
    // daemon for anything.
    let mut host = crate::host_config::parse(&opts.host, &opts.run.network)?;
    crate::host_config::check(&host, opts.host.stop_signal.as_deref(), &opts.run.network)?;
    host.cap_add = opts.run.cap_add.clone();
    host.cap_drop = opts.run.cap_drop.clone();
    if host.uts_mode == "host" && opts.hostname.is_some() {
        return Err(Error::InvalidOption(
            "conflicting options: hostname and the UTS mode".into(),
        ));
    }
    let name_ref = Reference::parse(image_arg)
        .map_err(|e| Error::InvalidOption(format!("invalid image reference {image_arg:?}: {e}")))?;
    let image = store
        .image(&name_ref)
        .map_err(|_| Error::NoSuchImage(image_arg.to_string()))?;
    let lowers = crate::rootfs::image_lowers(store, &image)?;
    let id = random_id()?;
    let mode = opts.run.network.as_str();
    let host_network = mode == "host";
    let net = network::lookup(store, mode)?;
    let bridge = net.is_some();
    network::reconcile(store);
    let mut publish: Vec<PortSpec> = opts
        .publish
        .iter()
        .map(|p| lb_network::ports::parse_publish(p))
        .collect::<std::result::Result<_, _>>()?;
    if opts.publish_all {
        let image_ports = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default();
        for p in image_ports.into_iter().chain(host.exposed_ports.clone()) {
            let mut spec = lb_network::ports::parse_publish(&p)
                .map_err(|e| Error::InvalidOption(format!("the image exposes {p:?}: {e}")))?;
            spec.host_port = 0;
            publish.push(spec);
        }
    }
    let mut warnings = Vec::new();
    if !publish.is_empty() && !bridge {
        if host_network {
            warnings.push("Published ports are discarded when using host network mode".into());
            publish.clear();
        } else {
            return Err(Error::InvalidOption(format!(
                "conflicting options: port publishing and the network mode {mode}"
            )));
        }
    }
    let ports = bind_ports(&publish)?;
    // `--network container:NAME`: that container's network stack, hosts, resolver and
    // host name, as docker shares them.
    let joined = match mode.strip_prefix("container:") {
        Some(other) => {
            let c = store.container::<ContainerConfig>(other)?;
            let other_dir = store.container_dir(&c.id);
            let st = State::load(&other_dir);
            if !st.running() {
                return Err(Error::Conflict(format!(
                    "--network container:{other}: the container is not running"
                )));
            }
            if opts.hostname.is_some() {
                return Err(Error::InvalidOption(format!(
                    "--hostname: conflicting options: hostname and the network mode container:{other}"
                )));
            }
            Some((format!("/proc/{}/ns/net", st.pid), other_dir.join("etc")))
        }
        None => None,
    };
    let joins = namespace_joins(store, &host)?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| {
        if host_network || host.uts_mode == "host" {
            host_hostname()
        } else if let Some((_, etc)) = &joined {
            std::fs::read_to_string(etc.join("hostname"))
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| id[..12].to_string())
        } else {
            id[..12].to_string()
        }
    });
    let image_volumes: Vec<String> = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default();
    let mut asked = opts.run.volumes.clone();
    for from in &opts.volumes_from {
        asked.extend(volumes_of(store, from)?);
    }
    let volumes = crate::volume::plan(
        store,
        &asked,
        &opts.run.mounts,
        &opts.run.tmpfs,
        &image_volumes,
    )?;
    let run = RunOptions {
        hostname: hostname.clone(),
        volumes: volumes.volumes.clone(),
        mounts: volumes.mounts.clone(),
        join_network: if bridge {
            Some(network::netns_file(store, &id))
        } else {
            joined.as_ref().map(|(ns, _)| PathBuf::from(ns))
        },
        ..opts.run.clone()
    };
    let image_cfg = image_run_config(&image);
    // Validate everything before anything is written to the store.
    let dir_guess = store.container_dir(&id);
    let mut plan = run_spec::plan(&image_cfg, &run, &dir_guess.join("etc"))?;
    crate::host_config::spec::apply(&mut plan.spec, &host, &joins)?;
    let (entrypoint, cmd) = run_spec::entrypoint_and_cmd(&image_cfg, &run);
    let restart = crate::restart::RestartPolicy::parse(&opts.restart)?;
    if opts.auto_remove && restart.name != crate::restart::RestartName::No {
        return Err(Error::InvalidOption(
            "Conflicting options: --restart and --rm".into(),
        ));
    }
    let (_, log_config) = crate::json_log::LogConfig::from_flags(&opts.log_driver, &opts.log_opts)?;
    let record = Record {
        id: id.clone(),
        name: opts.name.clone().unwrap_or_else(|| generated_name(&id)),
        image: image.manifest_digest,
        image_name: image_arg.to_string(),
        created: now(),
        auto_remove: opts.auto_remove,
        config: ContainerConfig {
            version: CONFIG_VERSION,
            spec: plan.spec,
            user: Some(plan.user),
            seccomp: plan.seccomp,
            stop_signal: opts
                .host
                .stop_signal
                .clone()
                .unwrap_or_else(|| image_cfg.stop_signal.clone()),
            tty: run.tty,
            open_stdin: opts.open_stdin,
            init: opts.init,
            lowers,
            network: net.as_ref().map_or(mode, |n| n.name.as_str()).to_string(),
            ports: ports.iter().map(|b| PortBinding(b.spec())).collect(),
            log_config: Some(log_config),
            entrypoint: Some(entrypoint),
            cmd: Some(cmd),
            env: Some(run_spec::configured_env(&image_cfg, &run)?),
            binds: opts.run.volumes.clone(),
            volumes: volumes.uses,
            volumes_from: opts.volumes_from.clone(),
            restart,
            health: crate::health::HealthConfig::of(image_healthcheck(store, &image), &opts.health),
            host,
        },
    };
    let dir = store.create_container(&record)?;
    // Its file system, then its volumes: new ones get the image's files at their paths.
    let made = crate::rootfs::create(store, &image, &id).and_then(|()| {
        let fresh = crate::volume::make(store, &record.config.volumes)?;
        if fresh.is_empty() {
            return Ok(());
        }
        crate::rootfs::with_image_tree(store, &record, &dir, |tree| {
            fresh
                .iter()
                .try_for_each(|(v, path)| crate::volume::copy_up(v, tree, path))
        })
    });
    if let Err(e) = made {
        crate::volume::release_anonymous(store, &record);
        let _ = store.remove_container(&id);
        return Err(e);
    }
    if let Err(e) = write_etc_files(&dir, &hostname, host_network, &record.config.host) {
        crate::volume::release_anonymous(store, &record);
        let _ = store.remove_container(&id);
        return Err(e);
    }
    let mut ip = None;
    if let Some(net) = &net {
        let specs: Vec<_> = ports.iter().map(|b| b.spec()).collect();
        let attached = network::attach(store, net, &id, &dir)
            .and_then(|a| network::publish(store, net, &id, a, &specs).map(|()| a));
        match attached {
            Ok(a) => ip = Some(a),
            Err(e) => {
                let _ = network::detach(store, net, &id);
                let _ = store.remove_container(&id);
                return Err(e);
            }
        }
    }
    if let Some((_, other_etc)) = &joined {
        for f in ["hosts", "resolv.conf"] {
            let from = other_etc.join(f);
            std::fs::copy(&from, dir.join("etc").join(f))
                .map_err(|source| Error::Io { path: from, source })?;
        }
    }
    super::record_event(store, &record, "create", &[]);
    Ok(Created {
        record,
        dir,
        network: net,
        ip,
        ports,
        warnings,
    })
}

/// The `/etc` files of a new container: docker's, with `--add-host` lines and the
/// `--dns*` resolver.
fn write_etc_files(
    dir: &std::path::Path,
    hostname: &str,
    host_network: bool,
    host: &crate::host_config::HostConfigRecord,
) -> Result<()> {
    use crate::host_config::etc_files;
    let etc =
        lb_runtime::defaults::write_etc_files(dir, hostname, host_network).map_err(|source| {
            Error::Io {
                path: dir.join("etc"),
                source,
            }
        })?;
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    if !host.extra_hosts.is_empty() {
        let lines =
            etc_files::extra_hosts_lines(&host.extra_hosts, Network::default_bridge().gateway())?;
        let path = etc.join("hosts");
        let mut text = std::fs::read_to_string(&path).map_err(io(path.clone()))?;
        text.push_str(&lines);
        std::fs::write(&path, text).map_err(io(path))?;
    }
    let path = etc.join("resolv.conf");
    let current = std::fs::read_to_string(&path).map_err(io(path.clone()))?;
    if let Some(text) = etc_files::resolv_conf(&current, host) {
        std::fs::write(&path, text).map_err(io(path))?;
    }
    Ok(())
}

/// `--pid container:NAME` and `--ipc container:NAME`: that running container's
/// namespaces (and its `/dev/shm`), through its first process.
fn namespace_joins(
    store: &Store,
    host: &crate::host_config::HostConfigRecord,
) -> Result<crate::host_config::spec::Joins> {
    use crate::host_config::{joined_container, spec};
    let running_pid = |name: &str, what: &str| -> Result<i32> {
        let c = store
            .container::<ContainerConfig>(name)
            .map_err(|_| Error::InvalidOption(format!("No such container: {name}")))?;
        let st = State::load(&store.container_dir(&c.id));
        if !st.running() {
            return Err(Error::Conflict(format!(
                "cannot join {what} of a non running container: {name}"
            )));
        }
        Ok(st.pid)
    };
    let pid = match joined_container(&host.pid_mode) {
        Some(name) => Some(PathBuf::from(format!(
            "/proc/{}/ns/pid",
            running_pid(name, "PID")?
        ))),
        None => None,
    };
    let ipc = match joined_container(&host.ipc_mode) {
        Some(name) => Some(PathBuf::from(format!(
            "/proc/{}/ns/ipc",
            running_pid(name, "IPC")?
        ))),
        None => None,
    };
    Ok(spec::Joins { pid, ipc })
}

/// `--volumes-from NAME[:ro|rw]`: that container's volumes and binds as `-v` values, at
/// the same paths, read-only with `ro`, writable with `rw`, else as they are there.
fn volumes_of(store: &Store, from: &str) -> Result<Vec<String>> {
    let (name, mode) = match from.rsplit_once(':') {
        Some((n, m @ ("ro" | "rw"))) => (n, m),
        _ => (from, ""),
    };
    let other = store.container::<ContainerConfig>(name)?;
    let with_mode = |src: &str, dst: &str, own_ro: bool| {
        let ro = match mode {
            "ro" => true,
            "rw" => false,
            _ => own_ro,
        };
        if ro {
            format!("{src}:{dst}:ro")
        } else {
            format!("{src}:{dst}")
        }
    };
    let mut out: Vec<String> = other
        .config
        .volumes
        .iter()
        .map(|v| with_mode(&v.name, &v.destination, v.read_only))
        .collect();
    for b in &other.config.binds {
        let parts: Vec<&str> = b.split(':').collect();
        if let [src, dst, rest @ ..] = parts.as_slice()
            && src.starts_with('/')
        {
            out.push(with_mode(
                src,
                dst,
                rest.first()
                    .is_some_and(|m| m.split(',').any(|o| o == "ro")),
            ));
        }
    }
    Ok(out)
}

/// The image's HEALTHCHECK (docker's `config.Healthcheck`, which the OCI config type does
/// not carry: read from the config blob).
fn image_healthcheck(
    store: &Store,
    image: &lb_layerstore::Image,
) -> Option<crate::health::HealthConfig> {
    #[derive(serde::Deserialize)]
    struct Blob {
        config: Option<Inner>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "Healthcheck")]
        healthcheck: Option<crate::health::HealthConfig>,
    }
    let bytes = store.content().read_verified(&image.config_digest).ok()?;
    serde_json::from_slice::<Blob>(&bytes)
        .ok()?
        .config?
        .healthcheck
}

/// The run configuration an image gives its containers.
pub fn image_run_config(image: &lb_layerstore::Image) -> ImageRunConfig {
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

/// Binds the host sockets of `specs` (before the container starts: a port in use fails
/// the run), with the ports actually bound.
pub fn bind_ports(specs: &[PortSpec]) -> Result<Vec<Bound>> {
    specs
        .iter()
        .map(|s| lb_network::ports::bind(*s).map_err(Error::from))
        .collect()
}

pub(crate) fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| Error::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
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

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Now, as records and states stamp it.
pub fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // To the nanosecond, as docker's: containers made in one second keep their order
    // (`ps -l`, `ps -n`, before/since); nine digits always, so the text sorts as the time.
    let secs = lb_layerstore::rfc3339(t.as_secs() as i64);
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), t.subsec_nanos())
}
