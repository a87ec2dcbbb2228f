//! What a metadata instruction does to an image config, as docker's builder does it
//! (BuildKit's `dockerfile2llb` dispatch): the same fields, the same expansion of
//! variables with the environment the stage has at that point, the same forms (a shell-form
//! CMD or ENTRYPOINT runs under the stage's SHELL; EXPOSE adds `/tcp`; a relative WORKDIR
//! is joined to the current one). The config is docker's JSON object (`Env`, `Cmd`,
//! `Labels`, ..., with `Healthcheck`, `OnBuild` and `Shell`, which the OCI config lacks).

use std::collections::HashMap;

use lb_parser::shell::{Env, Lexer, ShellError};
use lb_parser::{Command, Instruction};
use serde_json::{Map, Value, json};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable reference that cannot be expanded (`${V:?message}`, a bad pattern).
    #[error("line {line}: {message}")]
    Expand { line: usize, message: String },
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
    /// Not a change a config takes (`commit --change RUN ...`).
    #[error("line {line}: {instruction} is not a valid change command")]
    NotAChange { line: usize, instruction: String },
}

/// docker's default SHELL.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// An image config being built: docker's `config` object, the image's author, and
/// whether the current stage set CMD itself (an ENTRYPOINT drops an inherited CMD).
///
/// Each instruction costs time in what it says, not in the size of the config: `Env` is
/// indexed by name (see [`EnvIndex`]), and what an instruction changed is returned
/// ([`Applied::change`]) for a cache key, so that 100,000 ENV or LABEL lines are not
/// quadratic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub config: Map<String, Value>,
    pub author: Option<String>,
    cmd_set: bool,
    env_index: EnvIndex,
}

/// Where each name stands in `Env`: a cache over the array, kept by [`ImageConfig::set_env`]
/// and rebuilt when the array's length is not the one indexed (`Env` changed behind it).
#[derive(Debug, Clone, Default)]
struct EnvIndex {
    /// Name -> the positions of its entries (an image may list a name twice).
    positions: HashMap<String, Vec<usize>>,
    /// The length of `Env` when indexed; None before.
    len: Option<usize>,
}

/// A cache: configs are equal by their fields, whatever was indexed.
impl PartialEq for EnvIndex {
    fn eq(&self, _: &EnvIndex) -> bool {
        true
    }
}

/// What a metadata instruction did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Its history entry's `created_by`, as BuildKit writes it.
    pub created_by: String,
    /// Exactly what it set in the config (values expanded): with the config before, this
    /// determines the config after, so a cache key needs this and the parent's key, never
    /// the whole config (whose hashing made each step cost as much as the config's size).
    pub change: Value,
}

/// An `Env` entry's name: up to the first `=`, or all of it.
fn entry_name(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The variables a metadata instruction's words expand with: `Env`, over the build args.
struct Scope<'a> {
    config: &'a ImageConfig,
    args: &'a dyn Env,
}

impl Env for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.config
            .env_value(name)
            .or_else(|| self.args.lookup(name))
    }
}

/// `(name, value)` pairs as a scope: the last definition of a name wins.
struct Pairs<'a>(&'a [(String, String)]);

impl Env for Pairs<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.lookup(name)
    }
}

/// A stage's build arguments in the order declared, indexed by name: declaring one costs
/// the same however many came before (a name declared again moves to the end, its old
/// place left empty).
#[derive(Debug, Clone, Default)]
pub struct Args {
    slots: Vec<Option<(String, String)>>,
    index: HashMap<String, usize>,
}

impl Args {
    /// Declares `name` with `value`; None leaves it undefined (an `ARG` with no value and
    /// no `--build-arg` drops an earlier one).
    pub fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(at) = self.index.remove(name) {
            self.slots[at] = None;
        }
        if let Some(v) = value {
            self.index.insert(name.to_string(), self.slots.len());
            self.slots.push(Some((name.to_string(), v)));
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let at = *self.index.get(name)?;
        self.slots[at].as_ref().map(|(_, v)| v.as_str())
    }

    /// `(name, value)` in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.slots.iter().flatten()
    }
}

