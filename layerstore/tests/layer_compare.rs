//! The differ: `compare` finds additions, modifications and deletions between two full trees,
//! a directory turned into a file and back, and makes the very bytes `write_diff` makes from
//! an overlay upper dir holding the same change (so vfs and overlay builds give one layer
//! digest); `apply` puts the layer's change on a copy of the parent.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lb_layerstore::{
    Chain, DiffOptions, Digest, LayerCompression, Mounts, SnapshotKey, Snapshotter, Store,
    VfsSnapshotter, apply, compare, write_diff,
};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

const T0: i64 = 1_600_000_000;
const T1: (i64, i64) = (1_700_000_000, 123_456_789);

fn set_time(path: &Path, (sec, nsec): (i64, i64)) {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Every path under `root`, the root last, to the second only (what a tar-unpacked tree has).
fn set_all_times(root: &Path, t: (i64, i64)) {
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            set_all_times(&p, t);
        }
        set_time(&p, t);
    }
    set_time(root, t);
}

fn layer(lower: &Path, upper: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    compare(
        lower,
        upper,
        &mut out,
        LayerCompression::None,
        DiffOptions::default(),
    )
    .unwrap();
    out
}

/// (name, kind, mode) of each entry, in order.
fn entries(tar_bytes: &[u8]) -> Vec<(String, char, u32)> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let kind = match e.header().entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                tar::EntryType::Regular => 'f',
                other => panic!("{other:?}"),
            };
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            (name, kind, e.header().mode().unwrap())
        })
        .collect()
}

fn names(tar_bytes: &[u8]) -> Vec<String> {
    entries(tar_bytes).into_iter().map(|(n, _, _)| n).collect()
}

