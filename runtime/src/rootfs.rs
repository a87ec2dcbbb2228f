//! The container's root file system, built inside its new mount namespace: the overlay of
//! read-only lowers and a private upper, the spec's mounts with every destination resolved
//! inside the rootfs (`openat2(RESOLVE_IN_ROOT)`, then mounted through `/proc/self/fd/N`, so a
//! symlink in the image cannot redirect a mount to the host), `/dev`, `pivot_root`, and the
//! masked and read-only paths. Runs only in the container's first process, before exec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use oci_spec::runtime::Mount;

use crate::error::{Error, Result};

/// A container's root file system: an overlay, or one directory bound as it is (a full
/// tree of the container's own: the vfs storage driver's, where overlayfs cannot be used).
#[derive(Debug, Clone)]
pub enum Rootfs {
    Overlay(RootfsLayers),
    Dir(PathBuf),
}

impl Rootfs {
    /// The root file system a snapshot's `mounts` describe (the store's plain data: an
    /// overlay of lowers with its upper and work dirs, or one directory), the one
    /// conversion every caller uses. `volatile` as in [`RootfsLayers`]; a bind is used as it
    /// is. A read-only view is given back: a container's root is written.
    pub fn of_mounts(
        mounts: lb_layerstore::Mounts,
        volatile: bool,
    ) -> std::result::Result<Rootfs, lb_layerstore::Mounts> {
        match mounts {
            lb_layerstore::Mounts::Overlay {
                lowers,
                upper: Some(dirs),
            } => Ok(Rootfs::Overlay(RootfsLayers {
                lowers,
                upper: dirs.upper,
                work: dirs.work,
                volatile,
            })),
            lb_layerstore::Mounts::Bind {
                source,
                read_only: false,
            } => Ok(Rootfs::Dir(source)),
            view => Err(view),
        }
    }

    /// Mounts it at `target` (in the container's mount namespace).
    pub fn mount(&self, target: &Path) -> Result<()> {
        match self {
            Rootfs::Overlay(layers) => mount_overlay(layers, target),
            Rootfs::Dir(dir) => mount(
                Some(dir.as_path()),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::sys(format!("bind {} on {}", dir.display(), target.display()), e)),
        }
    }
}

/// The layers of a container's root: read-only lowers (top first) and its own upper and
/// work directories.
#[derive(Debug, Clone)]
pub struct RootfsLayers {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Mount with overlayfs' `volatile`: the upper file system is never synced for the
    /// overlay, above all not when it is unmounted (otherwise the container's exit waits
    /// for every byte it wrote, and everything else dirty on that file system, to reach the
    /// disk). For an upper dir whose durability the caller sees to: a build step's, which
    /// becomes a snapshot the store marks as unsynced, with the layer blob as its durable copy.
    pub volatile: bool,
}

fn last_errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Moves the calling process into a mount namespace of its own whose mounts propagate
/// nowhere: what it then mounts (views of images for `export` and builds) is seen by no
/// one else and goes away with the process, even when it is killed.
pub fn private_mount_namespace() -> Result<()> {
    // The namespace left behind, for what must still be done in the host's view (network
    // namespaces other processes made and hold by bind mounts).
    if let Ok(f) = std::fs::File::open("/proc/thread-self/ns/mnt") {
        let _ = HOST_MOUNT_NS.set(OwnedFd::from(f));
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::sys("a mount namespace of its own (needs root)", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make / private", e))
}

/// The mount namespace this process had before [`private_mount_namespace`].
static HOST_MOUNT_NS: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Runs `f` on a thread in the mount namespace this process had before it made its own
/// (directly when it never did): mounts made there since (a namespace file another lb
/// holds) are seen, and mounts `f` makes outlive this process.
pub fn in_host_mount_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    if HOST_MOUNT_NS.get().is_none() {
        return Ok(f());
    }
    std::thread::scope(|s| {
        s.spawn(|| enter_host_mount_namespace().map(|()| f()))
            .join()
            .unwrap_or_else(|_| Err(Error::setup("the host mount namespace thread panicked")))
    })
}

/// [`in_host_mount_namespace`] for work that lasts (a worker serving many requests pays
/// for the thread and the `setns` once): `f` runs on a new thread of its own. A thread
/// started before the process made its own namespace is in the host's already.
pub fn spawn_in_host_mount_namespace<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    std::thread::spawn(|| enter_host_mount_namespace().map(|()| f()))
}

/// Moves the calling thread into the host's mount namespace, if the process left it. The
/// thread first stops sharing its file system context, which `setns` into a mount
/// namespace requires.
fn enter_host_mount_namespace() -> Result<()> {
    let Some(ns) = HOST_MOUNT_NS.get() else {
        return Ok(());
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
        .map_err(|e| Error::sys("unshare the file system context", e))?;
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| Error::sys("join the host's mount namespace", e))
}

