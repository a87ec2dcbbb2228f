//! The second pass: each syntax-tree node to a typed [`Instruction`], rejecting what docker
//! rejects (missing arguments, unknown flags or a flag on the wrong instruction, bad JSON
//! where only JSON is allowed, bad durations, forbidden ONBUILD triggers) with BuildKit's
//! messages (`frontend/dockerfile/instructions/parse.go`). Variables are not expanded here:
//! the builder expands with the environment of the stage at that point.

use serde::Serialize;

use crate::duration;
use crate::error::ParseError;
use crate::flags::{Flags, Kind, with_suggestion};
use crate::mount::{Mount, parse_mount};
use crate::syntax::{Directive, Heredoc, Node, SyntaxTree, Warning, parse_heredoc};
use crate::text::{eq_fold, to_lower, to_upper};

/// A parsed and checked Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Output format version of [`Dockerfile`] as JSON (`lb parse --format json`).
    pub version: u32,
    pub escape: char,
    pub directives: Vec<Directive>,
    pub warnings: Vec<Warning>,
    pub instructions: Vec<Instruction>,
}

impl Dockerfile {
    /// The stages in order: each FROM with the instructions up to the next FROM.
    pub fn stages(&self) -> Vec<(&Instruction, &[Instruction])> {
        let starts: Vec<usize> = self
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.command, Command::From(_)))
            .map(|(n, _)| n)
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let end = starts
                    .get(k + 1)
                    .copied()
                    .unwrap_or(self.instructions.len());
                (&self.instructions[s], &self.instructions[s + 1..end])
            })
            .collect()
    }

    /// The ARG instructions before the first FROM (global build arguments).
    pub fn meta_args(&self) -> impl Iterator<Item = &Instruction> {
        self.instructions
            .iter()
            .take_while(|i| !matches!(i.command, Command::From(_)))
    }
}

/// One instruction, where it stands and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    pub start_line: usize,
    pub end_line: usize,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// The flags as written, quotes removed (`--from=build`).
    pub flags: Vec<String>,
    #[serde(flatten)]
    pub command: Command,
}

/// What an instruction does, with its arguments unexpanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "lowercase")]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Shell),
    Env(KeyValues),
    Label(KeyValues),
    Arg(Arg),
    Maintainer(Maintainer),
    Expose(Expose),
    Copy(Copy),
    Add(Add),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Onbuild(Onbuild),
    Stopsignal(StopSignal),
    Healthcheck(Healthcheck),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// The image, or an earlier stage's name (may hold `$VARS` of the global ARGs).
    pub base: String,
    /// `AS name`, lower-cased.
    pub stage_name: Option<String>,
    pub platform: Option<String>,
}

