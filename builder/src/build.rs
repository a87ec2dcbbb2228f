//! Running a plan: each stage from its base through its steps, stages of one level at the
//! same time. A step's cache key is computed before it runs (the parent's key, the step as
//! expanded, and the digests of what it reads); a key the store has a record for reuses
//! the image recorded, otherwise the step runs: RUN in lb's runtime on an active snapshot
//! of the stage's file system, COPY straight into a fresh directory of changes. The
//! step's changes become its layer, and are kept as its committed snapshot. Metadata
//! steps only change the config and the history.
//!
//! Here: the public API (options, the caller's traits, progress events, `build`, reaping
//! killed builds, writing a file system as one tar) and the driver starting every needed
//! stage at once (`schedule`: steps wait only for the stages they read). A stage's state
//! is in `state`, a stage's steps in `stage` (ARG, metadata, ONBUILD; RUN in `run`,
//! COPY/ADD/WORKDIR in `files`), the cache lookup in `layer`, the commit of a layer (in
//! place, or beside the next RUN) in `pipeline`, the build's snapshots (the store's
//! `Snapshotter`, on any driver) in `snapshots`.

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

use crate::cache_key::{CacheKey, CopyFlags, CopyInputs, RunInputs, RunKey, SourceKey};
use crate::config::ImageConfig;
use crate::copy;
use crate::error::{BuildError, ErrorKind, ImageError};
use crate::plan::{Base, Plan, Stage, plan};

mod files;
mod layer;
mod pipeline;
mod run;
mod schedule;
mod snapshots;
mod stage;
mod state;

use layer::StepChanges;
use state::StageState;

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
    /// `--jobs`: at most this many steps do work at once (None or 0: no limit, as
    /// BuildKit; steps waiting for another stage, and RUN commits in flight, never count).
    pub jobs: Option<usize>,
    /// `--explain`: say why each step that ran missed the caches (`Built::explanations`).
    pub explain: bool,
}

/// Why a caller's [`ImageSource`] or [`RunNetwork`] failed: its own error, causes and all.
/// The build's error says it with its causes, as lb prints errors ([`ErrorKind::Image`],
/// [`ErrorKind::Network`]), and no room to write anywhere in it as [`ErrorKind::NoSpace`].
pub type SeamError = Box<dyn std::error::Error + Send + Sync>;

/// A network RUN steps join instead of the host's (`--network bridge`), wired in by the
/// caller: the builder knows nothing of bridges.
pub trait RunNetwork: Sync {
    /// Sets up a network namespace for the step container `id`; the file its spec joins.
    fn attach(&self, id: &str) -> Result<PathBuf, SeamError>;
    /// Undoes `attach`, whether the step succeeded or not.
    fn detach(&self, id: &str);
    /// A step missed the cache: steps will run, RUN steps among them perhaps. Called at
    /// every miss; a network that makes namespaces ahead starts on the first.
    fn warm_up(&self) {}
}

/// Where images the store lacks come from: the registry, wired in by the caller (the
/// builder knows nothing of registries).
pub trait ImageSource: Sync {
    /// Fetches `name` into the store and names it there; the image.
    fn fetch(&self, name: &Reference) -> Result<Image, SeamError>;
}

/// A build cache outside the store (`--cache-from`), wired in by the caller: the builder
/// knows nothing of registries or cache formats.
pub trait CacheSource: Sync {
    /// The image a step of cache key `key` made, brought into the store (and recorded
    /// there under `key`), and the name of the cache it came from (`CACHED (REF)`).
    /// `None` on a miss; a cache that fails or serves bad bytes is a miss too.
    fn lookup(&self, key: &Digest) -> Option<(Image, String)>;

    /// Fills the empty directory `dir` of the cache mount `id` with what the cache holds
    /// for it, if anything; whether it did. A cache that fails fills nothing.
    fn restore_mount(&self, _id: &str, _dir: &Path) -> bool {
        false
    }

