//! A stage's commit pipeline. A RUN step's layer is written, hashed and synced, and its
//! image recorded under the step's key, on a thread of its own while the next RUN already
//! runs with the step's upper dir as its top lower directory: the next step never waits
//! for a digest it does not need. Only where the step ran on an overlay of layers (an
//! upper dir that can be stacked); otherwise, and for every other step, the commit is
//! done in place.
//!
//! One commit is in flight per stage. What needs the stage's image settles it first
//! (`settle`): COPY, ADD and WORKDIR (views of the image), a RUN with mounts, a cache
//! hit, the next commit, the stage's end (so another stage, and the image named at the
//! end, see only durable layers). Settling joins the thread, takes its image, and then
//! commits the upper dir as the layer's snapshot: renamed into place only now, when no
//! step is being set up on its old path.

use std::thread::{Scope, ScopedJoinHandle};

use lb_layerstore::{SnapshotChanges, SnapshotKey};

use super::stage::StepNames;
use super::*;

/// A stage being built: its step names, its index (for the stages it may read) and its
/// commit in flight.
pub(super) struct StageRun<'scope, 'env> {
    pub(super) names: StepNames,
    pub(super) reader: usize,
    scope: &'scope Scope<'scope, 'env>,
    pending: Option<Pending<'scope>>,
}

/// A RUN step's commit in flight.
struct Pending<'scope> {
    /// Writes the layer and its image, records it under the step's key.
    work: ScopedJoinHandle<'scope, Result<(Image, Digest), BuildError>>,
    /// The active snapshot the step ran on, committed once settled.
    snapshot: SnapshotKey,
    /// Its upper dir: the top lower directory of RUN steps before it is settled.
    upper: PathBuf,
    /// The step's scratch directory, removed once settled.
    dir: PathBuf,
}

impl<'scope, 'env> StageRun<'scope, 'env> {
    pub(super) fn new(
        names: StepNames,
        reader: usize,
        scope: &'scope Scope<'scope, 'env>,
    ) -> StageRun<'scope, 'env> {
        StageRun {
            names,
            reader,
            scope,
            pending: None,
        }
    }

    /// The upper dir of the commit in flight, if any: what a RUN stacks over the image's
    /// layers until it is settled.
    pub(super) fn pending_upper(&self) -> Option<&Path> {
        self.pending.as_ref().map(|p| p.upper.as_path())
    }
}

