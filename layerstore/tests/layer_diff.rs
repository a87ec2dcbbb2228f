//! Diff: an upper directory to a layer tar that applies back to the same tree, byte-for-byte
//! reproducible, with overlay whiteouts translated and digests computed in the same pass.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use lb_layerstore::{
    ApplyOptions, DiffOptions, Digest, LayerCompression, Whiteouts, apply_layer, write_diff,
};

fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            let key = p.strip_prefix(root).unwrap().display().to_string();
            let desc = if meta.is_dir() {
                walk(root, &p, m);
                format!("dir {:o}", meta.permissions().mode() & 0o7777)
            } else if meta.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if meta.is_file() {
                format!(
                    "file {:o} {} {}",
                    meta.permissions().mode() & 0o7777,
                    meta.mtime(),
                    String::from_utf8_lossy(&fs::read(&p).unwrap())
                )
            } else {
                format!("special {:o} {}", meta.mode(), meta.rdev())
            };
            m.insert(key, desc);
        }
    }
    walk(root, root, &mut m);
    m
}

fn sample_upper(dir: &Path) {
    fs::create_dir_all(dir.join("etc/app")).unwrap();
    fs::write(dir.join("etc/app/config"), b"key=value\n").unwrap();
    fs::set_permissions(
        dir.join("etc/app/config"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::write(dir.join("bin"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("bin"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("app/config", dir.join("etc/link")).unwrap();
    fs::hard_link(dir.join("bin"), dir.join("bin2")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(dir.join(&long)).unwrap();
    fs::write(dir.join(&long).join("f".repeat(90)), b"long name").unwrap();
}

fn diff(
    upper: &Path,
    c: LayerCompression,
    epoch: Option<i64>,
) -> (Vec<u8>, lb_layerstore::LayerDiff) {
    let mut out = Vec::new();
    let d = write_diff(
        upper,
        &mut out,
        c,
        DiffOptions {
            source_date_epoch: epoch,
        },
    )
    .unwrap();
    (out, d)
}

#[test]
fn diff_then_apply_round_trips() {
    let upper = tempfile::tempdir().unwrap();
    sample_upper(upper.path());
    let (layer, d) = diff(upper.path(), LayerCompression::None, None);
    assert_eq!(d.diff_id, Digest::of(&layer));
    assert_eq!((d.size, d.blob_digest), (layer.len() as u64, d.diff_id));
    let out = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        whiteouts: Whiteouts::Delete,
        privileged: false,
    };
    let stats = apply_layer(&layer[..], out.path(), opts).unwrap();
    assert_eq!(stats.diff_id, d.diff_id);
    assert_eq!(tree(upper.path()), tree(out.path()));
    let a = fs::metadata(out.path().join("bin")).unwrap();
    assert_eq!(
        a.ino(),
        fs::metadata(out.path().join("bin2")).unwrap().ino()
    );
}

#[test]
fn entries_are_sorted_numeric_and_reproducible() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    sample_upper(a.path());
    sample_upper(b.path());
    // Different mtimes, clamped by SOURCE_DATE_EPOCH: the same layer.
    let (la, da) = diff(a.path(), LayerCompression::None, Some(1_000));
    let (lb, db) = diff(b.path(), LayerCompression::None, Some(1_000));
    assert_eq!(da.diff_id, db.diff_id);
    assert_eq!(la, lb);
    let mut archive = tar::Archive::new(&la[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 1_000);
            assert!(e.header().username_bytes().is_none_or(|u| u.is_empty()));
            String::from_utf8_lossy(&e.path_bytes()).into_owned()
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"etc/".to_string()));
}

#[test]
fn compressed_in_the_same_pass() {
    let upper = tempfile::tempdir().unwrap();
    sample_upper(upper.path());
    let (plain, d0) = diff(upper.path(), LayerCompression::None, Some(5));
    for c in [LayerCompression::Gzip(6), LayerCompression::Zstd(3)] {
        let (blob, d) = diff(upper.path(), c, Some(5));
        assert_eq!(d.diff_id, d0.diff_id, "{c:?}");
        assert_eq!(d.blob_digest, Digest::of(&blob));
        assert_eq!(d.blob_size, blob.len() as u64);
        let mut raw = Vec::new();
        lb_layerstore::decompressed(&blob[..])
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw, plain, "{c:?}");
        let into = tempfile::tempdir().unwrap();
        let opts = ApplyOptions {
            whiteouts: Whiteouts::Delete,
            privileged: false,
        };
        assert_eq!(
            apply_layer(&blob[..], into.path(), opts).unwrap().diff_id,
            d0.diff_id
        );
        if let LayerCompression::Gzip(_) = c {
            // The parallel encoder's output is ordinary gzip to GNU gzip too.
            let file = tempfile::NamedTempFile::new().unwrap();
            fs::write(file.path(), &blob).unwrap();
            let st = std::process::Command::new("gzip")
                .arg("-t")
                .arg(file.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
}

#[test]
fn overlay_whiteouts_are_translated() {
    if !lb_testkit::require_root("overlay whiteouts") {
        return;
    }
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        u.join("gone").as_path(),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    // An old time: applying the whiteout must give it back, not the time it is applied at.
    let old = rustix::fs::Timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        u.join("gone").as_path(),
        &rustix::fs::Timestamps {
            last_access: old,
            last_modification: old,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    fs::create_dir(u.join("opaque")).unwrap();
    rustix::fs::setxattr(
        u.join("opaque").as_path(),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(u.join("opaque/new"), b"n").unwrap();
    let (layer, _) = diff(u, LayerCompression::None, None);
    let mut archive = tar::Archive::new(&layer[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(
        names,
        vec![".wh.gone", "opaque/", "opaque/.wh..wh..opq", "opaque/new"]
    );
    // And back: applied as overlay whiteouts, the upper dir comes out again.
    let out = tempfile::tempdir().unwrap();
    apply_layer(
        &layer[..],
        out.path(),
        ApplyOptions {
            whiteouts: Whiteouts::Overlay,
            privileged: true,
        },
    )
    .unwrap();
    let (again, _) = diff(out.path(), LayerCompression::None, None);
    assert_eq!(layer, again);
}
