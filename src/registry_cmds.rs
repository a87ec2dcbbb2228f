//! `lb pull`, `lb push`, `lb login`, `lb logout`: the command line over `lb-registry`,
//! with docker's flags and messages.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use lb_layerstore::{LayerCompression, Reference, Store};

/// Flags every registry command shares.
#[derive(Args, Debug, Clone)]
pub struct RegistryFlags {
    /// Verify the registry's TLS certificate (false: also plain http when https fails)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// A directory of REGISTRY/*.crt CAs, on top of /etc/docker/certs.d and /etc/containers/certs.d
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<std::path::PathBuf>,
}

impl RegistryFlags {
    fn options(&self) -> lb_registry::Options {
        let mut o = lb_registry::Options {
            tls_verify: self.tls_verify,
            ..Default::default()
        };
        if let Some(d) = &self.cert_dir {
            o.cert_dirs.insert(0, d.clone());
        }
        o
    }
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image to pull (NAME[:TAG|@DIGEST])
    image: String,
    /// Platform of the image in a multi-platform index (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image's name
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image to push (NAME[:TAG]); its name says the registry
    image: String,
    /// Push under another name (docker's `tag` then `push` in one step)
    destination: Option<String>,
    /// Compression of layers lb keeps uncompressed: gzip or zstd
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Print only the pushed digest
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry (default Docker Hub)
    server: Option<String>,
    /// User name
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from standard input
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry (default Docker Hub)
    server: Option<String>,
}

/// Prints docker's progress lines unless quiet.
struct Lines {
    quiet: bool,
}

impl lb_registry::PullProgress for Lines {
    fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}

impl lb_registry::PushProgress for Lines {
    fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}

/// Pull progress on a terminal: a bar per layer as its bytes arrive, docker's lines
/// above them.
struct Bars {
    bars: indicatif::MultiProgress,
    layers: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            layers: Default::default(),
        }
    }
}

impl lb_registry::PullProgress for Bars {
    fn line(&self, text: &str) {
        let mut layers = self.layers.lock().expect("layers");
        let done = text
            .split_once(": ")
            .and_then(|(id, what)| Some((layers.remove(id)?, what)));
        match done {
            Some((bar, what)) => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{prefix}: {msg}").expect("style"),
                );
                bar.finish_with_message(what.to_string());
            }
            None => {
                let _ = self.bars.println(text);
            }
        }
    }

    fn bytes(&self, id: &str, done: u64, total: u64) {
        let mut layers = self.layers.lock().expect("layers");
        let bar = layers.entry(id.to_string()).or_insert_with(|| {
            let bar = self.bars.add(indicatif::ProgressBar::new(total));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix}: Downloading [{bar:30}] {bytes}/{total_bytes}",
                )
                .expect("style")
                .progress_chars("=> "),
            );
            bar.set_prefix(id.to_string());
            bar
        });
        bar.set_position(done);
    }
}

/// Plain lines, or bars on a terminal.
fn pull_progress(quiet: bool) -> Box<dyn lb_registry::PullProgress> {
    if !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        Box::new(Bars::new())
    } else {
        Box::new(Lines { quiet })
    }
}

fn reference(s: &str) -> anyhow::Result<Reference> {
    Reference::parse(s).with_context(|| format!("invalid reference format: {s:?}"))
}

/// Where a build's missing (or `--pull`ed) images come from: their registries.
pub struct RegistrySource<'a> {
    pub store: &'a Store,
}

/// ADD's URLs, downloaded by the registry client's HTTP client (its network rules), made
/// at the first URL: making one reads the system's roots, ~10 ms a build without a URL
/// would spend for nothing.
#[derive(Default)]
pub struct UrlFetcher(std::sync::OnceLock<lb_registry::Http>);

impl lb_builder::UrlSource for UrlFetcher {
    fn download(
        &self,
        url: &str,
        to: &std::path::Path,
    ) -> Result<Option<String>, lb_builder::DownloadError> {
        let http = match self.0.get() {
            Some(h) => h,
            None => {
                let made = lb_registry::Http::new(&Default::default())?;
                self.0.get_or_init(|| made)
            }
        };
        Ok(http.download(url, to)?)
    }
}

impl lb_builder::ImageSource for RegistrySource<'_> {
    fn fetch(&self, name: &Reference) -> Result<lb_layerstore::Image, lb_builder::SeamError> {
        pull_with(
            self.store,
            name,
            None,
            &lb_registry::Options::default(),
            true,
        )
        .map_err(Into::into)
    }
}

fn pull_with(
    store: &Store,
    name: &Reference,
    platform: Option<String>,
    opts: &lb_registry::Options,
    quiet: bool,
) -> anyhow::Result<lb_layerstore::Image> {
    let progress = pull_progress(quiet);
    if !quiet {
        let tag = name.tag.as_deref().unwrap_or("");
        if !tag.is_empty() {
            eprintln!("{tag}: Pulling from {}", name.path);
        }
    }
    let reg = lb_registry::Registry::new(&name.domain, opts)
        .with_context(|| format!("pulling {}", name.familiar()))?;
    let pull_opts = lb_registry::PullOptions {
        platform,
        ..Default::default()
    };
    let image = lb_registry::pull(store, &reg, name, &pull_opts, progress.as_ref())
        .with_context(|| format!("pulling {}", name.familiar()))?;
    Ok(image)
}

