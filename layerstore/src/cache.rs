//! Build cache records: a cache key (the builder's digest of a step and everything it
//! read) names the image the step produced, as `cache/<hex>` holding that image's manifest
//! digest on its first line and, on its second, the step's inputs (a document only the
//! builder reads: what `--explain` compares). A record is a hint, not a root: `prune` removes the images no name or container
//! reaches and then every record whose image is gone, and a lookup whose image is
//! missing is a miss.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;
use crate::digest::Digest;
use crate::image::Image;
use crate::store::Store;

/// A build cache record as `system df` shows it.
#[derive(Debug, Clone)]
pub struct CacheRecord {
    /// The step's cache key.
    pub key: Digest,
    /// The image the step produced.
    pub image: Image,
    /// When the record was written (seconds since the epoch). When builds last used it
    /// is not kept (reading a record is what a build does; lb writes nothing then).
    pub created: i64,
}

impl Store {
    fn cache_dir(&self) -> PathBuf {
        self.layout().cache_records()
    }

    /// Every record whose image is still whole, oldest first (then by key).
    pub fn cache_records(&self) -> Vec<CacheRecord> {
        let Ok(entries) = fs::read_dir(self.cache_dir()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(key) = Digest::from_str(&format!("sha256:{name}")) else {
                continue;
            };
            let (Some(image), Ok(meta)) = (self.cache_get(&key), e.metadata()) else {
                continue;
            };
            out.push(CacheRecord {
                key,
                image,
                created: std::os::unix::fs::MetadataExt::mtime(&meta),
            });
        }
        out.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
        out
    }

    /// The image recorded for `key`, when it is still whole in the store.
    pub fn cache_get(&self, key: &Digest) -> Option<Image> {
        let text = fs::read_to_string(self.cache_dir().join(key.hex())).ok()?;
        let manifest = Digest::from_str(text.lines().next()?.trim()).ok()?;
        self.image_by_manifest(manifest).ok()
    }

    /// The inputs document recorded with `key`, if any.
    pub fn cache_inputs(&self, key: &Digest) -> Option<String> {
        let text = fs::read_to_string(self.cache_dir().join(key.hex())).ok()?;
        inputs_of(&text)
    }

    /// The inputs documents of every record that has one.
    pub fn cache_all_inputs(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.cache_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| inputs_of(&fs::read_to_string(e.path()).ok()?))
            .collect()
    }

    /// Records that `key` produced `image`, with the step's `inputs` document (one line
    /// of text) when given (atomically: a reader sees the old record or the new one).
    pub fn cache_put(
        &self,
        key: &Digest,
        image: &Image,
        inputs: Option<&str>,
    ) -> Result<(), Error> {
        let dir = self.cache_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let mut text = image.manifest_digest.to_string();
        if let Some(inputs) = inputs.filter(|i| !i.contains('\n')) {
            text = format!("{text}\n{inputs}\n");
        }
        tmp.write_all(text.as_bytes())
            .map_err(|e| Error::io(tmp.path(), e))?;
        let path = dir.join(key.hex());
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(())
    }

    /// Removes every build cache mount (`RUN --mount=type=cache` contents), under the gc
    /// lock, so none that a running build holds; the bytes they held.
    pub fn remove_cache_mounts(&self) -> Result<u64, Error> {
        let _gc = self.lock("gc.lock")?;
        let dir = self.layout().cache_mounts();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut bytes = 0;
        for e in entries.flatten() {
            bytes += crate::container::files_size(&e.path());
            self.discard(&e.path())?;
        }
        Ok(bytes)
    }

    /// Removes records whose image is gone, and leftovers of interrupted writes; the
    /// caller holds the gc lock, after the blobs were swept. Returns how many went.
    pub(crate) fn prune_cache(&self) -> u64 {
        let Ok(entries) = fs::read_dir(self.cache_dir()) else {
            return 0;
        };
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let gone = name.starts_with('.')
                || Digest::from_str(&format!("sha256:{name}"))
                    .ok()
                    .and_then(|k| self.cache_get(&k))
                    .is_none();
            if gone && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }
}

/// The second line of a record, when it has one.
fn inputs_of(text: &str) -> Option<String> {
    let line = text.lines().nth(1)?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lasts_as_long_as_its_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        let image = store.write_image(&config, &[], &[]).unwrap();
        let key = Digest::of(b"step");
        assert!(store.cache_get(&key).is_none());
        store.cache_put(&key, &image, Some("{\"step\":1}")).unwrap();
        assert_eq!(store.cache_inputs(&key).as_deref(), Some("{\"step\":1}"));
        assert_eq!(store.cache_all_inputs(), ["{\"step\":1}"]);
        assert_eq!(
            store.cache_get(&key).unwrap().manifest_digest,
            image.manifest_digest
        );
        assert_eq!(store.cache_records().len(), 1);
        // Kept by the caller: a prune leaves it, and the record with it.
        let keep = [image.manifest_digest, image.config_digest]
            .into_iter()
            .collect();
        store.prune_keeping(&keep).unwrap();
        assert!(store.cache_get(&key).is_some());
        // Nothing names the image: a prune takes it, and the record with it.
        store.prune().unwrap();
        assert!(store.cache_get(&key).is_none());
        assert_eq!(fs::read_dir(dir.path().join("cache")).unwrap().count(), 0);
    }
}
