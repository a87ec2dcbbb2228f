//! `lb volume create|ls|inspect|rm|prune`: docker's volume commands over the store's
//! volumes (`lb_container::volume`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use lb_container::volume;
use lb_layerstore::Store;

use crate::inspect_cmd::docker_json;
use crate::template::Format;

#[derive(Subcommand)]
pub enum VolumeCommands {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused local volumes
    Prune(crate::prune_cmds::PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    labels: Vec<String>,
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Pretty-print volumes using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Provide filter values (e.g. 'dangling=true', 'label=KEY=VALUE')
    #[arg(short, long = "filter")]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `--label K=V` values as docker keeps them (`K` alone is `K=""`).
pub(crate) fn label_map(labels: &[String]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn run(store: &Store, cmd: VolumeCommands) -> anyhow::Result<ExitCode> {
    match cmd {
        VolumeCommands::Create(a) => {
            if a.driver != "local" {
                anyhow::bail!(
                    "create: volume driver {:?} is not supported (local)",
                    a.driver
                );
            }
            let v = volume::create(store, a.name.as_deref(), label_map(&a.labels))?;
            println!("{}", v.name);
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommands::Ls(a) => ls(store, a),
        VolumeCommands::Inspect(a) => inspect(store, a),
        VolumeCommands::Rm(a) => rm(store, a),
        VolumeCommands::Prune(a) => crate::prune_cmds::volume_prune(store, a),
    }
}

/// Whether volume `v` passes `volume ls`'s filters (docker's: `dangling`, `driver`,
/// `label`, `name`; each key's values are alternatives, except labels, which all must
/// match).
fn listed(store: &Store, filters: &[(String, String)], v: &volume::VolumeDefinition) -> bool {
    let labels = lb_container::filters::LabelFilter {
        wanted: filters
            .iter()
            .filter(|(k, _)| k == "label")
            .map(|(_, v)| v.clone())
            .collect(),
        refused: Vec::new(),
    };
    let any = |key: &str, test: &dyn Fn(&str) -> bool| {
        let mut values = filters.iter().filter(|(k, _)| k == key).peekable();
        values.peek().is_none() || values.any(|(_, val)| test(val))
    };
    let dangling = || volume::users(store, &v.name).is_ok_and(|u| u.is_empty());
    labels.passes(&v.labels)
        && any("name", &|n: &str| v.name.contains(n))
        && any("driver", &|d: &str| v.driver == d)
        && any("dangling", &|d: &str| {
            matches!(d, "true" | "1") == dangling()
        })
}

fn ls(store: &Store, a: LsArgs) -> anyhow::Result<ExitCode> {
    let filters = match crate::filter_flags::parse(&a.filter, "-f, --filter", "volume ls") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    crate::filter_flags::check_keys(&filters, &["dangling", "driver", "label", "name"])?;
    if let Some((_, v)) = filters
        .iter()
        .find(|(k, v)| k == "dangling" && !matches!(v.as_str(), "true" | "false" | "1" | "0"))
    {
        anyhow::bail!("Invalid filter 'dangling=[{v}]'");
    }
    let all: Vec<_> = volume::list(store)?
        .into_iter()
        .filter(|v| listed(store, &filters, v))
        .collect();
    if let Some(f) = &a.format {
        let f = Format::parse(f)?;
        for v in &all {
            // docker's `volume ls` row: Name, Driver, Mountpoint, Scope, Labels (text).
            let row = serde_json::json!({
                "Name": v.name,
                "Driver": v.driver,
                "Mountpoint": v.mountpoint,
                "Scope": v.scope,
                "Labels": v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            });
            println!("{}", f.render(&row)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !a.quiet {
        println!("{:<10}VOLUME NAME", "DRIVER");
    }
    for v in &all {
        if a.quiet {
            println!("{}", v.name);
        } else {
            println!("{:<10}{}", v.driver, v.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(store: &Store, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let format = a.format.as_deref().map(Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in &a.names {
        match volume::lookup(store, n)? {
            Some(v) => found.push(v),
            None => missing.push(n),
        }
    }
    match &format {
        Some(f) => {
            for v in &found {
                println!("{}", f.render(v)?);
            }
        }
        None => println!("{}", docker_json(&found)?),
    }
    for n in &missing {
        eprintln!("Error: No such volume: {n}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn rm(store: &Store, a: RmArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for n in &a.names {
        match volume::remove(store, n, a.force) {
            Ok(()) => println!("{n}"),
            Err(lb_container::Error::NoSuchVolume(_)) => {
                eprintln!("Error: No such volume: {n}");
                code = ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}