impl Env for Args {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

impl ImageConfig {
    /// Starts from a base image's `config` object and author.
    pub fn from_base(config: Map<String, Value>, author: Option<String>) -> ImageConfig {
        ImageConfig {
            config,
            author,
            cmd_set: false,
            env_index: EnvIndex::default(),
        }
    }

    /// A new stage starts on this config: CMD was not set by it (yet).
    pub fn new_stage(&mut self) {
        self.cmd_set = false;
    }

    /// `Env` as ordered pairs; later entries win, as in a shell.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e, String::new()),
            })
            .collect()
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.config.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn set_strings(&mut self, key: &str, values: Vec<String>) {
        self.config.insert(key.into(), json!(values));
    }

    fn shell(&self) -> Vec<String> {
        let s = self.strings("Shell");
        if s.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            s
        }
    }

    fn map_insert(&mut self, key: &str, k: String, v: Value) {
        let entry = self
            .config
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        entry.as_object_mut().expect("object").insert(k, v);
    }

    /// Indexes `Env` unless the index is current.
    fn index_env(&mut self) {
        let entries = match self.config.get("Env") {
            Some(Value::Array(a)) => a.as_slice(),
            _ => &[],
        };
        if self.env_index.len == Some(entries.len()) {
            return;
        }
        let mut positions: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(e) = e.as_str() {
                positions
                    .entry(entry_name(e).to_string())
                    .or_default()
                    .push(i);
            }
        }
        self.env_index = EnvIndex {
            positions,
            len: Some(entries.len()),
        };
    }

    /// `name`'s value in `Env` (its last entry's), by the index: call `index_env` first.
    fn env_value(&self, name: &str) -> Option<&str> {
        let at = *self.env_index.positions.get(name)?.last()?;
        let entry = self.config.get("Env")?.as_array()?.get(at)?.as_str()?;
        Some(entry.split_once('=').map_or("", |(_, v)| v))
    }

    /// Sets `key=value` in `Env`, replacing every earlier entry of `key` (BuildKit's
    /// `addEnv`), else appending it.
    pub fn set_env(&mut self, key: &str, value: &str) {
        if !matches!(self.config.get("Env"), Some(Value::Array(_))) {
            self.config.insert("Env".into(), Value::Array(Vec::new()));
        }
        self.index_env();
        let entry = format!("{key}={value}");
        let Some(Value::Array(env)) = self.config.get_mut("Env") else {
            unreachable!("Env was made an array")
        };
        match self.env_index.positions.get(key) {
            Some(at) if !at.is_empty() => {
                for &i in at {
                    env[i] = Value::String(entry.clone());
                }
            }
            _ => {
                env.push(Value::String(entry));
                self.env_index
                    .positions
                    .insert(key.to_string(), vec![env.len() - 1]);
                self.env_index.len = Some(env.len());
            }
        }
    }

    /// Applies `ins` if it is a metadata instruction; returns its history entry's
    /// `created_by` as BuildKit writes it, or None when it is no metadata instruction.
    /// `args` are the build arguments in scope (they expand like Env, which wins over them).
    pub fn apply(
        &mut self,
        ins: &Instruction,
        args: &[(String, String)],
    ) -> Result<Option<String>, ConfigError> {
        Ok(self.apply_change(ins, &Pairs(args))?.map(|a| a.created_by))
    }

    /// Expands `word` with `Env` over `args`, as a metadata instruction's words expand.
    pub fn expand(&mut self, word: &str, args: &dyn Env) -> Result<String, ShellError> {
        self.index_env();
        Lexer::new('\\').process_word(word, &Scope { config: self, args })
    }

    /// [`apply`](Self::apply), returning what the instruction changed as well. Costs time
    /// in the instruction's size, not the config's.
    pub fn apply_change(
        &mut self,
        ins: &Instruction,
        args: &dyn Env,
    ) -> Result<Option<Applied>, ConfigError> {
        let line = ins.start_line;
        self.index_env();
        let lex = Lexer::new('\\');
        // Words are expanded before the config changes (the scope borrows it): docker's
        // `ENV abc=bye def=$abc` gives def the old abc, and no other instruction reads
        // what it sets.
        let expand = |config: &ImageConfig, w: &str| {
            let scope = Scope { config, args };
            lex.process_word(w, &scope)
                .map_err(|e| ConfigError::Expand {
                    line,
                    message: e.to_string(),
                })
        };
        let pairs = |config: &ImageConfig, kv: &lb_parser::KeyValues| {
            kv.pairs
                .iter()
                .map(|p| Ok((expand(config, &p.key)?, expand(config, &p.value)?)))
                .collect::<Result<Vec<(String, String)>, ConfigError>>()
        };
        let (created_by, change) = match &ins.command {
            Command::Env(kv) => {
                let pairs = pairs(self, kv)?;
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (k, v) in &pairs {
                    self.set_env(k, v);
                }
                (format!("ENV {}", text.join(" ")), json!({ "Env": pairs }))
            }
            Command::Label(kv) => {
                let pairs = pairs(self, kv)?;
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (k, v) in &pairs {
                    self.map_insert("Labels", k.clone(), json!(v));
                }
                (
                    format!("LABEL {}", text.join(" ")),
                    json!({ "Labels": pairs }),
                )
            }
            Command::Expose(e) => {
                let mut all = Vec::new();
                for spec in &e.ports {
                    all.extend(
                        expose_ports(&expand(self, spec)?)
                            .map_err(|message| ConfigError::Invalid { line, message })?,
                    );
                }
                for port in &all {
                    self.map_insert("ExposedPorts", port.clone(), json!({}));
                }
                (
                    format!("EXPOSE [{}]", all.join(" ")),
                    json!({ "ExposedPorts": all }),
                )
            }
            Command::Volume(v) => {
                let mut all = Vec::new();
                for p in &v.paths {
                    let p = expand(self, p)?;
                    if p.trim().is_empty() {
                        return Err(ConfigError::Invalid {
                            line,
                            message: "VOLUME specified can not be an empty string".into(),
                        });
                    }
                    all.push(p);
                }
                for p in &all {
                    self.map_insert("Volumes", p.clone(), json!({}));
                }
                (
                    format!("VOLUME [{}]", all.join(" ")),
                    json!({ "Volumes": all }),
                )
            }
            Command::User(u) => {
                let user = expand(self, &u.user)?;
                self.config.insert("User".into(), json!(user));
                (format!("USER {user}"), json!({ "User": user }))
            }
            Command::Workdir(w) => {
                let dir = expand(self, &w.path)?;
                let current = self
                    .config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/");
                let dir = join_workdir(current, &dir);
                self.config.insert("WorkingDir".into(), json!(dir));
                (format!("WORKDIR {dir}"), json!({ "WorkingDir": dir }))
            }
            Command::Cmd(c) => {
                let cmd = self.command_form(&c.args, c.shell_form);
                self.set_strings("Cmd", cmd.clone());
                self.cmd_set = true;
                (format!("CMD {}", go_quoted(&cmd)), json!({ "Cmd": cmd }))
            }
            Command::Entrypoint(c) => {
                let ep = self.command_form(&c.args, c.shell_form);
                self.set_strings("Entrypoint", ep.clone());
                let mut change = json!({ "Entrypoint": ep });
                if !self.cmd_set {
                    self.config.insert("Cmd".into(), Value::Null);
                    change["Cmd"] = Value::Null;
                }
                (format!("ENTRYPOINT {}", go_quoted(&ep)), change)
            }
            Command::Shell(s) => {
                self.set_strings("Shell", s.shell.clone());
                (
                    format!("SHELL [{}]", s.shell.join(" ")),
                    json!({ "Shell": s.shell }),
                )
            }
            Command::Stopsignal(s) => {
                let sig = expand(self, &s.signal)?;
                self.config.insert("StopSignal".into(), json!(sig));
                (format!("STOPSIGNAL {sig}"), json!({ "StopSignal": sig }))
            }
            Command::Healthcheck(h) => {
                let mut hc = Map::new();
                hc.insert("Test".into(), json!(h.test));
                for (key, v) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                    ("Retries", h.retries),
                ] {
                    if v != 0 {
                        hc.insert(key.into(), json!(v));
                    }
                }
                let hc = Value::Object(hc);
                self.config.insert("Healthcheck".into(), hc.clone());
                (
                    ins.original.trim().to_string(),
                    json!({ "Healthcheck": hc }),
                )
            }
            Command::Onbuild(o) => {
                let triggers = self
                    .config
                    .entry("OnBuild")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !triggers.is_array() {
                    *triggers = Value::Array(Vec::new());
                }
                if let Value::Array(t) = triggers {
                    t.push(json!(o.expression));
                }
                (
                    format!("ONBUILD {}", o.expression),
                    json!({ "OnBuild+": o.expression }),
                )
            }
            Command::Maintainer(m) => {
                self.author = Some(m.name.clone());
                (
                    format!("MAINTAINER {}", m.name),
                    json!({ "author": m.name }),
                )
            }
            _ => return Ok(None),
        };
        Ok(Some(Applied { created_by, change }))
    }

    /// A CMD or ENTRYPOINT as the config holds it: the exec form as written, the shell form
    /// as one argument to the stage's SHELL.
    fn command_form(&self, args: &[String], shell_form: bool) -> Vec<String> {
        if shell_form {
            let mut v = self.shell();
            v.push(args.join(" "));
            v
        } else {
            args.to_vec()
        }
    }
}