    /// The inputs documents of every record the cache holds (`--explain`).
    fn inputs(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where what the store lacks comes from, and what RUN steps join: the caller's
/// implementations of the builder's seams, each optional.
#[derive(Clone, Copy, Default)]
pub struct Seams<'a> {
    /// Images FROM and `--from` name that the store lacks (or all, with `opts.pull`).
    pub images: Option<&'a dyn ImageSource>,
    /// The network RUN steps join (`None`: the host's or none, as the options say).
    pub network: Option<&'a dyn RunNetwork>,
    /// ADD's URLs.
    pub urls: Option<&'a dyn crate::fetch::UrlSource>,
    /// Caches looked up where the store misses.
    pub cache: Option<&'a dyn CacheSource>,
}

/// A build's result: the target stage's image (not yet named: the caller tags it), and
/// every layer step the build ran or found cached as (cache key, image), in no order,
/// once each (what a cache export chooses from).
pub struct Built {
    pub image: Image,
    pub steps: Vec<(Digest, Image)>,
    /// The shared cache mounts the steps that ran used: id and directory, once each.
    pub cache_mounts: Vec<(String, PathBuf)>,
    /// Layer steps found cached (in the store, a cache outside it, or this build).
    pub steps_cached: usize,
    /// Layer steps that ran.
    pub steps_run: usize,
    /// With `opts.explain`: for each layer step that ran (its vertex), why the caches
    /// did not have it.
    pub explanations: Vec<(usize, String)>,
}

/// What a build reports as it goes, numbered by vertex as BuildKit's progress is.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A step starts: `[stage k/n] INSTRUCTION`.
    Start {
        vertex: usize,
        name: &'a str,
    },
    /// It was found in the cache: the store's (`from` None) or the one named.
    Cached {
        vertex: usize,
        from: Option<&'a str>,
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
    /// It failed: `message` is the build's error (the first line is BuildKit's
    /// `#N ERROR:` line).
    Error {
        vertex: usize,
        message: &'a str,
    },
    /// Another step failed first and this one was stopped.
    Canceled {
        vertex: usize,
    },
}

/// Where a build's events go; called from several threads at once.
pub trait Progress: Sync {
    fn event(&self, e: Event<'_>);
}

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
    seams: Seams<'a>,
    /// The layer steps' keys and images, ran or cached (`Built::steps`).
    steps: std::sync::Mutex<BTreeMap<Digest, Image>>,
    /// The shared cache mounts steps ran with (`Built::cache_mounts`).
    cache_mounts: std::sync::Mutex<BTreeMap<String, PathBuf>>,
    /// `Built::steps_cached`, `Built::steps_run`.
    steps_cached: AtomicUsize,
    steps_run: AtomicUsize,
    /// The inputs document of each layer step's key (kept with its record).
    inputs: std::sync::Mutex<std::collections::HashMap<Digest, crate::explain::StepInputs>>,
    /// The layer steps that ran: vertex and key (`--explain`).
    ran: std::sync::Mutex<Vec<(usize, Digest)>>,
    /// The build's active snapshots and views, on the store's driver.
    snapshots: snapshots::StepSnapshots,
    /// Which stages are built, which keys made, the jobs taken, the first failure.
    schedule: schedule::Schedule,
}

/// Builds `df`: the target stage's image (not yet named: the caller tags it) and the
/// steps' records. What the store lacks comes through `seams`.
pub fn build(
    store: &Store,
    df: &Dockerfile,
    opts: &BuildOptions,
    progress: &dyn Progress,
    seams: Seams<'_>,
) -> Result<Built, BuildError> {
    let plan = plan(df, &opts.build_args, opts.target.as_deref())?;
    let (plan_stages, plan_needed) = (plan.stages.len(), plan.needed.clone());
    reap_killed_builds();
    // Unnamed blobs of the build are safe from a concurrent prune until the image is named.
    let _writing = store.writing().map_err(store_err)?;
    private_mounts()?;
    let work_parent = store.layout().build_scratch();
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
    let ignore = crate::ignore::Ignore::load(&opts.context)
        .map_err(|e| BuildError::new(ErrorKind::Context(e)))?;
    let secrets = if opts.secrets.is_empty() {
        None
    } else {
        Some(
            crate::mounts::SecretsTmpfs::mount(&work.path().join("secrets"))
                .map_err(|e| BuildError::new(ErrorKind::Mount(e)))?,
        )
    };
    // What the caches held before this build (what `--explain` compares a step with).
    let known: Vec<crate::explain::StepInputs> = if opts.explain {
        let mut texts = store.cache_all_inputs();
        texts.extend(seams.cache.map(|c| c.inputs()).unwrap_or_default());
        texts
            .iter()
            .filter_map(|t| crate::explain::StepInputs::from_text(t))
            .collect()
    } else {
        Vec::new()
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
        seams,
        steps: Default::default(),
        cache_mounts: Default::default(),
        steps_cached: AtomicUsize::new(0),
        steps_run: AtomicUsize::new(0),
        inputs: Default::default(),
        ran: Default::default(),
        snapshots: snapshots::StepSnapshots::new(store),
        schedule: schedule::Schedule::new(plan_stages, &plan_needed, opts.jobs),
    };
    // Every stage the target needs starts now; a step reading another stage waits for
    // it (`schedule`).
    std::thread::scope(|s| {
        for &i in &b.plan.needed {
            let b = &b;
            s.spawn(move || {
                let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    b.build_stage(&b.plan.stages[i])
                }));
                match built {
                    Ok(Ok(state)) => b.schedule.finished(i, state),
                    Ok(Err(e)) => b.schedule.fail(e),
                    // A bug, never an expected failure: said as such, with what it said.
                    Err(p) => b
                        .schedule
                        .fail(BuildError::new(ErrorKind::Panicked(panic_text(&p)))),
                }
            });
        }
    });
    b.digests.save();
    if let Some(e) = b.schedule.take_failure() {
        return Err(e);
    }
    let mut state = b
        .schedule
        .take(b.plan.target)
        .expect("the target stage was built");
    for (k, v) in &opts.labels {
        let labels = state.config["config"]
            .as_object_mut()
            .map(|c| c.entry("Labels").or_insert_with(|| json!({})));
        if let Some(Value::Object(l)) = labels {
            l.insert(k.clone(), json!(v));
        }
    }
    let image = b.write(&state).map_err(store_err)?;
    let explanations = if opts.explain {
        let inputs = b.inputs.lock().expect("inputs");
        let mut ran = b.ran.lock().expect("ran").clone();
        ran.sort();
        ran.iter()
            .map(|(vertex, key)| {
                let why = match inputs.get(key) {
                    Some(step) => crate::explain::explain(step, &known),
                    None => "its inputs are not recorded (a WORKDIR's directory)".to_string(),
                };
                (*vertex, why)
            })
            .collect()
    } else {
        Vec::new()
    };
    let steps = std::mem::take(&mut *b.steps.lock().expect("steps"));
    let cache_mounts = std::mem::take(&mut *b.cache_mounts.lock().expect("cache mounts"));
    Ok(Built {
        image,
        steps: steps.into_iter().collect(),
        cache_mounts: cache_mounts.into_iter().collect(),
        steps_cached: b.steps_cached.load(Ordering::SeqCst),
        steps_run: b.steps_run.load(Ordering::SeqCst),
        explanations,
    })
}

