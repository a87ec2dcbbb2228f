//! `lb build [OPTIONS] CONTEXT`: reads the Dockerfile, hands it to the builder and prints
//! its progress the way BuildKit's plain output does (`#N [stage k/n] INSTRUCTION`,
//! `#N CACHED`, the steps' output, `#N DONE 0.1s`), then names the image.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use lb_builder::{BuildOptions, Event, Progress};
use lb_layerstore::{Reference, Store};

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); may be given more than once
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short, long = "file")]
    file: Option<PathBuf>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take lb's own)
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// The stage to build
    #[arg(long)]
    target: Option<String>,
    /// Run every step, using no cached result
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Run the steps of these stages, using no cached result
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Always fetch the images FROM and --from name again from their registries
    #[arg(long)]
    pull: bool,
    /// Push every -t name to its registry after the build
    #[arg(long)]
    push: bool,
    /// The platform to build for: only this machine's (linux/amd64 here) until emulation
    #[arg(long)]
    platform: Option<String>,
    /// Set a label on the image (KEY=VALUE)
    #[arg(long)]
    label: Vec<String>,
    /// Networking of RUN steps: default (a namespace of each step's own on the bridge, with
    /// NAT), bridge (the same), none, or host (the host's own network, as asked)
    #[arg(long, default_value = "default")]
    network: String,
    /// Extra privileges for the build: network.host (`RUN --network=host` in the Dockerfile)
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// Run at most N steps at once (RUN processes, COPY copies); steps waiting for
    /// another stage never count. Default 0: no limit, as BuildKit
    #[arg(long, default_value_t = 0, value_name = "N")]
    jobs: usize,
    /// Progress output: auto, plain, tty or quiet
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Print only the image ID
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to this file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Export the build cache: type=registry,ref=REF or type=local,dest=DIR, with
    /// mode=min|max, image-manifest=true|false, compression=gzip|zstd, ignore-error=true
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Look steps up in a build cache: type=registry,ref=REF, type=local,src=DIR, or REF
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Say, for each step that ran, why the caches did not have it: the input that
    /// changed (a file, a build arg, the base image, the instruction) against the closest
    /// record they held
    #[arg(long)]
    explain: bool,
    /// Write the build's result to this file as JSON (buildx's keys, and lb's cache
    /// figures under lb.cache)
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// A secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR]
    #[arg(long)]
    secret: Vec<String>,
    /// Also write the result: type=docker|oci,dest=FILE[,name=REF] (an image archive),
    /// type=tar,dest=FILE (its file system) or type=local,dest=DIR
    #[arg(short, long)]
    output: Vec<String>,
    /// The build context: a directory, a tar archive (plain, gzip or zstd), or `-` for a
    /// tar or a bare Dockerfile on standard input
    context: PathBuf,
}

/// BuildKit's plain progress on standard error.
struct Plain {
    start: Instant,
    quiet: bool,
    out: Mutex<std::io::Stderr>,
}

impl Progress for Plain {
    fn event(&self, e: Event<'_>) {
        if self.quiet {
            return;
        }
        let mut out = self.out.lock().expect("stderr");
        let _ = match e {
            Event::Start { vertex, name } => writeln!(out, "#{vertex} {name}"),
            Event::Cached { vertex, from: None } => writeln!(out, "#{vertex} CACHED"),
            Event::Cached {
                vertex,
                from: Some(cache),
            } => writeln!(out, "#{vertex} CACHED ({cache})"),
            Event::Output { vertex, line } => writeln!(
                out,
                "#{vertex} {:.3} {line}",
                self.start.elapsed().as_secs_f64()
            ),
            Event::Done { vertex, seconds } => writeln!(out, "#{vertex} DONE {seconds:.1}s"),
            Event::Error { vertex, message } => {
                let first = message.lines().next().unwrap_or_default();
                writeln!(out, "#{vertex} ERROR: {first}")
            }
            Event::Canceled { vertex } => writeln!(out, "#{vertex} CANCELED"),
        };
    }
}

/// BuildKit's tty view on a terminal: a header with the elapsed time and the steps done,
/// one line per step (its time running while it runs, its last output line under it),
/// each left in place with its time when it ends.
struct Live {
    bars: indicatif::MultiProgress,
    header: indicatif::ProgressBar,
    steps: Mutex<LiveSteps>,
}

#[derive(Default)]
struct LiveSteps {
    running: std::collections::HashMap<usize, LiveStep>,
    started: usize,
    done: usize,
}

/// A running step: its line, and one under it with its last output line.
struct LiveStep {
    bar: indicatif::ProgressBar,
    output: Option<indicatif::ProgressBar>,
    name: String,
}