/// A command in exec form (`["a", "b"]`) or shell form (one string for the SHELL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    pub args: Vec<String>,
    /// Shell form: run the one argument with the stage's SHELL.
    pub shell_form: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub command: CommandLine,
    /// Heredoc bodies, in the order their delimiters appear.
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shell {
    pub shell: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written as `KEY value` rather than `KEY=value`.
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValues {
    pub pairs: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    pub args: Vec<ArgDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Maintainer {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expose {
    /// Sorted, as BuildKit keeps them.
    pub ports: Vec<String>,
}

/// A file given inline as a heredoc (`COPY <<EOF /dest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    pub name: String,
    /// The body, tabs already stripped for `<<-`.
    pub content: String,
    pub expand: bool,
}

/// The sources and destination shared by COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sources {
    pub sources: Vec<String>,
    pub inline: Vec<InlineFile>,
    pub dest: String,
    /// Written in JSON form.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    #[serde(flatten)]
    pub files: Sources,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    #[serde(flatten)]
    pub files: Sources,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub excludes: Vec<String>,
    /// `--unpack`: None lets ADD decide (local archives are unpacked, URLs are not).
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workdir {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Onbuild {
    /// The trigger as it will be parsed when the image is used as a base.
    pub expression: String,
    /// The trigger's keyword, upper-cased.
    pub trigger: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StopSignal {
    pub signal: String,
}

/// HEALTHCHECK in docker's HealthConfig shape; durations in nanoseconds, 0 = default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: i64,
}

/// Types every node of `tree`.
pub fn type_tree(tree: SyntaxTree) -> Result<Dockerfile, ParseError> {
    let mut instructions = Vec::with_capacity(tree.nodes.len());
    let mut seen_from = false;
    for node in tree.nodes {
        let (start_line, end_line) = (node.start_line, node.end_line);
        let instruction = type_node(node)?;
        match instruction.command {
            Command::From(_) => seen_from = true,
            Command::Arg(_) => {}
            _ if !seen_from => {
                return Err(ParseError::new(
                    "no build stage in current context",
                    start_line,
                    end_line,
                ));
            }
            _ => {}
        }
        instructions.push(instruction);
    }
    Ok(Dockerfile {
        version: 1,
        escape: tree.escape,
        directives: tree.directives,
        warnings: tree.warnings,
        instructions,
    })
}

/// Types one node; the error names the node's lines.
pub fn type_node(mut node: Node) -> Result<Instruction, ParseError> {
    let (start_line, end_line) = (node.start_line, node.end_line);
    let command = command(&mut node).map_err(|m| ParseError::new(m, start_line, end_line))?;
    Ok(Instruction {
        start_line,
        end_line,
        original: node.original,
        flags: node.flags,
        command,
    })
}

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn at_least_one(cmd: &str) -> String {
    format!("{cmd} requires at least one argument")
}

fn exactly_one(cmd: &str) -> String {
    format!("{cmd} requires exactly one argument")
}

fn no_flags(node: &Node) -> Result<Flags, String> {
    Flags::parse(&node.flags, &[])
}

/// BuildKit's `handleJSONArgs`: the exec form as is, the shell form as one string.
fn command_line(args: &mut Vec<String>, json: bool) -> CommandLine {
    let args = std::mem::take(args);
    CommandLine {
        args: if json || args.is_empty() {
            args
        } else {
            vec![args.join(" ")]
        },
        shell_form: !json,
    }
}

fn key_values(node: &Node, args: &mut Vec<String>, cmd: &str) -> Result<KeyValues, String> {
    no_flags(node)?;
    if args.is_empty() {
        return Err(at_least_one(cmd));
    }
    if args.len() % 3 != 0 {
        return Err(format!("Bad input to {cmd}, too many arguments"));
    }
    let mut pairs = Vec::with_capacity(args.len() / 3);
    let mut args = std::mem::take(args).into_iter();
    while let (Some(key), Some(value), Some(sep)) = (args.next(), args.next(), args.next()) {
        if key.is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        pairs.push(KeyValue {
            key,
            value,
            legacy: sep.is_empty(),
        });
    }
    Ok(KeyValues { pairs })
}

fn sources(node: &Node, args: &[String], cmd: &str) -> Result<Sources, String> {
    let (dest, srcs) = args.split_last().ok_or_else(|| no_destination(cmd))?;
    if parse_heredoc(dest)?.is_some() {
        return Err(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for src in srcs {
        match parse_heredoc(src)? {
            Some(mut h) => {
                // The body read for this delimiter, with the word's own `<<-` applied.
                if let Some(read) = node.heredocs.iter().find(|b| b.name == h.name) {
                    h.content.clone_from(&read.content);
                }
                inline.push(InlineFile {
                    content: h.body(),
                    name: h.name,
                    expand: h.expand,
                });
            }
            None => sources.push(src.clone()),
        }
    }
    Ok(Sources {
        sources,
        inline,
        dest: dest.clone(),
        json: node.json,
    })
}

fn no_destination(cmd: &str) -> String {
    format!(
        "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
    )
}

/// A HEALTHCHECK duration flag: unset or 0 is the default; otherwise at least 1ms.
fn interval(flags: &Flags, name: &str) -> Result<i64, String> {
    let Some(v) = flags.string(name) else {
        return Ok(0);
    };
    if v.is_empty() {
        return Ok(0);
    }
    let d = duration::parse(&v)?;
    if d != 0 && d < 1_000_000 {
        return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
    }
    Ok(d)
}

fn command(node: &mut Node) -> Result<Command, String> {
    let mut owned_args = std::mem::take(&mut node.args);
    let args = &mut owned_args;
    Ok(match node.name().as_str() {
        "from" => {
            let stage_name = match args.len() {
                3 if eq_fold(&args[1], "as") => {
                    let name = to_lower(&args[2]);
                    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            crate::text::quote(&args[2])
                        ));
                    }
                    Some(name)
                }
                1 => None,
                _ => return Err("FROM requires either one or three arguments".into()),
            };
            let flags = Flags::parse(&node.flags, &[("platform", Kind::String)])?;
            Command::From(From {
                base: std::mem::take(&mut args[0]),
                stage_name,
                platform: flags.string("platform"),
            })
        }
        "run" => {
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("mount", Kind::Strings),
                    ("network", Kind::String),
                    ("security", Kind::String),
                ],
            )?;
            let mounts = flags
                .strings("mount")
                .iter()
                .map(|spec| parse_mount(spec, &|v| Ok(v.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => {
                    return Err(with_suggestion(
                        format!("unsupported network mode {}", crate::text::quote(other)),
                        other,
                        &["default", "none", "host"],
                    ));
                }
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(SecurityMode::Sandbox),
                Some("insecure") => Some(SecurityMode::Insecure),
                Some(other) => {
                    return Err(with_suggestion(
                        format!("unsupported security mode {}", crate::text::quote(other)),
                        other,
                        &["sandbox", "insecure"],
                    ));
                }
            };
            Command::Run(Run {
                command: command_line(args, node.json),
                heredocs: std::mem::take(&mut node.heredocs),
                mounts,
                network,
                security,
            })
        }
        "cmd" => {
            no_flags(node)?;
            Command::Cmd(command_line(args, node.json))
        }
        "entrypoint" => {
            no_flags(node)?;
            Command::Entrypoint(command_line(args, node.json))
        }
        "shell" => {
            no_flags(node)?;
            let line = command_line(args, node.json);
            if line.args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            Command::Shell(Shell { shell: line.args })
        }
        "env" => Command::Env(key_values(node, args, "ENV")?),
        "label" => Command::Label(key_values(node, args, "LABEL")?),
        "arg" => {
            if args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            let mut decls = Vec::new();
            for a in args.iter() {
                let decl = match a.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".into()),
                    Some((k, v)) => ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: a.clone(),
                        default: None,
                    },
                };
                decls.push(decl);
            }
            Command::Arg(Arg { args: decls })
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            no_flags(node)?;
            Command::Maintainer(Maintainer {
                name: std::mem::take(&mut args[0]),
            })
        }
        "expose" => {
            if args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            no_flags(node)?;
            let mut ports = std::mem::take(args);
            ports.sort();
            Command::Expose(Expose { ports })
        }
        "copy" => {
            if args.len() < 2 {
                return Err(no_destination("COPY"));
            }
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("exclude", Kind::Strings),
                    ("parents", Kind::Bool),
                    ("chown", Kind::String),
                    ("from", Kind::String),
                    ("chmod", Kind::String),
                    ("link", Kind::Bool),
                ],
            )?;
            Command::Copy(Copy {
                files: sources(node, args, "COPY")?,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                parents: flags.bool("parents"),
                excludes: flags.strings("exclude").to_vec(),
            })
        }
        "add" => {
            if args.len() < 2 {
                return Err(no_destination("ADD"));
            }
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("chown", Kind::String),
                    ("chmod", Kind::String),
                    ("link", Kind::Bool),
                    ("keep-git-dir", Kind::Bool),
                    ("checksum", Kind::String),
                    ("exclude", Kind::Strings),
                    ("unpack", Kind::Bool),
                ],
            )?;
            Command::Add(Add {
                files: sources(node, args, "ADD")?,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                keep_git_dir: flags.bool("keep-git-dir"),
                checksum: flags.string("checksum"),
                excludes: flags.strings("exclude").to_vec(),
                unpack: flags.string("unpack").map(|v| v == "true"),
            })
        }
        "volume" => {
            if args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            no_flags(node)?;
            let mut paths = Vec::new();
            for v in args.iter() {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                paths.push(v.to_string());
            }
            Command::Volume(Volume { paths })
        }
        "user" => {
            if args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            no_flags(node)?;
            Command::User(User {
                user: std::mem::take(&mut args[0]),
            })
        }
        "workdir" => {
            if args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            no_flags(node)?;
            Command::Workdir(Workdir {
                path: std::mem::take(&mut args[0]),
            })
        }
        "onbuild" => {
            let Some(trigger) = &node.trigger else {
                return Err(at_least_one("ONBUILD"));
            };
            no_flags(node)?;
            let keyword = to_upper(trigger.keyword.trim());
            match keyword.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{keyword} isn't allowed as an ONBUILD trigger"));
                }
                _ => {}
            }
            let mut expression = strip_onbuild(&node.original).to_string();
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            Command::Onbuild(Onbuild {
                expression,
                trigger: keyword,
            })
        }
        "stopsignal" => {
            if args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            Command::Stopsignal(StopSignal {
                signal: std::mem::take(&mut args[0]),
            })
        }
        "healthcheck" => {
            if args.is_empty() {
                return Err(at_least_one("HEALTHCHECK"));
            }
            let typ = to_upper(&args[0]);
            let rest = &args[1..];
            if typ == "NONE" {
                if !rest.is_empty() {
                    return Err("HEALTHCHECK NONE takes no arguments".into());
                }
                return Ok(Command::Healthcheck(Healthcheck {
                    test: vec![typ],
                    interval: 0,
                    timeout: 0,
                    start_period: 0,
                    start_interval: 0,
                    retries: 0,
                }));
            }
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("interval", Kind::String),
                    ("timeout", Kind::String),
                    ("start-period", Kind::String),
                    ("start-interval", Kind::String),
                    ("retries", Kind::String),
                ],
            )?;
            if typ != "CMD" {
                return Err(format!(
                    "Unknown type {} in HEALTHCHECK (try CMD)",
                    crate::text::quote(&typ)
                ));
            }
            let cmd: Vec<String> = if rest.is_empty() {
                Vec::new()
            } else if node.json {
                rest.to_vec()
            } else {
                vec![rest.join(" ")]
            };
            if cmd.is_empty() {
                return Err("Missing command after HEALTHCHECK CMD".into());
            }
            let mut test = vec![if node.json { typ } else { "CMD-SHELL".into() }];
            test.extend(cmd);
            let retries = match flags.string("retries").filter(|r| !r.is_empty()) {
                None => 0,
                Some(r) => {
                    let n: i64 = r.parse::<i32>().map(i64::from).map_err(|_| {
                        format!(
                            "strconv.ParseInt: parsing {}: invalid syntax",
                            crate::text::quote(&r)
                        )
                    })?;
                    if n < 0 {
                        return Err(format!("--retries cannot be negative ({n})"));
                    }
                    n
                }
            };
            Command::Healthcheck(Healthcheck {
                test,
                interval: interval(&flags, "interval")?,
                timeout: interval(&flags, "timeout")?,
                start_period: interval(&flags, "start-period")?,
                start_interval: interval(&flags, "start-interval")?,
                retries,
            })
        }
        _ => {
            return Err(with_suggestion(
                format!("unknown instruction: {}", node.keyword),
                &to_upper(&node.keyword),
                KEYWORDS,
            ));
        }
    })
}

