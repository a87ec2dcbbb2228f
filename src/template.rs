//! docker's `--format`: a Go template (text/template, through the `gtmpl` crate) run on
//! each object a command shows, with the functions docker adds (`json`, `join`, `lower`,
//! `upper`, `title`, `split`, `truncate`, `pad`). The objects arrive as JSON values: the same
//! keys `inspect` prints are the fields a template reads.

use std::collections::HashMap;

use anyhow::{Context as _, anyhow};
use gtmpl::{Context, FuncError, Template, Value};

/// A parsed `--format`.
pub struct Format {
    template: Template,
}

impl Format {
    /// Parses `text`; docker's error for a template that does not parse.
    pub fn parse(text: &str) -> anyhow::Result<Format> {
        let mut template = Template::default();
        template.add_funcs(&[
            ("json", json as gtmpl::Func),
            ("join", join),
            ("lower", lower),
            ("upper", upper),
            ("title", title),
            ("split", split),
            ("truncate", truncate),
            ("pad", pad),
        ]);
        template.add_funcs(&[
            ("gofmt", gofmt as gtmpl::Func),
            ("lbvalues", range_values),
            ("lbpairs", range_pairs),
            ("lbany", range_any),
            ("lblabel", label),
        ]);
        template
            .parse(go_printed(&label_calls(text)))
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format { template })
    }

    /// The template run on `object`.
    pub fn render(&self, object: &impl serde::Serialize) -> anyhow::Result<String> {
        // Through its JSON text: a `serde_json::Value` would sort the object's keys.
        let json = serde_json::to_string(object).context("the object to format")?;
        let Ordered(value) = serde_json::from_str(&json).context("the object to format")?;
        self.template
            .render(&Context::from(value))
            .map_err(|e| match e {
                // Its text holds the whole object.
                gtmpl::error::ExecError::NoFiledFor(key, _) => {
                    anyhow!("template: executing: map has no entry for key \"{key}\"")
                }
                e => anyhow!("template: executing: {e}"),
            })
    }
}

/// `--format TEMPLATE` run on each of `rows`, one line each, or `table TEMPLATE`: a
/// header line first (each `{{.Field}}` replaced by its column's name in `columns`), the
/// cells aligned as docker's tabwriter aligns them.
pub fn table_or_lines(
    format: &str,
    columns: &[(&str, &str)],
    rows: &[impl serde::Serialize],
) -> anyhow::Result<String> {
    let (table, text) = match format.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start().to_string()),
        None => (false, format.to_string()),
    };
    let template = Format::parse(&text)?;
    let mut lines = Vec::new();
    if table {
        let mut head = text.clone();
        for (field, header) in columns {
            head = head.replace(&format!("{{{{.{field}}}}}"), header);
        }
        lines.push(head.replace("\\t", "\t"));
    }
    for row in rows {
        lines.push(template.render(row)?.replace("\\t", "\t"));
    }
    Ok(if table {
        aligned(&lines, 10)
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    })
}

/// Lines whose tab-separated cells are padded to their column's width plus three spaces,
/// at least `min_width` (docker's tabwriter: minimum width 10 for its formatter's tables,
/// 20 for `top`, padding 3); the last cell of a line as it is.
pub fn aligned(lines: &[String], min_width: usize) -> String {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = c.chars().count();
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(w);
        }
    }
    let mut out = String::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            out.push_str(c);
            if i + 1 < row.len() {
                let width = (widths[i] + 3).max(min_width);
                out.push_str(&" ".repeat(width - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

thread_local! {
    /// The order of each object's keys in the value being rendered, by its sorted key set:
    /// the template's maps are unordered, and `{{json .X}}` prints keys in the object's
    /// order, as docker does.
    static KEY_ORDER: std::cell::RefCell<HashMap<Vec<String>, Vec<String>>> =
        std::cell::RefCell::new(HashMap::new());
}

/// A template value read from JSON, each object's key order noted in [`KEY_ORDER`].
struct Ordered(Value);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        d.deserialize_any(OrderedVisitor::default()).map(Ordered)
    }
}

/// Reads a value whose key in its parent object is `key` (and the parent's own `parent`):
/// the object of a field that is a Go map in docker's types becomes a template map,
/// any other object a struct (see [`go_format`]).
struct KeyedSeed<'a> {
    parent: &'a str,
    key: &'a str,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyedSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(OrderedVisitor {
            parent: self.parent.to_string(),
            key: self.key.to_string(),
        })
    }
}

