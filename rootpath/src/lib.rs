//! Paths resolved inside a root directory: the one resolver that every build step, mount
//! and copy uses when a path names something inside a root (a build context, a stage's
//! or an image's file system, a container's rootfs, a step's upper directory).
//!
//! A path is read as the root's own processes would read it: `..` stops at the root,
//! an absolute symlink starts again at the root, a relative one from where it sits.
//! Nothing a Dockerfile, a context, an image or a container controls can make a path
//! leave its root, because resolution is done by the kernel (`openat2` with
//! `RESOLVE_IN_ROOT`) or by walking descriptors one component at a time, never by a host
//! `Path::join` handed to a syscall that follows links.
//!
//! This crate knows nothing of images, builds or containers: only roots and paths.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution follows before it gives up (the kernel's limit).
const MAX_LINKS: usize = 40;

fn cstring(p: &OsStr) -> io::Result<CString> {
    CString::new(p.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

/// `openat2(dir, path, flags, mode, resolve)`, always close-on-exec, retried while the
/// kernel answers `EAGAIN` (a rename or mount elsewhere raced a `..` step; the kernel asks
/// the caller to try again). The one call every resolution inside a root goes through.
pub fn openat2_with_mode(
    dir: BorrowedFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = cstring(path.as_os_str())?;
    // SAFETY: an all-zero open_how is valid; the fields set below are plain integers.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = resolve;
    for _ in 0..1000 {
        // SAFETY: valid pointers for the duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                p.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor we own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

fn openat2(dir: BorrowedFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    openat2_with_mode(dir, path, flags, 0, resolve)
}

/// Opens `path` as seen from inside the directory `root` (absolute or relative, it makes
/// no difference): symlinks and `..` are resolved by the kernel and can never leave
/// `root`; magic links (`/proc/*/fd/*`) are refused. `EAGAIN` is retried.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    openat2(
        root,
        path,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
fn lstat_at(dir: BorrowedFd, name: &OsStr) -> io::Result<libc::stat> {
    let n = cstring(name)?;
    // SAFETY: an all-zero stat is valid; the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers for the duration of the call.
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            n.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn readlink_at(dir: BorrowedFd, name: &OsStr) -> io::Result<OsString> {
    let n = cstring(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: buf is writable for its length.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(OsString::from_vec(buf))
}

/// A directory that paths are resolved inside, held open: its descriptor pins it, so a
/// rename of the directory's host path cannot move the root under a resolution.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens the directory `path` as a root. The path itself is the caller's (a store or
    /// context path the user gave); only what is resolved inside it is distrusted.
    pub fn open(path: &Path) -> io::Result<Root> {
        let p = cstring(path.as_os_str())?;
        // SAFETY: a valid C string; the result is checked.
        let fd = unsafe {
            libc::open(
                p.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
        }
        Ok(Root {
            // SAFETY: a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// The root's host path, as it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` inside the root (see [`open_in_root`]).
    pub fn open_at(&self, path: &Path, flags: i32) -> io::Result<OwnedFd> {
        open_in_root(self.fd.as_fd(), path, flags)
    }

    /// `path` resolved inside the root, as an absolute path in the root's own terms
    /// (`/` is the root): every symlink on the way followed within the root, the last
    /// one too when `follow_last`; `..` stops at the root. A missing tail is kept as
    /// written (cleaned), so a destination that does not exist yet resolves to where it
    /// will be made. A symlink loop gives `ELOOP`, a file in the middle `ENOTDIR`.
    pub fn resolve(&self, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let mut done: Vec<OsString> = Vec::new();
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, path);
        todo.reverse();
        let mut links = 0;
        let mut missing = false;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            if missing {
                done.push(c);
                continue;
            }
            let last = todo.is_empty();
            // The resolved part has only real directories: refuse any symlink in it (it
            // was one of none a moment ago; a swap since is a race, not a path).
            let parent = openat2(
                self.fd.as_fd(),
                &join(&done),
                libc::O_PATH | libc::O_DIRECTORY,
                libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
            )?;
            let st = match lstat_at(parent.as_fd(), &c) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    missing = true;
                    done.push(c);
                    continue;
                }
                other => other?,
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFLNK if follow_last || !last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = readlink_at(parent.as_fd(), &c)?;
                    let target = Path::new(&target);
                    if target.is_absolute() {
                        done.clear();
                    }
                    let mut more = Vec::new();
                    push_components(&mut more, target);
                    todo.extend(more.into_iter().rev());
                }
                libc::S_IFDIR | libc::S_IFLNK => done.push(c),
                _ if last => done.push(c),
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            }
        }
        Ok(Path::new("/").join(join(&done)))
    }

    /// The host path of `path` resolved inside the root ([`Root::resolve`]): below the
    /// root's host path, with no symlink in it but perhaps the last (`follow_last` false).
    pub fn host_path(&self, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
        let inner = self.resolve(path, follow_last)?;
        Ok(self.path.join(inner.strip_prefix("/").unwrap_or(&inner)))
    }

    /// The contents of the file `path` inside the root.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let fd = self.open_at(path, libc::O_RDONLY)?;
        let mut f = std::fs::File::from(fd);
        let mut out = Vec::new();
        io::Read::read_to_end(&mut f, &mut out)?;
        Ok(out)
    }

    /// `lstat` of `path` resolved inside the root (the last component not followed).
    pub fn symlink_metadata(&self, path: &Path) -> io::Result<std::fs::Metadata> {
        std::fs::symlink_metadata(self.host_path(path, false)?)
    }

    /// `stat` of `path` resolved inside the root (the last component followed).
    pub fn metadata(&self, path: &Path) -> io::Result<std::fs::Metadata> {
        let fd = self.open_at(path, libc::O_PATH)?;
        std::fs::File::from(fd).metadata()
    }
}

fn push_components(out: &mut Vec<OsString>, path: &Path) {
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => out.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn join(parts: &[OsString]) -> PathBuf {
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_dots_stay_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/f"), "in").unwrap();
        symlink(outside.path(), r.join("abs")).unwrap();
        symlink("../../..", r.join("a/b/up")).unwrap();
        symlink("b", r.join("a/rel")).unwrap();
        symlink("/a/rel/f", r.join("tof")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let root = Root::open(r).unwrap();
        let res = |p: &str, f: bool| root.resolve(Path::new(p), f).unwrap();
        // An absolute link names a path in the root, not the host's.
        assert_eq!(
            res("abs/secret", true),
            Path::new("/")
                .join(outside.path().strip_prefix("/").unwrap())
                .join("secret")
        );
        assert!(
            !root
                .host_path(Path::new("abs/secret"), true)
                .unwrap()
                .exists()
        );
        assert_eq!(res("a/b/up/a/rel/f", true), Path::new("/a/b/f"));
        assert_eq!(res("../../a/rel", true), Path::new("/a/b"));
        assert_eq!(res("a/rel", false), Path::new("/a/rel"));
        assert_eq!(res("tof", true), Path::new("/a/b/f"));
        assert_eq!(res("a/missing/../x/y", true), Path::new("/a/x/y"));
        assert_eq!(
            root.resolve(Path::new("loop"), true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            root.resolve(Path::new("a/b/f/x"), true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
        assert_eq!(root.read(Path::new("tof")).unwrap(), b"in");
        assert!(root.read(Path::new("abs/secret")).is_err());
        assert!(root.metadata(Path::new("a/rel")).unwrap().is_dir());
        assert!(
            root.symlink_metadata(Path::new("a/rel"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
