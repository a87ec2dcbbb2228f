//! `.dockerignore`, with the semantics of docker's `patternmatcher`: one pattern a line,
//! `#` comments, patterns cleaned and anchored at the context root (a leading `/` is
//! dropped), Go `filepath.Match` syntax plus `**` for any number of directories, `!` for
//! exceptions, the last matching pattern deciding. A path is excluded when a pattern
//! matches it or one of its parent directories, so an excluded directory takes its
//! contents with it.

use std::path::{Path, PathBuf};

use regex::Regex;

/// A pattern that is no pattern, named as written (cleaned).
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// A `[` with no `]` after it.
    #[error("{pattern}: unterminated character class")]
    Unterminated { pattern: String },
    /// The pattern's regular expression was refused (a bad class range, say).
    #[error("{pattern}: {source}")]
    Regex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// Why a context's `.dockerignore` (or a COPY's `--exclude`s, read the same way) is no set
/// of patterns.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// `.dockerignore` is there but cannot be read (`path`: where it was looked for).
    #[error(".dockerignore: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pattern on line `line` (from 1).
    #[error(".dockerignore:{line}: {source}")]
    Pattern {
        line: usize,
        #[source]
        source: PatternError,
    },
}

#[derive(Debug)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// The patterns of one context (or one COPY's `--exclude`s).
#[derive(Default, Debug)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// A cleaned pattern as a regular expression anchored at both ends.
fn to_regex(pattern: &str) -> Result<Regex, PatternError> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/` : zero or more directories.
                    i += 1;
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let end = chars[i..].iter().position(|c| *c == ']').map(|p| p + i);
                let Some(end) = end else {
                    return Err(PatternError::Unterminated {
                        pattern: pattern.to_string(),
                    });
                };
                let class: String = chars[i + 1..end].iter().collect();
                let class = class
                    .strip_prefix('^')
                    .map(|c| format!("^{c}"))
                    .unwrap_or(class);
                re.push('[');
                re.push_str(&class.replace('\\', "\\\\"));
                re.push(']');
                i = end;
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).map_err(|source| PatternError::Regex {
        pattern: pattern.to_string(),
        source,
    })
}

/// Go's `filepath.Clean` for a relative pattern, without a leading `/`.
fn clean(p: &str) -> String {
    let (parts, _) = crate::copy::lexical(p);
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

impl Ignore {
    /// Reads `CONTEXT/.dockerignore`; none is no patterns.
    pub fn load(context: &Path) -> Result<Ignore, IgnoreError> {
        // Read inside the context: a link named .dockerignore cannot read a host file.
        let read =
            lb_rootpath::Root::open(context).and_then(|r| r.read(Path::new(".dockerignore")));
        match read {
            Ok(text) => Ignore::parse(&String::from_utf8_lossy(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(source) => Err(IgnoreError::Read {
                path: context.join(".dockerignore"),
                source,
            }),
        }
    }

    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            let body = clean(body);
            if body == "." && exclusion {
                continue; // ignoring the whole context is not possible
            }
            let regex = to_regex(&body).map_err(|source| IgnoreError::Pattern {
                line: n + 1,
                source,
            })?;
            patterns.push(Pattern { regex, exclusion });
        }
        Ok(Ignore { patterns })
    }

    /// Whether there are no patterns (nothing is left out).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (relative to the context, `/`-separated) is left out of the context.
    pub fn excluded(&self, rel: &Path) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let path = rel.to_string_lossy();
        let path = path.trim_start_matches('/');
        let parents: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            let mut matched = p.regex.is_match(path);
            if !matched {
                // A parent directory that matches takes its contents with it.
                for i in 1..parents.len() {
                    if p.regex.is_match(&parents[..i].join("/")) {
                        matched = true;
                        break;
                    }
                }
            }
            if matched {
                excluded = p.exclusion;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &str, path: &str) -> bool {
        Ignore::parse(patterns).unwrap().excluded(Path::new(path))
    }

    #[test]
    fn patterns_follow_dockers_patternmatcher() {
        assert!(ex("*.log", "a.log"));
        assert!(!ex("*.log", "dir/a.log"), "* does not cross directories");
        assert!(ex("**/*.log", "dir/sub/a.log"));
        assert!(ex("**/*.log", "a.log"));
        assert!(
            ex("/build", "build/out/x"),
            "a directory takes its contents"
        );
        assert!(ex("node_modules", "node_modules"));
        assert!(
            !ex("node_modules", "src/node_modules"),
            "anchored at the root"
        );
        assert!(ex("*.md\n!README.md", "NOTES.md"));
        assert!(
            !ex("*.md\n!README.md", "README.md"),
            "the last match decides"
        );
        assert!(ex("# comment\n\n  secret.txt  ", "secret.txt"));
        assert!(ex("a/./b/../c", "a/c"));
        assert!(ex("file?.txt", "file1.txt"));
        assert!(ex("[a-c].txt", "b.txt"));
        assert!(!ex("[^a-c].txt", "b.txt"));
        assert!(!ex("", "anything"));
        assert_eq!(
            Ignore::parse("ok\n[oops").unwrap_err().to_string(),
            ".dockerignore:2: [oops: unterminated character class"
        );
        let bad_range = Ignore::parse("[z-a]").unwrap_err();
        assert!(
            bad_range
                .to_string()
                .starts_with(".dockerignore:1: [z-a]: regex parse error"),
            "{bad_range}"
        );
    }

    #[test]
    fn an_unreadable_dockerignore_is_named() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::create_dir(ctx.path().join(".dockerignore")).unwrap();
        let e = Ignore::load(ctx.path()).unwrap_err();
        assert_eq!(e.to_string(), ".dockerignore: Is a directory (os error 21)");
        assert!(
            matches!(e, IgnoreError::Read { path, .. } if path == ctx.path().join(".dockerignore"))
        );
    }
}
