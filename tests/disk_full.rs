//! Nothing lost, nothing hung, when the disk fills: on a small ext4 file system of its own
//! (a loop mount) holding the store, builds that run out of room fail with "no space left
//! on device while ..." (never a panic), name nothing, and leave the store usable; a
//! decompression bomb (a small gzip layer of 100 MiB of zeros) stops at the free-space
//! reserve (`LB_MIN_FREE`) instead of filling the file system. Needs root (mount) and
//! e2fsprogs.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const MIB: u64 = 1 << 20;

/// An ext4 file system in a file, mounted on a temporary directory; unmounted on drop.
struct LoopFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopFs {
    /// A `mib` MiB ext4 (no blocks reserved for root: root's writes fill it as anyone's
    /// would), or `None` when the test is skipped.
    fn new(mib: u64) -> Option<LoopFs> {
        if !lb_testkit::require_root("mounting a loop file system")
            || !lb_testkit::require_tools(
                "e2fsprogs and util-linux",
                &["/sbin/mkfs.ext4", "/usr/bin/fallocate"],
            )
        {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib * MIB)
            .unwrap();
        let out = Command::new("/sbin/mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "mkfs.ext4: {}", text(&out.stderr));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .unwrap();
        if !out.status.success() {
            lb_testkit::skip(&format!(
                "mount -o loop failed (no loop devices here?): {}",
                text(&out.stderr).trim()
            ));
            return None;
        }
        Some(LoopFs { dir, mnt })
    }

    fn root(&self) -> PathBuf {
        self.mnt.join("store")
    }

    /// Bytes free on it, as `df` counts them.
    fn avail(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.mnt).unwrap();
        st.blocks_available() * st.fragment_size()
    }

    /// Its size, as `df` counts it.
    fn size(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.mnt).unwrap();
        st.blocks() * st.fragment_size()
    }

    /// Fills it with a filler file until about `free` bytes are left.
    fn fill_leaving(&self, free: u64) {
        self.unfill();
        let filler = self.mnt.join("filler");
        let size = self.avail().saturating_sub(free);
        let out = Command::new("/usr/bin/fallocate")
            .args(["-l", &size.to_string()])
            .arg(&filler)
            .output()
            .unwrap();
        assert!(out.status.success(), "fallocate: {}", text(&out.stderr));
    }

    fn unfill(&self) {
        let _ = std::fs::remove_file(self.mnt.join("filler"));
        sync(&self.mnt);
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a process of a failed test still in it): detached, freed when it ends.
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = &self.dir;
    }
}

