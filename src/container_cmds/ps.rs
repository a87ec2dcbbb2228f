//! `lb ps`: the store's containers, as docker lists them: the default table, `-q`,
//! `--filter` (name, id, status, label), `-s` (SIZE), and `--format` (a Go template per container, or
//! `table TEMPLATE` with docker's column headers, aligned as its tabwriter aligns them).

use super::*;

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container ids
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided (name=, id=, status=, label=KEY[=VALUE],
    /// exited=, ancestor=, health=, network=, volume=, before=, since=)
    #[arg(short, long = "filter")]
    filters: Vec<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_negative_numbers = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Pretty-print containers using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
}

/// A row of `ps`, with docker's field names for `--format`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    #[serde(rename = "ID")]
    id: String,
    image: String,
    command: String,
    created_at: String,
    running_for: String,
    ports: String,
    state: &'static str,
    status: String,
    names: String,
    networks: String,
    /// What it changed, and with its image's (`-s`, docker's "3B (virtual 2.14MB)").
    size: String,
    /// `KEY=VALUE,...`, the image's labels and the container's.
    labels: String,
    /// Its mounts: volumes by name, binds by source, each cut to 15 characters unless
    /// `--no-trunc` (docker's).
    mounts: String,
    /// How many of its mounts are volumes (docker's local driver).
    local_volumes: String,
}

/// The fields `--format` knows, with docker's header of each `table` column.
const COLUMNS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// A container's labels as docker shows them: its image's, then its own over them.
pub(crate) fn labels(
    store: &Store,
    c: &lb_container::Record,
) -> std::collections::BTreeMap<String, String> {
    let image = store
        .image_by_manifest(c.image)
        .ok()
        .and_then(|i| i.config.config().clone())
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    image
        .into_iter()
        .chain(c.config.host.labels.clone())
        .collect()
}

/// The container's mounts as `inspect` lists them.
fn mount_points(store: &Store, c: &lb_container::Record) -> Vec<lb_container::ops::MountPoint> {
    Container::of(store, c.clone()).mount_points()
}

/// What `ps --filter` takes (docker's daemon's keys that apply to lb).
const FILTER_KEYS: &[&str] = &[
    "name", "id", "status", "label", "exited", "ancestor", "health", "network", "volume", "before",
    "since",
];

/// docker's filters, each value read once; what the daemon refuses is refused here.
struct PsFilters {
    given: Vec<(String, String)>,
    /// `before=`/`since=`: the named containers' creation times.
    before: Option<String>,
    since: Option<String>,
}

impl PsFilters {
    fn new(store: &Store, given: Vec<(String, String)>) -> anyhow::Result<PsFilters> {
        crate::filter_flags::check_keys(&given, FILTER_KEYS)?;
        let created = |key: &str| -> anyhow::Result<Option<String>> {
            given
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| Ok(Container::open(store, v)?.record.created))
                .next_back()
                .transpose()
        };
        for (k, v) in &given {
            match k.as_str() {
                "exited" => {
                    v.parse::<i32>().map_err(|_| {
                        anyhow::anyhow!("strconv.Atoi: parsing {v:?}: invalid syntax")
                    })?;
                }
                "health"
                    if !matches!(v.as_str(), "starting" | "healthy" | "unhealthy" | "none") =>
                {
                    anyhow::bail!("Unrecognised filter value for health: {v}")
                }
                "status"
                    if !matches!(
                        v.as_str(),
                        "created"
                            | "restarting"
                            | "running"
                            | "removing"
                            | "paused"
                            | "exited"
                            | "dead"
                    ) =>
                {
                    anyhow::bail!("Invalid filter 'status={v}'")
                }
                _ => {}
            }
        }
        Ok(PsFilters {
            before: created("before")?,
            since: created("since")?,
            given,
        })
    }

    /// Whether the filters show stopped containers too (docker's: a status other than
    /// running).
    fn shows_stopped(&self) -> bool {
        self.given
            .iter()
            .any(|(k, v)| k == "status" && v != "running")
    }

    /// Whether container `c` in state `st` passes: every key's filters, any of a key's
    /// values (docker's), the labels as its MatchKVList.
    fn passes(&self, store: &Store, c: &lb_container::Record, st: &State) -> bool {
        let status = lb_container::Status::of(st);
        let any = |key: &str, f: &dyn Fn(&str) -> bool| {
            let mut values = self.given.iter().filter(|(k, _)| k == key).peekable();
            values.peek().is_none() || values.any(|(_, v)| f(v))
        };
        let wanted = lb_container::filters::LabelFilter {
            wanted: self
                .given
                .iter()
                .filter(|(k, _)| k == "label")
                .map(|(_, v)| v.clone())
                .collect(),
            refused: Vec::new(),
        };
        (wanted.is_empty() || wanted.passes(&labels(store, c)))
            && any("name", &|v| c.name.contains(v.trim_start_matches('/')))
            && any("id", &|v| c.id.starts_with(v))
            && any("status", &|v| status.as_str() == v)
            && any("exited", &|v| {
                status == lb_container::Status::Exited && v.parse() == Ok(st.exit_code)
            })
            && any("ancestor", &|v| ancestor(store, c, v))
            && any("health", &|v| health_of(store, c, st) == v)
            && any("network", &|v| c.config.network == v)
            && any("volume", &|v| {
                c.config.volumes.iter().any(|u| {
                    u.name == v || u.destination.trim_end_matches('/') == v.trim_end_matches('/')
                }) || c.config.binds.iter().any(|b| {
                    let mut parts = b.split(':');
                    parts.next() == Some(v) || parts.next() == Some(v)
                })
            })
            && self.before.as_ref().is_none_or(|t| c.created < *t)
            && self.since.as_ref().is_none_or(|t| c.created > *t)
    }
}

