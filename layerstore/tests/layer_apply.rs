//! Applying layers: what a well-formed layer produces, and a corpus of hand-made hostile
//! layers, each of which must leave everything outside the target untouched and end in a
//! clear error or a safe result.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use lb_layerstore::{ApplyOptions, Whiteouts, apply_layer};

/// One raw tar entry; written by hand so that hostile names and sizes survive.
struct Entry {
    name: &'static str,
    kind: u8,
    data: Vec<u8>,
    link: &'static str,
    mode: u32,
    /// Size written in the header when it should lie about the data.
    size: Option<u64>,
    pax: Vec<(&'static str, Vec<u8>)>,
}

fn file(name: &'static str, data: &[u8]) -> Entry {
    Entry {
        name,
        kind: b'0',
        data: data.to_vec(),
        link: "",
        mode: 0o644,
        size: None,
        pax: vec![],
    }
}
fn dir(name: &'static str) -> Entry {
    Entry {
        kind: b'5',
        mode: 0o755,
        ..file(name, b"")
    }
}
fn symlink(name: &'static str, to: &'static str) -> Entry {
    Entry {
        kind: b'2',
        link: to,
        mode: 0o777,
        ..file(name, b"")
    }
}
fn hardlink(name: &'static str, to: &'static str) -> Entry {
    Entry {
        kind: b'1',
        link: to,
        ..file(name, b"")
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn header(name: &str, kind: u8, size: u64, link: &str, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_600_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 512 != 0 {
        out.push(0);
    }
}

fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if !e.pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &e.pax {
                let rec_len = |n: usize| n + k.len() + v.len() + 3;
                let mut n = rec_len(1);
                while n.to_string().len() + k.len() + v.len() + 3 != n {
                    n = rec_len(n.to_string().len());
                }
                body.extend(format!("{n} {k}=").bytes());
                body.extend(v);
                body.push(b'\n');
            }
            out.extend(header("PaxHeader", b'x', body.len() as u64, "", 0o644));
            out.extend(body);
            pad(&mut out);
        }
        let size = e.size.unwrap_or(e.data.len() as u64);
        out.extend(header(e.name, e.kind, size, e.link, e.mode));
        out.extend(&e.data);
        pad(&mut out);
    }
    out.extend([0u8; 1024]);
    out
}

/// A sandbox: `outside/` holds a secret that no layer may touch, `target/` is applied into.
struct Sandbox {
    _dir: tempfile::TempDir,
    outside: std::path::PathBuf,
    target: std::path::PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let target = dir.path().join("target");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("secret"), b"do not touch").unwrap();
        fs::create_dir(&target).unwrap();
        Sandbox {
            _dir: dir,
            outside,
            target,
        }
    }

    fn outside_state(&self) -> BTreeMap<String, Vec<u8>> {
        let mut m = BTreeMap::new();
        walk(&self.outside, &self.outside, &mut m);
        m
    }

    fn apply(&self, layer: &[u8], opts: ApplyOptions) -> Result<(), String> {
        let before = self.outside_state();
        let parent_before: Vec<_> = fs::read_dir(self.target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let r = apply_layer(layer, &self.target, opts)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            before,
            self.outside_state(),
            "something outside the target changed"
        );
        let parent_after: Vec<_> = fs::read_dir(self.target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            parent_before, parent_after,
            "something appeared beside the target"
        );
        r
    }
}

fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, Vec<u8>>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = fs::symlink_metadata(&p).unwrap();
        let key = p.strip_prefix(root).unwrap().display().to_string();
        if meta.is_dir() {
            m.insert(key, b"<dir>".to_vec());
            walk(root, &p, m);
        } else if meta.is_file() {
            m.insert(key, fs::read(&p).unwrap());
        } else {
            m.insert(key, format!("<{:o}>", meta.mode()).into_bytes());
        }
    }
}

fn rootless() -> ApplyOptions {
    ApplyOptions {
        whiteouts: Whiteouts::Delete,
        privileged: false,
    }
}

// ------------------------------------------------------------------ well-formed layers

