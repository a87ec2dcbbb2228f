//! Dockerfile text to typed instructions, parsed exactly as BuildKit (the engine behind
//! `docker build`) parses it.
//!
//! Two passes. [`parse_syntax`] reads the text into a [`SyntaxTree`]: parser directives
//! (`syntax`, `escape`, `check`), comments, line continuations with the escape character,
//! heredoc bodies, and one [`Node`] per instruction with its flags, arguments, first and last
//! line and original text; [`SyntaxTree::dump`] prints BuildKit's dump form. [`parse`] then
//! types every node into an [`Instruction`] and rejects what docker rejects, each error
//! naming its lines. [`shell`] holds the shell-word expansion that the builder applies to
//! arguments with the stage's variables.
//!
//! This crate does no I/O and knows nothing of images, layers, contexts or containers: it
//! takes bytes and returns values.

mod duration;
pub use duration::parse as parse_duration;
mod error;
mod flags;
mod instructions;
mod json_array;
mod line_args;
mod mount;
pub mod shell;
mod syntax;
mod text;

pub use error::ParseError;
pub use instructions::{
    Add, Arg, ArgDecl, Command, CommandLine, Copy, Dockerfile, Expose, From, Healthcheck,
    InlineFile, Instruction, KeyValue, KeyValues, Maintainer, NetworkMode, Onbuild, Run,
    SecurityMode, Shell, Sources, StopSignal, User, Volume, Workdir, type_node,
};
pub use mount::{Mount, MountType, Sharing, parse_mount};
pub use syntax::{Directive, Heredoc, Node, SyntaxTree, Warning, parse_heredoc};

/// Reads Dockerfile bytes into a syntax tree (the first pass only).
pub fn parse_syntax(src: &[u8]) -> Result<SyntaxTree, ParseError> {
    syntax::parse(src)
}

/// Reads and checks a Dockerfile: the syntax tree, then every instruction typed.
pub fn parse(src: &[u8]) -> Result<Dockerfile, ParseError> {
    instructions::type_tree(syntax::parse(src)?)
}
