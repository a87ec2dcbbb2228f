//! docker's prune commands: `container prune`, `image prune [-a]`, `network prune`,
//! `builder prune`, and `system prune [-a]` doing all four, each asking first unless
//! `-f`, with docker's warnings and its "Deleted …" / "Total reclaimed space" output.
//!
//! lb's images are reached through names only: an image no name reaches (docker's
//! "dangling" images, and the build cache's step images) goes with the store's own prune.

use std::io::BufRead;
use std::process::ExitCode;

use clap::Args;
use lb_container::filters::LabelFilter;
use lb_container::{Container, Status};
use lb_layerstore::Store;

use crate::image_cmds::human_size;

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long = "filter")]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long = "filter")]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune volumes
    #[arg(long)]
    volumes: bool,
    /// Provide filter values (e.g. 'until=<timestamp>')
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// A prune's `--filter`s: `until=T` (only what was made before T: a Unix time, a date or
/// a Go duration before now, as docker reads it) and `label=`/`label!=` (docker's
/// daemon's matching, `lb_container::filters`). A key the kind does not take is refused
/// in docker's words, never ignored: a prune that dropped a filter would remove more
/// than asked.
#[derive(Default)]
struct Filters {
    /// Seconds since the epoch.
    until: Option<i64>,
    labels: LabelFilter,
    /// `dangling=false` (image prune): all unused images, as `-a`.
    all_images: bool,
}

/// A `--filter` without `=`: docker's usage error (exit 125), before anything else.
fn usage_error(values: &[String], command: &str) -> Option<ExitCode> {
    crate::filter_flags::parse(values, "--filter", command).err()
}

impl Filters {
    /// The filters given; docker's refusal of a key it does not take here.
    fn parse(values: &[String], keys: &[&str]) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        // Values without '=' were refused before (usage_error).
        let given: Vec<(String, String)> = values
            .iter()
            .filter_map(|v| v.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        crate::filter_flags::check_keys(&given, keys)?;
        for (k, val) in given {
            match k.as_str() {
                "until" => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as i64);
                    let t = crate::events_cmd::timestamp(&val, now)?;
                    f.until = Some(t.div_euclid(1_000_000_000));
                }
                "label" => f.labels.wanted.push(val),
                // docker's client adds `dangling=true` (or `false` for `-a`) to what it
                // sends, so any other value is one of two and the daemon takes it.
                "dangling" => f.all_images |= matches!(val.as_str(), "false" | "0"),
                "label!" => f.labels.refused.push(val),
                // Checked above: no other key is in `keys`.
                _ => {}
            }
        }
        Ok(f)
    }

    /// Whether something made at `created` (RFC 3339) passes `until`.
    fn keeps(&self, created: &str) -> bool {
        match (self.until, lb_layerstore::parse_rfc3339(created)) {
            (Some(until), Some(t)) => t < until,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }
}

/// The keys of containers', networks' and the build cache's prunes; images take
/// `dangling` too, volumes labels only.
const KEYS: &[&str] = &["until", "label", "label!"];
const IMAGE_KEYS: &[&str] = &["until", "label", "label!", "dangling"];
const LABEL_KEYS: &[&str] = &["label", "label!"];

/// Asks `warning` unless forced; whether to go on (docker's prompt, `y` or `yes`).
fn confirmed(force: bool, warning: &str) -> bool {
    confirmed_as(force, &format!("{warning}\n"))
}

/// [`confirmed`] with the text before the question as docker 20.10 words it.
fn confirmed_as(force: bool, before: &str) -> bool {
    if force {
        return true;
    }
    // On standard output, as docker asks.
    print!("{before}Are you sure you want to continue? [y/N] ");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Removes every container that is not running (and passes `filters`); their ids and
/// the bytes they held.
fn prune_containers(store: &Store, filters: &Filters) -> anyhow::Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut bytes = 0;
    for (record, state) in lb_container::ops::list(store, true)? {
        if Status::of(&state).is_live()
            || !filters.keeps(&record.created)
            || !filters
                .labels
                .passes(&crate::container_cmds::labels(store, &record))
        {
            continue;
        }
        let size = store.container_size(&record.id);
        let id = record.id.clone();
        Container::of(store, record).remove(false, false)?;
        bytes += size;
        removed.push(id);
    }
    Ok((removed, bytes))
}