impl LiveStep {
    /// Leaves the step's line with `label` and its time on the right; the output goes.
    fn end(self, label: String, secs: Option<f64>) {
        if let Some(o) = self.output {
            o.finish_and_clear();
        }
        self.bar.set_style(live_style(" => {wide_msg} {prefix}"));
        self.bar
            .set_prefix(secs.map(|s| format!("{s:.1}s")).unwrap_or_default());
        self.bar.finish_with_message(label);
    }
}

fn live_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .expect("progress template")
        .with_key(
            "secs",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}s", s.elapsed().as_secs_f64());
            },
        )
}

impl Live {
    fn new() -> Live {
        let bars =
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
        let header = bars.add(indicatif::ProgressBar::new_spinner());
        header.set_style(live_style("[+] Building {secs} {msg}"));
        header.enable_steady_tick(std::time::Duration::from_millis(100));
        Live {
            bars,
            header,
            steps: Mutex::new(LiveSteps::default()),
        }
    }

    /// A line of its own under the steps (what is done with the image).
    fn line(&self, text: &str) {
        let bar = self.bars.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(live_style(" {msg}"));
        bar.finish_with_message(text.to_string());
    }

    fn finish(&self, outcome: &str) {
        let mut steps = self.steps.lock().expect("steps");
        for (_, step) in steps.running.drain() {
            let label = format!("{} (canceled)", step.name);
            step.end(label, None);
        }
        self.header
            .finish_with_message(format!("({}/{}) {outcome}", steps.done, steps.started));
    }
}

impl Progress for Live {
    fn event(&self, e: Event<'_>) {
        let mut steps = self.steps.lock().expect("steps");
        match e {
            Event::Start { vertex, name } => {
                let bar = self.bars.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(live_style(" => {wide_msg} {secs}"));
                bar.set_message(name.to_string());
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                let step = LiveStep {
                    bar,
                    output: None,
                    name: name.to_string(),
                };
                steps.running.insert(vertex, step);
                steps.started += 1;
            }
            Event::Output { vertex, line } => {
                if let Some(step) = steps.running.get_mut(&vertex) {
                    let out = step.output.get_or_insert_with(|| {
                        let o = self
                            .bars
                            .insert_after(&step.bar, indicatif::ProgressBar::new_spinner());
                        o.set_style(live_style(" => # {wide_msg}"));
                        o
                    });
                    out.set_message(line.to_string());
                }
            }
            Event::Cached { vertex, from } => {
                if let Some(step) = steps.running.remove(&vertex) {
                    let label = match from {
                        Some(cache) => format!("CACHED ({cache}) {}", step.name),
                        None => format!("CACHED {}", step.name),
                    };
                    step.end(label, None);
                    steps.done += 1;
                }
            }
            Event::Done { vertex, seconds } => {
                if let Some(step) = steps.running.remove(&vertex) {
                    let label = step.name.clone();
                    step.end(label, Some(seconds));
                    steps.done += 1;
                }
            }
            Event::Error { vertex, .. } => {
                if let Some(step) = steps.running.remove(&vertex) {
                    let label = format!("ERROR {}", step.name);
                    step.end(label, None);
                }
            }
            Event::Canceled { vertex } => {
                if let Some(step) = steps.running.remove(&vertex) {
                    let label = format!("CANCELED {}", step.name);
                    step.end(label, None);
                }
            }
        }
        let (done, started) = (steps.done, steps.started);
        self.header.set_message(format!("({done}/{started})"));
    }
}

/// Where progress goes: `--progress` and whether standard error is a terminal decide.
enum View {
    Plain(Plain),
    Live(Live),
}

impl Progress for View {
    fn event(&self, e: Event<'_>) {
        match self {
            View::Plain(p) => p.event(e),
            View::Live(l) => l.event(e),
        }
    }
}

/// `--secret id=ID[,src=FILE|,env=VAR]`; with neither, the variable named ID.
fn secret(spec: &str) -> anyhow::Result<(String, lb_builder::SecretSource)> {
    let (mut id, mut src) = (None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => {
                src = Some(lb_builder::SecretSource::File(PathBuf::from(v)))
            }
            Some(("env", v)) => src = Some(lb_builder::SecretSource::Env(v.to_string())),
            Some(("type", "file" | "env")) => {}
            _ => bail!("--secret {spec:?}: unexpected {field:?} (want id=ID[,src=FILE|,env=VAR])"),
        }
    }
    let id = id.ok_or_else(|| anyhow::anyhow!("--secret {spec:?}: id= is required"))?;
    let src = src.unwrap_or_else(|| lb_builder::SecretSource::Env(id.clone()));
    if let lb_builder::SecretSource::File(f) = &src
        && !f.is_file()
    {
        bail!("--secret {spec:?}: {} is not a file", f.display());
    }
    Ok((id, src))
}

