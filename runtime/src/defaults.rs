//! Docker's default confinement as an OCI spec: the capability set, namespaces, mounts,
//! masked and read-only paths that `docker run` gives a container when no option widens or
//! narrows them (moby's `oci/defaults.go`). One place, so `run` and `build` confine alike.

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// Docker's default capabilities: the bounding set of every container not `--privileged`.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container: kernel information and knobs it has no business with.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but never write.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The spec's capability for a name like `CAP_CHOWN` (docker also accepts `chown`).
pub fn capability(name: &str) -> Option<oci_spec::runtime::Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full)).ok()
}

/// The `CAP_*` name of a spec capability (its serde form; `Display` drops the prefix).
pub fn capability_name(cap: &oci_spec::runtime::Capability) -> String {
    match serde_json::to_value(cap) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("CAP_{cap}"),
    }
}

/// Every capability the running kernel knows, for `--privileged` and `--cap-add ALL`.
pub fn all_caps() -> Vec<String> {
    caps::all().iter().map(|c| c.to_string()).collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("static mount")
}

/// The file systems every container gets, in mount order.
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ]
}

/// The namespaces of a container with its own network stack (`--network none` and, later,
/// bridge); `--network host` drops the network one.
pub fn default_namespaces(own_network: bool) -> Vec<LinuxNamespaceType> {
    let mut ns = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if own_network {
        ns.push(LinuxNamespaceType::Network);
    }
    ns
}

/// The devices a container may use (docker's and runc's default device cgroup): any
/// node may be created (mknod, `m`), but only these may be read or written: null, zero,
/// full, random, urandom, tty, console, ptmx and the pty slaves. Opening a node of a host
/// disk that a container made itself fails.
pub fn default_devices() -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType as T};
    let rule = |allow: bool, typ: T, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().expect("device rule")
    };
    let mut rules = vec![
        rule(false, T::A, None, None, "rwm"),
        rule(true, T::C, None, None, "m"),
        rule(true, T::B, None, None, "m"),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule(true, T::C, Some(major), Some(minor), "rwm"));
    }
    rules.push(rule(true, T::C, Some(136), None, "rwm"));
    rules
}

/// Docker's default spec for running `args` as root in `/`: the caller then sets the
/// process (env, user, cwd), hostname, extra mounts and resources.
pub fn docker_spec(args: Vec<String>, own_network: bool) -> Spec {
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS
        .iter()
        .map(|c| capability(c).expect("known capability"))
        .collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .expect("capabilities");
    let process = ProcessBuilder::default()
        .args(args)
        .cwd("/")
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .expect("user"),
        )
        .capabilities(capabilities)
        .no_new_privileges(false)
        .build()
        .expect("process");
    let namespaces = default_namespaces(own_network)
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build().expect("ns"))
        .collect::<Vec<_>>();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(
            oci_spec::runtime::LinuxResourcesBuilder::default()
                .devices(default_devices())
                .build()
                .expect("resources"),
        )
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .expect("linux");
    SpecBuilder::default()
        .version("1.2.0")
        .root(RootBuilder::default().path("rootfs").build().expect("root"))
        .process(process)
        .mounts(default_mounts())
        .linux(linux)
        .build()
        .expect("spec")
}

/// Writes the `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` docker gives a container
/// into `dir/etc` (the caller binds them over the image's): the host's resolver, and the
/// host's hosts file on the host network or localhost and `hostname` otherwise.
pub fn write_etc_files(
    dir: &std::path::Path,
    hostname: &str,
    host_network: bool,
) -> std::io::Result<std::path::PathBuf> {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        )
    };
    std::fs::write(etc.join("hosts"), hosts)?;
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = if host_network {
        resolv
    } else {
        resolv_conf_for_own_network(&resolv)
    };
    std::fs::write(etc.join("resolv.conf"), resolv)?;
    std::fs::write(etc.join("hostname"), format!("{hostname}\n"))?;
    Ok(etc)
}

/// The host's resolver configuration for a container with a network of its own, as docker
/// writes it: loopback name servers (a local resolver such as systemd-resolved's) cannot
/// be reached from there and are dropped; with none left, Google's public ones.
pub fn resolv_conf_for_own_network(host: &str) -> String {
    let loopback = |l: &str| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver")
            && w.next()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_loopback())
    };
    let mut out: Vec<&str> = host.lines().filter(|l| !loopback(l)).collect();
    let has_server = out
        .iter()
        .any(|l| l.split_whitespace().next() == Some("nameserver"));
    if !has_server {
        out.extend(["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
    }
    out.join("\n") + "\n"
}

/// A read-write bind of `source` at `destination`, as the `/etc` files are mounted.
pub fn etc_bind(destination: &str, source: &std::path::Path) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string(), "rprivate".to_string()])
        .build()
        .expect("bind mount")
}
