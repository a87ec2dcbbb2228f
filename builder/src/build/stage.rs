//! A stage from its base to its last step: the base's state (scratch, an image, an
//! earlier stage), the base image's ONBUILD triggers, each instruction dispatched to its
//! step (ARG and metadata steps here, RUN in `run`, COPY/ADD/WORKDIR in `files`), and the
//! history entries steps add.

use super::pipeline::StageRun;
use super::*;

impl Builder<'_> {
    pub(super) fn base_state(&self, stage: &Stage) -> Result<StageState, BuildError> {
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
                    base: "scratch".into(),
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
                let mut s = self
                    .built_stage(*i, stage.index)
                    .map_err(|e| BuildError::at(&stage.from, e))?
                    .expect("a stage's base is an earlier stage");
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
        match self.seams.images {
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

    /// Builds `stage`, from its base through its steps.
    pub(super) fn build_stage(&self, stage: &Stage) -> Result<StageState, BuildError> {
        let mut names = StepNames::new(stage, self.plan.single_stage);
        // BuildKit makes a vertex of the base only when it is an image to get, and one for
        // all the stages on the same image: shown once, by the first stage to get it.
        let mut state = if let Base::Image(image) = &stage.base {
            // BuildKit names it by the normalised reference, with no tag it was not given.
            let (shown, image) = match Reference::parse(image) {
                Ok(r) => {
                    let tagged = image.rsplit('/').next().is_some_and(|l| l.contains(':'))
                        || image.contains('@');
                    let shown = if tagged {
                        r.to_string()
                    } else {
                        r.repository()
                    };
                    (shown, r.to_string())
                }
                Err(_) => (image.clone(), image.clone()),
            };
            let name = names.next(&format!("FROM {shown}"));
            self.fetch_step(image, &name, || self.base_state(stage))?
        } else {
            self.base_state(stage)?
        };
        state.no_cache = self.opts.no_cache_stages.iter().any(|f| {
            stage.name.as_deref() == Some(f.to_lowercase().as_str())
                || f.parse::<usize>() == Ok(stage.index)
        });
        // RUN steps' commits run beside the steps after them (`pipeline`), on threads
        // of this scope.
        std::thread::scope(|scope| {
            let mut stage_run = StageRun::new(names, stage.index, scope);
            state = self.onbuild(state, stage, &mut stage_run)?;
            for ins in &stage.steps {
                state = self.step(state, ins, &mut stage_run)?;
            }
            // What reads the stage sees durable layers only.
            state = self.settle(state, &mut stage_run)?;
            // Stages that build on it or copy from it read its files through an image: a
            // stage with no layer step (scratch and metadata only) has none yet.
            if state.image.is_none() {
                state.image = Some(self.write(&state).map_err(store_err)?);
            }
            Ok(state)
        })
    }

    /// Gets the image `image` (its full reference) by `get`: shown as the step `name` by
    /// the first stage or `--from` of the build to get it, as BuildKit shows one FROM step
    /// for all of them; silently by the others.
    fn fetch_step<T, E>(
        &self,
        image: String,
        name: &str,
        get: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        if !self.schedule.first_to_show(image) {
            return get();
        }
        let v = self.next_vertex();
        let t = Instant::now();
        self.progress.event(Event::Start { vertex: v, name });
        let got = get()?;
        self.progress.event(Event::Done {
            vertex: v,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(got)
    }

    /// Stage `i` as built, for a step of stage `reader`: waited for while it builds; an
    /// earlier stage the plan did not include (an ONBUILD trigger's source) built now.
    /// None for a stage no step before can read.
    pub(super) fn built_stage(
        &self,
        i: usize,
        reader: usize,
    ) -> Result<Option<StageState>, ErrorKind> {
        self.schedule
            .stage(i, reader, || self.build_stage(&self.plan.stages[i]))
            .map_err(|e| {
                // A failure of the stage built here is the build's, at its own line;
                // this step was only waiting for it.
                if matches!(e.kind, ErrorKind::Canceled) {
                    e.kind
                } else {
                    self.schedule.fail(e);
                    ErrorKind::Canceled
                }
            })
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

    pub(super) fn step<'scope>(
        &'scope self,
        mut state: StageState,
        ins: &Instruction,
        stage_run: &mut StageRun<'scope, '_>,
    ) -> Result<StageState, BuildError> {
        // Another stage failed: this one stops here.
        self.schedule.check()?;
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
            Command::Run(run) => {
                let name = stage_run.names.next(&self.shown(&state, ins));
                self.run_step(state, ins, run, &name, stage_run)
            }
            Command::Copy(c) => {
                // COPY writes on a view of the stage's image.
                let state = self.settle(state, stage_run)?;
                let inputs = CopyInputs::of_copy(c);
                let from = match inputs.from {
                    None => copy::Source::Context(self.opts.context.clone()),
                    Some(f) => self
                        .source_image(f, stage_run.reader)
                        .map_err(|e| BuildError::at(ins, e))?,
                };
                let name = stage_run.names.next(&self.shown(&state, ins));
                self.copy_step(state, ins, &name, from, inputs.files, &inputs.flags)
            }
            Command::Add(a) => {
                let state = self.settle(state, stage_run)?;
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
                let name = stage_run.names.next(&self.shown(&state, ins));
                self.copy_step(state, ins, &name, from, inputs.files, &inputs.flags)
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
                    // WORKDIR looks in a view of the stage's image.
                    let state = self.settle(state, stage_run)?;
                    // BuildKit makes a directory (a vertex, numbered) for any but `/`.
                    let name = (state.workdir() != "/")
                        .then(|| stage_run.names.next(&self.shown(&state, ins)));
                    return self.workdir_step(state, ins, name.as_deref(), key, created_by);
                }
                self.history(&mut state, created_by, true);
                state.key = key;
                Ok(state)
            }
        }
    }

    /// An instruction as BuildKit names its step: the variables in scope expanded, unset
    /// ones and quotes left as written (its `processCmdEnv`); as written if that fails.
    fn shown(&self, state: &StageState, ins: &Instruction) -> String {
        let mut lex = Lexer::new(self.plan.escape);
        lex.raw_quotes = true;
        lex.skip_unset_env = true;
        let text = ins.original.trim();
        lex.process_word(text, &state.scope())
            .unwrap_or_else(|_| text.to_string())
    }

    /// ONBUILD: the base image's triggers run first, as instructions of this stage, and
    /// the stage's image does not pass them on.
    pub(super) fn onbuild<'scope>(
        &'scope self,
        mut state: StageState,
        stage: &Stage,
        stage_run: &mut StageRun<'scope, '_>,
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
                // Numbered on from the stage's steps, beyond their count, as BuildKit
                // 0.8 numbers a trigger's steps.
                state = self.step(state, &ins, stage_run)?;
            }
        }
        Ok(state)
    }

    /// A `--from` value read by a step of stage `reader`: a stage (waited for while it
    /// builds), or an image in the store.
    pub(super) fn source_image(
        &self,
        from: &str,
        reader: usize,
    ) -> Result<copy::Source, ErrorKind> {
        let stage = self
            .plan
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(from.to_lowercase().as_str()))
            .or_else(|| from.parse::<usize>().ok());
        if let Some(i) = stage {
            let s = self.built_stage(i, reader)?.ok_or_else(|| {
                ErrorKind::from(ImageError::StageNotBuilt {
                    stage: from.to_string(),
                })
            })?;
            let image = s.image.clone().expect("a built stage has its image");
            return Ok(copy::Source::Image(Box::new(image), s.key));
        }
        // BuildKit reads an image `--from` through a stage of its own, shown as one FROM
        // step (shared with the stages on that image), by its full name, unnumbered.
        let full = Reference::parse(from).map_or_else(|_| from.to_string(), |r| r.to_string());
        let name = format!("FROM {full}");
        let image = self.fetch_step(full, &name, || self.image_named(from))?;
        let key = CacheKey::Image {
            manifest: &image.manifest_digest,
        }
        .digest();
        Ok(copy::Source::Image(Box::new(image), key))
    }
}