/// `syncfs` on the file system of `path`: delayed allocations settled, so `avail` is true.
fn sync(path: &Path) {
    let _ = Command::new("sync").arg("-f").arg(path).status();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lb --root ROOT ARGS...` with `LB_MIN_FREE` set as given (unset for `None`).
fn lb(root: &Path, min_free: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
    c.arg("--root").arg(root).args(args).stdin(Stdio::null());
    match min_free {
        Some(v) => c.env("LB_MIN_FREE", v),
        None => c.env_remove("LB_MIN_FREE"),
    };
    c.output().expect("run lb")
}

/// The store on `fs` with the busybox test image as `busybox`.
fn store_with_busybox(fs: &LoopFs) -> Option<PathBuf> {
    let tar = lb_testkit::busybox_rootfs(fs.dir.path())?;
    let root = fs.root();
    let out = lb(&root, None, &["import", tar.to_str().unwrap(), "busybox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    Some(root)
}

/// A build context `name` (outside the small file system) with `dockerfile` and a file
/// `big` of `big_mib` MiB of data that does not compress.
fn context(fs: &LoopFs, name: &str, dockerfile: &str, big_mib: u64) -> PathBuf {
    let ctx = fs.dir.path().join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(ctx.join("big")).unwrap());
    let mut state = 0x2545f4914f6cdd1du64;
    for _ in 0..big_mib * MIB / 8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        f.write_all(&state.to_le_bytes()).unwrap();
    }
    f.flush().unwrap();
    ctx
}

/// The store's scratch and ingest directories hold nothing a failed build left.
fn no_leftovers(root: &Path) {
    let names = |d: &str| -> Vec<String> {
        std::fs::read_dir(root.join(d))
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("ingest"), Vec::<String>::new(), "ingest/");
    let build: Vec<String> = names("build")
        .into_iter()
        .filter(|n| n != "file-digests.json")
        .collect();
    assert_eq!(build, Vec::<String>::new(), "build/");
    let snapshots: Vec<String> = names("snapshots")
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert_eq!(snapshots, Vec::<String>::new(), "snapshots/");
}

/// On a 128 MiB file system (room for a 40 MiB layer's upper dir and its blob), with the
/// disk truly full (`LB_MIN_FREE=0`: no reserve) at 1, 4 and 16 MiB free, a COPY
/// of a 40 MiB file and a RUN that writes until the disk is full (its layer then has no
/// room) fail with the message, exit 1, name nothing and leave no scratch behind; the
/// store still lists its images, and once there is room the same builds succeed.
#[test]
fn a_full_disk_fails_a_build_with_a_message_and_the_store_stays_usable() {
    let Some(fs) = LoopFs::new(128) else { return };
    let Some(root) = store_with_busybox(&fs) else {
        return;
    };
    let copy = context(&fs, "copy", "FROM busybox\nCOPY big /big\n", 40);
    let run = context(
        &fs,
        "run",
        "FROM busybox\nRUN dd if=/dev/zero of=/big bs=4k count=10240 || true\n",
        0,
    );
    // The base's snapshot is unpacked while there is room: the builds below fail at
    // their own steps.
    let warm = context(&fs, "warm", "FROM busybox\nRUN true\n", 0);
    let out = lb(
        &root,
        None,
        &["build", "--network", "none", warm.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let build = |ctx: &Path, min_free: &str| {
        lb(
            &root,
            Some(min_free),
            &[
                "build",
                "--progress",
                "plain",
                "--network",
                "none",
                "-t",
                "full:test",
                ctx.to_str().unwrap(),
            ],
        )
    };
    for free_mib in [1, 4, 16] {
        for ctx in [&copy, &run] {
            fs.fill_leaving(free_mib * MIB);
            let out = build(ctx, "0");
            let err = text(&out.stderr);
            let what = format!("{} with {free_mib} MiB free", ctx.display());
            assert_eq!(out.status.code(), Some(1), "{what}: {err}");
            assert!(
                err.contains("ERROR: no space left on device while "),
                "{what}: {err}"
            );
            assert!(!err.contains("panicked"), "{what}: {err}");
            eprintln!("{what}: {}", err.lines().last().unwrap_or(""));
            let images = lb(&root, None, &["images"]);
            assert!(images.status.success(), "{}", text(&images.stderr));
            let listing = text(&images.stdout);
            assert!(
                listing.contains("busybox") && !listing.contains("full"),
                "{what}: {listing}"
            );
            assert!(!lb(&root, None, &["inspect", "full:test"]).status.success());
            no_leftovers(&root);
            // Checkable, and whole: blobs, names and snapshots as they should be.
            let check = lb(&root, Some("0"), &["system", "check", "--full"]);
            assert!(
                check.status.success() && text(&check.stdout).contains("no problems found"),
                "{what}: {}{}",
                text(&check.stdout),
                text(&check.stderr)
            );
        }
    }
    fs.unfill();
    for ctx in [&copy, &run] {
        let out = build(ctx, "0");
        assert!(out.status.success(), "{}", text(&out.stderr));
        for args in [&["rmi", "full:test"][..], &["prune"]] {
            let out = lb(&root, None, args);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
}

/// On a disk with no byte left, the store still reads (`images`, `system check`) and a
/// prune frees what no name reaches: removing needs no new block (the trash takes a
/// rename).
#[test]
fn a_full_disk_still_lists_checks_and_prunes() {
    let Some(fs) = LoopFs::new(64) else { return };
    let Some(root) = store_with_busybox(&fs) else {
        return;
    };
    let junk = context(
        &fs,
        "junk",
        "FROM busybox\nCOPY big /big\nRUN cat /big > /copy\n",
        8,
    );
    let out = lb(
        &root,
        None,
        &[
            "build",
            "--network",
            "none",
            "-t",
            "junk",
            junk.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lb(&root, None, &["rmi", "junk"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs.fill_leaving(MIB / 2);
    // Truly full: small files until not one more block is taken.
    for i in 0.. {
        let f = fs.mnt.join(format!("last-{i}"));
        if std::fs::write(&f, vec![1u8; 4096]).is_err() {
            break;
        }
        sync(&fs.mnt);
    }
    let before = fs.avail();
    assert!(before < MIB, "{before} bytes free");
    for args in [&["images"][..], &["system", "check"]] {
        let out = lb(&root, Some("0"), args);
        assert!(
            out.status.success(),
            "lb {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let out = lb(&root, Some("0"), &["prune"]);
    assert!(out.status.success(), "prune: {}", text(&out.stderr));
    sync(&fs.mnt);
    let freed = fs.avail() - before;
    assert!(freed > 16 * MIB, "prune freed {freed} bytes");
    let out = lb(&root, None, &["system", "check", "--full"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

/// A docker-layout archive (`manifest.json`, a config, one gzip layer) of the image
/// `bomb:latest`: one file of `mib` MiB of zeros, a few hundred KiB compressed.
fn bomb_archive(path: &Path, mib: u64) {
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(mib * MIB);
    h.set_mode(0o644);
    h.set_cksum();
    layer
        .append_data(&mut h, "zeros", std::io::repeat(0).take(mib * MIB))
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = lb_layerstore::Digest::of(&layer).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let (os, arch) = lb_layerstore::host_platform();
    let config = serde_json::json!({
        "architecture": arch, "os": os,
        "config": { "Cmd": ["/zeros"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let manifest = serde_json::json!([{
        "Config": "config.json", "RepoTags": ["bomb:latest"], "Layers": ["layer.tar.gz"],
    }]);
    let mut ar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in [
        ("config.json", serde_json::to_vec(&config).unwrap()),
        ("layer.tar.gz", gz),
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        ar.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    ar.finish().unwrap();
}

/// A 100 MiB bomb on a 64 MiB file system: with a reserve of 32 MiB, and with the default
/// (5% of the file system here), unpacking it stops with the reserve's message while the
/// reserve is still free, and its partial snapshot is removed: the free space after the
/// failure is what it was before.
#[test]
fn a_decompression_bomb_stops_at_the_reserve() {
    let Some(fs) = LoopFs::new(64) else { return };
    let root = fs.root();
    let archive = fs.dir.path().join("bomb.tar");
    bomb_archive(&archive, 100);
    assert!(std::fs::metadata(&archive).unwrap().len() < 2 * MIB);
    let out = lb(&root, None, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ctx = fs.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bomb\nCOPY Dockerfile /\n").unwrap();
    // The default: 5% of the file system (less than 1 GiB here).
    let default = lb_layerstore::human_size(fs.size() / 100 * 5);
    // A build FROM the bomb fails unpacking it, exit 1, saying so; what it printed.
    let explode = |min_free: Option<&str>| {
        let ctx = ctx.to_str().unwrap();
        let out = lb(
            &root,
            min_free,
            &["build", "--progress", "plain", "-t", "exploded", ctx],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("ERROR: no space left on device while unpacking layer sha256:"),
            "{err}"
        );
        err
    };
    for (min_free, reserve) in [(Some("32m"), "32.0 MiB".to_string()), (None, default)] {
        sync(&fs.mnt);
        let before = fs.avail();
        let started = std::time::Instant::now();
        let err = explode(min_free);
        assert!(
            err.contains(&format!(
                "the file system would fall below its reserve of {reserve} (LB_MIN_FREE)"
            )),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        sync(&fs.mnt);
        let after = fs.avail();
        assert!(
            after + MIB >= before,
            "{min_free:?}: {before} bytes free before, {after} after"
        );
        no_leftovers(&root);
        assert!(!lb(&root, None, &["inspect", "exploded"]).status.success());
        eprintln!(
            "{min_free:?}: failed in {:?}: {}",
            started.elapsed(),
            err.lines().last().unwrap_or("")
        );
    }
    // No reserve: the disk itself fills, and the partial snapshot is removed all the same.
    sync(&fs.mnt);
    let before = fs.avail();
    let err = explode(Some("0"));
    assert!(!err.contains("reserve"), "{err}");
    sync(&fs.mnt);
    assert!(
        fs.avail() + MIB >= before,
        "{before} free before, {} after",
        fs.avail()
    );
    no_leftovers(&root);
    // `lb run` unpacks the same way and says the same.
    let out = lb(&root, Some("32m"), &["run", "--rm", "bomb"]);
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("no space left on device while unpacking layer sha256:"),
        "{err}"
    );
}

/// `LB_MIN_FREE` that is no size is refused before anything is written, naming it.
#[test]
fn a_bad_reserve_setting_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let out = lb(&root, Some("lots"), &["images"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("invalid LB_MIN_FREE=\"lots\""), "{err}");
    for good in ["0", "512m", "2g", "1048576"] {
        let out = lb(&root, Some(good), &["images"]);
        assert!(out.status.success(), "{good}: {}", text(&out.stderr));
    }
}

/// A detached container whose output fills the disk runs on: its log is cut at whole
/// entries (every line parses), `lb logs` says entries are being dropped, and once there
/// is room again the log counts what was dropped and goes on.
#[test]
fn a_full_disk_while_logging_keeps_the_container_running_and_says_so() {
    let Some(fs) = LoopFs::new(48) else { return };
    let Some(root) = store_with_busybox(&fs) else {
        return;
    };
    fs.fill_leaving(2 * MIB);
    // Lines until the disk is full, then (told by a file `lb exec` makes) a last line.
    let script = "i=0; while [ ! -e /go ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; \
                  i=$((i+1)); done; echo after-the-room; exec sleep 300";
    let out = lb(
        &root,
        Some("0"),
        &[
            "run",
            "-d",
            "--name",
            "flood",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Full: the log says it drops entries, and the container runs on.
    let log = {
        let id = text(&lb(&root, Some("0"), &["inspect", "-f", "{{.Id}}", "flood"]).stdout);
        root.join("containers").join(id.trim()).join("log.json")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let logs = lb(&root, Some("0"), &["logs", "--tail", "1", "flood"]);
        assert!(logs.status.success(), "{}", text(&logs.stderr));
        if text(&logs.stderr).contains("no space left on device: log entries are being dropped") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never said it was full"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ps = lb(
        &root,
        Some("0"),
        &["ps", "--format", "{{.Names}} {{.State}}"],
    );
    assert_eq!(text(&ps.stdout), "flood running\n", "{}", text(&ps.stderr));
    sync(&fs.mnt);
    assert!(fs.avail() < 256 * 1024, "{} bytes free", fs.avail());
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("a torn log line {line:?}: {e}"));
    }
    // Room again: the log says how many entries went, then goes on.
    fs.unfill();
    let out = lb(&root, Some("0"), &["exec", "flood", "touch", "/go"]);
    assert!(out.status.success(), "exec: {}", text(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let logs = lb(&root, Some("0"), &["logs", "--tail", "3", "flood"]);
        let both = format!("{}{}", text(&logs.stdout), text(&logs.stderr));
        if both.contains("after-the-room") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line after the room came: {both}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let all = lb(&root, Some("0"), &["logs", "flood"]);
    let told = text(&all.stderr);
    let dropped = told
        .lines()
        .filter(|l| l.contains("log entries were dropped: no space left on device"))
        .count();
    assert_eq!(dropped, 1, "{told}");
    let out = lb(&root, Some("0"), &["rm", "-f", "flood"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
