//! Which storage driver a command asks for (`--storage-driver`, else `$LB_STORAGE_DRIVER`),
//! and the default of a new store: overlay, or vfs with a notice when this kernel or
//! container refuses overlayfs, as docker's vfs graphdriver is the fallback.

use lb_layerstore::StorageDriver;

/// The driver asked for, `None` when neither the flag nor the variable says.
pub fn wanted(flag: Option<&str>) -> anyhow::Result<Option<StorageDriver>> {
    let (value, from) = match flag {
        Some(f) => (f.to_string(), "--storage-driver"),
        None => match std::env::var("LB_STORAGE_DRIVER") {
            Ok(v) if !v.is_empty() => (v, "LB_STORAGE_DRIVER"),
            _ => return Ok(None),
        },
    };
    match value.parse() {
        Ok(d) => Ok(Some(d)),
        Err(_) => anyhow::bail!("invalid {from} {value:?}: expected overlay or vfs"),
    }
}

/// A new store's driver when none is asked for: overlay if one can be mounted here. Only
/// root is asked (anyone else cannot mount at all, and runs nothing either way); the probe
/// mounts nothing anyone sees.
pub fn default_for_new_store() -> StorageDriver {
    if !nix::unistd::geteuid().is_root() {
        return StorageDriver::Overlay;
    }
    let Ok(scratch) = tempfile::Builder::new()
        .prefix(".lb-overlay-probe-")
        .tempdir_in(std::env::temp_dir())
    else {
        return StorageDriver::Overlay;
    };
    match lb_runtime::rootfs::probe_overlay(scratch.path()) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::EPERM | libc::ENODEV)
            ) =>
        {
            eprintln!("lb: overlay cannot be mounted here ({e}): using the vfs storage driver");
            StorageDriver::Vfs
        }
        // Any other failure is not overlayfs refusing: overlay, whose first mount says it.
        _ => StorageDriver::Overlay,
    }
}