/// BuildKit's step names: `[stage k/n] INSTRUCTION`, where `n` counts the steps BuildKit
/// makes numbered vertices of (a FROM of an image; RUN, COPY, ADD, WORKDIR) and `k` is
/// this one's place among them (an ONBUILD trigger's steps are numbered on, past `n`, as
/// BuildKit 0.8 does); `stage` is the `AS` name or `stage-N`, left out when BuildKit sees
/// one stage alone ([`Plan::single_stage`]); no prefix at all when nothing is counted.
pub(super) struct StepNames {
    stage: Option<String>,
    total: usize,
    done: usize,
}

impl StepNames {
    pub(super) fn new(stage: &Stage, only_stage: bool) -> StepNames {
        let base = usize::from(matches!(stage.base, Base::Image(_)));
        let steps = stage
            .steps
            .iter()
            .filter(|i| {
                matches!(
                    i.command,
                    Command::Run(_) | Command::Copy(_) | Command::Add(_) | Command::Workdir(_)
                )
            })
            .count();
        StepNames {
            stage: (!only_stage).then(|| stage.display_name()),
            total: base + steps,
            done: 0,
        }
    }

    /// The next numbered step's name.
    pub(super) fn next(&mut self, text: &str) -> String {
        if self.total == 0 {
            return text.to_string();
        }
        self.done += 1;
        // The index is padded to the total's width, as Go's `%*d`.
        let width = self.total.to_string().len();
        match &self.stage {
            Some(s) => format!("[{s} {:>width$}/{}] {text}", self.done, self.total),
            None => format!("[{:>width$}/{}] {text}", self.done, self.total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str, stage: usize) -> StepNames {
        let df = lb_parser::parse(text.as_bytes()).unwrap();
        let p = crate::plan::plan(&df, &BTreeMap::new(), None).unwrap();
        StepNames::new(&p.stages[stage], p.single_stage)
    }

    #[test]
    fn steps_are_numbered_as_buildkit_numbers_them() {
        // FROM an image, WORKDIR, COPY, RUN count; ENV and USER do not.
        let mut n = names(
            "FROM busybox AS a\nENV X=1\nWORKDIR /w\nCOPY . /\nRUN x\nUSER u\nFROM scratch\nCOPY --from=a / /\n",
            0,
        );
        assert_eq!(n.next("FROM busybox"), "[a 1/4] FROM busybox");
        assert_eq!(n.next("WORKDIR /w"), "[a 2/4] WORKDIR /w");
        // A stage on scratch has no FROM step; an unnamed one is stage-N.
        let mut n = names("FROM busybox AS a\nFROM scratch\nCOPY --from=a / /\n", 1);
        assert_eq!(
            n.next("COPY --from=a / /"),
            "[stage-1 1/1] COPY --from=a / /"
        );
        // One stage alone: no stage name, named or not; a cache mount (a hidden stage on
        // scratch for BuildKit) or an image --from gives it one.
        let mut n = names("FROM busybox AS only\nRUN x\n", 0);
        assert_eq!(n.next("FROM busybox"), "[1/2] FROM busybox");
        let mut n = names("FROM busybox\nRUN --mount=type=cache,target=/c x\n", 0);
        assert_eq!(n.next("FROM busybox"), "[stage-0 1/2] FROM busybox");
        let mut n = names("FROM scratch\nCOPY --from=busybox / /\n", 0);
        assert_eq!(n.next("COPY"), "[stage-0 1/1] COPY");
        // Ten steps or more: the index padded to the total's width; past the total
        // (ONBUILD triggers) it goes on counting.
        let mut n = names(&format!("FROM busybox\n{}", "RUN x\n".repeat(11)), 0);
        assert_eq!(n.next("FROM busybox"), "[ 1/12] FROM busybox");
        for _ in 0..11 {
            n.next("RUN x");
        }
        assert_eq!(n.next("RUN y"), "[13/12] RUN y");
        // Nothing counted: no prefix.
        let mut n = names("FROM scratch\nENV A=b\n", 0);
        assert_eq!(n.next("ENV A=b"), "ENV A=b");
    }
}
