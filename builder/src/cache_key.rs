//! The build cache's keys: one type for every kind of step, as BuildKit's solver keys each
//! vertex by its operation and inputs. A key is its parent's key and what the step reads;
//! its digest is made here and nowhere else, so that no step can hash a shape of its own.
//!
//! The digests are those of the JSON shapes lb has always hashed (the tests below pin them
//! for fixed inputs): the keys recorded in existing stores stay valid. Each shape is written
//! with its names in sorted order, which is also the order `serde_json`'s default map gives
//! them, so the bytes do not depend on whether its `preserve_order` feature is on.
//!
//! What RUN, COPY and ADD take from the parser is read here field by field, with no `..`
//! (`RunInputs`, `CopyInputs`): a flag added to the parser's structs does not compile until
//! it is decided here whether it changes the key. A test holds the parser's fields and
//! the key's account of them (in it, or left out and why: `FLAGS_NOT_IN_KEY`) together.

use std::path::PathBuf;

use lb_layerstore::Digest;
use serde_json::{Value, json};

/// What names the files a COPY or a bind mount reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKey {
    /// The build context: its files' digests are in the step's own part of the key.
    Context,
    /// A stage's or an image's file system, by the key that names its content.
    Image(Digest),
}

/// What a RUN mount adds to its step's key. Secrets add nothing: a secret is never part
/// of a key (or a layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountKey {
    /// A cache mount: where it is and which cache (not its content, which steps share).
    Cache {
        target: PathBuf,
        id: String,
    },
    /// A bind mount: where, from what, and the digest of the tree it shows.
    Bind {
        target: PathBuf,
        from: SourceKey,
        source: String,
        digest: Digest,
        read_only: bool,
    },
    Tmpfs {
        target: PathBuf,
    },
}

/// What a RUN step's process is given, once the instruction is expanded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunKey<'a> {
    pub argv: &'a [String],
    /// A heredoc run as a script file: its name and body.
    pub script: Option<(&'a str, &'a str)>,
    pub env: &'a [(String, String)],
    pub user: &'a str,
    pub cwd: &'a str,
    /// Whether the step had no network. Host and bridge networks give the same key: what
    /// a step fetches is not an input lb can know.
    pub network_none: bool,
    pub mounts: &'a [MountKey],
}

/// A step's cache key. `digest` is the name the store records its image under.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CacheKey<'a> {
    /// The empty base (`FROM scratch`).
    Scratch,
    /// An image from the store or a registry (`FROM`, `--from`), by its manifest.
    Image {
        manifest: &'a Digest,
    },
    /// ARG: the names declared and the values they got (the ones declared before are in
    /// the parent's key).
    Arg {
        parent: &'a Digest,
        declared: &'a [(&'a str, Option<&'a str>)],
    },
    /// A metadata step (ENV, LABEL, WORKDIR, CMD...): its history text and exactly what it
    /// changed in the config, which with the parent's config determines the config after.
    Metadata {
        parent: &'a Digest,
        created_by: &'a str,
        change: &'a Value,
    },
    /// The base image's ONBUILD triggers taken out of the config: another config.
    OnbuildConsumed {
        parent: &'a Digest,
    },
    /// COPY or ADD: the digest of everything the copy writes, and where it reads.
    Copy {
        parent: &'a Digest,
        content: &'a Digest,
        from: SourceKey,
    },
    Run {
        parent: &'a Digest,
        run: RunKey<'a>,
    },
}

impl SourceKey {
    fn json(&self) -> Value {
        match self {
            SourceKey::Context => json!("context"),
            SourceKey::Image(key) => json!(key.to_string()),
        }
    }
}

impl MountKey {
    fn json(&self) -> Value {
        match self {
            MountKey::Cache { target, id } => json!({ "cache": target, "id": id }),
            MountKey::Bind {
                target,
                from,
                source,
                digest,
                read_only,
            } => json!({
                "bind": target,
                "digest": digest.to_string(),
                "from": from.json(),
                "ro": read_only,
                "source": source,
            }),
            MountKey::Tmpfs { target } => json!({ "tmpfs": target }),
        }
    }
}

