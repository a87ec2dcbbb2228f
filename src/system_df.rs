//! `lb system df [-v] [--format]`: docker 20.10's disk usage output over
//! `lb_container::disk_usage` (a summary line per kind, or `-v`'s four tables), its
//! `--format` templates run on the same fields docker's formatter gives them.

use std::process::ExitCode;

use clap::Args;
use lb_container::disk_usage::{CacheUsage, ContainerUsage, DiskUsage, ImageUsage, Summary};
use lb_layerstore::{Reference, Store};
use serde::Serialize;

use crate::image_cmds::{DECIMAL_UNITS, go_units, human_duration, human_size};
use crate::template::{Format, table_or_lines};

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Pretty-print images using a Go template
    #[arg(long)]
    format: Option<String>,
}

const SUMMARY_TABLE: &str =
    "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
const SUMMARY_RAW: &str = "type: {{.Type}}\ntotal: {{.TotalCount}}\nactive: {{.Active}}\nsize: {{.Size}}\nreclaimable: {{.Reclaimable}}\n";
const SUMMARY_COLUMNS: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

/// `-v --format raw`: docker's raw format of each kind, one item after another.
const VERBOSE_RAW: &str = concat!(
    "{{range .Images}}type: Image\n",
    "repository: {{ .Repository }}\ntag: {{.Tag}}\ndigest: {{.Digest}}\nimage_id: {{.ID}}\n",
    "created_at: {{.CreatedAt}}\nvirtual_size: {{.Size}}\n",
    "\n{{end -}}\n{{range .Containers}}type: Container\n",
    "container_id: {{.ID}}\nimage: {{.Image}}\ncommand: {{.Command}}\n",
    "created_at: {{.CreatedAt}}\nstate: {{- pad .State 1 0}}\nstatus: {{- pad .Status 1 0}}\n",
    "names: {{.Names}}\nlabels: {{- pad .Labels 1 0}}\nports: {{- pad .Ports 1 0}}\n",
    "size: {{.Size}}\\n",
    "\n{{end -}}\n{{range .Volumes}}type: Volume\n",
    "name: {{.Name}}\\ndriver: {{.Driver}}\\n",
    "\n{{end -}}\n{{range .BuildCache}}type: Build Cache\n",
    "build_cache_id: {{.ID}}\nparent_id: {{.Parent}}\nbuild_cache_type: {{.CacheType}}\n",
    "description: {{.Description}}\ncreated_at: {{.CreatedAt}}\ncreated_since: {{.CreatedSince}}\n",
    "last_used_at: {{.LastUsedAt}}\nlast_used_since: {{.LastUsedSince}}\n",
    "usage_count: {{.UsageCount}}\nin_use: {{.InUse}}\nshared: {{.Shared}}\n",
    "\n{{end -}}",
);

const IMAGE_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.VirtualSize}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
const IMAGE_COLUMNS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("VirtualSize", "SIZE"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("Containers", "CONTAINERS"),
];
const CONTAINER_TABLE: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}";
const CONTAINER_COLUMNS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Size", "SIZE"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
];
const VOLUME_TABLE: &str = "table {{.Name}}\t{{.Links}}\t{{.Size}}";
const VOLUME_COLUMNS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];
const CACHE_TABLE: &str = "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}";
const CACHE_COLUMNS: &[(&str, &str)] = &[
    ("ID", "CACHE ID"),
    ("CacheType", "CACHE TYPE"),
    ("Size", "SIZE"),
    ("CreatedSince", "CREATED"),
    ("LastUsedSince", "LAST USED"),
    ("UsageCount", "USAGE"),
    ("Shared", "SHARED"),
];

/// A summary line's fields (docker's formatter marshals them as a map: keys sorted, so
/// declared so here too).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SummaryRow {
    active: String,
    reclaimable: String,
    size: String,
    total_count: String,
    #[serde(rename = "Type")]
    kind: &'static str,
}

impl SummaryRow {
    /// docker's line; `percent` says whether its reclaimable bytes carry "(N%)" (all
    /// kinds but the build cache).
    fn new(kind: &'static str, s: Summary, percent: bool) -> SummaryRow {
        let reclaimable = match s.size {
            size if percent && size > 0 => format!(
                "{} ({}%)",
                human_size(s.reclaimable),
                s.reclaimable * 100 / size
            ),
            _ => human_size(s.reclaimable),
        };
        SummaryRow {
            active: s.active.to_string(),
            reclaimable,
            size: human_size(s.size),
            total_count: s.total_count.to_string(),
            kind,
        }
    }
}

