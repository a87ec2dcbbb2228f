//! The template's text made to run on gtmpl as Go's text/template runs: printed values
//! through `gofmt`, `range` in Go's key order with its `else` only after nothing, and
//! docker's `.Label "KEY"` method.

use super::*;

/// `text` with each action that prints a value (`{{.Config.Cmd}}`, `{{.A | f}}`) made
/// `{{gofmt (...)}}`: gtmpl prints composite values in Rust's debug form, docker in Go's.
/// Control actions (`if`, `range`, `end`...), comments and variable declarations are
/// left as they are.
pub(super) fn go_printed(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    // The blocks open here, innermost last: a range is wrapped in an `if` that holds its
    // `else` (gtmpl runs a range's else part after every range, Go only after an empty one).
    let mut blocks: Vec<Block> = Vec::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let action = &rest[start + 2..];
        let Some(end) = action_end(action) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &action[..end];
        let (left, body) = match inner.strip_prefix("- ") {
            Some(b) => ("- ", b),
            None => ("", inner),
        };
        let (body, right) = match body.strip_suffix(" -") {
            Some(b) => (b, " -"),
            None => (body, ""),
        };
        let word = body
            .trim_start()
            .split([' ', '\t', '\n'])
            .next()
            .unwrap_or("");
        let control = matches!(
            word,
            "if" | "else"
                | "end"
                | "range"
                | "with"
                | "define"
                | "template"
                | "block"
                | "break"
                | "continue"
        ) || body.trim_start().starts_with("/*")
            || body.contains(":=")
            || body.trim().is_empty()
            || is_assignment(body);
        if matches!(word, "if" | "with" | "define" | "block") {
            blocks.push(Block::Other);
        }
        if word == "range" {
            let (range, declared, pipe) = sorted_range(body.trim_start());
            blocks.push(Block::Range);
            out.push_str(&format!("{{{{{left}if lbany ({pipe})}}}}{{{{{range}"));
            if let Some((k, v)) = declared {
                out.push_str(&format!("}}}}{{{{{k} := $lbpair.k}}}}{{{{{v} := $lbpair.v"));
            }
            out.push_str(right);
        } else if word == "else" && body.trim() == "else" && blocks.last() == Some(&Block::Range) {
            blocks.pop();
            blocks.push(Block::RangeElse);
            out.push_str(&format!("{{{{{left}end}}}}{{{{else{right}"));
        } else if word == "end" && blocks.last() == Some(&Block::Range) {
            blocks.pop();
            out.push_str(&format!("{{{{{left}end}}}}{{{{end{right}"));
        } else if control {
            if word == "end" {
                blocks.pop();
            }
            out.push_str("{{");
            out.push_str(inner);
        } else {
            // A field named as it is (`.Config.Entrypoint`) is printed knowing its name:
            // a nil slice or map of docker's types prints as Go prints them.
            let field = body.trim();
            let name = field
                .rsplit('.')
                .next()
                .filter(|_| {
                    field.starts_with('.')
                        && field[1..].split('.').all(|p| {
                            !p.is_empty()
                                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        })
                })
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            out.push_str(&format!("{{{{{left}gofmt ({field}){name}{right}"));
        }
        out.push_str("}}");
        rest = &action[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A `range` action's body made to visit a map's keys in Go's order, sorted (gtmpl's
/// follows a HashMap's, a new order each run): its pipeline goes through `lbvalues` (the
/// values, by key), or, with a key variable, through `lbpairs` (key/value pairs by key),
/// the pair then declared under the template's own names (returned: they are declared at
/// the start of the range's body). A nil pipeline ranges over nothing, as Go's.
/// Also its pipeline alone (the `if` around the range tests it).
pub(super) fn sorted_range(body: &str) -> (String, Option<(String, String)>, String) {
    let rest = body.strip_prefix("range").unwrap_or(body).trim();
    let Some((vars, pipe)) = rest
        .split_once(":=")
        .filter(|(v, _)| v.trim().starts_with('$'))
    else {
        return (format!("range lbvalues ({rest})"), None, rest.to_string());
    };
    let pipe = pipe.trim();
    match vars.split_once(',') {
        Some((k, v)) => (
            format!("range $lbindex, $lbpair := lbpairs ({pipe})"),
            Some((k.trim().to_string(), v.trim().to_string())),
            pipe.to_string(),
        ),
        None => (
            format!("range {} := lbvalues ({pipe})", vars.trim()),
            None,
            pipe.to_string(),
        ),
    }
}

/// A block `go_printed` has seen open.
#[derive(PartialEq)]
pub(super) enum Block {
    Range,
    /// A range's `else` part (inside the `if` that wraps the range).
    RangeElse,
    Other,
}

/// `lbany X`: whether a range over X has anything to visit.
pub(super) fn range_any(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(match arg(args, 0, "range")? {
        Value::Map(m) | Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Nil | Value::NoValue => false,
        _ => true,
    }))
}

/// `lbvalues X`: a map's values in the order of its keys; a list as it is; nil, nothing.
pub(super) fn range_values(args: &[Value]) -> Result<Value, FuncError> {
    Ok(match arg(args, 0, "range")? {
        Value::Map(m) | Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Array(keys.into_iter().map(|k| m[k].clone()).collect())
        }
        Value::Nil | Value::NoValue => Value::Array(Vec::new()),
        v => v.clone(),
    })
}

