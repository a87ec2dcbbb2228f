//! The builder's one error: a message and, when an instruction is at fault, its line, so
//! that the caller can print `Dockerfile:LINE` and the line itself.

use lb_parser::Instruction;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct BuildError {
    pub message: String,
    /// The first line of the instruction at fault.
    pub line: Option<usize>,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            line: None,
        }
    }

    pub fn at(ins: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError {
            message: message.into(),
            line: Some(ins.start_line),
        }
    }
}
