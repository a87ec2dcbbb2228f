//! Outbound NAT and forwarding for a network, with the host's iptables (on Debian 12 its
//! nf_tables backend): masquerade what leaves the subnet by another interface, accept what
//! is forwarded to and from the bridge, and turn IPv4 forwarding on, as docker does. Rules
//! are added only when `iptables -C` does not find them, so this is safe to repeat.

use std::process::Command;

use crate::{Error, Network, Result};

fn iptables(args: &[&str]) -> Result<bool> {
    let out = Command::new("iptables")
        .args(["-w"])
        .args(args)
        .output()
        .map_err(|e| Error::setup("iptables (apt: iptables)", e))?;
    Ok(out.status.success())
}

/// Adds `rule` to `chain` of `table` unless it is there.
fn ensure_rule(table: &str, chain: &str, rule: &[&str]) -> Result<()> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if iptables(&check)? {
        return Ok(());
    }
    let mut add = vec!["-t", table, "-A", chain];
    add.extend_from_slice(rule);
    if iptables(&add)? {
        Ok(())
    } else {
        Err(Error::setup(
            format!("iptables {}", add.join(" ")),
            "the rule was refused",
        ))
    }
}

pub fn ensure(net: &Network) -> Result<()> {
    let cidr = net.cidr();
    ensure_rule(
        "nat",
        "POSTROUTING",
        &["-s", &cidr, "!", "-o", &net.bridge, "-j", "MASQUERADE"],
    )?;
    ensure_rule("filter", "FORWARD", &["-i", &net.bridge, "-j", "ACCEPT"])?;
    ensure_rule("filter", "FORWARD", &["-o", &net.bridge, "-j", "ACCEPT"])?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| Error::setup("/proc/sys/net/ipv4/ip_forward", e))
}

/// The chain holding published ports' DNAT rules, jumped to from PREROUTING and OUTPUT for
/// traffic to this host's own addresses (not loopback: the relay serves 127.0.0.1).
const PORTS_CHAIN: &str = "LB-PORTS";

fn ensure_ports_chain() -> Result<()> {
    // -N fails when the chain exists: fine.
    let _ = iptables(&["-t", "nat", "-N", PORTS_CHAIN]);
    ensure_rule(
        "nat",
        "PREROUTING",
        &["-m", "addrtype", "--dst-type", "LOCAL", "-j", PORTS_CHAIN],
    )?;
    ensure_rule(
        "nat",
        "OUTPUT",
        &[
            "!",
            "-d",
            "127.0.0.0/8",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            PORTS_CHAIN,
        ],
    )
}

/// DNAT for a published TCP/UDP port to `container`, tagged with `tag` (the holder) so that
/// [`remove_ports`] finds it; traffic from the network's own bridge is left to the relay.
pub fn add_port(
    net: &Network,
    spec: &crate::ports::PortSpec,
    container: std::net::Ipv4Addr,
    tag: &str,
) -> Result<()> {
    ensure_ports_chain()?;
    let proto = match spec.proto {
        crate::ports::Proto::Tcp => "tcp",
        crate::ports::Proto::Udp => "udp",
    };
    let dport = spec.host_port.to_string();
    let to = format!("{container}:{}", spec.container_port);
    let comment = format!("lb:{tag}");
    let mut rule: Vec<&str> = vec!["!", "-i", &net.bridge, "-p", proto];
    let ip = spec.host_ip.to_string();
    if !spec.host_ip.is_unspecified() {
        rule.extend(["-d", &ip]);
    }
    rule.extend([
        "--dport",
        &dport,
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        "DNAT",
        "--to-destination",
        &to,
    ]);
    ensure_rule("nat", PORTS_CHAIN, &rule)
}

/// Removes the DNAT rules tagged `tag` (nothing when there are none).
pub fn remove_ports(tag: &str) -> Result<()> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", PORTS_CHAIN])
        .output()
        .map_err(|e| Error::setup("iptables (apt: iptables)", e))?;
    let want = format!("lb:{tag}");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(rule) = line.strip_prefix(&format!("-A {PORTS_CHAIN} ")) else {
            continue;
        };
        if !line.contains(&format!("--comment {want}"))
            && !line.contains(&format!("--comment \"{want}\""))
        {
            continue;
        }
        let mut args = vec!["-t", "nat", "-D", PORTS_CHAIN];
        let words: Vec<String> = shell_words(rule);
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        args.extend(refs);
        iptables(&args)?;
    }
    Ok(())
}

/// `iptables -S` output words (double-quoted comments kept whole).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
