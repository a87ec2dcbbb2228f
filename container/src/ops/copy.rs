//! `cp`'s container side, docker's archive API: the stat of a path in the container
//! ([`Container::stat_path`]), a tar stream of one ([`Container::archive_path`]), and a
//! stream unpacked into a directory of it ([`Container::extract_to_dir`]).
//!
//! Every path is resolved by a forked child whose root *is* the container's: a running
//! container's mount namespace (joined through a pidfd, so a recycled pid cannot send it
//! elsewhere; `setns` makes the namespace's root, the container's, the child's root), or
//! for a stopped one its root file system and volumes mounted in a mount namespace of the
//! child's own, then `chroot`. `..`, absolute symlinks and links planted by the
//! container meanwhile (CVE-2018-15664) all resolve inside it; the child reads and writes
//! nothing else, and loads nothing from the container (no user or group name lookups,
//! CVE-2019-14271). The data crosses to lb through a pipe.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Container;
use crate::archive::{self, Owner};
use crate::{Error, Result};

/// What docker's `ContainerStatPath` gives of a path in a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    /// The path's last element.
    pub name: String,
    pub size: u64,
    /// `st_mode`: the file type and permission bits.
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// For a symlink, where it leads in the container, resolved to the end.
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// How [`Container::extract_to_dir`] unpacks.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// `cp -a`: files belong to the container's user (its `--user`/`USER`) when it has
    /// one; else, as without, to the uid and gid the stream gives.
    pub copy_uid_gid: bool,
}

/// Why the child in the container's root failed: what the caller tells apart, as data.
#[derive(Debug, Serialize, Deserialize)]
enum InRootError {
    NotFound,
    NotDirectory,
    RootfsReadOnly,
    VolumeReadOnly,
    Other(String),
}

impl<E: std::fmt::Display> From<E> for InRootError {
    fn from(e: E) -> InRootError {
        InRootError::Other(e.to_string())
    }
}

fn lstat(path: &str) -> std::result::Result<std::fs::Metadata, InRootError> {
    std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InRootError::NotFound,
        _ => InRootError::Other(format!("{path}: {e}")),
    })
}

