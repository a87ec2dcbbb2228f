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
mod go_value;
mod rewrite;

use go_value::*;
use rewrite::*;

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
    fn durations_print_as_go_prints_them() {
        for (ns, want) in [
            (0, "0s"),
            (7, "7ns"),
            (2_000, "2µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-5_000_000_000, "-5s"),
        ] {
            assert_eq!(lb_container::go_duration(ns), want);
        }
        let c = serde_json::json!({"Config": {"Healthcheck": {"Interval": 30_000_000_000i64}}});
        assert_eq!(render("{{.Config.Healthcheck.Interval}}", c.clone()), "30s");
        assert_eq!(
            render("{{json .Config.Healthcheck.Interval}}", c),
            "30000000000"
        );
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Format::parse("{{.State.Status").is_err());
        let f = Format::parse("{{.Nope.Deeper}}").unwrap();
        assert!(f.render(&serde_json::json!({"State": {}})).is_err());
    }
}