/// `-v`'s image fields (docker's `imageContext`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageRow {
    containers: String,
    created_at: String,
    created_since: String,
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    repository: String,
    shared_size: String,
    size: String,
    tag: String,
    unique_size: String,
    virtual_size: String,
}

/// `-v`'s container fields (docker's `ContainerContext`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerRow {
    command: String,
    created_at: String,
    #[serde(rename = "ID")]
    id: String,
    image: String,
    labels: String,
    local_volumes: String,
    mounts: String,
    names: String,
    networks: String,
    ports: String,
    running_for: String,
    size: String,
    state: &'static str,
    status: String,
}

/// `-v`'s volume fields (docker's `volumeContext`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeRow {
    driver: String,
    labels: String,
    links: String,
    mountpoint: String,
    name: String,
    scope: String,
    size: String,
}

/// `-v`'s build cache fields (docker's `buildCacheContext`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CacheRow {
    cache_type: &'static str,
    created_at: String,
    created_since: String,
    description: String,
    #[serde(rename = "ID")]
    id: String,
    in_use: String,
    last_used_at: String,
    last_used_since: String,
    parent: String,
    shared: String,
    size: String,
    usage_count: String,
}

/// What a verbose `--format` template runs on: the four lists.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Verbose {
    images: Vec<ImageRow>,
    containers: Vec<ContainerRow>,
    volumes: Vec<VolumeRow>,
    build_cache: Vec<CacheRow>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Go's `time.Time.String()` of a UTC time: `2026-01-02 15:04:05 +0000 UTC`.
fn go_time(secs: i64) -> String {
    let t = lb_layerstore::rfc3339(secs);
    format!(
        "{} +0000 UTC",
        t.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// go-units' `HumanSizeWithPrecision(n, 3)`, which docker's per-item SIZE cells use.
fn size3(bytes: u64) -> String {
    go_units(bytes, 1000.0, DECIMAL_UNITS, 3)
}

/// docker's `stringid.TruncateID`: past any `algo:`, 12 characters.
fn short(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, hex)| hex);
    id.chars().take(12).collect()
}

fn image_row(i: &ImageUsage, trunc: bool) -> ImageRow {
    // The first name, when it has a tag (docker shows only that).
    let (repo, tag) = match i.names.first() {
        Some(name) if name.tag.is_some() => (
            Reference {
                tag: None,
                digest: None,
                ..name.clone()
            }
            .familiar(),
            name.tag.clone().unwrap_or_default(),
        ),
        _ => ("<none>".to_string(), "<none>".to_string()),
    };
    let created = i.created.unwrap_or(0);
    ImageRow {
        containers: i.containers.to_string(),
        created_at: go_time(created),
        created_since: format!("{} ago", human_duration(now() - created)),
        digest: String::new(),
        id: if trunc {
            short(&i.id.to_string())
        } else {
            i.id.to_string()
        },
        repository: repo,
        shared_size: human_size(i.shared_size),
        size: size3(i.size),
        tag,
        unique_size: human_size(i.size.saturating_sub(i.shared_size)),
        virtual_size: human_size(i.size),
    }
}

fn container_row(store: &Store, c: &ContainerUsage, trunc: bool) -> ContainerRow {
    let r = &c.record;
    let volumes: Vec<String> = r
        .config
        .volumes
        .iter()
        .map(|v| match trunc && v.name.chars().count() > 15 {
            true => v.name.chars().take(14).collect::<String>() + "…",
            false => v.name.clone(),
        })
        .collect();
    let created = lb_layerstore::parse_rfc3339(&r.created).unwrap_or(0);
    ContainerRow {
        command: crate::container_cmds::command_column(r, trunc),
        created_at: go_time(created),
        id: if trunc { short(&r.id) } else { r.id.clone() },
        image: r.image_name.clone(),
        labels: crate::container_cmds::labels(store, r)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        local_volumes: c.local_volumes.to_string(),
        mounts: volumes.join(","),
        names: r.name.clone(),
        networks: r.config.network.clone(),
        ports: crate::container_cmds::ports_column(r, &c.state),
        running_for: format!("{} ago", crate::container_cmds::ago(&r.created)),
        size: size3(c.size_rw),
        state: lb_container::Status::of(&c.state).as_str(),
        status: crate::container_cmds::status_column(store, r, &c.state),
    }
}