mod overlay;

pub use overlay::{mount_overlay, mount_overlay_readonly, mount_readonly_view, probe_overlay};

/// `path` (absolute or not) opened as seen from inside `root`: the one resolver
/// (`lb_rootpath`), so symlinks and `..` can never leave it.
fn open_in_root(root: RawFd, path: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: `root` is a directory descriptor the caller holds open for the call.
    let root = unsafe { std::os::fd::BorrowedFd::borrow_raw(root) };
    lb_rootpath::open_in_root(root, path, flags)
}

/// Makes `path` exist inside `root` (a directory, or an empty file when `file`), creating
/// missing directories on the way, and returns an `O_PATH` descriptor of it.
pub fn ensure_in_root(root: RawFd, path: &Path, file: bool) -> Result<OwnedFd> {
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let err = |e: std::io::Error| {
        Error::io(format!("create {} in the container", path.display()), e).with_path(path)
    };
    let mut prefix = PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        let parent = open_in_root(root, &prefix, libc::O_PATH | libc::O_DIRECTORY).map_err(err)?;
        prefix.push(part);
        let last = i + 1 == parts.len();
        match open_in_root(root, &prefix, libc::O_PATH) {
            Ok(fd) if last => return Ok(fd),
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let name =
                    CString::new(part.as_bytes()).map_err(|_| Error::invalid("NUL in path"))?;
                // SAFETY: parent is a directory descriptor, name a plain component.
                let r = unsafe {
                    if last && file {
                        let fd = libc::openat(
                            parent.as_raw_fd(),
                            name.as_ptr(),
                            libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC
                                | libc::O_WRONLY,
                            0o644,
                        );
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd
                    } else {
                        libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755)
                    }
                };
                if r < 0 && last_errno().raw_os_error() != Some(libc::EEXIST) {
                    return Err(err(last_errno()));
                }
            }
            Err(e) => return Err(err(e)),
        }
    }
    open_in_root(root, &prefix, libc::O_PATH).map_err(err)
}

/// Mount flags and the data string of a spec mount's options.
fn parse_options(options: &[String]) -> (MsFlags, MsFlags, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                let rec = if o.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                let kind = match o.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    _ => MsFlags::MS_SLAVE,
                };
                propagation |= kind | rec;
                continue;
            }
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        flags |= set;
        flags &= !clear;
    }
    (flags, propagation, data)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Mounts one spec mount under `rootfs` (the host path of the container's root, already
/// the overlay).
pub fn mount_one(rootfs: &Path, root_fd: RawFd, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().clone().unwrap_or_default();
    let (flags, propagation, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
    let bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let what = format!("mount {} on {}", typ, dest.display());
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
    let is_file = bind
        && std::fs::metadata(&source)
            .map(|md| !md.is_dir())
            .unwrap_or(false);
    if bind && !source.exists() {
        return Err(Error::NoBindSource { what, path: source });
    }
    let target = ensure_in_root(root_fd, dest, is_file)?;
    let tpath = fd_path(&target);
    let _ = rootfs;
    if typ == "cgroup" {
        return mount_cgroups(root_fd, dest, flags);
    }
    if bind {
        return bind_on(&source, &target, flags, propagation)
            .map_err(|e| Error::io(what, e).with_path(dest));
    } else {
        let data = data.join(",");
        mount(
            Some(&source),
            &tpath,
            Some(typ.as_str()),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| Error::sys(&what, e).with_path(dest))?;
    }
    if !propagation.is_empty() {
        let target = open_in_root(root_fd, dest, libc::O_PATH)
            .map_err(|e| Error::io(&what, e).with_path(dest))?;
        mount(
            None::<&str>,
            &fd_path(&target),
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("{what} (propagation)"), e).with_path(dest))?;
    }
    Ok(())
}

/// A bind of `source` made on `target`, a descriptor already resolved inside the root:
/// the tree is cloned detached (`open_tree`), given its flags there (`mount_setattr`:
/// read-only, nosuid...), attached on the descriptor (`move_mount`), and its propagation
/// set through the same mount descriptor. No path inside the container is resolved a
/// second time, so a rename race in a shared volume can neither move where the bind lands
/// nor leave it writable while remounting something else read-only (CVE-2021-30465).
fn bind_on(
    source: &Path,
    target: &OwnedFd,
    flags: MsFlags,
    propagation: MsFlags,
) -> std::io::Result<()> {
    let src = CString::new(source.as_os_str().as_bytes())?;
    let recursive = flags.contains(MsFlags::MS_REC);
    let tree_flags = libc::OPEN_TREE_CLONE
        | libc::OPEN_TREE_CLOEXEC
        | if recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
    // SAFETY: a valid C string; the result is checked.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            tree_flags,
        )
    };
    if tree < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let setattr = |attr: &libc::mount_attr, recursive: bool| -> std::io::Result<()> {
        let at = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: valid pointers for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                at,
                attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: an all-zero mount_attr is valid (nothing set).
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    for (ms, ma) in [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NOATIME, libc::MOUNT_ATTR_NOATIME),
        (MsFlags::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
        (MsFlags::MS_STRICTATIME, libc::MOUNT_ATTR_STRICTATIME),
    ] {
        if flags.contains(ms) {
            attr.attr_set |= ma;
        }
    }
    if attr.attr_set & (libc::MOUNT_ATTR_NOATIME | libc::MOUNT_ATTR_STRICTATIME) != 0 {
        attr.attr_clr |= libc::MOUNT_ATTR__ATIME;
    }
    if attr.attr_set != 0 {
        setattr(&attr, recursive)?;
    }
    // SAFETY: both descriptors are valid; empty paths with the EMPTY_PATH flags.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let kind = propagation & !MsFlags::MS_REC;
    if !kind.is_empty() {
        // SAFETY: as above.
        let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
        attr.propagation = kind.bits();
        setattr(&attr, propagation.contains(MsFlags::MS_REC))?;
    }
    Ok(())
}

