//! The `run`/`create` flags docker users type (issue 19): the same scenarios against docker
//! 20.10 (a dockerd of the test's own) and lb, compared on exit codes, what the container's
//! process sees, refusals and `inspect --format` values; then what docker cannot be
//! compared on here (no bridge in the test's dockerd, signals to the client, another
//! container's namespaces) against lb alone.

mod common;
use common::docker::{Tool, both};
use common::*;

use std::process::Output;

/// A refusal's message without the tool's prefix, docker's daemon wrapping and its final
/// period: what both say.
fn core(o: &Output) -> String {
    let err = text(&o.stderr);
    let line = err
        .lines()
        .find(|l| !l.starts_with("Unable to find image") && !l.starts_with("See '"))
        .unwrap_or("");
    let line = line
        .strip_prefix("docker: ")
        .or_else(|| line.strip_prefix("lb: "))
        .unwrap_or(line);
    let line = line
        .strip_prefix("Error response from daemon: ")
        .unwrap_or(line);
    line.strip_suffix('.').unwrap_or(line).to_string()
}

/// `run --rm --network none ARGS...` by both: the same exit code and standard output,
/// and for a refusal the same message.
fn same_run(docker: &dyn Tool, lb: &dyn Tool, args: &[&str]) -> (i32, String) {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend_from_slice(args);
    let (d, l) = (docker.run(&all), lb.run(&all));
    assert_eq!(
        l.status.code(),
        d.status.code(),
        "{args:?}\n docker: {}\n lb: {}",
        text(&d.stderr),
        text(&l.stderr)
    );
    assert_eq!(text(&l.stdout), text(&d.stdout), "{args:?}");
    if !d.status.success() {
        assert_eq!(core(&l), core(&d), "{args:?}");
    }
    (d.status.code().unwrap_or(-1), text(&d.stdout))
}

#[test]
fn refusals_are_docker_s() {
    let Some((env, docker)) = both() else { return };
    let refused: &[&[&str]] = &[
        &["--add-host", "foo", "busybox", "true"],
        &["--add-host", "foo:notip", "busybox", "true"],
        &["--dns", "notip", "busybox", "true"],
        &["--label", "=x", "busybox", "true"],
        &["--label-file", "/nonexistent-labels", "busybox", "true"],
        &["--device", "/dev/null:rel", "busybox", "true"],
        &["--device", "/dev/null:/dev/x:rwz", "busybox", "true"],
        &["--device", "/dev/nosuch-device", "busybox", "true"],
        &["--group-add", "nosuchgrp", "busybox", "true"],
        &["--shm-size", "bad", "busybox", "true"],
        &["--shm-size", "-5", "busybox", "true"],
        &["--stop-signal", "BOGUS", "busybox", "true"],
        &["--stop-timeout", "x", "busybox", "true"],
        &["--sysctl", "kernel.hostname=x", "busybox", "true"],
        &["--sysctl", "vm.swappiness=1", "busybox", "true"],
        &["--sysctl", "foo", "busybox", "true"],
        &["--pid", "bogus", "busybox", "true"],
        &["--pid", "container:nosuch", "busybox", "true"],
        &["--ipc", "bogus", "busybox", "true"],
        &["--ipc", "container:nosuch", "busybox", "true"],
        &["--uts", "bogus", "busybox", "true"],
        &["--uts", "host", "-h", "foo", "busybox", "true"],
        &["--expose", "bad", "busybox", "true"],
        &["--expose", "70000", "busybox", "true"],
        &["--network-alias", "a", "busybox", "true"],
        &["--platform", "bogus", "busybox", "true"],
        &["--pull", "never", "nosuch-image", "true"],
        &[
            "--pull",
            "never",
            "--platform",
            "linux/arm64",
            "busybox",
            "true",
        ],
        &["-a", "bogus", "busybox", "true"],
        &["--log-opt", "max-size=bad", "busybox", "true"],
        &["--log-opt", "max-size=0", "busybox", "true"],
        &["--log-opt", "max-file=0", "busybox", "true"],
        &["--log-opt", "max-file=x", "busybox", "true"],
        &["--log-opt", "bogus=1", "busybox", "true"],
        &["--log-opt", "nokey", "busybox", "true"],
        &[
            "--log-driver",
            "none",
            "--log-opt",
            "max-size=1m",
            "busybox",
            "true",
        ],
    ];
    for args in refused {
        let (code, _) = same_run(&docker, &env, args);
        assert_ne!(code, 0, "{args:?}");
    }
    // Refused by runc in docker (when the container starts), by lb before: the same words.
    let args = [
        "run",
        "--rm",
        "--network",
        "host",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "busybox",
        "true",
    ];
    let (d, l) = (docker.run(&args), env.run(&args));
    assert_eq!((l.status.code(), d.status.code()), (Some(125), Some(125)));
    assert!(
        text(&d.stderr).contains(&core(&l)),
        "{}\n{}",
        text(&d.stderr),
        text(&l.stderr)
    );
    // `create`: what docker's CLI refuses exits 125, what its daemon refuses 1. (docker's
    // daemon takes `--ipc bogus` at create and refuses it at start; lb at create.)
    for args in [
        &["create", "--add-host", "foo", "busybox", "true"][..],
        &["create", "--sysctl", "foo", "busybox", "true"][..],
        &["create", "--stop-signal", "BOGUS", "busybox", "true"][..],
        &["create", "--pull", "never", "nosuch-image", "true"][..],
        &["create", "--uts", "host", "-h", "x", "busybox", "true"][..],
    ] {
        let (d, l) = (docker.run(args), env.run(args));
        assert_eq!(
            l.status.code(),
            d.status.code(),
            "{args:?}: {}",
            text(&l.stderr)
        );
        assert_eq!(core(&l), core(&d), "{args:?}");
    }
    // -a with -d: docker's client refuses it with status 1.
    let args = ["run", "-d", "-a", "stdout", "busybox", "true"];
    let (d, l) = (docker.run(&args), env.run(&args));
    assert_eq!((l.status.code(), d.status.code()), (Some(1), Some(1)));
    assert_eq!(text(&l.stderr), text(&d.stderr));
}

