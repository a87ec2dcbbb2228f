//! The content store: blobs named by the sha256 of their bytes under `blobs/sha256/<hex>`.
//!
//! Like containerd's content store it has narrow roles: a [`BlobWriter`] hashes while it
//! writes and commits by rename only when the bytes match what the caller expected, so no blob
//! is ever visible half-written or under a wrong name; readers can verify; equal content is
//! stored once. Temporary files live in `ingest/` on the same file system, so a crash leaves
//! at worst a stray temporary file there, never a bad blob.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::digest::{Digest, Digester};
use crate::error::{NoSpace, is_no_space};
use crate::reserve::SpaceGuard;

/// What a committed blob is: its digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// The blobs of a store root.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the content store under `root`.
    pub fn open(root: &Path) -> Result<ContentStore, Error> {
        let layout = crate::layout::Layout::new(root);
        let store = ContentStore {
            blobs: layout.blobs(),
            ingest: layout.ingest(),
        };
        for dir in [&store.blobs, &store.ingest] {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(store)
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size of a stored blob.
    pub fn info(&self, digest: &Digest) -> Result<BlobInfo, Error> {
        let path = self.path(digest);
        let meta = fs::metadata(&path).map_err(|e| not_found_or_io(digest, &path, e))?;
        Ok(BlobInfo {
            digest: *digest,
            size: meta.len(),
        })
    }

    /// A temporary file in `ingest/`, where blobs are written before they are committed.
    fn ingest_file(&self) -> Result<tempfile::NamedTempFile, Error> {
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.ingest)
            .map_err(|e| Error::io(&self.ingest, e))
    }

    /// A writer for a new blob; nothing is visible until [`BlobWriter::commit`].
    /// Its writes stop with [`Error::NoSpace`] before the store's file system falls below
    /// its reserve (`reserve.rs`).
    pub fn writer(&self) -> Result<BlobWriter, Error> {
        let temp = self.ingest_file()?;
        let guard = SpaceGuard::new(temp.as_file(), "writing a blob", temp.path())?;
        Ok(BlobWriter {
            out: Digester::new(temp),
            blobs: self.blobs.clone(),
            guard,
        })
    }

    /// A writer for a blob the caller hashes itself ([`CallerHashedWriter`]).
    pub fn writer_hashed_by_caller(&self) -> Result<CallerHashedWriter, Error> {
        let temp = self.ingest_file()?;
        let guard = SpaceGuard::new(temp.as_file(), "writing a layer blob", temp.path())?;
        let spool = crate::spool::Spool::new(temp.as_file(), temp.path())
            .map_err(|e| Error::io(temp.path(), e))?;
        Ok(CallerHashedWriter {
            temp,
            spool,
            blobs: self.blobs.clone(),
            guard,
        })
    }

    /// Stores `bytes` (a manifest, a config) and returns its digest.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobInfo, Error> {
        Ok(self.put_all(&[bytes])?[0])
    }

    /// Stores small blobs that are made together (a config and its manifest): each file is
    /// synced, then all are renamed into place, then the directory is synced once for all
    /// of them (one sync of it per blob cost a device flush each).
    pub fn put_all(&self, blobs: &[&[u8]]) -> Result<Vec<BlobInfo>, Error> {
        let mut infos = Vec::with_capacity(blobs.len());
        let mut written = Vec::new();
        for bytes in blobs {
            let info = BlobInfo {
                digest: Digest::of(bytes),
                size: bytes.len() as u64,
            };
            infos.push(info);
            if self.info(&info.digest).is_ok_and(|i| i.size == info.size) {
                continue;
            }
            let mut w = self.writer()?;
            w.write_all(bytes).map_err(|e| Error::io(&self.ingest, e))?;
            let (digest, _, temp) = w.out.finish();
            temp.as_file()
                .sync_all()
                .map_err(|e| Error::io_while("storing a blob", temp.path(), e))?;
            written.push((digest, temp));
        }
        if written.is_empty() {
            return Ok(infos);
        }
        for (digest, temp) in written {
            rename_into(&self.blobs, digest, temp)?;
        }
        sync_dir(&self.blobs)?;
        Ok(infos)
    }

    /// Copies `reader` into the store, checking it against `expected` when given.
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobInfo, Error> {
        let mut w = self.writer()?;
        io::copy(reader, &mut w).map_err(|e| Error::io(&self.ingest, e))?;
        w.commit(expected, expected_size)
    }

    /// Opens a blob for reading without checking it (use [`ContentStore::read_verified`] or
    /// [`ContentStore::verify`] where the bytes must be trusted).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, Error> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| not_found_or_io(digest, &path, e))
    }

    /// Reads a whole blob and checks that its bytes still hash to its name.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(|e| not_found_or_io(digest, &path, e))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Re-hashes a stored blob.
    pub fn verify(&self, digest: &Digest) -> Result<BlobInfo, Error> {
        let file = self.open_blob(digest)?;
        let mut hashing = Digester::new(BufReader::with_capacity(1 << 20, file));
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| Error::io(&self.path(digest), e))?;
        let (actual, size, _) = hashing.finish();
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(BlobInfo {
            digest: actual,
            size,
        })
    }

    /// Every stored blob (names that are not digests are skipped).
    pub fn list(&self) -> Result<Vec<BlobInfo>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(|e| Error::io(&self.blobs, e))? {
            let entry = entry.map_err(|e| Error::io(&self.blobs, e))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            let size = entry
                .metadata()
                .map_err(|e| Error::io(&entry.path(), e))?
                .len();
            out.push(BlobInfo { digest, size });
        }
        out.sort_by_key(|b| b.digest);
        Ok(out)
    }

    /// Removes a blob; returns the bytes freed (0 when it was not there).
    pub fn remove(&self, digest: &Digest) -> Result<u64, Error> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(meta) => {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                Ok(meta.len())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

fn not_found_or_io(digest: &Digest, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::BlobNotFound(*digest)
    } else {
        Error::io(path, e)
    }
}

