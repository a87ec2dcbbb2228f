//! What a metadata instruction does to an image config, as docker's builder does it
//! (BuildKit's `dockerfile2llb` dispatch): the same fields, the same expansion of
//! variables with the environment the stage has at that point, the same forms (a shell-form
//! CMD or ENTRYPOINT runs under the stage's SHELL; EXPOSE adds `/tcp`; a relative WORKDIR
//! is joined to the current one). The config is docker's JSON object (`Env`, `Cmd`,
//! `Labels`, ..., with `Healthcheck`, `OnBuild` and `Shell`, which the OCI config lacks).

use std::collections::BTreeMap;

use lb_parser::shell::Lexer;
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub config: Map<String, Value>,
    pub author: Option<String>,
    cmd_set: bool,
}

impl ImageConfig {
    /// Starts from a base image's `config` object and author.
    pub fn from_base(config: Map<String, Value>, author: Option<String>) -> ImageConfig {
        ImageConfig {
            config,
            author,
            cmd_set: false,
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

    /// Sets `key=value` in `Env`, replacing an earlier value of `key`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.strings("Env");
        let prefix = format!("{key}=");
        match env.iter_mut().find(|e| e.starts_with(&prefix) || *e == key) {
            Some(e) => *e = format!("{key}={value}"),
            None => env.push(format!("{key}={value}")),
        }
        self.set_strings("Env", env);
    }

    /// Applies `ins` if it is a metadata instruction; returns its history entry's
    /// `created_by` as BuildKit writes it, or None when it is no metadata instruction.
    /// `args` are the build arguments in scope (they expand like Env, which wins over them).
    pub fn apply(
        &mut self,
        ins: &Instruction,
        args: &[(String, String)],
    ) -> Result<Option<String>, ConfigError> {
        let line = ins.start_line;
        let mut scope: BTreeMap<String, String> = args.iter().cloned().collect();
        scope.extend(self.env());
        let lex = Lexer::new('\\');
        let word = |w: &str| {
            lex.process_word(w, &scope)
                .map_err(|e| ConfigError::Expand {
                    line,
                    message: e.to_string(),
                })
        };
        let created_by = match &ins.command {
            Command::Env(kv) => {
                // Every pair is expanded with the environment from before the instruction
                // (docker's `ENV abc=bye def=$abc` gives def the old abc).
                let mut pairs = Vec::new();
                for pair in &kv.pairs {
                    pairs.push((word(&pair.key)?, word(&pair.value)?));
                }
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>();
                for (k, v) in pairs {
                    self.set_env(&k, &v);
                }
                format!("ENV {}", text.join(" "))
            }
            Command::Label(kv) => {
                let mut text = Vec::new();
                for pair in &kv.pairs {
                    let (k, v) = (word(&pair.key)?, word(&pair.value)?);
                    text.push(format!("{k}={v}"));
                    self.map_insert("Labels", k, json!(v));
                }
                format!("LABEL {}", text.join(" "))
            }
            Command::Expose(e) => {
                let mut all = Vec::new();
                for spec in &e.ports {
                    for port in expose_ports(&word(spec)?)
                        .map_err(|message| ConfigError::Invalid { line, message })?
                    {
                        all.push(port.clone());
                        self.map_insert("ExposedPorts", port, json!({}));
                    }
                }
                format!("EXPOSE [{}]", all.join(" "))
            }
            Command::Volume(v) => {
                let mut all = Vec::new();
                for p in &v.paths {
                    let p = word(p)?;
                    if p.trim().is_empty() {
                        return Err(ConfigError::Invalid {
                            line,
                            message: "VOLUME specified can not be an empty string".into(),
                        });
                    }
                    all.push(p.clone());
                    self.map_insert("Volumes", p, json!({}));
                }
                format!("VOLUME [{}]", all.join(" "))
            }
            Command::User(u) => {
                let user = word(&u.user)?;
                self.config.insert("User".into(), json!(user));
                format!("USER {user}")
            }
            Command::Workdir(w) => {
                let dir = word(&w.path)?;
                let current = self
                    .config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                let dir = join_workdir(&current, &dir);
                self.config.insert("WorkingDir".into(), json!(dir));
                format!("WORKDIR {dir}")
            }
            Command::Cmd(c) => {
                let cmd = self.command_form(&c.args, c.shell_form);
                self.set_strings("Cmd", cmd.clone());
                self.cmd_set = true;
                format!("CMD {}", go_quoted(&cmd))
            }
            Command::Entrypoint(c) => {
                let ep = self.command_form(&c.args, c.shell_form);
                self.set_strings("Entrypoint", ep.clone());
                if !self.cmd_set {
                    self.config.insert("Cmd".into(), Value::Null);
                }
                format!("ENTRYPOINT {}", go_quoted(&ep))
            }
            Command::Shell(s) => {
                self.set_strings("Shell", s.shell.clone());
                format!("SHELL [{}]", s.shell.join(" "))
            }
            Command::Stopsignal(s) => {
                let sig = word(&s.signal)?;
                self.config.insert("StopSignal".into(), json!(sig));
                format!("STOPSIGNAL {sig}")
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
                self.config.insert("Healthcheck".into(), Value::Object(hc));
                ins.original.trim().to_string()
            }
            Command::Onbuild(o) => {
                let mut triggers = self.strings("OnBuild");
                triggers.push(o.expression.clone());
                self.set_strings("OnBuild", triggers);
                format!("ONBUILD {}", o.expression)
            }
            Command::Maintainer(m) => {
                self.author = Some(m.name.clone());
                format!("MAINTAINER {}", m.name)
            }
            _ => return Ok(None),
        };
        Ok(Some(created_by))
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
}
