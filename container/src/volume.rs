//! Volumes: directories of the store that outlive containers (docker's `local` driver).
//! Named ones (`-v NAME:/path`, `--mount type=volume,src=NAME`, `volume create`) and
//! anonymous ones (an image's `VOLUME`, `-v /path`: a random 64-hex name). Each is
//! `volumes/<name>/` with `volume.json` (docker's inspect keys) and `_data`, what the
//! container sees, bound at its path. A new volume mounted where the image has files gets
//! a copy of them first (docker's copy-up: owners, modes, times, links as they are).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lb_layerstore::Store;
use serde::{Deserialize, Serialize};

use crate::{ContainerConfig, Error, Record, Result};

/// A volume as the store keeps it and `volume inspect` shows it (docker's keys, in
/// docker's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeDefinition {
    pub created_at: String,
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub mountpoint: PathBuf,
    pub name: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub scope: String,
}

/// How a container uses a volume, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUse {
    pub name: String,
    /// The path in the container.
    pub destination: String,
    #[serde(default)]
    pub read_only: bool,
    /// Made for this container (an image's VOLUME, `-v /path`): `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
}

const DEFINITION: &str = "volume.json";
const DATA: &str = "_data";

/// docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn dir(store: &Store, name: &str) -> PathBuf {
    store.layout().volumes().join(name)
}

/// The volume `name`, if there is one.
pub fn lookup(store: &Store, name: &str) -> Result<Option<VolumeDefinition>> {
    if !valid_name(name) {
        return Ok(None);
    }
    crate::read_json(&dir(store, name).join(DEFINITION))
}

