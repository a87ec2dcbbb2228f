//! `lb system check`: the store's consistency, checked from its bytes. Every blob must hash
//! to its name; every name must reach a whole image (manifest, config, layers); every
//! snapshot of a reached layer must be what its layer unpacks to (`snapshot_check.rs`); no
//! temporary file may sit under a final name. With `repair`, what is broken goes: bad blobs,
//! names whose image cannot be read, snapshots that differ (unpacked again when next used),
//! leftovers of killed processes. The check holds the gc lock exclusively, so no writer's
//! files in progress are taken for leftovers.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::str::FromStr;

use rayon::prelude::*;

use crate::Error;
use crate::digest::Digest;
use crate::snapshot::chain_ids;
use crate::store::Store;

/// How far a check goes and whether it repairs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Compare every snapshot file's content with its layer (else a sample of them; their
    /// names, kinds, sizes, modes and owners are always compared).
    pub full: bool,
    /// Remove what is broken.
    pub repair: bool,
}

/// What a problem is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Blob(Digest),
    Name(String),
    Snapshot(Digest),
    Container(String),
    /// A leftover of a killed process (a temporary file or directory).
    Leftover(PathBuf),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Blob(d) => write!(f, "blob {d}"),
            Subject::Name(n) => write!(f, "name {n}"),
            Subject::Snapshot(c) => write!(f, "snapshot {c}"),
            Subject::Container(id) => write!(f, "container {id}"),
            Subject::Leftover(p) => write!(f, "leftover {}", p.display()),
        }
    }
}

/// One thing found wrong.
#[derive(Debug, Clone)]
pub struct Problem {
    pub subject: Subject,
    /// What is wrong with it.
    pub detail: String,
    /// Whether `repair` removed it.
    pub repaired: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)?;
        if self.repaired {
            let how = match self.subject {
                Subject::Name(_) => "name removed",
                Subject::Snapshot(_) => "removed: unpacked again from its layer when used",
                Subject::Container(_) => "left as it is",
                _ => "removed",
            };
            write!(f, " ({how})")?;
        }
        Ok(())
    }
}

/// What a check saw and found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub blobs: usize,
    pub names: usize,
    pub snapshots: usize,
    pub problems: Vec<Problem>,
    /// Temporary files and directories of interrupted operations, under names no reader
    /// takes for content: harmless, reported and removed by `repair` (or a prune).
    pub leftovers: Vec<PathBuf>,
    pub leftovers_removed: bool,
}

impl CheckReport {
    /// Whether anything is still wrong (found and not repaired).
    pub fn has_unrepaired(&self) -> bool {
        self.problems.iter().any(|p| !p.repaired)
    }

    fn found(&mut self, subject: Subject, detail: impl Into<String>) -> usize {
        self.problems.push(Problem {
            subject,
            detail: detail.into(),
            repaired: false,
        });
        self.problems.len() - 1
    }
}

impl Store {
    /// Checks the store (see the module's doc); with `opts.repair`, removes what is broken.
    pub fn check(&self, opts: CheckOptions) -> Result<CheckReport, Error> {
        let _gc = self.lock("gc.lock")?;
        let mut report = CheckReport::default();
        self.check_leftovers(&mut report, opts)?;
        let bad_blobs = self.check_blobs(&mut report, opts)?;
        self.check_names(&mut report, opts, &bad_blobs)?;
        let layer_of = self.layers_by_chain()?;
        self.check_snapshots(&mut report, opts, &layer_of)?;
        self.check_vfs_trees(&mut report, opts, &layer_of)?;
        if opts.repair {
            // Records of images that are gone lead nowhere now.
            self.prune_cache();
        }
        Ok(report)
    }

