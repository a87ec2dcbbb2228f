//! The vfs snapshotter: an active snapshot is a faithful full copy of its parent's tree
//! (contents, modes, owners, times to the nanosecond, symlinks, hard links, fifos, device
//! nodes, xattrs where the file system keeps them); commit, view and remove.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lb_layerstore::{
    Chain, Digest, Mounts, Snapshot, SnapshotChanges, SnapshotKey, Snapshotter, Store,
    VfsSnapshotter,
};
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

fn key(k: &str) -> SnapshotKey {
    SnapshotKey::new(k).unwrap()
}

fn set_time(path: &Path, sec: i64, nsec: i64) {
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

fn source(m: &Mounts) -> PathBuf {
    match m {
        Mounts::Bind { source, .. } => source.clone(),
        other => panic!("vfs mounts are binds: {other:?}"),
    }
}

/// Everything a faithful copy keeps, per path, sorted: kind, mode, owner, mtime to the
/// nanosecond, size, link target, device, contents, xattrs, and which paths share an inode.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes = std::collections::HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    out.sort();
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<String>,
    inodes: &mut std::collections::HashMap<u64, String>,
) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let link = fs::read_link(&p)
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let data = if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(&p, &mut names).unwrap_or(0);
        let same = if m.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone()
        } else {
            String::new()
        };
        out.push(format!(
            "{rel} mode={:o} owner={}:{} mtime={}.{} size={} link={link} rdev={} data={data:?} xattrs={:?} inode-of={same}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec(),
            if m.is_dir() { 0 } else { m.len() },
            m.rdev(),
            &names[..n],
        ));
        if m.is_dir() {
            walk(root, &p, out, inodes);
        }
    }
}

/// A tree with one of everything a copy must keep.
fn make_tree(root: &Path) -> bool {
    let is_root = rustix::process::geteuid().is_root();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(root.join("usr/bin/tool"), vec![7u8; 100_000]).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    std::os::unix::fs::symlink("usr/bin/tool", root.join("tool")).unwrap();
    std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
    fs::write(root.join("secret"), b"s").unwrap();
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o400)).unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("pipe"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let xattrs = rustix::fs::lsetxattr(
        root.join("secret"),
        "user.note",
        b"kept",
        XattrFlags::empty(),
    )
    .is_ok();
    if is_root {
        let dev = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(
            CWD,
            root.join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            dev,
        )
        .unwrap();
        rustix::fs::chownat(
            CWD,
            root.join("secret"),
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(50)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        rustix::fs::lsetxattr(
            root.join("usr/bin/tool"),
            "trusted.lb",
            b"t",
            XattrFlags::empty(),
        )
        .unwrap();
    } else {
        eprintln!("not root: device nodes, other owners and trusted xattrs not copied here");
    }
    if !xattrs {
        eprintln!("this file system keeps no user xattrs: not checked");
    }
    for p in [
        "usr/bin/tool",
        "secret",
        "tool",
        "dangling",
        "pipe",
        "usr/bin",
        "usr",
        "tmp",
    ] {
        set_time(&root.join(p), 1_600_000_000, 123_456_789);
    }
    xattrs
}

#[test]
fn prepare_copies_the_parent_tree_faithfully_commit_view_and_remove() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let vfs = VfsSnapshotter::new(&store);

    // A first snapshot on nothing: an empty writable tree.
    let base = source(&vfs.prepare(&key("base"), None).unwrap());
    assert_eq!(fs::read_dir(&base).unwrap().count(), 0);
    make_tree(&base);
    let expected = listing(&base);
    let chain = Chain::default().child(&Digest::of(b"base layer"));
    vfs.commit(&key("base"), chain.top().unwrap()).unwrap();
    assert!(!base.exists(), "the tree was renamed into place");

    // On it: a full copy, every property kept.
    let m = vfs.prepare(&key("step"), Some(&chain)).unwrap();
    assert!(m.is_writable());
    let copy = source(&m);
    assert_eq!(listing(&copy), expected);
    assert_eq!(vfs.mounts(&key("step")).unwrap(), m);

    // Writing the copy leaves the committed tree as it was.
    fs::write(copy.join("usr/bin/tool"), b"changed").unwrap();
    let view = vfs.view(&key("look"), Some(&chain)).unwrap();
    assert!(!view.is_writable());
    let committed = source(&view);
    assert_eq!(listing(&committed), expected);
    assert_eq!(
        fs::read(copy.join("usr/bin/tool-alias")).unwrap(),
        b"changed"
    );

    // A view is never committed; a committed tree a view stands on is kept.
    assert!(vfs.commit(&key("look"), &Digest::of(b"x")).is_err());
    let top = Snapshot::Committed(*chain.top().unwrap());
    assert!(vfs.remove(&top).is_err());
    vfs.remove(&Snapshot::Active(key("look"))).unwrap();
    assert!(vfs.mounts(&key("look")).is_err());

    // Committed under a name taken already: the first stands, the active one goes.
    vfs.commit(&key("step"), chain.top().unwrap()).unwrap();
    assert_eq!(listing(&committed), expected);
    assert!(!copy.exists());

    vfs.remove(&top).unwrap();
    assert!(!committed.exists());
    assert!(
        vfs.prepare(&key("again"), Some(&chain)).is_err(),
        "parent gone"
    );
}