/// A blob being written: hashed as it goes, invisible until committed. A full disk, or the
/// reserve reached, is an `io::Error` carrying a [`NoSpace`] that names the blob's file.
pub struct BlobWriter {
    out: Digester<tempfile::NamedTempFile>,
    blobs: PathBuf,
    guard: SpaceGuard,
}

/// `e` from a write of what `guard` watches: a full disk becomes its [`NoSpace`].
fn tagged(guard: &SpaceGuard, e: io::Error) -> io::Error {
    if is_no_space(&e) && NoSpace::carried(&e).is_none() {
        guard.full().into_io()
    } else {
        e
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf).map_err(|e| tagged(&self.guard, e))?;
        self.guard.wrote(n as u64).map_err(NoSpace::into_io)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Makes the blob visible under its digest, after checking it against what the caller
    /// expected. On a mismatch nothing is stored and the temporary file is removed.
    pub fn commit(
        self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobInfo, Error> {
        let (digest, size, temp) = self.out.finish();
        publish(
            &self.blobs,
            digest,
            size,
            temp,
            expected,
            expected_size,
            false,
        )
    }
}

/// A blob writer whose bytes the caller hashes itself (a layer diff hashes its tar for
/// the diffID, which for an uncompressed layer is the blob's digest): one hash, not two.
/// Layers are large: the bytes are written on a thread of their own ([`crate::spool`]).
pub struct CallerHashedWriter {
    temp: tempfile::NamedTempFile,
    spool: crate::spool::Spool,
    blobs: PathBuf,
    guard: SpaceGuard,
}

impl Write for CallerHashedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.spool.write(buf).map_err(|e| tagged(&self.guard, e))?;
        self.guard.wrote(n as u64).map_err(NoSpace::into_io)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.spool.flush()
    }
}

impl CallerHashedWriter {
    /// Makes the blob visible under `digest`, the sha256 the caller computed over exactly
    /// the bytes it wrote, after checking their count.
    pub fn commit(self, digest: Digest, size: u64) -> Result<BlobInfo, Error> {
        let written = self
            .spool
            .finish(self.temp.as_file())
            .map_err(|e| Error::io_while("writing a layer blob", self.temp.path(), e))?;
        // `finish` synced the data.
        publish(
            &self.blobs,
            digest,
            written,
            self.temp,
            None,
            Some(size),
            true,
        )
    }
}