/// `lbpairs X`: `{k, v}` for each key of a map in order, or each index of a list.
pub(super) fn range_pairs(args: &[Value]) -> Result<Value, FuncError> {
    let pair = |k: Value, v: Value| {
        Value::Map(HashMap::from([("k".to_string(), k), ("v".to_string(), v)]))
    };
    Ok(match arg(args, 0, "range")? {
        Value::Map(m) | Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Array(
                keys.into_iter()
                    .map(|k| pair(Value::from(k.clone()), m[k].clone()))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| pair(Value::from(i), v.clone()))
                .collect(),
        ),
        Value::Nil | Value::NoValue => Value::Array(Vec::new()),
        v => v.clone(),
    })
}

/// `.Label "KEY"` (docker's method on `ps` rows) as a call of `lblabel` on the row.
pub(super) fn label_calls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(".Label \"") {
        // `.Labels`, `$x.Label` and the like are left alone.
        let before = rest[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
            continue;
        }
        let key_start = at + ".Label ".len();
        let Some(len) = rest[key_start + 1..].find('"') else {
            break;
        };
        let key = &rest[key_start..key_start + len + 2];
        out.push_str(&rest[..at]);
        out.push_str(&format!("(lblabel $ {key})"));
        rest = &rest[key_start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// `lblabel ROW KEY`: the value of label KEY of a row whose `Labels` is docker's
/// `k=v,k2=v2` (or a map); empty when it has none.
pub(super) fn label(args: &[Value]) -> Result<Value, FuncError> {
    let key = text(arg(args, 1, "Label")?);
    let labels = match arg(args, 0, "Label")? {
        Value::Map(m) | Value::Object(m) => m.get("Labels").cloned(),
        _ => None,
    };
    Ok(Value::String(match labels {
        Some(Value::String(s)) => s
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default(),
        Some(Value::Map(m)) | Some(Value::Object(m)) => m.get(&key).map(text).unwrap_or_default(),
        _ => String::new(),
    }))
}

/// Whether an action body is `$x = ...` (a plain assignment prints nothing).
pub(super) fn is_assignment(body: &str) -> bool {
    let b = body.trim_start();
    b.starts_with('$')
        && b.split_once('=')
            .is_some_and(|(l, r)| !l.contains(['(', '|', '"']) && !r.starts_with('='))
}

/// Where the action starting `text` (after its `{{`) ends: the index of its `}}`, past
/// any string or raw string in it.
pub(super) fn action_end(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}
