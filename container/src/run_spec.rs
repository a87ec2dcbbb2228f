//! `lb run`'s options and an image's config turned into what the runtime takes: docker's
//! rules for the command (Entrypoint/Cmd), environment, working directory, user, mounts
//! (`-v`, `--mount`, `--tmpfs`), capabilities, security options, ulimits and resources.
//! Pure: reads no files but `--env-file`s, so every rule is unit-tested.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, invalid};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, Mount, MountBuilder, PosixRlimit,
    PosixRlimitBuilder, Spec,
};

use lb_runtime::defaults;

/// The image config fields a container starts from.
#[derive(Debug, Default, Clone)]
pub struct ImageRunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
}

/// The `lb run` options that shape the spec (a plain struct, so tests need no clap).
#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: String,
    pub tty: bool,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub ulimits: Vec<String>,
    pub network: String,
    /// `--network container:NAME`: the network namespace to join (`/proc/PID/ns/net` of
    /// that container's first process), resolved by the caller.
    pub join_network: Option<PathBuf>,
}

/// What the runtime is given besides the layers.
#[derive(Debug)]
pub struct RunPlan {
    pub spec: Spec,
    pub user: String,
    pub seccomp: bool,
}

/// The entrypoint and command a container runs (docker's `Config.Entrypoint` and
/// `Config.Cmd`), by the rule below.
pub fn entrypoint_and_cmd(image: &ImageRunConfig, opts: &RunOptions) -> (Vec<String>, Vec<String>) {
    let (entrypoint, default_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (vec![], vec![]),
        Some(e) => (vec![e.clone()], vec![]),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = if opts.command.is_empty() {
        default_cmd
    } else {
        opts.command.clone()
    };
    (entrypoint, cmd)
}

/// docker's Entrypoint/Cmd rule: `--entrypoint` replaces the image's entrypoint and drops
/// its Cmd; arguments after the image replace Cmd.
pub fn command_line(image: &ImageRunConfig, opts: &RunOptions) -> Result<Vec<String>> {
    let (entrypoint, cmd) = entrypoint_and_cmd(image, opts);
    let all: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if all.is_empty() {
        invalid!("no command specified");
    }
    Ok(all)
}

/// `KEY=VALUE`, or `KEY` taken from lb's own environment (dropped when unset).
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// Sets `entry` in `env`, replacing an earlier value of its key.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or("").to_string();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(entry);
}

/// The environment as configured (docker's `Config.Env`): the image's, then `--env-file`
/// and `-e` entries; without what is added for the process only (a default PATH,
/// HOSTNAME, TERM).
pub fn configured_env(image: &ImageRunConfig, opts: &RunOptions) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for e in &image.env {
        set_env(&mut env, e.clone());
    }
    add_env(&mut env, &opts.env_files, &opts.env)?;
    Ok(env)
}

pub fn environment(image: &ImageRunConfig, opts: &RunOptions) -> Result<Vec<String>> {
    let mut env = Vec::new();
    set_env(&mut env, format!("PATH={}", lb_runtime::DEFAULT_PATH));
    for e in &image.env {
        set_env(&mut env, e.clone());
    }
    set_env(&mut env, format!("HOSTNAME={}", opts.hostname));
    if opts.tty {
        set_env(&mut env, "TERM=xterm".into());
    }
    add_env(&mut env, &opts.env_files, &opts.env)?;
    Ok(env)
}