/// `/sys/fs/cgroup` as docker gives it, from inside the container's cgroup namespace (so each
/// hierarchy's root is the container's own cgroup: its limits, its processes): on a pure v2
/// host the cgroup2 file system; else a tmpfs with each of the host's hierarchies mounted
/// again by name (`memory`, `cpu,cpuacct`, `unified`, ...: those the container joins) and
/// the host's links beside them
/// (`cpu` -> `cpu,cpuacct`). `flags` (read-only, nosuid, ...) apply to every mount.
fn mount_cgroups(root_fd: RawFd, dest: &Path, flags: MsFlags) -> Result<()> {
    let what = |m: &str| format!("mount {m} on {}", dest.display());
    let hierarchies =
        crate::cgroups::container_hierarchies().map_err(|source| Error::CgroupMount {
            dest: dest.to_path_buf(),
            source,
        })?;
    let at = |rel: &str| -> Result<OwnedFd> { ensure_in_root(root_fd, &dest.join(rel), false) };
    if hierarchies.iter().any(|h| h.v2 && h.name.is_empty()) {
        let target = at("")?;
        return mount(
            Some("cgroup"),
            &fd_path(&target),
            Some("cgroup2"),
            flags,
            None::<&str>,
        )
        .map_err(|e| Error::sys(what("cgroup2"), e));
    }
    let base = at("")?;
    mount(
        Some("tmpfs"),
        &fd_path(&base),
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(|e| Error::sys(what("tmpfs"), e))?;
    for h in &hierarchies {
        let target = at(&h.name)?;
        let (fstype, data) = if h.v2 {
            ("cgroup2", String::new())
        } else {
            ("cgroup", h.options.join(","))
        };
        mount(
            Some("cgroup"),
            &fd_path(&target),
            Some(fstype),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| Error::sys(what(&format!("cgroup {}", h.name)), e))?;
    }
    let dir = open_in_root(root_fd, dest, libc::O_DIRECTORY | libc::O_RDONLY)
        .map_err(|e| Error::io(what("links"), e).with_path(dest))?;
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !hierarchies
            .iter()
            .any(|h| link.as_os_str() == h.name.as_str())
        {
            continue;
        }
        let (Ok(name), Ok(link)) = (
            CString::new(entry.file_name().as_bytes()),
            CString::new(link.as_os_str().as_bytes()),
        ) else {
            continue;
        };
        // SAFETY: symlinkat relative to an owned directory descriptor.
        unsafe { libc::symlinkat(link.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    }
    drop(dir);
    if flags.contains(MsFlags::MS_RDONLY) {
        let base = open_in_root(root_fd, dest, libc::O_PATH)
            .map_err(|e| Error::io(what("tmpfs"), e).with_path(dest))?;
        mount(
            None::<&str>,
            &fd_path(&base),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None::<&str>,
        )
        .map_err(|e| Error::sys(what("tmpfs (read-only)"), e))?;
    }
    Ok(())
}

/// The device nodes and links every container has in its `/dev` tmpfs (docker's set), and
/// the terminal as `/dev/console` when it has one.
pub fn populate_dev(root_fd: RawFd, console: Option<&Path>) -> Result<()> {
    let dev = open_in_root(
        root_fd,
        Path::new("/dev"),
        libc::O_DIRECTORY | libc::O_RDONLY,
    )
    .map_err(|e| Error::io("open /dev in the container", e))?;
    let nodes: [(&std::ffi::CStr, u32, u32); 6] = [
        (c"null", 1, 3),
        (c"zero", 1, 5),
        (c"full", 1, 7),
        (c"random", 1, 8),
        (c"urandom", 1, 9),
        (c"tty", 5, 0),
    ];
    for (name, major, minor) in nodes {
        // SAFETY: plain *at calls relative to an owned directory descriptor.
        unsafe {
            let old = libc::umask(0);
            let r = libc::mknodat(
                dev.as_raw_fd(),
                name.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            );
            libc::umask(old);
            if r < 0 && last_errno().raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::io(
                    format!("mknod /dev/{}", name.to_string_lossy()),
                    last_errno(),
                ));
            }
        }
    }
    let links: [(&std::ffi::CStr, &std::ffi::CStr); 5] = [
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
        (c"pts/ptmx", c"ptmx"),
    ];
    for (target, name) in links {
        // SAFETY: as above.
        let r = unsafe { libc::symlinkat(target.as_ptr(), dev.as_raw_fd(), name.as_ptr()) };
        if r < 0 && last_errno().raw_os_error() != Some(libc::EEXIST) {
            return Err(Error::io(
                format!("symlink /dev/{}", name.to_string_lossy()),
                last_errno(),
            ));
        }
    }
    if let Some(console) = console {
        let target = ensure_in_root(root_fd, Path::new("/dev/console"), true)?;
        mount(
            Some(console),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys("mount /dev/console", e))?;
    }
    Ok(())
}