/// `run --pull`'s pull: as `lb pull NAME` with the default registry options, its
/// progress and status on stderr (stdout is the container's).
pub(crate) fn pull_image(
    store: &Store,
    name: &Reference,
    platform: Option<String>,
) -> anyhow::Result<()> {
    pull_and_report(
        store,
        name,
        platform,
        &lb_registry::Options::default(),
        false,
    )
}

pub fn pull(store: &Store, args: PullArgs) -> anyhow::Result<ExitCode> {
    let name = reference(&args.image)?;
    let opts = args.registry.options();
    pull_and_report(store, &name, args.platform.clone(), &opts, args.quiet)?;
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// A pull as docker's client shows it (progress, then whether the image changed, on
/// stderr unless `quiet`), logged as docker's `pull` event.
fn pull_and_report(
    store: &Store,
    name: &Reference,
    platform: Option<String>,
    opts: &lb_registry::Options,
    quiet: bool,
) -> anyhow::Result<()> {
    let before = store.resolve(name).ok();
    let image = pull_with(store, name, platform, opts, quiet)?;
    if !quiet {
        let same = before.is_some_and(|d| {
            Store::descriptor_digest(&d).is_ok_and(|d| d == image.manifest_digest)
        });
        if same {
            eprintln!("Status: Image is up to date for {}", name.familiar());
        } else {
            eprintln!("Status: Downloaded newer image for {}", name.familiar());
        }
    }
    pull_event(store, name);
    Ok(())
}

pub fn push(store: &Store, args: PushArgs) -> anyhow::Result<ExitCode> {
    let local = reference(&args.image)?;
    let image = store.image(&local).with_context(|| {
        format!(
            "An image does not exist locally with the tag: {}",
            local.familiar()
        )
    })?;
    let target = match &args.destination {
        Some(d) => reference(d)?,
        None => local.clone(),
    };
    let compression = match args.compression.as_str() {
        "gzip" => LayerCompression::Gzip(6),
        "zstd" => LayerCompression::Zstd(3),
        other => bail!("--compression {other}: want gzip or zstd"),
    };
    let opts = lb_registry::PushOptions {
        compression,
        ..Default::default()
    };
    let registry = args.registry.options();
    push_with(store, &image, &target, &opts, &registry, args.quiet)?;
    crate::image_cmds::image_event_of(store, "push", &target.familiar(), &target.familiar_name());
    Ok(ExitCode::SUCCESS)
}

/// docker's `pull` event: the reference as its id, the repository as its name.
fn pull_event(store: &Store, name: &Reference) {
    crate::image_cmds::image_event_of(store, "pull", &name.familiar(), &name.familiar_name());
}

/// Pushes `image` as `target` with the default registry options (`lb build --push`);
/// the pushed manifest's digest.
pub fn push_image(
    store: &Store,
    image: &lb_layerstore::Image,
    target: &Reference,
    opts: &lb_registry::PushOptions,
    quiet: bool,
) -> anyhow::Result<lb_layerstore::Digest> {
    push_with(store, image, target, opts, &Default::default(), quiet)
}

fn push_with(
    store: &Store,
    image: &lb_layerstore::Image,
    target: &Reference,
    opts: &lb_registry::PushOptions,
    registry: &lb_registry::Options,
    quiet: bool,
) -> anyhow::Result<lb_layerstore::Digest> {
    if !quiet {
        eprintln!("The push refers to repository [{}]", target.repository());
    }
    let reg = lb_registry::Registry::new(&target.domain, registry)
        .with_context(|| format!("pushing {}", target.familiar()))?;
    let (digest, size) = lb_registry::push(store, &reg, image, target, opts, &Lines { quiet })
        .with_context(|| format!("pushing {}", target.familiar()))?;
    if quiet {
        println!("{digest}");
    } else {
        let tag = target.tag.as_deref().unwrap_or("");
        println!("{tag}: digest: {digest} size: {size}");
    }
    Ok(digest)
}

/// The registry a `login`/`logout` argument names (Docker Hub by default; a URL's host).
fn server(arg: Option<&str>) -> String {
    let s = arg.unwrap_or("docker.io");
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

pub fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let domain = server(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => bail!("login {domain}: --username is required (lb does not prompt)"),
    };
    let password = if args.password_stdin {
        if args.password.is_some() {
            bail!("--password and --password-stdin are mutually exclusive");
        }
        let mut p = String::new();
        std::io::stdin().read_to_string(&mut p)?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match args.password {
            Some(p) => {
                eprintln!(
                    "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                );
                p
            }
            None => bail!("login {domain}: give --password-stdin (or --password)"),
        }
    };
    if password.is_empty() {
        bail!("login {domain}: the password is empty");
    }
    let creds = lb_registry::Credentials { username, password };
    let opts = args.registry.options();
    let reg = lb_registry::Registry::with_credentials(&domain, &opts, Some(creds.clone()))?;
    reg.check()
        .with_context(|| format!("login to {domain} failed"))?;
    opts.auth.store(&domain, &creds)?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let domain = server(args.server.as_deref());
    let files = lb_registry::AuthFiles::from_env();
    if files.remove(&domain)? {
        println!("Removing login credentials for {domain}");
    } else {
        println!("Not logged in to {domain}");
    }
    Ok(ExitCode::SUCCESS)
}
