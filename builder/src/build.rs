//! Running a plan: each stage from its base through its steps, stages of one level at the
//! same time. A step's cache key is computed before it runs (the parent's key, the step as
//! expanded, and the digests of what it reads); a key the store has a record for reuses
//! the image recorded, otherwise the step runs: RUN in lb's runtime on an overlay of the
//! stage's snapshots with a fresh upper directory, COPY straight into a fresh upper
//! directory. That upper directory is diffed into the step's layer and kept as its
//! snapshot. Metadata steps only change the config and the history.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use lb_layerstore::{DiffOptions, Digest, Image, Reference, Store};
use lb_parser::shell::Lexer;
use lb_parser::{Command, Dockerfile, Instruction};
use serde_json::{Value, json};

use crate::config::ImageConfig;
use crate::copy;
use crate::error::BuildError;
use crate::plan::{Base, Plan, Stage, plan};

/// What the caller asks of a build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context: a directory COPY and ADD read from.
    pub context: PathBuf,
    /// `--build-arg`s with their values.
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `--no-cache`: every step runs.
    pub no_cache: bool,
    /// `--no-cache-filter`: the steps of these stages (by name or index) run.
    pub no_cache_stages: Vec<String>,
    /// `--network none`: RUN steps get a network namespace of their own with only `lo`;
    /// otherwise they share the host's network, as `docker build --network host`.
    pub network_none: bool,
    /// The `network.host` entitlement (`--allow network.host`, or `--network host`): a
    /// Dockerfile's `RUN --network=host` is refused without it.
    pub allow_host_network: bool,
    /// `--label`s added to the final image's config.
    pub labels: Vec<(String, String)>,
    /// `SOURCE_DATE_EPOCH`: image and history times, and no layer mtime later than it.
    pub source_date_epoch: Option<i64>,
    /// `--secret`s by id, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, crate::mounts::SecretSource>,
    /// `--pull`: images named in FROM and `--from` are fetched again even when stored.
    pub pull: bool,
}

/// A network RUN steps join instead of the host's (`--network bridge`), wired in by the
/// caller: the builder knows nothing of bridges.
pub trait RunNetwork: Sync {
    /// Sets up a network namespace for the step container `id`; the file its spec joins.
    fn attach(&self, id: &str) -> Result<PathBuf, String>;
    /// Undoes `attach`, whether the step succeeded or not.
    fn detach(&self, id: &str);
}

/// Where images the store lacks come from: the registry, wired in by the caller (the
/// builder knows nothing of registries).
pub trait ImageSource: Sync {
    /// Fetches `name` into the store and names it there; the image.
    fn fetch(&self, name: &Reference) -> Result<Image, String>;
}

/// What a build reports as it goes, numbered by vertex as BuildKit's progress is.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A step starts: `[stage k/n] INSTRUCTION`.
    Start {
        vertex: usize,
        name: &'a str,
    },
    /// It was found in the cache.
    Cached {
        vertex: usize,
    },
    /// A line its process printed.
    Output {
        vertex: usize,
        line: &'a str,
    },
    Done {
        vertex: usize,
        seconds: f64,
    },
}

/// Where a build's events go; called from several threads at once.
pub trait Progress: Sync {
    fn event(&self, e: Event<'_>);
}

/// A stage as far as it got: its image config (docker's whole config JSON), its layers,
/// the image written for them (the snapshots RUN and COPY stand on), its ARGs and its
/// cache key.
#[derive(Debug, Clone)]
struct StageState {
    config: Value,
    run: ImageConfig,
    layers: Vec<oci_spec::image::Descriptor>,
    image: Option<Image>,
    args: crate::config::Args,
    key: Digest,
    /// When its newest layer was made (RFC 3339): the time its history entries and its
    /// image carry, so that a rebuild from the cache gives the very same image.
    created: String,
    /// The stage is in `--no-cache-filter`: its steps run whatever the cache holds.
    no_cache: bool,
}

impl StageState {
    fn diff_ids(&self) -> Vec<Digest> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().and_then(|s| s.parse().ok()))
            .collect()
    }

    /// A string field of the run config (`User`, `WorkingDir`), empty when unset.
    fn config_str(&self, key: &str) -> String {
        self.run
            .config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// The working directory steps run and copy in: WORKDIR's, else `/`.
    fn workdir(&self) -> String {
        Some(self.config_str("WorkingDir"))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// The variables a step's words expand with: ARGs, then Env over them.
    fn scope(&self) -> BTreeMap<String, String> {
        let mut scope: BTreeMap<String, String> = self.args.iter().cloned().collect();
        scope.extend(self.run.env());
        scope
    }

    fn from_image(image: Image, config: Value, key: Digest) -> StageState {
        let mut run = ImageConfig::from_base(
            config["config"].as_object().cloned().unwrap_or_default(),
            config["author"].as_str().map(str::to_string),
        );
        // As BuildKit: an image without PATH gets the default one.
        if !run.env().iter().any(|(k, _)| k == "PATH") {
            run.set_env("PATH", lb_runtime::DEFAULT_PATH);
        }
        let created = config["created"].as_str().unwrap_or("").to_string();
        StageState {
            layers: image.manifest.layers().clone(),
            image: Some(image),
            config,
            run,
            args: Default::default(),
            key,
            created,
            no_cache: false,
        }
    }
}

/// What COPY and ADD flags shape the files.
#[derive(Clone, Copy)]
struct CopyFlags<'a> {
    chown: Option<&'a str>,
    chmod: Option<&'a str>,
    /// ADD: local archives are unpacked.
    unpack: bool,
    parents: bool,
    excludes: &'a [String],
    /// ADD `--checksum`: what a fetched URL must hash to.
    checksum: Option<&'a str>,
}

/// A RUN heredoc that is a script (`#!`): its name and body, run as `/dev/pipes/NAME`.
type Script = (String, String);