impl CacheKey<'_> {
    pub(crate) fn digest(&self) -> Digest {
        self.digest_and_shape().0
    }

    /// The digest, and the document it hashes ([`CacheKey::shape`]), made once.
    pub(crate) fn digest_and_shape(&self) -> (Digest, Value) {
        let shape = self.shape();
        let digest = match self {
            // Older than the JSON shapes: the bytes themselves.
            CacheKey::Scratch => Digest::of(b"scratch"),
            _ => Digest::of(&serde_json::to_vec(&shape).expect("a key's JSON")),
        };
        (digest, shape)
    }

    /// What the digest hashes: the key's inputs as a JSON document (`--explain` compares
    /// two of them).
    pub(crate) fn shape(&self) -> Value {
        match self {
            CacheKey::Scratch => json!("scratch"),
            CacheKey::Image { manifest } => json!({ "image": manifest.to_string() }),
            CacheKey::Arg { parent, declared } => {
                json!({ "arg": declared, "parent": parent.to_string() })
            }
            CacheKey::Metadata {
                parent,
                created_by,
                change,
            } => json!({
                "change": change,
                "instruction": created_by,
                "parent": parent.to_string(),
            }),
            CacheKey::OnbuildConsumed { parent } => {
                json!({ "onbuild": "consumed", "parent": parent.to_string() })
            }
            CacheKey::Copy {
                parent,
                content,
                from,
            } => json!({
                "copy": content.to_string(),
                "from": from.json(),
                "parent": parent.to_string(),
            }),
            CacheKey::Run { parent, run } => {
                let RunKey {
                    argv,
                    script,
                    env,
                    user,
                    cwd,
                    network_none,
                    mounts,
                } = run;
                json!({
                    "cwd": cwd,
                    "env": env,
                    "mounts": mounts.iter().map(MountKey::json).collect::<Vec<_>>(),
                    "network_none": network_none,
                    "parent": parent.to_string(),
                    "run": argv,
                    "script": script,
                    "user": user,
                })
            }
        }
    }
}

/// The parts of a RUN instruction that reach its key (through the argv, the mounts and
/// the network), taken from the parser's `Run` field by field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunInputs<'a> {
    pub command: &'a lb_parser::CommandLine,
    pub heredocs: &'a [lb_parser::Heredoc],
    pub mounts: &'a [lb_parser::Mount],
    pub network: Option<lb_parser::NetworkMode>,
}

impl<'a> RunInputs<'a> {
    pub(crate) fn of(run: &'a lb_parser::Run) -> RunInputs<'a> {
        // No `..`: see the module's doc.
        let lb_parser::Run {
            command,
            heredocs,
            mounts,
            network,
            // Not in the key: lb runs every step sandboxed.
            security: _,
        } = run;
        RunInputs {
            command,
            heredocs,
            mounts,
            network: *network,
        }
    }
}

/// What COPY and ADD flags shape the files: all of it reaches the key through the digest
/// of what the copy writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyFlags<'a> {
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    /// ADD: local archives are unpacked.
    pub unpack: bool,
    pub parents: bool,
    pub excludes: &'a [String],
    /// ADD `--checksum`: what a fetched URL must hash to.
    pub checksum: Option<&'a str>,
}

/// A COPY or ADD as far as its key goes, taken from the parser's `Copy` or `Add` field by
/// field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyInputs<'a> {
    /// COPY `--from`: a stage or an image instead of the context.
    pub from: Option<&'a str>,
    pub files: &'a lb_parser::Sources,
    pub flags: CopyFlags<'a>,
}

