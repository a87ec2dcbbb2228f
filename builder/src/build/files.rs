//! Steps that write files with no container: COPY and ADD (sources from the context, a
//! stage or an image, heredocs, fetched URLs) and WORKDIR's directory.

use super::*;

impl Builder<'_> {
    /// WORKDIR makes its directory when the image lacks it, as BuildKit does: a layer
    /// with the directory (and parents), metadata from the image where it has them.
    pub(super) fn workdir_step(
        &self,
        mut state: StageState,
        ins: &Instruction,
        name: Option<&str>,
        key: Digest,
        created_by: String,
    ) -> Result<StageState, BuildError> {
        let view = self.view(state.image.as_ref())?;
        // Where the image's links lead, inside it (a WORKDIR through a link makes the
        // directory at its target, as BuildKit does).
        let root = lb_rootpath::Root::open(&view)
            .map_err(|e| BuildError::io("opening a step's view", &view, e))?;
        let dir = root
            .resolve(Path::new(&state.workdir()), true)
            .map_err(|source| {
                BuildError::at(
                    ins,
                    ErrorKind::Workdir {
                        workdir: state.workdir(),
                        source,
                    },
                )
            })?;
        let exists = root.metadata(&dir).is_ok_and(|md| md.is_dir());
        if dir == Path::new("/") || exists {
            self.history(&mut state, created_by, true);
            state.key = key;
            return Ok(state);
        }
        let v = self.next_vertex();
        let name = name.unwrap_or_else(|| ins.original.trim());
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
            .map_err(|e| e.at(ins))?;
        self.files_step(state, v, t, key, created_by, |upper| {
            copy::make_dirs(upper, &view, &dir, user).map_err(|e| e.at(ins))
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_step(
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
                .map_err(|e| BuildError::invalid(ins, e.to_string()))
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
            copy::Source::Context(dir) => (dir.clone(), SourceKey::Context),
            copy::Source::Image(image, key) => (self.view(Some(image))?, SourceKey::Image(*key)),
        };
        let target = self.view(state.image.as_ref())?;
        // Heredoc sources and fetched URLs become files of their own, in a directory made
        // only for them.
        let inline_dir =
            if files.inline.is_empty() && !sources.iter().any(|s| crate::fetch::is_url(s)) {
                PathBuf::new()
            } else {
                self.step_dir()?
            };
        // Heredoc sources are named by their delimiters.
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
            let dir = inline_dir.join(format!("heredoc-{n}"));
            let path = dir.join(file_name);
            let write = || -> std::io::Result<()> {
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(&dir)?;
                std::fs::write(&path, &content)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            };
            write().map_err(|e| BuildError::io("writing a heredoc", &path, e))?;
            inline.push(path);
        }
        // ADD's URLs are fetched (every build: their content is the key) into files too.
        let urls: Vec<String> = sources
            .iter()
            .filter(|s| crate::fetch::is_url(s))
            .cloned()
            .collect();
        if !urls.is_empty() && checksum.is_some() && urls.len() > 1 {
            return Err(BuildError::invalid(
                ins,
                "--checksum takes a single URL source",
            ));
        }
        sources.retain(|s| !crate::fetch::is_url(s));

        for url in &urls {
            inline.push(
                crate::fetch::fetch(url, &inline_dir, checksum, self.seams.urls)
                    .map_err(|m| BuildError::at(ins, ErrorKind::Fetch(m)))?,
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
                .map_err(|e| copy::CopyError::Exclude(e).at(ins))?;
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
            .map_err(|e| e.at(ins))?;
        if let copy::Source::Image(image, _) = &from {
            let chain = image
                .chain_id()
                .map_err(store_err)?
                .map_or_else(|| "empty".to_string(), |c| c.to_string());
            op = op.with_content_id(format!("{chain} exclude {patterns:?}"));
        }
        let mut listing = Vec::new();
        let content = op
            .digest(&self.digests, Some(&mut listing))
            .map_err(|e| e.at(ins))?;
        let cache_key = CacheKey::Copy {
            parent: &state.key,
            content: &content,
            from: from_key,
        };
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
        let key = self.step_key(&cache_key, &state, &created_by, listing);
        self.files_step(state, v, t, key, created_by, |upper| {
            op.write(upper).map_err(|e| e.at(ins))
        })
    }
}