/// Adds `--env-file` files' entries, then `-e` entries, to `env` (later ones win), as
/// `run` and `exec` take them.
pub fn add_env(
    env: &mut Vec<String>,
    env_files: &[std::path::PathBuf],
    env_args: &[String],
) -> Result<()> {
    for file in env_files {
        let text = std::fs::read_to_string(file).map_err(|source| Error::OptionFile {
            option: "--env-file",
            path: file.clone(),
            source,
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line
                .split('=')
                .next()
                .is_some_and(|k| k.is_empty() || k.contains(char::is_whitespace))
            {
                invalid!(
                    "--env-file {}:{}: variable '{line}' contains whitespaces or has no name",
                    file.display(),
                    n + 1
                );
            }
            if let Some(e) = env_entry(line) {
                set_env(env, e);
            }
        }
    }
    for e in env_args {
        if e.starts_with('=') || e.is_empty() {
            invalid!("invalid environment variable: {e}");
        }
        if let Some(e) = env_entry(e) {
            set_env(env, e);
        }
    }
    Ok(())
}

/// docker's `RAMInBytes`: a number with an optional b, k, m, g, t or p suffix (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<i64> {
    let mut t = s.trim().to_ascii_lowercase();
    // "512mb" and "512m" mean the same.
    if t.len() > 2 && t.ends_with('b') && t[..t.len() - 1].ends_with(['k', 'm', 'g', 't', 'p']) {
        t.pop();
    }
    let shift = match t.chars().last() {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some('b') => 0,
        _ => -1,
    };
    let num = if shift >= 0 {
        &t[..t.len() - 1]
    } else {
        &t[..]
    };
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| *v >= 0.0 && v.is_finite())
        .ok_or_else(|| Error::InvalidOption(format!("invalid size: '{s}'")))?;
    Ok((v * (1u64 << shift.max(0)) as f64) as i64)
}

fn mount(dest: &str, typ: &str, source: &str, options: Vec<String>) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options)
        .build()
        .expect("mount")
}

fn check_dest(dest: &str, what: &str) -> Result<()> {
    if !dest.starts_with('/') {
        invalid!("invalid {what}: the container path '{dest}' must be absolute");
    }
    if dest == "/" {
        invalid!("invalid {what}: the container path cannot be '/'");
    }
    Ok(())
}

/// `-v HOST:CTR[:ro|rw]`, `--mount type=bind|tmpfs,...`, `--tmpfs CTR[:OPTIONS]`.
pub fn user_mounts(opts: &RunOptions) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for v in &opts.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, "rw"),
            [s, d, m] => (*s, *d, *m),
            _ => invalid!("invalid volume specification: '{v}'"),
        };
        if !src.starts_with('/') {
            invalid!(
                "invalid volume specification: '{v}': named volumes are not supported, give an absolute host path"
            );
        }
        check_dest(dst, &format!("volume specification '{v}'"))?;
        let mut options = vec!["rbind".to_string()];
        for m in mode.split(',') {
            match m {
                "ro" | "rw" => options.push(m.to_string()),
                "z" | "Z" | "" => {}
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                    options.push(m.to_string())
                }
                _ => invalid!("invalid volume specification: '{v}': invalid mode: {m}"),
            }
        }
        out.push(mount(dst, "bind", src, options));
    }
    for m in &opts.mounts {
        let mut typ = "volume".to_string();
        let (mut src, mut dst) = (String::new(), String::new());
        let mut options = Vec::new();
        for field in m.split(',') {
            let (k, val) = field.split_once('=').unwrap_or((field, ""));
            match k {
                "type" => typ = val.to_string(),
                "source" | "src" => src = val.to_string(),
                "target" | "destination" | "dst" => dst = val.to_string(),
                "readonly" | "ro" if val.is_empty() || val == "true" || val == "1" => {
                    options.push("ro".to_string())
                }
                "readonly" | "ro" => {}
                "bind-propagation" => options.push(val.to_string()),
                "tmpfs-size" => options.push(format!("size={}", parse_bytes(val)?)),
                "tmpfs-mode" => options.push(format!("mode={val}")),
                _ => invalid!("invalid field '{k}' in --mount {m}"),
            }
        }
        if dst.is_empty() {
            invalid!("invalid --mount {m}: target is required");
        }
        check_dest(&dst, &format!("--mount {m}"))?;
        match typ.as_str() {
            "bind" => {
                if !src.starts_with('/') {
                    invalid!("invalid --mount {m}: bind source must be an absolute path");
                }
                options.insert(0, "rbind".to_string());
                out.push(mount(&dst, "bind", &src, options));
            }
            "tmpfs" => {
                options.extend(["nosuid", "nodev", "noexec"].map(String::from));
                out.push(mount(&dst, "tmpfs", "tmpfs", options));
            }
            other => invalid!("invalid --mount {m}: type '{other}' is not supported (bind, tmpfs)"),
        }
    }
    for t in &opts.tmpfs {
        let (dst, o) = t.split_once(':').unwrap_or((t, ""));
        check_dest(dst, &format!("--tmpfs {t}"))?;
        let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        options.extend(o.split(',').filter(|s| !s.is_empty()).map(String::from));
        out.push(mount(dst, "tmpfs", "tmpfs", options));
    }
    Ok(out)
}

