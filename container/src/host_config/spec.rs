//! What the host-side flags change in the OCI spec: namespaces shared with the host or
//! joined from another container (`--pid`, `--ipc`, `--uts`), `/dev/shm` (its size, the
//! host's or another container's, or none with `--ipc none`), sysctls (refused where
//! runc refuses them: a net sysctl without a network namespace of the container's, an
//! IPC one in the host's IPC namespace), and, at each start, the `--device` nodes with
//! their cgroup rules (looked up then, as docker does, so a missing device fails the
//! start, not the create).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxNamespaceType, MountBuilder, Spec,
};

use super::HostConfigRecord;
use super::parse::ipc_sysctl;
use crate::error::{Error, Result, invalid};

/// Namespaces to join from other containers, resolved by the caller from their records:
/// `/proc/PID/ns/...` of their first process. (`--ipc container:NAME` shares the IPC
/// namespace, SysV IPC and message queues, but not that container's `/dev/shm`: lb mounts
/// each container's inside its own mount namespace, where no other mount can reach it;
/// docker keeps it on the host for this.)
#[derive(Debug, Default, Clone)]
pub struct Joins {
    pub pid: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
}

/// A namespace of the spec made shared with the host (removed) or joined (by path).
fn set_namespace(spec: &mut Spec, typ: LinuxNamespaceType, host: bool, path: Option<&Path>) {
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if host {
        namespaces.retain(|n| n.typ() != typ);
    } else if let Some(p) = path {
        for n in namespaces.iter_mut().filter(|n| n.typ() == typ) {
            n.set_path(Some(p.to_path_buf()));
        }
    }
    linux.set_namespaces(Some(namespaces));
}

