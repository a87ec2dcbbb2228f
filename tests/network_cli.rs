//! Container networking: `--network bridge` (lb0, an address from the IPAM, a default
//! route, NAT), `none`, and what is left after `rm` or a killed lb. All traffic stays on
//! this machine: the bridge and the namespaces the tests make.

use std::process::{Command, Stdio};

mod common;
use common::*;

/// Links whose name starts with `lbv` (the host ends of lb's veth pairs).
fn host_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("lbv"))
        .collect()
}

fn leftovers(env: &Env, id: &str) -> Vec<String> {
    let mut left: Vec<String> = host_links()
        .into_iter()
        .filter(|l| id.ends_with(&l[3..]))
        .collect();
    if env.root.join("netns").join(id).exists() {
        left.push(format!("netns/{id}"));
    }
    let ipam = std::fs::read_to_string("/run/lb/networks/lb0.json").unwrap_or_default();
    if ipam.contains(id) {
        left.push(format!("address of {id}"));
    }
    left
}

/// `lb run -d --network NETWORK [OPTS] --name NAME busybox httpd` serving /etc on port 80;
/// the container's id.
fn start_httpd(env: &Env, network: &str, name: &str, opts: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--network", network, "--name", name];
    args.extend_from_slice(opts);
    args.extend(["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    let out = lb(env, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn bridge_gives_an_address_a_route_and_a_peer_to_talk_to_and_cleans_up() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools(
        "iproute2 and iptables",
        &["/usr/sbin/ip", "/usr/sbin/iptables"],
    ) {
        return;
    }
    let web = start_httpd(&env, "bridge", "web", &[]);
    // web's address, as its /etc/hosts names it.
    let hosts = text(&lb(&env, &["exec", "web", "cat", "/etc/hosts"]).stdout);
    let web_ip = hosts
        .lines()
        .find(|l| l.contains(&web[..12]))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{hosts}"))
        .to_string();
    assert!(web_ip.starts_with("10.213."), "{web_ip}");
    // Another container on the bridge: its own address, a default route through lb0, and
    // web answers it.
    let script = format!(
        "ip -4 -o addr show eth0 | awk '{{print $4}}'; ip route | grep default; \
         for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{web_ip}/group && exit 0; sleep 0.2; done; exit 1"
    );
    let (code, out, err) = run(&env, &["--network", "bridge"], &["sh", "-c", &script]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("10.213.") && lines[0].ends_with("/16"),
        "{out}"
    );
    assert_ne!(
        lines[0].split('/').next(),
        Some(web_ip.as_str()),
        "two containers, one address"
    );
    assert_eq!(lines[1].trim(), "default via 10.213.0.1 dev eth0", "{out}");
    assert!(out.contains("root:x:0:"), "{out}");
    // `none`: only lo.
    let (code, out, _) = run(&env, &["--network", "none"], &["ls", "/sys/class/net"]);
    assert_eq!((code, out.as_str()), (0, "lo\n"));
    // rm: nothing of web is left.
    assert!(
        !leftovers(&env, &web).is_empty(),
        "web is attached while it runs"
    );
    assert!(lb(&env, &["rm", "-f", "web"]).status.success());
    assert_eq!(leftovers(&env, &web), Vec::<String>::new());
}

#[test]
fn what_a_killed_lb_left_on_the_bridge_is_reconciled() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools(
        "iproute2 and iptables",
        &["/usr/sbin/ip", "/usr/sbin/iptables"],
    ) {
        return;
    }
    // A foreground `lb run` killed with SIGKILL: its container dies with it (PID 1 of its
    // namespace is lb's child), but its address, veth and namespace stay behind.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(&env.root)
        .args([
            "run",
            "--network",
            "bridge",
            "--name",
            "victim",
            "busybox",
            "sleep",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let id = loop {
        let ps = text(&lb(&env, &["ps", "-q", "--no-trunc"]).stdout);
        if let Some(id) = ps.lines().next() {
            break id.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !leftovers(&env, &id).is_empty(),
        "the kill left nothing to reconcile"
    );
    // The container outlives its lb; stop it (`kill` and `wait` leave networks alone).
    let _ = lb(&env, &["kill", &id]);
    let _ = lb(&env, &["wait", &id]);
    assert!(!leftovers(&env, &id).is_empty());
    // The next lb command that looks at containers reconciles.
    assert!(lb(&env, &["ps"]).status.success());
    assert_eq!(leftovers(&env, &id), Vec::<String>::new());
}

/// `GET /PATH` over HTTP/1.0 at `addr`, retried while the server comes up: the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = std::net::TcpStream::connect(addr).and_then(|mut s| {
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        });
        match got {
            Ok(r) if r.starts_with("HTTP/1.") => {
                return r
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default();
            }
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => panic!("GET {addr}{path}: {other:?}"),
        }
    }
}

