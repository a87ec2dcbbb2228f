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
