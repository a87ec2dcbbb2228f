//! `lb build --cache-from/--cache-to`: the values parsed, the caches opened as the build
//! starts (one that cannot be read is a warning: the build goes on without it), looked up
//! by the builder where the store misses, and the build's steps exported after it.

use anyhow::bail;
use lb_buildcache::{CacheExport, CacheImport, ExportTarget, Importer};
use lb_layerstore::{Digest, Image, Store};

/// The `--cache-from` caches that could be read, in the order given: opened on a thread
/// of their own while the build starts (its base's pull, its context), waited for at the
/// first lookup.
pub struct Caches {
    opening: std::sync::Mutex<Option<std::thread::JoinHandle<Vec<Importer>>>>,
    importers: std::sync::OnceLock<Vec<Importer>>,
}

impl Caches {
    /// Starts opening each of `specs`; one that fails is said on stderr and left out.
    pub fn open(store: &Store, specs: &[CacheImport]) -> Caches {
        let (store, specs) = (store.clone(), specs.to_vec());
        let opening = (!specs.is_empty()).then(|| {
            std::thread::spawn(move || {
                let mut importers = Vec::new();
                for spec in &specs {
                    match Importer::open(&store, spec, &Default::default()) {
                        Ok(i) => importers.push(i),
                        Err(e) => eprintln!(
                            "WARNING: importing cache manifest from {}: {e}",
                            spec.name()
                        ),
                    }
                }
                importers
            })
        });
        Caches {
            opening: std::sync::Mutex::new(opening),
            importers: std::sync::OnceLock::new(),
        }
    }

    /// Waits for the caches to be open (a build that looked nothing up did not), so that
    /// what opening them had to say is said.
    pub fn finish(&self) {
        self.importers();
    }

    /// The caches, once opened.
    fn importers(&self) -> &[Importer] {
        self.importers.get_or_init(|| {
            let opening = self.opening.lock().expect("opening").take();
            opening
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default()
        })
    }

    /// What the caches read from registries showed to be there.
    fn seen(&self) -> Vec<lb_buildcache::Seen> {
        self.importers()
            .iter()
            .filter_map(|i| i.seen().cloned())
            .collect()
    }

    /// Blobs fetched from the caches and their bytes.
    fn downloaded(&self) -> (usize, u64) {
        self.importers()
            .iter()
            .map(Importer::downloaded)
            .fold((0, 0), |(n, b), (m, c)| (n + m, b + c))
    }
}

impl lb_builder::CacheSource for Caches {
    fn lookup(&self, key: &Digest) -> Option<(Image, String)> {
        for importer in self.importers() {
            match importer.lookup(key) {
                Ok(Some(image)) => return Some((image, importer.name().to_string())),
                Ok(None) => {}
                // A cache that fails (or serves bad bytes) is a miss: the step runs.
                Err(e) => eprintln!("WARNING: cache {}: {e}", importer.name()),
            }
        }
        None
    }

    fn inputs(&self) -> Vec<String> {
        self.importers().iter().flat_map(Importer::inputs).collect()
    }

    fn restore_mount(&self, id: &str, dir: &std::path::Path) -> bool {
        for importer in self.importers() {
            match importer.restore_mount(id, dir) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => eprintln!("WARNING: cache {}: cache mount {id}: {e}", importer.name()),
            }
        }
        false
    }
}

/// Parses the `--cache-to` and `--cache-from` values.
pub fn parse(
    to: &[String],
    from: &[String],
) -> anyhow::Result<(Vec<CacheExport>, Vec<CacheImport>)> {
    let exports = to
        .iter()
        .map(|v| v.parse::<CacheExport>())
        .collect::<Result<Vec<_>, _>>()?;
    let imports = from
        .iter()
        .map(|v| v.parse::<CacheImport>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok((exports, imports))
}

/// The built image, with the inline cache of its steps in its config when an export
/// asks for one (`type=inline`: pushed with the image).
pub fn with_inline(
    store: &Store,
    exports: &[CacheExport],
    steps: &[(Digest, Image)],
    image: &Image,
) -> anyhow::Result<Image> {
    if !exports.iter().any(|e| e.target == ExportTarget::Inline) {
        return Ok(image.clone());
    }
    Ok(lb_buildcache::with_inline_cache(store, steps, image)?)
}

/// Exports the build's steps to each of `exports` but an inline one (`with_inline`); a
/// failure ends the build with an error unless that export says `ignore-error=true`.
pub fn export_all(
    store: &Store,
    exports: &[CacheExport],
    (built, caches): (&lb_builder::Built, &Caches),
    image: &Image,
    quiet: bool,
) -> anyhow::Result<lb_buildcache::ExportReport> {
    let mut total = lb_buildcache::ExportReport::default();
    let seen = caches.seen();
    let registry = lb_registry::Options::default();
    let via = lb_buildcache::ExportVia {
        registry: &registry,
        progress: &Silent,
        seen: &seen,
    };
    for spec in exports {
        let name = match &spec.target {
            ExportTarget::Registry(r) => r.familiar(),
            ExportTarget::Local(d) => d.display().to_string(),
            ExportTarget::Inline => continue,
        };
        let started = std::time::Instant::now();
        let records = lb_buildcache::BuildRecords {
            steps: &built.steps,
            mounts: &built.cache_mounts,
        };
        let done = lb_buildcache::export(store, spec, records, image, &via);
        match done {
            Ok(report) => {
                total.uploaded += report.uploaded;
                total.uploaded_bytes += report.uploaded_bytes;
                total.reused += report.reused;
                if !quiet {
                    eprintln!(
                        "#0 exporting cache to {name}: {} steps, {} layers, {} cache mounts {}{} done {:.1}s",
                        report.records,
                        report.layers,
                        report.mounts,
                        report.digest.map(|d| d.to_string()).unwrap_or_default(),
                        if report.unchanged { " (unchanged)" } else { "" },
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) if spec.ignore_error => {
                eprintln!("WARNING: exporting cache to {name}: {e}");
            }
            Err(e) => bail!("failed to export cache to {name}: {e}"),
        }
    }
    Ok(total)
}

/// `--metadata-file`: what buildx writes there (the image's digests and names), and
/// lb's cache figures under a key of its own.
pub fn write_metadata(
    path: &std::path::Path,
    image: &Image,
    pushed: Option<Digest>,
    names: &[String],
    (built, caches, exported): (&lb_builder::Built, &Caches, &lb_buildcache::ExportReport),
) -> anyhow::Result<()> {
    let (downloaded, downloaded_bytes) = caches.downloaded();
    let doc = serde_json::json!({
        "containerimage.config.digest": image.config_digest.to_string(),
        "containerimage.digest": pushed.unwrap_or(image.manifest_digest).to_string(),
        "image.name": names.join(","),
        "lb.cache": {
            "steps.cached": built.steps_cached,
            "steps.run": built.steps_run,
            "blobs.uploaded": exported.uploaded,
            "bytes.uploaded": exported.uploaded_bytes,
            "blobs.reused": exported.reused,
            "blobs.downloaded": downloaded,
            "bytes.downloaded": downloaded_bytes,
        },
    });
    let text = serde_json::to_string_pretty(&doc).expect("metadata serialises");
    std::fs::write(path, text + "\n")
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// An export's per-blob lines are not shown (the summary line is).
struct Silent;

impl lb_registry::PushProgress for Silent {
    fn line(&self, _: &str) {}
}