/// Every volume, by name.
pub fn list(store: &Store) -> Result<Vec<VolumeDefinition>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(store.layout().volumes()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = lookup(store, &name)? {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Makes volume `name` (a random one for none), or returns it when it exists (docker's
/// `volume create` of an existing name). Whole or not at all: made aside and renamed.
pub fn create(
    store: &Store,
    name: Option<&str>,
    labels: BTreeMap<String, String>,
) -> Result<VolumeDefinition> {
    let name = match name {
        Some(n) if !valid_name(n) => {
            return Err(Error::InvalidOption(format!(
                "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        Some(n) => n.to_string(),
        None => crate::ops::random_id()?,
    };
    if let Some(v) = lookup(store, &name)? {
        return Ok(v);
    }
    let top = store.layout().volumes();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(&top).map_err(io(&top))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&top)
        .map_err(io(&top))?;
    let data = tmp.path().join(DATA);
    std::fs::create_dir(&data).map_err(io(&data))?;
    let def = VolumeDefinition {
        created_at: crate::ops::now(),
        driver: "local".into(),
        labels,
        mountpoint: dir(store, &name).join(DATA),
        name: name.clone(),
        options: BTreeMap::new(),
        scope: "local".into(),
    };
    let f = tmp.path().join(DEFINITION);
    std::fs::write(
        &f,
        serde_json::to_vec_pretty(&def).expect("a volume as JSON"),
    )
    .map_err(io(&f))?;
    let target = dir(store, &name);
    match std::fs::rename(tmp.path(), &target) {
        Ok(()) => {
            let _ = tmp.keep();
            store.record_event(&lb_layerstore::Event::now(
                "volume",
                "create",
                &name,
                &[("driver", "local")],
            ));
            Ok(def)
        }
        // Made by another process meanwhile: theirs stands.
        Err(_) if target.join(DEFINITION).is_file() => {
            lookup(store, &name)?.ok_or_else(|| Error::Io {
                path: target,
                source: std::io::ErrorKind::NotFound.into(),
            })
        }
        Err(source) => Err(Error::Io {
            path: target,
            source,
        }),
    }
}

/// The containers whose records use volume `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<Record>> {
    Ok(store
        .containers::<ContainerConfig>()?
        .into_iter()
        .filter(|c| c.config.volumes.iter().any(|v| v.name == name))
        .collect())
}

/// Removes volume `name`: refused while a container uses it (docker's message), unless
/// `force` (docker's `volume rm -f` too refuses a volume in use; force only silences a
/// missing one).
pub fn remove(store: &Store, name: &str, force: bool) -> Result<()> {
    if lookup(store, name)?.is_none() {
        if force {
            return Ok(());
        }
        return Err(Error::NoSuchVolume(name.to_string()));
    }
    let users = users(store, name)?;
    if !users.is_empty() {
        let ids: Vec<&str> = users.iter().map(|c| c.id.as_str()).collect();
        return Err(Error::Conflict(format!(
            "remove {name}: volume is in use - [{}]",
            ids.join(", ")
        )));
    }
    store.discard(&dir(store, name))?;
    store.record_event(&lb_layerstore::Event::now(
        "volume",
        "destroy",
        name,
        &[("driver", "local")],
    ));
    Ok(())
}

/// Removes every volume no container uses that `chosen` picks (a prune's filters);
/// their names and the bytes they held.
pub fn prune(
    store: &Store,
    chosen: impl Fn(&VolumeDefinition) -> bool,
) -> Result<(Vec<String>, u64)> {
    let (mut names, mut bytes) = (Vec::new(), 0);
    for v in list(store)? {
        if chosen(&v) && users(store, &v.name)?.is_empty() {
            bytes += lb_layerstore::files_size(&v.mountpoint);
            remove(store, &v.name, false)?;
            names.push(v.name);
        }
    }
    Ok((names, bytes))
}

/// Whether the volume's data directory holds nothing yet (copy-up fills only those).
pub fn is_empty(def: &VolumeDefinition) -> bool {
    std::fs::read_dir(&def.mountpoint).is_ok_and(|mut d| d.next().is_none())
}

/// docker's copy-up: the image's files at `destination` (resolved inside the image's
/// tree `image_root`, never outside it) become the empty volume's first content, its
/// directory's owner and mode included. Nothing when the image has no directory there.
pub fn copy_up(def: &VolumeDefinition, image_root: &Path, destination: &str) -> Result<()> {
    let root = lb_rootpath::Root::open(image_root).map_err(|source| Error::Io {
        path: image_root.to_path_buf(),
        source,
    })?;
    let Ok(src) = root.host_path(Path::new(destination), true) else {
        return Ok(());
    };
    if !std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_dir()) || !is_empty(def) {
        return Ok(());
    }
    // copy_tree makes its target: the empty data directory gives way to the copy.
    std::fs::remove_dir(&def.mountpoint).map_err(|source| Error::Io {
        path: def.mountpoint.clone(),
        source,
    })?;
    lb_layerstore::copy_tree(&src, &def.mountpoint)?;
    Ok(())
}

/// What `-v`, `--mount` and the image's `VOLUME`s ask of volumes, turned into binds of
/// their data directories (the rest of `run`'s mount rules then apply as to any bind).
#[derive(Debug, Default)]
pub struct VolumePlan {
    pub uses: Vec<VolumeUse>,
    /// `-v` values with volumes made binds of their data directories.
    pub volumes: Vec<String>,
    /// `--mount` values likewise.
    pub mounts: Vec<String>,
}

/// Plans the volumes of a container: named ones from `-v NAME:/dst[:MODE]` and
/// `--mount type=volume,src=NAME,...`, anonymous ones (new random names) from `-v /dst`,
/// `--mount type=volume` without a source, and each image `VOLUME` no other mount covers.
/// Nothing is made yet (see [`make`]).
pub fn plan(
    store: &Store,
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    image_volumes: &[String],
) -> Result<VolumePlan> {
    let mut p = VolumePlan::default();
    let data = |name: &str| dir(store, name).join(DATA).display().to_string();
    for v in volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [d] if d.starts_with('/') => ("", *d, ""),
            [s, d] => (*s, *d, ""),
            [s, d, m] => (*s, *d, *m),
            _ => {
                return Err(Error::InvalidOption(format!(
                    "invalid volume specification: '{v}'"
                )));
            }
        };
        if src.starts_with('/') {
            p.volumes.push(v.clone());
            continue;
        }
        if !src.is_empty() && !valid_name(src) {
            return Err(Error::InvalidOption(format!(
                "create {src}: \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        let anonymous = src.is_empty();
        let name = if anonymous {
            crate::ops::random_id()?
        } else {
            src.to_string()
        };
        let modes: Vec<&str> = mode
            .split(',')
            .filter(|m| !m.is_empty() && *m != "nocopy")
            .collect();
        let read_only = modes.contains(&"ro");
        p.volumes.push(match modes.is_empty() {
            true => format!("{}:{dst}", data(&name)),
            false => format!("{}:{dst}:{}", data(&name), modes.join(",")),
        });
        p.uses.push(VolumeUse {
            name,
            destination: dst.to_string(),
            read_only,
            anonymous,
        });
    }
    for m in mounts {
        let fields: Vec<(&str, &str)> = m
            .split(',')
            .map(|f| f.split_once('=').unwrap_or((f, "")))
            .collect();
        let kind = fields
            .iter()
            .find(|(k, _)| *k == "type")
            .map_or("volume", |(_, v)| *v);
        if kind != "volume" {
            p.mounts.push(m.clone());
            continue;
        }
        let get = |keys: &[&str]| {
            fields
                .iter()
                .find(|(k, _)| keys.contains(k))
                .map(|(_, v)| *v)
        };
        let src = get(&["source", "src"]).unwrap_or("");
        let Some(dst) = get(&["target", "destination", "dst"]) else {
            return Err(Error::InvalidOption(format!(
                "invalid --mount {m}: target is required"
            )));
        };
        if !src.is_empty() && !valid_name(src) {
            return Err(Error::InvalidOption(format!(
                "invalid --mount {m}: \"{src}\" is not a valid volume name"
            )));
        }
        let read_only = fields
            .iter()
            .any(|(k, v)| matches!(*k, "readonly" | "ro") && matches!(*v, "" | "true" | "1"));
        let anonymous = src.is_empty();
        let name = if anonymous {
            crate::ops::random_id()?
        } else {
            src.to_string()
        };
        let mut bind = format!("type=bind,src={},dst={dst}", data(&name));
        if read_only {
            bind.push_str(",readonly");
        }
        p.mounts.push(bind);
        p.uses.push(VolumeUse {
            name,
            destination: dst.to_string(),
            read_only,
            anonymous,
        });
    }
    // The image's VOLUMEs: anonymous ones where no other mount is.
    let taken = |path: &str| {
        let clean = path.trim_end_matches('/');
        p.volumes
            .iter()
            .filter_map(|v| v.split(':').nth(1))
            .chain(p.mounts.iter().filter_map(|m| {
                m.split(',').find_map(|f| {
                    let (k, v) = f.split_once('=')?;
                    matches!(k, "target" | "destination" | "dst").then_some(v)
                })
            }))
            .chain(tmpfs.iter().map(|t| t.split(':').next().unwrap_or(t)))
            .any(|d| d.trim_end_matches('/') == clean)
    };
    let mut image_uses = Vec::new();
    for path in image_volumes {
        if taken(path)
            || image_uses
                .iter()
                .any(|u: &VolumeUse| u.destination == *path)
        {
            continue;
        }
        let name = crate::ops::random_id()?;
        image_uses.push(VolumeUse {
            name,
            destination: path.clone(),
            read_only: false,
            anonymous: true,
        });
    }
    for u in image_uses {
        p.volumes
            .push(format!("{}:{}", data(&u.name), u.destination));
        p.uses.push(u);
    }
    Ok(p)
}

/// Makes the planned volumes that do not exist yet; the empty ones with their paths, for
/// copy-up.
pub fn make(store: &Store, uses: &[VolumeUse]) -> Result<Vec<(VolumeDefinition, String)>> {
    let mut fresh = Vec::new();
    for u in uses {
        let def = create(store, Some(&u.name), BTreeMap::new())?;
        if is_empty(&def) {
            fresh.push((def, u.destination.clone()));
        }
    }
    Ok(fresh)
}

/// Removes the anonymous volumes of `record` (`rm -v`, and `--rm` containers as they
/// go) that no other container uses.
pub fn release_anonymous(store: &Store, record: &Record) {
    for u in record.config.volumes.iter().filter(|u| u.anonymous) {
        let others = users(store, &u.name)
            .map(|users| users.iter().any(|c| c.id != record.id))
            .unwrap_or(true);
        if !others {
            let _ = store.discard(&dir(store, &u.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["ab", "data", "my_vol.1-x", "0a"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a", "-ab", ".ab", "a/b", "../x", "a b", "/abs"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_is_whole_and_idempotent_remove_refuses_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v = create(&store, Some("data"), BTreeMap::new()).unwrap();
        assert!(v.mountpoint.is_dir() && is_empty(&v));
        assert_eq!(create(&store, Some("data"), BTreeMap::new()).unwrap(), v);
        let anon = create(&store, None, BTreeMap::new()).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert_eq!(
            list(&store)
                .unwrap()
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .len(),
            2
        );
        assert!(create(&store, Some("../x"), BTreeMap::new()).is_err());
        remove(&store, "data", false).unwrap();
        assert!(lookup(&store, "data").unwrap().is_none());
        assert_eq!(
            remove(&store, "data", false).unwrap_err().to_string(),
            "No such volume: data"
        );
        remove(&store, "data", true).unwrap();
    }

    #[test]
    fn copy_up_copies_the_images_directory_and_stays_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir_all(image.join("srv/data/sub")).unwrap();
        std::fs::write(image.join("srv/data/sub/f"), "hi").unwrap();
        // A link out of the image: resolved inside the image's root, not the host's.
        std::os::unix::fs::symlink("/etc", image.join("escape")).unwrap();
        let v = create(&store, Some("data"), BTreeMap::new()).unwrap();
        copy_up(&v, &image, "/srv/data").unwrap();
        assert_eq!(
            std::fs::read_to_string(v.mountpoint.join("sub/f")).unwrap(),
            "hi"
        );
        // Not empty now: a second copy-up adds nothing.
        std::fs::write(image.join("srv/data/new"), "x").unwrap();
        copy_up(&v, &image, "/srv/data").unwrap();
        assert!(!v.mountpoint.join("new").exists());
        let w = create(&store, Some("other"), BTreeMap::new()).unwrap();
        copy_up(&w, &image, "/escape").unwrap();
        assert!(is_empty(&w), "the host's /etc was copied");
    }
}