/// docker's `commit --change` / `import --change`: one Dockerfile instruction of the kinds
/// a config takes, parsed and applied.
pub fn change_instruction(cfg: &mut ImageConfig, change: &str) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { line: 1, message };
    let tree = lb_parser::parse_syntax(change.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    for node in tree.nodes {
        let keyword = node.keyword.to_uppercase();
        let ins = lb_parser::type_node(node).map_err(|e| invalid(e.to_string()))?;
        let allowed = matches!(
            ins.command,
            Command::Cmd(_)
                | Command::Entrypoint(_)
                | Command::Env(_)
                | Command::Expose(_)
                | Command::Label(_)
                | Command::Onbuild(_)
                | Command::User(_)
                | Command::Volume(_)
                | Command::Workdir(_)
                | Command::Stopsignal(_)
                | Command::Healthcheck(_)
                | Command::Shell(_)
        );
        if !allowed {
            return Err(ConfigError::NotAChange {
                line: 1,
                instruction: keyword,
            });
        }
        cfg.apply(&ins, &[])?;
    }
    Ok(())
}

/// Go's `%q` of a string list, as BuildKit's history shows CMD and ENTRYPOINT.
fn go_quoted(list: &[String]) -> String {
    let quoted: Vec<String> = list
        .iter()
        .map(|s| serde_json::to_string(s).expect("a string serialises"))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// A WORKDIR against the current one: absolute as given, relative joined; cleaned.
fn join_workdir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{current}/{dir}")
    };
    let (parts, _) = crate::copy::lexical(&joined);
    format!("/{}", parts.join("/"))
}

