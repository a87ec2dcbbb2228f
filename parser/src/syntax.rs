//! Dockerfile text to a syntax tree, exactly as BuildKit's `parser.Parse` reads it:
//! parser directives, comments, line continuations, heredoc bodies, and one [`Node`] per
//! instruction with its flags and arguments. Nothing here knows what an instruction means.

use serde::Serialize;

use crate::error::ParseError;
use crate::line_args::{self, LineArgs};
use crate::shell::{Lexer, NoEnv};
use crate::text::{quote_into, to_lower};

/// A heredoc attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub file_descriptor: u64,
    /// Variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub chomp: bool,
    /// The body as written, each line with its newline (tabs not yet stripped).
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs removed when the heredoc is `<<-`.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction of the syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword as written (`RUN`, `run`, ...).
    pub keyword: String,
    /// Leading `--name[=value]` words, quotes removed.
    pub flags: Vec<String>,
    /// The arguments, cut as the instruction's line parser cuts them.
    pub args: Vec<String>,
    /// ONBUILD's trigger instruction.
    pub trigger: Option<Box<Node>>,
    /// The arguments came from the JSON (exec) form.
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The logical line: continuations joined, comments inside it dropped.
    pub original: String,
    /// First and last physical line, 1-based (heredoc bodies included).
    pub start_line: usize,
    pub end_line: usize,
    /// The comment lines just above the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in lower case: what the instruction is.
    pub fn name(&self) -> String {
        to_lower(&self.keyword)
    }

    /// BuildKit's `Node.Dump()` form: `(copy ["--from=a"] "src" "dst")` without the parens.
    pub fn dump(&self) -> String {
        let mut s = to_lower(&self.keyword);
        if !self.flags.is_empty() {
            s.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                quote_into(&mut s, f);
            }
            s.push(']');
        }
        for a in &self.args {
            s.push(' ');
            quote_into(&mut s, a);
        }
        if let Some(t) = &self.trigger {
            s.push_str(" (");
            s.push_str(&t.dump());
            s.push(')');
        }
        s.trim().to_string()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.trigger, self.name().as_str()) {
            (Some(t), "onbuild") => t,
            _ => self,
        };
        matches!(node.name().as_str(), "add" | "copy" | "run") && !node.json
    }
}

/// A parser directive from the top of the file (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// Something BuildKit accepts but warns about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub message: String,
    pub line: usize,
}

/// The whole file as a syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxTree {
    pub nodes: Vec<Node>,
    pub directives: Vec<Directive>,
    /// `\` or a backtick.
    pub escape: char,
    pub warnings: Vec<Warning>,
}

impl SyntaxTree {
    /// BuildKit's dump of the whole tree: one line per instruction, each ending in `\n`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Go's bufio.Scanner refuses longer tokens, so docker refuses longer lines.
const MAX_LINE: usize = 64 * 1024;

/// Physical lines, each with its line ending.
struct Lines<'a> {
    src: &'a str,
    pos: usize,
    number: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Result<Option<&'a str>, ParseError> {
        if self.pos >= self.src.len() {
            return Ok(None);
        }
        let rest = &self.src[self.pos..];
        let (line, too_long) = match rest.find('\n') {
            Some(i) => (&rest[..=i], i + 1 > MAX_LINE),
            None => (rest, rest.len() >= MAX_LINE),
        };
        if too_long {
            return Err(ParseError::new(
                format!(
                    "dockerfile line greater than max allowed size of {}",
                    MAX_LINE - 1
                ),
                self.number + 1,
                self.number + 1,
            ));
        }
        self.pos += line.len();
        Ok(Some(line))
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

/// Removes a line-continuation escape token: `(text, true)` when the line ends the
/// instruction, `(text without the token, false)` when the next line continues it.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        // A doubled escape token is an escaped escape token, not a continuation.
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// Reads parser directives, which may only stand in the leading comment lines.
struct DirectiveReader {
    done: bool,
    escape: char,
    found: Vec<Directive>,
}

impl DirectiveReader {
    /// Looks at a left-trimmed line; `Ok(true)` when it was a directive.
    fn read(&mut self, line: &str, number: usize) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = line.strip_prefix('#').and_then(parse_directive) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if self.found.iter().any(|d| d.name == name) {
            return Err(ParseError::new(
                format!("only one {name} parser directive can be used"),
                number,
                number,
            ));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(ParseError::new(
                        format!("invalid escape token '{value}' does not match ` or \\"),
                        number,
                        number,
                    ));
                }
            };
        }
        self.found.push(Directive {
            name,
            value: value.to_string(),
            line: number,
        });
        Ok(true)
    }
}

