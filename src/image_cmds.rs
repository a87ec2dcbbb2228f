//! Image commands over the store: `import`, `images`, `tag`, `rmi`, `inspect`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use lb_layerstore::{Image, Reference, Store};
use serde_json::json;

pub(crate) fn reference(arg: &str) -> anyhow::Result<Reference> {
    Reference::parse(arg).with_context(|| format!("bad image name {arg:?}"))
}

#[derive(Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, SHELL)
    #[arg(short, long)]
    change: Vec<String>,
    /// A root file system tar (plain, gzip or zstd); `-` reads standard input
    file: PathBuf,
    /// The name of the new image
    name: String,
}

/// Applies `--change` instructions to a config, each named in its error.
pub(crate) fn apply_changes(
    cfg: &mut lb_builder::ImageConfig,
    changes: &[String],
) -> anyhow::Result<()> {
    for change in changes {
        lb_builder::change_instruction(cfg, change)
            .with_context(|| format!("--change {change:?}"))?;
    }
    Ok(())
}

pub fn import(store: &Store, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = reference(&args.name)?;
    let mut cfg = lb_builder::ImageConfig::default();
    apply_changes(&mut cfg, &args.change)?;
    let id = if args.file.as_os_str() == "-" {
        store.import_rootfs(std::io::stdin().lock(), &name, "-", &cfg.config)?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        store
            .import_rootfs(file, &name, &args.file.display().to_string(), &cfg.config)
            .with_context(|| format!("cannot import {}", args.file.display()))?
    };
    // docker's: the name's tag first, then the import.
    if let Ok(desc) = store.resolve(&name) {
        image_event(store, "tag", &desc, &name.familiar());
    }
    images_event(store, "import", std::slice::from_ref(&name));
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// `json`: one JSON object per line
    #[arg(long)]
    format: Option<String>,
}

fn short_id(image: &Image) -> String {
    image.config_digest.hex()[..12].to_string()
}