/// EXPOSE's port specs as config keys: `80` -> `80/tcp`, `53/udp`, ranges
/// `8000-8002/tcp` one key per port (docker's `nat.ParsePortSpecs`).
fn expose_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for container port: {ports}"
        ));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_parser::shell::NoEnv;

    fn apply_all(cfg: &mut ImageConfig, dockerfile: &str) {
        let df = lb_parser::parse(dockerfile.as_bytes()).unwrap();
        for ins in &df.instructions[1..] {
            assert!(
                cfg.apply(ins, &[("A".into(), "from-arg".into())])
                    .unwrap()
                    .is_some(),
                "{}",
                ins.original
            );
        }
    }

    #[test]
    fn metadata_instructions_set_dockers_fields() {
        let mut cfg = ImageConfig::from_base(
            json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]})
                .as_object()
                .unwrap()
                .clone(),
            None,
        );
        apply_all(
            &mut cfg,
            "FROM x\nENV B=2 C=$B\nENV C=$B\nENV PATH=/usr/bin:$PATH\nLABEL k=$C \"two words\"=v\nEXPOSE 80 53/udp 8000-8001\n\
             VOLUME [\"/data\", \"/logs\"]\nUSER app:$C\nWORKDIR /srv\nWORKDIR sub/../app\nSTOPSIGNAL SIGQUIT\n\
             ENTRYPOINT [\"/ep\"]\nSHELL [\"/bin/bash\", \"-c\"]\nHEALTHCHECK --interval=5s CMD check\n\
             ONBUILD RUN echo hi\nMAINTAINER someone\nLABEL arg=$A\n",
        );
        let c = &cfg.config;
        assert_eq!(c["Env"], json!(["PATH=/usr/bin:/bin", "B=2", "C=2"]));
        assert_eq!(
            c["Labels"],
            json!({"k": "2", "two words": "v", "arg": "from-arg"})
        );
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
        assert_eq!(c["User"], json!("app:2"));
        assert_eq!(c["WorkingDir"], json!("/srv/app"));
        assert_eq!(c["StopSignal"], json!("SIGQUIT"));
        // ENTRYPOINT drops a CMD the stage did not set itself.
        assert_eq!(c["Entrypoint"], json!(["/ep"]));
        assert_eq!(c["Cmd"], Value::Null);
        assert_eq!(c["Shell"], json!(["/bin/bash", "-c"]));
        assert_eq!(
            c["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "check"], "Interval": 5_000_000_000i64})
        );
        assert_eq!(c["OnBuild"], json!(["RUN echo hi"]));
        assert_eq!(cfg.author.as_deref(), Some("someone"));
    }

    #[test]
    fn shell_forms_run_under_the_stage_shell_and_cmd_after_entrypoint_stays() {
        let mut cfg = ImageConfig::default();
        apply_all(
            &mut cfg,
            "FROM x\nCMD echo $HOME\nENTRYPOINT run it\nSHELL [\"/bin/bash\",\"-xc\"]\nCMD [\"a\"]\nENTRYPOINT go\n",
        );
        assert_eq!(cfg.config["Cmd"], json!(["a"]));
        assert_eq!(cfg.config["Entrypoint"], json!(["/bin/bash", "-xc", "go"]));
        let mut cfg = ImageConfig::default();
        apply_all(&mut cfg, "FROM x\nCMD echo $HOME\n");
        assert_eq!(cfg.config["Cmd"], json!(["/bin/sh", "-c", "echo $HOME"]));
    }

    #[test]
    fn changes_take_config_instructions_only() {
        let mut cfg = ImageConfig::default();
        change_instruction(&mut cfg, "ENV X=1").unwrap();
        change_instruction(&mut cfg, "CMD [\"sleep\", \"1\"]").unwrap();
        assert_eq!(cfg.config["Env"], json!(["X=1"]));
        assert_eq!(cfg.config["Cmd"], json!(["sleep", "1"]));
        assert_eq!(
            change_instruction(&mut cfg, "RUN rm -rf /"),
            Err(ConfigError::NotAChange {
                line: 1,
                instruction: "RUN".into()
            })
        );
        assert!(change_instruction(&mut cfg, "EXPOSE 99999").is_err());
        assert!(change_instruction(&mut cfg, "ENV").is_err());
    }

    fn ins(dockerfile: &str) -> Instruction {
        let df = lb_parser::parse(format!("FROM x\n{dockerfile}\n").as_bytes()).unwrap();
        df.instructions[1].clone()
    }

    #[test]
    fn env_is_indexed_and_set_replaces_every_entry_of_a_name() {
        // A base image may list a name twice; the last entry is the one in effect.
        let mut cfg = ImageConfig::from_base(
            json!({"Env": ["A=1", "B", "A=2"]})
                .as_object()
                .unwrap()
                .clone(),
            None,
        );
        let a = cfg
            .apply_change(&ins("ENV C=$A$B"), &NoEnv)
            .unwrap()
            .unwrap();
        assert_eq!(a.change, json!({"Env": [["C", "2"]]}));
        cfg.set_env("A", "3");
        assert_eq!(cfg.config["Env"], json!(["A=3", "B", "A=3", "C=2"]));
        // Env changed behind the index (another length) is indexed again.
        cfg.config.insert("Env".into(), json!(["D=4"]));
        cfg.apply(&ins("LABEL d=$D c=$C"), &[]).unwrap();
        assert_eq!(cfg.config["Labels"], json!({"d": "4", "c": ""}));
        // Env wins over a build arg; an arg fills in where Env has nothing.
        let args = [
            ("D".to_string(), "arg".to_string()),
            ("E".into(), "e".into()),
        ];
        cfg.apply(&ins("ENV X=$D$E"), &args).unwrap();
        assert_eq!(cfg.config["Env"], json!(["D=4", "X=4e"]));
    }

    /// The change stands for the config in cache keys: two instructions that leave different
    /// configs never report the same change, however their history text reads.
    #[test]
    fn changes_tell_apart_what_history_text_does_not() {
        let change = |cfg: &mut ImageConfig, text: &str| {
            let a = cfg.apply_change(&ins(text), &NoEnv).unwrap().unwrap();
            (a.created_by, a.change)
        };
        let mut one = ImageConfig::default();
        let mut two = ImageConfig::default();
        let (t1, c1) = change(&mut one, r#"LABEL a="b c=d""#);
        let (t2, c2) = change(&mut two, "LABEL a=b c=d");
        assert_eq!(t1, t2);
        assert_ne!(c1, c2);
        assert_ne!(one, two);
        // ENTRYPOINT drops an inherited CMD only when the stage did not set one: said so.
        let mut inherited = ImageConfig::default();
        let mut own = ImageConfig::default();
        change(&mut own, "CMD [\"x\"]");
        let (_, c1) = change(&mut inherited, "ENTRYPOINT [\"e\"]");
        let (_, c2) = change(&mut own, "ENTRYPOINT [\"e\"]");
        assert_eq!(c1, json!({"Entrypoint": ["e"], "Cmd": null}));
        assert_eq!(c2, json!({"Entrypoint": ["e"]}));
        assert_eq!(
            change(&mut own, "ONBUILD RUN x").1,
            json!({"OnBuild+": "RUN x"})
        );
        assert_eq!(own.config["OnBuild"], json!(["RUN x"]));
    }

    /// A config of 100,000 ENV and LABEL lines builds in time linear in them (a quadratic
    /// one took minutes); the bound is loose, the figures are in `benches/parse.rs`.
    #[test]
    fn many_metadata_instructions_are_linear() {
        let mut text = String::from("FROM x\n");
        for i in 0..50_000 {
            text.push_str(&format!("ENV e{i}=$e{}\nLABEL l{i}=v\n", i / 2));
        }
        let df = lb_parser::parse(text.as_bytes()).unwrap();
        let t = std::time::Instant::now();
        let mut cfg = ImageConfig::default();
        for ins in &df.instructions[1..] {
            cfg.apply_change(ins, &NoEnv).unwrap().unwrap();
        }
        assert_eq!(cfg.env().len(), 50_000);
        assert_eq!(cfg.config["Labels"].as_object().unwrap().len(), 50_000);
        assert!(t.elapsed().as_secs() < 30, "{:?}", t.elapsed());
    }

    #[test]
    fn args_keep_declaration_order_and_move_a_redeclared_name_last() {
        let mut a = Args::default();
        a.set("A", Some("1".into()));
        a.set("B", Some("2".into()));
        a.set("A", Some("3".into()));
        a.set("C", Some("4".into()));
        a.set("B", None);
        let pairs: Vec<_> = a.iter().cloned().collect();
        assert_eq!(
            pairs,
            vec![("A".into(), "3".into()), ("C".into(), "4".into())]
        );
        assert_eq!((a.get("A"), a.get("B")), (Some("3"), None));
        let mut cfg = ImageConfig::default();
        cfg.set_env("C", "env");
        assert_eq!(cfg.expand("$A-$C", &a).unwrap(), "3-env");
    }
}