#[test]
fn what_the_container_sees_is_docker_s() {
    let Some((env, docker)) = both() else { return };
    let cases: &[&[&str]] = &[
        // Extra hosts after the defaults (whose lines differ without a network).
        &[
            "--add-host",
            "foo:1.2.3.4",
            "--add-host",
            "bar:::1",
            "--add-host",
            "baz qux:1.1.1.1",
            "busybox",
            "sh",
            "-c",
            "grep -E 'foo|bar|baz' /etc/hosts",
        ],
        &[
            "--dns",
            "1.2.3.4",
            "--dns-search",
            "ex.com",
            "--dns-option",
            "ndots:2",
            "busybox",
            "cat",
            "/etc/resolv.conf",
        ],
        &[
            "--dns",
            "9.9.9.9",
            "busybox",
            "grep",
            "nameserver",
            "/etc/resolv.conf",
        ],
        &["--group-add", "1234", "busybox", "id"],
        &["-u", "1000", "--group-add", "1234", "busybox", "id"],
        &[
            "-u",
            "1000:1001",
            "--group-add",
            "5",
            "busybox",
            "grep",
            "Groups",
            "/proc/self/status",
        ],
        &["--group-add", "nogroup", "busybox", "id", "-G"],
        &["--shm-size", "1m", "busybox", "df", "-k", "/dev/shm"],
        &["--shm-size", "0", "busybox", "df", "-k", "/dev/shm"],
        &["--ipc", "none", "busybox", "ls", "/dev/shm"],
        &[
            "--ipc",
            "host",
            "busybox",
            "sh",
            "-c",
            "test -d /dev/shm && echo shm",
        ],
        &[
            "--sysctl",
            "kernel.shm_rmid_forced=1",
            "--sysctl",
            "fs.mqueue.msg_max=20",
            "busybox",
            "cat",
            "/proc/sys/kernel/shm_rmid_forced",
            "/proc/sys/fs/mqueue/msg_max",
        ],
        &[
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "busybox",
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ],
        &["--pid", "host", "busybox", "cat", "/proc/1/comm"],
        &["--uts", "host", "busybox", "hostname"],
        &[
            "--device",
            "/dev/null:/dev/mynull:rw",
            "busybox",
            "sh",
            "-c",
            "ls -l /dev/mynull | cut -c1-10; echo x > /dev/mynull && echo written",
        ],
        &[
            "--device",
            "/dev/zero:/dev/z:r",
            "busybox",
            "sh",
            "-c",
            "head -c1 /dev/z | wc -c; echo x 2>/dev/null > /dev/z || echo refused",
        ],
        &[
            "-a",
            "stdout",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
        &[
            "-a",
            "STDERR",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
        &["--sig-proxy=false", "busybox", "echo", "x"],
        &["--pull", "never", "busybox", "echo", "here"],
        &["--pull", "bogus", "busybox", "echo", "here"],
        &["--platform", "linux/amd64", "busybox", "echo", "amd64"],
        &[
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "3",
            "busybox",
            "true",
        ],
        &["-l", "a=b", "--expose", "80", "busybox", "true"],
    ];
    for args in cases {
        same_run(&docker, &env, args);
    }
    // -a stderr: what reaches the client's stderr.
    let args = [
        "run",
        "--rm",
        "--network",
        "none",
        "-a",
        "stderr",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ];
    assert_eq!(
        text(&env.run(&args).stderr),
        text(&docker.run(&args).stderr)
    );
}

#[test]
fn inspect_shows_the_flags_as_docker_does() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels");
    std::fs::write(&labels, "a=1\n# c\n\nb\n  c=d \n").unwrap();
    let format = concat!(
        "{{json .Config.Labels}}|{{json .Config.StopSignal}}|{{json .Config.StopTimeout}}|",
        "{{json .Config.ExposedPorts}}|{{json .HostConfig.ExtraHosts}}|{{json .HostConfig.Dns}}|",
        "{{json .HostConfig.DnsSearch}}|{{json .HostConfig.DnsOptions}}|",
        "{{json .HostConfig.GroupAdd}}|{{.HostConfig.ShmSize}}|{{json .HostConfig.Sysctls}}|",
        "{{.HostConfig.PidMode}}|{{.HostConfig.IpcMode}}|{{.HostConfig.UTSMode}}|",
        "{{range .HostConfig.Devices}}{{.PathOnHost}} {{.PathInContainer}} {{.CgroupPermissions}}{{end}}|",
        "{{json .HostConfig.CapAdd}}|{{json .HostConfig.CapDrop}}|",
        "{{json .NetworkSettings.Networks.none.Aliases}}"
    );
    let mut shown = Vec::new();
    for (n, t) in tools.iter().enumerate() {
        let cid = dir.path().join(format!("cid{n}"));
        let cid_arg = cid.to_str().unwrap();
        let id = t.ok(&[
            "create",
            "--name",
            "flags",
            "--network",
            "none",
            "-l",
            "x=y",
            "--label-file",
            labels.to_str().unwrap(),
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "7",
            "--expose",
            "80",
            "--expose",
            "90-91/udp",
            "--add-host",
            "h:1.2.3.4",
            "--dns",
            "9.9.9.9",
            "--dns-search",
            "s.com",
            "--dns-option",
            "ndots:1",
            "--group-add",
            "50",
            "--shm-size",
            "2m",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--pid",
            "host",
            "--ipc",
            "private",
            "--uts",
            "host",
            "--device",
            "/dev/null:/dev/n2:r",
            "--cap-add",
            "NET_ADMIN",
            "--cidfile",
            cid_arg,
            "busybox",
            "true",
        ]);
        // The cidfile holds the whole id, no newline.
        assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
        let again = t.run(&[
            "create",
            "--cidfile",
            cid_arg,
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        // A refusal of docker's daemon side: `create` exits 1 (`run`, 125).
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(
            core(&again),
            format!(
                "container ID file found, make sure the other container isn't running or delete {cid_arg}"
            )
        );
        let file = t.ok(&["inspect", "-f", "{{.HostConfig.ContainerIDFile}}", "flags"]);
        assert_eq!(file.trim(), cid_arg);
        shown.push(t.ok(&["inspect", "-f", format, "flags"]));
        // A container without any of them: docker's defaults.
        t.ok(&[
            "create",
            "--name",
            "plain",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        shown.push(t.ok(&[
            "inspect",
            "-f",
            "{{json .Config.Labels}}|{{json .HostConfig.Dns}}|{{json .HostConfig.ExtraHosts}}|{{json .HostConfig.GroupAdd}}|{{.HostConfig.ShmSize}}|{{.HostConfig.IpcMode}}|{{.HostConfig.PidMode}}|{{json .HostConfig.Devices}}|{{json .HostConfig.CapAdd}}|{{.HostConfig.ContainerIDFile}}",
            "plain",
        ]));
        // ps: label filters and {{.Labels}} (in Go's map order in docker: compared sorted).
        let line = t.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=x",
            "--format",
            "{{.Names}} {{.Labels}}",
        ]);
        let (name, labels) = line.trim_end_matches('\n').split_once(' ').unwrap();
        let mut labels: Vec<&str> = labels.split(',').collect();
        labels.sort();
        shown.push(format!("{name} {labels:?}"));
        shown.push(t.ok(&[
            "ps",
            "-a",
            "--filter",
            "label=a=2",
            "--format",
            "{{.Names}}",
        ]));
        t.ok(&["rm", "flags", "plain"]);
    }
    let half = shown.len() / 2;
    assert_eq!(shown[half..], shown[..half]);
}

#[test]
fn stop_waits_the_stop_timeout_with_the_stop_signal() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        // SIGUSR1 is caught (exit 10), SIGTERM is not: --stop-signal decides which is sent.
        t.ok(&[
            "run",
            "-d",
            "--name",
            "stopper",
            "--network",
            "none",
            "--stop-signal",
            "USR1",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 10' USR1; while :; do sleep 0.1; done",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        t.ok(&["stop", "stopper"]);
        let code = t.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stopper"]);
        assert_eq!(code.trim(), "10", "{}", t.name());
        t.ok(&["rm", "stopper"]);
        // A signal nothing catches: SIGKILL after --stop-timeout, not docker's 10 s.
        t.ok(&[
            "run",
            "-d",
            "--name",
            "stubborn",
            "--network",
            "none",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.1; done",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let start = std::time::Instant::now();
        t.ok(&["stop", "stubborn"]);
        let took = start.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "{}: {took:?}",
            t.name()
        );
        let code = t.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]);
        assert_eq!(code.trim(), "137", "{}", t.name());
        t.ok(&["rm", "stubborn"]);
    }
}

/// `lb ARGS...`: (exit code, stdout, stderr).
fn lb_out(env: &Env, args: &[&str]) -> (i32, String, String) {
    let o = lb(env, args);
    (
        o.status.code().unwrap_or(-1),
        text(&o.stdout),
        text(&o.stderr),
    )
}

#[test]
fn another_container_s_pid_and_ipc_namespaces() {
    let Some(env) = setup() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do sleep 0.1; done",
    ]);
    // Its processes, its PID 1, and nothing of the host's.
    let (code, out, err) = run(
        &env,
        &["--network", "none", "--pid", "container:holder"],
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o comm | sort -u | tr '\\n' ' '",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("sh -c while :; do sleep 0.1; done"),
        "{out}"
    );
    assert!(!out.contains("dockerd") && !out.contains("lb"), "{out}");
    // The same IPC namespace as the holder's.
    let theirs = env.ok(&["exec", "holder", "readlink", "/proc/self/ns/ipc"]);
    let (_, mine, _) = run(
        &env,
        &["--network", "none", "--ipc", "container:holder"],
        &["readlink", "/proc/self/ns/ipc"],
    );
    assert_eq!(mine, theirs);
    // A joined PID namespace holds exec'd processes too; the holder's stopped: refused.
    env.ok(&["stop", "-t", "1", "holder"]);
    let (code, _, err) = run(
        &env,
        &["--network", "none", "--pid", "container:holder"],
        &["true"],
    );
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("non running container"), "{err}");
    env.ok(&["rm", "holder"]);
}

