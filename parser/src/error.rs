//! The one error type of the parser: a message and the Dockerfile lines it is about.

use std::fmt;

/// A Dockerfile the parser rejects, with the lines at fault (1-based, inclusive; 0 = the
/// error is about the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub start_line: usize,
    pub end_line: usize,
}

impl ParseError {
    pub fn new(message: impl Into<String>, start_line: usize, end_line: usize) -> Self {
        ParseError {
            message: message.into(),
            start_line,
            end_line: end_line.max(start_line),
        }
    }

    /// The error as a user sees it: `FILE:LINE: message`, then the offending lines of
    /// `source` with their numbers (at most 6 of them).
    pub fn render(&self, file: &str, source: &[u8]) -> String {
        let mut out = if self.start_line == 0 {
            format!("{file}: {}\n", self.message)
        } else {
            format!("{file}:{}: {}\n", self.start_line, self.message)
        };
        if self.start_line == 0 {
            return out;
        }
        let last = self.end_line.min(self.start_line + 5);
        let width = last.to_string().len().max(3);
        for (idx, line) in source.split(|&b| b == b'\n').enumerate() {
            let n = idx + 1;
            if n < self.start_line {
                continue;
            }
            if n > last {
                break;
            }
            let text = String::from_utf8_lossy(line);
            out.push_str(&format!(" {n:>width$} | {}\n", text.trim_end_matches('\r')));
        }
        if self.end_line > last {
            out.push_str(&format!(
                " {:>width$} | ... ({} more lines)\n",
                "",
                self.end_line - last
            ));
        }
        out
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start_line == 0 {
            write!(f, "Dockerfile: {}", self.message)
        } else {
            write!(f, "Dockerfile:{}: {}", self.start_line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_the_lines() {
        let e = ParseError::new("unknown flag: form", 2, 3);
        let src = b"FROM a\nCOPY --form=x \\\n  a b\nRUN x\n";
        assert_eq!(
            e.render("Dockerfile", src),
            "Dockerfile:2: unknown flag: form\n   2 | COPY --form=x \\\n   3 |   a b\n"
        );
        assert_eq!(e.to_string(), "Dockerfile:2: unknown flag: form");
    }
}