/// The spec's devices (`--device`) as nodes inside `root`: type, numbers, mode and owner
/// as the host's, their directories made on the way, an existing node replaced.
pub fn make_devices(root_fd: RawFd, devices: &[oci_spec::runtime::LinuxDevice]) -> Result<()> {
    use oci_spec::runtime::LinuxDeviceType as T;
    for d in devices {
        let path = d.path();
        let err = |e: std::io::Error| {
            Error::io(format!("mknod {} in the container", path.display()), e).with_path(path)
        };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let dir = ensure_in_root(root_fd, parent, false)?;
        let name = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|e| err(e.into()))?;
        let kind = match d.typ() {
            T::B => libc::S_IFBLK,
            T::P => libc::S_IFIFO,
            _ => libc::S_IFCHR,
        };
        let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
        let dev = libc::makedev(d.major() as u32, d.minor() as u32);
        // SAFETY: plain *at calls relative to an owned directory descriptor.
        unsafe {
            libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0);
            let old = libc::umask(0);
            let r = libc::mknodat(dir.as_raw_fd(), name.as_ptr(), kind | mode, dev);
            libc::umask(old);
            if r < 0 {
                return Err(err(last_errno()));
            }
            if libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
                libc::AT_SYMLINK_NOFOLLOW,
            ) < 0
            {
                return Err(err(last_errno()));
            }
        }
    }
    Ok(())
}

/// Writes the spec's sysctls through `/proc/sys` (in the container's namespaces, before
/// `/proc/sys` is made read-only), as runc does.
pub fn write_sysctls(sysctls: &std::collections::HashMap<String, String>) -> Result<()> {
    for (key, value) in sysctls {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value)
            .map_err(|e| Error::io(format!("write sysctl {key}"), e).with_path(&path))?;
    }
    Ok(())
}

/// Makes `rootfs` the root: `pivot_root(".", ".")` then detaching the old root stacked
/// under it (runc's way: no directory for the old root inside the container).
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open /", e))?;
    nix::unistd::chdir(rootfs)
        .map_err(|e| Error::sys(format!("chdir {}", rootfs.display()), e).with_path(rootfs))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| Error::sys("pivot_root", e))?;
    nix::unistd::fchdir(&old).map_err(|e| Error::sys("fchdir old root", e))?;
    // The old root may be shared with the host: make it a slave first so the detach does
    // not propagate back.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::sys("detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))?;
    Ok(())
}

/// Hides each path (inside the new root): directories under an empty read-only tmpfs,
/// files under `/dev/null`. Paths this kernel lacks are skipped.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let md = match std::fs::metadata(p) {
            Ok(md) => md,
            Err(_) => continue,
        };
        let r = if md.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.map_err(|e| Error::sys(format!("mask {p}"), e).with_path(p))?;
    }
    Ok(())
}

/// Makes each path (inside the new root) read-only, keeping its other flags.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("bind {p}"), e).with_path(p))?;
        remount_readonly(p)?;
    }
    Ok(())
}

/// Remounts the mount at `p` read-only, keeping nosuid/nodev/noexec as they are (the kernel
/// refuses to drop locked flags).
pub fn remount_readonly(p: &str) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(p)
        .map_err(|e| Error::sys(format!("statvfs {p}"), e).with_path(p))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(fs) {
            flags |= ms;
        }
    }
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>)
        .map_err(|e| Error::sys(format!("remount {p} read-only"), e).with_path(p))
}