struct Builder<'a> {
    store: &'a Store,
    opts: &'a BuildOptions,
    progress: &'a dyn Progress,
    plan: Plan,
    vertex: AtomicUsize,
    /// Where steps' copies of secrets live, when the build was given any (a tmpfs,
    /// unmounted before `work` is removed: fields drop in order).
    secrets: Option<crate::mounts::SecretsTmpfs>,
    /// Scratch space for steps: upper dirs, mount points; on the store's file system so
    /// that an upper dir can be renamed into a snapshot.
    work: tempfile::TempDir,
    created: String,
    /// What of the context the build sees (`.dockerignore`).
    context: copy::Visible,
    /// Digests of the files builds read, remembered between builds by their stat.
    digests: crate::digests::FileDigests,
    source: Option<&'a dyn ImageSource>,
    network: Option<&'a dyn RunNetwork>,
}

/// Builds `df` and returns the target stage's image (not yet named: the caller tags it).
/// Images the store lacks (or all named ones, with `opts.pull`) come from `source`.
pub fn build(
    store: &Store,
    df: &Dockerfile,
    opts: &BuildOptions,
    progress: &dyn Progress,
    source: Option<&dyn ImageSource>,
    network: Option<&dyn RunNetwork>,
) -> Result<Image, BuildError> {
    let plan = plan(df, &opts.build_args, opts.target.as_deref())?;
    reap_killed_builds();
    // Unnamed blobs of the build are safe from a concurrent prune until the image is named.
    let _writing = store.writing().map_err(store_err)?;
    private_mounts()?;
    let work_parent = store.root().join("build");
    std::fs::create_dir_all(&work_parent)
        .map_err(|e| BuildError::new(format!("{}: {e}", work_parent.display())))?;
    let work = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&work_parent)
        .map_err(|e| BuildError::new(format!("{}: {e}", work_parent.display())))?;
    // RUN steps' dirs in a directory of their own whose children spread (see
    // `spread_subdirectories`): a RUN may write much, COPY and WORKDIR steps mostly little.
    let runs = work.path().join("run");
    std::fs::create_dir(&runs).map_err(|e| BuildError::new(format!("{}: {e}", runs.display())))?;
    lb_layerstore::spread_subdirectories(&runs);
    let created = lb_layerstore::rfc3339(
        opts.source_date_epoch
            .unwrap_or_else(lb_layerstore::creation_time),
    );
    let ignore = crate::ignore::Ignore::load(&opts.context).map_err(BuildError::new)?;
    let secrets = if opts.secrets.is_empty() {
        None
    } else {
        Some(
            crate::mounts::SecretsTmpfs::mount(&work.path().join("secrets"))
                .map_err(BuildError::new)?,
        )
    };
    let b = Builder {
        secrets,
        store,
        opts,
        progress,
        plan,
        vertex: AtomicUsize::new(0),
        work,
        created,
        context: copy::Visible::context(&opts.context, std::sync::Arc::new(ignore)),
        digests: crate::digests::FileDigests::load(work_parent.join("file-digests.json")),
        source,
        network,
    };
    let results: Mutex<Vec<Option<StageState>>> = Mutex::new(vec![None; b.plan.stages.len()]);
    for level in &b.plan.levels {
        let outcome: Vec<Result<(), BuildError>> = std::thread::scope(|s| {
            let handles: Vec<_> = level
                .iter()
                .map(|&i| {
                    let (b, results) = (&b, &results);
                    s.spawn(move || {
                        let state = b.build_stage(&b.plan.stages[i], results)?;
                        results.lock().expect("results")[i] = Some(state);
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(BuildError::new("a stage's thread panicked")))
                })
                .collect()
        });
        if let Some(Err(e)) = outcome.into_iter().find(Result::is_err) {
            b.digests.save();
            return Err(e);
        }
    }
    b.digests.save();
    let mut state = results.lock().expect("results")[b.plan.target]
        .take()
        .expect("the target stage was built");
    for (k, v) in &opts.labels {
        let labels = state.config["config"]
            .as_object_mut()
            .map(|c| c.entry("Labels").or_insert_with(|| json!({})));
        if let Some(Value::Object(l)) = labels {
            l.insert(k.clone(), json!(v));
        }
    }
    b.write(&state).map_err(store_err)
}

/// The cgroup names of RUN steps' containers: `build-<lb's pid>-<step>`.
const BUILD_PREFIX: &str = "build-";

/// Kills the RUN containers of builds whose lb process is gone (killed with SIGKILL: its
/// containers outlive it, as they are not its threads) and removes their cgroups.
pub fn reap_killed_builds() {
    let Ok(names) = lb_runtime::cgroups::Cgroup::names() else {
        return;
    };
    for name in names {
        let Some(pid) = name
            .strip_prefix(BUILD_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if lb_runtime::state::pid_start_time(pid).is_some() {
            continue; // that build is still running
        }
        if let Ok(Some(cg)) = lb_runtime::cgroups::Cgroup::open(&name) {
            let _ = cg.remove();
        }
    }
}

/// Writes `image`'s file system, flattened (whiteouts applied), to `out` as one tar.
pub fn write_flattened(
    store: &Store,
    image: &Image,
    out: impl std::io::Write,
) -> Result<(), BuildError> {
    let mut lowers = store.prepare_snapshots(image).map_err(store_err)?;
    lowers.reverse();
    write_merged(lowers, store.root(), out)
}

/// Writes the merged file system of `lowers` (top first: snapshots, a container's upper
/// dir) as one tar, whiteouts applied: the layers seen through a read-only overlay mounted
/// in a mount namespace of this process's own, in a scratch directory under `scratch_in`.
pub fn write_merged(
    mut lowers: Vec<PathBuf>,
    scratch_in: &Path,
    out: impl std::io::Write,
) -> Result<(), BuildError> {
    private_mounts()?;
    let scratch = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(scratch_in)
        .map_err(|e| BuildError::new(format!("{}: {e}", scratch_in.display())))?;
    // A read-only overlay needs two lowers; an empty one also hides a lone layer's whiteouts.
    let empty = scratch.path().join("empty");
    let view = scratch.path().join("view");
    for d in [&empty, &view] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::new(format!("{}: {e}", d.display())))?;
    }
    lowers.push(empty);
    lb_runtime::rootfs::mount_overlay_readonly(&lowers, &view)
        .map_err(|e| BuildError::new(e.message))?;
    let written = lb_layerstore::write_diff(
        &view,
        out,
        lb_layerstore::LayerCompression::None,
        DiffOptions::default(),
    );
    let _ = nix::mount::umount2(&view, nix::mount::MntFlags::MNT_DETACH);
    written.map(|_| ()).map_err(store_err)
}