/// `--ulimit NAME=SOFT[:HARD]`.
pub fn ulimits(opts: &RunOptions) -> Result<Vec<PosixRlimit>> {
    let mut out = Vec::new();
    for u in &opts.ulimits {
        let (name, vals) = u
            .split_once('=')
            .ok_or_else(|| Error::InvalidOption(format!("invalid ulimit argument: {u}")))?;
        let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
        let n = |v: &str| -> Result<u64> {
            if v == "-1" || v == "unlimited" {
                return Ok(u64::MAX);
            }
            v.parse()
                .map_err(|e| Error::InvalidOption(format!("invalid ulimit argument: {u}: {e}")))
        };
        let (soft, hard) = (n(soft)?, n(hard)?);
        if soft > hard {
            invalid!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
        }
        let typ: oci_spec::runtime::PosixRlimitType = serde_json::from_value(
            serde_json::Value::String(format!("RLIMIT_{}", name.to_ascii_uppercase())),
        )
        .map_err(|_| Error::InvalidOption(format!("invalid ulimit type: {name}")))?;
        out.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(soft)
                .hard(hard)
                .build()
                .expect("rlimit"),
        );
    }
    Ok(out)
}

/// The bounding set after `--cap-add`/`--cap-drop` (docker: `ALL` allowed in both; drops
/// apply after adds unless `--cap-add ALL`).
pub fn capabilities(opts: &RunOptions) -> Result<Vec<String>> {
    let norm = |c: &str| -> Result<String> {
        if c.eq_ignore_ascii_case("all") {
            return Ok("ALL".into());
        }
        defaults::capability(c)
            .map(|cap| defaults::capability_name(&cap))
            .ok_or_else(|| Error::InvalidOption(format!("unknown capability: \"{c}\"")))
    };
    let add = opts
        .cap_add
        .iter()
        .map(|c| norm(c))
        .collect::<Result<Vec<_>>>()?;
    let drop = opts
        .cap_drop
        .iter()
        .map(|c| norm(c))
        .collect::<Result<Vec<_>>>()?;
    if opts.privileged {
        return Ok(defaults::all_caps());
    }
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        defaults::all_caps()
    } else {
        let mut c: Vec<String> = defaults::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect();
        c.extend(add.iter().cloned());
        c
    };
    if drop.iter().any(|c| c == "ALL") {
        caps.retain(|c| add.contains(c));
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    caps.sort();
    caps.dedup();
    Ok(caps)
}

