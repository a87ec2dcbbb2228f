//! The build graph: a Dockerfile's stages, what each is built on (an image, `scratch` or an
//! earlier stage) and what else it reads (`COPY --from`, `RUN --mount from=`), as a DAG
//! (petgraph). Only the stages the target needs are built ([`Plan::needed`]); the build
//! runs them all at once, each step waiting only for the stages it reads.

use std::collections::{BTreeMap, HashMap};

use lb_parser::shell::Lexer;
use lb_parser::{Command, Dockerfile, Instruction};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{BuildError, ErrorKind};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image reference, variables expanded.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased as BuildKit keeps it.
    pub name: Option<String>,
    pub base: Base,
    pub from: Instruction,
    pub steps: Vec<Instruction>,
    /// Earlier stages it reads: its base and `--from` sources.
    pub deps: Vec<usize>,
}

impl Stage {
    /// How BuildKit names it in progress lines: `name` or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// The stage whose result is the image.
    pub target: usize,
    /// The stages to build: the target and what it reads, directly or not, in order.
    pub needed: Vec<usize>,
    /// The global ARGs (before the first FROM) with their values after `--build-arg`.
    pub meta_args: Vec<(String, String)>,
    /// The Dockerfile's escape character (`# escape=`).
    pub escape: char,
    /// Whether BuildKit would see one stage alone: no step reads an image (`COPY --from`,
    /// `RUN --mount from=`) or has a cache mount with no `from` (each a hidden stage of
    /// BuildKit's, on an image or on scratch). Its steps are then named without a stage.
    pub single_stage: bool,
}

/// The build arguments every build defines (BuildKit's automatic platform ARGs).
pub fn platform_args() -> Vec<(String, String)> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let platform = format!("linux/{arch}");
    let mut v = Vec::new();
    for prefix in ["BUILD", "TARGET"] {
        v.push((format!("{prefix}PLATFORM"), platform.clone()));
        v.push((format!("{prefix}OS"), "linux".into()));
        v.push((format!("{prefix}ARCH"), arch.into()));
        v.push((format!("{prefix}VARIANT"), String::new()));
    }
    v
}