impl Container<'_> {
    /// The stat of `path` (read as docker reads it: see [`archive::clean_path`]).
    pub fn stat_path(&self, path: &str) -> Result<PathStat> {
        let abs = archive::clean_path(path);
        let mut out = Vec::new();
        let mut read = |r: &mut dyn Read| r.read_to_end(&mut out).map(drop);
        self.in_root(&abs, false, Pipe::FromChild(&mut read), |data| {
            let md = lstat(&abs)?;
            let link_target = if md.file_type().is_symlink() {
                let root = lb_rootpath::Root::open(Path::new("/"))?;
                root.resolve(Path::new(&abs), true)?.display().to_string()
            } else {
                String::new()
            };
            use std::os::unix::fs::MetadataExt;
            let stat = PathStat {
                name: archive::split_dir_entry(&abs).1,
                size: md.size(),
                mode: md.mode(),
                mtime: md.mtime(),
                link_target,
            };
            serde_json::to_writer(data, &stat)?;
            Ok(())
        })?;
        serde_json::from_slice(&out).map_err(|e| Error::Corrupt {
            path: self.dir.clone(),
            reason: format!("stat of {abs}: {e}"),
        })
    }

    /// Gives `consume` the tar stream of `path` (a symlink as itself), its top entry
    /// named `name` (docker: the path's last element). An error of `consume`'s is the
    /// result (the copy in the container then ends on a broken pipe).
    pub fn archive_path(
        &self,
        path: &str,
        name: Option<&str>,
        consume: &mut dyn FnMut(&mut dyn Read) -> std::io::Result<()>,
    ) -> Result<()> {
        let abs = archive::clean_path(path);
        let name = match name {
            Some(n) => n.to_string(),
            None => archive::split_dir_entry(&abs).1,
        };
        self.in_root(&abs, false, Pipe::FromChild(consume), |data| {
            lstat(&abs)?;
            archive::write_tree(std::io::BufWriter::new(data), Path::new(&abs), &name)?;
            Ok(())
        })
    }

    /// Unpacks the tar stream `produce` writes into the directory `path`, as docker's
    /// extraction into a container: refused for a read-only root file system or volume,
    /// never replacing a directory with a file or the other way round.
    pub fn extract_to_dir(
        &self,
        path: &str,
        produce: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
        opts: ExtractOptions,
    ) -> Result<()> {
        let abs = archive::clean_path(path);
        let spec = &self.record.config.spec;
        let read_only_root = spec.root().as_ref().and_then(|r| r.readonly()) == Some(true);
        let binds: Vec<(PathBuf, bool)> = self
            .user_mounts()
            .map(|m| {
                let ro = m.options().iter().flatten().any(|o| o == "ro");
                (m.destination().clone(), ro)
            })
            .collect();
        let user = self.record.config.user.clone().unwrap_or_default();
        self.in_root(&abs, true, Pipe::ToChild(produce), |data| {
            if !lstat(&abs)?.is_dir() {
                return Err(InRootError::NotDirectory);
            }
            // The directory as the kernel resolves it, to tell which mount it is on.
            let real = std::fs::canonicalize(&abs)?;
            let volume = binds
                .iter()
                .filter(|(d, _)| real.starts_with(d))
                .max_by_key(|(d, _)| d.as_os_str().len());
            match volume {
                Some((_, true)) => return Err(InRootError::VolumeReadOnly),
                None if read_only_root => return Err(InRootError::RootfsReadOnly),
                _ => {}
            }
            let owner = if opts.copy_uid_gid && !user.is_empty() {
                let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
                let u =
                    lb_runtime::user::resolve(&user, &read("/etc/passwd"), &read("/etc/group"))?;
                Owner::Set(u.uid, u.gid)
            } else {
                Owner::Kept
            };
            archive::untar(std::io::BufReader::new(data), &real, owner)?;
            Ok(())
        })
    }

    /// The container's binds and volumes, as its spec mounts them (not the files lb binds
    /// itself: /etc/hosts and the like live in its directory).
    fn user_mounts(&self) -> impl Iterator<Item = &oci_spec::runtime::Mount> {
        let own = self.dir.clone();
        self.record
            .config
            .spec
            .mounts()
            .iter()
            .flatten()
            .filter(move |m| {
                m.typ().as_deref() == Some("bind")
                    && m.source().as_ref().is_some_and(|s| !s.starts_with(&own))
            })
    }

    /// Runs `job` in a forked child whose root is the container's (see the module's
    /// comment), streaming `pipe` between lb and the job's end of it; the job's error as
    /// the caller's. `abs` is the container path the job works on (for messages);
    /// `writable` mounts a stopped container's file system writable.
    fn in_root(
        &self,
        abs: &str,
        writable: bool,
        pipe: Pipe<'_>,
        job: impl FnOnce(File) -> std::result::Result<(), InRootError>,
    ) -> Result<()> {
        let sys = |what, errno| Error::Sys { what, errno };
        let st = self.state();
        // A running container's namespace, held before the fork: the child joins this one
        // or none.
        let namespace = if st.running() {
            Some(self.pidfd(&st)?)
        } else {
            None
        };
        // The container's procfs mounts, which the child takes away in its copy of the
        // namespace: a magic link there (`/proc/1/fd/N`, `/proc/1/root`) is not a path
        // to resolve, and could lead to whatever a container process holds open.
        let procfs = match namespace {
            Some(_) => procfs_mounts(st.pid),
            None => Vec::new(),
        };
        let mount_at = self.dir.join(format!("cp-{}", std::process::id()));
        let (report_r, report_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
        let (data_r, data_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
        let (ours, theirs) = match pipe {
            Pipe::FromChild(_) => (data_r, data_w),
            Pipe::ToChild(_) => (data_w, data_r),
        };
        let rootfs = match namespace {
            Some(_) => None,
            None => Some(crate::rootfs::rootfs(self.store, &self.record, &self.dir)?),
        };
        let mounts: Vec<oci_spec::runtime::Mount> = self.user_mounts().cloned().collect();
        // SAFETY: the child enters the root, runs the job and exits; it never returns into
        // lb's code.
        let child = match unsafe { nix::unistd::fork() }.map_err(|e| sys("fork", e))? {
            nix::unistd::ForkResult::Child => {
                drop(report_r);
                drop(ours);
                let mut report = File::from(report_w);
                let entered = match &namespace {
                    Some(ns) => join_namespace(ns, &procfs),
                    None => mount_and_chroot(
                        rootfs.as_ref().expect("a stopped container's rootfs"),
                        &mounts,
                        &mount_at,
                        writable,
                    ),
                };
                let done = entered.and_then(|()| job(File::from(theirs)));
                let code = match done {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = serde_json::to_writer(&mut report, &e);
                        1
                    }
                };
                // SAFETY: leaving the forked child without running the parent's exit code.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        drop(report_w);
        drop(theirs);
        drop(namespace);
        let mut ours = File::from(ours);
        let streamed = match pipe {
            Pipe::FromChild(consume) => consume(&mut ours),
            Pipe::ToChild(produce) => produce(&mut ours),
        };
        drop(ours);
        let mut said = Vec::new();
        let _ = File::from(report_r).read_to_end(&mut said);
        let status = nix::sys::wait::waitpid(child, None).map_err(|e| sys("waitpid", e))?;
        let _ = std::fs::remove_dir(&mount_at);
        let ok = matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0));
        // A broken pipe on lb's side is explained by the child's failure; any other
        // failure of lb's side explains the child's (a broken pipe there).
        match streamed {
            Err(e) if ok || e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(Error::Copy(e.to_string()));
            }
            Ok(()) if ok => return Ok(()),
            _ => {}
        }
        Err(match serde_json::from_slice::<InRootError>(&said) {
            Ok(InRootError::NotFound) => Error::NoSuchPath(abs.to_string()),
            Ok(InRootError::NotDirectory) => Error::ExtractPointNotDirectory,
            Ok(InRootError::RootfsReadOnly) => Error::RootfsReadOnly,
            Ok(InRootError::VolumeReadOnly) => Error::VolumeReadOnly,
            Ok(InRootError::Other(message)) => Error::Copy(message),
            Err(_) => Error::Copy(format!("the copy in the container ended: {status:?}")),
        })
    }

    /// A pidfd of the container's first process, checked to be that process still.
    fn pidfd(&self, st: &lb_runtime::state::State) -> Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, st.pid, 0) };
        if fd < 0 {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                self.record.id
            )));
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if lb_runtime::state::pid_start_time(st.pid) != Some(st.pid_start) {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                self.record.id
            )));
        }
        Ok(fd)
    }
}