#[test]
fn files_dirs_links_modes_and_times() {
    let sb = Sandbox::new();
    let mut exe = file("bin/tool", b"#!/bin/sh\n");
    exe.mode = 0o4755;
    let layer = tar(&[
        dir("etc/"),
        file("etc/hostname", b"lb\n"),
        exe,
        symlink("etc/link", "hostname"),
        hardlink("etc/hard", "etc/hostname"),
        file("./deep/er/file", b"x"),
    ]);
    sb.apply(&layer, rootless()).unwrap();
    let t = &sb.target;
    assert_eq!(fs::read(t.join("etc/hostname")).unwrap(), b"lb\n");
    assert_eq!(
        fs::read_link(t.join("etc/link")).unwrap(),
        Path::new("hostname")
    );
    assert_eq!(
        fs::metadata(t.join("etc/hard")).unwrap().ino(),
        fs::metadata(t.join("etc/hostname")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(t.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::metadata(t.join("etc/hostname")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(fs::metadata(t.join("etc")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(fs::read(t.join("deep/er/file")).unwrap(), b"x");
}

#[test]
fn read_only_directory_still_takes_its_children() {
    let sb = Sandbox::new();
    let mut ro = dir("ro/");
    ro.mode = 0o555;
    sb.apply(&tar(&[ro, file("ro/inner", b"x")]), rootless())
        .unwrap();
    assert_eq!(fs::read(sb.target.join("ro/inner")).unwrap(), b"x");
    assert_eq!(
        fs::metadata(sb.target.join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );
}

#[test]
fn gzip_and_zstd_layers() {
    let layer = tar(&[file("a", b"compressed")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&layer[..], 3).unwrap();
    for data in [gz, zst] {
        let sb = Sandbox::new();
        sb.apply(&data, rootless()).unwrap();
        assert_eq!(fs::read(sb.target.join("a")).unwrap(), b"compressed");
    }
}

#[test]
fn whiteouts_flattened() {
    let sb = Sandbox::new();
    sb.apply(
        &tar(&[
            file("keep", b"1"),
            file("gone", b"2"),
            dir("d/"),
            file("d/old", b"3"),
        ]),
        rootless(),
    )
    .unwrap();
    sb.apply(
        &tar(&[
            file(".wh.gone", b""),
            dir("d/"),
            file("d/new", b"4"),
            file("d/.wh..wh..opq", b""),
        ]),
        rootless(),
    )
    .unwrap();
    assert!(sb.target.join("keep").exists());
    assert!(!sb.target.join("gone").exists());
    assert!(!sb.target.join("d/old").exists());
    assert!(sb.target.join("d/new").exists());
}

#[test]
fn whiteouts_as_overlay_whiteouts() {
    if !lb_testkit::require_root("overlay whiteouts (mknod, trusted xattrs)") {
        return;
    }
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        whiteouts: Whiteouts::Overlay,
        privileged: true,
    };
    sb.apply(
        &tar(&[
            file(".wh.gone", b""),
            dir("d/"),
            file("d/.wh..wh..opq", b""),
        ]),
        opts,
    )
    .unwrap();
    let meta = fs::symlink_metadata(sb.target.join("gone")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    let mut buf = [0u8; 8];
    let n = rustix::fs::getxattr(
        sb.target.join("d").as_path(),
        "trusted.overlay.opaque",
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..n], b"y");
}

#[test]
fn owners_xattrs_and_devices_as_root() {
    if !lb_testkit::require_root("owners, device nodes, trusted xattrs") {
        return;
    }
    let sb = Sandbox::new();
    let mut owned = file("owned", b"x");
    owned.pax = vec![
        ("uid", b"1234".to_vec()),
        ("gid", b"5678".to_vec()),
        ("SCHILY.xattr.user.test", b"v".to_vec()),
    ];
    let mut null = file("dev/null", b"");
    null.kind = b'3';
    let layer = tar(&[owned, null]);
    let opts = ApplyOptions {
        whiteouts: Whiteouts::Overlay,
        privileged: true,
    };
    sb.apply(&layer, opts).unwrap();
    let meta = fs::metadata(sb.target.join("owned")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    let mut buf = [0u8; 8];
    let n = rustix::fs::getxattr(sb.target.join("owned").as_path(), "user.test", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"v");
    assert!(
        fs::symlink_metadata(sb.target.join("dev/null"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

// ------------------------------------------------------------------ hostile layers

#[test]
fn hostile_dotdot_path_is_refused() {
    let sb = Sandbox::new();
    for name in ["../outside/secret", "a/../../outside/secret", "./../x"] {
        let leaked = Entry {
            name,
            ..file("", b"pwned")
        };
        let e = sb.apply(&tar(&[leaked]), rootless()).unwrap_err();
        assert!(e.contains("outside the layer root"), "{e}");
    }
}

#[test]
fn hostile_absolute_name_lands_inside() {
    let sb = Sandbox::new();
    sb.apply(&tar(&[file("/abs/file", b"inside")]), rootless())
        .unwrap();
    assert_eq!(fs::read(sb.target.join("abs/file")).unwrap(), b"inside");
}

#[test]
fn hostile_symlink_parent_escape_stays_inside() {
    // A symlink to / or to ../outside, then an entry through it: resolved inside the target.
    for to in ["/", "../../../../..", "/.."] {
        let sb = Sandbox::new();
        sb.apply(
            &tar(&[symlink("link", to), file("link/secret", b"pwned")]),
            rootless(),
        )
        .unwrap();
        assert_eq!(fs::read(sb.target.join("secret")).unwrap(), b"pwned");
    }
    // A symlink to a directory missing inside the target: a clear error, nothing outside.
    for to in ["../outside", "/outside/sub"] {
        let sb = Sandbox::new();
        let e = sb
            .apply(
                &tar(&[symlink("link", to), file("link/secret", b"pwned")]),
                rootless(),
            )
            .unwrap_err();
        assert!(e.contains("symlink to a missing directory"), "{e}");
    }
}

#[test]
fn hostile_hardlink_escape_is_refused() {
    let sb = Sandbox::new();
    let e = sb
        .apply(&tar(&[hardlink("h", "../outside/secret")]), rootless())
        .unwrap_err();
    assert!(e.contains("outside the layer root"), "{e}");
    // An absolute target resolves inside the target, where it does not exist.
    assert!(
        sb.apply(&tar(&[hardlink("h2", "/etc/passwd")]), rootless())
            .is_err()
    );
    // Through a symlinked parent pointing out: still inside.
    let r = sb.apply(
        &tar(&[symlink("up", "../outside"), hardlink("h3", "up/secret")]),
        rootless(),
    );
    assert!(r.is_err());
}

#[test]
fn hostile_absolute_symlink_then_write_through_it() {
    let sb = Sandbox::new();
    let secret = sb.outside.join("secret");
    let to: &'static str = Box::leak(secret.display().to_string().into_boxed_str());
    // The second entry replaces the symlink; it never writes through it.
    sb.apply(&tar(&[symlink("s", to), file("s", b"pwned")]), rootless())
        .unwrap();
    assert_eq!(fs::read(sb.target.join("s")).unwrap(), b"pwned");
    assert!(
        !fs::symlink_metadata(sb.target.join("s"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn hostile_whiteout_of_dotdot_is_refused() {
    let sb = Sandbox::new();
    for name in [".wh...", "a/.wh..", ".wh."] {
        let e = sb.apply(&tar(&[file(name, b"")]), rootless()).unwrap_err();
        assert!(
            e.contains("whiteout") || e.contains("outside"),
            "{name}: {e}"
        );
    }
}

#[test]
fn hostile_device_node_when_not_privileged_is_left_out() {
    let sb = Sandbox::new();
    let mut dev = file("kmem", b"");
    dev.kind = b'3';
    sb.apply(&tar(&[dev]), rootless()).unwrap();
    assert!(!sb.target.join("kmem").exists());
}

#[test]
fn hostile_huge_size_field_is_an_error() {
    let sb = Sandbox::new();
    let mut big = file("big", b"tiny");
    big.size = Some(0o77777777777);
    assert!(sb.apply(&tar(&[big]), rootless()).is_err());
}

#[test]
fn hostile_pax_size_disagreeing_with_header() {
    let sb = Sandbox::new();
    let mut liar = file("liar", b"0123456789");
    liar.pax = vec![("size", b"100000".to_vec())];
    assert!(
        sb.apply(&tar(&[liar, file("after", b"x")]), rootless())
            .is_err()
    );
}

#[test]
fn hostile_truncated_tar_is_an_error() {
    let sb = Sandbox::new();
    let layer = tar(&[file("a", &[7u8; 5000])]);
    assert!(sb.apply(&layer[..1500], rootless()).is_err());
}

#[test]
fn hostile_duplicate_entries_last_wins() {
    let sb = Sandbox::new();
    sb.apply(
        &tar(&[file("dup", b"first"), dir("dup/"), file("dup", b"third")]),
        rootless(),
    )
    .unwrap();
    assert_eq!(fs::read(sb.target.join("dup")).unwrap(), b"third");
}

#[test]
fn hostile_bad_gzip_is_an_error() {
    let sb = Sandbox::new();
    let mut bad = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bad.extend([0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
    assert!(sb.apply(&bad, rootless()).is_err());
}

#[test]
fn hostile_unsupported_entry_type_is_an_error() {
    let sb = Sandbox::new();
    let mut odd = file("odd", b"");
    odd.kind = b'V';
    let e = sb.apply(&tar(&[odd]), rootless()).unwrap_err();
    assert!(e.contains("odd"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Corrupted layers never panic and never touch anything outside the target.
    #[test]
    fn corrupted_layers_stay_inside(
        flips in proptest::collection::vec((0usize..6144, proptest::prelude::any::<u8>()), 0..24),
        cut in 0usize..8192,
    ) {
        let mut layer = tar(&[
            dir("d/"),
            symlink("d/up", "../.."),
            file("d/up/x", b"data"),
            hardlink("d/h", "d/up/x"),
            file(".wh.gone", b""),
            file("d/.wh..wh..opq", b""),
        ]);
        for (at, b) in flips {
            let n = layer.len();
            layer[at % n] = b;
        }
        layer.truncate(cut.max(1).min(layer.len()));
        let sb = Sandbox::new();
        let _ = sb.apply(&layer, rootless());
    }
}
