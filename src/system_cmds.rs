//! `lb version` and `lb info`: what docker's show, for a tool with no daemon (one "Client"
//! section; the store and the host in place of the daemon's), as text or through
//! `--format`.

use std::process::ExitCode;

use clap::Args;
use lb_container::Status;
use lb_layerstore::Store;
use serde::Serialize;

use crate::template::Format;

#[derive(Args)]
pub struct VersionArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Version {
    client: ClientVersion,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ClientVersion {
    version: &'static str,
    /// The Docker Engine API version lb's behaviour follows.
    #[serde(rename = "ApiVersion")]
    api_version: &'static str,
    os: &'static str,
    arch: &'static str,
}

/// `lb version`.
pub fn version(args: VersionArgs) -> anyhow::Result<ExitCode> {
    let v = Version {
        client: ClientVersion {
            version: env!("CARGO_PKG_VERSION"),
            api_version: "1.41",
            os: std::env::consts::OS,
            arch: lb_layerstore::host_platform().1,
        },
    };
    match args.format {
        Some(f) => println!("{}", Format::parse(&f)?.render(&v)?),
        None => {
            println!("Client:");
            println!(" Version:           {}", v.client.version);
            println!(" API version:       {}", v.client.api_version);
            println!(" OS/Arch:           {}/{}", v.client.os, v.client.arch);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    format: Option<String>,
}

/// docker's `info` keys that apply to lb.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Info {
    containers: usize,
    containers_running: usize,
    containers_paused: usize,
    containers_stopped: usize,
    images: usize,
    driver: &'static str,
    logging_driver: &'static str,
    cgroup_driver: &'static str,
    cgroup_version: String,
    kernel_version: String,
    operating_system: String,
    #[serde(rename = "OSType")]
    os_type: &'static str,
    architecture: String,
    #[serde(rename = "NCPU")]
    ncpu: usize,
    mem_total: u64,
    name: String,
    /// The store's root (docker's data root).
    docker_root_dir: String,
    server_version: &'static str,
    security_options: Vec<String>,
}

/// `lb info`.
pub fn info(store: &Store, args: InfoArgs) -> anyhow::Result<ExitCode> {
    let containers = lb_container::ops::list(store, true)?;
    let status = |s: Status| {
        containers
            .iter()
            .filter(|(_, st)| Status::of(st) == s)
            .count()
    };
    let running = status(Status::Running);
    let paused = status(Status::Paused);
    let mut images: Vec<String> = store
        .names()?
        .iter()
        .map(|(_, d)| d.digest().to_string())
        .collect();
    images.sort();
    images.dedup();
    let uname = nix::sys::utsname::uname()?;
    let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
    let info = Info {
        containers: containers.len(),
        containers_running: running,
        containers_paused: paused,
        containers_stopped: containers.len() - running - paused,
        images: images.len(),
        driver: store.storage_driver().as_str(),
        logging_driver: "json-file",
        cgroup_driver: "cgroupfs",
        cgroup_version: lb_runtime::cgroups::host_version()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        kernel_version: text(uname.release()),
        operating_system: os_release().unwrap_or_else(|| "Linux".into()),
        os_type: "linux",
        architecture: text(uname.machine()),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total: mem_total().unwrap_or(0),
        name: text(uname.nodename()),
        docker_root_dir: store.root().display().to_string(),
        server_version: env!("CARGO_PKG_VERSION"),
        security_options: vec!["name=seccomp,profile=default".into()],
    };
    if let Some(f) = args.format {
        println!("{}", Format::parse(&f)?.render(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Client:");
    println!(" Version:    {}", info.server_version);
    println!(" Debug Mode: false");
    println!();
    println!("Server:");
    println!(" Containers: {}", info.containers);
    println!("  Running: {}", info.containers_running);
    println!("  Paused: {}", info.containers_paused);
    println!("  Stopped: {}", info.containers_stopped);
    println!(" Images: {}", info.images);
    println!(" Server Version: {}", info.server_version);
    println!(" Storage Driver: {}", info.driver);
    println!(" Logging Driver: {}", info.logging_driver);
    println!(" Cgroup Driver: {}", info.cgroup_driver);
    println!(" Cgroup Version: {}", info.cgroup_version);
    println!(" Security Options:");
    println!("  seccomp");
    println!("   Profile: default");
    println!(" Kernel Version: {}", info.kernel_version);
    println!(" Operating System: {}", info.operating_system);
    println!(" OSType: {}", info.os_type);
    println!(" Architecture: {}", info.architecture);
    println!(" CPUs: {}", info.ncpu);
    println!(" Total Memory: {}", binary_size(info.mem_total));
    println!(" Name: {}", info.name);
    println!(" Docker Root Dir: {}", info.docker_root_dir);
    println!(" Debug Mode: false");
    Ok(ExitCode::SUCCESS)
}

/// `/etc/os-release`'s PRETTY_NAME.
fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    let line = text.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_string())
}

/// MemTotal of /proc/meminfo, in bytes.
fn mem_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// docker's `units.BytesSize`: powers of 1024, two decimals ("23.54GiB").
fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{}", units[u])
}

/// `lb system boot`: each container started, by name; a start that fails is said and
/// makes the exit status 1, the others are started still.
pub fn boot(store: &lb_layerstore::Store) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for (name, started) in lb_container::ops::boot(store)? {
        match started {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("lb: {name}: {}", crate::error_text(&e.into()));
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(super::binary_size(25_275_691_008), "23.54GiB");
        assert_eq!(super::binary_size(1024), "1KiB");
        assert_eq!(super::binary_size(1536), "1.5KiB");
    }
}
