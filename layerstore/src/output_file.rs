//! A file written for `-o FILE` (`save`, `export`, `build --output type=tar`), invisible
//! until complete, so that a killed lb leaves no half archive under the user's name.

/// A file being written for `-o FILE`, invisible until complete. It is made unnamed in the
/// target's directory (`O_TMPFILE`): a killed lb leaves nothing behind, the kernel frees its
/// blocks with the last descriptor. When complete it is linked in as `.FILE.lb-tmp-<pid>-<n>`
/// and renamed over FILE (a link cannot replace a file). A file system without `O_TMPFILE`
/// gets a named file of that form from the start. Either way such a name carries its lb's
/// pid, so a killed lb's is recognised: every later write into that directory removes
/// those of lb processes that are gone. Everything goes through a descriptor of the
/// directory taken first: `lb export` writes from a mount namespace of its own, where a
/// path names another mount of the same directory (a link across them is EXDEV).
pub struct OutputFile {
    dir: std::os::fd::OwnedFd,
    file: std::fs::File,
    /// The named temporary file, when it has a name (removed on drop unless renamed).
    named: Option<std::ffi::OsString>,
    /// The name it gets when complete.
    target: std::path::PathBuf,
}

/// The marker in the names of [`OutputFile`]s.
const PENDING_MARK: &str = ".lb-tmp-";

impl OutputFile {
    /// Starts `target` (a file in `dir`, the directory already resolved by the caller).
    pub fn create(dir: &std::path::Path, target: &std::path::Path) -> std::io::Result<OutputFile> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        remove_dead_pending(dir);
        let dir_fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mode = Mode::from_bits_truncate(0o600);
        match nix::fcntl::openat(
            &dir_fd,
            ".",
            OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            mode,
        ) {
            Ok(fd) => {
                return Ok(OutputFile {
                    dir: dir_fd,
                    file: fd.into(),
                    named: None,
                    target: target.to_path_buf(),
                });
            }
            // No O_TMPFILE here (the file system, or a kernel before 3.11).
            Err(nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EISDIR) => {}
            Err(e) => return Err(e.into()),
        }
        let (fd, name) = create_pending_name(target, |name| {
            nix::fcntl::openat(
                &dir_fd,
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                mode,
            )
        })?;
        Ok(OutputFile {
            dir: dir_fd,
            file: fd.into(),
            named: Some(name),
            target: target.to_path_buf(),
        })
    }

    /// Where the bytes go.
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// Gives the complete file its name (in the directory it was made in).
    pub fn persist(mut self) -> std::io::Result<()> {
        let target = self.target.clone();
        let to = target.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name")
        })?;
        let from = match self.named.take() {
            Some(named) => named,
            None => {
                use std::os::fd::AsRawFd;
                let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                let ((), named) = create_pending_name(&target, |name| {
                    nix::unistd::linkat(
                        nix::fcntl::AT_FDCWD,
                        proc_path.as_str(),
                        &self.dir,
                        name,
                        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                    )
                })?;
                named
            }
        };
        nix::fcntl::renameat(&self.dir, from.as_os_str(), &self.dir, to).map_err(|e| {
            let _ = nix::unistd::unlinkat(
                &self.dir,
                from.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            e.into()
        })
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(name) = self.named.take() {
            let _ = nix::unistd::unlinkat(
                &self.dir,
                name.as_os_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Makes `.FILE.lb-tmp-<pid>-<n>` with `make`, the first `n` whose name is free.
fn create_pending_name<T>(
    target: &std::path::Path,
    make: impl Fn(&std::ffi::OsStr) -> nix::Result<T>,
) -> std::io::Result<(T, std::ffi::OsString)> {
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or("archive".as_ref()));
    name.push(format!("{PENDING_MARK}{}-", std::process::id()));
    for n in 0u32.. {
        let mut candidate = name.clone();
        candidate.push(n.to_string());
        match make(&candidate) {
            Err(nix::errno::Errno::EEXIST) if n < 1000 => continue,
            r => return r.map(|t| (t, candidate)).map_err(Into::into),
        }
    }
    unreachable!("the loop returns")
}

/// Removes the named pending files in `dir` whose lb is gone (killed while writing).
fn remove_dead_pending(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = name
            .strip_prefix('.')
            .and_then(|n| n.rsplit_once(PENDING_MARK))
            .and_then(|(_, rest)| rest.split_once('-'))
            .and_then(|(pid, n)| n.parse::<u32>().ok().and(pid.parse::<i32>().ok()))
        else {
            continue;
        };
        let gone = pid > 0
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH);
        if gone && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn nothing_is_seen_under_the_name_until_persisted_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.tar");
        let mut f = OutputFile::create(dir.path(), &target).unwrap();
        f.file().write_all(b"archive").unwrap();
        assert!(!target.exists());
        f.persist().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"archive");
        let mut g = OutputFile::create(dir.path(), &dir.path().join("other.tar")).unwrap();
        g.file().write_all(b"half").unwrap();
        drop(g);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.tar"], "a dropped output left a file");
    }

    #[test]
    fn a_dead_writers_named_leftover_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 2^22 - 1 on a default pid_max here; a live pid's is kept.
        let dead = dir.path().join(format!(".x.tar{PENDING_MARK}4194303-0"));
        let live = dir
            .path()
            .join(format!(".y.tar{PENDING_MARK}{}-0", std::process::id()));
        std::fs::write(&dead, b"").unwrap();
        std::fs::write(&live, b"").unwrap();
        drop(OutputFile::create(dir.path(), &dir.path().join("z.tar")).unwrap());
        assert!(!dead.exists());
        assert!(live.exists());
    }
}
