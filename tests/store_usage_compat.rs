//! The store-wide commands against docker 20.10's (a dockerd of the test's own): `system
//! df` (summary, `-v`'s four tables, `--format`), prunes with label filters, labels on
//! networks and volumes, and `HostConfig.MemorySwap` as `run`, `create` and `update` set
//! it. Sizes are compared only where both stores hold the same bytes (an image's differ:
//! docker counts the unpacked files, lb the layer as stored).

mod common;
use common::docker::{Tool, both};
use common::*;

/// `text` cut into `-v`'s sections: each title line with the table lines after it.
fn sections(text: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let mut out: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for block in text.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.ends_with(':') || block.starts_with("Build cache usage:") {
            out.push((block.to_string(), Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1 = cells(block);
        }
    }
    out
}

#[test]
fn system_df_shows_what_docker_shows() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&["volume", "create", "--label", "a=1", "dfvol"]);
        t.ok(&["volume", "create", "spare"]);
        t.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "dfvol:/data",
            "busybox",
            "sh",
            "-c",
            "head -c 12345 /dev/zero > /data/f",
        ]);
        t.ok(&[
            "run",
            "-d",
            "--name",
            "dfrun",
            "--network",
            "none",
            "-v",
            "dfvol:/data",
            "busybox",
            "sleep",
            "300",
        ]);
        // A second apart: lb's records order containers by the second they were made.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        t.ok(&["create", "--name", "dfidle", "busybox", "true"]);
        t.ok(&["tag", "busybox", "other:2"]);
    }
    let outs: Vec<String> = tools.iter().map(|t| t.ok(&["system", "df"])).collect();
    let tables: Vec<_> = outs.iter().map(|o| cells(o)).collect();
    assert_eq!(
        tables[0][0], tables[1][0],
        "the header:\n{}\n{}",
        outs[0], outs[1]
    );
    assert_eq!(tables[1].len(), 5, "{}", outs[1]);
    for (d, l) in tables[0][1..].iter().zip(&tables[1][1..]) {
        // TYPE, TOTAL, ACTIVE.
        assert_eq!(d[..3], l[..3], "{d:?} {l:?}");
    }
    assert_eq!(tables[1][1][..3], ["Images", "1", "1"]);
    assert_eq!(tables[1][2][..3], ["Containers", "2", "1"]);
    assert_eq!(tables[1][3][..3], ["Local Volumes", "2", "1"]);
    // The same files in volumes, and no build cache: the same bytes.
    assert_eq!(tables[0][3][3..], tables[1][3][3..], "volumes' sizes");
    assert_eq!(tables[0][4], tables[1][4], "build cache");

    // -v: the same sections, headers, and the cells both stores agree on.
    let outs: Vec<String> = tools
        .iter()
        .map(|t| t.ok(&["system", "df", "-v"]))
        .collect();
    let secs: Vec<_> = outs.iter().map(|o| sections(o)).collect();
    let titles = |s: &[(String, Vec<Vec<String>>)]| -> Vec<String> {
        s.iter().map(|(t, _)| t.clone()).collect()
    };
    assert_eq!(
        titles(&secs[0]),
        titles(&secs[1]),
        "{}\n{}",
        outs[0],
        outs[1]
    );
    assert_eq!(
        titles(&secs[1]),
        [
            "Images space usage:",
            "Containers space usage:",
            "Local Volumes space usage:",
            "Build cache usage: 0B"
        ]
    );
    for (d, l) in secs[0].iter().zip(&secs[1]) {
        assert_eq!(d.1[0], l.1[0], "{} header", d.0);
        assert_eq!(d.1.len(), l.1.len(), "{} rows", d.0);
    }
    // Images: REPOSITORY, TAG (the first name), CONTAINERS.
    let pick = |rows: &[Vec<String>], cols: &[usize]| -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = rows[1..]
            .iter()
            .map(|r| cols.iter().map(|c| r[*c].clone()).collect())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        pick(&secs[0][0].1, &[0, 1, 7]),
        pick(&secs[1][0].1, &[0, 1, 7])
    );
    assert_eq!(
        pick(&secs[1][0].1, &[0, 1, 7]),
        [["busybox", "latest", "2"]]
    );
    // Containers: IMAGE, COMMAND, LOCAL VOLUMES, NAMES.
    let cols = [1, 2, 3, 7];
    assert_eq!(pick(&secs[0][1].1, &cols), pick(&secs[1][1].1, &cols));
    // Volumes: all of it.
    assert_eq!(
        pick(&secs[0][2].1, &[0, 1, 2]),
        pick(&secs[1][2].1, &[0, 1, 2])
    );
    assert_eq!(
        pick(&secs[1][2].1, &[0, 1, 2]),
        [["dfvol", "1", "12.35kB"], ["spare", "0", "0B"]]
    );

    // --format: the summary's fields, a table of them, JSON; -v's lists.
    let cases: &[&[&str]] = &[
        &[
            "system",
            "df",
            "--format",
            "{{.Type}}: {{.TotalCount}} {{.Active}}",
        ],
        &["system", "df", "--format", "table {{.Type}}\t{{.Active}}"],
        &[
            "system",
            "df",
            "-v",
            "--format",
            "{{range .Volumes}}{{.Name}} {{.Links}} {{.Size}};{{end}}",
        ],
    ];
    // docker lists -v's volumes in no fixed order (it was "spare" first once, "dfvol" first
    // else): the `;`-ended items are compared as a set.
    let items = |out: String| {
        let mut items: Vec<String> = out.split(';').map(str::to_string).collect();
        items.sort();
        items
    };
    for args in cases {
        let outs: Vec<Vec<String>> = tools.iter().map(|t| items(t.ok(args))).collect();
        assert_eq!(outs[0], outs[1], "{args:?}");
    }
    let fmt = "{{range .Containers}}{{.Names}} {{.LocalVolumes}} {{.State}} {{.Size}};{{end}}";
    let outs: Vec<String> = tools
        .iter()
        .map(|t| t.ok(&["system", "df", "-v", "--format", fmt]))
        .collect();
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[1], "dfidle 0 created 0B;dfrun 1 running 0B;");
    // raw: every item in docker's words; ids, times and the image's size masked.
    let outs: Vec<String> = tools
        .iter()
        .map(|t| {
            t.ok(&["system", "df", "-v", "--format", "raw"])
                .lines()
                .map(|l| match l.split_once(": ") {
                    Some((k, _))
                        if matches!(
                            k,
                            "image_id" | "container_id" | "created_at" | "virtual_size" | "status"
                        ) =>
                    {
                        k.to_string()
                    }
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    // The raw items are blank-line separated; volumes again in no fixed order.
    let blocks = |out: &String| {
        let mut b: Vec<String> = out.split("\n\n").map(|b| b.trim().to_string()).collect();
        b.sort();
        b
    };
    assert_eq!(blocks(&outs[0]), blocks(&outs[1]));
    assert!(
        outs[1].contains("type: Volume\nname: dfvol\ndriver: local\n"),
        "{}",
        outs[1]
    );
    let json: Vec<Vec<serde_json::Value>> = tools
        .iter()
        .map(|t| {
            t.ok(&["system", "df", "--format", "{{json .}}"])
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .collect();
    for (d, l) in json[0].iter().zip(&json[1]) {
        let keys =
            |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(d), keys(l));
        for k in ["Type", "TotalCount", "Active"] {
            assert_eq!(d[k], l[k], "{k}");
        }
    }
    for t in tools {
        t.ok(&["rm", "-f", "dfrun", "dfidle"]);
        t.ok(&["volume", "rm", "dfvol", "spare"]);
    }
}

/// Names `ps -a` lists, sorted.
fn containers(t: &dyn Tool) -> Vec<String> {
    let mut v: Vec<String> = t
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn prunes_take_label_filters_as_docker_does() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let work = tempfile::tempdir().unwrap();
    let base = lb_testkit::busybox_rootfs(work.path()).unwrap();
    let base = base.to_str().unwrap();
    for t in tools {
        t.ok(&[
            "create", "--name", "keep", "--label", "keep=yes", "busybox", "true",
        ]);
        t.ok(&[
            "create", "--name", "test", "--label", "env=test", "busybox", "true",
        ]);
        t.ok(&["create", "--name", "bare", "busybox", "true"]);
    }
    // label=KEY=VALUE: only that one; label!=KEY: what has no such label.
    for (filter, left) in [
        ("label=env=test", &["bare", "keep"][..]),
        ("label!=keep", &["keep"][..]),
    ] {
        let outs: Vec<String> = tools
            .iter()
            .map(|t| t.ok(&["container", "prune", "-f", "--filter", filter]))
            .collect();
        assert_eq!(outs[0].lines().count(), outs[1].lines().count(), "{filter}");
        for t in tools {
            assert_eq!(containers(t), left, "{} {filter}", t.name());
        }
    }

    // Networks: created with labels, shown by inspect, pruned by them.
    for t in tools {
        t.ok(&["network", "create", "--label", "a=1", "labelled"]);
        t.ok(&["network", "create", "plain"]);
    }
    let labels: Vec<serde_json::Value> = tools
        .iter()
        .map(|t| {
            let v: serde_json::Value =
                serde_json::from_str(&t.ok(&["network", "inspect", "labelled"])).unwrap();
            v[0]["Labels"].clone()
        })
        .collect();
    assert_eq!(labels[0], labels[1]);
    assert_eq!(labels[1], serde_json::json!({"a": "1"}));
    let outs: Vec<String> = tools
        .iter()
        .map(|t| t.ok(&["network", "prune", "-f", "--filter", "label=a=1"]))
        .collect();
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[1], "Deleted Networks:\nlabelled\n\n");
    for t in tools {
        t.ok(&["network", "rm", "plain"]);
    }

    // Volumes: labels in inspect and in ls's filter; prune by label!.
    for t in tools {
        t.ok(&["volume", "create", "--label", "a=1", "--label", "b", "va"]);
        t.ok(&["volume", "create", "vb"]);
    }
    let cases: &[&[&str]] = &[
        &["volume", "inspect", "-f", "{{json .Labels}}", "va"],
        &["volume", "ls", "-q", "--filter", "label=a"],
        &["volume", "ls", "-q", "--filter", "label=a=2"],
        &["volume", "ls", "-q", "--filter", "dangling=true"],
        &["volume", "prune", "-f", "--filter", "label!=a"],
    ];
    // docker lists -v's volumes in no fixed order (it was "spare" first once, "dfvol" first
    // else): the `;`-ended items are compared as a set.
    let items = |out: String| {
        let mut items: Vec<String> = out.split(';').map(str::to_string).collect();
        items.sort();
        items
    };
    for args in cases {
        let outs: Vec<Vec<String>> = tools.iter().map(|t| items(t.ok(args))).collect();
        assert_eq!(outs[0], outs[1], "{args:?}");
    }
    assert_eq!(
        env.ok(&["volume", "ls", "-q"]),
        "va\n",
        "volume prune --filter label!=a"
    );

    // Images: `-a` untags the unused ones whose config has the label.
    for t in tools {
        let tag = |name: &str, label: &str| {
            t.ok(&["import", "--change", &format!("LABEL {label}"), base, name]);
        };
        tag("labelled:1", "stage=test");
        tag("other:1", "stage=prod");
    }
    let untagged: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            t.ok(&["image", "prune", "-a", "-f", "--filter", "label=stage=test"])
                .lines()
                .filter(|l| l.starts_with("untagged:"))
                .map(str::to_string)
                .collect()
        })
        .collect();
    assert_eq!(untagged[0], untagged[1]);
    assert_eq!(untagged[1], ["untagged: labelled:1"]);

    // Accepted alike: the build cache's label filters (it has none), dangling= for images.
    for args in [
        &["builder", "prune", "-f", "--filter", "label=k"][..],
        &["builder", "prune", "-f", "--filter", "label!=k"][..],
        &[
            "image",
            "prune",
            "-f",
            "--filter",
            "dangling=false",
            "--filter",
            "label=none",
        ][..],
    ] {
        let outs: Vec<_> = tools.iter().map(|t| t.ok(args)).collect();
        assert_eq!(outs[0], outs[1], "{args:?}");
    }
    // A filter without `=`: the usage error, 125.
    let outs: Vec<_> = tools
        .iter()
        .map(|t| t.run(&["container", "prune", "-f", "--filter", "xyz"]))
        .collect();
    for o in &outs {
        assert_eq!(o.status.code(), Some(125));
        assert!(
            text(&o.stderr).starts_with(
                "invalid argument \"xyz\" for \"--filter\" flag: bad format of filter (expected name=value)\n"
            ),
            "{}",
            text(&o.stderr)
        );
    }

    // Refusals: a key the prune does not take, `until` with volumes.
    for args in [
        &["container", "prune", "-f", "--filter", "xyz=1"][..],
        &["volume", "prune", "-f", "--filter", "until=1h"][..],
        &["network", "prune", "-f", "--filter", "dangling=true"][..],
    ] {
        let outs: Vec<_> = tools.iter().map(|t| t.run(args)).collect();
        for o in &outs {
            assert_eq!(o.status.code(), Some(1), "{args:?}");
        }
        let key = args[4].split('=').next().unwrap();
        for o in &outs {
            let err = text(&o.stderr);
            assert!(
                err.contains(&format!("Invalid filter '{key}'")),
                "{args:?}: {err}"
            );
        }
    }
    let outs: Vec<_> = tools
        .iter()
        .map(|t| t.run(&["system", "prune", "-f", "--volumes", "--filter", "until=1h"]))
        .collect();
    for o in &outs {
        assert_ne!(o.status.code(), Some(0));
        assert!(
            text(&o.stderr).contains(r#"The "until" filter is not supported with "--volumes""#),
            "{}",
            text(&o.stderr)
        );
    }
    // Asked (and declined: no input), system prune says its filters as docker does.
    let args = [
        "system",
        "prune",
        "--filter",
        "until=1h",
        "--filter",
        "label=k",
        "--filter",
        "label!=b=2",
    ];
    let outs: Vec<_> = tools.iter().map(|t| t.run(&args)).collect();
    assert_eq!(outs[0].status.code(), outs[1].status.code());
    assert_eq!(text(&outs[0].stdout), text(&outs[1].stdout));
    assert!(
        text(&outs[1].stdout)
            .contains("  Items to be pruned will be filtered with:\n  - label!=b=2\n"),
        "{}",
        text(&outs[1].stdout)
    );
    for t in tools {
        t.ok(&["rm", "keep"]);
    }
}

#[test]
fn memory_swap_in_inspect_as_docker_sets_it() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&["create", "--name", "nolimit", "busybox", "true"]);
        t.ok(&[
            "create", "--name", "mem", "--memory", "64m", "busybox", "true",
        ]);
        t.ok(&[
            "create",
            "--name",
            "swap",
            "--memory",
            "64m",
            "--memory-swap",
            "100m",
            "busybox",
            "true",
        ]);
        t.ok(&[
            "create",
            "--name",
            "unlimited",
            "--memory",
            "64m",
            "--memory-swap",
            "-1",
            "busybox",
            "true",
        ]);
    }
    let fmt = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}";
    let show = |t: &dyn Tool, name: &str| t.ok(&["inspect", "-f", fmt, name]);
    for (name, want) in [
        ("nolimit", "0 0\n"),
        ("mem", "67108864 134217728\n"),
        ("swap", "67108864 104857600\n"),
        ("unlimited", "67108864 -1\n"),
    ] {
        for t in tools {
            assert_eq!(show(t, name), want, "{} {name}", t.name());
        }
    }
    // A swap limit below the memory, or without one: refused alike.
    for args in [
        &[
            "create",
            "--memory",
            "64m",
            "--memory-swap",
            "32m",
            "busybox",
            "true",
        ][..],
        &["create", "--memory-swap", "100m", "busybox", "true"][..],
    ] {
        let codes: Vec<_> = tools.iter().map(|t| t.run(args).status.code()).collect();
        assert_eq!(codes[0], codes[1], "{args:?}");
        assert_ne!(codes[1], Some(0), "{args:?}");
    }
    for t in tools {
        t.ok(&["update", "--memory-swap", "200m", "mem"]);
        t.ok(&["update", "--memory", "32m", "swap"]);
    }
    // A memory limit above the swap limit kept: refused, as for a container with none.
    for args in [
        &["update", "--memory", "300m", "mem"][..],
        &["update", "--memory", "32m", "nolimit"][..],
    ] {
        let codes: Vec<_> = tools.iter().map(|t| t.run(args).status.code()).collect();
        assert_eq!(codes, [Some(1), Some(1)], "{args:?}");
    }
    for name in ["mem", "swap"] {
        let shown: Vec<String> = tools.iter().map(|t| show(*t, name)).collect();
        assert_eq!(shown[0], shown[1], "{name}");
    }
    for t in tools {
        t.ok(&["rm", "nolimit", "mem", "swap", "unlimited"]);
    }
}