/// The parent: what an unpacked layer looks like, whole-second times.
fn parent(root: &Path) {
    for d in ["etc", "bin", "data", "was_dir", "keep"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/gone"), b"x").unwrap();
    fs::write(root.join("etc/same-size"), b"aaaa").unwrap();
    fs::write(root.join("bin/sh"), b"shell").unwrap();
    fs::set_permissions(root.join("bin/sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sh", root.join("bin/link")).unwrap();
    fs::write(root.join("data/a"), b"a").unwrap();
    fs::write(root.join("was_file"), b"f").unwrap();
    fs::write(root.join("was_dir/x"), b"x").unwrap();
    fs::write(root.join("keep/same"), b"same").unwrap();
    set_all_times(root, (T0, 0));
}

/// The change, as a build step would make it in a full copy of the parent.
fn change(root: &Path) {
    fs::write(root.join("etc/hosts"), b"10.0.0.1 db\n").unwrap();
    fs::remove_file(root.join("etc/gone")).unwrap();
    fs::write(root.join("etc/new"), b"new").unwrap();
    fs::set_permissions(root.join("bin/sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_dir_all(root.join("data")).unwrap();
    fs::remove_file(root.join("was_file")).unwrap();
    fs::create_dir(root.join("was_file")).unwrap();
    fs::write(root.join("was_file/inner"), b"i").unwrap();
    fs::remove_dir_all(root.join("was_dir")).unwrap();
    fs::write(root.join("was_dir"), b"now a file").unwrap();
    fs::create_dir(root.join("new_dir")).unwrap();
    fs::write(root.join("new_dir/f"), b"linked").unwrap();
    fs::hard_link(root.join("new_dir/f"), root.join("new_dir/hard")).unwrap();
    let _ = rustix::fs::lsetxattr(root.join("etc/new"), "user.k", b"v", XattrFlags::empty());
    // What changed is dated T1; what only holds a change keeps its time.
    for p in [
        "etc/hosts",
        "etc/new",
        "etc",
        "was_file/inner",
        "was_file",
        "was_dir",
        "new_dir/f",
        "new_dir",
        "",
    ] {
        set_time(&root.join(p), T1);
    }
}

fn bind(m: Mounts) -> PathBuf {
    match m {
        Mounts::Bind { source, .. } => source,
        other => panic!("vfs mounts are binds: {other:?}"),
    }
}

fn k(s: &str) -> SnapshotKey {
    SnapshotKey::new(s).unwrap()
}

/// The parent committed in a vfs snapshotter; returns its tree (through a view), an active
/// copy of it, and the chain.
fn vfs_parent_and_copy(vfs: &VfsSnapshotter) -> (PathBuf, PathBuf, Chain) {
    let base = bind(vfs.prepare(&k("base"), None).unwrap());
    parent(&base);
    let chain = Chain::default().child(&Digest::of(b"parent layer"));
    vfs.commit(&k("base"), chain.top().unwrap()).unwrap();
    let copy = bind(vfs.prepare(&k("step"), Some(&chain)).unwrap());
    let lower = bind(vfs.view(&k("parent"), Some(&chain)).unwrap());
    (lower, copy, chain)
}

#[test]
fn compare_finds_adds_modifications_deletions_and_type_changes() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    parent(&lower);
    fs::create_dir(&upper).unwrap();
    parent(&upper);
    assert_eq!(
        names(&layer(&lower, &upper)),
        Vec::<String>::new(),
        "equal trees"
    );

    change(&upper);
    // Same size, same whole-second mtime, other bytes: found by reading.
    fs::write(upper.join("etc/same-size"), b"bbbb").unwrap();
    set_time(&upper.join("etc/same-size"), (T0, 0));
    let got = entries(&layer(&lower, &upper));
    let want: Vec<(&str, char)> = vec![
        ("bin/", 'd'),
        ("bin/sh", 'f'),
        (".wh.data", 'f'),
        ("etc/", 'd'),
        ("etc/.wh.gone", 'f'),
        ("etc/hosts", 'f'),
        ("etc/new", 'f'),
        ("etc/same-size", 'f'),
        ("new_dir/", 'd'),
        ("new_dir/f", 'f'),
        ("new_dir/hard", 'h'),
        ("was_dir", 'f'),
        ("was_file/", 'd'),
        ("was_file/.wh..wh..opq", 'f'),
        ("was_file/inner", 'f'),
    ];
    let got_names: Vec<(&str, char)> = got.iter().map(|(n, k, _)| (n.as_str(), *k)).collect();
    assert_eq!(got_names, want);
    assert_eq!(got[1].2, 0o700, "a mode change alone is a change");
    assert_eq!(got[2].2, 0, "whiteouts are mode 0 as overlayfs makes them");

    // And back: the file a directory again, the directory a file again.
    let back = dir.path().join("back");
    fs::create_dir(&back).unwrap();
    parent(&back);
    change(&back);
    fs::remove_dir_all(back.join("was_file")).unwrap();
    fs::write(back.join("was_file"), b"f").unwrap();
    fs::remove_file(back.join("was_dir")).unwrap();
    fs::create_dir(back.join("was_dir")).unwrap();
    fs::write(back.join("was_dir/x"), b"x").unwrap();
    assert_eq!(
        names(&layer(&upper, &back)),
        [
            "etc/",
            "etc/same-size",
            "was_dir/",
            "was_dir/.wh..wh..opq",
            "was_dir/x",
            "was_file"
        ]
    );
}

/// Sets `path`'s mode and times to those of `like`.
fn same_as(path: &Path, like: &Path) {
    let m = fs::symlink_metadata(like).unwrap();
    if !m.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(m.mode() & 0o7777)).unwrap();
    }
    set_time(path, (m.mtime(), m.mtime_nsec()));
}

fn whiteout(path: &Path, t: (i64, i64)) {
    rustix::fs::mknodat(CWD, path, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    set_time(path, t);
}

#[test]
fn compare_makes_the_bytes_write_diff_makes_from_an_overlay_upper_dir() {
    if !lb_testkit::require_root("overlay whiteouts (0/0 character devices) in an upper dir") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let vfs = VfsSnapshotter::new(&store);
    let (lower, copy, chain) = vfs_parent_and_copy(&vfs);
    change(&copy);

    // The same change as overlayfs leaves it in an upper dir: changed and new entries,
    // the directories on their way copied up, whiteouts, an opaque directory.
    let upper = dir.path().join("upper");
    for d in ["bin", "etc", "new_dir", "was_file"] {
        fs::create_dir_all(upper.join(d)).unwrap();
    }
    fs::write(upper.join("bin/sh"), b"shell").unwrap();
    fs::write(upper.join("etc/hosts"), b"10.0.0.1 db\n").unwrap();
    fs::write(upper.join("etc/new"), b"new").unwrap();
    let _ = rustix::fs::lsetxattr(upper.join("etc/new"), "user.k", b"v", XattrFlags::empty());
    fs::write(upper.join("new_dir/f"), b"linked").unwrap();
    fs::hard_link(upper.join("new_dir/f"), upper.join("new_dir/hard")).unwrap();
    fs::write(upper.join("was_dir"), b"now a file").unwrap();
    fs::write(upper.join("was_file/inner"), b"i").unwrap();
    rustix::fs::lsetxattr(
        upper.join("was_file"),
        "trusted.overlay.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    // Made in the same moment as their directory's last change.
    whiteout(&upper.join("etc/gone"), T1);
    whiteout(&upper.join("data"), T1);
    for p in [
        "bin/sh",
        "etc/hosts",
        "etc/new",
        "new_dir/f",
        "was_dir",
        "was_file/inner",
        "bin",
        "etc",
        "new_dir",
        "was_file",
    ] {
        same_as(&upper.join(p), &copy.join(p));
    }

    for opts in [
        DiffOptions::default(),
        DiffOptions {
            source_date_epoch: Some(T0 + 5),
        },
    ] {
        let mut overlay = Vec::new();
        write_diff(&upper, &mut overlay, LayerCompression::None, opts).unwrap();
        let mut vfs_layer = Vec::new();
        let d = compare(&lower, &copy, &mut vfs_layer, LayerCompression::None, opts).unwrap();
        assert_eq!(names(&vfs_layer), names(&overlay));
        assert_eq!(names(&overlay).len(), 14, "{:?}", names(&overlay));
        assert!(vfs_layer == overlay, "byte-identical layers ({opts:?})");
        assert_eq!(d.diff_id, Digest::of(&overlay));
    }

    // Applied to another copy of the parent, the layer makes the changed tree again (to
    // the second: a tar keeps no fraction).
    let mut layer_bytes = Vec::new();
    compare(
        &lower,
        &copy,
        &mut layer_bytes,
        LayerCompression::Gzip(6),
        DiffOptions::default(),
    )
    .unwrap();
    let again = vfs.prepare(&k("again"), Some(&chain)).unwrap();
    apply(&layer_bytes[..], &again).unwrap();
    assert_eq!(shape(&bind(again)), shape(&copy));
}

/// Kind, mode, owner, mtime seconds, link target and contents of every path.
fn shape(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let data = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            let link = fs::read_link(&p).ok();
            out.push(format!(
                "{} {:o} {}:{} {} {link:?} {data:?}",
                p.strip_prefix(root).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.mtime() },
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn apply_refuses_a_view() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let vfs = VfsSnapshotter::new(&store);
    let view = vfs.view(&k("v"), None).unwrap();
    assert!(apply(&[0u8; 1024][..], &view).is_err());
}

/// The layer of the overlay upper dir `upper` stacked on the layer directories `lowers`.
fn stacked_layer(upper: &Path, lowers: &[PathBuf]) -> Vec<u8> {
    let mut out = Vec::new();
    lb_layerstore::LayerChanges::Stacked { upper, lowers }
        .write(&mut out, LayerCompression::None, DiffOptions::default())
        .unwrap();
    out
}

/// A directory deleted and made again in one step: overlayfs leaves it opaque in the upper
/// dir, a vfs tree holds it with its gone names' whiteouts. Written stacked on its lowers,
/// the upper dir makes compare's bytes (one digest on both drivers); written as it is, the
/// opaque form.
#[test]
fn an_opaque_directory_stacked_on_its_lowers_is_written_as_compare_writes_it() {
    if !lb_testkit::require_root("overlay whiteouts and opaque xattrs in layer directories") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let p = |s: &str| dir.path().join(s);
    // Two layers: the parent, and one over it that adds data/c and deletes keep/same.
    let (bottom, top) = (p("bottom"), p("top"));
    fs::create_dir(&bottom).unwrap();
    parent(&bottom);
    fs::create_dir_all(top.join("data")).unwrap();
    fs::create_dir_all(top.join("keep")).unwrap();
    fs::write(top.join("data/c"), b"c").unwrap();
    whiteout(&top.join("keep/same"), (T0, 0));
    set_all_times(&top, (T0 + 1, 0));
    // The same stack as one tree.
    let merged = p("merged");
    fs::create_dir(&merged).unwrap();
    parent(&merged);
    fs::write(merged.join("data/c"), b"c").unwrap();
    fs::remove_file(merged.join("keep/same")).unwrap();
    for d in ["data/c", "data", "keep", ""] {
        same_as(&merged.join(d), &top.join(d));
    }

    // The step: rm -r /data && mkdir -p /data/sub && echo > /data/b /data/sub/y.
    let (copy, upper) = (p("copy"), p("upper"));
    let status = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&merged)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    fs::remove_dir_all(copy.join("data")).unwrap();
    fs::create_dir_all(upper.join("data")).unwrap();
    rustix::fs::lsetxattr(
        upper.join("data"),
        "trusted.overlay.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    for root in [&copy, &upper] {
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::write(root.join("data/b"), b"b").unwrap();
        fs::write(root.join("data/sub/y"), b"y").unwrap();
        for d in ["data/sub/y", "data/b", "data/sub", "data"] {
            set_time(&root.join(d), T1);
        }
    }

    let vfs_layer = layer(&merged, &copy);
    assert_eq!(
        names(&vfs_layer),
        [
            "data/",
            "data/.wh.a",
            "data/b",
            "data/.wh.c",
            "data/sub/",
            "data/sub/y"
        ]
    );
    let lowers = [top.clone(), bottom.clone()];
    let stacked = stacked_layer(&upper, &lowers);
    assert!(stacked == vfs_layer, "{:?}", names(&stacked));
    let mut as_is = Vec::new();
    write_diff(
        &upper,
        &mut as_is,
        LayerCompression::None,
        DiffOptions::default(),
    )
    .unwrap();
    assert_eq!(
        names(&as_is),
        [
            "data/",
            "data/.wh..wh..opq",
            "data/b",
            "data/sub/",
            "data/sub/y"
        ]
    );

    // A directory made over a file (opaque in both forms) and a new one (in neither).
    fs::remove_file(copy.join("was_file")).unwrap();
    for root in [&copy, &upper] {
        fs::create_dir(root.join("was_file")).unwrap();
        fs::write(root.join("was_file/i"), b"i").unwrap();
        fs::create_dir(root.join("fresh")).unwrap();
        fs::write(root.join("fresh/f"), b"f").unwrap();
        for d in ["was_file/i", "was_file", "fresh/f", "fresh"] {
            set_time(&root.join(d), T1);
        }
    }
    for d in ["was_file", "fresh"] {
        rustix::fs::lsetxattr(
            upper.join(d),
            "trusted.overlay.opaque",
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
    }
    let vfs_layer = layer(&merged, &copy);
    let stacked = stacked_layer(&upper, &lowers);
    assert!(stacked == vfs_layer, "{:?}", names(&stacked));
    assert!(names(&stacked).contains(&"was_file/.wh..wh..opq".to_string()));
    assert!(!names(&stacked).contains(&"fresh/.wh..wh..opq".to_string()));
}