/// Which way the data goes between lb and the child.
enum Pipe<'a> {
    FromChild(&'a mut dyn FnMut(&mut dyn Read) -> std::io::Result<()>),
    ToChild(&'a mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>),
}

/// The child joins the running container's mount namespace (its root and working
/// directory become the namespace's root, the container's pivoted root), then takes a
/// private copy of it without the `procfs` mounts.
fn join_namespace(pidfd: &OwnedFd, procfs: &[PathBuf]) -> std::result::Result<(), InRootError> {
    // SAFETY: setns on a pidfd with one namespace flag.
    let r = unsafe { libc::setns(pidfd.as_raw_fd(), libc::CLONE_NEWNS) };
    if r != 0 {
        return Err(InRootError::Other(format!(
            "joining the container's mount namespace: {}",
            std::io::Error::last_os_error()
        )));
    }
    std::env::set_current_dir("/")?;
    lb_runtime::rootfs::private_mount_namespace()?;
    for p in procfs.iter().rev() {
        nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("detaching {}: {e}", p.display()))?;
    }
    Ok(())
}

/// The mount points of procfs in the mount namespace of `pid`, in mount order.
fn procfs_mounts(pid: i32) -> Vec<PathBuf> {
    lb_runtime::mountinfo::of_process(&pid.to_string())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fstype == "proc")
        .map(|m| m.mount_point)
        .collect()
}
/// The child mounts a stopped container's root file system at `at` (with its binds and
/// volumes, each resolved inside it) in a mount namespace of its own, and makes it its
/// root.
fn mount_and_chroot(
    rootfs: &lb_runtime::Rootfs,
    mounts: &[oci_spec::runtime::Mount],
    at: &Path,
    writable: bool,
) -> std::result::Result<(), InRootError> {
    lb_runtime::rootfs::private_mount_namespace()?;
    std::fs::create_dir_all(at)?;
    if let lb_runtime::Rootfs::Overlay(layers) = rootfs {
        // A container never started has no upper directory yet.
        std::fs::create_dir_all(&layers.upper)?;
        std::fs::create_dir_all(&layers.work)?;
    }
    rootfs.mount(at)?;
    let root = File::open(at)?;
    for m in mounts {
        lb_runtime::rootfs::mount_one(at, root.as_raw_fd(), m)?;
    }
    if !writable {
        let _ = nix::mount::mount(
            None::<&str>,
            at,
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT
                | nix::mount::MsFlags::MS_BIND
                | nix::mount::MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
    nix::unistd::chroot(at)?;
    std::env::set_current_dir("/")?;
    Ok(())
}
