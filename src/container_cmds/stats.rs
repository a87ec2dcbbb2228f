//! `lb stats` and `lb top`, as docker's CLI shows them: stats' columns computed from two
//! readings a second apart (CPU % as docker: the container's share of the host's CPU
//! time times the online CPUs), docker's units, `--no-stream` or a screen redrawn every
//! second, `--format` templates; top's `ps` table aligned as docker's tabwriter.

use lb_container::ops::StatsSample;

use super::*;
use crate::image_cmds::{BINARY_UNITS, DECIMAL_UNITS, go_units};

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Pretty-print images using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    containers: Vec<String>,
}

/// A line of `stats`, with docker's field names for `--format`.
#[derive(serde::Serialize)]
struct Row {
    #[serde(rename = "BlockIO")]
    block_io: String,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
    #[serde(rename = "Container")]
    container: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "MemPerc")]
    mem_perc: String,
    #[serde(rename = "MemUsage")]
    mem_usage: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "NetIO")]
    net_io: String,
    #[serde(rename = "PIDs")]
    pids: String,
}

/// The fields `--format` knows, with docker's header of each `table` column.
const COLUMNS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const DEFAULT_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

pub fn stats(store: &Store, args: StatsArgs) -> anyhow::Result<ExitCode> {
    // The containers named, as named (docker's `Container` column), or those listed.
    let targets: Vec<(String, lb_container::Record)> = if args.containers.is_empty() {
        lb_container::ops::list(store, args.all)?
            .into_iter()
            .map(|(c, _)| (c.id[..12].to_string(), c))
            .collect()
    } else {
        args.containers
            .iter()
            .map(|k| Ok((k.clone(), Container::open(store, k)?.record)))
            .collect::<anyhow::Result<_>>()?
    };
    let format = args.format.as_deref().unwrap_or(DEFAULT_FORMAT);
    let read = || -> Vec<Option<StatsSample>> {
        targets
            .iter()
            .map(|(_, r)| Container::of(store, r.clone()).stats().ok().flatten())
            .collect()
    };
    let mut before = read();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = read();
        let rows: Vec<Row> = targets
            .iter()
            .zip(before.iter().zip(&now))
            .map(|((shown, r), (b, n))| row(shown, r, b.as_ref(), n.as_ref(), args.no_trunc))
            .collect();
        let text = crate::template::table_or_lines(format, COLUMNS, &rows)?;
        if args.no_stream {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        // docker's redraw: clear the screen, home the cursor.
        print!("\x1b[2J\x1b[H{text}");
        use std::io::Write;
        std::io::stdout().flush()?;
        before = now;
    }
}

fn row(
    shown: &str,
    r: &lb_container::Record,
    before: Option<&StatsSample>,
    now: Option<&StatsSample>,
    no_trunc: bool,
) -> Row {
    let id = if no_trunc {
        r.id.clone()
    } else {
        r.id[..12].to_string()
    };
    let s = now.copied().unwrap_or_default();
    let cpu = match (before, now) {
        (Some(b), Some(n)) => {
            let cpu = n.cgroup.cpu_ns.saturating_sub(b.cgroup.cpu_ns) as f64;
            let system = n.system_cpu_ns.saturating_sub(b.system_cpu_ns) as f64;
            if cpu > 0.0 && system > 0.0 {
                cpu / system * f64::from(n.online_cpus) * 100.0
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    let mem_perc = if s.memory_limit > 0 {
        s.cgroup.memory as f64 / s.memory_limit as f64 * 100.0
    } else {
        0.0
    };
    let dec = |n| go_units(n, 1000.0, DECIMAL_UNITS, 3);
    let bin = |n| go_units(n, 1024.0, BINARY_UNITS, 4);
    Row {
        block_io: format!("{} / {}", dec(s.cgroup.io_read), dec(s.cgroup.io_write)),
        cpu_perc: format!("{cpu:.2}%"),
        container: shown.to_string(),
        id,
        mem_perc: format!("{mem_perc:.2}%"),
        mem_usage: format!("{} / {}", bin(s.cgroup.memory), bin(s.memory_limit)),
        name: r.name.clone(),
        net_io: format!("{} / {}", dec(s.net_rx), dec(s.net_tx)),
        pids: s.cgroup.pids.to_string(),
    }
}

#[derive(Args)]
#[command(trailing_var_arg = true)]
pub struct TopArgs {
    container: String,
    /// ps options (default -ef)
    #[arg(allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

/// `lb top`: the host's `ps` lines of the container's processes.
pub fn top(store: &Store, args: TopArgs) -> anyhow::Result<ExitCode> {
    // docker's CLI sends the options as one string, which the daemon splits on spaces.
    let joined = args.ps_options.join(" ");
    let ps_args: Vec<String> = if joined.is_empty() {
        Vec::new()
    } else {
        joined.split(' ').map(str::to_string).collect()
    };
    let top = Container::open(store, &args.container)?.top(&ps_args)?;
    let mut lines = vec![top.titles.join("\t")];
    lines.extend(top.processes.iter().map(|p| p.join("\t")));
    print!("{}", crate::template::aligned(&lines, 20));
    Ok(ExitCode::SUCCESS)
}