/// Removes the user networks no container is on (and that pass `filters`); their names.
fn prune_networks(store: &Store, filters: &Filters) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for d in lb_container::network::definitions(store)? {
        if lb_container::network::users(store, &d.name).is_empty()
            && filters.keeps(&d.created)
            && filters.labels.passes(&d.labels)
        {
            lb_container::network::remove(store, &d.name)?;
            removed.push(d.name);
        }
    }
    Ok(removed)
}

/// With `all`, untags every image no container uses (and made before `until`, with the
/// labels asked) ("untagged: NAME" lines); then the store's prune: what no name reaches
/// (images, build cache steps, leftovers). The build cache has no labels (as BuildKit's
/// records have none): filters that want a label leave it whole, and what no name
/// reached before, alone, so only what the untagging left unreached and no cache record
/// holds goes.
fn prune_images(store: &Store, all: bool, filters: &Filters) -> anyhow::Result<(Vec<String>, u64)> {
    let mut keep = std::collections::HashSet::new();
    if !sweeps_cache(filters) {
        let live = store.reachable()?;
        for blob in store.content().list()? {
            if !live.contains(&blob.digest) {
                keep.insert(blob.digest);
            }
        }
        for record in store.cache_records() {
            keep.extend(record.image.blobs());
        }
    }
    let mut lines = Vec::new();
    if all {
        let used: std::collections::HashSet<String> = store
            .containers::<lb_container::ContainerConfig>()?
            .iter()
            .map(|c| c.image.to_string())
            .collect();
        for (name, desc) in store.names()? {
            let config = store.image_at(&desc).ok().map(|i| i.config);
            let created = config
                .as_ref()
                .and_then(|c| c.created().clone())
                .unwrap_or_default();
            let labels = config
                .as_ref()
                .and_then(|c| c.config().as_ref())
                .and_then(|c| c.labels().clone())
                .unwrap_or_default()
                .into_iter()
                .collect();
            if !used.contains(desc.digest().as_ref())
                && filters.keeps(&created)
                && filters.labels.passes(&labels)
            {
                store.remove_image_name(&name, false)?;
                lines.push(format!("untagged: {}", name.familiar()));
            }
        }
    }
    Ok((
        lines,
        crate::image_cmds::prune_store_keeping(store, &keep)?.bytes,
    ))
}

/// Whether the build cache (unlabelled) passes the label filters.
fn sweeps_cache(filters: &Filters) -> bool {
    filters.labels.passes(&Default::default())
}

fn print_section(title: &str, items: &[String]) {
    if !items.is_empty() {
        println!("{title}:");
        for i in items {
            println!("{i}");
        }
        println!();
    }
}