/// The fields of docker's types that are Go maps (printed `map[k:v]`, keys sorted) when
/// they hold objects; other objects are structs (printed `{v1 v2}`, in field order).
fn is_go_map(parent: &str, key: &str) -> bool {
    matches!(
        key,
        "Labels"
            | "ExposedPorts"
            | "Volumes"
            | "PortBindings"
            | "Ports"
            | "Networks"
            | "Sysctls"
            | "StorageOpt"
            | "Tmpfs"
            | "Annotations"
            | "Data"
            | "Options"
            | "DriverOpts"
            | "Containers"
            | "Attributes"
    ) || (key == "Config" && parent == "LogConfig")
        || (key == "Status" && parent.is_empty())
}

#[derive(Default)]
struct OrderedVisitor {
    parent: String,
    key: String,
}

impl<'de> serde::de::Visitor<'de> for OrderedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        // An array's elements are of the array's field.
        while let Some(v) = seq.next_element_seed(KeyedSeed {
            parent: &self.parent,
            key: &self.key,
        })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut order = Vec::new();
        let mut fields = HashMap::new();
        let go_map = is_go_map(&self.parent, &self.key);
        while let Some(k) = map.next_key::<String>()? {
            // A map's values are of the map's own field: their objects are structs.
            let key = if go_map { "" } else { k.as_str() };
            let v = map.next_value_seed(KeyedSeed {
                parent: &self.key,
                key,
            })?;
            order.push(k.clone());
            fields.insert(k, v);
        }
        let mut sorted = order.clone();
        sorted.sort();
        KEY_ORDER.with(|k| k.borrow_mut().insert(sorted, order));
        Ok(if go_map {
            Value::Map(fields)
        } else {
            Value::Object(fields)
        })
    }
}

/// An object's keys in the order its JSON had them (see [`KEY_ORDER`]), else sorted.
fn keys_in_order(o: &HashMap<String, Value>) -> Vec<String> {
    let mut sorted: Vec<String> = o.keys().cloned().collect();
    sorted.sort();
    KEY_ORDER
        .with(|k| k.borrow().get(&sorted).cloned())
        .unwrap_or(sorted)
}

/// `v` as JSON text, objects' keys in their order where it is known (else sorted).
fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
        Value::Number(n) => {
            let n = n
                .as_i64()
                .map(serde_json::Value::from)
                .or_else(|| n.as_u64().map(serde_json::Value::from))
                .or_else(|| n.as_f64().map(serde_json::Value::from))
                .unwrap_or(serde_json::Value::Null);
            out.push_str(&n.to_string());
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(o) | Value::Map(o) => {
            out.push('{');
            for (i, k) in keys_in_order(o).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::from(k.as_str()).to_string());
                out.push(':');
                write_json(&o[k], out);
            }
            out.push('}');
        }
    }
}