/// One `--output`: what to write and where.
enum Output {
    /// An image archive (`lb save`'s, which docker and OCI tools load) under these names.
    Archive {
        dest: PathBuf,
        names: Vec<Reference>,
    },
    /// The file system as a tar.
    Tar { dest: PathBuf },
    /// The file system written into a directory.
    Local { dest: PathBuf },
}

fn output(spec: &str, tags: &[Reference]) -> anyhow::Result<Output> {
    let (mut typ, mut dest, mut names) = (None, None, Vec::new());
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => typ = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            Some(("name", v)) => {
                for n in v.split(',') {
                    names
                        .push(Reference::parse(n).with_context(|| format!("--output name {n:?}"))?);
                }
            }
            _ => bail!("--output {spec:?}: unexpected {field:?}"),
        }
    }
    let dest = dest.ok_or_else(|| anyhow::anyhow!("--output {spec:?}: dest= is required"))?;
    match typ.as_deref() {
        Some("docker" | "oci") => {
            if names.is_empty() {
                names = tags.to_vec();
            }
            if names.is_empty() {
                bail!("--output {spec:?}: an image archive needs a name (-t NAME or name=)");
            }
            Ok(Output::Archive { dest, names })
        }
        Some("tar") => Ok(Output::Tar { dest }),
        Some("local") => Ok(Output::Local { dest }),
        other => bail!("--output {spec:?}: type {other:?}: want docker, oci, tar or local"),
    }
}

fn key_values(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {kv:?}: want KEY=VALUE"),
        })
        .collect()
}

