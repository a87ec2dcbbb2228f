//! File digests remembered between builds: the content digest of a file a build read (a
//! COPY source, a bind mount's), kept with what `stat` said of it then (device, inode,
//! size, mtime and ctime to the nanosecond), so a later build that finds the same stat
//! takes the digest without reading the file again. Any write to a file changes its mtime
//! (and setting an mtime back changes the ctime); a file modified within the last seconds
//! is not remembered, as its mtime could still be equal after another write in the same
//! clock tick (git's "racily clean").
//!
//! Kept in one JSON file (`<store>/build/file-digests.json`), replaced atomically at the end
//! of a build; a missing or unreadable file is an empty cache, never an error.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use lb_layerstore::{Digest, Digester};
use serde::{Deserialize, Serialize};

/// A file modified this recently (seconds) is hashed but not remembered.
const RACY_SECS: i64 = 2;
/// Entries no build used for this long (seconds) are dropped when the cache is saved.
const KEEP_SECS: i64 = 14 * 24 * 3600;
/// At most this many entries are kept, the most recently used first.
const MAX_ENTRIES: usize = 500_000;
/// An entry's `used` is moved on only when it is this much older (seconds), so that a
/// rebuild whose files are all known changes nothing and writes no file.
const USED_GRAIN: i64 = 3600;

