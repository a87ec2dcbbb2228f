//! `lb inspect`, `lb container inspect`, `lb image inspect`: docker's JSON of containers
//! and images (containers first when a name could be both, as docker looks), or each one
//! through a `--format` template.

use std::process::ExitCode;

use clap::Args;
use lb_container::Container;
use lb_layerstore::{Image, Store};
use serde_json::json;

use crate::image_cmds::reference;
use crate::template::Format;

#[derive(Args)]
pub struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    format: Option<String>,
    /// Return JSON for the specified type: container or image
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Names or IDs of containers or images
    #[arg(required = true)]
    names: Vec<String>,
}

/// `lb container inspect` / `lb image inspect`: one kind only.
#[derive(Args)]
pub struct TypedInspectArgs {
    /// Format the output using the given Go template
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

impl TypedInspectArgs {
    pub fn run(self, store: &Store, kind: Kind) -> anyhow::Result<ExitCode> {
        inspect_as(store, kind, self.format.as_deref(), &self.names)
    }
}

/// What `inspect` may look a name up as.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Any,
    Container,
    Image,
}

impl Kind {
    fn parse(s: Option<&str>) -> anyhow::Result<Kind> {
        match s {
            None | Some("") => Ok(Kind::Any),
            Some("container") => Ok(Kind::Container),
            Some("image") => Ok(Kind::Image),
            Some(other) => anyhow::bail!("\"{other}\" is not a valid value for --type"),
        }
    }

    /// docker's words for a name found as nothing.
    fn not_found(self, name: &str) -> String {
        match self {
            Kind::Any => format!("Error: No such object: {name}"),
            Kind::Container => format!("Error: No such container: {name}"),
            Kind::Image => format!("Error: No such image: {name}"),
        }
    }
}

/// `lb inspect` (any kind, or `--type`).
pub fn inspect(store: &Store, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let kind = Kind::parse(args.kind.as_deref())?;
    inspect_as(store, kind, args.format.as_deref(), &args.names)
}

/// Inspects `names` as `kind`: found objects printed (a JSON array, or the template once
/// per object), then one error line per name found as nothing, and exit status 1 if any.
pub fn inspect_as(
    store: &Store,
    kind: Kind,
    format: Option<&str>,
    names: &[String],
) -> anyhow::Result<ExitCode> {
    let format = format.map(Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match lookup(store, kind, name)? {
            Some(v) => found.push(v),
            None => missing.push(kind.not_found(name)),
        }
    }
    match &format {
        Some(f) => {
            for v in &found {
                println!("{}", f.render(v)?);
            }
            // docker prints one empty line when it found nothing.
            if found.is_empty() {
                println!();
            }
        }
        None => println!("{}", docker_json(&found)?),
    }
    for m in &missing {
        eprintln!("{m}");
    }
    Ok(if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What a name was found as.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Found {
    /// Typed: its keys in docker's order.
    Container(Box<lb_container::ops::ContainerInspect>),
    Image(serde_json::Value),
}

/// A container's or an image's inspect object; none when `name` is neither.
fn lookup(store: &Store, kind: Kind, name: &str) -> anyhow::Result<Option<Found>> {
    use lb_layerstore::Error::{NameNotFound, NoContainer};
    if kind != Kind::Image {
        match Container::open(store, name) {
            Ok(c) => return Ok(Some(Found::Container(Box::new(c.inspect()?)))),
            Err(lb_container::Error::Store(NoContainer(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if kind != Kind::Container
        && let Ok(r) = reference(name)
    {
        // A name found but its image unreadable is that error, not "no such".
        match store.image(&r) {
            Ok(image) => return Ok(Some(Found::Image(image_json(store, &image)?))),
            Err(NameNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// JSON as docker prints it: indented by four spaces.
pub fn docker_json(v: &impl serde::Serialize) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// The JSON shape of `docker image inspect`.
fn image_json(store: &Store, image: &Image) -> anyhow::Result<serde_json::Value> {
    let all = store.names()?;
    let tags: Vec<String> = all
        .iter()
        .filter(|(_, d)| d.digest().as_ref() == image.manifest_digest.to_string())
        .map(|(r, _)| r.familiar())
        .collect();
    let c = image.config.config().clone().unwrap_or_default();
    let ports: Option<serde_json::Map<String, serde_json::Value>> = c
        .exposed_ports()
        .as_ref()
        .map(|p| p.iter().map(|k| (k.clone(), json!({}))).collect());
    let volumes: Option<serde_json::Map<String, serde_json::Value>> = c
        .volumes()
        .as_ref()
        .map(|p| p.iter().map(|k| (k.clone(), json!({}))).collect());
    // Docker's own fields, which the OCI config type does not carry: from the blob.
    let raw: serde_json::Value =
        serde_json::from_slice(&store.content().read_verified(&image.config_digest)?)?;
    let docker_field = |k: &str| raw["config"].get(k).cloned().unwrap_or(json!(null));
    Ok(json!({
        "Id": image.config_digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": [],
        "Created": image.config.created(),
        "Architecture": image.config.architecture().to_string(),
        "Os": image.config.os().to_string(),
        "Config": {
            "User": c.user().clone().unwrap_or_default(),
            "ExposedPorts": ports,
            "Env": c.env(),
            "Cmd": c.cmd(),
            "Entrypoint": c.entrypoint(),
            "WorkingDir": c.working_dir().clone().unwrap_or_default(),
            "Labels": c.labels(),
            "Volumes": volumes,
            "StopSignal": c.stop_signal(),
            "Healthcheck": docker_field("Healthcheck"),
            "Shell": docker_field("Shell"),
            "OnBuild": docker_field("OnBuild"),
        },
        "RootFS": { "Type": "layers", "Layers": image.config.rootfs().diff_ids() },
        "Size": image.size(),
    }))
}
