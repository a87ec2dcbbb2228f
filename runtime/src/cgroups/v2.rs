//! cgroup v2: where in the unified tree a container's directory can go, getting the
//! controllers it needs delegated down to it, and the limits written there. Apart from v1
//! because v2's "no internal processes" rule makes placing the directory a problem of
//! its own.

use super::*;

/// The controllers a container always gets on a v2 host when they can be delegated, so
/// that its memory use and OOM kills are accounted even without limits.
pub(super) const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// The v2 directory `<base>/lb/<name>`, and whether this call made it. `base` is the
/// caller's own cgroup when the controllers can be handed out below it, else its nearest
/// ancestor that can: a non-root v2 cgroup with processes in it (the caller's own, always)
/// cannot enable controllers for its children ("no internal processes"), so a container
/// with limits goes beside the caller rather than below it.
pub(super) fn create_v2(
    v2: &V2Hier,
    name: &str,
    needed: &[&'static str],
) -> Result<(PathBuf, bool)> {
    let wanted: Vec<&str> = WANTED
        .iter()
        .chain(needed)
        .copied()
        .filter(|c| v2.available.iter().any(|a| a == c))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let base = find_v2_base(v2, &wanted)
        .or_else(|| find_v2_base(v2, needed))
        .or_else(|| needed.is_empty().then(|| v2.own.clone()));
    let Some(base) = base else {
        let c = needed[0];
        return Err(CgroupError::ControllerMissing {
            controller: c.to_string(),
            limit: Limits::what(c),
            detail: format!(
                " (it cannot be enabled in cgroup.subtree_control of {} or any ancestor)",
                v2.own.display()
            ),
        });
    };
    let mut created = Vec::new();
    let dir = make_lb_child(&base, name, &mut created, |lb| {
        // lb/ holds no processes, so it can pass on whatever its parent gives it; the
        // needed controllers must arrive, the others are welcome.
        let given = read_words(&lb.join("cgroup.controllers"));
        for c in wanted.iter().filter(|c| given.iter().any(|g| g == *c)) {
            enable(lb, &[c]);
        }
        let enabled = read_words(&lb.join("cgroup.subtree_control"));
        match needed.iter().find(|c| !enabled.iter().any(|e| e == *c)) {
            None => Ok(()),
            Some(c) => Err(CgroupError::ControllerMissing {
                controller: c.to_string(),
                limit: Limits::what(c),
                detail: format!(
                    " (cannot enable it in {})",
                    lb.join("cgroup.subtree_control").display()
                ),
            }),
        }
    })?;
    Ok((dir, !created.is_empty()))
}

/// The deepest cgroup from the caller's own upwards whose children can get `controllers`.
fn find_v2_base(v2: &V2Hier, controllers: &[&str]) -> Option<PathBuf> {
    v2.own
        .ancestors()
        .take_while(|a| a.starts_with(&v2.mountpoint))
        .find(|a| delegate(a, &v2.mountpoint, controllers))
        .map(Path::to_path_buf)
}

/// Makes `controllers` enabled in `dir`'s cgroup.subtree_control, first getting them into
/// its cgroup.controllers from its parent if need be; whether that worked.
fn delegate(dir: &Path, root: &Path, controllers: &[&str]) -> bool {
    let enabled = read_words(&dir.join("cgroup.subtree_control"));
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| !enabled.iter().any(|e| e == c))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let offered = read_words(&dir.join("cgroup.controllers"));
    let not_offered: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|c| !offered.iter().any(|o| o == c))
        .collect();
    if !not_offered.is_empty() {
        let parent = match dir.parent() {
            Some(p) if dir != root && p.starts_with(root) => p,
            _ => return false,
        };
        if !delegate(parent, root, &not_offered) {
            return false;
        }
    }
    enable(dir, &missing)
}

/// Writes `+c` for each controller to cgroup.subtree_control; whether all are enabled.
/// The kernel answers EBUSY for a non-root cgroup with processes in it.
fn enable(dir: &Path, controllers: &[&str]) -> bool {
    let file = dir.join("cgroup.subtree_control");
    for c in controllers {
        let _ = write_file(&file, &format!("+{c}"));
    }
    let enabled = read_words(&file);
    controllers.iter().all(|c| enabled.iter().any(|e| e == c))
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

impl Cgroup {
    pub(super) fn apply_v2(&self, limits: &Limits) -> Result<()> {
        let Layout::V2(dir) = &self.layout else {
            return Ok(());
        };
        if let Some(mem) = limits.memory {
            apply_v2_memory(dir, mem, limits.swap)?;
        }
        if limits.cpu_quota.is_some() || limits.cpu_period.is_some() {
            // "max" keeps the quota unlimited when only a period is given; a missing period
            // keeps the one in force (100000us by default), as runc does.
            let mut value = match limits.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            if let Some(period) = limits.cpu_period {
                value.push_str(&format!(" {period}"));
            }
            let file = dir.join("cpu.max");
            if file.exists() || limits.cpu_quota.is_some_and(|q| q > 0) {
                write_file(&file, &value)?;
            }
        }
        if let Some(pids) = limits.pids {
            let file = dir.join("pids.max");
            if file.exists() || pids > 0 {
                write_file(&file, &max_or(pids))?;
            }
        }
        Ok(())
    }
}
