//! A network namespace kept in a file, as `ip netns add` keeps one: a thread unshares a new
//! network namespace and bind-mounts its `/proc/thread-self/ns/net` onto the file, so the
//! namespace lives (with nothing in it) until the file is unmounted.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::{Error, Result};

/// Makes a new network namespace held by `file` (created empty).
pub fn create(file: &Path) -> Result<()> {
    std::fs::File::create(file).map_err(|e| Error::setup(file.display().to_string(), e))?;
    let target = file.to_path_buf();
    // unshare affects only the calling thread's namespace: a thread of its own, which
    // ends right after.
    std::thread::spawn(move || -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::setup("unshare a network namespace", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::setup(format!("bind the namespace to {}", target.display()), e))
    })
    .join()
    .map_err(|_| Error::setup("network namespace", "the thread panicked"))?
}

/// Drops the namespace `file` holds and the file (nothing when they are gone already).
pub fn remove(file: &Path) -> Result<()> {
    match umount2(file, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::setup(format!("unmount {}", file.display()), e)),
    }
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::setup(file.display().to_string(), e)),
    }
}

/// Mounts the sysfs of the namespace `file` holds on `dir` (made if need be), read-only.
/// While it is mounted, the kernel keeps that namespace's sysfs superblock: a container
/// joining the namespace mounts `/sys` by reusing it instead of building one (~1 ms a
/// start). The namespace lives until this mount is gone too ([`drop_sysfs`]).
pub fn hold_sysfs(file: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::setup(dir.display().to_string(), e))?;
    let ns = std::fs::File::open(file).map_err(|e| Error::setup(file.display().to_string(), e))?;
    let target = dir.to_path_buf();
    // sysfs shows the network namespace of the thread that mounts it: a thread of its
    // own joins the namespace, and ends right after.
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::setup("join a network namespace", e))?;
        mount(
            Some("sysfs"),
            &target,
            Some("sysfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| Error::setup(format!("mount sysfs on {}", target.display()), e))
    })
    .join()
    .map_err(|_| Error::setup("sysfs", "the thread panicked"))?
}

/// Undoes [`hold_sysfs`] (nothing when it is gone already).
pub fn drop_sysfs(dir: &Path) -> Result<()> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::setup(format!("unmount {}", dir.display()), e)),
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::setup(dir.display().to_string(), e)),
    }
}