/// `v` as Go's `fmt` prints a value with `%v`, as docker's templates print a field:
/// slices `[a b]`, maps `map[k:v]` (keys sorted), structs `{v1 v2}`, nil `<nil>`.
fn go_format(v: &Value, out: &mut String) {
    match v {
        Value::NoValue => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_format(item, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_format(&m[*k], out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, k) in keys_in_order(o).iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_format(&o[k], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What every printing action of a template is wrapped in (see [`go_printed`]), with the
/// field's name when the action names one.
fn gofmt(args: &[Value]) -> Result<Value, FuncError> {
    let value = arg(args, 0, "gofmt")?;
    let name = args.get(1).map(text).unwrap_or_default();
    if matches!(value, Value::Nil) {
        if is_go_map("", &name) {
            return Ok(Value::String("map[]".into()));
        }
        if is_go_slice(&name) {
            return Ok(Value::String("[]".into()));
        }
    }
    let mut out = String::new();
    go_format(value, &mut out);
    Ok(Value::String(out))
}

/// The fields of docker's types that are Go slices, which print `[]` when nil (JSON
/// `null`).
fn is_go_slice(name: &str) -> bool {
    matches!(
        name,
        "Cmd"
            | "Entrypoint"
            | "Env"
            | "Args"
            | "Binds"
            | "Dns"
            | "DnsOptions"
            | "DnsSearch"
            | "ExtraHosts"
            | "CapAdd"
            | "CapDrop"
            | "GroupAdd"
            | "Links"
            | "VolumesFrom"
            | "Devices"
            | "SecurityOpt"
            | "Mounts"
            | "Aliases"
            | "OnBuild"
            | "Shell"
            | "RepoTags"
            | "RepoDigests"
            | "Layers"
    )
}

/// `text` with each action that prints a value (`{{.Config.Cmd}}`, `{{.A | f}}`) made
/// `{{gofmt (...)}}`: gtmpl prints composite values in Rust's debug form, docker in Go's.
/// Control actions (`if`, `range`, `end`...), comments and variable declarations are
/// left as they are.
fn go_printed(text: &str) -> String {
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
fn sorted_range(body: &str) -> (String, Option<(String, String)>, String) {
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
enum Block {
    Range,
    /// A range's `else` part (inside the `if` that wraps the range).
    RangeElse,
    Other,
}

/// `lbany X`: whether a range over X has anything to visit.
fn range_any(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Bool(match arg(args, 0, "range")? {
        Value::Map(m) | Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Nil | Value::NoValue => false,
        _ => true,
    }))
}

/// `lbvalues X`: a map's values in the order of its keys; a list as it is; nil, nothing.
fn range_values(args: &[Value]) -> Result<Value, FuncError> {
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
fn range_pairs(args: &[Value]) -> Result<Value, FuncError> {
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
fn label_calls(text: &str) -> String {
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
fn label(args: &[Value]) -> Result<Value, FuncError> {
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
fn is_assignment(body: &str) -> bool {
    let b = body.trim_start();
    b.starts_with('$')
        && b.split_once('=')
            .is_some_and(|(l, r)| !l.contains(['(', '|', '"']) && !r.starts_with('='))
}

/// Where the action starting `text` (after its `{{`) ends: the index of its `}}`, past
/// any string or raw string in it.
fn action_end(text: &str) -> Option<usize> {
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

fn arg<'a>(args: &'a [Value], n: usize, name: &str) -> Result<&'a Value, FuncError> {
    args.get(n)
        .ok_or_else(|| FuncError::Generic(format!("{name}: missing argument {}", n + 1)))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{{json .X}}`: the value as JSON.
fn json(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    write_json(arg(args, 0, "json")?, &mut out);
    Ok(Value::String(out))
}

/// `{{join .Args " "}}`.
fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = text(arg(args, 1, "join")?);
    match arg(args, 0, "join")? {
        Value::Array(a) => Ok(Value::String(
            a.iter().map(text).collect::<Vec<_>>().join(&sep),
        )),
        Value::Nil | Value::NoValue => Ok(Value::String(String::new())),
        other => Ok(Value::String(text(other))),
    }
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(arg(args, 0, "lower")?).to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(text(arg(args, 0, "upper")?).to_uppercase()))
}

/// Each word's first letter in upper case.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "title")?);
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(Value::String(out))
}

/// `{{split .Name "/"}}`: the parts, as an array.
fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "split")?);
    let sep = text(arg(args, 1, "split")?);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

/// A count argument of a function, as a number or its text.
fn count(args: &[Value], n: usize, name: &str) -> Result<usize, FuncError> {
    match arg(args, n, name)? {
        Value::Number(n) => Ok(n.as_u64().unwrap_or(0) as usize),
        other => text(other)
            .parse()
            .map_err(|_| FuncError::Generic(format!("{name}: argument {} is not a number", n + 1))),
    }
}

/// `{{pad .State 1 0}}`: a value that is not empty, with that many spaces before and
/// after it.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "pad")?);
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    let (before, after) = (count(args, 1, "pad")?, count(args, 2, "pad")?);
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

/// `{{truncate .ID 12}}`: at most that many characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = text(arg(args, 0, "truncate")?);
    let n = match arg(args, 1, "truncate")? {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        other => text(other)
            .parse()
            .map_err(|_| FuncError::Generic("truncate: the length is not a number".into()))?,
    };
    Ok(Value::String(s.chars().take(n).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, v: serde_json::Value) -> String {
        Format::parse(t).unwrap().render(&v).unwrap()
    }

    #[test]
    fn docker_templates_render() {
        let c = serde_json::json!({
            "Id": "abcdef0123456789",
            "State": {"Status": "running", "Pid": 42, "Running": true},
            "Args": ["-c", "sleep 5"],
            "Config": {"Labels": {"a": "b"}, "Env": ["A=1", "B=2"]},
        });
        assert_eq!(render("{{.State.Status}}", c.clone()), "running");
        assert_eq!(render("{{.State.Pid}}", c.clone()), "42");
        assert_eq!(render("{{index .Config.Labels \"a\"}}", c.clone()), "b");
        assert_eq!(
            render("{{range .Config.Env}}{{.}};{{end}}", c.clone()),
            "A=1;B=2;"
        );
        assert_eq!(render("{{json .State.Status}}", c.clone()), "\"running\"");
        assert_eq!(render("{{json .Config.Labels}}", c.clone()), r#"{"a":"b"}"#);
        assert_eq!(render("{{join .Args \" \"}}", c.clone()), "-c sleep 5");
        assert_eq!(render("{{truncate .Id 6}}", c.clone()), "abcdef");
        assert_eq!(render("{{upper .State.Status}}", c.clone()), "RUNNING");
        assert_eq!(
            render("{{if .State.Running}}up{{else}}down{{end}}", c.clone()),
            "up"
        );
    }

    #[test]
    fn composite_values_print_as_gos() {
        let c = serde_json::json!({
            "Args": ["-c", "sleep 5"],
            "Config": {"Labels": {"b": "2", "a": "1"}, "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}},
            "HostConfig": {"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                           "LogConfig": {"Type": "json-file", "Config": {}}},
            "State": {"Health": null},
            "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}},
        });
        let cases = [
            ("{{.Args}}", "[-c sleep 5]"),
            ("{{.Config.Cmd}}", "[sh]"),
            ("{{.Config.Labels}}", "map[a:1 b:2]"),
            ("{{.Config.ExposedPorts}}", "map[80/tcp:{}]"),
            ("{{.HostConfig.LogConfig.Config}}", "map[]"),
            ("{{.State.Health}}", "<nil>"),
            ("{{.NetworkSettings.Ports}}", "map[80/tcp:[{0.0.0.0 8080}]]"),
            ("{{- .Args -}} x", "[-c sleep 5]x"),
            ("{{ .Config.Cmd | json }}", "[\"sh\"]"),
            ("{{$a := .Args}}{{range $a}}<{{.}}>{{end}}", "<-c><sleep 5>"),
            ("{{/* a comment */}}{{index .Args 1}}", "sleep 5"),
            ("{{\"}}\"}}", "}}"),
        ];
        for (t, want) in cases {
            assert_eq!(render(t, c.clone()), want, "{t}");
        }
    }

    #[test]
    fn json_keeps_the_objects_key_order() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Policy {
            name: &'static str,
            maximum_retry_count: u32,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Host {
            restart_policy: Policy,
        }
        let host = Host {
            restart_policy: Policy {
                name: "no",
                maximum_retry_count: 0,
            },
        };
        // A struct prints its fields in order, as Go's `%v`.
        let f = Format::parse("{{.RestartPolicy}}").unwrap();
        assert_eq!(f.render(&host).unwrap(), "{no 0}");
        let f = Format::parse("{{json .RestartPolicy}} {{json .}}").unwrap();
        assert_eq!(
            f.render(&host).unwrap(),
            r#"{"Name":"no","MaximumRetryCount":0} {"RestartPolicy":{"Name":"no","MaximumRetryCount":0}}"#
        );
    }

    #[test]
    fn range_visits_a_maps_keys_in_order_as_go() {
        let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        let labels: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .rev()
            .map(|k| (k.clone(), serde_json::Value::from(format!("v{k}"))))
            .collect();
        let c = serde_json::json!({"Config": {"Labels": labels, "Env": ["A=1", "B=2"]},
                                   "Mounts": null});
        let pairs: String = keys.iter().map(|k| format!("{k}=v{k};")).collect();
        let values: String = keys.iter().map(|k| format!("v{k},")).collect();
        assert_eq!(
            render(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
                c.clone()
            ),
            pairs
        );
        assert_eq!(
            render("{{range .Config.Labels}}{{.}},{{end}}", c.clone()),
            values
        );
        assert_eq!(
            render("{{range $v := .Config.Labels}}{{$v}},{{end}}", c.clone()),
            values
        );
        assert_eq!(
            render(
                "{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}",
                c.clone()
            ),
            "0:A=1 1:B=2 "
        );
        assert_eq!(
            render(
                "{{- range $i, $e := .Config.Env -}}\n {{$e}} {{- end}}",
                c.clone()
            ),
            "A=1B=2"
        );
        assert_eq!(render("[{{range .Mounts}}x{{end}}]", c.clone()), "[]");
        assert_eq!(
            render(
                "{{range .Config.Env}}{{if eq . \"A=1\"}}a{{else}}b{{end}}{{range $.Config.Env}}.{{end}}{{end}}",
                c.clone()
            ),
            "a..b.."
        );
        assert_eq!(
            render(
                "{{range .Config.Env}}{{.}}{{else}}none{{end}}|{{range .Mounts}}{{else}}none{{end}}",
                c
            ),
            "A=1B=2|none"
        );
    }

    #[test]
    fn label_reads_a_rows_labels_as_dockers_method() {
        let row = serde_json::json!({"Names": "web", "Labels": "a=1,com.x.y=two"});
        assert_eq!(
            render(
                "{{.Names}} {{.Label \"com.x.y\"}}|{{.Label \"a\"}}|{{.Label \"z\"}}",
                row.clone()
            ),
            "web two|1|"
        );
        assert_eq!(render("{{.Labels}}", row), "a=1,com.x.y=two");
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Format::parse("{{.State.Status").is_err());
        let f = Format::parse("{{.Nope.Deeper}}").unwrap();
        assert!(f.render(&serde_json::json!({"State": {}})).is_err());
    }
}