/// `--memory-swap` beside the spec's `--memory`, with docker's daemon's refusals (without
/// it the runtime gives twice the memory, docker's default).
fn set_memory_swap(spec: &mut Spec, swap: i64) -> Result<()> {
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut memory = (*resources.memory()).unwrap_or_default();
    let limit = memory.limit().filter(|l| *l > 0);
    match limit {
        None if swap > 0 => {
            return Err(Error::InvalidOption(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            ));
        }
        Some(l) if swap > 0 && swap < l => {
            return Err(Error::InvalidOption(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
        _ => {}
    }
    memory.set_swap(Some(swap));
    resources.set_memory(Some(memory));
    linux.set_resources(Some(resources));
    Ok(())
}

fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

/// The spec's namespaces, `/dev/shm` and sysctls as the record's flags say.
pub fn apply(spec: &mut Spec, rec: &HostConfigRecord, joins: &Joins) -> Result<()> {
    if let Some(swap) = rec.memory_swap {
        set_memory_swap(spec, swap)?;
    }
    set_namespace(
        spec,
        LinuxNamespaceType::Pid,
        rec.pid_mode == "host",
        joins.pid.as_deref(),
    );
    set_namespace(
        spec,
        LinuxNamespaceType::Ipc,
        rec.ipc_mode == "host",
        joins.ipc.as_deref(),
    );
    set_namespace(spec, LinuxNamespaceType::Uts, rec.uts_mode == "host", None);

    let bind = |source: &Path| {
        MountBuilder::default()
            .destination("/dev/shm")
            .typ("bind")
            .source(source)
            .options(vec!["rbind".to_string(), "rprivate".to_string()])
            .build()
            .expect("shm bind")
    };
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let shm_at = mounts
        .iter()
        .position(|m| m.destination() == Path::new("/dev/shm"));
    if let Some(i) = shm_at {
        match rec.ipc_mode.as_str() {
            "none" => {
                mounts.remove(i);
            }
            "host" => mounts[i] = bind(Path::new("/dev/shm")),
            _ => {
                if let Some(bytes) = rec.shm_size.filter(|s| *s > 0) {
                    let mut options = mounts[i].options().clone().unwrap_or_default();
                    options.retain(|o| !o.starts_with("size="));
                    options.push(format!("size={bytes}"));
                    mounts[i].set_options(Some(options));
                }
            }
        }
    }
    spec.set_mounts(Some(mounts));

    if !rec.sysctls.is_empty() {
        for key in rec.sysctls.keys() {
            if key.starts_with("net.") && !has_namespace(spec, LinuxNamespaceType::Network) {
                invalid!("sysctl {key:?} not allowed in host network namespace");
            }
            if ipc_sysctl(key) && !has_namespace(spec, LinuxNamespaceType::Ipc) {
                invalid!("sysctl {key:?} is not allowed in the hosts ipc namespace");
            }
        }
        if let Some(linux) = spec.linux_mut() {
            linux.set_sysctl(Some(rec.sysctls.clone().into_iter().collect()));
        }
    }
    Ok(())
}

/// The `--device` nodes to make and the cgroup rules that let the container use them,
/// from the host's devices as they are now.
pub fn devices(rec: &HostConfigRecord) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in &rec.devices {
        let fail = |reason: String| Error::Device {
            path: d.path_on_host.clone(),
            reason,
        };
        let meta = std::fs::metadata(&d.path_on_host).map_err(|e| fail(crate::go_io_text(&e)))?;
        let typ = if meta.file_type().is_char_device() {
            LinuxDeviceType::C
        } else if meta.file_type().is_block_device() {
            LinuxDeviceType::B
        } else {
            return Err(fail("not a device node".into()));
        };
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
        nodes.push(
            LinuxDeviceBuilder::default()
                .path(&d.path_in_container)
                .typ(typ)
                .major(major)
                .minor(minor)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
                .expect("device"),
        );
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .major(major)
                .minor(minor)
                .access(d.cgroup_permissions.clone())
                .build()
                .expect("device rule"),
        );
    }
    Ok((nodes, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        lb_runtime::defaults::docker_spec(vec!["true".into()], true)
    }

    fn namespaces(s: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        s.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    fn shm(s: &Spec) -> Option<oci_spec::runtime::Mount> {
        s.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .cloned()
    }

    #[test]
    fn host_and_joined_namespaces() {
        let mut s = spec();
        let rec = HostConfigRecord {
            pid_mode: "host".into(),
            uts_mode: "host".into(),
            ipc_mode: "container:x".into(),
            ..Default::default()
        };
        let joins = Joins {
            pid: None,
            ipc: Some("/proc/9/ns/ipc".into()),
        };
        apply(&mut s, &rec, &joins).unwrap();
        let ns = namespaces(&s);
        assert!(
            !ns.iter()
                .any(|(t, _)| matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Uts))
        );
        assert!(ns.contains(&(LinuxNamespaceType::Ipc, Some("/proc/9/ns/ipc".into()))));
        assert_eq!(shm(&s).unwrap().typ().as_deref(), Some("tmpfs"));
        let mut s = spec();
        let rec = HostConfigRecord {
            ipc_mode: "host".into(),
            ..Default::default()
        };
        apply(&mut s, &rec, &Joins::default()).unwrap();
        assert_eq!(
            shm(&s).unwrap().source().as_deref(),
            Some(Path::new("/dev/shm"))
        );
    }

    #[test]
    fn memory_swap_beside_the_memory_limit() {
        let swap = |memory: Option<i64>, swap: i64| {
            let mut s = spec();
            if let Some(m) = memory {
                let mut r = s.linux().as_ref().unwrap().resources().clone().unwrap();
                r.set_memory(Some(
                    oci_spec::runtime::LinuxMemoryBuilder::default()
                        .limit(m)
                        .build()
                        .unwrap(),
                ));
                s.linux_mut().as_mut().unwrap().set_resources(Some(r));
            }
            let rec = HostConfigRecord {
                memory_swap: Some(swap),
                ..Default::default()
            };
            apply(&mut s, &rec, &Joins::default())
                .map(|()| {
                    let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
                    r.memory().as_ref().unwrap().swap()
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(swap(Some(64 << 20), 100 << 20), Ok(Some(100 << 20)));
        assert_eq!(swap(Some(64 << 20), -1), Ok(Some(-1)));
        assert_eq!(swap(None, -1), Ok(Some(-1)));
        assert!(
            swap(Some(64 << 20), 32 << 20)
                .unwrap_err()
                .contains("Minimum memoryswap")
        );
        assert!(
            swap(None, 100 << 20)
                .unwrap_err()
                .contains("always set the Memory limit")
        );
    }

    #[test]
    fn shm_size_and_none() {
        let mut s = spec();
        let rec = HostConfigRecord {
            shm_size: Some(2 << 20),
            ..Default::default()
        };
        apply(&mut s, &rec, &Joins::default()).unwrap();
        let o = shm(&s).unwrap().options().clone().unwrap();
        assert!(o.contains(&"size=2097152".to_string()) && !o.contains(&"size=65536k".to_string()));
        let mut s = spec();
        let rec = HostConfigRecord {
            ipc_mode: "none".into(),
            ..Default::default()
        };
        apply(&mut s, &rec, &Joins::default()).unwrap();
        assert!(shm(&s).is_none());
    }

    #[test]
    fn sysctls_refused_where_runc_refuses_them() {
        let with = |k: &str, ipc: &str, own_net: bool| {
            let mut s = lb_runtime::defaults::docker_spec(vec!["true".into()], own_net);
            let rec = HostConfigRecord {
                sysctls: [(k.to_string(), "1".to_string())].into(),
                ipc_mode: ipc.into(),
                ..Default::default()
            };
            apply(&mut s, &rec, &Joins::default()).map(|()| s)
        };
        let s = with("net.ipv4.ip_forward", "", true).unwrap();
        assert_eq!(
            s.linux().as_ref().unwrap().sysctl().as_ref().unwrap()["net.ipv4.ip_forward"],
            "1"
        );
        assert_eq!(
            with("net.ipv4.ip_forward", "", false)
                .unwrap_err()
                .to_string(),
            r#"sysctl "net.ipv4.ip_forward" not allowed in host network namespace"#
        );
        assert_eq!(
            with("kernel.shm_rmid_forced", "host", true)
                .unwrap_err()
                .to_string(),
            r#"sysctl "kernel.shm_rmid_forced" is not allowed in the hosts ipc namespace"#
        );
    }

    #[test]
    fn devices_from_the_host() {
        let rec = HostConfigRecord {
            devices: vec![super::super::parse::parse_device("/dev/null:/dev/n2:r").unwrap()],
            ..Default::default()
        };
        let (nodes, rules) = devices(&rec).unwrap();
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(nodes[0].path(), Path::new("/dev/n2"));
        assert_eq!(rules[0].access().as_deref(), Some("r"));
        let rec = HostConfigRecord {
            devices: vec![super::super::parse::parse_device("/dev/nosuch").unwrap()],
            ..Default::default()
        };
        assert_eq!(
            devices(&rec).unwrap_err().to_string(),
            r#"error gathering device information while adding custom device "/dev/nosuch": no such file or directory"#
        );
    }
}
