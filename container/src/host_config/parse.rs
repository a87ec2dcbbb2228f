//! docker's checks of the host-side flags' values, in docker's words: the CLI's flag
//! validators (`opts.ValidateExtraHost`, `ValidateIPAddress`, `ValidateDNSSearch`,
//! `ValidateLabel`, `ValidateSysctl`, `validateDevice`, `RAMInBytes`, `ParsePortRange`)
//! and the daemon's mode checks (`--pid`, `--ipc`, `--uts`, `--stop-signal`).

use std::collections::BTreeMap;
use std::path::Path;

use super::{DeviceMapping, HostConfigRecord, HostFlags};
use crate::error::{Error, Result, invalid};

/// A flag's value docker's CLI refuses while parsing: `invalid argument "V" for "FLAG"
/// flag: REASON`.
fn bad_flag(flag: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidFlag {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The sysctls docker lets a container set (`opts.ValidateSysctl`): the IPC namespace's
/// kernel ones, and anything under `net.` and `fs.mqueue.`.
const SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Whether sysctl `key` belongs to the IPC namespace (runc's rule).
pub fn ipc_sysctl(key: &str) -> bool {
    SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.")
}

fn validate_sysctl(v: &str) -> Result<(String, String)> {
    let refused = || bad_flag("--sysctl", v, format!("sysctl '{v}' is not whitelisted"));
    let (k, val) = v.split_once('=').ok_or_else(refused)?;
    if SYSCTLS.contains(&k) || k.starts_with("net.") || k.starts_with("fs.mqueue.") {
        Ok((k.to_string(), val.to_string()))
    } else {
        Err(refused())
    }
}

/// Go's `net.ParseIP` on the trimmed value, printed back as Go prints it.
fn ip_address(v: &str) -> Option<String> {
    v.trim()
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

fn validate_extra_host(v: &str) -> Result<String> {
    let Some((_, ip)) = v.split_once(':').filter(|(h, _)| !h.is_empty()) else {
        return Err(bad_flag(
            "--add-host",
            v,
            format!("bad format for add-host: {v:?}"),
        ));
    };
    // docker's special name for the host's address on the default bridge.
    if ip != "host-gateway" && ip_address(ip).is_none() {
        return Err(bad_flag(
            "--add-host",
            v,
            format!("invalid IP address in add-host: {ip:?}"),
        ));
    }
    Ok(v.to_string())
}

/// docker's `validateDomain`: letters somewhere, labels of letters, digits and inner
/// hyphens, an optional final dot, under 255 characters.
fn validate_dns_search(v: &str) -> Result<String> {
    let v = v.trim_matches(' ');
    if v == "." {
        return Ok(v.to_string());
    }
    let bad = || bad_flag("--dns-search", v, format!("{v} is not a valid domain"));
    if !v.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let name = v.trim_end_matches(char::is_whitespace);
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() >= 255 || !name.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(name.to_string())
}

/// `--device`'s form as docker's `validateLinuxPath` and `parseLinuxDevice` read it.
pub fn parse_device(v: &str) -> Result<DeviceMapping> {
    let mode_ok = |m: &str| {
        let mut seen = Vec::new();
        !m.is_empty()
            && m.chars().all(|c| {
                let fresh = matches!(c, 'r' | 'w' | 'm') && !seen.contains(&c);
                seen.push(c);
                fresh
            })
    };
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() > 3 || parts[0].is_empty() {
        invalid!("bad format for path: {v}");
    }
    let (src, dst, perms) = match parts.as_slice() {
        [s] => (*s, *s, "rwm"),
        [s, m] if mode_ok(m) => (*s, *s, *m),
        [s, d] => (*s, *d, "rwm"),
        [s, d, m] => {
            if !mode_ok(m) {
                invalid!("bad mode specified: {m}");
            }
            (*s, *d, *m)
        }
        _ => invalid!("invalid device specification: {v}"),
    };
    if !dst.starts_with('/') {
        invalid!("{dst} is not an absolute path");
    }
    Ok(DeviceMapping {
        path_on_host: src.to_string(),
        path_in_container: dst.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// `--expose PORT[/PROTO]` or `START-END[/PROTO]`: the ports as `PORT/PROTO`.
pub fn parse_expose(v: &str) -> Result<Vec<String>> {
    if v.contains(':') {
        invalid!("invalid port format for --expose: {v}");
    }
    let (port, proto) = match v.split_once('/') {
        None => (v, "tcp"),
        Some((p, "")) => (p, "tcp"),
        Some((p, proto)) => (p, proto.split('/').next().unwrap_or(proto)),
    };
    let bad = |reason: String| {
        Error::InvalidOption(format!(
            "invalid range format for --expose: {v}, error: {reason}"
        ))
    };
    let number = |s: &str| -> Result<u16> {
        s.parse::<u16>().map_err(|_| {
            let why = if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            bad(format!("strconv.ParseUint: parsing {s:?}: {why}"))
        })
    };
    if port.is_empty() {
        return Err(bad("empty string specified for ports".into()));
    }
    let (start, end) = match port.split_once('-') {
        None => {
            let p = number(port)?;
            (p, p)
        }
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            if b < a {
                return Err(bad(format!("invalid range specified for the Port: {port}")));
            }
            (a, b)
        }
    };
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// A label file as docker reads it (its env-file reader): blank lines and `#` comments
/// skipped, leading white space trimmed, `KEY=VALUE` kept (the value as it is), a line
/// without `=` dropped, a key with white space refused.
pub fn parse_label_file(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::InvalidOption(format!(
            "open {}: {}",
            path.display(),
            crate::go_io_text(&e)
        ))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_start(), Some(v)),
            None => (line, None),
        };
        if key.contains([' ', '\t', '\n', '\x0b', '\x0c', '\r']) {
            invalid!("poorly formatted environment: variable '{key}' contains whitespaces");
        }
        if key.is_empty() {
            invalid!("poorly formatted environment: no variable name on line '{line}'");
        }
        if let Some(v) = value {
            out.push(format!("{key}={v}"));
        }
    }
    Ok(out)
}

/// `KEY=VALUE` strings to a map as docker's `ConvertKVStringsToMap` (a bare key: empty).
fn to_map(kvs: &[String]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// The daemon's checks of what the CLI let through (docker's `create` exits 1 on these,
/// 125 on the CLI's): the stop signal, the IPC mode, and what a container sharing
/// another's network stack cannot have of its own.
pub fn check(rec: &HostConfigRecord, stop_signal: Option<&str>, network: &str) -> Result<()> {
    if let Some(s) = stop_signal {
        crate::ops::parse_signal(s)
            .map_err(|_| Error::InvalidOption(format!("Invalid signal: {s}")))?;
    }
    match rec.ipc_mode.as_str() {
        "" | "host" | "private" | "shareable" | "none" => {}
        m if super::joined_container(m).is_some_and(|n| !n.is_empty()) => {}
        m => invalid!("Invalid IPC mode: {m}"),
    }
    if network.starts_with("container:") {
        if !rec.dns.is_empty() {
            invalid!("conflicting options: dns and the network mode");
        }
        if !rec.extra_hosts.is_empty() {
            invalid!("conflicting options: custom host-to-IP mapping and the network mode");
        }
        if !rec.exposed_ports.is_empty() {
            invalid!("conflicting options: port exposing and the container type network mode");
        }
    }
    Ok(())
}

/// The flags checked as docker's CLI checks them, to what the record keeps. `network` is
/// the `--network` value (aliases need a user network).
pub fn parse(flags: &HostFlags, network: &str) -> Result<HostConfigRecord> {
    let extra_hosts = flags
        .add_hosts
        .iter()
        .map(|h| validate_extra_host(h))
        .collect::<Result<Vec<_>>>()?;
    let dns = flags
        .dns
        .iter()
        .map(|d| {
            ip_address(d).ok_or_else(|| bad_flag("--dns", d, format!("{d} is not an ip address")))
        })
        .collect::<Result<Vec<_>>>()?;
    let dns_search = flags
        .dns_search
        .iter()
        .map(|d| validate_dns_search(d))
        .collect::<Result<Vec<_>>>()?;
    for l in &flags.labels {
        if l.split('=').next().unwrap_or("").trim().is_empty() {
            return Err(bad_flag(
                "-l, --label",
                l,
                format!("invalid label '{l}': empty name"),
            ));
        }
    }
    let shm_size = flags
        .shm_size
        .as_deref()
        .map(|s| {
            crate::run_spec::parse_bytes(s)
                .ok()
                .filter(|_| !s.trim().starts_with('-'))
                .ok_or_else(|| bad_flag("--shm-size", s, format!("invalid size: '{s}'")))
        })
        .transpose()?;
    let stop_timeout = flags
        .stop_timeout
        .as_deref()
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                bad_flag(
                    "--stop-timeout",
                    s,
                    format!("strconv.ParseInt: parsing {s:?}: invalid syntax"),
                )
            })
        })
        .transpose()?;
    let sysctls = flags
        .sysctls
        .iter()
        .map(|s| validate_sysctl(s))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let pid_mode = flags.pid.clone().unwrap_or_default();
    match pid_mode.as_str() {
        "" | "host" => {}
        m if super::joined_container(m).is_some_and(|n| !n.is_empty()) => {}
        _ => invalid!("--pid: invalid PID mode"),
    }
    let uts_mode = flags.uts.clone().unwrap_or_default();
    if !matches!(uts_mode.as_str(), "" | "host") {
        invalid!("--uts: invalid UTS mode");
    }
    let devices = flags
        .devices
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>>>()?;
    let mut exposed_ports: Vec<String> = Vec::new();
    for e in &flags.expose {
        for p in parse_expose(e)? {
            if !exposed_ports.contains(&p) {
                exposed_ports.push(p);
            }
        }
    }
    let user_network = !matches!(network, "" | "default" | "bridge" | "host" | "none")
        && !network.starts_with("container:");
    if !flags.network_aliases.is_empty() && !user_network {
        invalid!("network-scoped aliases are only supported for user-defined networks");
    }
    let memory_swap = match flags.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        Some(s) => Some(
            crate::run_spec::parse_bytes(s)
                .ok()
                .filter(|_| !s.trim().starts_with('-'))
                .ok_or_else(|| bad_flag("--memory-swap", s, format!("invalid size: '{s}'")))?,
        ),
        None => None,
    };
    let mut label_lines = Vec::new();
    for f in &flags.label_files {
        label_lines.extend(parse_label_file(f)?);
    }
    label_lines.extend(flags.labels.iter().cloned());
    Ok(HostConfigRecord {
        labels: to_map(&label_lines),
        stop_timeout,
        exposed_ports,
        extra_hosts,
        dns,
        dns_search,
        dns_options: flags.dns_options.clone(),
        group_add: flags.group_add.clone(),
        shm_size,
        sysctls,
        pid_mode,
        ipc_mode: flags.ipc.clone().unwrap_or_default(),
        uts_mode,
        devices,
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        network_aliases: flags.network_aliases.clone(),
        container_id_file: flags
            .cidfile
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        memory_swap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> HostFlags {
        HostFlags::default()
    }

    /// The CLI's refusal, else the daemon's.
    fn err(f: HostFlags, network: &str) -> String {
        parse(&f, network)
            .and_then(|r| check(&r, f.stop_signal.as_deref(), network))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn add_host_and_dns_as_docker_checks_them() {
        let f = HostFlags {
            add_hosts: vec![
                "foo:1.2.3.4".into(),
                "bar:::1".into(),
                "gw:host-gateway".into(),
            ],
            dns: vec![" 9.9.9.9".into()],
            dns_search: vec!["ex.com.".into(), ".".into()],
            dns_options: vec!["ndots:2".into()],
            ..flags()
        };
        let r = parse(&f, "none").unwrap();
        assert_eq!(r.extra_hosts, ["foo:1.2.3.4", "bar:::1", "gw:host-gateway"]);
        assert_eq!(r.dns, ["9.9.9.9"]);
        assert_eq!(r.dns_search, ["ex.com", "."]);
        let bad = |h: &str| {
            err(
                HostFlags {
                    add_hosts: vec![h.into()],
                    ..flags()
                },
                "none",
            )
        };
        assert_eq!(
            bad("foo"),
            r#"invalid argument "foo" for "--add-host" flag: bad format for add-host: "foo""#
        );
        assert_eq!(
            bad("foo:notip"),
            r#"invalid argument "foo:notip" for "--add-host" flag: invalid IP address in add-host: "notip""#
        );
        assert_eq!(
            err(
                HostFlags {
                    dns: vec!["notip".into()],
                    ..flags()
                },
                "none"
            ),
            r#"invalid argument "notip" for "--dns" flag: notip is not an ip address"#
        );
        assert!(
            err(
                HostFlags {
                    dns_search: vec!["-bad-".into()],
                    ..flags()
                },
                "none"
            )
            .contains("-bad- is not a valid domain")
        );
        assert_eq!(
            err(
                HostFlags {
                    dns: vec!["1.1.1.1".into()],
                    ..flags()
                },
                "container:x"
            ),
            "conflicting options: dns and the network mode"
        );
    }

    #[test]
    fn labels_from_files_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels");
        std::fs::write(&file, "a=1\n# c\n\nb\n  c=d \nx=file\n").unwrap();
        let f = HostFlags {
            labels: vec!["x=y".into(), "bare".into()],
            label_files: vec![file.clone()],
            ..flags()
        };
        let r = parse(&f, "none").unwrap();
        let want: BTreeMap<String, String> = [("a", "1"), ("c", "d "), ("x", "y"), ("bare", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(r.labels, want);
        std::fs::write(&file, "c =d\n").unwrap();
        assert_eq!(
            parse_label_file(&file).unwrap_err().to_string(),
            "poorly formatted environment: variable 'c ' contains whitespaces"
        );
        assert_eq!(
            parse_label_file(Path::new("/nonexist"))
                .unwrap_err()
                .to_string(),
            "open /nonexist: no such file or directory"
        );
        assert_eq!(
            err(
                HostFlags {
                    labels: vec!["=x".into()],
                    ..flags()
                },
                "none"
            ),
            r#"invalid argument "=x" for "-l, --label" flag: invalid label '=x': empty name"#
        );
    }

    #[test]
    fn devices_sysctls_sizes_and_modes() {
        let d = parse_device("/dev/null").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
            ("/dev/null", "rwm")
        );
        let d = parse_device("/dev/null:r").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
            ("/dev/null", "r")
        );
        let d = parse_device("/dev/null:/dev/n2:rw").unwrap();
        assert_eq!(d.path_in_container, "/dev/n2");
        assert_eq!(
            parse_device("/dev/null:rel").unwrap_err().to_string(),
            "rel is not an absolute path"
        );
        assert_eq!(
            parse_device("/dev/null:/x:rwz").unwrap_err().to_string(),
            "bad mode specified: rwz"
        );
        assert_eq!(
            parse_device("/dev/null:/x:rr").unwrap_err().to_string(),
            "bad mode specified: rr"
        );
        assert!(parse_device("a:b:c:d").is_err());

        let r = parse(
            &HostFlags {
                sysctls: vec![
                    "net.ipv4.ip_forward=1".into(),
                    "kernel.shm_rmid_forced=1".into(),
                ],
                shm_size: Some("2m".into()),
                stop_timeout: Some("7".into()),
                ..flags()
            },
            "none",
        )
        .unwrap();
        assert_eq!(r.sysctls["net.ipv4.ip_forward"], "1");
        assert_eq!(r.shm_size, Some(2 << 20));
        assert_eq!(r.stop_timeout, Some(7));
        for (s, want) in [
            (
                "vm.swappiness=1",
                "sysctl 'vm.swappiness=1' is not whitelisted",
            ),
            ("foo", "sysctl 'foo' is not whitelisted"),
        ] {
            assert!(
                err(
                    HostFlags {
                        sysctls: vec![s.into()],
                        ..flags()
                    },
                    "none"
                )
                .ends_with(want),
                "{s}"
            );
        }
        assert!(
            ipc_sysctl("fs.mqueue.msg_max") && ipc_sysctl("kernel.sem") && !ipc_sysctl("net.x")
        );
        assert_eq!(
            err(
                HostFlags {
                    shm_size: Some("-5".into()),
                    ..flags()
                },
                "none"
            ),
            r#"invalid argument "-5" for "--shm-size" flag: invalid size: '-5'"#
        );
        assert_eq!(
            err(
                HostFlags {
                    stop_timeout: Some("x".into()),
                    ..flags()
                },
                "none"
            ),
            r#"invalid argument "x" for "--stop-timeout" flag: strconv.ParseInt: parsing "x": invalid syntax"#
        );
        assert_eq!(
            err(
                HostFlags {
                    stop_signal: Some("BOGUS".into()),
                    ..flags()
                },
                "none"
            ),
            "Invalid signal: BOGUS"
        );
        assert_eq!(
            err(
                HostFlags {
                    pid: Some("bogus".into()),
                    ..flags()
                },
                "none"
            ),
            "--pid: invalid PID mode"
        );
        assert_eq!(
            err(
                HostFlags {
                    uts: Some("bogus".into()),
                    ..flags()
                },
                "none"
            ),
            "--uts: invalid UTS mode"
        );
        assert_eq!(
            err(
                HostFlags {
                    ipc: Some("bogus".into()),
                    ..flags()
                },
                "none"
            ),
            "Invalid IPC mode: bogus"
        );
        assert!(
            parse(
                &HostFlags {
                    ipc: Some("container:x".into()),
                    pid: Some("host".into()),
                    ..flags()
                },
                "none"
            )
            .is_ok()
        );
        assert_eq!(
            err(
                HostFlags {
                    network_aliases: vec!["a".into()],
                    ..flags()
                },
                "none"
            ),
            "network-scoped aliases are only supported for user-defined networks"
        );
        assert!(
            parse(
                &HostFlags {
                    network_aliases: vec!["a".into()],
                    ..flags()
                },
                "mynet"
            )
            .is_ok()
        );
    }

    #[test]
    fn expose_ranges_and_protocols() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("90-91/udp").unwrap(), ["90/udp", "91/udp"]);
        assert_eq!(parse_expose("80/sctp").unwrap(), ["80/sctp"]);
        assert_eq!(
            parse_expose("bad").unwrap_err().to_string(),
            r#"invalid range format for --expose: bad, error: strconv.ParseUint: parsing "bad": invalid syntax"#
        );
        assert_eq!(
            parse_expose("70000").unwrap_err().to_string(),
            r#"invalid range format for --expose: 70000, error: strconv.ParseUint: parsing "70000": value out of range"#
        );
        assert!(
            parse_expose("1:2")
                .unwrap_err()
                .to_string()
                .contains("invalid port format")
        );
    }
}
