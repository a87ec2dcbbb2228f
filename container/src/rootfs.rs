//! A container's root file system on the store's storage driver. Overlay: the image's
//! snapshots (recorded as the record's `lowers`) below the upper dir in the container's
//! directory, as always. Vfs: the snapshotter's active snapshot named by the container's id,
//! a full copy of the image's tree, bound as the root; its changes are the comparison
//! with the image's tree. `lb run`/`start`/`commit`/`export` reach the file system only
//! through here.

use std::path::{Path, PathBuf};

use lb_layerstore::{Image, LayerChanges, Mounts, SnapshotKey, StorageDriver, Store};

use crate::Result;
use crate::record::Record;

fn key(id: &str) -> Result<SnapshotKey> {
    Ok(SnapshotKey::new(id)?)
}

fn vfs(store: &Store) -> bool {
    store.storage_driver() == StorageDriver::Vfs
}

/// The image's file system made ready for a new container: its snapshots in the store's
/// driver. Returns the overlay lowers to record (bottom first; none on vfs).
pub fn image_lowers(store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
    if vfs(store) {
        store.image_chain(image)?;
        return Ok(Vec::new());
    }
    Ok(store.prepare_snapshots(image)?)
}

/// Makes the container `id`'s own file system (after its record: removing the container
/// removes it): on vfs, its active snapshot on `image`'s tree. Nothing on overlay (the
/// upper dir is made at start).
pub fn create(store: &Store, image: &Image, id: &str) -> Result<()> {
    if !vfs(store) {
        return Ok(());
    }
    let chain = store.image_chain(image)?;
    let parent = (!chain.ids().is_empty()).then_some(&chain);
    store.snapshotter().prepare(&key(id)?, parent)?;
    Ok(())
}

/// The container's root file system for the runtime (`dir`: its directory).
pub fn rootfs(store: &Store, record: &Record, dir: &Path) -> Result<lb_runtime::Rootfs> {
    if vfs(store) {
        let mounts = store.snapshotter().mounts(&key(&record.id)?)?;
        return lb_runtime::Rootfs::of_mounts(mounts, record.auto_remove).map_err(|m| {
            crate::Error::Corrupt {
                path: PathBuf::from(&record.id),
                reason: format!("a container's rootfs as {m:?}"),
            }
        });
    }
    // Overlay lowers are listed top first; snapshots come bottom first.
    let mut lowers: Vec<PathBuf> = record.config.lowers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| crate::Error::Io {
            path: empty.clone(),
            source: e,
        })?;
        lowers.push(empty);
    }
    Ok(lb_runtime::Rootfs::Overlay(lb_runtime::RootfsLayers {
        lowers,
        upper: dir.join("upper"),
        work: dir.join("work"),
        // A container's upper dir is its state (`lb commit`, `lb start` again): synced
        // when it is unmounted, as docker's. A `--rm` container's goes with it, so its
        // exit need not wait for its writes to reach the disk (podman's choice too).
        volatile: record.auto_remove,
    }))
}

/// The container's whole file system (its image's with its changes), as `export` reads it.
pub fn merged(store: &Store, record: &Record, dir: &Path) -> Result<Mounts> {
    if vfs(store) {
        return Ok(Mounts::Bind {
            source: tree(store, &record.id)?,
            read_only: true,
        });
    }
    let mut lowers = vec![dir.join("upper")];
    lowers.extend(record.config.lowers.iter().rev().cloned());
    Ok(Mounts::Overlay {
        lowers,
        upper: None,
    })
}

/// Calls `f` with the container's changes on top of its image (`lb commit`): the upper
/// dir, or on vfs where its snapshotter finds them (its tree and the image's).
pub fn with_changes<T>(
    store: &Store,
    record: &Record,
    dir: &Path,
    f: impl FnOnce(LayerChanges<'_>) -> Result<T>,
) -> Result<T> {
    if !vfs(store) {
        // Overlay lowers are recorded bottom first; a layer stacks on them top first.
        let lowers: Vec<PathBuf> = record.config.lowers.iter().rev().cloned().collect();
        let upper = dir.join("upper");
        return f(match lowers.is_empty() {
            true => LayerChanges::Upper(&upper),
            false => LayerChanges::Stacked {
                upper: &upper,
                lowers: &lowers,
            },
        });
    }
    let changes = store.snapshotter().changes(&key(&record.id)?)?;
    f(changes.layer())
}

/// A vfs container's tree.
fn tree(store: &Store, id: &str) -> Result<PathBuf> {
    match store.snapshotter().mounts(&key(id)?)? {
        Mounts::Bind { source, .. } => Ok(source),
        m => Err(crate::Error::Corrupt {
            path: PathBuf::from(id),
            reason: format!("a vfs container's rootfs as {m:?}"),
        }),
    }
}

/// Calls `f` with the container's image as one read-only tree (for copy-up into new
/// volumes): on vfs the container's fresh tree, on overlay the image's snapshots mounted
/// read-only in a child process's own mount namespace (lb's own namespace keeps seeing
/// the host's: network namespaces are bound there), under the container's directory.
pub fn with_image_tree(
    store: &Store,
    record: &Record,
    dir: &Path,
    f: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if vfs(store) {
        return f(&tree(store, &record.id)?);
    }
    use std::io::{Read, Write};
    // Made in the child, removed here.
    let scratch = dir.join("image-view");
    let sys = |what, errno| crate::Error::Sys { what, errno };
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe", e))?;
    // SAFETY: the child only mounts, copies files and exits; it never returns into lb.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| sys("fork", e))? {
        nix::unistd::ForkResult::Child => {
            drop(err_r);
            let mut report = std::fs::File::from(err_w);
            let done = lb_runtime::rootfs::private_mount_namespace()
                .map_err(crate::Error::from)
                .and_then(|()| {
                    let lowers: Vec<PathBuf> = record.config.lowers.iter().rev().cloned().collect();
                    let view = lb_runtime::rootfs::mount_readonly_view(&lowers, &scratch)?;
                    f(&view)
                });
            let code = match done {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write!(report, "{e}");
                    1
                }
            };
            // SAFETY: leaving the forked child without running the parent's exit code.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(err_w);
    let mut message = String::new();
    let _ = std::fs::File::from(err_r).read_to_string(&mut message);
    let status = nix::sys::wait::waitpid(child, None).map_err(|e| sys("waitpid", e))?;
    for d in ["view", "empty", ""] {
        let _ = std::fs::remove_dir(scratch.join(d));
    }
    match status {
        nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
        _ => Err(crate::Error::Corrupt {
            path: dir.to_path_buf(),
            reason: format!("copying the image's files into a new volume: {message}"),
        }),
    }
}
