//! `lb import`, `images`, `tag`, `rmi`, `inspect` end to end on a store in a temporary root,
//! and the store read by other tools (`skopeo`, `umoci`) as the OCI layout it is.

use std::path::Path;
use std::process::{Command, Output};

fn lb(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run lb")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small root file system tar, gzip-compressed.
fn rootfs(dir: &Path) -> std::path::PathBuf {
    let tgz = dir.join("rootfs.tar.gz");
    let file = std::fs::File::create(&tgz).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o755);
    h.set_size(10);
    h.set_cksum();
    b.append_data(&mut h, "bin/hello", &b"#!/bin/sh\n"[..])
        .unwrap();
    b.into_inner().unwrap().finish().unwrap();
    tgz
}

#[test]
fn import_tag_images_inspect_rmi() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tgz = rootfs(dir.path());
    let out = lb(&root, &["import", tgz.to_str().unwrap(), "demo:1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    assert!(
        lb(&root, &["tag", "demo:1", "localhost:5000/demo"])
            .status
            .success()
    );
    let out = lb(&root, &["images"]);
    let listing = text(&out.stdout);
    assert!(listing.starts_with("REPOSITORY"), "{listing}");
    assert!(
        listing.contains("demo ") && listing.contains("localhost:5000/demo"),
        "{listing}"
    );
    // docker's CREATED column: just imported.
    assert!(
        listing.contains("Less than a second ago")
            || listing.contains(" second ago")
            || listing.contains(" seconds ago"),
        "{listing}"
    );
    assert_eq!(
        text(&lb(&root, &["images", "-q"]).stdout).trim(),
        &id[7..19]
    );

    let out = lb(&root, &["inspect", "demo:1"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["Os"], "linux");
    assert_eq!(
        v[0]["RepoTags"],
        serde_json::json!(["demo:1", "localhost:5000/demo:latest"])
    );
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);

    let out = lb(&root, &["history", "demo:1"]);
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert!(lines[0].starts_with("IMAGE"), "{lines:?}");
    assert!(
        lines[1].starts_with(&id[7..19]) && lines[1].contains("lb import"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 2);

    let out = lb(&root, &["rmi", "localhost:5000/demo"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("Untagged: localhost:5000/demo:latest@sha256:"));
    let out = lb(&root, &["rmi", "localhost:5000/demo"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_input_is_refused_and_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tgz = rootfs(dir.path());
    assert!(
        lb(&root, &["import", tgz.to_str().unwrap(), "good"])
            .status
            .success()
    );
    let before = std::fs::read(root.join("index.json")).unwrap();
    let blobs = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .count();

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"this is not a tar archive").unwrap();
    let out = lb(&root, &["import", junk.to_str().unwrap(), "junk"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(junk.to_str().unwrap()),
        "{}",
        text(&out.stderr)
    );
    let out = lb(&root, &["import", tgz.to_str().unwrap(), "Bad_Name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Bad_Name"),
        "{}",
        text(&out.stderr)
    );
    // docker's answer for a name that is neither a container nor an image.
    let out = lb(&root, &["inspect", "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "[]\n");
    assert_eq!(text(&out.stderr), "Error: No such object: missing\n");

    assert_eq!(before, std::fs::read(root.join("index.json")).unwrap());
    assert_eq!(
        blobs,
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count()
    );
}

/// Needs Debian's skopeo and umoci (installed by scripts/setup-debian.sh).
#[test]
fn skopeo_and_umoci_read_the_store() {
    if !lb_testkit::require_tools("skopeo and umoci", &["skopeo", "umoci"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tgz = rootfs(dir.path());
    assert!(
        lb(&root, &["import", tgz.to_str().unwrap(), "interop:1"])
            .status
            .success()
    );
    let name = format!("{}:docker.io/library/interop:1", root.display());
    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci:{name}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let bundle = dir.path().join("bundle");
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &name,
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read(bundle.join("rootfs/bin/hello")).unwrap(),
        b"#!/bin/sh\n"
    );
}

fn id(root: &Path, name: &str) -> String {
    let out = lb(root, &["inspect", name]);
    assert!(
        out.status.success(),
        "inspect {name}: {}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn save_then_load_elsewhere_inspects_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let tgz = rootfs(dir.path());
    assert!(
        lb(&a, &["import", tgz.to_str().unwrap(), "saved:1"])
            .status
            .success()
    );
    let archive = dir.path().join("saved.tar");
    let out = lb(&a, &["save", "saved:1", "-o", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lb(&b, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Loaded image: saved:1\n");
    assert_eq!(id(&a, "saved:1"), id(&b, "saved:1"));
}

#[test]
fn bad_archives_are_refused_and_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tgz = rootfs(dir.path());
    assert!(
        lb(&root, &["import", tgz.to_str().unwrap(), "keep"])
            .status
            .success()
    );
    let blobs = || {
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = (std::fs::read(root.join("index.json")).unwrap(), blobs());

    // A blob whose bytes do not match its name.
    let forged = dir.path().join("forged.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&forged).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    let name = format!("blobs/sha256/{}", "ab".repeat(32));
    b.append_data(&mut h, name, &b"wrong"[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    // An archive with no image in it, and bytes that are no tar at all.
    let empty = dir.path().join("empty.tar");
    tar::Builder::new(std::fs::File::create(&empty).unwrap())
        .finish()
        .unwrap();
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"no tar here").unwrap();

    for bad in [&forged, &empty, &junk] {
        let out = lb(&root, &["load", "-i", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", bad.display());
        assert!(
            text(&out.stderr).contains(bad.to_str().unwrap()),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(
            before,
            (std::fs::read(root.join("index.json")).unwrap(), blobs()),
            "{}",
            bad.display()
        );
    }
}

/// skopeo and umoci read lb's archive; archives skopeo writes (OCI and docker) load into lb
/// and inspect equal.
#[test]
fn archives_interoperate_with_skopeo_and_umoci() {
    if !lb_testkit::require_tools("skopeo and umoci", &["skopeo", "umoci"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tgz = rootfs(dir.path());
    assert!(
        lb(&root, &["import", tgz.to_str().unwrap(), "inter:2"])
            .status
            .success()
    );
    let want = id(&root, "inter:2");
    let saved = dir.path().join("saved.tar");
    assert!(
        lb(&root, &["save", "inter:2", "-o", saved.to_str().unwrap()])
            .status
            .success()
    );

    let out = Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", saved.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo: {}", text(&out.stderr));
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&saved)
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(st.success());
    let bundle = dir.path().join("bundle");
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:docker.io/library/inter:2", layout.display()),
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", text(&out.stderr));
    assert!(bundle.join("rootfs/bin/hello").is_file());

    let src = format!("oci:{}:docker.io/library/inter:2", root.display());
    for (i, transport) in ["oci-archive", "docker-archive"].iter().enumerate() {
        let file = dir.path().join(format!("skopeo-{i}.tar"));
        let dest = format!("{transport}:{}:inter:2", file.display());
        let out = Command::new("skopeo")
            .args(["copy", "-q", &src, &dest])
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));
        let other = dir.path().join(format!("other-{i}"));
        let out = lb(&other, &["load", "-i", file.to_str().unwrap()]);
        assert!(out.status.success(), "{transport}: {}", text(&out.stderr));
        assert_eq!(id(&other, "inter:2"), want, "{transport}");
    }
}

/// The test base image: `testdata/make-busybox-rootfs.sh` gives the same bytes every time,
/// imports as one layer, and applies to a tree where `/bin/sh` is busybox.
#[test]
fn busybox_base_image() {
    if !lb_testkit::require_tools("busybox-static", &["/bin/busybox"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-busybox-rootfs.sh");
    let make = |out: &Path| {
        let st = Command::new("bash").arg(&script).arg(out).output().unwrap();
        assert!(st.status.success(), "{}", text(&st.stderr));
    };
    let (t1, t2) = (dir.path().join("bb1.tar"), dir.path().join("bb2.tar"));
    make(&t1);
    make(&t2);
    assert_eq!(std::fs::read(&t1).unwrap(), std::fs::read(&t2).unwrap());

    let root = dir.path().join("store");
    assert!(
        lb(&root, &["import", t1.to_str().unwrap(), "busybox"])
            .status
            .success()
    );
    let out = lb(&root, &["inspect", "busybox"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer: lb_layerstore::Digest = layers[0].as_str().unwrap().parse().unwrap();
    assert_eq!(
        layer,
        lb_layerstore::Digest::of(&std::fs::read(&t1).unwrap())
    );

    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let blob = std::fs::File::open(root.join("blobs/sha256").join(layer.hex())).unwrap();
    lb_layerstore::apply_layer(blob, &tree, lb_layerstore::ApplyOptions::for_snapshot()).unwrap();
    assert_eq!(
        std::fs::read_link(tree.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let out = Command::new(tree.join("bin/busybox"))
        .arg("true")
        .status()
        .unwrap();
    assert!(out.success());
}

#[test]
fn import_change_sets_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tgz = rootfs(dir.path());
    let out = lb(
        &root,
        &[
            "import",
            "--change",
            "ENV PATH=/bin A=b",
            "-c",
            "CMD hello $A",
            "-c",
            "EXPOSE 8080",
            "-c",
            "LABEL team=core",
            tgz.to_str().unwrap(),
            "configured",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect: serde_json::Value =
        serde_json::from_slice(&lb(&root, &["inspect", "configured"]).stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["Env"], serde_json::json!(["PATH=/bin", "A=b"]));
    // A shell-form CMD is kept as written, under /bin/sh -c.
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "hello $A"])
    );
    assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(config["Labels"], serde_json::json!({"team": "core"}));
    // A bad change names itself and stores nothing.
    let out = lb(
        &root,
        &["import", "-c", "EXPOSE nope", tgz.to_str().unwrap(), "bad"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("--change \"EXPOSE nope\"") && err.contains("invalid containerPort"),
        "{err}"
    );
    assert!(!text(&lb(&root, &["images"]).stdout).contains("bad"));
}
