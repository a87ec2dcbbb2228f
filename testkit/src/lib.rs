//! Test-only helpers shared by every crate of the workspace: the one place that decides
//! whether a test that needs root, an installed tool or the shared conformance data runs,
//! is skipped with a printed reason, or fails because CI forbids skipping
//! (`LB_REQUIRE_PRIVILEGED_TESTS=1`). It knows nothing of lb itself.

use std::path::Path;
use std::process::Command;

/// The test cannot run for `reason`: prints why and returns false, or panics when
/// `LB_REQUIRE_PRIVILEGED_TESTS=1` forbids skipping.
pub fn skip(reason: &str) -> bool {
    if std::env::var("LB_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("{reason} (LB_REQUIRE_PRIVILEGED_TESTS=1 forbids skipping)");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Whether the test runs as root; otherwise [`skip`]s, naming `what` needs root.
pub fn require_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(&format!("{what} needs root"))
}

/// Whether every tool is installed (an absolute path exists, or `TOOL --version` runs);
/// otherwise [`skip`]s, naming `what` (scripts/setup-debian.sh installs them).
pub fn require_tools(what: &str, tools: &[&str]) -> bool {
    let runs = |t: &str| {
        if t.starts_with('/') {
            return Path::new(t).exists();
        }
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if tools.iter().all(|t| runs(t)) {
        return true;
    }
    skip(&format!(
        "{what} required (scripts/setup-debian.sh installs it)"
    ))
}

/// Makes the test base image's root file system (`testdata/make-busybox-rootfs.sh`, from
/// Debian's `busybox-static`) as `DIR/busybox.tar`; `None` when the test is skipped.
pub fn busybox_rootfs(dir: &Path) -> Option<std::path::PathBuf> {
    if !require_tools("busybox-static", &["/bin/busybox"]) {
        return None;
    }
    let tar = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/make-busybox-rootfs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(tar)
}