impl Builder<'_> {
    /// The digest of a layer step's `key`, its inputs kept for its record (`--explain`):
    /// the key's document, the instruction as history shows it, and a copy's `files`.
    fn step_key(
        &self,
        key: &CacheKey<'_>,
        state: &StageState,
        instruction: &str,
        files: Vec<(String, Digest)>,
    ) -> Digest {
        let (digest, shape) = key.digest_and_shape();
        let files = if files.len() > crate::explain::MAX_FILES {
            Default::default()
        } else {
            files.into_iter().map(|(p, d)| (p, d.to_string())).collect()
        };
        let inputs = crate::explain::StepInputs {
            instruction: instruction.to_string(),
            key: shape,
            files,
            base: state.base.clone(),
        };
        self.inputs.lock().expect("inputs").insert(digest, inputs);
        digest
    }

    /// Notes that the step of cache key `key` made (or found) `image`.
    fn step_made(&self, key: &Digest, image: &Image) {
        self.steps
            .lock()
            .expect("steps")
            .insert(*key, image.clone());
    }
}

/// What a panic said (its message, if it had one as text).
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
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
    // A keyed view, if the snapshotter needs one, goes when `snapshots` drops.
    let snapshots = snapshots::StepSnapshots::new(store);
    let mounts = snapshots.view(store, Some(image))?;
    write_merged(&mounts, store.root(), out)
}

/// Writes the merged file system `mounts` describe as one tar, whiteouts applied. One
/// directory (a vfs tree, an overlay's single layer) is read as it is; an overlay's layers (`lowers` top first:
/// snapshots, a container's upper dir) are seen through a read-only overlay mounted in a
/// mount namespace of this process's own, in a scratch directory under `scratch_in`.
pub fn write_merged(
    mounts: &lb_layerstore::Mounts,
    scratch_in: &Path,
    out: impl std::io::Write,
) -> Result<(), BuildError> {
    let write = |dir: &Path, out| {
        lb_layerstore::write_diff(
            dir,
            out,
            lb_layerstore::LayerCompression::None,
            DiffOptions::default(),
        )
        .map(|_| ())
        .map_err(store_err)
    };
    let lowers = match mounts {
        lb_layerstore::Mounts::Bind { source, .. } => return write(source, out),
        lb_layerstore::Mounts::Overlay { lowers, .. } => lowers.clone(),
    };
    private_mounts()?;
    let scratch = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(scratch_in)
        .map_err(|e| BuildError::io("writing a file system", scratch_in, e))?;
    let view = lb_runtime::rootfs::mount_readonly_view(&lowers, scratch.path())
        .map_err(BuildError::runtime)?;
    let written = write(&view, out);
    let _ = nix::mount::umount2(&view, nix::mount::MntFlags::MNT_DETACH);
    written
}

fn store_err(e: lb_layerstore::Error) -> BuildError {
    BuildError::store(e)
}

/// The build mounts views of images (for COPY --from) in a mount namespace of its own:
/// none of them is seen outside, and all go away with the process.
fn private_mounts() -> Result<(), BuildError> {
    lb_runtime::rootfs::private_mount_namespace()
        .map_err(|e| BuildError::new(ErrorKind::Namespace(e)))
}

impl Builder<'_> {
    fn next_vertex(&self) -> usize {
        self.vertex.fetch_add(1, Ordering::Relaxed) + 1
    }
}
