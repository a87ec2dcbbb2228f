//! RUN steps' networks, tried as a hostile Dockerfile would: by default a step has a
//! network namespace of its own on the bridge (as BuildKit gives each RUN its own), so it
//! cannot reach services on the host's loopback, see the host's interfaces or connect to
//! the host's abstract unix sockets, yet reaches the outside through the bridge. The host's
//! network is an explicit opt-in: `lb build --network host`, or `RUN --network=host` with
//! `--allow network.host` (refused without it), shown as such in the step's output.

use std::io::Read;
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::*;

/// A TCP server at `addr` that closes every connection at once (so a client's `nc`
/// ends); its port and a function telling whether someone connected since it last asked.
/// Its accepting thread may lag behind a client that connected and left (a loaded
/// machine): the function waits up to 5 s for a connection when `expected`, a moment
/// otherwise.
fn server(addr: &str) -> (u16, impl Fn(bool) -> bool) {
    let listener = TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, move |expected: bool| {
        let wait = std::time::Duration::from_millis(if expected { 5000 } else { 300 });
        let end = std::time::Instant::now() + wait;
        while count.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        count.swap(0, Ordering::SeqCst) > 0
    })
}

#[test]
fn run_steps_have_a_network_of_their_own() {
    let Some(env) = setup() else { return };
    let (lport, loopback) = server("127.0.0.1:0");
    let (aport, everywhere) = server("0.0.0.0:0");
    let abstract_name = format!("lb-build-net-{}", std::process::id());
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let _unix = UnixListener::bind_addr(&addr).unwrap();
    // The host's interfaces other than lo, as its /proc/net/dev names them.
    let mut dev = String::new();
    std::fs::File::open("/proc/net/dev")
        .unwrap()
        .read_to_string(&mut dev)
        .unwrap();
    let host_links: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_string()))
        .filter(|n| n != "lo" && n != "eth0")
        .collect();
    assert!(!host_links.is_empty(), "the host has no interface but lo");
    let df = format!(
        "FROM busybox\n\
         RUN echo x | nc -w 1 127.0.0.1 {lport} ; cut -d: -f1 /proc/net/dev > /links; \
         grep -c {abstract_name} /proc/net/unix > /unix; \
         echo y | nc -w 1 10.213.0.1 {aport}; echo $? > /outbound\n"
    );
    let ctx = context(&env, "isolated", &df, &[]);
    let (code, _, log) = build(
        &env,
        &[
            "--progress",
            "plain",
            "-t",
            "isolated",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(!loopback(false), "a RUN step reached the host's 127.0.0.1");
    assert!(
        everywhere(true),
        "a RUN step did not reach the host through the bridge"
    );
    let (_, links, _) = run_image(&env, &["--network", "none"], "isolated", &["cat", "/links"]);
    for l in &host_links {
        assert!(
            !links.lines().any(|x| x.trim() == l),
            "a RUN step saw the host's {l}: {links}"
        );
    }
    let (_, unix, _) = run_image(&env, &["--network", "none"], "isolated", &["cat", "/unix"]);
    assert_eq!(
        unix.trim(),
        "0",
        "a RUN step saw the host's abstract socket"
    );

    // The host's network on request, and said so in the step's output.
    let ctx = context(
        &env,
        "host",
        &format!("FROM busybox\nRUN echo x | nc -w 1 127.0.0.1 {lport}\n"),
        &[],
    );
    let (code, _, log) = build(
        &env,
        &[
            "--no-cache",
            "--progress",
            "plain",
            "--network",
            "host",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("RUN --network=host echo x"), "{log}");
    assert!(loopback(true), "--network host did not reach 127.0.0.1");

    // A Dockerfile cannot grant itself the host's network.
    let ctx = context(
        &env,
        "ask-host",
        &format!("FROM busybox\nRUN --network=host echo x | nc -w 1 127.0.0.1 {lport}\n"),
        &[],
    );
    let (code, _, log) = build(&env, &["--no-cache", ctx.to_str().unwrap()]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("network.host is not allowed"), "{log}");
    assert!(log.contains("Dockerfile:2"), "{log}");
    assert!(!loopback(false));
    let (code, _, log) = build(
        &env,
        &[
            "--no-cache",
            "--allow",
            "network.host",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(loopback(true));

    // --network none: only lo.
    let ctx = context(
        &env,
        "none",
        "FROM busybox\nRUN cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' ' > /links\n",
        &[],
    );
    let (code, _, log) = build(
        &env,
        &["--network", "none", "-t", "none", ctx.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{log}");
    let (_, links, _) = run_image(&env, &["--network", "none"], "none", &["cat", "/links"]);
    assert_eq!(links, "lo\n");
}

/// Namespaces go back to the pool after their step and are handed to later steps, as
/// BuildKit's pool does: nothing a step does may reach a later one. Eight steps share at
/// most the pool's six namespaces (and those a filler adds when it runs low), so some
/// are reused; each step leaves a listener running, tries to add an address and a route,
/// and checks that none of the earlier steps' did any of it.
#[test]
fn a_reused_namespace_keeps_nothing_of_earlier_steps() {
    let Some(env) = setup() else { return };
    let mut df = String::from("FROM busybox\nRUN mkdir /seen\n");
    for step in 0..8 {
        let port = 4700 + step;
        df.push_str(&format!(
            "RUN ip -4 -o addr show eth0 | awk '{{print $4}}' >> /seen/ips; \
             for p in $(seq 4700 {last}); do \
               nc -w 1 127.0.0.1 $p </dev/null && echo \"step {step} reached $p\" >> /seen/leaks; \
             done; \
             ip -o addr | grep -q 10.99.0. && echo \"step {step} saw an address\" >> /seen/leaks; \
             ip route | grep -q 10.98.0.0 && echo \"step {step} saw a route\" >> /seen/leaks; \
             ip addr add 10.99.0.{step}/32 dev lo 2>/dev/null && echo \"step {step} added an address\" >> /seen/leaks; \
             ip route add 10.98.0.0/16 dev eth0 2>/dev/null && echo \"step {step} added a route\" >> /seen/leaks; \
             (nc -l -p {port} -e cat </dev/null >/dev/null 2>&1 &); sleep 0.2; true\n",
            last = port.max(4701) - 1,
        ));
    }
    let ctx = context(&env, "reuse", &df, &[]);
    let (code, _, log) = build(&env, &["--no-cache", "-t", "reuse", ctx.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (_, leaks, _) = run_image(
        &env,
        &["--network", "none"],
        "reuse",
        &["sh", "-c", "cat /seen/leaks 2>/dev/null; true"],
    );
    assert_eq!(leaks, "", "a step reached what an earlier step left");
    let (_, ips, _) = run_image(&env, &["--network", "none"], "reuse", &["cat", "/seen/ips"]);
    let ips: Vec<&str> = ips.lines().collect();
    assert_eq!(ips.len(), 8, "{ips:?}");
    let distinct: std::collections::BTreeSet<_> = ips.iter().collect();
    assert!(
        distinct.len() < ips.len(),
        "no namespace was reused (the pool's entries go back after each step): {ips:?}"
    );
}