pub fn build(store: &Store, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let ctx = lb_builder::BuildContext::prepare(&args.context, &mut std::io::stdin().lock())?;
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| ctx.dir.join("Dockerfile"));
    let source = match &ctx.dockerfile {
        Some(text) => text.clone(),
        // CONTEXT/Dockerfile is the context's: a link there is followed inside it (a
        // context cannot make lb read and print a host file as its Dockerfile); a file
        // given with -f is the user's own.
        None if args.file.is_none() => lb_rootpath::Root::open(&ctx.dir)
            .and_then(|r| r.read(std::path::Path::new("Dockerfile")))
            .with_context(|| format!("failed to read the Dockerfile {}", file.display()))?,
        None => std::fs::read(&file)
            .with_context(|| format!("failed to read the Dockerfile {}", file.display()))?,
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let df = match lb_parser::parse(&source) {
        Ok(df) => df,
        Err(e) => {
            eprint!("{}", e.render(&name, &source));
            return Ok(ExitCode::from(1));
        }
    };
    let tags = args
        .tag
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("invalid tag {t:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outputs = args
        .output
        .iter()
        .map(|o| output(o, &tags))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            // Without a value: lb's own environment's, when it has one.
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => continue,
            },
        };
    }
    if let Some(p) = &args.platform {
        let here = lb_builder::plan::platform_args()
            .into_iter()
            .find(|(k, _)| k == "BUILDPLATFORM")
            .map(|(_, v)| v)
            .unwrap_or_default();
        if p.split(',').any(|p| p != here) {
            bail!("--platform {p}: lb builds for this machine's platform only ({here})");
        }
    }
    let (network_none, bridge) = match args.network.as_str() {
        "default" | "bridge" => (false, true),
        "host" => (false, false),
        "none" => (true, false),
        other => bail!("--network {other}: want default, bridge, host or none"),
    };
    let mut allow_host_network = args.network == "host";
    for a in &args.allow {
        match a.as_str() {
            "network.host" => allow_host_network = true,
            "security.insecure" => {
                bail!("--allow security.insecure: lb does not run insecure steps")
            }
            other => bail!("--allow {other}: want network.host"),
        }
    }
    if !matches!(args.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        bail!(
            "--progress {}: want auto, plain, tty or quiet",
            args.progress
        );
    }
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v}: want seconds"))?,
        ),
        _ => None,
    };
    let opts = BuildOptions {
        context: ctx.dir.clone(),
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        no_cache_stages: args.no_cache_filter.clone(),
        network_none,
        allow_host_network,
        labels: key_values(&args.label, "--label")?,
        source_date_epoch,
        secrets: args
            .secret
            .iter()
            .map(|s| secret(s))
            .collect::<anyhow::Result<_>>()?,
        pull: args.pull,
        // 0 is no limit: `Schedule` reads it so.
        jobs: Some(args.jobs),
        explain: args.explain,
    };
    let quiet = args.quiet || args.progress == "quiet";
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if args.progress == "tty" && !terminal {
        eprintln!("WARNING: --progress tty: standard error is not a terminal; plain progress");
    }
    let progress = if !quiet && terminal && matches!(args.progress.as_str(), "auto" | "tty") {
        View::Live(Live::new())
    } else {
        View::Plain(Plain {
            start: Instant::now(),
            quiet,
            out: Mutex::new(std::io::stderr()),
        })
    };
    let (cache_to, cache_from) = crate::build_cache::parse(&args.cache_to, &args.cache_from)?;
    let caches = crate::build_cache::Caches::open(store, &cache_from);
    let registry = crate::registry_cmds::RegistrySource { store };
    let network = crate::build_bridge::BuildBridge::new(store);
    let network = bridge.then_some(&network as &dyn lb_builder::RunNetwork);
    // Held from the build's first blob until its names are set: a prune meanwhile would
    // take the new image's blobs for garbage (the builder holds its own guard only while
    // it builds; the names are made here).
    let _writing = store.writing()?;
    let urls = crate::registry_cmds::UrlFetcher::default();
    let seams = lb_builder::Seams {
        images: Some(&registry),
        network,
        urls: Some(&urls),
        cache: (!cache_from.is_empty()).then_some(&caches as &dyn lb_builder::CacheSource),
    };
    let built = lb_builder::build(store, &df, &opts, &progress, seams);
    caches.finish();
    if let (View::Live(live), Err(_)) = (&progress, &built) {
        live.finish("FAILED");
    }
    let (built, image) = match built {
        Ok(b) => {
            let image = crate::build_cache::with_inline(store, &cache_to, &b.steps, &b.image)?;
            (b, image)
        }
        Err(e) => {
            if let Some(line) = e.line {
                let text = String::from_utf8_lossy(&source);
                eprintln!("{name}:{line}\n--------------------");
                if let Some(l) = text.lines().nth(line - 1) {
                    eprintln!("{line:>4} | >>> {l}");
                }
                eprintln!("--------------------");
            }
            eprintln!("ERROR: {}", e.kind);
            return Ok(ExitCode::from(1));
        }
    };
    for (vertex, why) in &built.explanations {
        eprintln!("#{vertex} explain: {why}");
    }
    for t in &tags {
        store.name_image(t, &image)?;
    }
    let exported =
        crate::build_cache::export_all(store, &cache_to, (&built, &caches), &image, quiet)?;
    let mut pushed = None;
    if args.push {
        if tags.is_empty() {
            bail!("--push: name the image with -t");
        }
        for t in &tags {
            let digest =
                crate::registry_cmds::push_image(store, &image, t, &Default::default(), quiet)?;
            pushed.get_or_insert(digest);
        }
    }
    if let Some(path) = &args.metadata_file {
        let names: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let figures = (&built, &caches, &exported);
        crate::build_cache::write_metadata(path, &image, pushed, &names, figures)?;
    }
    for out in &outputs {
        match out {
            Output::Archive { dest, names } => {
                for n in names {
                    store.name_image(n, &image)?;
                }
                crate::image_cmds::write_archive(Some(dest), |w| Ok(store.save(names, w)?))?;
            }
            Output::Tar { dest } => crate::image_cmds::write_archive(Some(dest), |w| {
                Ok(lb_builder::write_flattened(store, &image, w)?)
            })?,
            Output::Local { dest } => {
                let tar = tempfile::NamedTempFile::new()?;
                lb_builder::write_flattened(store, &image, std::io::BufWriter::new(tar.as_file()))?;
                std::fs::create_dir_all(dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                lb_layerstore::apply_layer(
                    std::fs::File::open(tar.path())?,
                    dest,
                    lb_layerstore::ApplyOptions {
                        whiteouts: lb_layerstore::Whiteouts::Delete,
                        privileged: true,
                    },
                )
                .with_context(|| format!("writing {}", dest.display()))?;
            }
        }
    }
    let id = image.config_digest.to_string();
    if let Some(f) = &args.iidfile {
        std::fs::write(f, &id).with_context(|| format!("cannot write {}", f.display()))?;
    }
    match &progress {
        _ if quiet => println!("{id}"),
        View::Live(live) => {
            live.line(&format!("=> writing image {id}"));
            for t in &tags {
                live.line(&format!("=> naming to {t}"));
            }
            live.finish("FINISHED");
        }
        View::Plain(_) => {
            eprintln!("#0 writing image {id} done");
            for t in &tags {
                eprintln!("#0 naming to {t} done");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
