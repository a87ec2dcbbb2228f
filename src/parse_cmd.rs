//! `lb parse [-f FILE|-] [--format dump|json]`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// The syntax tree in BuildKit's dump form, one `(instruction ...)` per line
    Dump,
    /// The typed, checked instructions as JSON (see docs/parse-json.md)
    Json,
}

#[derive(Args)]
pub struct ParseArgs {
    /// The Dockerfile to read; `-` reads standard input
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: PathBuf,
    /// What to print
    #[arg(long, value_enum, default_value = "dump")]
    format: Format,
}

pub fn run(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (name, source) = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the Dockerfile from standard input")?;
        ("<stdin>".to_string(), buf)
    } else {
        let source = std::fs::read(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        (args.file.display().to_string(), source)
    };

    let (output, warnings) = match args.format {
        Format::Dump => match lb_parser::parse_syntax(&source) {
            Ok(tree) => (tree.dump(), tree.warnings),
            Err(e) => return Ok(fail(&e, &name, &source)),
        },
        Format::Json => match lb_parser::parse(&source) {
            Ok(file) => {
                let mut text = serde_json::to_string_pretty(&file)?;
                text.push('\n');
                let warnings = file.warnings.clone();
                (text, warnings)
            }
            Err(e) => return Ok(fail(&e, &name, &source)),
        },
    };
    for w in warnings {
        eprintln!("[WARNING]: {name}:{}: {}", w.line, w.message);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(output.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn fail(e: &lb_parser::ParseError, name: &str, source: &[u8]) -> ExitCode {
    eprint!("{}", e.render(name, source));
    ExitCode::from(1)
}
