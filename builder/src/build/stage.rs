//! A stage from its base to its last step: the base's state (scratch, an image, an
//! earlier stage), the base image's ONBUILD triggers, each instruction dispatched to its
//! step (ARG and metadata steps here, RUN in `run`, COPY/ADD/WORKDIR in `files`), and the
//! history entries steps add.

use super::*;

impl Builder<'_> {
    pub(super) fn base_state(
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
                    key: CacheKey::Scratch.digest(),
                    created: self.created.clone(),
                    no_cache: false,
                })
            }
            Base::Image(name) => {
                let image = self
                    .image_named(name)
                    .map_err(|e| BuildError::at(&stage.from, e.into()))?;
                let config = self.raw_config(&image)?;
                let key = CacheKey::Image {
                    manifest: &image.manifest_digest,
                }
                .digest();
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
    pub(super) fn image_named(&self, name: &str) -> Result<Image, ImageError> {
        let r = Reference::parse(name).map_err(|source| ImageError::Reference {
            name: name.to_string(),
            source,
        })?;
        if !self.opts.pull {
            if let Ok(image) = self.store.image(&r) {
                return Ok(image);
            }
        }
        match self.source {
            Some(source) => source.fetch(&r).map_err(|source| ImageError::Fetch {
                name: name.to_string(),
                source,
            }),
            None => Err(ImageError::NotLocal {
                name: name.to_string(),
            }),
        }
    }

    pub(super) fn raw_config(&self, image: &Image) -> Result<Value, BuildError> {
        let bytes = self
            .store
            .content()
            .read_verified(&image.config_digest)
            .map_err(store_err)?;
        serde_json::from_slice(&bytes).map_err(|source| {
            BuildError::new(ErrorKind::Config {
                digest: image.config_digest,
                source,
            })
        })
    }

    pub(super) fn build_stage(
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

    pub(super) fn history(&self, state: &mut StageState, created_by: String, empty_layer: bool) {
        let mut entry = json!({ "created": state.created, "created_by": created_by });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        match state.config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => state.config["history"] = json!([entry]),
        }
    }

    pub(super) fn step(
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
                                .map_err(|e| BuildError::invalid(ins, e.to_string()))?,
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
                let key = CacheKey::Arg {
                    parent: &state.key,
                    declared: &now,
                }
                .digest();
                self.history(&mut state, text, true);
                state.key = key;
                Ok(state)
            }
            Command::Run(run) => self.run_step(state, ins, run, name, results),
            Command::Copy(c) => {
                let inputs = CopyInputs::of_copy(c);
                let from = match inputs.from {
                    None => copy::Source::Context(self.opts.context.clone()),
                    Some(f) => self
                        .source_image(f, results)
                        .map_err(|e| BuildError::at(ins, e.into()))?,
                };
                self.copy_step(state, ins, name, from, inputs.files, &inputs.flags)
            }
            Command::Add(a) => {
                let inputs = CopyInputs::of_add(a);
                if let Some(git) = inputs
                    .files
                    .sources
                    .iter()
                    .find(|s| s.starts_with("git@") || s.ends_with(".git"))
                {
                    return Err(BuildError::invalid(
                        ins,
                        format!("ADD {git}: git sources are not supported by lb yet"),
                    ));
                }
                let from = copy::Source::Context(self.opts.context.clone());
                self.copy_step(state, ins, name, from, inputs.files, &inputs.flags)
            }
            _ => {
                let applied = state
                    .run
                    .apply_change(ins, &state.args)
                    .map_err(|e| BuildError::invalid(ins, e.to_string()))?
                    .ok_or_else(|| {
                        BuildError::invalid(
                            ins,
                            format!("{} is not supported here", ins.original.trim()),
                        )
                    })?;
                // What the step changed, not the whole config: linear in the instructions.
                let (created_by, change) = (applied.created_by, applied.change);
                let key = CacheKey::Metadata {
                    parent: &state.key,
                    created_by: &created_by,
                    change: &change,
                }
                .digest();
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
    pub(super) fn onbuild(
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
        state.key = CacheKey::OnbuildConsumed { parent: &state.key }.digest();
        for trigger in triggers {
            let bad =
                |m: String| BuildError::invalid(&stage.from, format!("ONBUILD {trigger}: {m}"));
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
    pub(super) fn source_image(
        &self,
        from: &str,
        results: &Mutex<Vec<Option<StageState>>>,
    ) -> Result<copy::Source, ImageError> {
        let stage = self
            .plan
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(from.to_lowercase().as_str()))
            .or_else(|| from.parse::<usize>().ok());
        if let Some(i) = stage {
            let s = results.lock().expect("results")[i].clone().ok_or_else(|| {
                ImageError::StageNotBuilt {
                    stage: from.to_string(),
                }
            })?;
            let image = s.image.clone().expect("a built stage has its image");
            return Ok(copy::Source::Image(Box::new(image), s.key));
        }
        let image = self.image_named(from)?;
        let key = CacheKey::Image {
            manifest: &image.manifest_digest,
        }
        .digest();
        Ok(copy::Source::Image(Box::new(image), key))
    }
}
