//! `save` and `load`: images to and from one tar that both docker and OCI tools read.
//!
//! A saved archive is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/*`) with
//! docker's `manifest.json` beside it, as `docker save` writes since docker 25. Load accepts
//! that, a plain OCI layout archive (`skopeo copy ... oci-archive:`), and docker's older
//! layout (`<id>/layer.tar`, `<id>.json`, `manifest.json`, as `docker save` and
//! `podman save` write).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde_json::{Value, json};

use crate::Error;
use crate::apply::Compression;
use crate::digest::Digest;
use crate::image::{MEDIA_CONFIG, MEDIA_LAYER_TAR, MEDIA_MANIFEST};
use crate::reference::Reference;
use crate::store::{REF_NAME, Store};

fn bad_archive(reason: impl Into<String>) -> Error {
    Error::BadArchive(reason.into())
}

fn append(
    out: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<(), Error> {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    out.append_data(&mut h, path, data)
        .map_err(|e| Error::layer("writing the archive", e))
}

impl Store {
    /// Writes `names` and every blob they reach to `out` as one archive.
    pub fn save(&self, names: &[Reference], out: impl Write) -> Result<(), Error> {
        let mut tar = tar::Builder::new(out);
        let mut written: HashSet<Digest> = HashSet::new();
        let mut index = Vec::new();
        let mut docker = Vec::new();
        let mut blob = |tar: &mut tar::Builder<_>, d: &Digest| -> Result<(), Error> {
            if written.insert(*d) {
                let info = self.content().info(d)?;
                let file = self.content().open_blob(d)?;
                append(tar, &format!("blobs/sha256/{}", d.hex()), info.size, file)?;
            }
            Ok(())
        };
        for name in names {
            let desc = self.resolve(name)?;
            let image = self.image_at(&desc)?;
            blob(&mut tar, &image.manifest_digest)?;
            blob(&mut tar, &image.config_digest)?;
            let mut layers = Vec::new();
            for l in image.manifest.layers() {
                let d = Digest::from_str(l.digest().as_ref())?;
                blob(&mut tar, &d)?;
                layers.push(format!("blobs/sha256/{}", d.hex()));
            }
            index.push(json!({
                "mediaType": MEDIA_MANIFEST,
                "digest": image.manifest_digest.to_string(),
                "size": desc.size(),
                "annotations": { REF_NAME: name.to_string(), "io.containerd.image.name": name.to_string() },
            }));
            docker.push(json!({
                "Config": format!("blobs/sha256/{}", image.config_digest.hex()),
                "RepoTags": [name.familiar()],
                "Layers": layers,
            }));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index,
        }))
        .expect("JSON");
        let docker = serde_json::to_vec(&docker).expect("JSON");
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        append(&mut tar, "oci-layout", layout.len() as u64, &layout[..])?;
        append(&mut tar, "index.json", index.len() as u64, &index[..])?;
        append(&mut tar, "manifest.json", docker.len() as u64, &docker[..])?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::layer("writing the archive", e))
    }

    /// Loads every image of an archive; returns the names it set. On an error, names are
    /// untouched and the blobs this load added are removed again.
    pub fn load(&self, archive: impl Read) -> Result<Vec<Reference>, Error> {
        let _writing = self.writing()?;
        let before: HashSet<Digest> = self
            .content()
            .list()?
            .into_iter()
            .map(|b| b.digest)
            .collect();
        let result = self.load_inner(archive);
        if result.is_err() {
            let live = self.reachable().unwrap_or_default();
            for b in self.content().list()? {
                if !before.contains(&b.digest) && !live.contains(&b.digest) {
                    let _ = self.content().remove(&b.digest);
                }
            }
        }
        result
    }

    fn load_inner(&self, archive: impl Read) -> Result<Vec<Reference>, Error> {
        // Every file goes into the content store as it streams by (verified when its name is
        // a digest); the small JSON files are also kept to read the archive's structure.
        let mut files: HashMap<String, Digest> = HashMap::new();
        let mut json_files: HashMap<String, Vec<u8>> = HashMap::new();
        let mut tar = tar::Archive::new(crate::apply::decompressed(archive)?);
        for entry in tar
            .entries()
            .map_err(|e| Error::layer("reading the archive", e))?
        {
            let mut entry = entry.map_err(|e| Error::layer("reading the archive", e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = String::from_utf8_lossy(&entry.path_bytes())
                .trim_start_matches("./")
                .to_string();
            let expected = path
                .strip_prefix("blobs/sha256/")
                .map(Digest::from_hex)
                .transpose()?;
            if path.ends_with(".json") || path == "oci-layout" {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(64 << 20)
                    .read_to_end(&mut buf)
                    .map_err(|e| Error::layer(&format!("reading {path}"), e))?;
                json_files.insert(path, buf);
                continue;
            }
            let size = entry.header().size().ok();
            let info = self
                .content()
                .ingest(&mut entry, expected.as_ref(), size)
                .map_err(|e| match e {
                    Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                        bad_archive(format!("{path}: {e}"))
                    }
                    // The reserve or a full disk: named by what was loading.
                    Error::NoSpace(mut n) => {
                        n.what = format!("loading {path}");
                        Error::NoSpace(n)
                    }
                    other => other,
                })?;
            files.insert(path, info.digest);
        }
        // A JSON blob under blobs/ is content too (manifests, configs).
        for (path, bytes) in &json_files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                let d = Digest::from_hex(hex.trim_end_matches(".json"))?;
                self.content().put(bytes)?;
                files.insert(path.clone(), d);
            }
        }
        let mut loaded = Vec::new();
        if let Some(manifest) = json_files.get("manifest.json") {
            let entries: Vec<Value> = serde_json::from_slice(manifest)
                .map_err(|e| bad_archive(format!("manifest.json: {e}")))?;
            for e in entries {
                let config_path = e["Config"]
                    .as_str()
                    .ok_or_else(|| bad_archive("manifest.json: no Config"))?;
                let config_bytes = match (json_files.get(config_path), files.get(config_path)) {
                    (Some(bytes), _) => bytes.clone(),
                    (None, Some(d)) => self.content().read_verified(d)?,
                    (None, None) => return Err(bad_archive(format!("missing {config_path}"))),
                };
                let config = self.content().put(&config_bytes)?;
                let mut layers = Vec::new();
                for l in e["Layers"].as_array().into_iter().flatten() {
                    let p = l.as_str().unwrap_or_default();
                    let d = *files
                        .get(p)
                        .ok_or_else(|| bad_archive(format!("missing layer {p}")))?;
                    let mut head = [0u8; 4];
                    let n = self.content().open_blob(&d)?.read(&mut head).unwrap_or(0);
                    let media = match Compression::detect(&head[..n]) {
                        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                        Compression::None => MEDIA_LAYER_TAR,
                    };
                    let size = self.content().info(&d)?.size;
                    layers
                        .push(json!({ "mediaType": media, "digest": d.to_string(), "size": size }));
                }
                let manifest = json!({
                    "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                    "config": { "mediaType": MEDIA_CONFIG, "digest": config.digest.to_string(), "size": config.size },
                    "layers": layers,
                });
                let m = self
                    .content()
                    .put(&serde_json::to_vec(&manifest).expect("JSON"))?;
                let desc = descriptor(m.digest, m.size)?;
                self.image_at(&desc)?; // everything it names is here and parses
                for tag in e["RepoTags"].as_array().into_iter().flatten() {
                    let name = Reference::parse(tag.as_str().unwrap_or_default())?;
                    loaded.push((name, desc.clone()));
                }
            }
        } else if let Some(index) = json_files.get("index.json") {
            let index = ImageIndex::from_reader(&index[..])
                .map_err(|e| bad_archive(format!("index.json: {e}")))?;
            for m in index.manifests() {
                let desc = m.clone();
                self.image_at(&desc)?;
                let Some(name) = m.annotations().as_ref().and_then(|a| {
                    a.get("io.containerd.image.name")
                        .or_else(|| a.get(REF_NAME))
                        .cloned()
                }) else {
                    continue;
                };
                loaded.push((Reference::parse(&name)?, desc));
            }
        } else {
            return Err(bad_archive(
                "neither manifest.json nor index.json: not an image archive",
            ));
        }
        for (name, desc) in &loaded {
            let mut d = descriptor(Store::descriptor_digest(desc)?, desc.size())?;
            d.set_media_type(MediaType::ImageManifest);
            self.set_name(name, &d)?;
        }
        Ok(loaded.into_iter().map(|(n, _)| n).collect())
    }
}

fn descriptor(d: Digest, size: u64) -> Result<Descriptor, Error> {
    let digest = oci_spec::image::Digest::from_str(&d.to_string())
        .map_err(|e| Error::InvalidDigest(e.to_string()))?;
    Ok(Descriptor::new(MediaType::ImageManifest, size, digest))
}