/// `ps --format`'s `.Mounts`, `.LocalVolumes` and `.Label "KEY"` as docker's (the mounts'
/// order is its map's, so compared as sets; an anonymous volume's name is random).
#[test]
fn ps_shows_mounts_and_labels_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    let host_dir = tempfile::tempdir().unwrap();
    let bind = format!("{}:/h", host_dir.path().display());
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "pm",
            "--label",
            "a=1",
            "-v",
            "averyveryverylongvolumename:/data",
            "-v",
            &bind,
            "-v",
            "/anon",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]);
        for trunc in [&[][..], &["--no-trunc"][..]] {
            let mut args = vec!["ps", "--filter", "name=pm"];
            args.extend_from_slice(trunc);
            args.extend_from_slice(&[
                "--format",
                "{{.Mounts}}|{{.LocalVolumes}}|{{.Label \"a\"}}|{{.Label \"zz\"}}",
            ]);
            let out = t.ok(&args);
            let (mounts, rest) = out.trim().split_once('|').unwrap();
            let mut mounts: Vec<String> = mounts
                .split(',')
                .map(|m| {
                    let hex = m.trim_end_matches('…');
                    if hex.len() >= 14 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        "ANON".to_string()
                    } else {
                        m.to_string()
                    }
                })
                .collect();
            mounts.sort();
            seen.push((mounts, rest.to_string()));
        }
        t.ok(&["rm", "-f", "-v", "pm"]);
        t.ok(&["volume", "rm", "averyveryverylongvolumename"]);
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[0].1, "2|1|");
}