/// The whole plan: docker's default spec adjusted by the image and the options.
pub fn plan(image: &ImageRunConfig, opts: &RunOptions, etc: &Path) -> Result<RunPlan> {
    let own_network = match opts.network.as_str() {
        "none" => true,
        "host" => false,
        // Another container's namespace, or one lb made and wired for a bridge network:
        // joined by path.
        _ if opts.join_network.is_some() => false,
        other => invalid!(
            "--network {other}: unknown network (none, host, bridge, container:NAME, a network's name)"
        ),
    };
    let args = command_line(image, opts)?;
    let mut spec = defaults::docker_spec(args, own_network);
    if let Some(ns) = &opts.join_network {
        // Another container's network stack, joined rather than made.
        if let Some(linux) = spec.linux_mut() {
            let mut namespaces = linux.namespaces().clone().unwrap_or_default();
            namespaces.push(
                oci_spec::runtime::LinuxNamespaceBuilder::default()
                    .typ(oci_spec::runtime::LinuxNamespaceType::Network)
                    .path(ns.clone())
                    .build()
                    .expect("namespace"),
            );
            linux.set_namespaces(Some(namespaces));
        }
    }
    let mut nnp = false;
    let mut seccomp = !opts.privileged;
    for o in &opts.security_opt {
        match o.split_once(['=', ':']).unwrap_or((o, "")) {
            ("no-new-privileges", "" | "true") => nnp = true,
            ("no-new-privileges", "false") => nnp = false,
            ("seccomp", "unconfined") => seccomp = false,
            ("seccomp", other) => invalid!(
                "--security-opt seccomp={other}: only 'unconfined' or the default profile are supported"
            ),
            ("apparmor" | "label", _) => {}
            _ => invalid!("invalid --security-opt: {o}"),
        }
    }
    let caps: oci_spec::runtime::Capabilities = capabilities(opts)?
        .iter()
        .filter_map(|c| defaults::capability(c))
        .collect();
    let env = environment(image, opts)?;
    let cwd = opts
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        invalid!("the working directory '{cwd}' is invalid, it needs to be an absolute path");
    }
    let rlimits = ulimits(opts)?;
    let process = spec.process_mut().as_mut().expect("default process");
    process.set_env(Some(env));
    process.set_cwd(cwd.into());
    process.set_terminal(Some(opts.tty));
    process.set_no_new_privileges(Some(nnp));
    if !rlimits.is_empty() {
        process.set_rlimits(Some(rlimits));
    }
    if let Some(mut c) = process.capabilities().clone() {
        c.set_bounding(Some(caps.clone()));
        c.set_effective(Some(caps.clone()));
        c.set_permitted(Some(caps));
        process.set_capabilities(Some(c));
    }
    spec.set_hostname(Some(opts.hostname.clone()));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if opts.privileged {
        for m in &mut mounts {
            if m.destination() == Path::new("/sys") {
                m.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
            }
        }
    }
    for f in ["hosts", "resolv.conf", "hostname"] {
        mounts.push(lb_runtime::defaults::etc_bind(
            &format!("/etc/{f}"),
            &etc.join(f),
        ));
    }
    // The /etc files and the user's mounts, parents before what is under them (docker's
    // sortMounts): a volume on /etc must not hide the /etc/hosts bound into it.
    let system = mounts.len() - 3;
    mounts.extend(user_mounts(opts)?);
    mounts[system..].sort_by_key(|m| m.destination().components().count());
    spec.set_mounts(Some(mounts));
    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(opts.read_only));
    }
    // On top of the default spec's resources (docker's device rules).
    let mut resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    if let Some(m) = &opts.memory {
        let bytes =
            parse_bytes(m).map_err(|e| Error::InvalidOption(format!("--memory {m}: {e}")))?;
        if bytes < 6 * 1024 * 1024 {
            invalid!("--memory {m}: minimum memory limit allowed is 6MB");
        }
        resources.set_memory(Some(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .build()
                .expect("memory"),
        ));
    }
    if let Some(c) = opts.cpus {
        if c <= 0.0 {
            invalid!("--cpus {c}: range of CPUs is from 0.01 to the number of CPUs available");
        }
        resources.set_cpu(Some(
            LinuxCpuBuilder::default()
                .period(100_000u64)
                .quota((c * 100_000.0) as i64)
                .build()
                .expect("cpu"),
        ));
    }
    if let Some(p) = opts.pids_limit.filter(|p| *p > 0) {
        resources.set_pids(Some(
            LinuxPidsBuilder::default().limit(p).build().expect("pids"),
        ));
    }
    if opts.privileged {
        // Every device, as docker's --privileged.
        resources.set_devices(Some(vec![
            oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build()
                .expect("device rule"),
        ]));
    }
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(Some(resources));
        if opts.privileged {
            linux.set_masked_paths(None);
            linux.set_readonly_paths(None);
        }
    }
    let user = opts.user.clone().unwrap_or_else(|| image.user.clone());
    Ok(RunPlan {
        spec,
        user,
        seccomp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageRunConfig {
        ImageRunConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/img/bin".into(), "A=1".into()],
            working_dir: "/app".into(),
            user: "app".into(),
            stop_signal: String::new(),
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            hostname: "abc".into(),
            network: "none".into(),
            join_network: None,
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let i = image();
        assert_eq!(command_line(&i, &opts()).unwrap(), ["/entry", "default"]);
        let o = RunOptions {
            command: vec!["x".into()],
            ..opts()
        };
        assert_eq!(command_line(&i, &o).unwrap(), ["/entry", "x"]);
        let o = RunOptions {
            entrypoint: Some("sh".into()),
            ..opts()
        };
        assert_eq!(command_line(&i, &o).unwrap(), ["sh"]);
        let o = RunOptions {
            entrypoint: Some(String::new()),
            command: vec!["ls".into()],
            ..opts()
        };
        assert_eq!(command_line(&i, &o).unwrap(), ["ls"]);
        assert!(
            command_line(&ImageRunConfig::default(), &opts())
                .unwrap_err()
                .to_string()
                .contains("no command")
        );
    }

    #[test]
    fn environment_layers_image_then_options() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("LB_TEST_FROM_HOST", "h") };
        let o = RunOptions {
            env: vec![
                "A=2".into(),
                "LB_TEST_FROM_HOST".into(),
                "LB_TEST_UNSET_X".into(),
            ],
            tty: true,
            ..opts()
        };
        let env = environment(&image(), &o).unwrap();
        assert!(env.contains(&"PATH=/img/bin".to_string()));
        assert!(env.contains(&"A=2".to_string()) && !env.contains(&"A=1".to_string()));
        assert!(env.contains(&"LB_TEST_FROM_HOST=h".to_string()));
        assert!(
            env.contains(&"HOSTNAME=abc".to_string()) && env.contains(&"TERM=xterm".to_string())
        );
        assert!(!env.iter().any(|e| e.starts_with("LB_TEST_UNSET_X")));
        let env = environment(&ImageRunConfig::default(), &opts()).unwrap();
        assert!(env.contains(&format!("PATH={}", lb_runtime::DEFAULT_PATH)));
    }

    #[test]
    fn sizes_caps_ulimits_mounts() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());

        let o = RunOptions {
            cap_add: vec!["sys_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into()],
            ..opts()
        };
        let caps = capabilities(&o).unwrap();
        assert!(
            caps.contains(&"CAP_SYS_ADMIN".to_string()) && !caps.contains(&"CAP_CHOWN".to_string())
        );
        assert_eq!(caps.len(), 14);
        let o = RunOptions {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["NET_RAW".into()],
            ..opts()
        };
        assert_eq!(capabilities(&o).unwrap(), ["CAP_NET_RAW"]);
        assert!(
            capabilities(&RunOptions {
                cap_add: vec!["FLY".into()],
                ..opts()
            })
            .is_err()
        );

        let o = RunOptions {
            ulimits: vec!["nofile=100:200".into()],
            ..opts()
        };
        let u = &ulimits(&o).unwrap()[0];
        assert_eq!((u.soft(), u.hard()), (100, 200));
        assert!(
            ulimits(&RunOptions {
                ulimits: vec!["nofile=3:2".into()],
                ..opts()
            })
            .is_err()
        );
        assert!(
            ulimits(&RunOptions {
                ulimits: vec!["bogus=1".into()],
                ..opts()
            })
            .is_err()
        );

        let o = RunOptions {
            volumes: vec!["/host:/data:ro".into()],
            mounts: vec!["type=tmpfs,target=/scratch,tmpfs-size=1m".into()],
            tmpfs: vec!["/run:size=64k".into()],
            ..opts()
        };
        let m = user_mounts(&o).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].options().as_ref().unwrap(), &["rbind", "ro"]);
        assert!(
            m[1].options()
                .as_ref()
                .unwrap()
                .contains(&"size=1048576".to_string())
        );
        assert!(
            user_mounts(&RunOptions {
                volumes: vec!["named:/x".into()],
                ..opts()
            })
            .is_err()
        );
        assert!(
            user_mounts(&RunOptions {
                volumes: vec!["/a:rel".into()],
                ..opts()
            })
            .is_err()
        );
    }

    #[test]
    fn plan_sets_resources_security_and_refuses_bridge() {
        let o = RunOptions {
            memory: Some("64m".into()),
            cpus: Some(0.5),
            pids_limit: Some(10),
            security_opt: vec!["no-new-privileges".into(), "seccomp=unconfined".into()],
            ..opts()
        };
        let p = plan(&image(), &o, Path::new("/etc-dir")).unwrap();
        assert!(!p.seccomp);
        assert_eq!(p.user, "app");
        let proc_ = p.spec.process().as_ref().unwrap();
        assert_eq!(proc_.no_new_privileges(), Some(true));
        assert_eq!(proc_.cwd(), Path::new("/app"));
        let r = p
            .spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 10);
        assert!(
            plan(
                &image(),
                &RunOptions {
                    network: "nosuch".into(),
                    ..opts()
                },
                Path::new("/e")
            )
            .is_err()
        );
        assert!(
            plan(
                &image(),
                &RunOptions {
                    memory: Some("1k".into()),
                    ..opts()
                },
                Path::new("/e")
            )
            .is_err()
        );
    }
}