/// `ancestor=IMAGE`: the container was made from that image (by name, `NAME:TAG`, or its
/// id or a prefix of it).
fn ancestor(store: &Store, c: &lb_container::Record, v: &str) -> bool {
    if c.image_name == v {
        return true;
    }
    if let Ok(r) = lb_layerstore::Reference::parse(v)
        && let Ok(desc) = store.resolve(&r)
        && lb_layerstore::Store::descriptor_digest(&desc).is_ok_and(|d| d == c.image)
    {
        return true;
    }
    let id = store
        .image_by_manifest(c.image)
        .map(|i| i.config_digest.to_string())
        .unwrap_or_default();
    let hex = v.trim_start_matches("sha256:");
    hex.len() >= 4 && id.trim_start_matches("sha256:").starts_with(hex)
}

/// docker's health filter value: starting, healthy, unhealthy, or none.
fn health_of(store: &Store, c: &lb_container::Record, st: &State) -> String {
    if c.config.health.is_none() || !st.running() {
        return "none".into();
    }
    lb_container::health::Health::load(&store.container_dir(&c.id))
        .map(|h| h.status)
        .unwrap_or_else(|| "starting".into())
}

/// The COMMAND column: quoted, cut to 20 characters with an ellipsis when `trunc`.
pub(crate) fn command_column(c: &lb_container::Record, trunc: bool) -> String {
    let mut cmd = format!("\"{}\"", c.config.command());
    if trunc && cmd.chars().count() > 22 {
        cmd = cmd.chars().take(20).collect::<String>() + "…\"";
    }
    cmd
}

/// The STATUS column: docker's "Up 5 seconds (healthy)", "Exited (0) 3 seconds ago".
pub(crate) fn status_column(store: &Store, c: &lb_container::Record, st: &State) -> String {
    match (st.running() && !st.paused, c.config.health.is_some()) {
        (true, true) => {
            let health = lb_container::health::Health::load(&store.container_dir(&c.id))
                .map(|h| h.status)
                .unwrap_or_else(|| "starting".into());
            let shown = if health == "starting" {
                "health: starting".to_string()
            } else {
                health
            };
            format!("{} ({shown})", status_text(st))
        }
        _ => status_text(st),
    }
}

/// The PORTS column: a running container's published ports.
pub(crate) fn ports_column(c: &lb_container::Record, st: &State) -> String {
    if !st.running() {
        return String::new();
    }
    c.config
        .port_specs()
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ps(store: &Store, args: PsArgs) -> anyhow::Result<ExitCode> {
    lb_container::network::reconcile(store);
    let given = match crate::filter_flags::parse(&args.filters, "-f, --filter", "ps") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    let filters = PsFilters::new(store, given)?;
    // -n and -l show the last made in all states, as docker's; so do filters on stopped ones.
    let last = if args.latest { 1 } else { args.last };
    let all = args.all || last >= 0 || filters.shows_stopped();
    let mut rows: Vec<(lb_container::Record, State)> = lb_container::ops::list(store, all)?
        .into_iter()
        .filter(|(c, st)| filters.passes(store, c, st))
        .collect();
    if last >= 0 {
        rows.truncate(last as usize);
    }
    let short = |id: &str| {
        if args.no_trunc {
            id.to_string()
        } else {
            id[..12].to_string()
        }
    };
    if args.quiet {
        for (c, _) in rows {
            println!("{}", short(&c.id));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let row = |c: &lb_container::Record, st: &State| Row {
        id: short(&c.id),
        image: c.image_name.clone(),
        command: command_column(c, !args.no_trunc),
        created_at: c.created.clone(),
        running_for: format!("{} ago", ago(&c.created)),
        ports: ports_column(c, st),
        state: lb_container::Status::of(st).as_str(),
        status: status_column(store, c, st),
        names: c.name.clone(),
        networks: c.config.network.clone(),
        size: if args.size {
            let own = store.container_size(&c.id);
            let image = store.image_by_manifest(c.image).map_or(0, |i| i.size());
            format!(
                "{} (virtual {})",
                crate::image_cmds::human_size(own),
                crate::image_cmds::human_size(own + image)
            )
        } else {
            String::new()
        },
        mounts: mount_points(store, c)
            .iter()
            .map(|m| {
                let name = m.name.clone().unwrap_or_else(|| m.source.clone());
                if !args.no_trunc && name.chars().count() > 15 {
                    name.chars().take(14).collect::<String>() + "…"
                } else {
                    name
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        local_volumes: mount_points(store, c)
            .iter()
            .filter(|m| m.driver.as_deref() == Some("local"))
            .count()
            .to_string(),
        labels: if args.format.as_deref().is_some_and(|f| f.contains("Label")) {
            labels(store, c)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            String::new()
        },
    };
    if let Some(f) = &args.format {
        let rows: Vec<Row> = rows.iter().map(|(c, st)| row(c, st)).collect();
        print!("{}", crate::template::table_or_lines(f, COLUMNS, &rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<20} {:<24} {:<16} {:<26} {:<8} NAMES{}",
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        if args.size { "     SIZE" } else { "" }
    );
    for (c, st) in &rows {
        let r = row(c, st);
        let names = if args.size {
            format!("{:<9}{:<5}{}", r.names, "", r.size)
        } else {
            r.names
        };
        println!(
            "{:<14} {:<20} {:<24} {:<16} {:<26} {:<8} {names}",
            r.id, r.image, r.command, r.running_for, r.status, r.ports
        );
    }
    Ok(ExitCode::SUCCESS)
}