    /// Temporary files and directories of killed processes, and the active snapshots and
    /// views they made: nothing runs beside a check.
    fn check_leftovers(&self, report: &mut CheckReport, opts: CheckOptions) -> Result<(), Error> {
        // Container records and index changes are made without the gc lock, under these.
        let _containers = self.lock("containers.lock")?;
        let _index = self.lock("index.lock")?;
        let mut found = self.temporaries();
        found.extend(self.stale_snapshots()?);
        if opts.repair {
            for path in &found {
                self.discard(path)?;
            }
            report.leftovers_removed = true;
        }
        report.leftovers = found;
        Ok(())
    }

    /// Every blob hashes to its name; a file under `blobs/sha256` that is not named as a
    /// digest is a temporary file under a final name. Returns the blobs found bad.
    fn check_blobs(
        &self,
        report: &mut CheckReport,
        opts: CheckOptions,
    ) -> Result<HashSet<Digest>, Error> {
        let dir = self.layout().blobs();
        let mut odd = Vec::new();
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && Digest::from_hex(&name).is_err() {
                    odd.push(e.path());
                }
            }
        }
        for path in odd {
            let i = report.found(
                Subject::Leftover(path.clone()),
                "not named by its digest (a temporary file under a final name)",
            );
            if opts.repair {
                self.discard(&path)?;
                report.problems[i].repaired = true;
            }
        }
        let blobs = self.content().list()?;
        report.blobs = blobs.len();
        let results: Vec<(Digest, Result<(), Error>)> = blobs
            .par_iter()
            .map(|b| (b.digest, self.content().verify(&b.digest).map(|_| ())))
            .collect();
        let mut bad = HashSet::new();
        for (digest, result) in results {
            let Err(e) = result else { continue };
            let i = report.found(Subject::Blob(digest), e.to_string());
            bad.insert(digest);
            if opts.repair {
                self.content().remove(&digest)?;
                report.problems[i].repaired = true;
            }
        }
        Ok(bad)
    }

    /// Images in the store no name or container reaches (their manifests found among the
    /// small blobs), read as far as they can be.
    fn unnamed_images(&self) -> Result<Vec<crate::image::Image>, Error> {
        let mut out = Vec::new();
        for b in self.content().list()? {
            // Manifests are small; layers are not worth reading to find out.
            if b.size > 4 << 20 {
                continue;
            }
            // Anything else (a config, a small layer) is no manifest and is passed over.
            if let Ok(image) = self.image_by_manifest(b.digest) {
                out.push(image);
            }
        }
        Ok(out)
    }

    /// Every name reaches a whole image: its manifest, config and layers present and
    /// sound, sizes as the manifest says. Containers' images too (reported, never removed).
    fn check_names(
        &self,
        report: &mut CheckReport,
        opts: CheckOptions,
        bad_blobs: &HashSet<Digest>,
    ) -> Result<(), Error> {
        let names = self.names()?;
        report.names = names.len();
        let whole = |manifest: Result<Digest, Error>| -> Result<(), String> {
            let manifest = manifest.map_err(|e| e.to_string())?;
            let image = self
                .image_by_manifest(manifest)
                .map_err(|e| e.to_string())?;
            for layer in image.manifest.layers() {
                let digest =
                    Digest::from_str(layer.digest().as_ref()).map_err(|e| e.to_string())?;
                if bad_blobs.contains(&digest) {
                    return Err(format!("layer {digest} is damaged"));
                }
                let size = match fs::metadata(self.content().path(&digest)) {
                    Ok(md) => md.len(),
                    Err(_) => return Err(format!("layer {digest} not found in the store")),
                };
                if size != layer.size() {
                    return Err(format!(
                        "layer {digest} has {size} bytes, the manifest says {}",
                        layer.size()
                    ));
                }
            }
            let diff_ids = image.diff_ids().map_err(|e| e.to_string())?;
            if diff_ids.len() != image.manifest.layers().len() {
                return Err(
                    "the config's diff_ids and the manifest's layers differ in number".to_string(),
                );
            }
            Ok(())
        };
        for (name, desc) in names {
            let Err(detail) = whole(Store::descriptor_digest(&desc)) else {
                continue;
            };
            let i = report.found(Subject::Name(name.to_string()), detail);
            if opts.repair {
                self.remove_name(&name)?;
                report.problems[i].repaired = true;
            }
        }
        for c in self.containers::<serde::de::IgnoredAny>()? {
            if let Err(detail) = whole(Ok(c.image)) {
                report.found(
                    Subject::Container(c.id.clone()),
                    format!("its image: {detail}"),
                );
            }
        }
        Ok(())
    }

    /// Every chain id of an image whose manifest is in the store, named or not (a prune
    /// removes snapshots before blobs, so a prune killed midway leaves the layers of the
    /// snapshots it was removing), to its top layer's blob.
    fn layers_by_chain(&self) -> Result<BTreeMap<Digest, Digest>, Error> {
        let mut images = self.live_images()?.images;
        images.extend(self.unnamed_images()?);
        let mut layer_of: BTreeMap<Digest, Digest> = Default::default();
        for image in &images {
            let Ok(diff_ids) = image.diff_ids() else {
                continue;
            };
            for (chain, layer) in chain_ids(&diff_ids)
                .into_iter()
                .zip(image.manifest.layers())
            {
                if let Ok(blob) = Digest::from_str(layer.digest().as_ref()) {
                    layer_of.entry(chain).or_insert(blob);
                }
            }
        }
        Ok(layer_of)
    }

    /// Every snapshot is what its layer unpacks to (the layer found by
    /// [`Store::layers_by_chain`]); a snapshot of no layer in the store is a leftover.
    fn check_snapshots(
        &self,
        report: &mut CheckReport,
        opts: CheckOptions,
        layer_of: &BTreeMap<Digest, Digest>,
    ) -> Result<(), Error> {
        let mut layers: Vec<(Digest, Digest)> = Vec::new();
        let dir = self.snapshots_dir();
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(chain) = Digest::from_hex(&name) else {
                continue; // a dot-named leftover (see check_leftovers)
            };
            match layer_of.get(&chain) {
                Some(blob) => layers.push((chain, *blob)),
                None => {
                    if opts.repair {
                        self.discard(&e.path())?;
                    }
                    report.leftovers.push(e.path());
                }
            }
        }
        report.snapshots = layers.len();
        let results: Vec<(Digest, Digest, Result<Vec<String>, Error>)> = layers
            .par_iter()
            .map(|(chain, blob)| {
                let differences = self.content().open_blob(blob).and_then(|file| {
                    crate::snapshot_check::compare(file, &self.snapshot_path(chain), opts.full)
                });
                (*chain, *blob, differences)
            })
            .collect();
        for (chain, blob, result) in results {
            let detail = match result {
                Ok(d) if d.is_empty() => continue,
                Ok(d) => {
                    let more = if d.len() > 3 {
                        format!(" and {} more", d.len() - 3)
                    } else {
                        String::new()
                    };
                    format!(
                        "differs from layer {blob}: {}{more}",
                        d[..d.len().min(3)].join("; ")
                    )
                }
                Err(e) => format!("cannot be compared with layer {blob}: {e}"),
            };
            let i = report.found(Subject::Snapshot(chain), detail);
            if opts.repair {
                self.discard(&self.snapshot_path(&chain))?;
                report.problems[i].repaired = true;
            }
        }
        Ok(())
    }

    /// A vfs tree whose chain is not an image's in the store is a leftover, as a snapshot
    /// of no layer is (one an active snapshot or view stands on is in use). Their contents
    /// are not compared with the layers (a tree is a whole image's file system, not one
    /// layer's).
    fn check_vfs_trees(
        &self,
        report: &mut CheckReport,
        opts: CheckOptions,
        layer_of: &BTreeMap<Digest, Digest>,
    ) -> Result<(), Error> {
        let mut keep: HashSet<Digest> = layer_of.keys().copied().collect();
        keep.extend(self.snapshots_in_use());
        for tree in self.vfs_trees_outside(&keep) {
            if opts.repair {
                self.discard(&tree)?;
            }
            report.leftovers.push(tree);
        }
        Ok(())
    }
}