impl<'a> CopyInputs<'a> {
    pub(crate) fn of_copy(copy: &'a lb_parser::Copy) -> CopyInputs<'a> {
        // No `..`: see the module's doc.
        let lb_parser::Copy {
            files,
            from,
            chown,
            chmod,
            // Not in the key: lb writes the same layer with or without it.
            link: _,
            parents,
            excludes,
        } = copy;
        CopyInputs {
            from: from.as_deref(),
            files: sources(files),
            flags: CopyFlags {
                chown: chown.as_deref(),
                chmod: chmod.as_deref(),
                unpack: false,
                parents: *parents,
                excludes,
                checksum: None,
            },
        }
    }

    pub(crate) fn of_add(add: &'a lb_parser::Add) -> CopyInputs<'a> {
        // No `..`: see the module's doc.
        let lb_parser::Add {
            files,
            chown,
            chmod,
            // Not in the key: lb writes the same layer with or without it.
            link: _,
            // Not in the key: git sources are refused.
            keep_git_dir: _,
            // Not in the key (it checks a fetched file, whose content is), but read.
            checksum,
            excludes,
            unpack,
        } = add;
        CopyInputs {
            from: None,
            files: sources(files),
            flags: CopyFlags {
                chown: chown.as_deref(),
                chmod: chmod.as_deref(),
                unpack: *unpack != Some(false),
                parents: false,
                excludes,
                checksum: checksum.as_deref(),
            },
        }
    }
}

/// COPY's and ADD's sources and destination, every field of which the copy reads but
/// `json`.
fn sources(files: &lb_parser::Sources) -> &lb_parser::Sources {
    // No `..`: see the module's doc.
    let lb_parser::Sources {
        sources: _,
        inline: _,
        dest: _,
        // Not in the key: how the sources were written, not what they are.
        json: _,
    } = files;
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of the parser's RUN, COPY and ADD (as they serialise: `command` is `args` and
    /// `shell_form`, `files` is `sources`, `inline`, `dest` and `json`) that are not part of a
    /// step's key, and why. Every other field is.
    const FLAGS_NOT_IN_KEY: &[(&str, &str, &str)] = &[
        (
            "RUN",
            "security",
            "lb runs every step sandboxed (`--allow security.insecure` is refused), so the mode \
             changes nothing the step does",
        ),
        (
            "COPY",
            "link",
            "lb writes the same layer with or without --link",
        ),
        (
            "COPY",
            "json",
            "how the sources were written, not what they are",
        ),
        (
            "ADD",
            "link",
            "lb writes the same layer with or without --link",
        ),
        (
            "ADD",
            "keep_git_dir",
            "git sources are refused; it has nothing to change",
        ),
        (
            "ADD",
            "checksum",
            "it only checks a fetched file, whose content is in the key",
        ),
        (
            "ADD",
            "json",
            "how the sources were written, not what they are",
        ),
    ];

    fn parent() -> Digest {
        Digest::of(b"scratch")
    }

    fn pin(key: CacheKey<'_>, expected: &str) {
        assert_eq!(key.digest().to_string(), expected, "{key:?}");
    }

    fn mounts() -> Vec<MountKey> {
        vec![
            MountKey::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
            },
            MountKey::Bind {
                target: "/src".into(),
                from: SourceKey::Context,
                source: "/".into(),
                digest: Digest::of(b"bind"),
                read_only: true,
            },
            MountKey::Tmpfs {
                target: "/tmp".into(),
            },
        ]
    }

    fn env() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/bin".into()), ("A".into(), "1".into())]
    }

