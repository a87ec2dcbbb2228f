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

/// A CNCF distribution registry (Debian's `docker-registry`) on a free loopback port,
/// storing under its own directory; killed when dropped.
pub struct TestRegistry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`: the domain of references to it.
    pub addr: String,
    pub dir: std::path::PathBuf,
}

/// How a [`TestRegistry`] lets clients in.
pub enum RegistryAuth<'a> {
    Anonymous,
    /// An htpasswd file (bcrypt) of the users.
    Htpasswd(&'a Path),
    /// Bearer tokens from `realm`, for `service`, signed by `issuer` with a key whose
    /// certificate is `root_cert` (PEM).
    Token {
        realm: &'a str,
        service: &'a str,
        issuer: &'a str,
        root_cert: &'a Path,
    },
}

/// A free TCP port on 127.0.0.1 (free when asked: the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl TestRegistry {
    /// Starts a registry under `dir`; `None` when the test is skipped (no docker-registry).
    pub fn start(dir: &Path, auth: RegistryAuth) -> Option<TestRegistry> {
        Self::start_with(dir, auth, None)
    }

    /// As [`TestRegistry::start`], serving https with `tls` (certificate, key) when given.
    pub fn start_with(
        dir: &Path,
        auth: RegistryAuth,
        tls: Option<(&Path, &Path)>,
    ) -> Option<TestRegistry> {
        if !require_tools("docker-registry", &["/usr/bin/docker-registry"]) {
            return None;
        }
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let auth = match auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Htpasswd(file) => format!(
                "auth:\n  htpasswd:\n    realm: lb-test\n    path: {}\n",
                file.display()
            ),
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                root_cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert.display()
            ),
        };
        let tls = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls}{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Self::spawn(dir, &addr);
        Some(TestRegistry {
            child,
            addr,
            dir: dir.to_path_buf(),
        })
    }

    /// Runs the registry of `dir/config.yml` and waits until it listens on `addr`.
    fn spawn(dir: &Path, addr: &str) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("registry.log"))
            .unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not listen on {addr} in 20 s: {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    /// Starts the registry again after [`TestRegistry::kill`], same address and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.dir, &self.addr);
    }

    /// Kills the registry now (a fault in the middle of a transfer).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}