#[test]
fn sig_proxy_false_leaves_the_container_alone() {
    let Some(env) = setup() else { return };
    let script =
        "trap 'echo usr1' USR1; i=0; while [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; echo end";
    for (proxy, want) in [("true", "usr1\nend\n"), ("false", "end\n")] {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_lb"))
            .arg("--root")
            .arg(&env.root)
            .args(["run", "--rm", "--network", "none"])
            .arg(format!("--sig-proxy={proxy}"))
            .args(["busybox", "sh", "-c", script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
        // The container writes to the pipe itself: its output ends when it does, even
        // after lb (without --sig-proxy, SIGUSR1 ends lb) is gone.
        let out = child.wait_with_output().unwrap();
        assert_eq!(text(&out.stdout), want, "--sig-proxy={proxy}");
        if proxy == "false" {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGUSR1));
        }
    }
    // The one left running without lb: its record is there, `rm -f` takes it.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (_, ids, _) = lb_out(&env, &["ps", "-aq"]);
    for id in ids.lines() {
        env.ok(&["rm", "-f", id]);
    }
}

#[test]
fn network_aliases_resolve_on_a_user_network() {
    let Some(env) = setup() else { return };
    let (code, _, err) = lb_out(&env, &["network", "create", "flagsnet"]);
    if code != 0 {
        eprintln!("skipped: no user network here: {err}");
        return;
    }
    env.ok(&[
        "run",
        "-d",
        "--name",
        "aliased",
        "--network",
        "flagsnet",
        "--network-alias",
        "db",
        "--network-alias",
        "cache",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = env.ok(&["inspect", "-f", "{{.Id}}", "aliased"]);
    let aliases = env.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks.flagsnet.Aliases}}",
        "aliased",
    ]);
    assert_eq!(
        aliases.trim(),
        format!("[\"db\",\"cache\",\"{}\"]", &id.trim()[..12])
    );
    // Another container there finds it by its aliases (lb's names are hosts lines).
    let (code, out, err) = run(
        &env,
        &["--network", "flagsnet"],
        &["sh", "-c", "grep -w db /etc/hosts | grep -wc cache"],
    );
    assert_eq!((code, out.trim()), (0, "1"), "{err}");
    env.ok(&["rm", "-f", "aliased"]);
    env.ok(&["network", "rm", "flagsnet"]);
}