/// `ps -n`, `-l` and the filters docker's daemon takes (exited, ancestor, volume, health,
/// before, since), and its refusals, as docker 20.10 shows them.
#[test]
fn ps_filters_and_last_as_docker() {
    let Some((env, docker)) = both() else { return };
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let mut seen = Vec::new();
    let host_dir = tempfile::tempdir().unwrap();
    let host = host_dir.path().to_str().unwrap();
    let bind = format!("{host}:/h");
    for t in tools {
        t.run(&[
            "run",
            "--name",
            "f1",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ]);
        t.ok(&[
            "run",
            "--name",
            "f2",
            "--network",
            "none",
            "-v",
            &bind,
            "busybox",
            "true",
        ]);
        t.ok(&[
            "run",
            "-d",
            "--name",
            "f3",
            "--network",
            "none",
            "busybox",
            "sleep",
            "100",
        ]);
        let names = "{{.Names}}";
        for args in [
            &["ps", "-a", "--filter", "exited=3"][..],
            &["ps", "--filter", "exited=0"],
            &["ps", "-n", "2"],
            &["ps", "-l"],
            &["ps", "-a", "--filter", "before=f3", "--filter", "since=f1"],
            &[
                "ps",
                "-a",
                "--filter",
                "ancestor=busybox",
                "--filter",
                &format!("volume={host}"),
            ],
            &["ps", "--filter", "health=none"],
            &[
                "ps",
                "-a",
                "--filter",
                "status=exited",
                "--filter",
                "status=running",
            ],
            &["ps", "--filter", "status=bogus"],
            &["ps", "-a", "--filter", "exited=abc"],
            &["ps", "--filter", "nonsense=1"],
            &["ps", "--filter", "nonsense"],
        ] {
            let mut args = args.to_vec();
            args.extend_from_slice(&["--format", names]);
            let o = t.run(&args);
            let mut out: Vec<String> = text(&o.stdout).lines().map(str::to_string).collect();
            // Several statuses: docker's order is its daemon's, so as a set.
            if args.contains(&"status=running") {
                out.sort();
            }
            let said = text(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("lb: ")
                .trim_start_matches("Error response from daemon: ")
                .replace("'lb ps --help'", "'docker ps --help'")
                .to_string();
            seen.push((args.join(" "), o.status.code(), out, said));
        }
        t.ok(&["rm", "-f", "f1", "f2", "f3"]);
    }
    let (d, l) = seen.split_at(seen.len() / 2);
    assert_eq!(d, l, "docker's, then lb's");
    assert_eq!(d[2].2, ["f3", "f2"]);
}