fn store_err(e: lb_layerstore::Error) -> BuildError {
    BuildError::new(e.to_string())
}

/// The build mounts views of images (for COPY --from) in a mount namespace of its own:
/// none of them is seen outside, and all go away with the process.
fn private_mounts() -> Result<(), BuildError> {
    lb_runtime::rootfs::private_mount_namespace()
        .map_err(|e| BuildError::new(format!("building: {}", e.message)))
}

/// A RUN as its history entry shows it (BuildKit's `runCommandString`): the stage's build
/// args first, `|N K=V...` (a value from Env when Env sets the name), then the argv.
fn run_history(state: &StageState, args: &[String]) -> String {
    let env = state.run.env();
    let mut words: Vec<String> = state
        .args
        .iter()
        .map(|(k, v)| {
            let v = env
                .iter()
                .rev()
                .find(|(e, _)| e == k)
                .map_or(v, |(_, ev)| ev);
            format!("{k}={v}")
        })
        .collect();
    if !words.is_empty() {
        words.insert(0, format!("|{}", words.len()));
    }
    words.extend(args.iter().cloned());
    words.join(" ")
}

fn key_of(parts: &Value) -> Digest {
    Digest::of(&serde_json::to_vec(parts).expect("json"))
}

impl Builder<'_> {
    fn next_vertex(&self) -> usize {
        self.vertex.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The image of `state` as it stands, written to the store.
    fn write(&self, state: &StageState) -> Result<Image, lb_layerstore::Error> {
        let mut config = state.config.clone();
        config["config"] = Value::Object(state.run.config.clone());
        if let Some(a) = &state.run.author {
            config["author"] = json!(a);
        }
        config["created"] = json!(state.created);
        self.store.write_image(&config, &state.layers, &[])
    }

    fn base_state(
        &self,
        stage: &Stage,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<StageState, BuildError> {
        match &stage.base {
            Base::Scratch => {
                let (os, arch) = lb_layerstore::host_platform();
                let config = json!({
                    "architecture": arch,
                    "os": os,
                    // BuildKit's empty image: the default PATH and `/` as WorkingDir.
                    "config": {
                        "Env": [format!("PATH={}", lb_runtime::DEFAULT_PATH)],
                        "WorkingDir": "/",
                    },
                    "rootfs": { "type": "layers", "diff_ids": [] },
                    "history": [],
                });
                let run = ImageConfig::from_base(
                    config["config"].as_object().cloned().unwrap_or_default(),
                    None,
                );
                Ok(StageState {
                    config,
                    run,
                    layers: Vec::new(),
                    image: None,
                    args: Default::default(),
                    key: Digest::of(b"scratch"),
                    created: self.created.clone(),
                    no_cache: false,
                })
            }
            Base::Image(name) => {
                let image = self
                    .image_named(name)
                    .map_err(|m| BuildError::at(&stage.from, m))?;
                let config = self.raw_config(&image)?;
                let key = key_of(&json!({ "image": image.manifest_digest.to_string() }));
                Ok(StageState::from_image(image, config, key))
            }
            Base::Stage(i) => {
                // A stage built on another keeps its ARGs (BuildKit copies them), but did
                // not set CMD itself.
                let mut s = results.lock().expect("results")[*i]
                    .clone()
                    .expect("a stage's base is built before it");
                s.run.new_stage();
                Ok(s)
            }
        }
    }

    /// The image `name`: from the store, else (or always, with `--pull`) from the source.
    fn image_named(&self, name: &str) -> Result<Image, String> {
        let r = Reference::parse(name).map_err(|e| format!("invalid reference {name:?}: {e}"))?;
        if !self.opts.pull {
            if let Ok(image) = self.store.image(&r) {
                return Ok(image);
            }
        }
        match self.source {
            Some(source) => source.fetch(&r),
            None => Err(format!("{name}: image not found locally")),
        }
    }

    fn raw_config(&self, image: &Image) -> Result<Value, BuildError> {
        let bytes = self
            .store
            .content()
            .read_verified(&image.config_digest)
            .map_err(store_err)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| BuildError::new(format!("image config {}: {e}", image.config_digest)))
    }

    fn build_stage(
        &self,
        stage: &Stage,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<StageState, BuildError> {
        let total = stage.steps.len() + 1;
        let label = |k: usize, ins: &Instruction| {
            format!(
                "[{} {k}/{total}] {}",
                stage.display_name(),
                ins.original.trim()
            )
        };
        let v = self.next_vertex();
        let t = Instant::now();
        self.progress.event(Event::Start {
            vertex: v,
            name: &label(1, &stage.from),
        });
        let mut state = self.base_state(stage, results)?;
        state.no_cache = self.opts.no_cache_stages.iter().any(|f| {
            stage.name.as_deref() == Some(f.to_lowercase().as_str())
                || f.parse::<usize>() == Ok(stage.index)
        });
        self.progress.event(Event::Done {
            vertex: v,
            seconds: t.elapsed().as_secs_f64(),
        });
        state = self.onbuild(state, stage, results)?;
        for (k, ins) in stage.steps.iter().enumerate() {
            let name = label(k + 2, ins);
            state = self.step(state, ins, &name, results)?;
        }
        // Stages that build on it or copy from it read its files through an image: a
        // stage with no layer step (scratch and metadata only) has none yet.
        if state.image.is_none() {
            state.image = Some(self.write(&state).map_err(store_err)?);
        }
        Ok(state)
    }

    fn history(&self, state: &mut StageState, created_by: String, empty_layer: bool) {
        let mut entry = json!({ "created": state.created, "created_by": created_by });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        match state.config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => state.config["history"] = json!([entry]),
        }
    }

    fn step(
        &self,
        mut state: StageState,
        ins: &Instruction,
        name: &str,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<StageState, BuildError> {
        match &ins.command {
            Command::Arg(a) => {
                for decl in &a.args {
                    let value = match (self.opts.build_args.get(&decl.name), &decl.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(
                            state
                                .run
                                .expand(d, &state.args)
                                .map_err(|e| BuildError::at(ins, e.to_string()))?,
                        ),
                        (None, None) => self
                            .plan
                            .meta_args
                            .iter()
                            .chain(crate::plan::platform_args().iter())
                            .find(|(k, _)| *k == decl.name)
                            .map(|(_, v)| v.clone()),
                    };
                    state.args.set(&decl.name, value);
                }
                // The names declared with their values now: the key's part (the args before
                // are the parent key's), and the history's.
                let now: Vec<(&str, Option<&str>)> = a
                    .args
                    .iter()
                    .map(|d| (d.name.as_str(), state.args.get(&d.name)))
                    .collect();
                let declared: Vec<String> = now
                    .iter()
                    .filter_map(|(k, v)| Some(format!("{k}={}", (*v)?)))
                    .collect();
                let text = if declared.is_empty() {
                    ins.original.trim().to_string()
                } else {
                    format!("ARG {}", declared.join(" "))
                };
                let key = key_of(&json!({ "parent": state.key.to_string(), "arg": now }));
                self.history(&mut state, text, true);
                state.key = key;
                Ok(state)
            }
            Command::Run(run) => self.run_step(state, ins, run, name, results),
            Command::Copy(c) => {
                let from = match &c.from {
                    None => copy::Source::Context(self.opts.context.clone()),
                    Some(f) => self
                        .source_image(f, results)
                        .map_err(|m| BuildError::at(ins, m))?,
                };
                let flags = CopyFlags {
                    chown: c.chown.as_deref(),
                    chmod: c.chmod.as_deref(),
                    unpack: false,
                    parents: c.parents,
                    excludes: &c.excludes,
                    checksum: None,
                };
                self.copy_step(state, ins, name, from, &c.files, &flags)
            }
            Command::Add(a) => {
                if let Some(git) = a
                    .files
                    .sources
                    .iter()
                    .find(|s| s.starts_with("git@") || s.ends_with(".git"))
                {
                    return Err(BuildError::at(
                        ins,
                        format!("ADD {git}: git sources are not supported by lb yet"),
                    ));
                }
                let from = copy::Source::Context(self.opts.context.clone());
                let flags = CopyFlags {
                    chown: a.chown.as_deref(),
                    chmod: a.chmod.as_deref(),
                    unpack: a.unpack != Some(false),
                    parents: false,
                    excludes: &a.excludes,
                    checksum: a.checksum.as_deref(),
                };
                self.copy_step(state, ins, name, from, &a.files, &flags)
            }
            _ => {
                let applied = state
                    .run
                    .apply_change(ins, &state.args)
                    .map_err(|e| BuildError::at(ins, e.to_string()))?
                    .ok_or_else(|| {
                        BuildError::at(
                            ins,
                            format!("{} is not supported here", ins.original.trim()),
                        )
                    })?;
                // What the step changed, not the whole config: linear in the instructions.
                let (created_by, change) = (applied.created_by, applied.change);
                let key = key_of(&json!({
                    "parent": state.key.to_string(),
                    "instruction": created_by,
                    "change": change,
                }));
                if let Command::Workdir(_) = ins.command {
                    return self.workdir_step(state, ins, name, key, created_by);
                }
                self.history(&mut state, created_by, true);
                state.key = key;
                Ok(state)
            }
        }
    }

    /// WORKDIR makes its directory when the image lacks it, as BuildKit does: a layer
    /// with the directory (and parents), metadata from the image where it has them.
    fn workdir_step(
        &self,
        mut state: StageState,
        ins: &Instruction,
        name: &str,
        key: Digest,
        created_by: String,
    ) -> Result<StageState, BuildError> {
        let view = self.view(state.image.as_ref())?;
        // Where the image's links lead, inside it (a WORKDIR through a link makes the
        // directory at its target, as BuildKit does).
        let root = lb_rootpath::Root::open(&view)
            .map_err(|e| BuildError::new(format!("{}: {e}", view.display())))?;
        let dir = root
            .resolve(Path::new(&state.workdir()), true)
            .map_err(|e| BuildError::at(ins, format!("WORKDIR {}: {e}", state.workdir())))?;
        let exists = root.metadata(&dir).is_ok_and(|md| md.is_dir());
        if dir == Path::new("/") || exists {
            self.history(&mut state, created_by, true);
            state.key = key;
            return Ok(state);
        }
        let v = self.next_vertex();
        self.progress.event(Event::Start { vertex: v, name });
        let t = Instant::now();
        // Made as the stage's USER, as BuildKit does.
        let user = state
            .run
            .config
            .get("User")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(|u| copy::resolve_owner(u, &view))
            .transpose()
            .map_err(|m| BuildError::at(ins, m))?;
        self.files_step(state, v, t, key, created_by, |upper| {
            copy::make_dirs(upper, &view, &dir, user).map_err(|m| BuildError::at(ins, m))
        })
    }

    /// ONBUILD: the base image's triggers run first, as instructions of this stage, and
    /// the stage's image does not pass them on.
    fn onbuild(
        &self,
        mut state: StageState,
        stage: &Stage,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<StageState, BuildError> {
        let triggers: Vec<String> = state
            .run
            .config
            .get("OnBuild")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default();
        if triggers.is_empty() {
            return Ok(state);
        }
        state.run.config.remove("OnBuild");
        // The key names the config: one without the triggers is another.
        state.key = key_of(&json!({ "parent": state.key.to_string(), "onbuild": "consumed" }));
        for trigger in triggers {
            let bad = |m: String| BuildError::at(&stage.from, format!("ONBUILD {trigger}: {m}"));
            let tree =
                lb_parser::parse_syntax(trigger.as_bytes()).map_err(|e| bad(e.to_string()))?;
            for node in tree.nodes {
                let mut ins = lb_parser::type_node(node).map_err(|e| bad(e.to_string()))?;
                // Errors point at the FROM that brought the trigger in.
                ins.start_line = stage.from.start_line;
                ins.end_line = stage.from.end_line;
                let name = format!("[{} ONBUILD] {}", stage.display_name(), trigger.trim());
                state = self.step(state, &ins, &name, results)?;
            }
        }
        Ok(state)
    }

    /// A `--from` value: a stage built before, or an image in the store.
    fn source_image(
        &self,
        from: &str,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<copy::Source, String> {
        let stage = self
            .plan
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(from.to_lowercase().as_str()))
            .or_else(|| from.parse::<usize>().ok());
        if let Some(i) = stage {
            let s = results.lock().expect("results")[i]
                .clone()
                .ok_or_else(|| format!("stage {from} was not built"))?;
            let image = s.image.clone().expect("a built stage has its image");
            return Ok(copy::Source::Image(Box::new(image), s.key));
        }
        let image = self.image_named(from)?;
        let key = key_of(&json!({ "image": image.manifest_digest.to_string() }));
        Ok(copy::Source::Image(Box::new(image), key))
    }

    /// Looks `key` up; on a hit the state becomes the recorded image's.
    fn cached(&self, state: &StageState, key: Digest) -> Result<Option<StageState>, BuildError> {
        if self.opts.no_cache || state.no_cache {
            return Ok(None);
        }
        let Some(image) = self.store.cache_get(&key) else {
            return Ok(None);
        };
        let config = self.raw_config(&image)?;
        let mut hit = StageState::from_image(image, config, key);
        hit.args = state.args.clone();
        hit.no_cache = state.no_cache;
        Ok(Some(hit))
    }

    /// Commits `upper` as the step's layer on top of `state`, records it under the step's
    /// key and keeps `upper` as the layer's snapshot.
    fn commit(
        &self,
        mut state: StageState,
        upper: &Path,
        key: Digest,
        created_by: String,
    ) -> Result<StageState, BuildError> {
        let layer = self
            .store
            .store_layer(
                upper,
                DiffOptions {
                    source_date_epoch: self.opts.source_date_epoch,
                },
            )
            .map_err(store_err)?;
        match state.config["rootfs"]["diff_ids"].as_array_mut() {
            Some(d) => d.push(json!(layer.diff_id.to_string())),
            None => {
                state.config["rootfs"] =
                    json!({ "type": "layers", "diff_ids": [layer.diff_id.to_string()] })
            }
        }
        state.created = self.created.clone();
        self.history(&mut state, created_by, false);
        let mut config = state.config.clone();
        config["config"] = Value::Object(state.run.config.clone());
        config["created"] = json!(state.created);
        let image = self
            .store
            .write_image(&config, &state.layers, &[layer])
            .map_err(store_err)?;
        let chain = lb_layerstore::chain_ids(&state.diff_ids());
        if let Some(top) = chain.last() {
            self.store.adopt_snapshot(top, upper).map_err(store_err)?;
        }
        self.store.cache_put(&key, &image).map_err(store_err)?;
        state.layers = image.manifest.layers().clone();
        state.image = Some(image);
        state.key = key;
        Ok(state)
    }

    /// A fresh directory for one step.
    fn step_dir(&self) -> Result<PathBuf, BuildError> {
        self.step_dir_in(self.work.path())
    }

    /// A fresh directory for a RUN step, in a block group of its own.
    fn run_step_dir(&self) -> Result<PathBuf, BuildError> {
        self.step_dir_in(&self.work.path().join("run"))
    }

    fn step_dir_in(&self, parent: &Path) -> Result<PathBuf, BuildError> {
        let d = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(parent)
            .map_err(|e| BuildError::new(format!("{}: {e}", parent.display())))?;
        Ok(d.keep())
    }

    /// The snapshots of `image`, lowest first; an empty directory for no layers.
    fn lowers(&self, image: Option<&Image>, dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
        let mut lowers = match image {
            Some(i) => self.store.prepare_snapshots(i).map_err(store_err)?,
            None => Vec::new(),
        };
        if lowers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty)
                .map_err(|e| BuildError::new(format!("{}: {e}", empty.display())))?;
            lowers.push(empty);
        }
        Ok(lowers)
    }

    /// The file system of `image` as one read-only directory (mounted in the build's own
    /// mount namespace when it has more than one layer).
    pub(crate) fn view(&self, image: Option<&Image>) -> Result<PathBuf, BuildError> {
        let dir = self.step_dir()?;
        let mut lowers = self.lowers(image, &dir)?;
        if lowers.len() == 1 {
            return Ok(lowers.remove(0));
        }
        lowers.reverse();
        let at = dir.join("view");
        std::fs::create_dir_all(&at)
            .map_err(|e| BuildError::new(format!("{}: {e}", at.display())))?;
        lb_runtime::rootfs::mount_overlay_readonly(&lowers, &at)
            .map_err(|e| BuildError::new(e.message))?;
        Ok(at)
    }

    /// The shell a shell-form step runs under: the stage's SHELL, else `/bin/sh -c`.
    fn shell(&self, state: &StageState) -> Vec<String> {
        state
            .run
            .config
            .get("Shell")
            .and_then(|s| serde_json::from_value::<Vec<String>>(s.clone()).ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// A RUN's argv, as BuildKit makes it: the exec form as written, the shell form under
    /// the stage's SHELL; a command that is one heredoc runs its body (as a script file of
    /// its own when it starts with `#!`), other heredocs go to the shell with the command.
    /// Returns the argv and the script to provide as `/dev/pipes/NAME`, if any.
    fn run_args(
        &self,
        state: &StageState,
        run: &lb_parser::Run,
    ) -> Result<(Vec<String>, Option<Script>), String> {
        if !run.command.shell_form {
            return Ok((run.command.args.clone(), None));
        }
        let cmd = run.command.args.join(" ");
        let mut args = self.shell(state);
        if run.heredocs.is_empty() {
            args.push(cmd);
            return Ok((args, None));
        }
        if lb_parser::parse_heredoc(cmd.trim())?.is_some() {
            let doc = &run.heredocs[0];
            let body = doc.body();
            if body.starts_with("#!") {
                let path = format!("/dev/pipes/{}", doc.name);
                return Ok((vec![path], Some((doc.name.clone(), body))));
            }
            args.push(body);
            return Ok((args, None));
        }
        let mut full = cmd;
        for doc in &run.heredocs {
            full.push('\n');
            full.push_str(&doc.body());
            full.push_str(&doc.name);
        }
        args.push(full);
        Ok((args, None))
    }

    /// The environment a RUN sees: build args, the image's Env over them, a PATH.
    fn run_env(state: &StageState) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = state.args.iter().cloned().collect();
        for (k, v) in state.run.env() {
            env.retain(|(e, _)| *e != k);
            env.push((k, v));
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), lb_runtime::DEFAULT_PATH.into()));
        }
        env
    }

    fn run_step(
        &self,
        state: StageState,
        ins: &Instruction,
        run: &lb_parser::Run,
        name: &str,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<StageState, BuildError> {
        let (args, script) = self
            .run_args(&state, run)
            .map_err(|m| BuildError::at(ins, m))?;
        let mut env = Self::run_env(&state);
        let user = state.config_str("User");
        let cwd = state.workdir();
        let network_none = match run.network {
            Some(lb_parser::NetworkMode::None) => true,
            Some(lb_parser::NetworkMode::Host) if !self.opts.allow_host_network => {
                return Err(BuildError::at(
                    ins,
                    "RUN --network=host: network.host is not allowed (lb build --allow network.host)",
                ));
            }
            Some(lb_parser::NetworkMode::Host) => false,
            _ => self.opts.network_none,
        };
        // The caller's network (the bridge: a namespace of the step's own) unless the step
        // asks for none or host.
        let asks_host = run.network == Some(lb_parser::NetworkMode::Host);
        let bridged = if !asks_host && !network_none {
            self.network
        } else {
            None
        };
        // A step on the host's network says so, even when the whole build asked for it.
        let shown;
        let name = if run.network.is_none() && !network_none && bridged.is_none() {
            shown = name.replacen("RUN ", "RUN --network=host ", 1);
            &shown
        } else {
            name
        };
        let dir = self.run_step_dir()?;
        // The image's file system, to tell the mount points mounts create: only with mounts.
        let lower_view = if run.mounts.is_empty() {
            dir.clone()
        } else {
            self.view(state.image.as_ref())?
        };
        let prepared = self.run_mounts(&state, ins, run, &dir, &cwd, &lower_view, results)?;
        let key = key_of(&json!({
            "parent": state.key.to_string(),
            "run": args, "script": script, "env": env, "user": user, "cwd": cwd,
            "network_none": network_none, "mounts": prepared.key,
        }));
        let created_by = format!("RUN {} # buildkit", run_history(&state, &args));
        let v = self.next_vertex();
        self.progress.event(Event::Start { vertex: v, name });
        let t = Instant::now();
        if let Some(hit) = self.cached(&state, key)? {
            self.progress.event(Event::Cached { vertex: v });
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(hit);
        }
        let mut lowers = self.lowers(state.image.as_ref(), &dir)?;
        lowers.reverse();
        let upper = dir.join("upper");
        for d in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(|e| BuildError::new(format!("{}: {e}", dir.display())))?;
        }
        env.extend(prepared.env.iter().cloned());
        let mut spec =
            lb_runtime::defaults::docker_spec(args.clone(), network_none && bridged.is_none());
        if let Some(p) = spec.process_mut() {
            p.set_env(Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()));
            p.set_cwd(PathBuf::from(&cwd));
        }
        spec.set_hostname(Some("buildkitsandbox".into()));
        if let Some(root) = spec.root_mut() {
            root.set_readonly(Some(false));
        }
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.extend(prepared.mounts.iter().cloned());
        // The host's resolver and a hosts file, as BuildKit binds them into every RUN (the
        // image's own are hidden for the step; mount points made for them are removed).
        let etc = lb_runtime::defaults::write_etc_files(
            &dir.join("files"),
            "buildkitsandbox",
            !network_none && bridged.is_none(),
        )
        .and_then(|etc| {
            // BuildKit's hosts file, whatever the network.
            let hosts =
                "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
            std::fs::write(etc.join("hosts"), hosts).map(|()| etc)
        })
        .map_err(|e| BuildError::new(format!("{}: {e}", dir.display())))?;
        let mut stubs = prepared.stubs.clone();
        for f in ["hosts", "resolv.conf"] {
            mounts.push(lb_runtime::defaults::etc_bind(
                &format!("/etc/{f}"),
                &etc.join(f),
            ));
            stubs.push(PathBuf::from(format!("/etc/{f}")));
        }
        if let Some((file, body)) = &script {
            let host = dir.join("script");
            let write = || -> std::io::Result<()> {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&host, body)?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))
            };
            write().map_err(|e| BuildError::new(format!("{}: {e}", host.display())))?;
            mounts.push(
                oci_spec::runtime::MountBuilder::default()
                    .destination(format!("/dev/pipes/{file}"))
                    .typ("bind")
                    .source(&host)
                    .options(vec!["rbind".to_string(), "ro".to_string()])
                    .build()
                    .expect("script mount"),
            );
        }
        spec.set_mounts(Some(mounts));
        // Named after this process, so that a build killed with its containers still
        // running can be told and reaped (`reap_killed_builds`).
        let id = format!(
            "{BUILD_PREFIX}{}-{}",
            std::process::id(),
            &Digest::of(format!("{key} {}", dir.display()).as_bytes()).hex()[..32]
        );
        let layers = lb_runtime::RootfsLayers {
            lowers,
            upper: upper.clone(),
            work: dir.join("work"),
            // Not synced at unmount: the step's layer blob is written durably, and the store
            // marks the snapshot this upper dir becomes as unsynced until it is.
            volatile: true,
        };
        let rootfs = dir.join("rootfs");
        let user = (!user.is_empty()).then_some(user);
        if let Some(net) = bridged {
            let ns = net.attach(&id).map_err(|m| BuildError::at(ins, m))?;
            if let Some(linux) = spec.linux_mut() {
                let mut namespaces = linux.namespaces().clone().unwrap_or_default();
                namespaces.push(
                    oci_spec::runtime::LinuxNamespaceBuilder::default()
                        .typ(oci_spec::runtime::LinuxNamespaceType::Network)
                        .path(ns)
                        .build()
                        .expect("namespace"),
                );
                linux.set_namespaces(Some(namespaces));
            }
        }
        let ran = self.run_process(ins, v, &args, id.clone(), spec, layers, rootfs, user);
        if let Some(net) = bridged {
            net.detach(&id);
        }
        ran?;
        crate::mounts::remove_stubs(&upper, &lower_view, &stubs);
        drop(prepared);
        self.finish_layer(state, &dir, key, created_by, v, t)
    }

    /// RUN's mounts, their words expanded with the stage's variables.
    #[allow(clippy::too_many_arguments)]
    fn run_mounts(
        &self,
        state: &StageState,
        ins: &Instruction,
        run: &lb_parser::Run,
        dir: &Path,
        cwd: &str,
        lower_view: &Path,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<crate::mounts::Prepared, BuildError> {
        let lex = Lexer::new('\\');
        let scope = state.scope();
        let expand = |w: &str| lex.process_word(w, &scope).map_err(|e| e.to_string());
        let mut mounts = Vec::new();
        for m in &run.mounts {
            mounts.push(
                lb_parser::parse_mount(&m.spec, &expand).map_err(|e| BuildError::at(ins, e))?,
            );
        }
        let source_of = |from: Option<&str>| -> Result<crate::mounts::MountSource, String> {
            match from {
                None => Ok(crate::mounts::MountSource::Context(
                    self.opts.context.clone(),
                    self.context.clone(),
                )),
                Some(f) => match self.source_image(f, results)? {
                    copy::Source::Image(image, key) => {
                        let view = self.view(Some(&image)).map_err(|e| e.message)?;
                        Ok(crate::mounts::MountSource::Image(view, key.to_string()))
                    }
                    copy::Source::Context(c) => {
                        Ok(crate::mounts::MountSource::Context(c, self.context.clone()))
                    }
                },
            }
        };
        let menv = crate::mounts::MountEnv {
            store_root: self.store.root(),
            step_dir: dir,
            workdir: cwd,
            lower_view,
            secrets: &self.opts.secrets,
            secrets_dir: self.secrets.as_ref().map(|s| s.path()),
            digests: &self.digests,
        };
        crate::mounts::prepare(&mounts, &menv, &source_of).map_err(|m| BuildError::at(ins, m))
    }

    /// Runs one RUN process to its end, its output streamed as events; a non-zero status
    /// is the step's error, with the last lines of output.
    #[allow(clippy::too_many_arguments)]
    fn run_process(
        &self,
        ins: &Instruction,
        v: usize,
        args: &[String],
        id: String,
        spec: oci_spec::runtime::Spec,
        layers: lb_runtime::RootfsLayers,
        rootfs: PathBuf,
        user: Option<String>,
    ) -> Result<(), BuildError> {
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| BuildError::new(format!("pipe: {e}")))?;
        let err_w = out_w
            .try_clone()
            .map_err(|e| BuildError::new(format!("pipe: {e}")))?;
        let devnull: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|e| BuildError::new(format!("/dev/null: {e}")))?
            .into();
        let launch = lb_runtime::Launch {
            id,
            spec,
            layers,
            rootfs,
            user,
            seccomp: true,
            init: false,
            stdio: lb_runtime::Stdio::Fds {
                stdin: devnull,
                stdout: out_w,
                stderr: err_w,
            },
        };
        let started = lb_runtime::start(&launch);
        // The container holds its ends of the pipe now: ours would keep it open.
        drop(launch);
        let tail = Mutex::new(std::collections::VecDeque::<String>::new());
        let code = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut r = BufReader::new(std::fs::File::from(out_r));
                let mut line = Vec::new();
                while r
                    .read_until(b'\n', &mut line)
                    .map(|n| n > 0)
                    .unwrap_or(false)
                {
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches('\n')
                        .to_string();
                    self.progress.event(Event::Output {
                        vertex: v,
                        line: &text,
                    });
                    let mut t = tail.lock().expect("tail");
                    if t.len() == 10 {
                        t.pop_front();
                    }
                    t.push_back(text);
                    line.clear();
                }
            });
            let code = started.and_then(|c| c.wait());
            let _ = reader.join();
            code
        });
        let code = code.map_err(|e| BuildError::at(ins, e.message))?;
        if code != 0 {
            let tail: Vec<String> = tail.into_inner().expect("tail").into();
            let output = if tail.is_empty() {
                String::new()
            } else {
                format!("\nlast output:\n  {}", tail.join("\n  "))
            };
            return Err(BuildError::at(
                ins,
                format!(
                    "process \"{}\" did not complete successfully: exit code: {code}{output}",
                    args.join(" ")
                ),
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        state: StageState,
        ins: &Instruction,
        name: &str,
        from: copy::Source,
        files: &lb_parser::Sources,
        flags: &CopyFlags,
    ) -> Result<StageState, BuildError> {
        let CopyFlags {
            chown,
            chmod,
            unpack,
            parents,
            excludes,
            checksum,
        } = *flags;
        let v = self.next_vertex();
        self.progress.event(Event::Start { vertex: v, name });
        let t = Instant::now();
        let lex = Lexer::new('\\');
        let scope = state.scope();
        let word = |w: &str| {
            lex.process_word(w, &scope)
                .map_err(|e| BuildError::at(ins, e.to_string()))
        };
        let mut sources = files
            .sources
            .iter()
            .map(|s| word(s))
            .collect::<Result<Vec<_>, _>>()?;
        let dest = word(&files.dest)?;
        let chown = chown.map(word).transpose()?;
        let workdir = state.workdir();
        let (root, from_key) = match &from {
            copy::Source::Context(dir) => (dir.clone(), json!("context")),
            copy::Source::Image(image, key) => (self.view(Some(image))?, json!(key.to_string())),
        };
        let target = self.view(state.image.as_ref())?;
        // Heredoc sources become files of their own, named by their delimiters.
        let inline_dir = self.step_dir()?;
        let mut inline = Vec::new();
        for (n, f) in files.inline.iter().enumerate() {
            let content = if f.expand {
                word(&f.content)?
            } else {
                f.content.clone()
            };
            // Named after the delimiter's last component (a delimiter is the Dockerfile's
            // to choose: `../` in it must not write outside the step's scratch dir).
            let file_name = copy::lexical(&f.name)
                .0
                .last()
                .map_or_else(|| "heredoc".to_string(), |n| n.to_string());
            let path = inline_dir.join(format!("heredoc-{n}")).join(file_name);
            let write = || -> std::io::Result<()> {
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(path.parent().expect("heredoc dir"))?;
                std::fs::write(&path, &content)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            };
            write().map_err(|e| BuildError::new(format!("{}: {e}", path.display())))?;
            inline.push(path);
        }
        // ADD's URLs are fetched (every build: their content is the key) into files too.
        let urls: Vec<String> = sources
            .iter()
            .filter(|s| crate::fetch::is_url(s))
            .cloned()
            .collect();
        if !urls.is_empty() && checksum.is_some() && urls.len() > 1 {
            return Err(BuildError::at(ins, "--checksum takes a single URL source"));
        }
        sources.retain(|s| !crate::fetch::is_url(s));
        for url in &urls {
            inline.push(
                crate::fetch::fetch(url, &inline_dir, checksum)
                    .map_err(|m| BuildError::at(ins, m))?,
            );
        }
        let patterns = excludes
            .iter()
            .map(|e| word(e))
            .collect::<Result<Vec<_>, _>>()?;
        let exclude_patterns = if patterns.is_empty() {
            None
        } else {
            let ignore = crate::ignore::Ignore::parse(&patterns.join("\n"))
                .map_err(|m| BuildError::at(ins, format!("--exclude: {m}")))?;
            Some(std::sync::Arc::new(ignore))
        };
        let spec = copy::CopySpec {
            inline: &inline,
            sources: &sources,
            dest: &dest,
            workdir: &workdir,
            chown: chown.as_deref(),
            chmod,
            unpack,
            parents,
            excludes: exclude_patterns,
        };
        let from_image = matches!(from, copy::Source::Image(..));
        let visible = if from_image {
            copy::Visible::default()
        } else {
            self.context.clone()
        };
        let mut op = copy::CopyOp::resolve(&root, &visible, from_image, &target, &spec)
            .map_err(|m| BuildError::at(ins, m))?;
        if let copy::Source::Image(image, _) = &from {
            let chain = image
                .chain_id()
                .map_err(store_err)?
                .map_or_else(|| "empty".to_string(), |c| c.to_string());
            op = op.with_content_id(format!("{chain} exclude {patterns:?}"));
        }
        let key = key_of(&json!({
            "parent": state.key.to_string(),
            "copy": op.digest(&self.digests).map_err(|m| BuildError::at(ins, m))?.to_string(),
            "from": from_key,
        }));
        // BuildKit's form: the flags that shape the files, then sources and destination.
        let mut words = vec![if unpack { "ADD" } else { "COPY" }.to_string()];
        if let copy::Source::Image(..) = from {
            let f = ins.flags.iter().find(|f| f.starts_with("--from="));
            words.extend(f.cloned());
        }
        words.extend(chown.as_ref().map(|c| format!("--chown={c}")));
        words.extend(chmod.map(|c| format!("--chmod={c}")));
        if parents {
            words.push("--parents".into());
        }
        words.extend(excludes.iter().map(|e| format!("--exclude={e}")));
        words.extend(sources.iter().cloned());
        words.extend(urls.iter().cloned());
        words.extend(files.inline.iter().map(|f| format!("<<{}", f.name)));
        words.push(dest.clone());
        let created_by = format!("{} # buildkit", words.join(" "));
        self.files_step(state, v, t, key, created_by, |upper| {
            op.write(upper).map_err(|m| BuildError::at(ins, m))
        })
    }

    /// The end of a step that writes files with no container (COPY, ADD, WORKDIR): the
    /// cached result, or `fill` writing a fresh upper dir that becomes the layer.
    fn files_step(
        &self,
        state: StageState,
        v: usize,
        t: Instant,
        key: Digest,
        created_by: String,
        fill: impl FnOnce(&Path) -> Result<(), BuildError>,
    ) -> Result<StageState, BuildError> {
        if let Some(hit) = self.cached(&state, key)? {
            self.progress.event(Event::Cached { vertex: v });
            return Ok(hit);
        }
        let dir = self.step_dir()?;
        let upper = dir.join("upper");
        std::fs::create_dir_all(&upper)
            .map_err(|e| BuildError::new(format!("{}: {e}", upper.display())))?;
        fill(&upper)?;
        self.finish_layer(state, &dir, key, created_by, v, t)
    }

    /// A step's end once `dir/upper` holds its changes: the layer committed (and the upper
    /// dir kept as its snapshot), the step's scratch removed, its vertex done.
    fn finish_layer(
        &self,
        state: StageState,
        dir: &Path,
        key: Digest,
        created_by: String,
        v: usize,
        t: Instant,
    ) -> Result<StageState, BuildError> {
        let state = self.commit(state, &dir.join("upper"), key, created_by)?;
        let _ = std::fs::remove_dir_all(dir);
        self.progress.event(Event::Done {
            vertex: v,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(state)
    }
}