/// Plans the build of `df` for `target` (a stage name; the last stage when None).
pub fn plan(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Plan, BuildError> {
    let lex = Lexer::new(df.escape);
    // Global ARGs: their defaults, overridden by --build-arg; they expand FROM lines only.
    let mut meta: BTreeMap<String, String> = platform_args().into_iter().collect();
    let mut meta_args = Vec::new();
    for ins in df.meta_args() {
        if let Command::Arg(a) = &ins.command {
            for decl in &a.args {
                let value = match build_args.get(&decl.name) {
                    Some(v) => Some(v.clone()),
                    None => match &decl.default {
                        Some(d) => Some(lex.process_word(d, &meta).map_err(|e| {
                            BuildError::invalid(ins, format!("ARG {}: {e}", decl.name))
                        })?),
                        None => None,
                    },
                };
                if let Some(v) = value {
                    meta.insert(decl.name.clone(), v.clone());
                    meta_args.push((decl.name.clone(), v));
                }
            }
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    let mut hidden_stages = 0;
    // Stage names (lower-cased) to indexes: a lookup per FROM and `--from` costs the same
    // however many stages came before.
    let mut names: HashMap<String, usize> = HashMap::new();
    for (index, (from_ins, steps)) in df.stages().into_iter().enumerate() {
        let Command::From(from) = &from_ins.command else {
            unreachable!("stages start with FROM")
        };
        let base_name = lex
            .process_word(&from.base, &meta)
            .map_err(|e| BuildError::invalid(from_ins, format!("FROM {}: {e}", from.base)))?;
        if base_name.is_empty() {
            return Err(BuildError::invalid(
                from_ins,
                format!("base name ({}) should not be blank", from.base),
            ));
        }
        let base = if base_name.eq_ignore_ascii_case("scratch") {
            Base::Scratch
        } else if let Some(s) = find_stage(&names, &base_name) {
            Base::Stage(s)
        } else {
            Base::Image(base_name)
        };
        let name = from.stage_name.as_ref().map(|n| n.to_lowercase());
        if let Some(n) = &name
            && names.contains_key(n)
        {
            return Err(BuildError::invalid(
                from_ins,
                format!("duplicate name {n}: stage names must be unique"),
            ));
        }
        let mut deps: Vec<usize> = Vec::new();
        if let Base::Stage(s) = base {
            deps.push(s);
        }
        for step in steps {
            for from in step_sources(step) {
                match resolve_from(&names, stages.len(), &from) {
                    Some(s) => deps.push(s),
                    None if from.parse::<usize>().is_ok() => {
                        return Err(BuildError::invalid(
                            step,
                            format!(
                                "invalid from flag value {from}: refers to a stage not defined before this one"
                            ),
                        ));
                    }
                    None => hidden_stages += 1, // an image, read as it is
                }
            }
            if let Command::Run(r) = &step.command {
                hidden_stages += r
                    .mounts
                    .iter()
                    .filter(|m| m.kind == lb_parser::MountType::Cache && m.from.is_none())
                    .count();
            }
        }
        deps.sort_unstable();
        deps.dedup();
        if let Some(n) = &name {
            names.insert(n.clone(), index);
        }
        stages.push(Stage {
            index,
            name,
            base,
            from: from_ins.clone(),
            steps: steps.to_vec(),
            deps,
        });
    }
    if stages.is_empty() {
        return Err(BuildError::new(ErrorKind::Invalid(
            "the Dockerfile has no FROM: nothing to build".into(),
        )));
    }
    let target = match target {
        None => stages.len() - 1,
        Some(t) => find_stage(&names, t).ok_or_else(|| {
            BuildError::new(ErrorKind::Invalid(format!(
                "target stage \"{t}\" could not be found"
            )))
        })?,
    };
    let needed = needed(&stages, target);
    let single_stage = stages.len() == 1 && hidden_stages == 0;
    Ok(Plan {
        stages,
        target,
        needed,
        meta_args,
        escape: df.escape,
        single_stage,
    })
}

/// The stage a FROM names, by `AS` name (case-insensitive), among `names` (lower-cased).
fn find_stage(names: &HashMap<String, usize>, name: &str) -> Option<usize> {
    names.get(&name.to_lowercase()).copied()
}

/// A `--from` value: a stage name, or the index of one of the `count` earlier stages.
fn resolve_from(names: &HashMap<String, usize>, count: usize, from: &str) -> Option<usize> {
    find_stage(names, from).or_else(|| from.parse::<usize>().ok().filter(|i| *i < count))
}

/// The `--from` values a step reads: COPY's and RUN mounts'.
fn step_sources(step: &Instruction) -> Vec<String> {
    match &step.command {
        Command::Copy(c) => c.from.iter().cloned().collect(),
        Command::Run(r) => r.mounts.iter().filter_map(|m| m.from.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The stages `target` needs: what it reaches backwards through bases and `--from`s
/// (a DAG, as petgraph checks: dependencies point to earlier stages only).
fn needed(stages: &[Stage], target: usize) -> Vec<usize> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = stages.iter().map(|s| g.add_node(s.index)).collect();
    for s in stages {
        for d in &s.deps {
            g.add_edge(nodes[s.index], nodes[*d], ());
        }
    }
    debug_assert!(!petgraph::algo::is_cyclic_directed(&g));
    let mut needed: Vec<usize> = Vec::new();
    let mut dfs = petgraph::visit::Dfs::new(&g, nodes[target]);
    while let Some(n) = dfs.next(&g) {
        needed.push(g[n]);
    }
    needed.sort_unstable();
    needed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str, target: Option<&str>) -> Result<Plan, BuildError> {
        plan(
            &lb_parser::parse(text.as_bytes()).unwrap(),
            &BTreeMap::new(),
            target,
        )
    }

    #[test]
    fn the_target_needs_what_it_reads_and_unneeded_stages_are_skipped() {
        let p = plan_of(
            "FROM busybox AS a\nRUN a\nFROM busybox AS b\nRUN b\nFROM busybox AS unused\n\
             FROM a AS c\nCOPY --from=b /x /x\nCOPY --from=other:image /y /y\n",
            None,
        )
        .unwrap();
        assert_eq!(p.target, 3);
        assert_eq!(p.needed, vec![0, 1, 3]);
        assert_eq!(p.stages[3].base, Base::Stage(0));
        assert_eq!(p.stages[3].deps, vec![0, 1]);
        // --target picks a stage; what it does not need is not built.
        let p = plan_of("FROM scratch AS one\nFROM busybox AS two\n", Some("ONE")).unwrap();
        assert_eq!((p.target, p.needed.clone()), (0, vec![0]));
        assert_eq!(p.stages[0].base, Base::Scratch);
    }

    #[test]
    fn from_expands_global_args_and_build_args_override_them() {
        let df =
            lb_parser::parse(b"ARG BASE=busybox\nARG TAG\nFROM $BASE:${TAG:-latest}\n").unwrap();
        let p = plan(&df, &BTreeMap::new(), None).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("busybox:latest".into()));
        let args = BTreeMap::from([("TAG".to_string(), "1.36".to_string())]);
        let p = plan(&df, &args, None).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("busybox:1.36".into()));
        assert!(p.meta_args.contains(&("TAG".into(), "1.36".into())));
    }

    #[test]
    fn bad_plans_name_the_line() {
        let e = plan_of("FROM busybox\nCOPY --from=3 /a /b\n", None).unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = plan_of("FROM busybox AS x\nFROM busybox AS X\n", None).unwrap_err();
        assert!(e.kind.to_string().contains("duplicate name x"), "{e}");
        let e = plan_of("FROM busybox\n", Some("nope")).unwrap_err();
        assert!(e.kind.to_string().contains("target stage \"nope\""), "{e}");
        let e = plan_of("ARG B\nFROM $B\n", None).unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
