//! `lb cp` against docker 20.10's (a dockerd of the test's own): the same copies both
//! ways, into and out of running and stopped containers, must give the same trees, the
//! same refusals and exit codes; a symlink to `/` planted in the container leads to the
//! container's root, never the host's. (The race of a link swapped in during a copy is
//! `container_files_cli.rs`'s.)

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::docker::{Docker, Tool, both};
use common::*;

/// The files of a container made for the copies: owners, a time, links, a hard link.
const FILES: &str = "mkdir -p /d/sub /root && echo hi > /d/a && echo s > /d/sub/b \
    && ln /d/a /d/sub/hard && ln -s / /root/escape && ln -s /etc/hostname /lnk \
    && ln -s sub /d/rel && chown 1234:5678 /d/a && touch -d \"2001-01-01 00:00:00\" /d/a";

/// A host tree as lines: path, type, mode, size, file times, link target.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = md.file_type();
        let target = if ft.is_symlink() {
            std::fs::read_link(&p).unwrap().display().to_string()
        } else {
            String::new()
        };
        // Fixed times (the image's, one set in the container) must agree; times of files
        // made during the test differ between the two containers.
        let mtime = if ft.is_dir() || md.mtime() > 1_700_000_000 {
            0
        } else {
            md.mtime()
        };
        out.push(format!(
            "{rel} {:o} {} {mtime} {target} {}:{}",
            md.mode(),
            if ft.is_dir() { 0 } else { md.size() },
            md.uid(),
            md.gid()
        ));
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// An error's text with the tool's own prefixes and directory taken out.
fn said(o: &Output, dir: &Path) -> String {
    text(&o.stderr)
        .trim()
        .trim_start_matches("lb: ")
        .trim_start_matches("Error: ")
        .trim_start_matches("Error response from daemon: ")
        .replace(&dir.display().to_string(), "DIR")
}

fn cmd_of(t: &dyn Tool, env: &Env, docker: &Docker) -> Command {
    if t.name() == "lb" {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
        c.arg("--root").arg(&env.root);
        c
    } else {
        let mut c = docker.cmd(&[]);
        c.stdin(Stdio::null());
        c
    }
}

