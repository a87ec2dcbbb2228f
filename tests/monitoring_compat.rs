//! `lb top` and `lb stats` against docker 20.10's (a dockerd of the test's own): the same
//! containers shown alike (titles, the container's processes and nothing else, stats'
//! columns, units and limits, `--format` fields), refusals and exit codes alike.

mod common;
use common::docker::{Tool, both};
use common::*;

#[test]
fn top_and_stats_show_what_docker_shows() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "mon",
            "--network",
            "none",
            "--memory",
            "64m",
            "busybox",
            "sh",
            "-c",
            "sleep 1000 & exec sleep 999",
        ]);
        t.ok(&["create", "--name", "idle", "busybox", "true"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));

    // top: the titles and the commands of the container's processes, nothing of lb's.
    for args in [
        &["top", "mon"][..],
        &["top", "mon", "-o", "pid,comm,args"][..],
    ] {
        let shown: Vec<Vec<Vec<String>>> = tools.iter().map(|t| cells(&t.ok(args))).collect();
        assert_eq!(shown[0][0], shown[1][0], "{args:?} titles");
        let last = |rows: &[Vec<String>]| {
            let mut c: Vec<String> = rows[1..]
                .iter()
                .map(|r| r.last().unwrap().clone())
                .collect();
            c.sort();
            c
        };
        assert_eq!(last(&shown[0]), last(&shown[1]), "{args:?} processes");
        assert_eq!(last(&shown[1]), ["sleep 1000", "sleep 999"]);
    }
    // Refusals: a stopped container, one that is not there.
    for args in [&["top", "idle"][..], &["top", "nosuch"][..]] {
        let codes: Vec<_> = tools.iter().map(|t| t.run(args).status.code()).collect();
        assert_eq!(codes, [Some(1), Some(1)], "{args:?}");
    }
    let o = env.run(&["top", "idle"]);
    assert!(
        text(&o.stderr).contains("is not running"),
        "{}",
        text(&o.stderr)
    );

    // stats: the header, and per container what does not move between two readings.
    let stats: Vec<Vec<Vec<String>>> = tools
        .iter()
        .map(|t| cells(&t.ok(&["stats", "--no-stream", "mon", "idle"])))
        .collect();
    assert_eq!(stats[0][0], stats[1][0], "the header");
    for (d, l) in stats[0][1..].iter().zip(&stats[1][1..]) {
        assert_eq!(d[1], l[1], "NAME");
        // MEM USAGE / LIMIT: the limit; NET I/O; PIDS.
        assert_eq!(
            d[3].split(" / ").nth(1),
            l[3].split(" / ").nth(1),
            "{d:?} {l:?}"
        );
        assert_eq!(d[5], l[5], "NET I/O");
        assert_eq!(d[7], l[7], "PIDS");
    }
    assert_eq!(stats[1][1][7], "2");
    assert_eq!(
        stats[1][2][2..],
        ["0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0"]
    );
    let fmt = "{{.Container}} {{.Name}} {{.PIDs}} {{json .}}";
    let lines: Vec<String> = tools
        .iter()
        .map(|t| t.ok(&["stats", "--no-stream", "--format", fmt, "mon"]))
        .collect();
    let head = |s: &str| s.split(" {").next().unwrap().to_string();
    assert_eq!(head(&lines[0]), head(&lines[1]));
    let keys = |s: &str| {
        let v: serde_json::Value = serde_json::from_str(&s[s.find('{').unwrap()..]).unwrap();
        v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(keys(&lines[0]), keys(&lines[1]));
    let codes: Vec<_> = tools
        .iter()
        .map(|t| t.run(&["stats", "--no-stream", "nosuch"]).status.code())
        .collect();
    assert_eq!(codes, [Some(1), Some(1)]);
    for t in tools {
        t.ok(&["rm", "-f", "mon", "idle"]);
    }
}