/// Checks a written blob against what was expected, then makes it durable (its data
/// unless the writer synced them) and visible under its digest (stored once: equal
/// content already there stands).
fn publish(
    blobs: &Path,
    digest: Digest,
    size: u64,
    temp: tempfile::NamedTempFile,
    expected: Option<&Digest>,
    expected_size: Option<u64>,
    data_synced: bool,
) -> Result<BlobInfo, Error> {
    if let Some(want) = expected_size {
        if want != size {
            return Err(Error::SizeMismatch {
                expected: want,
                actual: size,
            });
        }
    }
    if let Some(want) = expected {
        if *want != digest {
            return Err(Error::DigestMismatch {
                expected: *want,
                actual: digest,
            });
        }
    }
    // Durable before visible: data, then the rename, then the directory entry.
    if !data_synced {
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io_while("storing a blob", temp.path(), e))?;
    }
    if rename_into(blobs, digest, temp)? {
        sync_dir(blobs)?;
    }
    Ok(BlobInfo { digest, size })
}

/// Renames a synced temporary file to blob `digest`; false when that blob is there already
/// (equal content is stored once; the temporary file goes away on drop).
fn rename_into(blobs: &Path, digest: Digest, temp: tempfile::NamedTempFile) -> Result<bool, Error> {
    let target = blobs.join(digest.hex());
    if target.is_file() {
        return Ok(false);
    }
    temp.persist(&target)
        .map_err(|e| Error::io_while("storing a blob", &target, e.error))?;
    Ok(true)
}

/// Makes the renames into `blobs` durable.
fn sync_dir(blobs: &Path) -> Result<(), Error> {
    File::open(blobs)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io_while("storing a blob", blobs, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_hashed_blob_lands_under_the_callers_digest_and_size_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut w = store.writer_hashed_by_caller().unwrap();
        w.write_all(b"layer bytes").unwrap();
        let info = w.commit(Digest::of(b"layer bytes"), 11).unwrap();
        assert_eq!(store.read_verified(&info.digest).unwrap(), b"layer bytes");
        let mut w = store.writer_hashed_by_caller().unwrap();
        w.write_all(b"short").unwrap();
        assert!(w.commit(Digest::of(b"short!"), 6).is_err());
        assert!(store.info(&Digest::of(b"short!")).is_err());
    }

    #[test]
    fn put_read_verify_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let a = store.put(b"alpha").unwrap();
        assert_eq!(a.digest, Digest::of(b"alpha"));
        assert_eq!(store.read_verified(&a.digest).unwrap(), b"alpha");
        assert_eq!(store.put(b"alpha").unwrap(), a);
        let b = store
            .ingest(&mut &b"beta"[..], Some(&Digest::of(b"beta")), Some(4))
            .unwrap();
        assert_eq!(store.verify(&b.digest).unwrap().size, 4);
        let mut listed = store.list().unwrap();
        listed.sort_by_key(|i| i.size);
        assert_eq!(listed, vec![b, a]);
        assert_eq!(store.remove(&a.digest).unwrap(), 5);
        assert_eq!(store.remove(&a.digest).unwrap(), 0);
        assert!(matches!(
            store.read_verified(&a.digest),
            Err(Error::BlobNotFound(_))
        ));
        // Nothing left behind in ingest/.
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn wrong_bytes_are_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let want = Digest::of(b"expected");
        let e = store
            .ingest(&mut &b"tampered"[..], Some(&want), None)
            .unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        let e = store
            .ingest(&mut &b"expected"[..], Some(&want), Some(3))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::SizeMismatch {
                    expected: 3,
                    actual: 8
                }
            ),
            "{e}"
        );
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn corruption_on_disk_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let a = store.put(b"original").unwrap();
        fs::write(store.path(&a.digest), b"flipped!").unwrap();
        assert!(matches!(
            store.verify(&a.digest),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.read_verified(&a.digest),
            Err(Error::DigestMismatch { .. })
        ));
    }
}