#[test]
fn cp_copies_as_docker_copies() {
    let Some((env, docker)) = both() else { return };
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let tools: [&dyn Tool; 2] = [&docker, &env];
    for t in tools {
        t.ok(&[
            "run",
            "-d",
            "--name",
            "cpc",
            "--network",
            "none",
            "busybox",
            "sleep",
            "300",
        ]);
        t.ok(&["exec", "cpc", "sh", "-c", FILES]);
        let dir = work.path().join(t.name());
        std::fs::create_dir_all(dir.join("ex")).unwrap();
        std::fs::write(dir.join("f"), "host file\n").unwrap();
        std::os::unix::fs::chown(dir.join("f"), Some(1000), Some(1001)).unwrap();
        std::fs::create_dir_all(dir.join("hd/in")).unwrap();
        std::fs::write(dir.join("hd/in/x"), "x").unwrap();
    }

    // Out of the container, and into it, each tool in its own directory.
    let copies: &[&[&str]] = &[
        &["cpc:/d/a", "{}/a1"],
        &["cpc:/d", "{}/d1"],
        &["cpc:/d/.", "{}/d2"],
        &["cpc:/d/", "{}/ex"],
        &["cpc:/d/.", "{}/ex"],
        &["cpc:/d/a", "{}/ex/"],
        &["cpc:/lnk", "{}/l1"],
        &["-L", "cpc:/lnk", "{}/l2"],
        &["cpc:/root", "{}/r"],
        &["cpc:d/sub/b", "{}/rel"],
        // Through the container's link to `/`: the container's file, not the host's.
        &["cpc:/root/escape/etc/passwd", "{}/passwd"],
        &["{}/f", "cpc:/d/sub/newname"],
        &["-a", "{}/f", "cpc:/d/owned"],
        &["{}/hd", "cpc:/d/newdir"],
        &["{}/hd/.", "cpc:/d/sub"],
        &["{}/f", "cpc:/lnk"],
        &["{}/f", "cpc:/root/escape/tmp/planted"],
        &["{}/f", "cpc:/d/rel"],
        // Refused, with docker's words.
        &["cpc:/nonexist", "{}/x"],
        &["nosuch:/x", "{}/x"],
        &["cpc:/d", "{}/a1"],
        &["cpc:/d/a", "{}/nodir/x"],
        &["cpc:/d/a", "{}/newdir/"],
        &["cpc:/d/a", "{}/a1/"],
        &["{}/f", "cpc:/nonexist/x"],
        &["{}/f", "cpc:/d/a/x"],
        &["{}/hd", "cpc:/d/a"],
        &["{}/nonexist", "cpc:/d/"],
        &["{}/f", "cpc:/d/new/"],
        &["{}/f", "{}/g"],
        &["cpc:/x", "other:/y"],
        &["cpc:", "{}/x"],
    ];
    for args in copies {
        let mut outs = Vec::new();
        for t in tools {
            let dir = work.path().join(t.name());
            let d = dir.display().to_string();
            let args: Vec<String> = args.iter().map(|a| a.replace("{}", &d)).collect();
            let mut c = cmd_of(t, &env, &docker);
            let o = c.arg("cp").args(&args).output().unwrap();
            outs.push((o.status.code(), said(&o, &dir)));
        }
        // What docker's unpacker says in its own words, lb says in its own.
        if outs[0].1.starts_with("Error processing tar file") {
            assert_eq!(outs[0].0, outs[1].0, "cp {args:?}: {outs:?}");
            assert!(outs[1].1.contains("/etc/hostname"), "{outs:?}");
            continue;
        }
        assert_eq!(outs[0], outs[1], "cp {args:?}: docker, then lb");
    }
    let trees: Vec<_> = tools
        .iter()
        .map(|t| listing(&work.path().join(t.name())))
        .collect();
    assert_eq!(trees[0], trees[1], "the host trees, docker's then lb's");
    let find = "find / -xdev \\( -path /.dockerenv -o -path /proc -o -path /sys -o -path /dev -o -path /etc \\) -prune \
        -o -newer /bin/sh -exec ls -lnd {} \\; | sed 's/ [A-Z][a-z][a-z] [ 0-9:]* \\//|/' | sort";
    let inside: Vec<_> = tools
        .iter()
        .map(|t| t.ok(&["exec", "cpc", "sh", "-c", find]))
        .collect();
    assert_eq!(
        inside[0], inside[1],
        "the containers' trees, docker's then lb's"
    );
    assert!(inside[1].contains("|tmp/planted"), "{}", inside[1]);
    assert!(!Path::new("/tmp/planted").exists());

    // Tar streams on standard output: the same entries.
    for src in ["cpc:/d", "cpc:/d/.", "cpc:/lnk"] {
        let names: Vec<Vec<String>> = tools
            .iter()
            .map(|t| {
                let o = cmd_of(*t, &env, &docker)
                    .args(["cp", src, "-"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", text(&o.stderr));
                let mut ar = tar::Archive::new(&o.stdout[..]);
                let mut n: Vec<String> = ar
                    .entries()
                    .unwrap()
                    .map(|e| {
                        let e = e.unwrap();
                        let p = e.path().unwrap().display().to_string();
                        format!(
                            "{} {:?}",
                            p.trim_start_matches("./"),
                            e.header().entry_type()
                        )
                    })
                    .collect();
                n.sort();
                n
            })
            .collect();
        assert_eq!(names[0], names[1], "cp {src} -");
    }

    // A stopped container, both ways; and read-only places refused alike.
    for t in tools {
        t.ok(&["stop", "-t", "0", "cpc"]);
        t.ok(&["volume", "create", "cpv"]);
        t.ok(&[
            "create",
            "--name",
            "cpro",
            "--read-only",
            "--network",
            "none",
            "-v",
            "cpv:/vol",
            "-v",
            "/var/tmp:/hostro:ro",
            "busybox",
            "true",
        ]);
    }
    let stopped: &[&[&str]] = &[
        &["cpc:/d/a", "{}/stopped"],
        &["{}/f", "cpc:/d/while-stopped"],
        &["{}/f", "cpro:/x"],
        &["{}/f", "cpro:/vol/x"],
        &["{}/f", "cpro:/hostro/x"],
        &["cpro:/vol/x", "{}/fromvol"],
    ];
    for args in stopped {
        let mut outs = Vec::new();
        for t in tools {
            let dir = work.path().join(t.name());
            let d = dir.display().to_string();
            let args: Vec<String> = args.iter().map(|a| a.replace("{}", &d)).collect();
            let o = cmd_of(t, &env, &docker)
                .arg("cp")
                .args(&args)
                .output()
                .unwrap();
            outs.push((o.status.code(), said(&o, &dir)));
        }
        assert_eq!(outs[0], outs[1], "cp {args:?} (stopped): docker, then lb");
    }
    for t in tools {
        t.ok(&["start", "cpc"]);
        assert_eq!(
            t.ok(&["exec", "cpc", "cat", "/d/while-stopped"]),
            "host file\n"
        );
        t.ok(&["rm", "-f", "cpc", "cpro"]);
    }
    assert_eq!(
        std::fs::read(work.path().join("lb/fromvol")).unwrap(),
        b"host file\n"
    );
}

#[test]
fn diff_lists_what_docker_lists() {
    let Some((env, docker)) = both() else { return };
    let script = "mkdir -p /new/sub && echo x > /new/sub/f && echo y >> /etc/passwd \
        && rm -rf /home /bin/ls && rm /etc/group && mkdir -p /usr/a/b && touch /usr/a/b/c \
        && ln -s /x /tmp/l && chmod 700 /var";
    let tools: [&dyn Tool; 2] = [&docker, &env];
    let lists: Vec<Vec<String>> = tools
        .iter()
        .map(|t| {
            t.ok(&[
                "run",
                "--name",
                "changed",
                "--network",
                "none",
                "busybox",
                "sh",
                "-c",
                script,
            ]);
            // docker lists in its walk's order; lb by path.
            let mut l: Vec<String> = t
                .ok(&["diff", "changed"])
                .lines()
                .map(str::to_string)
                .collect();
            l.sort();
            t.ok(&["rm", "changed"]);
            l
        })
        .collect();
    assert_eq!(lists[0], lists[1], "docker's, then lb's");
    for t in tools {
        let o = t.run(&["diff", "nosuch"]);
        assert_eq!(o.status.code(), Some(1));
    }
}