#[test]
fn a_key_is_taken_once_and_a_failed_prepare_leaves_nothing() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let vfs = VfsSnapshotter::new(&store);
    vfs.prepare(&key("k"), None).unwrap();
    assert!(vfs.prepare(&key("k"), None).is_err());
    let missing = Chain::default().child(&Digest::of(b"never committed"));
    assert!(vfs.prepare(&key("other"), Some(&missing)).is_err());
    assert!(vfs.mounts(&key("other")).is_err());
    let active = dir.path().join("snapshotter/vfs/active");
    let names: Vec<_> = fs::read_dir(active)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["k"]);
}

#[test]
fn usage_counts_what_an_overlay_upper_dir_would_hold() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let vfs = VfsSnapshotter::new(&store);
    let base = source(&vfs.prepare(&key("base"), None).unwrap());
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::write(base.join("etc/passwd"), vec![b'p'; 1000]).unwrap();
    fs::write(base.join("etc/group"), vec![b'g'; 500]).unwrap();
    fs::write(base.join("big"), vec![0u8; 100_000]).unwrap();
    // Whole seconds, as in a tree unpacked from a tar.
    for p in ["etc/passwd", "etc/group", "big", "etc"] {
        set_time(&base.join(p), 1_600_000_000, 0);
    }
    // On nothing, every file is the snapshot's own.
    assert_eq!(vfs.usage(&key("base")).unwrap(), 101_500);
    let chain = Chain::default().child(&Digest::of(b"base layer"));
    vfs.commit(&key("base"), chain.top().unwrap()).unwrap();

    let tree = source(&vfs.prepare(&key("c"), Some(&chain)).unwrap());
    assert_eq!(vfs.usage(&key("c")).unwrap(), 0, "an unchanged copy");
    fs::write(tree.join("made"), b"hi\n").unwrap();
    // A deletion holds no file; a changed mode copies the whole file up on overlay.
    fs::remove_file(tree.join("etc/passwd")).unwrap();
    fs::set_permissions(tree.join("etc/group"), fs::Permissions::from_mode(0o600)).unwrap();
    // A new directory whole, its hard links once.
    fs::create_dir(tree.join("new")).unwrap();
    fs::write(tree.join("new/a"), [1u8; 10]).unwrap();
    fs::hard_link(tree.join("new/a"), tree.join("new/b")).unwrap();
    assert_eq!(vfs.usage(&key("c")).unwrap(), 3 + 500 + 10);
    // A view changes nothing.
    vfs.view(&key("v"), Some(&chain)).unwrap();
    assert_eq!(vfs.usage(&key("v")).unwrap(), 0);
    assert!(vfs.usage(&key("none")).is_err());
}

#[test]
fn changes_views_in_place_and_fresh_changes() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let vfs = VfsSnapshotter::new(&store);
    // On nothing, the tree is all changes (an overlay's first layer).
    let base = source(&vfs.prepare(&key("base"), None).unwrap());
    fs::write(base.join("a"), b"a").unwrap();
    assert_eq!(
        vfs.changes(&key("base")).unwrap(),
        SnapshotChanges::Upper(base.clone())
    );
    let chain = Chain::default().child(&Digest::of(b"base layer"));
    vfs.commit(&key("base"), chain.top().unwrap()).unwrap();
    let committed = dir
        .path()
        .join("snapshotter/vfs/committed")
        .join(chain.top().unwrap().hex());

    // On a tree: the tree and its parent's, to compare.
    let tree = source(&vfs.prepare(&key("step"), Some(&chain)).unwrap());
    assert_eq!(
        vfs.changes(&key("step")).unwrap(),
        SnapshotChanges::Trees {
            lower: committed.clone(),
            upper: tree
        }
    );

    // Any tree is its own view: nothing is made for it; the empty chain needs a key.
    let active = dir.path().join("snapshotter/vfs/active");
    let before = fs::read_dir(&active).unwrap().count();
    assert_eq!(
        vfs.view_in_place(&chain).unwrap(),
        Some(Mounts::Bind {
            source: committed.clone(),
            read_only: true
        })
    );
    assert_eq!(vfs.view_in_place(&Chain::default()).unwrap(), None);
    assert_eq!(fs::read_dir(&active).unwrap().count(), before);
    vfs.view(&key("v"), Some(&chain)).unwrap();
    assert!(vfs.changes(&key("v")).is_err(), "a view has no changes");

    // A directory of changes is no tree: dropped, the committed trees as they were.
    let fresh = dir.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    fs::write(fresh.join("b"), b"b").unwrap();
    let next = chain.child(&Digest::of(b"copy layer"));
    vfs.commit_changes(&fresh, next.top().unwrap()).unwrap();
    assert!(!fresh.exists());
    assert!(!vfs.exists(&Snapshot::Committed(*next.top().unwrap())));
    assert_eq!(fs::read(committed.join("a")).unwrap(), b"a");
}
