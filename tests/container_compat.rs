//! Containers as docker users see them, compared with docker 20.10 itself: the same
//! scenario run by both (a dockerd of the test's own, `tests/common/docker.rs`), and what
//! `inspect` shows (keys, values through `--format` templates, errors and exit codes) must
//! agree.

use std::collections::BTreeSet;
use std::process::Output;

use serde_json::Value;

mod common;
use common::docker::{Docker, Tool, both};
use common::*;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The environment as a set, without HOSTNAME (docker adds it to the process only).
fn env_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .filter(|e| !e.starts_with("HOSTNAME="))
        .collect()
}

#[test]
fn container_inspect_shows_what_docker_shows() {
    let Some((env, docker)) = both() else { return };
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    let bind = format!("{}:/data:ro", host.display());
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "insp",
            "--network",
            "none",
            "-e",
            "FOO=bar",
            "-v",
            &bind,
            "--memory",
            "64m",
            "busybox",
            "sleep",
            "100",
        ]);
    }

    // Values through templates, as scripts read them.
    let templates = [
        "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.Restarting}} {{.State.Dead}} {{.State.ExitCode}}",
        "{{.Path}} {{json .Args}} {{.Name}} {{.RestartCount}} {{.Platform}}",
        "{{json .Config.Cmd}} {{json .Config.Entrypoint}} {{.Config.Image}} {{.Config.Tty}} {{.Config.User}} {{.Config.WorkingDir}}",
        "{{json .HostConfig.Binds}} {{.HostConfig.NetworkMode}} {{.HostConfig.Memory}} {{.HostConfig.AutoRemove}}",
        "{{json .HostConfig.RestartPolicy}} {{json .HostConfig.LogConfig}}",
        "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.Mode}} {{.RW}} {{.Propagation}}{{end}}",
        "{{.NetworkSettings.IPAddress}}|{{json .NetworkSettings.Ports}}",
        "{{if .State.Running}}up{{else}}down{{end}} {{len .Args}} {{index .Args 0}}",
        // Composite values printed as Go prints them.
        "{{.Config.Cmd}} {{.Args}} {{.HostConfig.RestartPolicy}} {{.HostConfig.Binds}}",
        "{{.Config.Labels}} {{.HostConfig.LogConfig}} {{range .Mounts}}{{.Source}}{{end}}",
        "{{.NetworkSettings.Ports}} {{.Config.Entrypoint}}",
    ];
    for tpl in templates {
        let d = docker.ok(&["inspect", "-f", tpl, "insp"]);
        let l = env.ok(&["inspect", "-f", tpl, "insp"]);
        assert_eq!(l, d, "template {tpl}");
        // `container inspect` answers the same.
        assert_eq!(env.ok(&["container", "inspect", "-f", tpl, "insp"]), l);
    }

    // info: the same counts, and the same host.
    for tpl in [
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} {{.Images}}",
        "{{.OSType}} {{.Architecture}} {{.NCPU}} {{.MemTotal}} {{.KernelVersion}} {{.Name}}",
        "{{.OperatingSystem}} {{.CgroupVersion}} {{.CgroupDriver}} {{.LoggingDriver}}",
    ] {
        assert_eq!(
            env.ok(&["info", "-f", tpl]),
            docker.ok(&["info", "-f", tpl]),
            "{tpl}"
        );
    }

    // The JSON: lb's keys are docker's, and the values tools read agree.
    let d: Value = serde_json::from_str(&docker.ok(&["inspect", "insp"])).unwrap();
    let l: Value = serde_json::from_str(&env.ok(&["inspect", "insp"])).unwrap();
    let (d, l) = (&d[0], &l[0]);
    assert!(
        keys(l).is_subset(&keys(d)),
        "{:?} vs docker {:?}",
        keys(l),
        keys(d)
    );
    for k in ["State", "Config", "HostConfig", "NetworkSettings"] {
        assert!(
            keys(&l[k]).is_subset(&keys(&d[k])),
            "{k}: {:?}",
            keys(&l[k]).difference(&keys(&d[k])).collect::<Vec<_>>()
        );
    }
    assert_eq!(keys(&l["State"]), keys(&d["State"]));
    assert_eq!(env_set(&l["Config"]["Env"]), env_set(&d["Config"]["Env"]));
    assert_eq!(l["Id"].as_str().unwrap().len(), 64);
    assert!(l["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(l["State"]["FinishedAt"], d["State"]["FinishedAt"]);

    // Killed: exited, 137, and a finish time.
    for t in tools {
        t.ok(&["kill", "insp"]);
        t.ok(&["wait", "insp"]);
    }
    let tpl = "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}";
    assert_eq!(
        env.ok(&["inspect", "-f", tpl, "insp"]),
        docker.ok(&["inspect", "-f", tpl, "insp"])
    );
    let finished = env.ok(&["inspect", "-f", "{{.State.FinishedAt}}", "insp"]);
    assert!(!finished.starts_with("0001-"), "{finished}");

    // Names found as nothing: docker's output, errors and status, by kind.
    for args in [
        &["inspect", "nope"][..],
        &["inspect", "--type", "container", "busybox"],
        &["container", "inspect", "busybox"],
        &["image", "inspect", "insp"],
        &["inspect", "-f", "{{.Id}}", "nope"],
    ] {
        let (d, l) = (docker.run(args), env.run(args));
        assert_eq!(l.status.code(), d.status.code(), "{args:?}");
        assert_eq!(text(&l.stdout), text(&d.stdout), "{args:?}");
        assert_eq!(
            text(&l.stderr)
                .trim()
                .trim_start_matches("Error response from daemon: "),
            text(&d.stderr)
                .trim()
                .trim_start_matches("Error response from daemon: "),
            "{args:?}"
        );
    }
    // An image and a container in one call; the image by `--type image`.
    let both: Value = serde_json::from_str(&env.ok(&["inspect", "insp", "busybox"])).unwrap();
    assert_eq!(both.as_array().unwrap().len(), 2);
    assert!(both[1]["RootFS"].is_object());
    assert_eq!(
        env.ok(&["inspect", "--type", "image", "-f", "{{.Id}}", "busybox"]),
        env.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"])
    );
    for t in tools {
        t.ok(&["rm", "insp"]);
    }
}

/// Container and network ids, sizes: what differs between two tools' runs.
fn normalized(out: &str) -> String {
    out.lines()
        .map(|l| {
            if l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()) {
                "ID".to_string()
            } else if l.starts_with("Total reclaimed space: ") {
                "Total reclaimed space: SIZE".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ARGS...` with `input` on standard input.
fn with_input(t: &dyn Tool, env: &Env, docker: &Docker, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut cmd = if t.name() == "lb" {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lb"));
        c.arg("--root").arg(&env.root).args(args);
        c
    } else {
        docker.cmd(args)
    };
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn prune_removes_what_docker_removes_and_says_it_alike() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "--name",
            "done",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
        t.ok(&[
            "run",
            "-d",
            "--name",
            "up",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]);
        t.ok(&["network", "create", "unused"]);
    }

    // Declined: nothing goes, the question asked on standard output.
    let (d, l) = (
        with_input(&docker, &env, &docker, &["container", "prune"], "n\n"),
        with_input(&env, &env, &docker, &["container", "prune"], "n\n"),
    );
    assert_eq!(l.status.code(), d.status.code());
    assert_eq!(
        text(&l.stdout),
        text(&d.stdout),
        "docker said {}",
        text(&d.stderr)
    );
    for t in tools {
        assert!(t.ok(&["ps", "-a"]).contains("done"), "{}", t.name());
    }

    // Accepted: the stopped container goes, the running one stays.
    let (d, l) = (
        with_input(&docker, &env, &docker, &["container", "prune"], "y\n"),
        with_input(&env, &env, &docker, &["container", "prune"], "y\n"),
    );
    assert_eq!(normalized(&text(&l.stdout)), normalized(&text(&d.stdout)));
    assert!(text(&l.stdout).contains("Deleted Containers:"));
    for t in tools {
        let ps = t.ok(&["ps", "-a"]);
        assert!(
            !ps.contains("done") && ps.contains("up"),
            "{}: {ps}",
            t.name()
        );
        t.ok(&[
            "run",
            "--name",
            "done2",
            "--network",
            "none",
            "busybox",
            "true",
        ]);
    }

    // system prune -f: containers and networks, in docker's sections.
    let (d, l) = (
        docker.ok(&["system", "prune", "-f"]),
        env.ok(&["system", "prune", "-f"]),
    );
    assert_eq!(normalized(&l), normalized(&d));
    assert!(l.contains("Deleted Networks:\nunused\n"), "{l}");
    for t in tools {
        assert!(!t.ok(&["network", "ls"]).contains("unused"), "{}", t.name());
        // Images a container uses stay with `image prune -a`.
        t.ok(&["image", "prune", "-a", "-f"]);
        assert!(t.ok(&["images"]).contains("busybox"), "{}", t.name());
        t.ok(&["rm", "-f", "up"]);
    }
    // Now unused: `image prune -a` untags it.
    let (d, l) = (
        docker.ok(&["image", "prune", "-a", "-f"]),
        env.ok(&["image", "prune", "-a", "-f"]),
    );
    assert!(l.contains("untagged: busybox:latest"), "{l}");
    assert!(d.contains("untagged: busybox:latest"), "{d}");
    assert!(!env.ok(&["images"]).contains("busybox"));
}

#[test]
fn volumes_keep_data_copy_up_and_refuse_removal_in_use_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let same = |args: &[&str]| {
        let (d, l) = (docker.run(args), env.run(args));
        assert_eq!(
            l.status.code(),
            d.status.code(),
            "{args:?}: lb said {} docker said {}",
            text(&l.stderr),
            text(&d.stderr)
        );
        assert_eq!(
            normalized(&text(&l.stdout)),
            normalized(&text(&d.stdout)),
            "{args:?}"
        );
        let err = |o: &Output| {
            let e = text(&o.stderr);
            // Container ids in messages differ between the two.
            match e.find(" - [") {
                Some(i) => e[..i].to_string(),
                None => e,
            }
        };
        assert_eq!(err(&l), err(&d), "{args:?}");
        text(&l.stdout)
    };
    // docker's container names have two characters at least.
    for t in tools {
        let out = t.run(&["run", "--name", "w", "--network", "none", "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{}", t.name());
        assert!(
            text(&out.stderr).contains("Invalid container name (w)"),
            "{}",
            t.name()
        );
    }
    assert_eq!(same(&["volume", "create", "vol1"]), "vol1\n");
    same(&["volume", "ls", "-q"]);
    same(&[
        "volume",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{.Scope}} {{json .Labels}}",
        "vol1",
    ]);
    // A new volume on a path the image has files at starts with them (copy-up).
    let listing = same(&[
        "run",
        "--name",
        "writer",
        "--network",
        "none",
        "-v",
        "vol1:/etc",
        "busybox",
        "sh",
        "-c",
        "ls -ln /etc/passwd /etc/group; cat /etc/passwd; test -f /etc/hosts && echo hosts; echo data > /etc/mine",
    ]);
    assert!(listing.contains("passwd"), "{listing}");
    // What a container wrote is there for the next one, at another path too.
    assert_eq!(
        same(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "vol1:/srv:ro",
            "busybox",
            "cat",
            "/srv/mine"
        ]),
        "data\n"
    );
    same(&["volume", "rm", "vol1"]);
    // system df counts it, used; ps -s shows what the writer changed.
    for t in tools {
        let df = t.ok(&["system", "df"]);
        let row: Vec<&str> = df
            .lines()
            .find(|l| l.starts_with("Local Volumes"))
            .unwrap_or_else(|| panic!("{}: {df}", t.name()))
            .split_whitespace()
            .collect();
        assert_eq!(&row[2..4], ["1", "1"], "{}: {df}", t.name());
        let size = t.ok(&[
            "ps",
            "-a",
            "-s",
            "--filter",
            "name=writer",
            "--format",
            "{{.Size}}",
        ]);
        assert!(size.contains("(virtual "), "{}: {size}", t.name());
    }
    same(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.Driver}} {{.Mode}} {{.RW}}{{end}} {{json .HostConfig.Binds}}",
        "writer",
    ]);
    // Anonymous volumes: made for `-v /path`, gone with `rm -v`.
    same(&[
        "run",
        "--name",
        "anon",
        "--network",
        "none",
        "-v",
        "/etc",
        "busybox",
        "true",
    ]);
    same(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}} {{.Driver}} {{.RW}}{{end}} {{json .HostConfig.Binds}}",
        "anon",
    ]);
    for t in tools {
        assert_eq!(
            t.ok(&["volume", "ls", "-q"]).lines().count(),
            2,
            "{}",
            t.name()
        );
        t.ok(&["rm", "-v", "anon"]);
        assert_eq!(t.ok(&["volume", "ls", "-q"]), "vol1\n", "{}", t.name());
        t.ok(&["rm", "writer"]);
    }
    same(&["volume", "rm", "nope"]);
    same(&["volume", "prune", "-f"]);
    same(&["volume", "ls"]);
}

#[test]
fn pause_freezes_and_refuses_what_docker_refuses() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    // Ids in messages differ: compare with each tool's own id put back as ID.
    let same = |args: &[&str]| {
        let (d, l) = (docker.run(args), env.run(args));
        let id = |t: &dyn Tool| t.ok(&["inspect", "-f", "{{.Id}}", "pz"]).trim().to_string();
        let (did, lid) = (id(&docker), id(&env));
        let clean = |o: &Output, id: &str| {
            (
                text(&o.stdout).replace(id, "ID"),
                text(&o.stderr)
                    .replace(id, "ID")
                    .replace("Error response from daemon: ", "")
                    .replace("lb: ", ""),
            )
        };
        assert_eq!(
            l.status.code(),
            d.status.code(),
            "{args:?}: {}",
            text(&l.stderr)
        );
        assert_eq!(clean(&l, &lid), clean(&d, &did), "{args:?}");
    };
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "pz",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]);
    }
    let state = "{{.State.Status}} {{.State.Running}} {{.State.Paused}}";
    same(&["pause", "pz"]);
    same(&["inspect", "-f", state, "pz"]);
    for t in tools {
        let ps = t.ok(&["ps", "--filter", "name=pz", "--format", "{{.Status}}"]);
        assert!(ps.trim_end().ends_with("(Paused)"), "{}: {ps}", t.name());
    }
    same(&["pause", "pz"]);
    same(&["exec", "pz", "true"]);
    same(&["rm", "pz"]);
    same(&["unpause", "pz"]);
    same(&["inspect", "-f", state, "pz"]);
    same(&["unpause", "pz"]);
    // A paused container can be killed.
    same(&["pause", "pz"]);
    same(&["kill", "pz"]);
    for t in tools {
        t.ok(&["wait", "pz"]);
    }
    same(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}} {{.State.Paused}}",
        "pz",
    ]);
    same(&["pause", "pz"]);
}

/// Polls `tool`'s `inspect -f TEMPLATE NAME` until it says `want` (10 s at most).
fn inspect_until(t: &dyn Tool, name: &str, template: &str, want: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = t.ok(&["inspect", "-f", template, name]);
        if got.trim() == want {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{}: {name} {template}: {got:?}, want {want:?}",
            t.name()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn restart_policies_bring_back_give_up_and_respect_a_stop_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        let run = |args: &[&str]| {
            let mut all = vec!["run", "-d", "--network", "none"];
            all.extend_from_slice(args);
            t.ok(&all);
        };
        run(&[
            "--name",
            "back",
            "--restart",
            "always",
            "busybox",
            "sleep",
            "100",
        ]);
        run(&[
            "--name",
            "giveup",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ]);
        run(&[
            "--name",
            "fine",
            "--restart",
            "on-failure",
            "busybox",
            "true",
        ]);
        // Refused as docker refuses it.
        let out = t.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
        assert_ne!(out.status.code(), Some(0), "{}", t.name());
        assert!(
            text(&out.stderr).contains("Conflicting options: --restart and --rm"),
            "{}: {}",
            t.name(),
            text(&out.stderr)
        );
    }
    for t in tools {
        // Killed from the host, not by the user: started again.
        let pid = t.ok(&["inspect", "-f", "{{.State.Pid}}", "back"]);
        let pid: i32 = pid.trim().parse().unwrap();
        // SAFETY: a signal to the container's process, found by its inspect.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        inspect_until(
            t,
            "back",
            "{{.State.Status}} {{.RestartCount}}",
            "running 1",
        );
        // on-failure:2 gives up after two restarts; a clean exit is not restarted.
        inspect_until(
            t,
            "giveup",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
            "exited 2 1",
        );
        inspect_until(
            t,
            "fine",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
            "exited 0 0",
        );
        // A stop the user asked for stays.
        t.ok(&["stop", "-t", "1", "back"]);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        inspect_until(t, "back", "{{.State.Status}}", "exited");
    }
    let tpl = "{{json .HostConfig.RestartPolicy}} {{.RestartCount}}";
    for name in ["back", "giveup", "fine"] {
        assert_eq!(
            env.ok(&["inspect", "-f", tpl, name]),
            docker.ok(&["inspect", "-f", tpl, name]),
            "{name}"
        );
    }
    // `restart` starts a stopped one again.
    for t in tools {
        assert_eq!(t.ok(&["restart", "-t", "1", "back"]), "back\n");
        inspect_until(t, "back", "{{.State.Status}}", "running");
        t.ok(&["rm", "-f", "back", "giveup", "fine"]);
    }
}

#[test]
fn rename_and_port_answer_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        for name in ["ra1", "rb1"] {
            t.ok(&[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "none",
                "busybox",
                "sleep",
                "100",
            ]);
        }
    }
    // Refusals: taken, invalid, missing; each with docker's status and last line.
    for args in [
        &["rename", "ra1", "rb1"][..],
        &["rename", "ra1", "x"],
        &["rename", "nope", "zz"],
    ] {
        let (d, l) = (docker.run(args), env.run(args));
        assert_eq!(l.status.code(), d.status.code(), "{args:?}");
        let last = |o: &Output| text(&o.stderr).lines().last().unwrap_or("").to_string();
        assert_eq!(last(&l), last(&d), "{args:?}");
    }
    for t in tools {
        assert_eq!(t.ok(&["rename", "ra1", "ra2"]), "", "{}", t.name());
        let names = t.ok(&["ps", "--format", "{{.Names}}"]);
        assert!(
            names.contains("ra2") && !names.contains("ra1"),
            "{}: {names}",
            t.name()
        );
        t.ok(&["rm", "-f", "ra2", "rb1"]);
    }
    // Published ports (lb's bridge; the test's dockerd has none).
    env.ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sleep",
        "100",
    ]);
    let all = env.ok(&["port", "pub"]);
    let host = all
        .strip_prefix("80/tcp -> ")
        .unwrap_or_else(|| panic!("{all}"))
        .trim()
        .to_string();
    assert!(host.starts_with("127.0.0.1:"), "{all}");
    assert_eq!(env.ok(&["port", "pub", "80"]).trim(), host);
    let out = env.run(&["port", "pub", "81"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: No public port '81/tcp' published for pub\n"
    );
    env.ok(&["rm", "-f", "pub"]);
}

#[test]
fn create_makes_a_container_that_start_runs() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        let id = t.ok(&[
            "create",
            "--name",
            "made",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo hi; sleep 100",
        ]);
        assert_eq!(id.trim().len(), 64, "{}: {id}", t.name());
    }
    let tpl = "{{.State.Status}} {{.State.Running}} {{.State.Pid}} {{.Path}} {{json .Args}}";
    assert_eq!(
        env.ok(&["inspect", "-f", tpl, "made"]),
        docker.ok(&["inspect", "-f", tpl, "made"])
    );
    for t in tools {
        assert_eq!(t.ok(&["start", "made"]), "made\n", "{}", t.name());
        inspect_until(t, "made", "{{.State.Status}}", "running");
        inspect_until(t, "made", "{{len .Id}}", "64");
        t.ok(&["rm", "-f", "made"]);
    }
    // On lb's bridge: the address comes with the start, as docker's.
    env.ok(&["create", "--name", "bridged", "busybox", "sleep", "100"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "bridged"]),
        "\n"
    );
    env.ok(&["start", "bridged"]);
    let ip = env.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "bridged"]);
    assert!(ip.trim().parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    env.ok(&["rm", "-f", "bridged"]);
}

#[test]
fn healthchecks_go_starting_unhealthy_healthy_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "hc",
            "--network",
            "none",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            "busybox",
            "sleep",
            "100",
        ]);
    }
    for t in tools {
        let ps = t.ok(&["ps", "--format", "{{.Status}}"]);
        assert!(ps.contains("(health: starting)"), "{}: {ps}", t.name());
    }
    let tpl = "{{.State.Health.Status}} {{.State.Health.FailingStreak}}";
    for t in tools {
        inspect_until(t, "hc", "{{.State.Health.Status}}", "unhealthy");
        let streak = t.ok(&["inspect", "-f", "{{.State.Health.FailingStreak}}", "hc"]);
        assert!(
            streak.trim().parse::<u32>().unwrap() >= 2,
            "{}: {streak}",
            t.name()
        );
        let ps = t.ok(&["ps", "--format", "{{.Status}}"]);
        assert!(ps.trim_end().ends_with("(unhealthy)"), "{}: {ps}", t.name());
        t.ok(&["exec", "hc", "touch", "/tmp/ok"]);
        inspect_until(t, "hc", tpl, "healthy 0");
    }
    let config = "{{json .Config.Healthcheck.Test}} {{json .Config.Healthcheck.Interval}} {{.Config.Healthcheck.Retries}}";
    assert_eq!(
        env.ok(&["inspect", "-f", config, "hc"]),
        docker.ok(&["inspect", "-f", config, "hc"])
    );
    let last = "{{with index .State.Health.Log 0}}{{.ExitCode}}{{end}}";
    assert_eq!(
        env.ok(&["inspect", "-f", last, "hc"]),
        docker.ok(&["inspect", "-f", last, "hc"])
    );
    for t in tools {
        t.ok(&["rm", "-f", "hc"]);
    }
}

#[test]
fn volumes_from_shares_volumes_and_binds_with_their_modes_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/hosttmp:ro", host.path().display());
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "vsrc",
            "--network",
            "none",
            "-v",
            "vf1:/data",
            "-v",
            &bind,
            "busybox",
            "sleep",
            "100",
        ]);
    }
    let same = |args: &[&str]| {
        let (d, l) = (docker.run(args), env.run(args));
        assert_eq!(
            l.status.code(),
            d.status.code(),
            "{args:?}: {}",
            text(&l.stderr)
        );
        assert_eq!(text(&l.stdout), text(&d.stdout), "{args:?}");
        assert_eq!(text(&l.stderr), text(&d.stderr), "{args:?}");
    };
    // The volume writable, the bind read-only as it is there.
    same(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "vsrc",
        "busybox",
        "sh",
        "-c",
        "touch /data/x && echo ok; touch /hosttmp/y 2>/dev/null || echo ro",
    ]);
    // `:ro` makes everything read-only.
    same(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "vsrc:ro",
        "busybox",
        "sh",
        "-c",
        "touch /data/z 2>/dev/null || echo ro; ls /data",
    ]);
    same(&[
        "run",
        "--name",
        "vto",
        "--network",
        "none",
        "--volumes-from",
        "vsrc",
        "busybox",
        "true",
    ]);
    // Mounts in any order (docker's is its map's).
    let mounts = |t: &dyn Tool| {
        let out = t.ok(&[
            "inspect", "-f",
            "{{json .HostConfig.VolumesFrom}}{{range .Mounts}}\n{{.Type}}:{{.Destination}}:{{.RW}}{{end}}",
            "vto",
        ]);
        let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(mounts(&env), mounts(&docker));
    for t in tools {
        let out = t.run(&["run", "--rm", "--volumes-from", "nope", "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "{}", t.name());
        t.ok(&["rm", "-f", "vsrc", "vto"]);
        t.ok(&["volume", "rm", "vf1"]);
    }
}