/// The ONBUILD line without its keyword (`(?i)^\s*ONBUILD\s*`).
fn strip_onbuild(original: &str) -> &str {
    let s = original.trim_start();
    if s.len() >= 7 && s.is_char_boundary(7) && s[..7].eq_ignore_ascii_case("onbuild") {
        return s[7..].trim_start();
    }
    original
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Result<Command, String> {
        let tree = crate::syntax::parse(format!("FROM scratch\n{src}\n").as_bytes())
            .map_err(|e| e.message)?;
        type_node(tree.nodes[1].clone())
            .map(|i| i.command)
            .map_err(|e| e.message)
    }

    #[test]
    fn strip_onbuild_keyword() {
        assert_eq!(strip_onbuild("  onbuild   RUN x"), "RUN x");
    }

    #[test]
    fn healthcheck_shell_and_exec() {
        let Command::Healthcheck(h) =
            one("HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/").unwrap()
        else {
            panic!()
        };
        assert_eq!(h.test, vec!["CMD-SHELL", "curl -f http://x/"]);
        assert_eq!(h.interval, 5_000_000_000);
        assert_eq!(h.retries, 3);
        let Command::Healthcheck(h) = one("HEALTHCHECK CMD [\"true\"]").unwrap() else {
            panic!()
        };
        assert_eq!(h.test, vec!["CMD", "true"]);
    }
}