#[test]
fn a_device_is_looked_up_when_the_container_starts() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("mynull");
    let made = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    let spec = format!("{}:/dev/later", node.display());
    // Made while the node is there, started once it is gone: the start fails, as docker's.
    env.ok(&[
        "create",
        "--name",
        "dev",
        "--network",
        "none",
        "--device",
        &spec,
        "busybox",
        "true",
    ]);
    std::fs::remove_file(&node).unwrap();
    let (code, _, err) = lb_out(&env, &["start", "dev"]);
    assert_ne!(code, 0);
    assert!(err.contains("error gathering device information"), "{err}");
    env.ok(&["rm", "dev"]);
}

#[test]
fn pull_always_missing_and_never_with_a_registry() {
    let Some(env) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(reg) = lb_testkit::TestRegistry::start(
        &dir.path().join("reg"),
        lb_testkit::RegistryAuth::Anonymous,
    ) else {
        return;
    };
    let name = format!("{}/flags/bb:1", reg.addr);
    env.ok(&["tag", "busybox", &name]);
    env.ok(&["push", &name]);
    let other = setup().unwrap();
    // never: not pulled, docker's refusal.
    let (code, _, err) = run_image(
        &other,
        &["--pull", "never", "--network", "none"],
        &name,
        &["true"],
    );
    assert_eq!(code, 125);
    assert!(err.contains(&format!("No such image: {name}")), "{err}");
    // missing (the default): said, pulled, run.
    let (code, out, err) = run_image(&other, &["--network", "none"], &name, &["echo", "ran"]);
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    assert!(
        err.contains(&format!("Unable to find image '{name}' locally")),
        "{err}"
    );
    assert!(err.contains("Status: Downloaded newer image"), "{err}");
    // Here now: not pulled again; `always` asks the registry anyway.
    let (_, _, err) = run_image(&other, &["--network", "none"], &name, &["true"]);
    assert!(!err.contains("Pulling"), "{err}");
    let (code, _, err) = run_image(
        &other,
        &["--pull", "always", "--network", "none"],
        &name,
        &["true"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Status: Image is up to date"), "{err}");
}