    fn argv() -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]
    }

    // The expected digests were computed with the code before this module (ad-hoc
    // `json!` shapes hashed in each step) for the same inputs: a store's keys stay valid.

    #[test]
    fn pinned_digest_scratch_and_image() {
        assert_eq!(CacheKey::Scratch.digest(), Digest::of(b"scratch"));
        pin(
            CacheKey::Image {
                manifest: &Digest::of(b"manifest"),
            },
            "sha256:6318723cb24879ffbf66b4c29a09eed5d08711fdbc5fb8f0a7d7a9a5171b6823",
        );
    }

    #[test]
    fn pinned_digest_arg() {
        pin(
            CacheKey::Arg {
                parent: &parent(),
                declared: &[("A", Some("1")), ("B", None)],
            },
            "sha256:fb28bd6fcf78aa2051404966e83a4bd7c782ce48b4a6eb1ab875f8fa663fca50",
        );
    }

    #[test]
    fn pinned_digest_metadata_and_onbuild() {
        pin(
            CacheKey::Metadata {
                parent: &parent(),
                created_by: "ENV C=2",
                change: &json!({"Env": [["C", "2"]]}),
            },
            "sha256:6f59922f7ef5252d26fc43c7b9b9160b88ac1676da84a9448c5a3390dce40f94",
        );
        pin(
            CacheKey::OnbuildConsumed { parent: &parent() },
            "sha256:411b8acdbcc33cca263615f5d7a3aec9ee3dd3b80858b8336119f8008124c162",
        );
    }

    #[test]
    fn pinned_digest_copy() {
        pin(
            CacheKey::Copy {
                parent: &parent(),
                content: &Digest::of(b"copy"),
                from: SourceKey::Context,
            },
            "sha256:d22fbe04d5a493aa6b3da222ea965cfa63609afa189dbe70aa2e68fba8d38282",
        );
        pin(
            CacheKey::Copy {
                parent: &parent(),
                content: &Digest::of(b"copy"),
                from: SourceKey::Image(Digest::of(b"stage")),
            },
            "sha256:32811522652cbba75439ed54f7f451408db8d56d178e3f0d8877b73d67666f25",
        );
    }

    #[test]
    fn pinned_digest_run() {
        pin(
            CacheKey::Run {
                parent: &parent(),
                run: RunKey {
                    argv: &argv(),
                    script: None,
                    env: &env(),
                    user: "",
                    cwd: "/",
                    network_none: false,
                    mounts: &[],
                },
            },
            "sha256:4820e30293dc4a1ec8063e6c5c39d1c5e0a268d97d8a167f99ef7fe75560d773",
        );
        pin(
            CacheKey::Run {
                parent: &parent(),
                run: RunKey {
                    argv: &["/dev/pipes/EOF".into()],
                    script: Some(("EOF", "#!/bin/sh\necho hi\n")),
                    env: &env(),
                    user: "nobody",
                    cwd: "/app",
                    network_none: true,
                    mounts: &mounts(),
                },
            },
            "sha256:8aaeb3dccbbc669a1cf394d71fa2a75cedc259164569c85f83350627858c6784",
        );
    }

    /// Each input of a RUN key changes its digest (so each RUN flag that reaches one of
    /// them does).
    #[test]
    fn every_run_input_changes_the_key() {
        let (argv, env, mounts) = (argv(), env(), mounts());
        let base = RunKey {
            argv: &argv,
            script: None,
            env: &env,
            user: "",
            cwd: "/",
            network_none: false,
            mounts: &mounts,
        };
        let other_argv = vec!["true".to_string()];
        let other_env = vec![("A".to_string(), "2".to_string())];
        let mut other_mounts = mounts.clone();
        other_mounts.pop();
        let mut read_write = mounts.clone();
        if let MountKey::Bind { read_only, .. } = &mut read_write[1] {
            *read_only = false;
        }
        let variants = [
            RunKey {
                argv: &other_argv,
                ..base
            },
            RunKey {
                script: Some(("EOF", "echo")),
                ..base
            },
            RunKey {
                env: &other_env,
                ..base
            },
            RunKey {
                user: "nobody",
                ..base
            },
            RunKey {
                cwd: "/app",
                ..base
            },
            RunKey {
                network_none: true,
                ..base
            },
            RunKey {
                mounts: &other_mounts,
                ..base
            },
            RunKey {
                mounts: &read_write,
                ..base
            },
        ];
        let p = parent();
        let of = |run| CacheKey::Run { parent: &p, run }.digest();
        for v in variants {
            assert_ne!(of(v), of(base), "{v:?}");
        }
        let other_parent = Digest::of(b"other");
        assert_ne!(
            CacheKey::Run {
                parent: &other_parent,
                run: base
            }
            .digest(),
            of(base)
        );
    }

    /// The fields of a parsed instruction's struct, as the parser serialises it.
    fn fields(line: &str) -> Vec<String> {
        let df = lb_parser::parse(format!("FROM scratch\n{line}\n").as_bytes()).expect(line);
        let ins = df.instructions[1].command.clone();
        let value = match ins {
            lb_parser::Command::Run(r) => serde_json::to_value(r),
            lb_parser::Command::Copy(c) => serde_json::to_value(c),
            lb_parser::Command::Add(a) => serde_json::to_value(a),
            other => panic!("{other:?}"),
        }
        .expect("serialises");
        value
            .as_object()
            .expect("a struct")
            .keys()
            .cloned()
            .collect()
    }

    /// Every field of the parser's RUN, COPY and ADD is either one a step's key is made
    /// from (listed here by what it changes) or one `FLAGS_NOT_IN_KEY` explains.
    #[test]
    fn every_flag_is_in_the_key_or_said_not_to_be() {
        let in_key: &[(&str, &[&str])] = &[
            // The argv and script (`RunKey::argv`, `script`).
            ("RUN", &["args", "shell_form", "heredocs"]),
            // `RunKey::mounts`, `RunKey::network_none`.
            ("RUN", &["mounts", "network"]),
            // The digest of what the copy writes (`CacheKey::Copy::content`): which
            // files, where they land, their owner, mode and unpacking.
            (
                "COPY",
                &[
                    "sources", "inline", "dest", "chown", "chmod", "parents", "excludes",
                ],
            ),
            // `CacheKey::Copy::from` (and the content read from there).
            ("COPY", &["from"]),
            (
                "ADD",
                &[
                    "sources", "inline", "dest", "chown", "chmod", "excludes", "unpack",
                ],
            ),
        ];
        for (keyword, line) in [
            ("RUN", "RUN true"),
            ("COPY", "COPY a /b"),
            ("ADD", "ADD a /b"),
        ] {
            let mut listed: Vec<&str> = in_key
                .iter()
                .filter(|(k, _)| *k == keyword)
                .flat_map(|(_, f)| f.iter().copied())
                .chain(
                    FLAGS_NOT_IN_KEY
                        .iter()
                        .filter(|(k, _, _)| *k == keyword)
                        .map(|(_, f, _)| *f),
                )
                .collect();
            listed.sort_unstable();
            let mut fields = fields(line);
            fields.sort_unstable();
            assert_eq!(
                fields, listed,
                "{keyword}: each field is in the key or in FLAGS_NOT_IN_KEY, once"
            );
        }
    }

    /// What reaches the key from a parsed instruction differs when a keyed flag does.
    #[test]
    fn keyed_flags_reach_the_inputs() {
        let command = |line: &str| {
            let df = lb_parser::parse(format!("FROM scratch\n{line}\n").as_bytes()).expect(line);
            df.instructions[1].command.clone()
        };
        let run = |line: &str| match command(line) {
            lb_parser::Command::Run(r) => r,
            other => panic!("{other:?}"),
        };
        let plain = run("RUN true");
        let plain = RunInputs::of(&plain);
        let network = run("RUN --network=none true");
        assert_ne!(RunInputs::of(&network).network, plain.network);
        let mounted = run("RUN --mount=type=tmpfs,target=/t true");
        assert_ne!(RunInputs::of(&mounted).mounts.len(), plain.mounts.len());

        let copy = |line: &str| match command(line) {
            lb_parser::Command::Copy(c) => c,
            other => panic!("{other:?}"),
        };
        let plain = copy("COPY a /b");
        let plain = CopyInputs::of_copy(&plain);
        for line in [
            "COPY --from=x a /b",
            "COPY --chown=1 a /b",
            "COPY --chmod=700 a /b",
            "COPY --parents a /b",
            "COPY --exclude=c a /b",
        ] {
            let c = copy(line);
            let c = CopyInputs::of_copy(&c);
            let differs = c.from != plain.from
                || c.flags.chown != plain.flags.chown
                || c.flags.chmod != plain.flags.chmod
                || c.flags.parents != plain.flags.parents
                || c.flags.excludes != plain.flags.excludes;
            assert!(differs, "{line}");
        }
        let add = |line: &str| match command(line) {
            lb_parser::Command::Add(a) => a,
            other => panic!("{other:?}"),
        };
        let unpacked = add("ADD a /b");
        let kept = add("ADD --unpack=false a /b");
        assert_ne!(
            CopyInputs::of_add(&unpacked).flags.unpack,
            CopyInputs::of_add(&kept).flags.unpack
        );
    }
}
