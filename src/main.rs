//! `lb`: build container images from Dockerfiles and run them, with no daemon.
//!
//! This binary is the command line only: it reads arguments, calls the library crates and
//! prints what they return. The work itself lives in the workspace crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod parse_cmd;

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "Build container images from Dockerfiles and run them, with no daemon",
    disable_help_subcommand = false
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Parse a Dockerfile and print it as BuildKit's dump or as typed JSON
    Parse(parse_cmd::ParseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Parse(args) => parse_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lb: {e:#}");
            ExitCode::from(1)
        }
    }
}
