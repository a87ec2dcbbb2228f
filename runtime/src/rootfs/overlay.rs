//! Overlay mounts: a container's or a build step's root file system as an overlay of
//! read-only lower directories (with an upper and a work directory when writable), and
//! the probe that tells whether overlayfs can be mounted here at all.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{RootfsLayers, last_errno};
use crate::error::{Error, Result};

/// Mounts the overlay at `target`. The new mount API takes one lower per call by file
/// descriptor, so neither the 4 KiB option string nor path lengths limit the layer count;
/// kernels without `lowerdir+` (before 6.8) get the classic option string.
pub fn mount_overlay(layers: &RootfsLayers, target: &Path) -> Result<()> {
    let rw = Upper {
        dir: &layers.upper,
        work: &layers.work,
        volatile: layers.volatile,
    };
    mount_overlay_of(&layers.lowers, Some(rw), target)
}

/// Whether an overlay can be mounted here: one of two lowers in `scratch` (an empty
/// directory the caller gives and removes) is made and mounted with the new mount API and
/// never attached anywhere (closing the descriptor drops it), or, on kernels without it, at
/// `scratch` and unmounted at once. The error is the kernel's (`ENODEV`: no overlayfs;
/// `EPERM`: not allowed here, e.g. in a container; `EINVAL`: not on this file system).
pub fn probe_overlay(scratch: &Path) -> std::io::Result<()> {
    let dirs: Vec<PathBuf> = ["l1", "l2", "target"]
        .iter()
        .map(|d| scratch.join(d))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d)?;
    }
    let lowers = &dirs[..2];
    match overlay_context(lowers, None) {
        Ok(fs) => {
            // SAFETY: fsmount on a descriptor this function owns; the result is closed.
            let mnt = unsafe {
                libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, 0)
            };
            if mnt < 0 {
                return Err(last_errno());
            }
            // SAFETY: a descriptor fsmount just returned, owned here alone.
            drop(unsafe { OwnedFd::from_raw_fd(mnt as RawFd) });
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            mount_overlay_of(lowers, None, &dirs[2]).map_err(|e| match e {
                Error::Sys { errno, .. } => std::io::Error::from(errno),
                e => std::io::Error::other(e.to_string()),
            })?;
            umount2(&dirs[2], MntFlags::MNT_DETACH).map_err(std::io::Error::from)
        }
        Err(e) => Err(e),
    }
}

/// The writable part of an overlay.
#[derive(Clone, Copy)]
struct Upper<'a> {
    dir: &'a Path,
    work: &'a Path,
    volatile: bool,
}

/// Mounts a read-only overlay of `lowers` (top first, at least two) at `target`: the merged
/// view of a container's file system, as `export` reads it, with no upper to write into.
/// A read-only view of the layers `lowers` (top first), mounted at `scratch/view` (both
/// made if missing) over an empty lowest one, `scratch/empty`: a read-only overlay needs
/// two lowers, and the empty one hides a lone layer's whiteouts. Its path.
pub fn mount_readonly_view(lowers: &[PathBuf], scratch: &Path) -> Result<PathBuf> {
    let empty = scratch.join("empty");
    let view = scratch.join("view");
    for d in [&empty, &view] {
        std::fs::create_dir_all(d)
            .map_err(|e| Error::io("make a read-only view's directory", e))?;
    }
    let mut all = lowers.to_vec();
    all.push(empty);
    mount_overlay_readonly(&all, &view)?;
    Ok(view)
}

pub fn mount_overlay_readonly(lowers: &[PathBuf], target: &Path) -> Result<()> {
    mount_overlay_of(lowers, None, target)
}

fn mount_overlay_of(lowers: &[PathBuf], rw: Option<Upper>, target: &Path) -> Result<()> {
    match mount_overlay_fsconfig(lowers, rw, target) {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) =>
        {
            let lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            let mut data = format!("lowerdir={}", lowers.join(":"));
            if let Some(rw) = rw {
                data += &format!(
                    ",upperdir={},workdir={}",
                    rw.dir.display(),
                    rw.work.display()
                );
            }
            let legacy = |data: &str| {
                mount(
                    Some("overlay"),
                    target,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data),
                )
            };
            // `volatile` came with Linux 5.10; without it the mount merely syncs at the end.
            match rw.filter(|rw| rw.volatile) {
                Some(_) => legacy(&format!("{data},volatile")).or_else(|_| legacy(&data)),
                None => legacy(&data),
            }
            .map_err(|e| {
                Error::sys(format!("mount overlay on {}", target.display()), e).with_path(target)
            })
        }
        Err(e) => {
            Err(Error::io(format!("mount overlay on {}", target.display()), e).with_path(target))
        }
    }
}

fn mount_overlay_fsconfig(
    lowers: &[PathBuf],
    rw: Option<Upper>,
    target: &Path,
) -> std::io::Result<()> {
    let fs = overlay_context(lowers, rw)?;
    // SAFETY: plain system calls on owned descriptors and NUL-terminated strings.
    unsafe {
        let mnt = libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, 0);
        if mnt < 0 {
            return Err(last_errno());
        }
        let mnt = OwnedFd::from_raw_fd(mnt as RawFd);
        let t = CString::new(target.as_os_str().as_bytes())?;
        if libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        ) < 0
        {
            return Err(last_errno());
        }
    }
    Ok(())
}

/// An overlay file system made (`fsopen`, one `fsconfig` per layer, `FSCONFIG_CMD_CREATE`)
/// and not yet mounted: its context descriptor.
fn overlay_context(lowers: &[PathBuf], rw: Option<Upper>) -> std::io::Result<OwnedFd> {
    // SAFETY: plain system calls on owned descriptors and NUL-terminated strings.
    unsafe {
        let fs = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), libc::FSOPEN_CLOEXEC);
        if fs < 0 {
            return Err(last_errno());
        }
        let fs = OwnedFd::from_raw_fd(fs as RawFd);
        let set_fd = |key: &std::ffi::CStr, path: &Path| -> std::io::Result<()> {
            let p = CString::new(path.as_os_str().as_bytes())?;
            let fd = libc::open(
                p.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(std::io::Error::other(format!(
                    "{}: {}",
                    path.display(),
                    last_errno()
                )));
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let r = libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_SET_FD,
                key.as_ptr(),
                std::ptr::null::<u8>(),
                fd.as_raw_fd(),
            );
            if r < 0 { Err(last_errno()) } else { Ok(()) }
        };
        for lower in lowers {
            set_fd(c"lowerdir+", lower)?;
        }
        if let Some(rw) = rw {
            set_fd(c"upperdir", rw.dir)?;
            set_fd(c"workdir", rw.work)?;
            if rw.volatile
                && libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    libc::FSCONFIG_SET_FLAG,
                    c"volatile".as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                ) < 0
            {
                return Err(last_errno());
            }
        }
        if libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            0,
            0,
            0,
        ) < 0
        {
            return Err(last_errno());
        }
        Ok(fs)
    }
}
