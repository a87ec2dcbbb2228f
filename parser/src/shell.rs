//! Shell-word processing: the variable expansion, quote removal and word splitting that
//! ENV, ARG, FROM, COPY, ADD, WORKDIR, USER, EXPOSE, LABEL, VOLUME and STOPSIGNAL apply to
//! their arguments, with BuildKit's exact rules (`frontend/dockerfile/shell`).
//!
//! Supported: `$V ${V} ${V:-w} ${V-w} ${V:+w} ${V+w} ${V:?msg} ${V?msg} ${V#p} ${V##p}
//! ${V%p} ${V%%p} ${V/p/r} ${V//p/r}`, single and double quotes, and the escape token.
//! Patterns (`#`, `%`, `/`) know `*`, `?` and escapes, as BuildKit's do.
//!
//! A `${...}` inside a `${...}` is read by recursion, so the nesting is bounded
//! ([`MAX_NESTING`]): a hostile word cannot overflow the stack of the thread expanding it
//! (a build's stage threads have 2 MiB); past the bound the word is an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::text::{is_digit, is_letter, is_space};

/// How deep `${...}` may nest in one word: far beyond any real Dockerfile, and well within
/// a 2 MiB thread stack (a build's stage thread) even in a debug build, where a level
/// takes about 5 KiB of stack (under 1 KiB optimised).
pub const MAX_NESTING: usize = 200;

/// The longest a word may grow by expansion (16 MiB: far above any real ENV, ARG or
/// LABEL value, far below what a doubling chain would take).
pub const MAX_EXPANDED: usize = 16 << 20;

/// Where variable values come from.
pub trait Env {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Env for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// `(name, value)` pairs; the last definition of a name wins, as in an image's Env list.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A word that could not be expanded (unterminated quote, bad `${}`, `${V?}` on an unset V).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellError {
    pub word: String,
    pub message: String,
}

/// How much of a word an error quotes: a hostile 100 KB word is not repeated whole.
const QUOTED_WORD_MAX: usize = 256;

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.word.char_indices().nth(QUOTED_WORD_MAX) {
            Some((cut, _)) => format!("{}...", crate::text::quote(&self.word[..cut])),
            None => crate::text::quote(&self.word),
        };
        write!(f, "failed to process {word}: {}", self.message)
    }
}

impl std::error::Error for ShellError {}

/// The outcome of processing one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word expanded, quotes removed, white space kept (one-word mode).
    pub word: String,
    /// The same, split at unquoted white space (word-splitting mode).
    pub words: Vec<String>,
    /// Variables the word referred to that were set: what a cache key must include.
    pub matched: BTreeSet<String>,
    /// Variables the word referred to that were not set.
    pub unmatched: BTreeSet<String>,
}

/// A shell-word processor; the escape token is `\` or a backtick (the `escape` directive).
#[derive(Debug, Clone)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape tokens in the result.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written instead of expanding them to "".
    pub skip_unset_env: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Processes `word` against `env`: both one-word and word-splitting results.
    pub fn process(&self, word: &str, env: &dyn Env) -> Result<Expansion, ShellError> {
        // Go's text/scanner skips a byte-order mark at the start of its input.
        let src = word.strip_prefix('\u{feff}').unwrap_or(word);
        let mut sw = ShellWord {
            lex: self,
            env,
            src,
            pos: 0,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((w, words)) => Ok(Expansion {
                word: w,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(message) => Err(ShellError {
                word: word.to_string(),
                message,
            }),
        }
    }

    /// One-word mode (BuildKit's `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        self.process(word, env).map(|e| e.word)
    }

    /// Word-splitting mode (BuildKit's `ProcessWords`).
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        self.process(word, env).map(|e| e.words)
    }
}

struct ShellWord<'a> {
    lex: &'a Lexer,
    env: &'a dyn Env,
    src: &'a str,
    pos: usize,
    raw_escapes: bool,
    /// How many `${...}` the reader is inside.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// Accumulates words for word-splitting mode.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if is_space(ch) && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !is_space(ch) {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

type Step<T> = Result<T, String>;

