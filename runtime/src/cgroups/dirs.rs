//! Where a container's directory lives in a hierarchy, the same on v1 and v2: making
//! `lb/<name>` below a base, finding it again from another lb process, and walking the
//! cgroups a container made below its own. Both versions use it, so neither holds it.

use std::collections::VecDeque;

use super::*;

/// mkdir `<base>/lb` (running `prepare` on it) and `<base>/lb/<name>`, retrying when a
/// concurrent remove() takes the empty `lb` away between the two.
pub(super) fn make_lb_child(
    base: &Path,
    name: &str,
    created: &mut Vec<PathBuf>,
    prepare: impl Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let lb = base.join(LB_DIR);
    let dir = lb.join(name);
    let mut attempts = 0;
    loop {
        attempts += 1;
        mkdir(&lb)?;
        prepare(&lb)?;
        match fs::create_dir(&dir) {
            Ok(()) => {
                created.push(dir.clone());
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => continue,
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
    }
}

fn mkdir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `<start-or-ancestor>/lb/<name>` in one hierarchy: first where create() puts it (the
/// caller's own cgroup or, on v2, an ancestor), then anywhere in the hierarchy, because the
/// lb process that made it may have sat in another cgroup than this one.
pub(super) fn find_cgroup(mountpoint: &Path, own: &Path, name: &str) -> Option<PathBuf> {
    let quick = own
        .ancestors()
        .take_while(|a| a.starts_with(mountpoint))
        .map(|a| a.join(LB_DIR).join(name))
        .find(|p| p.is_dir());
    if quick.is_some() {
        return quick;
    }
    // Breadth first and bounded, so a huge systemd tree costs milliseconds, not seconds.
    const MAX_DIRS: usize = 50_000;
    const MAX_DEPTH: usize = 16;
    let mut queue = VecDeque::from([(mountpoint.to_path_buf(), 0usize)]);
    let mut seen = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        seen += 1;
        if seen > MAX_DIRS {
            break;
        }
        let candidate = dir.join(LB_DIR).join(name);
        if candidate.is_dir() {
            return Some(candidate);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push_back((e.path(), depth + 1));
            }
        }
    }
    None
}

/// `dir` and every cgroup below it, parents before children; empty if `dir` is gone.
pub(super) fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out
}
