//! Container records: `containers/<id>/container.json` says which image a container was
//! made from, its name and how it runs (a config of the caller's own type, which the store
//! stores and never reads: it reads records as `ContainerRecord<IgnoredAny>`); beside it
//! live its `upper/` and `work/` directories and whatever state the caller keeps. The store
//! keeps names unique, refuses to delete an image a container uses, and keeps that image's
//! blobs and snapshots through a prune. It knows nothing of processes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::digest::Digest;
use crate::store::{Store, write_atomic};

/// What the store knows of a container, and the caller's config `C` of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord<C = serde::de::IgnoredAny> {
    /// 64 lowercase hex digits.
    pub id: String,
    /// Unique among containers (docker's `--name`, or a generated one).
    pub name: String,
    /// The manifest of the image it was made from: kept alive while the container exists.
    pub image: Digest,
    /// The name it was asked for by (`busybox`), for `ps`.
    pub image_name: String,
    /// RFC 3339.
    pub created: String,
    /// Removed as soon as it exits (`run --rm`): a record that is never kept need not
    /// survive a crash, so it is written without fsync (container start is a hot path).
    #[serde(default)]
    pub auto_remove: bool,
    /// The caller's own description of the container (command, options, spec).
    pub config: C,
}

/// docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, two characters at least.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Store {
    fn containers_dir(&self) -> PathBuf {
        self.layout().containers()
    }

    /// The directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.layout().container(id)
    }

    /// Records a new container and makes its directory with empty `upper/` and `work/`.
    /// The name must be free; the record appears whole (written into a temporary
    /// directory that is renamed into place) or not at all.
    pub fn create_container<C: Serialize>(
        &self,
        record: &ContainerRecord<C>,
    ) -> Result<PathBuf, Error> {
        if record.id.len() != 64 || !record.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadContainer(format!(
                "invalid container id {:?}",
                record.id
            )));
        }
        if !valid_name(&record.name) {
            return Err(Error::BadContainer(format!(
                "Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                record.name
            )));
        }
        let _lock = self.lock("containers.lock")?;
        if let Some(other) = self
            .containers::<serde::de::IgnoredAny>()?
            .into_iter()
            .find(|c| c.name == record.name)
        {
            return Err(Error::BadContainer(format!(
                "the container name \"/{}\" is already in use by container \"{}\"; remove (or rename) that container to be able to reuse that name",
                record.name, other.id
            )));
        }
        let dir = self.containers_dir();
        let tmp = dir.join(format!(".tmp-{}", record.id));
        let _ = fs::remove_dir_all(&tmp);
        for sub in ["upper", "work", "rootfs"] {
            fs::create_dir_all(tmp.join(sub)).map_err(|e| Error::io(&tmp, e))?;
        }
        // The temporary directory's rename is what makes the record appear whole; the
        // file's fsync before it, and the parent's after, make it last.
        let json = serde_json::to_vec(record).expect("serialisable record");
        let file = tmp.join("container.json");
        fs::File::create(&file)
            .and_then(|mut f| {
                f.write_all(&json)?;
                if record.auto_remove {
                    Ok(())
                } else {
                    f.sync_all()
                }
            })
            .map_err(|e| Error::io(&file, e))?;
        let target = dir.join(&record.id);
        fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        if !record.auto_remove {
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(&dir, e))?;
        }
        Ok(target)
    }

    /// Every container, oldest first, its config read as `C`.
    pub fn containers<C: DeserializeOwned>(&self) -> Result<Vec<ContainerRecord<C>>, Error> {
        let dir = self.containers_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path().join("container.json");
            let Ok(bytes) = fs::read(&path) else { continue };
            let rec: ContainerRecord<C> =
                serde_json::from_slice(&bytes).map_err(|err| Error::Corrupt {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            out.push(rec);
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// A container by full id, name, or unambiguous id prefix (docker's lookup order).
    pub fn container<C: DeserializeOwned + Clone>(
        &self,
        key: &str,
    ) -> Result<ContainerRecord<C>, Error> {
        let all = self.containers::<C>()?;
        if let Some(c) = all
            .iter()
            .find(|c| c.id == key || c.name == key.trim_start_matches('/'))
        {
            return Ok(c.clone());
        }
        let hits: Vec<&ContainerRecord<C>> = all
            .iter()
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NoContainer(key.to_string())),
            _ => Err(Error::BadContainer(format!(
                "multiple IDs found with provided prefix: {key}"
            ))),
        }
    }

    /// Replaces a container's record (its config changed).
    pub fn update_container<C: Serialize>(&self, record: &ContainerRecord<C>) -> Result<(), Error> {
        let path = self.container_dir(&record.id).join("container.json");
        let json = serde_json::to_vec_pretty(record).expect("serialisable record");
        write_atomic(&path, &json)
    }

    /// Gives container `id` the name `name` (docker's rule; refused when another
    /// container has it, with docker 20.10's words).
    pub fn rename_container<C: Serialize + DeserializeOwned + Clone>(
        &self,
        id: &str,
        name: &str,
    ) -> Result<(), Error> {
        let name = name.trim_start_matches('/');
        if !valid_name(name) {
            return Err(Error::BadContainer(format!(
                "Error when allocating new name: Invalid container name (/{name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let _lock = self.lock("containers.lock")?;
        let all = self.containers::<C>()?;
        if let Some(other) = all.iter().find(|c| c.name == name && c.id != id) {
            return Err(Error::BadContainer(format!(
                "Error when allocating new name: Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        let mut record = all
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::NoContainer(id.to_string()))?;
        record.name = name.to_string();
        self.update_container(&record)
    }

    /// Deletes a container's directory. It is first renamed out of sight (the trash), so a
    /// crash midway never leaves half a container.
    pub fn remove_container(&self, id: &str) -> Result<(), Error> {
        let _lock = self.lock("containers.lock")?;
        let dir = self.container_dir(id);
        if !dir.exists() {
            return Err(Error::io(
                &dir,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        // A vfs container's rootfs is the snapshotter's active snapshot of its id (overlay
        // keeps its upper dir in the container's directory).
        if self.storage_driver() == crate::StorageDriver::Vfs {
            let snapshotter = self.snapshotter();
            let key = crate::SnapshotKey::new(id)?;
            let active = crate::Snapshot::Active(key);
            if snapshotter.exists(&active) {
                snapshotter.remove(&active)?;
            }
        }
        self.discard(&dir)
    }

    /// The bytes a container's own changes take, as `docker ps -s` and `system df` count
    /// them: regular files' sizes, hard links once. Overlay: what its upper directory holds.
    /// Vfs: the files of its tree that changed from its image's tree
    /// ([`crate::Snapshotter::usage`]); 0 when either tree cannot be read.
    pub fn container_size(&self, id: &str) -> u64 {
        match self.storage_driver() {
            crate::StorageDriver::Overlay => files_size(&self.container_dir(id).join("upper")),
            crate::StorageDriver::Vfs => crate::SnapshotKey::new(id)
                .and_then(|key| self.snapshotter().usage(&key))
                .unwrap_or(0),
        }
    }

    /// Removes `name` unless it is the last name of an image a container uses (docker's
    /// conflict), which only `force` overrides; the image's blobs then stay for the
    /// container. Returns what the name pointed at.
    pub fn remove_image_name(
        &self,
        name: &crate::Reference,
        force: bool,
    ) -> Result<Option<oci_spec::image::Descriptor>, Error> {
        // Held so that no container is created from the image between check and removal.
        let _lock = self.lock("containers.lock")?;
        if !force && let Ok(desc) = self.resolve(name) {
            let digest = Store::descriptor_digest(&desc)?;
            let other_names = self
                .names()?
                .iter()
                .filter(|(n, d)| n != name && Store::descriptor_digest(d).ok() == Some(digest))
                .count();
            if other_names == 0
                && let Some(user) = self.containers_using(&digest)?.first()
            {
                let image = self.image_by_manifest(digest)?;
                return Err(Error::BadContainer(format!(
                    "conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image {}",
                    name.familiar(),
                    &user[..12],
                    &image.config_digest.hex()[..12]
                )));
            }
        }
        self.remove_name(name)
    }

    /// The ids of containers made from the image with manifest `digest`.
    pub fn containers_using(&self, digest: &Digest) -> Result<Vec<String>, Error> {
        Ok(self
            .containers::<serde::de::IgnoredAny>()?
            .into_iter()
            .filter(|c| &c.image == digest)
            .map(|c| c.id)
            .collect())
    }
}

/// The bytes of the regular files under `dir` (not following links), hard links once.
pub fn files_size(dir: &Path) -> u64 {
    crate::snapshotter::file_bytes(dir, &mut Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: char, name: &str) -> ContainerRecord<serde_json::Value> {
        ContainerRecord {
            id: id.to_string().repeat(64),
            name: name.into(),
            image: Digest::of(b"manifest"),
            image_name: "busybox".into(),
            created: "2026-01-01T00:00:00Z".into(),
            auto_remove: false,
            config: serde_json::json!({"cmd": ["sh"]}),
        }
    }

    #[test]
    fn names_unique_lookup_by_name_id_prefix_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = record('a', "web");
        let path = store.create_container(&a).unwrap();
        assert!(path.join("upper").is_dir() && path.join("work").is_dir());
        let err = store.create_container(&record('b', "web")).unwrap_err();
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(store.create_container(&record('c', "-bad")).is_err());
        store.create_container(&record('b', "db")).unwrap();
        assert_eq!(store.container("web").unwrap(), a);
        assert_eq!(store.container("aaaa").unwrap(), a);
        assert_eq!(store.container(&"a".repeat(64)).unwrap(), a);
        assert!(matches!(
            store.container::<serde_json::Value>("zz"),
            Err(Error::NoContainer(_))
        ));
        assert_eq!(
            store
                .containers_using(&Digest::of(b"manifest"))
                .unwrap()
                .len(),
            2
        );
        store.remove_container(&a.id).unwrap();
        assert!(store.container::<serde_json::Value>("web").is_err());
        assert_eq!(store.containers::<serde_json::Value>().unwrap().len(), 1);
    }
}