/// The events a lifecycle makes, as docker's: the same types, actions and attributes in
/// the same order (network events aside: lb records none for `--network none`).
#[test]
fn events_tell_what_docker_tells() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    let work = tempfile::tempdir().unwrap();
    let base = lb_testkit::busybox_rootfs(work.path()).unwrap();
    let base = base.to_str().unwrap();
    // Past the second the images were imported in (`--since` counts whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for t in tools {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        t.ok(&[
            "run",
            "-d",
            "--name",
            "ev",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]);
        t.ok(&["exec", "ev", "true"]);
        t.ok(&["pause", "ev"]);
        t.ok(&["unpause", "ev"]);
        t.ok(&["rename", "ev", "ev2"]);
        t.ok(&["kill", "-s", "USR1", "ev2"]);
        t.ok(&["stop", "-t", "1", "ev2"]);
        t.ok(&["rm", "ev2"]);
        t.ok(&["volume", "create", "vv"]);
        t.ok(&["volume", "rm", "vv"]);
        t.ok(&["tag", "busybox", "busybox:x"]);
        t.ok(&["rmi", "busybox:x"]);
        // Images made, written, read and deleted.
        let saved = work.path().join(format!("{}.tar", t.name()));
        let saved = saved.to_str().unwrap();
        t.ok(&["import", base, "evt:one"]);
        t.ok(&["tag", "evt:one", "evt:two"]);
        t.ok(&["save", "-o", saved, "evt:one"]);
        t.ok(&["rmi", "evt:one", "evt:two"]);
        t.ok(&["load", "-i", saved]);
        t.ok(&["rmi", "evt:one"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let until = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let fmt = "{{.Type}}|{{.Action}}|{{json .Actor.Attributes}}";
        let out = t.ok(&[
            "events", "--since", &start, "--until", &until, "--format", fmt,
        ]);
        let lines: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with("network|"))
            .map(|l| {
                let mut parts = l.splitn(3, '|');
                let (kind, action) = (parts.next().unwrap(), parts.next().unwrap());
                let attrs: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(parts.next().unwrap()).unwrap();
                // Exec ids are random; image ids differ between the two stores.
                let attrs: Vec<String> = attrs
                    .iter()
                    .filter(|(k, _)| *k != "execID")
                    .map(|(k, v)| {
                        let v = v.as_str().unwrap();
                        let v = if v.starts_with("sha256:") { "ID" } else { v };
                        format!("{k}={v}")
                    })
                    .collect();
                format!("{kind} {action} ({})", attrs.join(", "))
            })
            .collect();
        seen.push(lines);
    }
    assert_eq!(seen[0], seen[1], "docker's events, then lb's");
    // Filters and times as docker takes or refuses them.
    for (args, code) in [
        (
            &[
                "events",
                "-f",
                "nonsense=1",
                "-f",
                "type=container",
                "--since",
                "1m",
                "--until",
                "0s",
            ][..],
            0,
        ),
        (
            &["events", "--filter", "nonsense", "--until", "0s"][..],
            125,
        ),
        (&["events", "--since", "xyz", "--until", "0s"][..], 1),
        (
            &[
                "events",
                "--filter",
                "event=destroy",
                "--since",
                "1m",
                "--until",
                "0s",
            ][..],
            0,
        ),
    ] {
        let outs: Vec<_> = tools
            .iter()
            .map(|t| {
                let o = t.run(args);
                (o.status.code(), text(&o.stdout).lines().count())
            })
            .collect();
        assert_eq!(outs[0], outs[1], "{args:?}");
        assert_eq!(outs[0].0, Some(code), "{args:?}");
    }
}

/// `update` as docker's: what it takes, prints and refuses, and what inspect shows after;
/// lb's container gets the new limit in its cgroup.
#[test]
fn update_changes_what_docker_changes() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "upd",
            "--network",
            "none",
            "busybox",
            "sleep",
            "300",
        ]);
        t.ok(&[
            "run",
            "-d",
            "--rm",
            "--name",
            "upd-rm",
            "--network",
            "none",
            "busybox",
            "sleep",
            "300",
        ]);
    }
    let cases: &[&[&str]] = &[
        &["update", "--cpus", "0.5", "upd"],
        &["update", "--pids-limit", "20", "upd"],
        &["update", "--restart", "on-failure:3", "upd"],
        &["update", "--cpus", "0.5", "--cpu-period", "1000", "upd"],
        &["update", "-m", "1k", "upd"],
        &["update", "upd"],
        &["update", "--cpus", "1", "nosuch"],
        &["update", "--restart", "always", "upd-rm"],
    ];
    for args in cases {
        let outs: Vec<_> = tools
            .iter()
            .map(|t| {
                let o = t.run(args);
                (o.status.code(), text(&o.stdout))
            })
            .collect();
        assert_eq!(outs[0], outs[1], "{args:?}");
    }
    let fmt = "{{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    let shown: Vec<String> = tools
        .iter()
        .map(|t| t.ok(&["inspect", "-f", fmt, "upd"]))
        .collect();
    assert_eq!(shown[0], shown[1]);
    assert_eq!(shown[1], "500000000 20 on-failure 3\n");
    // In lb's container, the limit is the cgroup's.
    let max = env.ok(&[
        "exec",
        "upd",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(max, "20\n");
    for t in tools {
        t.ok(&["rm", "-f", "upd", "upd-rm"]);
    }
}

/// `container prune --filter until=`: only what was made before the time goes, as docker.
#[test]
fn prune_until_removes_only_older_containers() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&["create", "--name", "old1", "busybox", "true"]);
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for t in tools {
        // Made within the last hour: kept.
        assert_eq!(
            t.ok(&["container", "prune", "-f", "--filter", "until=1h"]),
            "Total reclaimed space: 0B\n",
            "{}",
            t.name()
        );
        t.ok(&["create", "--name", "new1", "busybox", "true"]);
        // Made more than a second ago: old1 goes, new1 stays.
        let out = t.ok(&["container", "prune", "-f", "--filter", "until=1s"]);
        assert!(
            out.starts_with("Deleted Containers:\n"),
            "{}: {out}",
            t.name()
        );
        assert_eq!(out.lines().count(), 4, "{}: {out}", t.name());
        assert_eq!(
            t.ok(&["ps", "-a", "--format", "{{.Names}}"]),
            "new1\n",
            "{}",
            t.name()
        );
        let bad = t.run(&["container", "prune", "-f", "--filter", "until=xyz"]);
        assert_eq!(bad.status.code(), Some(1), "{}", t.name());
        t.ok(&["rm", "new1"]);
    }
}
