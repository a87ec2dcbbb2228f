//! `--add-host` and `--dns*` in the `/etc/hosts` and `/etc/resolv.conf` lb writes for a
//! container, as docker writes them: extra hosts as `IP<TAB>NAME` lines after the
//! defaults; a resolver file rebuilt as libnetwork's `resolvconf.Build` does (`search`,
//! `nameserver`s, `options`), each part from the flag when given, else from the file.

use std::net::Ipv4Addr;

use super::HostConfigRecord;
use crate::error::{Result, invalid};

/// The hosts file's lines for `--add-host HOST:IP`s; `host-gateway` is the address of
/// the host on the default bridge (`gateway`).
pub fn extra_hosts_lines(extra_hosts: &[String], gateway: Ipv4Addr) -> Result<String> {
    let mut out = String::new();
    for h in extra_hosts {
        let Some((name, ip)) = h.split_once(':') else {
            invalid!("bad format for add-host: {h:?}");
        };
        let ip = if ip == "host-gateway" {
            gateway.to_string()
        } else {
            ip.to_string()
        };
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// The resolver file for a container with `--dns`, `--dns-search` or `--dns-option`
/// given, from the one lb would write (`current`); none when no flag asks for a change.
pub fn resolv_conf(current: &str, rec: &HostConfigRecord) -> Option<String> {
    if rec.dns.is_empty() && rec.dns_search.is_empty() && rec.dns_options.is_empty() {
        return None;
    }
    let from_file = |key: &str| -> Vec<String> {
        current
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key)).then(|| w.map(str::to_string).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    };
    let servers = if rec.dns.is_empty() {
        from_file("nameserver")
    } else {
        rec.dns.clone()
    };
    let search = match rec.dns_search.as_slice() {
        [] => from_file("search"),
        // docker's way to say "no search domains".
        [dot] if dot == "." => Vec::new(),
        s => s.to_vec(),
    };
    let options = if rec.dns_options.is_empty() {
        from_file("options")
    } else {
        rec.dns_options.clone()
    };
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_as_docker_writes_them() {
        let lines = extra_hosts_lines(
            &[
                "foo:1.2.3.4".into(),
                "bar:::1".into(),
                "baz qux:1.1.1.1".into(),
                "gw:host-gateway".into(),
            ],
            Ipv4Addr::new(10, 88, 0, 1),
        )
        .unwrap();
        assert_eq!(
            lines,
            "1.2.3.4\tfoo\n::1\tbar\n1.1.1.1\tbaz qux\n10.88.0.1\tgw\n"
        );
    }

    #[test]
    fn resolv_conf_parts_from_flags_or_file() {
        let host = "# comment\nsearch home.lan\nnameserver 10.0.0.1\noptions edns0\n";
        assert_eq!(resolv_conf(host, &HostConfigRecord::default()), None);
        let rec = HostConfigRecord {
            dns: vec!["1.2.3.4".into()],
            dns_search: vec!["ex.com".into()],
            dns_options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(host, &rec).unwrap(),
            "search ex.com\nnameserver 1.2.3.4\noptions ndots:2\n"
        );
        let rec = HostConfigRecord {
            dns: vec!["1.2.3.4".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(host, &rec).unwrap(),
            "search home.lan\nnameserver 1.2.3.4\noptions edns0\n"
        );
        let rec = HostConfigRecord {
            dns_search: vec![".".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(host, &rec).unwrap(),
            "nameserver 10.0.0.1\noptions edns0\n"
        );
    }
}
