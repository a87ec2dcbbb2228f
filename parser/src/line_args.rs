//! How each instruction's arguments are cut out of its logical line (BuildKit's
//! `splitCommand`, `extractBuilderFlags` and the per-instruction line parsers).

use crate::json_array::{self, JsonArray};
use crate::text::{is_space, is_space_byte, lossy, split_ascii_ws};

/// The arguments of one instruction as the syntax tree holds them.
#[derive(Debug, Default)]
pub struct LineArgs {
    pub args: Vec<String>,
    /// The arguments came from the JSON (exec) form.
    pub json: bool,
}

/// Splits a logical line into keyword, flags and the rest.
pub fn split_command(line: &str) -> (&str, Vec<String>, String) {
    let parts = split_ascii_ws(line.trim(), 2);
    let cmd = parts[0];
    match parts.get(1) {
        Some(rest) => {
            let (args, flags) = extract_builder_flags(rest);
            (cmd, flags, args.trim().to_string())
        }
        None => (cmd, Vec::new(), String::new()),
    }
}

/// Takes the leading `--flag[=value]` words off `line`; returns the rest and the flags.
///
/// Like BuildKit this reads the line byte by byte, and a lone `--` ends the flags.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= b.len() {
        let at_end = pos == b.len();
        let mut ch = if at_end { 0 } else { b[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (lossy(&b[pos..]), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (lossy(&b[pos..]), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = b[pos];
            }
            word.push(char::from(ch));
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = b[pos];
        }
        word.push(char::from(ch));
        pos += 1;
    }
    (String::new(), words)
}

/// Splits at unquoted white space, keeping quotes and escapes in the words
/// (BuildKit's `parseWords`, used by ENV, LABEL and ARG).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut chars = rest.chars().peekable();
    loop {
        let Some(ch) = chars.next() else {
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        if phase == Phase::Spaces {
            if is_space(ch) {
                continue;
            }
            phase = Phase::Word;
        }
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                match chars.next() {
                    // An escape token at the end of the line is dropped.
                    None => continue,
                    // Unquoted, the escape token stays with the character it escapes.
                    Some(next) => {
                        word.push(ch);
                        word.push(next);
                    }
                }
                continue;
            }
            word.push(ch);
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        // The escape token escapes nothing inside single quotes.
        if ch == escape && quote != '\'' {
            match chars.next() {
                None => {
                    phase = Phase::Word;
                    continue;
                }
                Some(next) => {
                    word.push(ch);
                    word.push(next);
                }
            }
            continue;
        }
        word.push(ch);
    }
    words
}

/// ENV and LABEL: `key value` (legacy) or `k=v k2=v2`, as (key, value, separator) triples.
pub fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<LineArgs, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(LineArgs::default());
    }
    let mut args = Vec::new();
    if !words[0].contains('=') {
        let parts = split_ascii_ws(rest, 2);
        if parts.len() < 2 {
            return Err(format!("{key} must have two arguments"));
        }
        args.extend([parts[0].to_string(), parts[1].to_string(), String::new()]);
        return Ok(LineArgs { args, json: false });
    }
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                crate::text::quote(&word)
            ));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(LineArgs { args, json: false })
}

/// ARG: each word one argument (`name` or `name=value`).
pub fn parse_name_or_name_val(rest: &str, escape: char) -> LineArgs {
    LineArgs {
        args: parse_words(rest, escape),
        json: false,
    }
}

/// FROM, EXPOSE and the non-JSON form of ADD, COPY and VOLUME.
pub fn parse_whitespace_delimited(rest: &str) -> LineArgs {
    if rest.is_empty() {
        return LineArgs::default();
    }
    LineArgs {
        args: split_ascii_ws(rest, 0)
            .into_iter()
            .map(String::from)
            .collect(),
        json: false,
    }
}

/// USER, WORKDIR, MAINTAINER, STOPSIGNAL: the rest of the line.
pub fn parse_string(rest: &str) -> LineArgs {
    if rest.is_empty() {
        return LineArgs::default();
    }
    LineArgs {
        args: vec![rest.to_string()],
        json: false,
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// RUN, CMD, ENTRYPOINT, SHELL: the JSON form, or the rest of the line as one argument.
pub fn parse_maybe_json(rest: &str) -> Result<LineArgs, String> {
    if rest.is_empty() {
        return Ok(LineArgs::default());
    }
    match json_array::parse(rest) {
        JsonArray::Strings(args) => Ok(LineArgs { args, json: true }),
        JsonArray::NotStrings => Err(NOT_STRINGS.into()),
        JsonArray::Invalid => Ok(LineArgs {
            args: vec![rest.to_string()],
            json: false,
        }),
    }
}

/// ADD, COPY, VOLUME: the JSON form, or the words of the line.
pub fn parse_maybe_json_to_list(rest: &str) -> Result<LineArgs, String> {
    match json_array::parse(rest) {
        JsonArray::Strings(args) => Ok(LineArgs { args, json: true }),
        JsonArray::NotStrings => Err(NOT_STRINGS.into()),
        JsonArray::Invalid => Ok(parse_whitespace_delimited(rest)),
    }
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`), then a command in either form.
pub fn parse_health_config(rest: &str) -> Result<LineArgs, String> {
    let b = rest.as_bytes();
    let sep = b.iter().position(|&c| is_space_byte(c)).unwrap_or(b.len());
    let next = b[sep..]
        .iter()
        .position(|&c| !is_space_byte(c))
        .map_or(b.len(), |p| sep + p);
    if sep == 0 {
        return Ok(LineArgs::default());
    }
    let typ = lossy(&b[..sep]);
    let cmd = parse_maybe_json(&lossy(&b[next..]))?;
    let mut args = vec![typ];
    args.extend(cmd.args);
    Ok(LineArgs {
        args,
        json: cmd.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_split_off() {
        let (cmd, flags, rest) = split_command("COPY --from=a --chown='u g' src dst");
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=a", "--chown=u g"]);
        assert_eq!(rest, "src dst");
        let (_, flags, rest) = split_command("COPY --a -- --b c");
        assert_eq!(flags, vec!["--a"]);
        assert_eq!(rest, "--b c");
        let (_, flags, rest) = split_command("RUN --mount=type=cache,target=/x");
        assert_eq!(flags, vec!["--mount=type=cache,target=/x"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e 'f\'"#, '\\'),
            vec![r#"a="b c""#, r"d\ e", r"'f\'"]
        );
    }

    #[test]
    fn health_config() {
        let a = parse_health_config("CMD [\"ls\"]").unwrap();
        assert_eq!(a.args, vec!["CMD", "ls"]);
        assert!(a.json);
        let a = parse_health_config("NONE").unwrap();
        assert_eq!(a.args, vec!["NONE"]);
    }
}