#[test]
fn a_published_port_answers_on_loopback_and_survives_a_restart() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools(
        "iproute2 and iptables",
        &["/usr/sbin/ip", "/usr/sbin/iptables"],
    ) {
        return;
    }
    let port = lb_testkit::free_port();
    let publish = format!("127.0.0.1:{port}:80");
    start_httpd(&env, "bridge", "pub", &["-p", &publish]);
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(http_get(&addr, "/group"), "root:x:0:\nnogroup:x:65534:\n");
    let ps = text(&lb(&env, &["ps"]).stdout);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // Beside the relay, a DNAT rule for the host's other addresses, tagged with the
    // container; a second published port on all addresses answers on the bridge's own.
    let nat = || {
        text(
            &Command::new("iptables")
                .args(["-w", "-t", "nat", "-S", "LB-PORTS"])
                .output()
                .unwrap()
                .stdout,
        )
    };
    assert!(nat().contains(&format!("--dport {port} ")), "{}", nat());
    // The port is taken while pub runs.
    let (code, _, err) = run(&env, &["--network", "bridge", "-p", &publish], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("already"), "{err}");
    // Stopped and started again: the same port answers.
    assert!(lb(&env, &["stop", "-t", "1", "pub"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the port outlived the container"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(lb(&env, &["start", "pub"]).status.success());
    assert_eq!(http_get(&addr, "/group"), "root:x:0:\nnogroup:x:65534:\n");
    let all = lb_testkit::free_port();
    let any = format!("{all}:80");
    start_httpd(&env, "bridge", "pub2", &["-p", &any]);
    assert_eq!(
        http_get(&format!("10.213.0.1:{all}"), "/group"),
        "root:x:0:\nnogroup:x:65534:\n"
    );
    assert!(lb(&env, &["rm", "-f", "pub", "pub2"]).status.success());
    let left = nat();
    assert!(
        !left.contains(&format!("--dport {port} ")) && !left.contains(&format!("--dport {all} ")),
        "{left}"
    );
    // Ports need a network of the container's own.
    let (code, _, err) = run(&env, &["--network", "none", "-p", "80"], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("conflicting options"), "{err}");
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools(
        "iproute2 and iptables",
        &["/usr/sbin/ip", "/usr/sbin/iptables"],
    ) {
        return;
    }
    let out = lb(&env, &["network", "create", "appnet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ls = text(&lb(&env, &["network", "ls"]).stdout);
    assert!(ls.contains("appnet") && ls.contains("bridge"), "{ls}");
    let again = lb(&env, &["network", "create", "appnet"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already exists"));
    let web = start_httpd(&env, "appnet", "web", &[]);
    // By name, from a container that joins later; and web knows it by name while it runs.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://web/group && break; sleep 0.2; done; \
                  grep -c client /etc/hosts";
    let (code, out, err) = run(
        &env,
        &["--network", "appnet", "--name", "client"],
        &["sh", "-c", script],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "root:x:0:\nnogroup:x:65534:\n1\n"),
        "{err}"
    );
    // Gone from web's hosts once it left.
    let hosts = text(&lb(&env, &["exec", "web", "cat", "/etc/hosts"]).stdout);
    assert!(!hosts.contains("client"), "{hosts}");
    // Not on the network: the name does not resolve.
    let (_, out, _) = run(
        &env,
        &["--network", "bridge"],
        &["sh", "-c", "wget -qO- http://web/group; true"],
    );
    assert_eq!(out, "");
    let inspect: serde_json::Value =
        serde_json::from_slice(&lb(&env, &["network", "inspect", "appnet"]).stdout).unwrap();
    let subnet = inspect[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        subnet.starts_with("10.214.") && subnet.ends_with("/24"),
        "{subnet}"
    );
    assert_eq!(inspect[0]["Containers"][&web]["Name"], "web");
    // A network in use is not removed; once empty it is, with its bridge.
    let out = lb(&env, &["network", "rm", "appnet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("active endpoints"),
        "{}",
        text(&out.stderr)
    );
    let bridge = inspect[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(lb(&env, &["rm", "-f", "web"]).status.success());
    assert!(leftovers(&env, &web).is_empty());
    assert!(lb(&env, &["network", "rm", "appnet"]).status.success());
    let links = text(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(!links.contains(&bridge), "{links}");
    let (code, _, err) = run(&env, &["--network", "appnet"], &["true"]);
    assert_eq!(code, 125);
    assert!(err.contains("network appnet not found"), "{err}");
    assert_eq!(
        lb(&env, &["network", "rm", "bridge"]).status.code(),
        Some(1)
    );
}

#[test]
fn build_run_steps_on_the_bridge() {
    let Some(env) = setup() else { return };
    if !lb_testkit::require_tools(
        "iproute2 and iptables",
        &["/usr/sbin/ip", "/usr/sbin/iptables"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\n\
         RUN ip -4 -o addr show eth0 | awk '{print $4}' > /addr && ip route | grep default > /route\n\
         RUN --network=none ls /sys/class/net > /none\n",
    )
    .unwrap();
    let ctx = dir.path().to_str().unwrap();
    let (code, _, log) = build(&env, &["--network", "bridge", "-t", "nb", ctx]);
    assert_eq!(code, 0, "{log}");
    let (code, out, err) = run_image(
        &env,
        &["--network", "none"],
        "nb",
        &["cat", "/addr", "/route", "/none"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("10.213.") && lines[0].ends_with("/16"),
        "{out}"
    );
    assert_eq!(lines[1].trim(), "default via 10.213.0.1 dev eth0");
    assert_eq!(lines[2], "lo");
    // The steps' links and addresses went with them.
    let ipam = std::fs::read_to_string("/run/lb/networks/lb0.json").unwrap_or_default();
    assert!(!ipam.contains(&env.root.display().to_string()), "{ipam}");
    let (code, _, log) = build(&env, &["--network", "bogus", ctx]);
    assert_eq!(code, 1);
    assert!(log.contains("--network bogus"), "{log}");
}