pub fn container_prune(store: &Store, args: PruneArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = usage_error(&args.filter, "container prune") {
        return Ok(code);
    }
    // docker 20.10 says what a declined prune reclaimed: nothing.
    let filters = Filters::parse(&args.filter, KEYS)?;
    let (mut ids, mut bytes) = (Vec::new(), 0);
    if confirmed(
        args.force,
        "WARNING! This will remove all stopped containers.",
    ) {
        (ids, bytes) = prune_containers(store, &filters)?;
    }
    print_section("Deleted Containers", &ids);
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn network_prune(store: &Store, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let warning =
        "WARNING! This will remove all custom networks not used by at least one container.";
    if let Some(code) = usage_error(&args.filter, "network prune") {
        return Ok(code);
    }
    let filters = Filters::parse(&args.filter, KEYS)?;
    if confirmed(args.force, warning) {
        print_section("Deleted Networks", &prune_networks(store, &filters)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn image_prune(store: &Store, args: ImagePruneArgs) -> anyhow::Result<ExitCode> {
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if let Some(code) = usage_error(&args.filter, "image prune") {
        return Ok(code);
    }
    let filters = Filters::parse(&args.filter, IMAGE_KEYS)?;
    let (mut lines, mut bytes) = (Vec::new(), 0);
    if confirmed(args.force, warning) {
        (lines, bytes) = prune_images(store, args.all || filters.all_images, &filters)?;
    }
    print_section("Deleted Images", &lines);
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn builder_prune(store: &Store, args: ImagePruneArgs) -> anyhow::Result<ExitCode> {
    // docker 20.10 asks on the warning's line.
    let warning = if args.all {
        "WARNING! This will remove all build cache. "
    } else {
        "WARNING! This will remove all dangling build cache. "
    };
    if let Some(code) = usage_error(&args.filter, "builder prune") {
        return Ok(code);
    }
    let filters = Filters::parse(&args.filter, KEYS)?;
    let mut bytes = 0;
    if confirmed_as(args.force, warning) {
        bytes = prune_images(store, false, &filters)?.1;
        if args.all && sweeps_cache(&filters) {
            bytes += store.remove_cache_mounts()?;
        }
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn volume_prune(store: &Store, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let warning = "WARNING! This will remove all local volumes not used by at least one container.";
    if let Some(code) = usage_error(&args.filter, "volume prune") {
        return Ok(code);
    }
    let filters = Filters::parse(&args.filter, LABEL_KEYS)?;
    let (mut names, mut bytes) = (Vec::new(), 0);
    if confirmed(args.force, warning) {
        (names, bytes) = lb_container::volume::prune(store, |v| filters.labels.passes(&v.labels))?;
    }
    print_section("Deleted Volumes", &names);
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn system_prune(store: &Store, args: SystemPruneArgs) -> anyhow::Result<ExitCode> {
    let mut warning = String::from(
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
    );
    if args.volumes {
        warning.push_str("  - all volumes not used by at least one container\n");
    }
    warning.push_str(if args.all {
        "  - all images without at least one container associated to them\n  - all build cache\n"
    } else {
        "  - all dangling images\n  - all dangling build cache\n"
    });
    if let Some(code) = usage_error(&args.filter, "system prune") {
        return Ok(code);
    }
    // docker 20.10 says the filters it knows, each once, sorted.
    let mut shown: Vec<String> = args
        .filter
        .iter()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| KEYS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    shown.sort();
    shown.dedup();
    if !shown.is_empty() {
        warning.push_str("\n  Items to be pruned will be filtered with:\n");
        for f in &shown {
            warning.push_str(&format!("  - {f}\n"));
        }
    }
    if args.volumes && args.filter.iter().any(|f| f.starts_with("until=")) {
        anyhow::bail!("ERROR: The \"until\" filter is not supported with \"--volumes\"");
    }
    let filters = Filters::parse(&args.filter, KEYS)?;
    if !confirmed(args.force, &warning) {
        return Ok(ExitCode::SUCCESS);
    }
    let (ids, mut bytes) = prune_containers(store, &filters)?;
    print_section("Deleted Containers", &ids);
    print_section("Deleted Networks", &prune_networks(store, &filters)?);
    if args.volumes {
        let (names, volume_bytes) =
            lb_container::volume::prune(store, |v| filters.labels.passes(&v.labels))?;
        print_section("Deleted Volumes", &names);
        bytes += volume_bytes;
    }
    let (lines, image_bytes) = prune_images(store, args.all, &filters)?;
    print_section("Deleted Images", &lines);
    bytes += image_bytes;
    if args.all && sweeps_cache(&filters) {
        bytes += store.remove_cache_mounts()?;
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}