/// How Go prints `string(rune)` for a character that may be end-of-input (-1 → U+FFFD).
fn rune_str(ch: Option<char>) -> String {
    ch.unwrap_or('\u{fffd}').to_string()
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Step<(String, Vec<String>)> {
        if self.depth > MAX_NESTING {
            return Err(format!(
                "syntax error: more than {MAX_NESTING} nested ${{}} expansions"
            ));
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let out = self.stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                // Each `$a` may double a word (`ARG a=$a$a`, forty times over): a word
                // past MAX_EXPANDED bytes is an error, not all the host's memory.
                if result.len() + tmp.len() > MAX_EXPANDED {
                    return Err(format!(
                        "an expanded word is longer than {} MiB",
                        MAX_EXPANDED >> 20
                    ));
                }
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                let mut ch = self.next().unwrap_or(ch);
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // The escape token escapes the next character, except at the end.
                    match self.next() {
                        None => break,
                        Some(c) => ch = c,
                    }
                    words.add_raw_char(ch);
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Step<String> {
        // Everything up to the next ' is literal; a ' cannot be escaped inside.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Step<String> {
        // Literal except for $ and the escape token, which escapes only " $ and itself.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or('\0');
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = self.next().unwrap_or(c);
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    fn process_dollar(&mut self) -> Step<String> {
        self.next(); // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut chs = rune_str(first);
        match first {
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut ch = first;
                let mut null_is_unset = false;
                if ch == Some(':') {
                    null_is_unset = true;
                    ch = self.next();
                    chs.push_str(&rune_str(ch));
                }
                let raw = matches!(ch, Some('#' | '%'));
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset_or_null =
                    value.is_none() || (null_is_unset && value.as_deref() == Some(""));
                match ch {
                    Some('-') => Ok(if unset_or_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if unset_or_null { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    Some(c @ ('%' | '#')) => {
                        // %/# remove the shortest match, %%/## the longest.
                        let value = value.unwrap_or_default();
                        let (pattern, greedy) = match word.strip_prefix(c) {
                            Some(rest) => (rest.to_string(), true),
                            None => (word, false),
                        };
                        if c == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".into());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let Some(value) = self.get_env(&name) else {
                    if self.lex.skip_unset_env {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return substitute(&pattern, "", &replacement, replace_all);
                };
                substitute(&pattern, &value, &replacement, replace_all)
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        // A name is letters, digits and '_'; a leading digit reads digits only ($1),
        // and a special parameter ($@, $*, $#, ...) is one character.
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(c) = self.peek() {
                    if !is_digit(c) {
                        break;
                    }
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// A shell wildcard pattern (`*`, `?`, escapes; no bracket expressions) as a regex.
fn pattern_to_regex(pattern: &str, greedy: bool, anchored: bool) -> Step<regex::Regex> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // An escaped } or / belongs to the ${} syntax, not to the pattern.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    other => {
                        return Err(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{}'",
                            rune_str(other)
                        ));
                    }
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            c => out.push(c),
        }
    }
    regex::Regex::new(&out).map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Step<String> {
    let re = pattern_to_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern but keeps each escape before the character it escapes.
fn reverse_pattern(pattern: &str) -> String {
    let runes: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; runes.len()];
    let last = runes.len().saturating_sub(1);
    let mut i = 0;
    while i < runes.len() {
        let out_idx = last - i;
        if runes[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = runes[i + 1];
            i += 2;
        } else {
            out[out_idx] = runes[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Step<String> {
    // Regexes find leftmost matches, so the shortest suffix is found by reversing both.
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

fn substitute(pattern: &str, value: &str, replacement: &str, all: bool) -> Step<String> {
    let re = pattern_to_regex(pattern, true, false)?;
    if all {
        return Ok(re.replace_all(value, replacement).into_owned());
    }
    Ok(match re.find(value) {
        Some(m) => format!(
            "{}{}{}",
            &value[..m.start()],
            replacement,
            &value[m.end()..]
        ),
        None => value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [("v", "abcabc"), ("p", "/usr/local/bin"), ("e", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(s: &str) -> Result<String, ShellError> {
        Lexer::new('\\').process_word(s, &env())
    }

    #[test]
    fn pattern_removal() {
        assert_eq!(word("${v#a*}").unwrap(), "bcabc");
        assert_eq!(word("${v##a*}").unwrap(), "");
        assert_eq!(word("${v%b*}").unwrap(), "abca");
        assert_eq!(word("${v%%b*}").unwrap(), "a");
        assert_eq!(word("${p#/usr/}").unwrap(), "local/bin");
        assert_eq!(word("${p##*/}").unwrap(), "bin");
        assert_eq!(word("${p%/*}").unwrap(), "/usr/local");
        assert_eq!(word("${v#?b}").unwrap(), "cabc");
        assert_eq!(word("${v#x}").unwrap(), "abcabc");
        assert_eq!(word(r"${v#a\*}").unwrap(), "abcabc");
    }

    #[test]
    fn replacement() {
        assert_eq!(word("${v/b/X}").unwrap(), "aXcabc");
        assert_eq!(word("${v//b/X}").unwrap(), "aXcaXc");
        assert_eq!(word("${v//b*c/X}").unwrap(), "aX");
        assert_eq!(word("${p//\\//:}").unwrap(), ":usr:local:bin");
        assert_eq!(word("${unset/a/b}").unwrap(), "");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            word("${e:?must be set}").unwrap_err().message,
            "e: must be set"
        );
        assert_eq!(
            word("${x?}").unwrap_err().message,
            "x: is not allowed to be unset"
        );
        assert_eq!(
            word("${e:?}").unwrap_err().message,
            "e: is not allowed to be empty"
        );
        assert_eq!(
            word("${x").unwrap_err().to_string(),
            "failed to process \"${x\": unsupported modifier (\u{fffd}) in substitution"
        );
        assert_eq!(
            word("${x:-a").unwrap_err().message,
            "syntax error: missing '}'"
        );
    }

    #[test]
    fn matched_and_unmatched_are_reported() {
        let e = Lexer::new('\\')
            .process("$v ${nope:-x} $p", &env())
            .unwrap();
        assert_eq!(e.matched.into_iter().collect::<Vec<_>>(), vec!["p", "v"]);
        assert_eq!(e.unmatched.into_iter().collect::<Vec<_>>(), vec!["nope"]);
    }

    /// Pattern and substitution behaviour, vector by vector (from BuildKit's lex tests).
    #[test]
    fn pattern_vectors() {
        type Vector<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Vector] = &[
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[("FOO", r"()[]{}^$.*?|\x")],
                Some("x"),
            ),
            (r"${FOO%%\**}", &[("FOO", "xx**")], Some("xx")),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
            (r"${FOO#?\?}", &[("FOO", "???y")], Some("?y")),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                Some(".xxyy."),
            ),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], Some("a")),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$N/$R} - ${FOO//$N/$R}",
                &[("FOO", "/a/foo/b/c.txt"), ("N", "/?/"), ("R", "/")],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                r"${FOO//\//\/}",
                &[("FOO", "/tmp/foo.txt")],
                Some(r"\/tmp\/foo.txt"),
            ),
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("wwxxyy"),
            ),
            ("${FOO//ww}", &[("FOO", "xxyy")], None),
            ("${FOO//}", &[("FOO", "xxyy")], None),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
            ("${FOO=aaa}", &[("FOO", "x")], None),
            ("${FOO#\\x}", &[("FOO", "x")], None),
        ];
        for (input, env, expected) in cases {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let got = Lexer::new('\\').process_word(input, &env).ok();
            assert_eq!(got.as_deref(), *expected, "{input}");
        }
        assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
        assert_eq!(reverse_pattern(r"\\\ab"), r"b\a\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        for bad in ["\\", "\\x", "\\\\\\"] {
            assert!(pattern_to_regex(bad, true, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        assert_eq!(lex.process_word(r"C:\dir`$v", &env()).unwrap(), r"C:\dir$v");
        assert_eq!(
            lex.process_words("a` b c", &env()).unwrap(),
            vec!["a b", "c"]
        );
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut lex = Lexer::new('\\');
        lex.skip_unset_env = true;
        assert_eq!(
            lex.process_word("$x ${y} ${z:-w}", &NoEnv).unwrap(),
            "$x ${y} ${z:-w}"
        );
    }

    /// `${a:+${a:+...x...}}` nested `depth` deep, optionally with each level in quotes.
    fn nested(depth: usize, quoted: bool) -> String {
        let (open, close) = if quoted {
            ("${a:+\"", "\"}")
        } else {
            ("${a:+", "}")
        };
        format!("{}x{}", open.repeat(depth), close.repeat(depth))
    }

    /// Nesting up to the bound expands (on a test thread's 2 MiB stack, unoptimised, as a
    /// build's stage thread does); one more is an error, not a stack overflow, however deep.
    #[test]
    fn nesting_is_bounded() {
        let env: Vec<(String, String)> = vec![("a".into(), "set".into())];
        let lex = Lexer::new('\\');
        for quoted in [false, true] {
            let w = nested(MAX_NESTING, quoted);
            assert_eq!(lex.process_word(&w, &env).unwrap(), "x", "{quoted}");
            let e = lex
                .process_word(&nested(MAX_NESTING + 1, quoted), &env)
                .unwrap_err();
            assert_eq!(
                e.message,
                format!("syntax error: more than {MAX_NESTING} nested ${{}} expansions")
            );
            for depth in [5_000, 200_000] {
                assert!(lex.process_word(&nested(depth, quoted), &env).is_err());
                assert!(lex.process_words(&nested(depth, quoted), &NoEnv).is_err());
            }
        }
        // The error quotes the start of such a word, not all of it.
        let e = lex.process_word(&nested(5_000, false), &env).unwrap_err();
        assert!(e.to_string().len() < 400, "{e}");
        assert!(e.to_string().starts_with("failed to process \"${a:+${a:+"));
        // Unterminated, the same: an error before the stack runs out.
        assert!(lex.process_word(&"${a:-".repeat(100_000), &env).is_err());
        // Nesting in sequence is no nesting: ten thousand side by side expand.
        let flat = nested(3, false).repeat(10_000);
        assert_eq!(lex.process_word(&flat, &env).unwrap(), "x".repeat(10_000));
    }

    /// A doubling chain (`ARG a=$a$a`, forty times) stops at MAX_EXPANDED bytes a word.
    #[test]
    fn expansion_is_bounded() {
        let lex = Lexer::new('\\');
        let mut value = "x".to_string();
        let mut rounds = 0;
        loop {
            let env: Vec<(String, String)> = vec![("a".into(), value.clone())];
            match lex.process_word("${a}$a", &env) {
                Ok(v) => value = v,
                Err(e) => {
                    assert!(e.message.contains("longer than 16 MiB"), "{}", e.message);
                    break;
                }
            }
            rounds += 1;
            assert!(rounds < 40, "never bounded");
        }
        assert_eq!(rounds, 24);
        assert_eq!(value.len(), MAX_EXPANDED);
    }
}
