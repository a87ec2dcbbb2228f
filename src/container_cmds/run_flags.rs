//! `run`/`create` flags that reach past the container's process: its surroundings
//! (`--add-host`, `--dns*`, `--label*`, `--device`, `--sysctl`, namespace modes...,
//! handed to `lb_container::host_config`), and the client's part of docker's `run`:
//! which streams a foreground run connects (`-a`), whether it forwards signals
//! (`--sig-proxy`), the `--cidfile`, and the image as `--pull` and `--platform` want it.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{ArgAction, Args};
use lb_layerstore::{Reference, Store};

#[derive(Args)]
pub struct HostArgs {
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long)]
    label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file")]
    label_file: Vec<PathBuf>,
    /// Write the container ID to the file
    #[arg(long)]
    cidfile: Option<PathBuf>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMS]])
    #[arg(long)]
    device: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Signal to stop a container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    stop_timeout: Option<String>,
    /// Sysctl options
    #[arg(long)]
    sysctl: Vec<String>,
    /// PID namespace to use (host, container:NAME)
    #[arg(long)]
    pid: Option<String>,
    /// IPC mode to use (host, private, shareable, none, container:NAME)
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace to use (host)
    #[arg(long)]
    uts: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias")]
    network_alias: Vec<String>,
    /// Set platform if server is multi-platform capable (os[/arch[/variant]])
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", value_name = "BOOL", default_value_t = true,
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub sig_proxy: bool,
}

impl HostArgs {
    pub fn cidfile(&self) -> Option<&Path> {
        self.cidfile.as_deref()
    }

    /// The flags `lb_container` checks and keeps.
    pub fn flags(&self) -> lb_container::host_config::HostFlags {
        lb_container::host_config::HostFlags {
            add_hosts: self.add_host.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            labels: self.label.clone(),
            label_files: self.label_file.clone(),
            devices: self.device.clone(),
            group_add: self.group_add.clone(),
            shm_size: self.shm_size.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout.clone(),
            sysctls: self.sysctl.clone(),
            pid: self.pid.clone(),
            ipc: self.ipc.clone(),
            uts: self.uts.clone(),
            expose: self.expose.clone(),
            network_aliases: self.network_alias.clone(),
            cidfile: self.cidfile.clone(),
            memory_swap: self.memory_swap.clone(),
        }
    }

    /// The streams `-a` names (docker's check: STDIN, STDOUT, STDERR in any case).
    pub fn attached(&self) -> anyhow::Result<Option<Attach>> {
        if self.attach.is_empty() {
            return Ok(None);
        }
        let mut a = Attach::default();
        for s in &self.attach {
            match s.to_ascii_lowercase().as_str() {
                "stdin" => a.stdin = true,
                "stdout" => a.stdout = true,
                "stderr" => a.stderr = true,
                _ => bail!(
                    "invalid argument {s:?} for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"
                ),
            }
        }
        Ok(Some(a))
    }
}

/// `-a`: the streams a foreground run connects to lb's.
#[derive(Debug, Default, Clone, Copy)]
pub struct Attach {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// `--cidfile FILE`: made (refused when it is there) before the container, its id
/// written once the container is made; removed again when the create fails.
pub struct CidFile(Option<PathBuf>);

impl CidFile {
    pub fn claim(path: Option<&Path>) -> anyhow::Result<CidFile> {
        let Some(path) = path else {
            return Ok(CidFile(None));
        };
        if path.exists() {
            bail!(
                "container ID file found, make sure the other container isn't running or delete {}",
                path.display()
            );
        }
        std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("Failed to create the container ID file: {e}"))?;
        Ok(CidFile(Some(path.to_path_buf())))
    }

    pub fn write(mut self, id: &str) -> anyhow::Result<()> {
        if let Some(p) = self.0.take() {
            std::fs::write(&p, id).map_err(|e| {
                anyhow::anyhow!("Failed to write the container ID to the file: {e}")
            })?;
        }
        Ok(())
    }
}

impl Drop for CidFile {
    /// Not written: the create failed, and docker takes the file away.
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `--platform`'s value as containerd's `platforms.Parse` reads it: `os`, `arch`
/// (the host's OS), `os/arch` or `os/arch/variant`, normalised (`x86_64` is amd64).
fn parse_platform(p: &str) -> anyhow::Result<(String, String)> {
    const OSES: [&str; 8] = [
        "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos",
    ];
    let arch = |a: &str| -> Option<&'static str> {
        Some(match a.to_ascii_lowercase().as_str() {
            "amd64" | "x86_64" | "x86-64" => "amd64",
            "arm64" | "aarch64" | "armv8" => "arm64",
            "arm" | "armhf" | "armel" | "armv7" | "armv6" | "armv5" => "arm",
            "386" | "i386" | "i686" | "x86" => "386",
            "ppc64le" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "mips64le" => "mips64le",
            _ => return None,
        })
    };
    let bad = || {
        anyhow::anyhow!(
            "error parsing specified platform: {p:?}: unknown operating system or architecture: invalid argument"
        )
    };
    let parts: Vec<&str> = p.split('/').collect();
    let os_of = |o: &str| OSES.contains(&o.to_ascii_lowercase().as_str());
    match parts.as_slice() {
        [one] if os_of(one) => Ok((
            one.to_ascii_lowercase(),
            lb_layerstore::host_platform().1.into(),
        )),
        [one] => Ok(("linux".into(), arch(one).ok_or_else(bad)?.into())),
        [os, a] | [os, a, _] if os_of(os) => {
            Ok((os.to_ascii_lowercase(), arch(a).ok_or_else(bad)?.into()))
        }
        _ => Err(bad()),
    }
}

/// The image `run`/`create` start from, as `--pull` and `--platform` want it: pulled
/// first (`always`), pulled when not here or not of the platform (`missing`, docker's
/// default: "Unable to find image ... locally" first), or taken as it is (`never`, and
/// docker 20.10 takes any other value so too).
pub fn ensure_image(store: &Store, image: &str, args: &HostArgs) -> anyhow::Result<()> {
    let platform = args.platform.as_deref().map(parse_platform).transpose()?;
    let Ok(name) = Reference::parse(image) else {
        // `create` says what is wrong with the name.
        return Ok(());
    };
    let local = store.image(&name).ok();
    let actual = local.as_ref().map(|i| {
        (
            i.config.os().to_string(),
            i.config.architecture().to_string(),
        )
    });
    let here = match (&actual, &platform) {
        (Some(a), Some(p)) => a == p,
        (found, _) => found.is_some(),
    };
    let pull = match args.pull.as_str() {
        "always" => true,
        "missing" => {
            if !here {
                eprintln!("Unable to find image '{}' locally", name.familiar());
            }
            !here
        }
        _ if !here => match (actual, platform) {
            (Some((os, arch)), Some((want_os, want_arch))) => bail!(
                "image with reference {image} was found but does not match the specified platform: wanted {want_os}/{want_arch}, actual: {os}/{arch}"
            ),
            _ => bail!("No such image: {}", name.familiar()),
        },
        _ => false,
    };
    if pull {
        crate::registry_cmds::pull_image(store, &name, args.platform.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_as_containerd_reads_them() {
        assert_eq!(
            parse_platform("linux/arm64").unwrap(),
            ("linux".into(), "arm64".into())
        );
        assert_eq!(parse_platform("x86_64").unwrap().1, "amd64");
        assert_eq!(
            parse_platform("bogus").unwrap_err().to_string(),
            "error parsing specified platform: \"bogus\": unknown operating system or architecture: invalid argument"
        );
    }
}
