//! An OCI image layout directory holding a cache (`type=local`): `oci-layout`,
//! `index.json` naming the cache's top document, and `blobs/sha256/<hex>`. Blobs are
//! written to a temporary name and renamed, `index.json` last, so a reader (or a second
//! export into the same directory) never sees a document naming a blob not yet whole.

use std::fs;
use std::path::{Path, PathBuf};

use lb_layerstore::{Digest, Store, write_atomic};

use crate::Error;
use crate::format::MEDIA_OCI_INDEX;

pub(crate) fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

/// Copies the store's blob `digest` into the layout, unless a whole one is there.
fn copy_blob(store: &Store, dir: &Path, digest: &Digest, size: u64) -> Result<bool, Error> {
    let target = blob_path(dir, digest);
    if fs::metadata(&target).is_ok_and(|m| m.len() == size) {
        return Ok(false);
    }
    let parent = target.parent().expect("a blob's directory");
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let mut from = store.content().open_blob(digest)?;
    std::io::copy(&mut from, &mut tmp.as_file()).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(&target)
        .map_err(|e| Error::io(&target, e.error))?;
    Ok(true)
}

/// Writes the store's `blobs` and the top document `doc` (`media_type`) into the layout
/// at `dir`, made if missing; the sizes of the blobs copied (those not there already).
pub(crate) fn write(
    store: &Store,
    dir: &Path,
    blobs: &[(Digest, u64)],
    doc: &[u8],
    media_type: &str,
) -> Result<Vec<u64>, Error> {
    let sha = dir.join("blobs/sha256");
    fs::create_dir_all(&sha).map_err(|e| Error::io(&sha, e))?;
    let mut copied = Vec::new();
    for (digest, size) in blobs {
        if copy_blob(store, dir, digest, *size)? {
            copied.push(*size);
        }
    }
    let top = Digest::of(doc);
    write_atomic(&blob_path(dir, &top), doc)?;
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [{
            "mediaType": media_type,
            "digest": top.to_string(),
            "size": doc.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    write_atomic(
        &dir.join("index.json"),
        &serde_json::to_vec(&index).expect("an index serialises"),
    )?;
    Ok(copied)
}

/// The top document `index.json` names in the layout at `dir` (its first manifest),
/// checked against its digest.
pub(crate) fn read_top(dir: &Path) -> Result<Vec<u8>, Error> {
    let cache = dir.display().to_string();
    let path = dir.join("index.json");
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let index: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(&cache, format!("index.json: {e}")))?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .and_then(|d| d.parse::<Digest>().ok())
        .ok_or_else(|| Error::format(&cache, "index.json names no manifest by a sha256 digest"))?;
    read_blob(dir, &digest, crate::format::MAX_CONFIG)
}

/// The layout's blob `digest`, at most `limit` bytes, checked against its digest.
pub(crate) fn read_blob(dir: &Path, digest: &Digest, limit: u64) -> Result<Vec<u8>, Error> {
    let path = blob_path(dir, digest);
    let len = fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    if len > limit {
        return Err(Error::format(
            &path.display().to_string(),
            format!("{len} bytes, more than {limit}"),
        ));
    }
    let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if Digest::of(&bytes) != *digest {
        return Err(Error::format(
            &path.display().to_string(),
            "its bytes do not match its digest",
        ));
    }
    Ok(bytes)
}