/// docker's CREATED column: "2 hours ago", or the raw text when the time cannot be read.
fn human_created(created: Option<&String>) -> String {
    let Some(text) = created else {
        return String::new();
    };
    let Some(then) = lb_layerstore::parse_rfc3339(text) else {
        return text.clone();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!("{} ago", human_duration(now - then))
}

/// go-units' HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks".
pub fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0).round() as i64;
    match secs {
        s if s < 1 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".to_string(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

pub(crate) fn human_size(bytes: u64) -> String {
    // docker's units: powers of 1000, four significant digits (go-units' HumanSize).
    go_units(bytes, 1000.0, DECIMAL_UNITS, 4)
}

/// go-units' decimal abbreviations (`HumanSize`), and its binary ones (`BytesSize`).
pub(crate) const DECIMAL_UNITS: &[&str] = &["B", "kB", "MB", "GB", "TB", "PB"];
pub(crate) const BINARY_UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// `bytes` in the largest of `units` (each `base` times the one before) that keeps it at
/// least 1, with `digits` significant digits and no trailing zeros (go-units'
/// `CustomSize("%.<digits>g%s")`).
pub(crate) fn go_units(bytes: u64, base: f64, units: &[&str], digits: usize) -> String {
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= base && u < units.len() - 1 {
        v /= base;
        u += 1;
    }
    let whole = if v >= 1.0 {
        v.log10().floor() as usize + 1
    } else {
        1
    };
    let decimals = digits.saturating_sub(whole);
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", units[u])
}

pub fn images(store: &Store, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for (name, desc) in store.names()? {
        // A name whose image cannot be read is reported and skipped: the others still list.
        match store.image_at(&desc) {
            Ok(image) => rows.push((name, image)),
            Err(e) => eprintln!("WARNING: {name}: {e} (`lb system check --repair` drops the name)"),
        }
    }
    match args.format.as_deref() {
        None | Some("table") => {
            if args.quiet {
                let mut seen = std::collections::BTreeSet::new();
                for (_, image) in &rows {
                    if seen.insert(short_id(image)) {
                        println!("{}", short_id(image));
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<40} {:<20} {:<14} {:<22} SIZE",
                "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
            );
            for (name, image) in &rows {
                let fam = Reference {
                    tag: None,
                    digest: None,
                    ..name.clone()
                }
                .familiar();
                println!(
                    "{:<40} {:<20} {:<14} {:<22} {}",
                    fam,
                    name.tag.as_deref().unwrap_or("<none>"),
                    short_id(image),
                    human_created(image.config.created().as_ref()),
                    human_size(image.size())
                );
            }
        }
        Some("json") => {
            for (name, image) in &rows {
                let fam = Reference {
                    tag: None,
                    digest: None,
                    ..name.clone()
                }
                .familiar();
                let row = json!({
                    "Repository": fam,
                    "Tag": name.tag.as_deref().unwrap_or("<none>"),
                    "ID": image.config_digest.to_string(),
                    "Digest": image.manifest_digest.to_string(),
                    "CreatedAt": image.config.created(),
                    "Size": image.size(),
                });
                println!("{row}");
            }
        }
        Some(other) => bail!("unknown --format {other:?}: use table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TagArgs {
    /// An existing image name
    source: String,
    /// The new name
    target: String,
}

/// Logs an image event (`lb events`): the image's config digest as docker's image id,
/// the name as its `name` attribute.
pub(crate) fn image_event(
    store: &Store,
    action: &str,
    desc: &oci_spec::image::Descriptor,
    name: &str,
) {
    let id = image_id(store, desc);
    image_event_of(store, action, &id, name);
}

/// docker's image id of `desc`: its config's digest.
pub(crate) fn image_id(store: &Store, desc: &oci_spec::image::Descriptor) -> String {
    store
        .image_at(desc)
        .map(|i| i.config_digest.to_string())
        .unwrap_or_else(|_| desc.digest().to_string())
}

/// An image event of `id` (docker's image id, or a reference for pull and push) with
/// `name` as its `name` attribute.
pub(crate) fn image_event_of(store: &Store, action: &str, id: &str, name: &str) {
    store.record_event(&lb_layerstore::Event::now(
        "image",
        action,
        id,
        &[("name", name)],
    ));
}

/// docker's events of images a command made or wrote, each image once, named by its id
/// (docker 20.10's `load`, `save` and `import`).
fn images_event(store: &Store, action: &str, names: &[Reference]) {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if let Ok(desc) = store.resolve(n) {
            let id = image_id(store, &desc);
            if seen.insert(id.clone()) {
                image_event_of(store, action, &id, &id);
            }
        }
    }
}

pub fn tag(store: &Store, args: TagArgs) -> anyhow::Result<ExitCode> {
    let source = reference(&args.source)?;
    let target = reference(&args.target)?;
    let desc = store.resolve(&source)?;
    store.set_name(&target, &desc)?;
    image_event(store, "tag", &desc, &target.familiar());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct RmiArgs {
    /// Image names to remove
    #[arg(required = true)]
    names: Vec<String>,
    /// Remove the name even if a container uses the image
    #[arg(short, long)]
    force: bool,
}

pub fn rmi(store: &Store, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for n in &args.names {
        let name = reference(n)?;
        match store.remove_image_name(&name, args.force)? {
            Some(desc) => {
                println!("Untagged: {}@{}", name.familiar(), desc.digest());
                // docker 20.10 names the image by its id here.
                let id = image_id(store, &desc);
                image_event_of(store, "untag", &id, &id);
                // The image's last name gone: docker deletes it (lb's prune takes its
                // blobs later).
                let named = store
                    .names()?
                    .iter()
                    .any(|(_, d)| d.digest() == desc.digest());
                if !named {
                    image_event_of(store, "delete", &id, &id);
                }
            }
            None => {
                eprintln!("lb: no such image: {n}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// The store's prune: what no name reaches, after the containers of killed builds (their
/// scratch space goes with it); a warning for each name whose image cannot be read.
pub(crate) fn prune_store(store: &Store) -> anyhow::Result<lb_layerstore::PruneReport> {
    prune_store_keeping(store, &Default::default())
}

/// [`prune_store`], keeping the blobs in `keep` (see [`Store::prune_keeping`]).
pub(crate) fn prune_store_keeping(
    store: &Store,
    keep: &std::collections::HashSet<lb_layerstore::Digest>,
) -> anyhow::Result<lb_layerstore::PruneReport> {
    lb_builder::reap_killed_builds();
    let report = store.prune_keeping(keep)?;
    for b in &report.broken {
        eprintln!(
            "WARNING: {}: {} (kept what of it is there; `lb system check --repair` drops it)",
            b.reference, b.error
        );
    }
    Ok(report)
}

/// `lb prune`: remove what no name reaches.
pub fn prune(store: &Store) -> anyhow::Result<ExitCode> {
    let report = prune_store(store)?;
    println!("Deleted blobs: {}", report.blobs);
    println!("Deleted snapshots: {}", report.snapshots);
    println!("Total reclaimed space: {}", human_size(report.bytes));
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Compare every snapshot file's content with its layer (default: a sample)
    #[arg(long)]
    full: bool,
    /// Remove what is broken: damaged blobs, names whose image cannot be read, snapshots
    /// that differ from their layer (unpacked again when used), leftovers
    #[arg(long)]
    repair: bool,
}

/// `lb system check`: one line per problem; exit 1 while any is left unrepaired.
pub fn system_check(store: &Store, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = store.check(lb_layerstore::CheckOptions {
        full: args.full,
        repair: args.repair,
    })?;
    for p in &report.problems {
        println!("{p}");
    }
    for l in &report.leftovers {
        let done = if report.leftovers_removed {
            " (removed)"
        } else {
            ""
        };
        println!(
            "leftover {}: of an interrupted operation{done}",
            l.display()
        );
    }
    println!(
        "Checked {} blobs, {} names, {} snapshots: {}",
        report.blobs,
        report.names,
        report.snapshots,
        match report.problems.len() {
            0 => "no problems found".to_string(),
            n if report.has_unrepaired() => {
                format!("{n} problems found (`lb system check --repair` removes what is broken)")
            }
            n => format!("{n} problems found and repaired"),
        }
    );
    Ok(if report.has_unrepaired() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Args)]
pub struct SaveArgs {
    /// Images to save
    #[arg(required = true)]
    names: Vec<String>,
    /// Write to this file instead of standard output
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Writes an archive to `output`, or to standard output when that is not a terminal. A file
/// is written beside its target and renamed: a failed write leaves no half archive, and a
/// killed lb none either ([`lb_layerstore::OutputFile`]).
pub(crate) fn write_archive(
    output: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = lb_layerstore::OutputFile::create(dir, path)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            let mut out = std::io::BufWriter::new(tmp.file());
            write(&mut out)?;
            out.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            drop(out);
            tmp.persist()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect");
            }
            let mut out = std::io::stdout().lock();
            write(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// `lb save`: one tar that `docker load` and OCI tools read.
pub fn save(store: &Store, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let names = args
        .names
        .iter()
        .map(|n| reference(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_archive(args.output.as_deref(), |out| Ok(store.save(&names, out)?))?;
    images_event(store, "save", &names);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input
    #[arg(short, long)]
    input: Option<PathBuf>,
}

/// `lb load`: images from a `docker save`, `podman save`, `lb save` or OCI archive.
pub fn load(store: &Store, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let names = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            store
                .load(file)
                .with_context(|| format!("cannot load {}", path.display()))?
        }
        None => store
            .load(std::io::stdin().lock())
            .context("cannot load the archive on standard input")?,
    };
    for n in &names {
        println!("Loaded image: {}", n.familiar());
    }
    images_event(store, "load", &names);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct HistoryArgs {
    /// The image
    name: String,
    /// Do not truncate the CREATED BY column
    #[arg(long)]
    no_trunc: bool,
}

/// `lb history`: the image's history entries, newest first, with the size of each layer.
pub fn history(store: &Store, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let image = store.image(&reference(&args.name)?)?;
    let history = image.config.history().clone().unwrap_or_default();
    let mut layer_sizes = image.manifest.layers().iter().map(|l| l.size());
    let mut rows = Vec::new();
    for h in &history {
        let size = if h.empty_layer().unwrap_or(false) {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        rows.push((h, size));
    }
    println!(
        "{:<14} {:<22} {:<45} {:<10} COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    );
    for (i, (h, size)) in rows.iter().rev().enumerate() {
        let id = if i == 0 {
            short_id(&image)
        } else {
            "<missing>".to_string()
        };
        let mut by = h.created_by().clone().unwrap_or_default();
        if !args.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        println!(
            "{:<14} {:<22} {:<45} {:<10} {}",
            id,
            human_created(h.created().as_ref()),
            by,
            human_size(*size),
            h.comment().clone().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
