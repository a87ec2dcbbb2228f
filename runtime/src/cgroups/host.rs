//! The host's cgroup hierarchies as this process sees them: mounts, its own membership,
//! and which of them a container joins.

use super::*;

/// The cgroup hierarchies mounted here and where the calling process sits in each.
#[derive(Debug, Default)]
pub(super) struct Host {
    pub(super) v1: Vec<V1Hier>,
    pub(super) v2: Option<V2Hier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct V1Hier {
    pub(super) controllers: Vec<String>,
    pub(super) mountpoint: PathBuf,
    /// The calling process's cgroup in this hierarchy.
    pub(super) own: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct V2Hier {
    pub(super) mountpoint: PathBuf,
    pub(super) own: PathBuf,
    /// What the hierarchy's root (the mount) can hand out: `cgroup.controllers`.
    pub(super) available: Vec<String>,
}

impl Host {
    pub(super) fn detect() -> Result<Host> {
        let read = |p: &str| {
            fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: p.into(),
                source,
            })
        };
        let mounts = parse_mountinfo(&read("/proc/self/mountinfo")?);
        let member = parse_proc_cgroup(&read("/proc/self/cgroup")?);
        let mut host = Host::from_parts(&mounts, &member);
        if let Some(v2) = &mut host.v2 {
            v2.available = fs::read_to_string(v2.mountpoint.join("cgroup.controllers"))
                .map(|t| t.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default();
        }
        if host.v1.is_empty() && host.v2.is_none() {
            return Err(CgroupError::NotMounted);
        }
        Ok(host)
    }

    /// Joins the mounts with the process's membership: for each hierarchy the process is
    /// in, the first mount that shows its cgroup.
    pub(super) fn from_parts(mounts: &[CgMount], member: &[Membership]) -> Host {
        let mut host = Host::default();
        for m in member {
            if m.controllers.is_empty() {
                if host.v2.is_some() {
                    continue;
                }
                host.v2 = mounts.iter().find(|mt| mt.v2).map(|mt| {
                    // Outside the mount's root (a cgroup namespace shows "/.."): the
                    // mount's root is the closest we can see.
                    let rel = relative(&m.path, &mt.root).unwrap_or_default();
                    V2Hier {
                        mountpoint: mt.mountpoint.clone(),
                        own: join_rel(&mt.mountpoint, &rel),
                        available: Vec::new(),
                    }
                });
                continue;
            }
            let real: Vec<&String> = m
                .controllers
                .iter()
                .filter(|c| !c.starts_with("name="))
                .collect();
            if real.is_empty() {
                continue; // a named hierarchy (name=systemd) limits nothing
            }
            let found = mounts
                .iter()
                .filter(|mt| !mt.v2 && real.iter().all(|c| mt.options.contains(c)))
                .find_map(|mt| {
                    relative(&m.path, &mt.root).map(|rel| V1Hier {
                        controllers: real.iter().map(|c| c.to_string()).collect(),
                        mountpoint: mt.mountpoint.clone(),
                        own: join_rel(&mt.mountpoint, &rel),
                    })
                });
            if let Some(h) = found
                && !host.v1.iter().any(|o| o.mountpoint == h.mountpoint)
            {
                host.v1.push(h);
            }
        }
        host
    }

    pub(super) fn v1_has(&self, controller: &str) -> bool {
        self.v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| c == controller))
    }

    pub(super) fn v2_has(&self, controller: &str) -> bool {
        self.v2
            .as_ref()
            .is_some_and(|v| v.available.iter().any(|c| c == controller))
    }

    /// The v1 hierarchies a container joins.
    pub(super) fn v1_used(&self) -> impl Iterator<Item = &V1Hier> {
        self.v1
            .iter()
            .filter(|h| h.controllers.iter().any(|c| V1_USED.contains(&c.as_str())))
    }

    /// v2 when every controller a container wants that this host has lives there (a pure
    /// v2 host); v1 when some are on v1 hierarchies (a hybrid or v1 host). Then whichever
    /// can enforce the `needed` ones, or an error naming the first missing controller.
    pub(super) fn choose(&self, needed: &[&'static str]) -> Result<Mode> {
        let v2_mounted = self.v2.is_some();
        let prefer_v2 = v2_mounted
            && WANTED
                .iter()
                .chain(needed)
                .all(|c| !self.v1_has(c) || self.v2_has(c))
            && (self.v1.is_empty() || WANTED.iter().any(|c| self.v2_has(c)));
        let (first, second) = if prefer_v2 {
            (Mode::V2, Mode::V1)
        } else {
            (Mode::V1, Mode::V2)
        };
        let mut missing = None;
        for mode in [first, second] {
            let (mounted, lacks) = match mode {
                Mode::V1 => (
                    self.v1_used().next().is_some(),
                    needed.iter().find(|c| !self.v1_has(c)),
                ),
                Mode::V2 => (v2_mounted, needed.iter().find(|c| !self.v2_has(c))),
            };
            match (mounted, lacks) {
                (false, _) => {}
                (true, None) => return Ok(mode),
                (true, Some(c)) => {
                    missing.get_or_insert(*c);
                }
            }
        }
        let Some(controller) = missing else {
            // Only hierarchies lb does not join (net_cls, a named one) are mounted.
            return Err(CgroupError::NotMounted);
        };
        Err(CgroupError::ControllerMissing {
            controller: controller.to_string(),
            limit: Limits::what(controller),
            detail: String::new(),
        })
    }
}

