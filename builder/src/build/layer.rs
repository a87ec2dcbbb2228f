//! A step's layer: the cache looked up by its key, a files step's end (its fresh directory
//! of changes committed, `pipeline::commit`), the scratch directories steps write in, and
//! the stage's file system as one read-only view.

use lb_layerstore::Mounts;

use super::*;

/// Where a step's changes are.
pub(super) enum StepChanges {
    /// The active snapshot `key` a RUN ran on: the snapshotter says where its changes are.
    Snapshot(lb_layerstore::SnapshotKey),
    /// The fresh directory of changes COPY, ADD and WORKDIR write (`upper/` of the step's
    /// directory), in the form of an overlay upper dir, on every driver.
    Dir(PathBuf),
}

impl Builder<'_> {
    /// The image of `state` as it stands, written to the store.
    pub(super) fn write(&self, state: &StageState) -> Result<Image, lb_layerstore::Error> {
        let mut config = state.config.clone();
        config["config"] = Value::Object(state.run.config.clone());
        if let Some(a) = &state.run.author {
            config["author"] = json!(a);
        }
        config["created"] = json!(state.created);
        self.store.write_image(&config, &state.layers, &[])
    }

    /// Looks `key` up, in the store's cache and among the steps of this build; on a hit
    /// the state becomes the recorded image's.
    pub(super) fn cached(
        &self,
        state: &StageState,
        key: Digest,
        vertex: usize,
    ) -> Result<Option<StageState>, BuildError> {
        let use_cache = !self.opts.no_cache && !state.no_cache;
        let mut from = None;
        let mut image = use_cache.then(|| self.store.cache_get(&key)).flatten();
        // Not here: the caches the build was given (`--cache-from`), in their order.
        if image.is_none()
            && use_cache
            && let Some((hit, name)) = self.seams.cache.and_then(|c| c.lookup(&key))
        {
            image = Some(hit);
            from = Some(name);
        }
        // A miss: another step of this build may have made (or be making) the same.
        let image = match image {
            Some(image) => Some(image),
            None => match self.schedule.claim(&key)? {
                schedule::Claim::Run => None,
                schedule::Claim::Made(image) => Some(*image),
            },
        };
        let Some(image) = image else {
            self.steps_run.fetch_add(1, Ordering::SeqCst);
            self.ran.lock().expect("ran").push((vertex, key));
            // Steps will run: RUN steps after this one will want namespaces.
            if let Some(net) = self.seams.network {
                net.warm_up();
            }
            return Ok(None);
        };
        self.progress.event(Event::Cached {
            vertex,
            from: from.as_deref(),
        });
        self.step_made(&key, &image);
        self.steps_cached.fetch_add(1, Ordering::SeqCst);
        let config = self.raw_config(&image)?;
        let mut hit = StageState::from_image(image, config, key);
        hit.args = state.args.clone();
        hit.no_cache = state.no_cache;
        hit.base = state.base.clone();
        Ok(Some(hit))
    }

    /// A fresh directory for one step.
    pub(super) fn step_dir(&self) -> Result<PathBuf, BuildError> {
        self.step_dir_in(self.work.path())
    }

    /// A fresh directory for a step that writes files (RUN, COPY, ADD), in a block group of
    /// its own (see `run/` in `build`): a COPY of a context of 10,000 small files took
    /// 2.1-2.2 s in a directory beside earlier steps' (ext4's inode allocator scanning past
    /// the inodes freed there lately, `recently_deleted`), 0.87-0.93 s here.
    pub(super) fn run_step_dir(&self) -> Result<PathBuf, BuildError> {
        self.step_dir_in(&self.work.path().join("run"))
    }

    pub(super) fn step_dir_in(&self, parent: &Path) -> Result<PathBuf, BuildError> {
        let d = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(parent)
            .map_err(|e| BuildError::io("preparing a step", parent, e))?;
        Ok(d.keep())
    }

    /// The file system of `image` as one read-only directory: a committed one as it is,
    /// or a read-only overlay of several (mounted in the build's own mount namespace).
    pub(crate) fn view(&self, image: Option<&Image>) -> Result<PathBuf, BuildError> {
        match self.snapshots.view(self.store, image)? {
            Mounts::Bind { source, .. } => Ok(source),
            Mounts::Overlay {
                lowers,
                upper: None,
            } => lb_runtime::rootfs::mount_readonly_view(&lowers, &self.step_dir()?)
                .map_err(BuildError::runtime),
            m => Err(store_err(lb_layerstore::Error::Snapshot {
                key: format!("{m:?}"),
                reason: "a view that is writable".into(),
            })),
        }
    }

    /// The end of a step that writes files with no container (COPY, ADD, WORKDIR): the
    /// cached result, or `fill` writing a fresh upper dir that becomes the layer.
    pub(super) fn files_step(
        &self,
        state: StageState,
        v: usize,
        t: Instant,
        key: Digest,
        created_by: String,
        fill: impl FnOnce(&Path) -> Result<(), BuildError>,
    ) -> Result<StageState, BuildError> {
        if let Some(hit) = self.cached(&state, key, v)? {
            return Ok(hit);
        }
        // Held to the step's end, its commit included (`--jobs`).
        let _job = self.schedule.job()?;
        // Not an active snapshot: on vfs, preparing one copies the stage's whole tree, which
        // a COPY of a few files would pay every time (see `snapshots`). The snapshotter
        // keeps this directory as the snapshot where it keeps layers so.
        let dir = self.run_step_dir()?;
        let upper = dir.join("upper");
        std::fs::create_dir_all(&upper)
            .map_err(|e| BuildError::io("preparing a step", &upper, e))?;
        fill(&upper)?;
        self.finish_layer(state, &dir, &StepChanges::Dir(upper), key, created_by, v, t)
    }

    /// A step's end once `changes` are made: the layer committed (and kept as its
    /// snapshot), the step's scratch `dir` removed, its vertex done.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_layer(
        &self,
        state: StageState,
        dir: &Path,
        changes: &StepChanges,
        key: Digest,
        created_by: String,
        v: usize,
        t: Instant,
    ) -> Result<StageState, BuildError> {
        let state = self.commit(state, changes, key, created_by)?;
        let _ = std::fs::remove_dir_all(dir);
        self.progress.event(Event::Done {
            vertex: v,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(state)
    }
}