fn cache_row(c: &CacheUsage, trunc: bool) -> CacheRow {
    CacheRow {
        cache_type: c.kind.as_str(),
        created_at: go_time(c.created),
        created_since: format!("{} ago", human_duration(now() - c.created)),
        description: String::new(),
        id: if trunc { short(&c.id) } else { c.id.clone() },
        in_use: "false".into(),
        last_used_at: String::new(),
        last_used_since: String::new(),
        parent: String::new(),
        shared: c.shared.to_string(),
        size: size3(c.size),
        usage_count: "0".into(),
    }
}

fn verbose_rows(store: &Store, du: &DiskUsage, trunc: bool) -> Verbose {
    Verbose {
        images: du.images.iter().map(|i| image_row(i, trunc)).collect(),
        containers: du
            .containers
            .iter()
            .map(|c| container_row(store, c, trunc))
            .collect(),
        volumes: du
            .volumes
            .iter()
            .map(|v| VolumeRow {
                driver: v.volume.driver.clone(),
                labels: v
                    .volume
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                links: v.links.to_string(),
                mountpoint: v.volume.mountpoint.display().to_string(),
                name: v.volume.name.clone(),
                scope: v.volume.scope.clone(),
                size: human_size(v.size),
            })
            .collect(),
        build_cache: du.build_cache.iter().map(|c| cache_row(c, trunc)).collect(),
    }
}

/// `lb system df`.
pub fn system_df(store: &Store, args: DfArgs) -> anyhow::Result<ExitCode> {
    let du = lb_container::disk_usage::disk_usage(store)?;
    let format = args.format.as_deref().unwrap_or("table");
    if !args.verbose {
        let rows = [
            SummaryRow::new("Images", du.images_summary(), true),
            SummaryRow::new("Containers", du.containers_summary(), true),
            SummaryRow::new("Local Volumes", du.volumes_summary(), true),
            SummaryRow::new("Build Cache", du.build_cache_summary(), false),
        ];
        let template = match format {
            "table" => SUMMARY_TABLE,
            "raw" => SUMMARY_RAW,
            f => f,
        };
        print!("{}", table_or_lines(template, SUMMARY_COLUMNS, &rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if format != "table" {
        // A template of its own runs once on the four lists; docker truncates ids for
        // a `table` one only, and prints what it gives as it is (no newline added),
        // after its formatter's preparation: `table` and surrounding spaces cut, `\t`
        // and `\n` written as they are meant.
        let format = if format == "raw" { VERBOSE_RAW } else { format };
        let (trunc, text) = match format.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let text = text
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let rows = verbose_rows(store, &du, trunc);
        print!("{}", Format::parse(&text)?.render(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = verbose_rows(store, &du, true);
    let mut out = String::from("Images space usage:\n\n");
    out += &table_or_lines(IMAGE_TABLE, IMAGE_COLUMNS, &rows.images)?;
    out += "\nContainers space usage:\n\n";
    out += &table_or_lines(CONTAINER_TABLE, CONTAINER_COLUMNS, &rows.containers)?;
    out += "\nLocal Volumes space usage:\n\n";
    out += &table_or_lines(VOLUME_TABLE, VOLUME_COLUMNS, &rows.volumes)?;
    out += &format!(
        "\nBuild cache usage: {}\n\n",
        human_size(du.build_cache_size())
    );
    out += &table_or_lines(CACHE_TABLE, CACHE_COLUMNS, &rows.build_cache)?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_as_docker_words_them() {
        let s = Summary {
            total_count: 2,
            active: 1,
            size: 2_000_000,
            reclaimable: 500_000,
        };
        let row = SummaryRow::new("Images", s, true);
        assert_eq!(row.reclaimable, "500kB (25%)");
        assert_eq!(row.size, "2MB");
        let cache = SummaryRow::new("Build Cache", s, false);
        assert_eq!(cache.reclaimable, "500kB");
        let empty = Summary {
            total_count: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        assert_eq!(SummaryRow::new("Images", empty, true).reclaimable, "0B");
        // Keys in the order docker's formatter marshals them.
        assert_eq!(
            serde_json::to_string(&cache).unwrap(),
            r#"{"Active":"1","Reclaimable":"500kB","Size":"2MB","TotalCount":"2","Type":"Build Cache"}"#
        );
    }

    #[test]
    fn ids_and_times_as_dockers_formatter_prints_them() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(size3(2_137_000), "2.14MB");
    }
}
