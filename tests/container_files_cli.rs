//! A container's files through `lb cp` and `lb diff`, on this binary's storage driver
//! (`vfs_container_files_cli.rs` runs it on vfs): a stopped container's files both ways,
//! a symlink swapped in while copies run that never lets one reach the host
//! (CVE-2018-15664), and the changes `diff` lists. docker's behaviour is compared in
//! `container_files_compat.rs` and `container_compat.rs`.

mod common;
use common::*;

#[test]
fn a_stopped_container_is_copied_from_and_into() {
    let Some(env) = setup() else { return };
    let ok = |args: &[&str]| {
        let o = lb(&env, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "none",
        "busybox",
        "cat",
        "/in/note",
    ]);
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/note"), "from the host\n").unwrap();
    // Into a container never started, then out of it.
    ok(&["cp", dir.path().join("in").to_str().unwrap(), "idle:/"]);
    let back = dir.path().join("back");
    ok(&["cp", "idle:/in/note", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from the host\n");
    // The copy is the container's own: its process sees it.
    ok(&["start", "idle"]);
    ok(&["wait", "idle"]);
    assert_eq!(ok(&["logs", "idle"]), "from the host\n");
    // And out of an exited one, its image's files too.
    let passwd = dir.path().join("passwd");
    ok(&["cp", "idle:/etc/passwd", passwd.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(&passwd)
            .unwrap()
            .starts_with("root:")
    );
    ok(&["rm", "idle"]);
}

#[test]
fn diff_lists_what_the_container_changed() {
    let Some(env) = setup() else { return };
    let script = "mkdir -p /new/sub && echo x > /new/sub/f && echo y >> /etc/passwd \
        && rm -rf /home /bin/ls && rm /etc/group && mkdir /tmp/t";
    let o = lb(
        &env,
        &[
            "run",
            "--name",
            "changed",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = lb(&env, &["diff", "changed"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "C /bin\nD /bin/ls\nC /etc\nD /etc/group\nC /etc/passwd\nD /home\nA /new\n\
         A /new/sub\nA /new/sub/f\nC /tmp\nA /tmp/t\n"
    );
    // A container that changed nothing lists nothing (lb's /etc files are not changes).
    let o = lb(
        &env,
        &[
            "run",
            "--name",
            "same",
            "--network",
            "none",
            "busybox",
            "true",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&lb(&env, &["diff", "same"]).stdout), "");
    assert_eq!(lb(&env, &["diff", "nosuch"]).status.code(), Some(1));
}

/// A link through procfs (`/proc/1/root`, `/proc/self/...`) is no way out either: the
/// copy sees the container's tree without its procfs.
#[test]
fn procfs_magic_links_lead_nowhere() {
    let Some(env) = setup() else { return };
    let ok = |args: &[&str]| {
        let o = lb(&env, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    };
    let plant = "ln -s /proc/1/root/etc /r && ln -s /proc/1/cwd /c && exec sleep 300";
    ok(&[
        "run",
        "-d",
        "--name",
        "magic",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        plant,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    for src in [
        "magic:/r/passwd",
        "magic:/c/etc/passwd",
        "magic:/proc/1/root/etc/passwd",
    ] {
        let o = lb(&env, &["cp", src, dir.path().join("x").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{src}: {}", text(&o.stderr));
    }
    let payload = dir.path().join("p");
    std::fs::write(&payload, "x").unwrap();
    let o = lb(&env, &["cp", payload.to_str().unwrap(), "magic:/c/tmp/"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    ok(&["rm", "-f", "magic"]);
}

/// CVE-2018-15664: the container swaps a directory for a symlink to `/` while copies run
/// through it, both ways; no copy ever reads or writes the host's files there.
#[test]
fn a_symlink_swapped_in_during_a_copy_never_reaches_the_host() {
    let Some(env) = setup() else { return };
    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    let secret = host.path().join("secret");
    std::fs::write(&secret, "host secret").unwrap();
    let hp = host.path().display().to_string();
    let swap = format!(
        "mkdir -p /w.d{hp} && echo container > /w.d{hp}/secret && ln -s / /w.l && \
         while true; do mv -T /w.d /w; mv -T /w /w.d; mv -T /w.l /w; mv -T /w /w.l; done"
    );
    let ok = |args: &[&str]| {
        let o = lb(&env, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    };
    ok(&[
        "run",
        "-d",
        "--name",
        "swap",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &swap,
    ]);
    let out = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(out.path().join("payload"), "planted").unwrap();
    let payload = out.path().join("payload").display().to_string();
    let mut read = 0;
    for i in 0..40 {
        let got = out.path().join(format!("got{i}"));
        let from = format!("swap:/w{hp}/secret");
        let o = lb(&env, &["cp", &from, got.to_str().unwrap()]);
        if o.status.success() {
            read += 1;
            assert_eq!(std::fs::read_to_string(&got).unwrap(), "container\n");
        }
        let into = format!("swap:/w{hp}/planted{i}");
        let _ = lb(&env, &["cp", &payload, &into]);
        assert!(
            !host.path().join(format!("planted{i}")).exists(),
            "copy {i} wrote to the host"
        );
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
    ok(&["rm", "-f", "swap"]);
    eprintln!("{read} of 40 reads found the container's file");
}