impl Builder<'_> {
    /// The config of the image a layer step makes on `state` (its history entry added,
    /// its time the build's), without the layer's diff ID yet; the state keeps the entry.
    fn layer_config(&self, state: &mut StageState, created_by: String) -> Value {
        state.created = self.created.clone();
        self.history(state, created_by, false);
        let mut config = state.config.clone();
        config["config"] = Value::Object(state.run.config.clone());
        config["created"] = json!(state.created);
        config
    }

    /// Writes `changes` as a layer over `parent` (the layers of `parent_image`), the image
    /// of `config` with it, and records the image under `key` (for this build's other
    /// steps too); the image and the layer's diff ID.
    fn write_layer(
        &self,
        changes: &StepChanges,
        mut config: Value,
        (parent, parent_image): (&[oci_spec::image::Descriptor], Option<&Image>),
        key: &Digest,
    ) -> Result<(Image, Digest), BuildError> {
        let mut snapshot_changes;
        let layer_changes = match changes {
            StepChanges::Snapshot(key) => {
                snapshot_changes = self.snapshots.changes(key)?;
                // A RUN that ran on the upper dir of the commit then in flight has that
                // layer among its lowers, which its snapshot's record (made on the image
                // before it) does not name: its layer is written against the parent's.
                if let (SnapshotChanges::Stacked { lowers, .. }, Some(image)) =
                    (&mut snapshot_changes, parent_image)
                {
                    *lowers = self.store.prepare_snapshots(image).map_err(store_err)?;
                    lowers.reverse();
                }
                snapshot_changes.layer()
            }
            StepChanges::Dir(dir) => lb_layerstore::LayerChanges::Upper(dir),
        };
        let layer = self
            .store
            .store_layer(
                layer_changes,
                DiffOptions {
                    source_date_epoch: self.opts.source_date_epoch,
                },
            )
            .map_err(store_err)?;
        push_diff_id(&mut config, &layer.diff_id);
        let image = self
            .store
            .write_image(&config, parent, &[layer])
            .map_err(store_err)?;
        // Written out only for a record: a step that hits keeps none.
        let inputs = self
            .inputs
            .lock()
            .expect("inputs")
            .get(key)
            .map(|i| i.to_text());
        self.store
            .cache_put(key, &image, inputs.as_deref())
            .map_err(store_err)?;
        self.schedule.made(key, &image);
        self.step_made(key, &image);
        Ok((image, layer.diff_id))
    }

    /// The state takes `image`, the one its last layer step made with the layer
    /// `diff_id`, and the step's `changes` become that layer's committed snapshot.
    fn adopt_layer(
        &self,
        mut state: StageState,
        (image, diff_id): (Image, Digest),
        changes: &StepChanges,
    ) -> Result<StageState, BuildError> {
        push_diff_id(&mut state.config, &diff_id);
        let chain = lb_layerstore::chain_ids(&state.diff_ids());
        if let Some(top) = chain.last() {
            match changes {
                StepChanges::Snapshot(key) => self.snapshots.commit(key, top)?,
                StepChanges::Dir(dir) => self.snapshots.commit_changes(dir, top)?,
            }
        }
        state.layers = image.manifest.layers().clone();
        state.image = Some(image);
        Ok(state)
    }

    /// Commits `changes` as the step's layer on top of `state`, records it under the
    /// step's key and keeps them as the layer's committed snapshot, before returning.
    pub(super) fn commit(
        &self,
        mut state: StageState,
        changes: &StepChanges,
        key: Digest,
        created_by: String,
    ) -> Result<StageState, BuildError> {
        let config = self.layer_config(&mut state, created_by);
        let parent = (&state.layers[..], state.image.as_ref());
        let made = self.write_layer(changes, config, parent, &key)?;
        state.key = key;
        self.adopt_layer(state, made, changes)
    }

    /// Commits the RUN step's active `snapshot` as its layer on a thread of its own (the
    /// commit in flight settled first: one at a time); the state goes on at once, its
    /// image still the one before the step until `settle`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_in_flight<'scope, 'env>(
        &'scope self,
        state: StageState,
        stage_run: &mut StageRun<'scope, 'env>,
        snapshot: SnapshotKey,
        upper: PathBuf,
        dir: PathBuf,
        key: Digest,
        created_by: String,
    ) -> Result<StageState, BuildError> {
        let mut state = self.settle(state, stage_run)?;
        let config = self.layer_config(&mut state, created_by);
        let (layers, image) = (state.layers.clone(), state.image.clone());
        let changes = StepChanges::Snapshot(snapshot.clone());
        let work = stage_run
            .scope
            .spawn(move || self.write_layer(&changes, config, (&layers, image.as_ref()), &key));
        state.key = key;
        stage_run.pending = Some(Pending {
            work,
            snapshot,
            upper,
            dir,
        });
        Ok(state)
    }

    /// The commit in flight, done: `state` takes its image, its upper dir becomes the
    /// layer's snapshot. A state with none is returned as it is.
    pub(super) fn settle(
        &self,
        state: StageState,
        stage_run: &mut StageRun<'_, '_>,
    ) -> Result<StageState, BuildError> {
        let Some(p) = stage_run.pending.take() else {
            return Ok(state);
        };
        let made = p.work.join().unwrap_or_else(|panic| {
            Err(BuildError::new(ErrorKind::Panicked(panic_text(&panic))))
        })?;
        let state = self.adopt_layer(state, made, &StepChanges::Snapshot(p.snapshot))?;
        let _ = std::fs::remove_dir_all(&p.dir);
        Ok(state)
    }
}

/// Appends `diff_id` to an image config's `rootfs.diff_ids`.
fn push_diff_id(config: &mut Value, diff_id: &Digest) {
    match config["rootfs"]["diff_ids"].as_array_mut() {
        Some(d) => d.push(json!(diff_id.to_string())),
        None => config["rootfs"] = json!({ "type": "layers", "diff_ids": [diff_id.to_string()] }),
    }
}