/// `name = value` after the `#`: BuildKit's `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
/// on the text with its leading white space removed.
fn parse_directive(s: &str) -> Option<(&str, &str)> {
    use nom::Parser;
    use nom::bytes::complete::{take_while, take_while1};
    use nom::character::complete::char as ch;
    use nom::combinator::recognize;
    use nom::sequence::pair;

    let go_ws = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let s = s.trim_start();
    let name = recognize(pair(
        take_while1::<_, &str, nom::error::Error<&str>>(|c: char| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ));
    let (rest, (name, _, _, gap)) = (name, take_while(go_ws), ch('='), take_while(go_ws))
        .parse(s)
        .ok()?;
    let mut value = rest.trim_end_matches(go_ws);
    if value.is_empty() {
        // The regex backtracks so that `(.+?)` takes the last white-space character.
        let last = gap.chars().last()?;
        value = &gap[gap.len() - last.len_utf8()..];
    }
    // `.` does not match a newline.
    if value.contains('\n') {
        return None;
    }
    Some((name, value))
}

/// Parses Dockerfile bytes into a syntax tree.
pub fn parse(src: &[u8]) -> Result<SyntaxTree, ParseError> {
    // Validated once; invalid UTF-8 becomes U+FFFD (Go would carry the raw bytes along).
    let text = String::from_utf8_lossy(src);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = Lines {
        src: text,
        pos: 0,
        number: 0,
    };
    let mut directives = DirectiveReader {
        done: false,
        escape: '\\',
        found: Vec::new(),
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = lines.next()? {
        if is_comment(raw) {
            // BuildKit drops the line's first byte, whatever it is, then trims.
            let comment = crate::text::lossy(&raw.as_bytes()[1..]);
            let comment = comment.trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        let token = trim_newline(raw).trim_start();
        if directives.read(token, current + 1)? {
            comments.pop();
        }
        let token = if is_comment(token) { "" } else { token };
        current += 1;
        lines.number = current;

        let start_line = current;
        let escape = directives.escape;
        let (first, mut end) = trim_continuation(token, escape);
        if end && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        let mut empty_continuation = false;
        while !end {
            let Some(raw) = lines.next()? else { break };
            current += 1;
            lines.number = current;
            if is_comment(raw) {
                continue;
            }
            let token = trim_newline(raw);
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, e) = trim_continuation(token, escape);
            line.push_str(piece);
            end = e;
        }
        if empty_continuation {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {line}"),
                line: current,
            });
        }

        let mut node = node_from_line(&line, escape, std::mem::take(&mut comments))
            .map_err(|m| ParseError::new(m, start_line, current))?;

        if node.can_contain_heredoc() && line.contains("<<") {
            let heredocs =
                heredocs_from_line(&line).map_err(|m| ParseError::new(m, start_line, current))?;
            for mut heredoc in heredocs {
                let mut terminated = false;
                while let Some(raw) = lines.next()? {
                    current += 1;
                    lines.number = current;
                    let mut candidate = trim_newline(raw);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new("unterminated heredoc", start_line, current));
                }
                node.heredocs.push(heredoc);
            }
        }
        node.start_line = start_line;
        node.end_line = current;
        if let Some(t) = &mut node.trigger {
            t.start_line = start_line;
            t.end_line = current;
        }
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(ParseError::new("file with no instructions", 0, 0));
    }
    Ok(SyntaxTree {
        nodes,
        directives: directives.found,
        escape: directives.escape,
        warnings,
    })
}

