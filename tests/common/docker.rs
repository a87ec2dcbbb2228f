//! A dockerd of a test's own, to run a scenario against docker 20.10 and lb alike: no
//! bridge, no iptables, a data root of its own that it removes.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Env, lb, setup, text};

/// A dockerd of this test's own, stopped (and its data removed) when dropped.
pub struct Docker {
    daemon: Child,
    sock: String,
    data: tempfile::TempDir,
}

impl Docker {
    pub fn start() -> Option<Docker> {
        if !lb_testkit::require_root("dockerd")
            || !lb_testkit::require_tools(
                "docker.io (dockerd and the docker CLI)",
                &["/usr/sbin/dockerd", "/usr/bin/docker"],
            )
        {
            return None;
        }
        // overlay2 needs a data root on a file system that is not itself an overlay.
        let data = tempfile::Builder::new()
            .prefix("lb-difftest.")
            .tempdir_in("/var/tmp")
            .unwrap();
        let sock = format!("unix://{}", data.path().join("docker.sock").display());
        let daemon = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(data.path().join("root"))
            .arg("--exec-root")
            .arg(data.path().join("exec"))
            .arg("--pidfile")
            .arg(data.path().join("docker.pid"))
            .args(["-H", &sock, "--bridge=none", "--iptables=false"])
            .args(["--ip-forward=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("dockerd.log")).unwrap())
            .spawn()
            .expect("start dockerd");
        let docker = Docker { daemon, sock, data };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker.cmd(&["version"]).output().unwrap().status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer in 60 s: {}",
                std::fs::read_to_string(docker.data.path().join("dockerd.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(docker)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.env("DOCKER_HOST", &self.sock)
            .env("DOCKER_BUILDKIT", "1")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `docker ARGS...`, which must succeed: its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
        // dockerd leaves its overlay mounts only when killed hard, and the host network's
        // namespace bound under its exec root (`exec/netns/default`, made by a `--network
        // host` container) always; unmount what is left so the data root can go.
        for dir in ["root", "exec/netns/default"] {
            let _ = Command::new("umount")
                .args(["-R", "-l"])
                .arg(self.data.path().join(dir))
                .output();
        }
    }
}

/// `lb` or `docker`, run the same way.
pub trait Tool {
    fn run(&self, args: &[&str]) -> Output;
    fn name(&self) -> &'static str;
    /// `ARGS...` to spawn, with no input (the caller may give it some).
    fn command(&self, args: &[&str]) -> Command;
    /// The tool as a shell command line starts it (`script -c` runs it under a terminal).
    fn shell_words(&self) -> String;

    /// `ARGS...`, which must succeed: its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name(),
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

impl Tool for Env {
    fn run(&self, args: &[&str]) -> Output {
        lb(self, args)
    }
    fn name(&self) -> &'static str {
        "lb"
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lb"));
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null());
        c
    }
    fn shell_words(&self) -> String {
        format!(
            "{} --root {}",
            env!("CARGO_BIN_EXE_lb"),
            self.root.display()
        )
    }
}

impl Tool for Docker {
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn name(&self) -> &'static str {
        "docker"
    }
    fn command(&self, args: &[&str]) -> Command {
        self.cmd(args)
    }
    fn shell_words(&self) -> String {
        format!("DOCKER_HOST={} /usr/bin/docker", self.sock)
    }
}

/// A store with the busybox test image, and a dockerd of the test's own with the same
/// image as `busybox`; None when the test is skipped.
pub fn both() -> Option<(Env, Docker)> {
    let env = setup()?;
    let docker = Docker::start()?;
    let work = tempfile::tempdir().unwrap();
    let base = lb_testkit::busybox_rootfs(work.path()).unwrap();
    docker.ok(&["import", base.to_str().unwrap(), "busybox"]);
    Some((env, docker))
}