/// A file that could not be read to hash it: `PATH: ERROR`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct DigestError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stat {
    fn of(md: &fs::Metadata) -> Stat {
        Stat {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    stat: Stat,
    digest: String,
    /// When a build last used this entry (seconds since the epoch).
    used: i64,
}

/// The remembered digests; shared by the steps of a build (they hash in parallel).
#[derive(Debug, Default)]
pub struct FileDigests {
    file: Option<PathBuf>,
    known: Mutex<HashMap<PathBuf, Known>>,
    /// Whether `known` differs from the file it was loaded from.
    changed: std::sync::atomic::AtomicBool,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl FileDigests {
    /// The cache kept in `file`, empty when it is missing or unreadable.
    pub fn load(file: PathBuf) -> FileDigests {
        let known = fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        FileDigests {
            file: Some(file),
            known: Mutex::new(known),
            changed: Default::default(),
        }
    }

    /// The sha256 of the file at `path`, whose metadata (not following a symlink) is `md`:
    /// remembered when the stat is unchanged, otherwise read and hashed.
    pub fn digest(&self, path: &Path, md: &fs::Metadata) -> Result<Digest, DigestError> {
        let stat = Stat::of(md);
        let t = now();
        if let Some(k) = self.known.lock().expect("digests").get_mut(path)
            && k.stat == stat
            && let Ok(d) = k.digest.parse::<Digest>()
        {
            if t - k.used >= USED_GRAIN {
                k.used = t;
                self.mark_changed();
            }
            return Ok(d);
        }
        let failed = |source| DigestError {
            path: path.to_path_buf(),
            source,
        };
        let mut f = fs::File::open(path).map_err(failed)?;
        let mut h = Digester::new(std::io::sink());
        std::io::copy(&mut f, &mut h).map_err(failed)?;
        let digest = h.finish().0;
        // The stat again, after the read: a file written meanwhile is not remembered.
        let settled = fs::symlink_metadata(path).is_ok_and(|now_md| Stat::of(&now_md) == stat)
            && t - stat.mtime.0 > RACY_SECS;
        let mut known = self.known.lock().expect("digests");
        self.mark_changed();
        if settled {
            known.insert(
                path.to_path_buf(),
                Known {
                    stat,
                    digest: digest.to_string(),
                    used: t,
                },
            );
        } else {
            known.remove(path);
        }
        Ok(digest)
    }

    fn mark_changed(&self) {
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the cache back (old and surplus entries dropped), atomically: a build killed
    /// meanwhile leaves the previous file. Failing to save costs only re-reading next time.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let known = self.known.lock().expect("digests");
        let cutoff = now() - KEEP_SECS;
        let mut kept: Vec<(&PathBuf, &Known)> =
            known.iter().filter(|(_, k)| k.used >= cutoff).collect();
        if kept.len() > MAX_ENTRIES {
            kept.sort_by_key(|(_, k)| std::cmp::Reverse(k.used));
            kept.truncate(MAX_ENTRIES);
        }
        if kept.len() == known.len() && !self.changed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let kept: HashMap<&PathBuf, &Known> = kept.into_iter().collect();
        let Some(dir) = file.parent() else { return };
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(std::io::BufWriter::new(tmp.as_file_mut()), &kept)?;
            tmp.persist(file).map_err(|e| e.error)?;
            Ok(())
        };
        let _ = write();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn age(path: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_build_that_learns_nothing_new_writes_no_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let cache_file = dir.path().join("digests.json");
        let f = dir.path().join("a");
        fs::write(&f, "one").unwrap();
        age(&f, 100);
        let d = FileDigests::load(cache_file.clone());
        d.digest(&f, &fs::symlink_metadata(&f).unwrap()).unwrap();
        d.save();
        let written = fs::metadata(&cache_file).unwrap().ino();

        let d = FileDigests::load(cache_file.clone());
        d.digest(&f, &fs::symlink_metadata(&f).unwrap()).unwrap();
        d.save();
        assert_eq!(fs::metadata(&cache_file).unwrap().ino(), written);

        // An entry last used long ago is moved on, and that is saved.
        {
            let d = FileDigests::load(cache_file.clone());
            d.known.lock().unwrap().get_mut(&f).unwrap().used -= USED_GRAIN;
            d.mark_changed();
            d.save();
        }
        let d = FileDigests::load(cache_file.clone());
        d.digest(&f, &fs::symlink_metadata(&f).unwrap()).unwrap();
        d.save();
        let saved = FileDigests::load(cache_file.clone());
        assert!(now() - saved.known.lock().unwrap()[&f].used < USED_GRAIN);
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_and_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let cache_file = dir.path().join("digests.json");
        let f = dir.path().join("a");
        fs::write(&f, "one").unwrap();
        age(&f, 100);
        let d = FileDigests::load(cache_file.clone());
        let one = d.digest(&f, &fs::symlink_metadata(&f).unwrap()).unwrap();
        assert_eq!(one, Digest::of(b"one"));
        d.save();

        // A later build: the digest comes from the cache. The proof: a file whose stat is
        // forged equal but whose bytes differ still gets the remembered digest.
        let d = FileDigests::load(cache_file.clone());
        let md = fs::symlink_metadata(&f).unwrap();
        {
            let mut known = d.known.lock().unwrap();
            known.get_mut(&f).unwrap().digest = Digest::of(b"remembered").to_string();
        }
        assert_eq!(d.digest(&f, &md).unwrap(), Digest::of(b"remembered"));

        // Written again (same size): mtime/ctime differ, the file is read.
        fs::write(&f, "two").unwrap();
        let md = fs::symlink_metadata(&f).unwrap();
        assert_eq!(d.digest(&f, &md).unwrap(), Digest::of(b"two"));
        // Just written: hashed, but not remembered (racily clean).
        assert!(!d.known.lock().unwrap().contains_key(&f));
    }

    #[test]
    fn a_broken_cache_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache_file = dir.path().join("digests.json");
        fs::write(&cache_file, "{ not json").unwrap();
        let f = dir.path().join("a");
        fs::write(&f, "x").unwrap();
        let d = FileDigests::load(cache_file);
        let md = fs::symlink_metadata(&f).unwrap();
        assert_eq!(d.digest(&f, &md).unwrap(), Digest::of(b"x"));
    }

    #[test]
    fn a_file_gone_before_it_is_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("gone");
        fs::write(&f, "x").unwrap();
        let md = fs::symlink_metadata(&f).unwrap();
        fs::remove_file(&f).unwrap();
        let e = FileDigests::default().digest(&f, &md).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: No such file or directory (os error 2)", f.display())
        );
        assert_eq!(e.path, f);
    }
}
