//! RUN steps: the step's argv (shell form, exec form, heredoc scripts), its environment,
//! mounts and network, its container started on an active snapshot of the stage's file
//! system whose changes become the layer, and its output streamed as progress events.

use super::pipeline::StageRun;
use super::*;

/// A RUN heredoc that is a script (`#!`): its name and body, run as `/dev/pipes/NAME`.
type Script = (String, String);

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

impl Builder<'_> {
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
        run: &RunInputs<'_>,
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
        for doc in run.heredocs {
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

    pub(super) fn run_step<'scope>(
        &'scope self,
        mut state: StageState,
        ins: &Instruction,
        run: &lb_parser::Run,
        name: &str,
        stage_run: &mut StageRun<'scope, '_>,
    ) -> Result<StageState, BuildError> {
        // Mounts are set up against a view of the stage's image: its layers settled.
        if !run.mounts.is_empty() {
            state = self.settle(state, stage_run)?;
        }
        // What reaches the key is read from the instruction through these only.
        let run = &RunInputs::of(run);
        let (args, script) = self
            .run_args(&state, run)
            .map_err(|m| BuildError::invalid(ins, m))?;
        let mut env = Self::run_env(&state);
        let user = state.config_str("User");
        let cwd = state.workdir();
        let network_none = match run.network {
            Some(lb_parser::NetworkMode::None) => true,
            Some(lb_parser::NetworkMode::Host) if !self.opts.allow_host_network => {
                return Err(BuildError::invalid(
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
            self.seams.network
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
        // Only mounts need the step's directory before its key is known: a step without
        // them that hits the cache makes none (its mkdir and rmdir, with ext4's discard,
        // were most of a cached step's time).
        let early_dir = if run.mounts.is_empty() {
            None
        } else {
            Some(self.run_step_dir()?)
        };
        // The image's file system, to tell the mount points mounts create from the image's
        // own files: needed now for mounts (they are part of the key); without them, only
        // once the step's snapshot is known to hold more than its changes (below).
        let image_view = if run.mounts.is_empty() {
            None
        } else {
            Some(self.view(state.image.as_ref())?)
        };
        let prepared = match (&early_dir, &image_view) {
            (Some(dir), Some(view)) => {
                self.run_mounts(&state, ins, run, dir, &cwd, view, stage_run.reader)?
            }
            _ => crate::mounts::Prepared::default(),
        };
        let created_by = format!("RUN {} # buildkit", run_history(&state, &args));
        let cache_key = CacheKey::Run {
            parent: &state.key,
            run: RunKey {
                argv: &args,
                script: script.as_ref().map(|(n, b)| (n.as_str(), b.as_str())),
                env: &env,
                user: &user,
                cwd: &cwd,
                network_none,
                mounts: &prepared.key,
            },
        };
        let key = self.step_key(&cache_key, &state, &created_by, Vec::new());
        let v = self.next_vertex();
        self.progress.event(Event::Start { vertex: v, name });
        let t = Instant::now();
        if let Some(hit) = self.cached(&state, key, v)? {
            if let Some(dir) = &early_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            // The commit in flight still becomes its layer's snapshot.
            self.settle(state, stage_run)?;
            return Ok(hit);
        }
        // Held to the step's end, its commit included (`--jobs`).
        let _job = self.schedule.job()?;
        // A cache mount this build made empty gets what a cache outside the store holds
        // for it, before the first step that runs with it.
        for (id, cache_dir, fresh) in &prepared.caches {
            if *fresh && let Some(cache) = self.seams.cache {
                cache.restore_mount(id, cache_dir);
            }
        }
        let dir = match early_dir {
            Some(dir) => dir,
            None => self.run_step_dir()?,
        };
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| BuildError::io("preparing a step", &rootfs, e))?;
        let (mut snapshot, mut mounts) =
            self.snapshots.prepare(self.store, state.image.as_ref())?;
        // The previous RUN's commit in flight: its upper dir goes on top of the image's
        // layers. A snapshot that is no stack of layers cannot take it: settled first.
        if let Some(pending) = stage_run.pending_upper() {
            match &mut mounts {
                lb_layerstore::Mounts::Overlay { lowers, .. } => {
                    lowers.insert(0, pending.to_path_buf())
                }
                // (The first snapshot, unused, goes when the build ends.)
                _ => {
                    state = self.settle(state, stage_run)?;
                    (snapshot, mounts) =
                        self.snapshots.prepare(self.store, state.image.as_ref())?;
                }
            }
        }
        // The step's own upper dir can be stacked the same way for the next RUN.
        let stackable = matches!(mounts, lb_layerstore::Mounts::Overlay { .. });
        let upper = mounts
            .writable_dir()
            .expect("an active snapshot is writable")
            .to_path_buf();
        // An overlay's upper dir holds the step's changes alone: nothing of the image there
        // is to be told from a mount point it made (the step's dir has no /etc). A tree
        // holds the image too (/etc/hosts there is the image's, not a stub).
        let lower_view = match image_view {
            Some(view) => view,
            None if matches!(mounts, lb_layerstore::Mounts::Overlay { .. }) => dir.clone(),
            None => self.view(state.image.as_ref())?,
        };
        // Not synced at unmount (overlay's `volatile`): the step's layer blob is written
        // durably, and the store marks the snapshot its changes become as unsynced until it
        // is (a directory bound as the root has no such option).
        let layers = lb_runtime::Rootfs::of_mounts(mounts, true).map_err(|m| {
            store_err(lb_layerstore::Error::Snapshot {
                key: format!("{m:?}"),
                reason: "an active snapshot that is read-only".into(),
            })
        })?;
        env.extend(prepared.env.iter().cloned());
        self.cache_mounts.lock().expect("cache mounts").extend(
            prepared
                .caches
                .iter()
                .map(|(id, dir, _)| (id.clone(), dir.clone())),
        );
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
        .map_err(|e| BuildError::io("writing a step's /etc files", &dir, e))?;
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
            write().map_err(|e| BuildError::io("writing a RUN heredoc", &host, e))?;
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
        let user = (!user.is_empty()).then_some(user);
        if let Some(net) = bridged {
            let ns = net
                .attach(&id)
                .map_err(|e| BuildError::at(ins, ErrorKind::network(e)))?;
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
        if let Err(e) = ran {
            // Killed because another step failed first: canceled, not failed.
            if self.schedule.check().is_err() {
                self.progress.event(Event::Canceled { vertex: v });
                return Err(BuildError::new(ErrorKind::Canceled));
            }
            self.progress.event(Event::Error {
                vertex: v,
                message: &e.kind.to_string(),
            });
            return Err(e);
        }
        crate::mounts::remove_stubs(&upper, &lower_view, &stubs);
        drop(prepared);
        if !stackable {
            let state = self.settle(state, stage_run)?;
            let changes = StepChanges::Snapshot(snapshot);
            return self.finish_layer(state, &dir, &changes, key, created_by, v, t);
        }
        // The step is done; its layer is written while the next steps run (`pipeline`).
        let state =
            self.commit_in_flight(state, stage_run, snapshot, upper, dir, key, created_by)?;
        self.progress.event(Event::Done {
            vertex: v,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(state)
    }

    /// RUN's mounts, their words expanded with the stage's variables.
    #[allow(clippy::too_many_arguments)]
    fn run_mounts(
        &self,
        state: &StageState,
        ins: &Instruction,
        run: &RunInputs<'_>,
        dir: &Path,
        cwd: &str,
        lower_view: &Path,
        reader: usize,
    ) -> Result<crate::mounts::Prepared, BuildError> {
        let lex = Lexer::new('\\');
        let scope = state.scope();
        let expand = |w: &str| lex.process_word(w, &scope).map_err(|e| e.to_string());
        let mut mounts = Vec::new();
        for m in run.mounts {
            mounts.push(
                lb_parser::parse_mount(&m.spec, &expand)
                    .map_err(|e| BuildError::invalid(ins, e))?,
            );
        }
        let source_of = |from: Option<&str>| -> Result<crate::mounts::MountSource, ErrorKind> {
            match from {
                None => Ok(crate::mounts::MountSource::Context(
                    self.opts.context.clone(),
                    self.context.clone(),
                )),
                Some(f) => match self.source_image(f, reader)? {
                    copy::Source::Image(image, key) => {
                        let view = self.view(Some(&image)).map_err(|e| e.kind)?;
                        Ok(crate::mounts::MountSource::Image(view, key))
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
        crate::mounts::prepare(&mounts, &menv, &source_of).map_err(|e| e.at(ins))
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
        layers: lb_runtime::Rootfs,
        rootfs: PathBuf,
        user: Option<String>,
    ) -> Result<(), BuildError> {
        let (out_r, out_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| ErrorKind::Sys {
                call: "pipe",
                errno,
            })?;
        let err_w = out_w.try_clone().map_err(|source| ErrorKind::Io {
            what: "pipe",
            path: None,
            source,
        })?;
        let devnull: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|source| ErrorKind::Io {
                what: "opening /dev/null",
                path: Some("/dev/null".into()),
                source,
            })?
            .into();
        let launch = lb_runtime::Launch {
            id,
            spec,
            layers,
            rootfs,
            user,
            group_add: Vec::new(),
            seccomp: true,
            init: false,
            // Nothing but this build reads or waits for the step: a killed lb takes it
            // with it (`lb_runtime`'s parent_death.rs: PR_SET_PDEATHSIG on the step's PID 1).
            die_with_caller: true,
            stdio: lb_runtime::Stdio::Fds {
                stdin: devnull,
                stdout: out_w,
                stderr: err_w,
            },
        };
        let started = lb_runtime::start(&launch);
        // The container holds its ends of the pipe now: ours would keep it open.
        drop(launch);
        // Killed if another step fails while it runs.
        let _tracked = started
            .as_ref()
            .ok()
            .map(|c| self.schedule.process(c.pid()));
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
        let code = code.map_err(|e| BuildError::at(ins, ErrorKind::Runtime(e)))?;
        if code != 0 {
            let tail: Vec<String> = tail.into_inner().expect("tail").into();
            return Err(BuildError::at(
                ins,
                ErrorKind::Step {
                    command: args.join(" "),
                    exit_code: code,
                    tail,
                },
            ));
        }
        Ok(())
    }
}