/// One logical line to a node: keyword, flags, then the instruction's own line parser.
fn node_from_line(line: &str, escape: char, comments: Vec<String>) -> Result<Node, String> {
    let (cmd, flags, rest) = line_args::split_command(line);
    let mut trigger = None;
    let parsed = match to_lower(cmd).as_str() {
        "add" | "copy" | "volume" => line_args::parse_maybe_json_to_list(&rest)?,
        "arg" => line_args::parse_name_or_name_val(&rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => line_args::parse_maybe_json(&rest)?,
        "env" => line_args::parse_name_val(&rest, "ENV", escape)?,
        "label" => line_args::parse_name_val(&rest, "LABEL", escape)?,
        "expose" | "from" => line_args::parse_whitespace_delimited(&rest),
        "healthcheck" => line_args::parse_health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => line_args::parse_string(&rest),
        "onbuild" => {
            if !rest.is_empty() {
                trigger = Some(Box::new(node_from_line(&rest, escape, Vec::new())?));
            }
            LineArgs::default()
        }
        // Unknown instructions parse with one empty argument; typing rejects them.
        _ => LineArgs {
            args: vec![String::new()],
            json: false,
        },
    };
    Ok(Node {
        keyword: cmd.to_string(),
        flags,
        args: parsed.args,
        trigger,
        json: parsed.json,
        heredocs: Vec::new(),
        original: line.to_string(),
        start_line: 0,
        end_line: 0,
        comments,
    })
}

/// The heredocs a line opens, in order (`RUN <<A cat - <<-"B"`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // BuildKit ignores a line it cannot split: it then has no heredocs.
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(h) = parse_heredoc(&word)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// Reads one word as a heredoc opener: `^(\d*)<<(-?)([^<]*)$` with a one-word delimiter.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // Digits beyond u64 parse as 0, as Go's ignored ParseUint error leaves them.
    let fd = word[..digits].parse::<u64>().unwrap_or(0);

    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    // A quoted delimiter (any part of it) turns expansion of the body off.
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words.into_iter().next().unwrap_or_default(),
        file_descriptor: fd,
        expand,
        chomp,
        content: String::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(src: &str) -> String {
        parse(src.as_bytes()).unwrap().dump()
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\  ", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(dump("RUN a \\\n# c\n\n  b\n"), "(run \"a   b\")\n");
    }

    #[test]
    fn directives_only_at_top() {
        let t =
            parse(b"# syntax=docker/dockerfile:1\n#escape=`\nFROM a\n# escape=\\\nRUN b`\n c\n")
                .unwrap();
        assert_eq!(t.escape, '`');
        assert_eq!(t.directives.len(), 2);
        assert_eq!(t.dump(), "(from \"a\")\n(run \"b c\")\n");
        assert!(parse(b"# escape=x\nFROM a\n").is_err());
        let e = parse(b"# escape=`\n# escape=`\nFROM a\n").unwrap_err();
        assert_eq!(e.message, "only one escape parser directive can be used");
        assert_eq!(e.start_line, 2);
        // An ordinary comment ends the directives.
        let t = parse(b"# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(t.escape, '\\');
    }

    #[test]
    fn heredocs_are_read() {
        let t =
            parse(b"FROM a\nRUN <<EOF cat - <<-\"END\"\nx $y\nEOF\n\tz\n\tEND\nRUN b\n").unwrap();
        let run = &t.nodes[1];
        assert_eq!(run.start_line, 2);
        assert_eq!(run.end_line, 6);
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].name, "EOF");
        assert!(run.heredocs[0].expand);
        assert_eq!(run.heredocs[0].content, "x $y\n");
        assert_eq!(run.heredocs[1].name, "END");
        assert!(!run.heredocs[1].expand);
        assert!(run.heredocs[1].chomp);
        assert_eq!(run.heredocs[1].body(), "z\n");
        assert_eq!(t.nodes[2].start_line, 7);
        let e = parse(b"FROM a\nRUN <<EOF\nx\n").unwrap_err();
        assert_eq!(e.message, "unterminated heredoc");
    }

    #[test]
    fn bom_and_crlf() {
        assert_eq!(
            dump("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n"),
            "(from \"a\")\n(run \"b  c\")\n"
        );
    }

    #[test]
    fn overlong_line_is_refused() {
        let src = format!("FROM a\nRUN {}\n", "x".repeat(70_000));
        let e = parse(src.as_bytes()).unwrap_err();
        assert_eq!(e.start_line, 2);
    }
}
