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

mod files;
mod run;

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
    /// otherwise one on the caller's `RunNetwork` (or the host's, `--network host`).
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
    urls: Option<&'a dyn crate::fetch::UrlSource>,
}

/// Builds `df` and returns the target stage's image (not yet named: the caller tags it).
/// Images the store lacks (or all named ones, with `opts.pull`) come from `source`, ADD's
/// URLs from `urls`.
pub fn build(
    store: &Store,
    df: &Dockerfile,
    opts: &BuildOptions,
    progress: &dyn Progress,
    source: Option<&dyn ImageSource>,
    network: Option<&dyn RunNetwork>,
    urls: Option<&dyn crate::fetch::UrlSource>,
) -> Result<Image, BuildError> {
    let plan = plan(df, &opts.build_args, opts.target.as_deref())?;
    reap_killed_builds();
    // Unnamed blobs of the build are safe from a concurrent prune until the image is named.
    let _writing = store.writing().map_err(store_err)?;
    private_mounts()?;
    let work_parent = store.root().join("build");
    std::fs::create_dir_all(&work_parent)
        .map_err(|e| BuildError::io("preparing the build", &work_parent, e))?;
    let work = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&work_parent)
        .map_err(|e| BuildError::io("preparing the build", &work_parent, e))?;
    // The dirs of steps that write files (RUN, COPY, ADD, WORKDIR) in a directory of their
    // own whose children spread (see `spread_subdirectories`): any of them may write much.
    let runs = work.path().join("run");
    std::fs::create_dir(&runs).map_err(|e| BuildError::io("preparing the build", &runs, e))?;
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
        urls,
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
                    h.join().unwrap_or_else(|p| {
                        // A bug, never an expected failure: said as such, with what it said.
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(BuildError::new(format!(
                            "internal error: a stage's thread panicked: {what}"
                        )))
                    })
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
        .map_err(|e| BuildError::io("writing a file system", scratch_in, e))?;
    // A read-only overlay needs two lowers; an empty one also hides a lone layer's whiteouts.
    let empty = scratch.path().join("empty");
    let view = scratch.path().join("view");
    for d in [&empty, &view] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::io("writing a file system", d, e))?;
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
    BuildError::store(e)
}

/// The build mounts views of images (for COPY --from) in a mount namespace of its own:
/// none of them is seen outside, and all go away with the process.
fn private_mounts() -> Result<(), BuildError> {
    lb_runtime::rootfs::private_mount_namespace()
        .map_err(|e| BuildError::new(format!("building: {}", e.message)))
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

    /// A fresh directory for a step that writes files (RUN, COPY, ADD), in a block group of
    /// its own (see `run/` in `build`): a COPY of a context of 10,000 small files took
    /// 2.1-2.2 s in a directory beside earlier steps' (ext4's inode allocator scanning past
    /// the inodes freed there lately, `recently_deleted`), 0.87-0.93 s here.
    fn run_step_dir(&self) -> Result<PathBuf, BuildError> {
        self.step_dir_in(&self.work.path().join("run"))
    }

    fn step_dir_in(&self, parent: &Path) -> Result<PathBuf, BuildError> {
        let d = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(parent)
            .map_err(|e| BuildError::io("preparing a step", parent, e))?;
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
                .map_err(|e| BuildError::io("preparing a step", &empty, e))?;
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
        std::fs::create_dir_all(&at).map_err(|e| BuildError::io("preparing a step", &at, e))?;
        lb_runtime::rootfs::mount_overlay_readonly(&lowers, &at)
            .map_err(|e| BuildError::new(e.message))?;
        Ok(at)
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
        let dir = self.run_step_dir()?;
        let upper = dir.join("upper");
        std::fs::create_dir_all(&upper)
            .map_err(|e| BuildError::io("preparing a step", &upper, e))?;
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