/// A cgroup file system mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CgMount {
    pub(super) v2: bool,
    /// The cgroup path the mount shows at its mount point.
    pub(super) root: String,
    pub(super) mountpoint: PathBuf,
    /// Super-block options: v1 names its controllers there ("rw,cpu,cpuacct").
    pub(super) options: Vec<String>,
}

/// A cgroup hierarchy as the host mounts it under /sys/fs/cgroup, for a container's own
/// view of it (`rootfs::mount_cgroups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyMount {
    /// The name below /sys/fs/cgroup ("memory", "cpu,cpuacct", "unified"); empty when the
    /// hierarchy is mounted on /sys/fs/cgroup itself (a pure v2 host).
    pub name: String,
    pub v2: bool,
    /// What selects the hierarchy when mounting it again: v1's controllers or `name=`.
    pub options: Vec<String>,
}

/// The cgroup hierarchies mounted under the host's /sys/fs/cgroup that a container joins
/// (v2, and the v1 ones with a controller lb uses), each once: a hierarchy it does not
/// join would show the host's tree from lb's own cgroup down.
pub fn container_hierarchies() -> Result<Vec<HierarchyMount>> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Read {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let base = Path::new("/sys/fs/cgroup");
    let mut found: Vec<HierarchyMount> = Vec::new();
    for m in parse_mountinfo(&text) {
        let Ok(rel) = m.mountpoint.strip_prefix(base) else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        if name.contains('/') || found.iter().any(|f| f.name == name) {
            continue;
        }
        if !m.v2 && !m.options.iter().any(|o| V1_USED.contains(&o.as_str())) {
            continue;
        }
        let options = if m.v2 {
            Vec::new()
        } else {
            // Super-block options other than the hierarchy's identity are the host's
            // business (rw, relatime, ...).
            m.options
                .into_iter()
                .filter(|o| {
                    !matches!(
                        o.as_str(),
                        "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec"
                    ) && !o.starts_with("release_agent")
                })
                .collect()
        };
        found.push(HierarchyMount {
            name,
            v2: m.v2,
            options,
        });
    }
    Ok(found)
}

pub(super) fn parse_mountinfo(text: &str) -> Vec<CgMount> {
    crate::mountinfo::parse(text)
        .into_iter()
        .filter_map(|m| {
            let v2 = match m.fstype.as_str() {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(CgMount {
                v2,
                root: m.root,
                mountpoint: m.mount_point,
                options: m.options,
            })
        })
        .collect()
}

/// One line of /proc/self/cgroup: `id:controllers:path`; v2 has no controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Membership {
    pub(super) controllers: Vec<String>,
    pub(super) path: String,
}

pub(super) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// `path` relative to a mount showing `root`, or None when the mount does not show it
/// (or it climbs out with `..`, as paths outside a cgroup namespace do).
pub(super) fn relative(path: &str, root: &str) -> Option<PathBuf> {
    let rest = if root == "/" {
        path.strip_prefix('/')?
    } else if path == root {
        ""
    } else {
        path.strip_prefix(root)?.strip_prefix('/')?
    };
    let rel = PathBuf::from(rest);
    rel.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then_some(rel)
}

/// `base/rel`, without the trailing '/' that joining an empty path adds (it would show in
/// every path handed out and error message).
pub(super) fn join_rel(base: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}
