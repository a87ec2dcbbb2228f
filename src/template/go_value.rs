//! Values as Go prints them: the JSON of the object a template runs on, read with its
//! keys in order (`Ordered`), written back as JSON, and printed as Go's `%v` (`gofmt`),
//! including docker's nil slices and maps and `time.Duration`s.

use super::*;

pub(super) struct Ordered(pub(super) Value);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        d.deserialize_any(OrderedVisitor::default()).map(Ordered)
    }
}

/// Reads a value whose key in its parent object is `key` (and the parent's own `parent`):
/// the object of a field that is a Go map in docker's types becomes a template map,
/// any other object a struct (see [`go_format`]).
pub(super) struct KeyedSeed<'a> {
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
pub(super) fn is_go_map(parent: &str, key: &str) -> bool {
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
pub(super) struct OrderedVisitor {
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
pub(super) fn keys_in_order(o: &HashMap<String, Value>) -> Vec<String> {
    let mut sorted: Vec<String> = o.keys().cloned().collect();
    sorted.sort();
    KEY_ORDER
        .with(|k| k.borrow().get(&sorted).cloned())
        .unwrap_or(sorted)
}

/// `v` as JSON text, objects' keys in their order where it is known (else sorted).
pub(super) fn write_json(v: &Value, out: &mut String) {
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
pub(super) fn go_format(v: &Value, out: &mut String) {
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
pub(super) fn gofmt(args: &[Value]) -> Result<Value, FuncError> {
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
    // A Go time.Duration (a healthcheck's times) prints as Go's String() does.
    if matches!(
        name.as_str(),
        "Interval" | "Timeout" | "StartPeriod" | "StartInterval"
    ) && let Value::Number(n) = value
        && let Some(ns) = n.as_i64()
    {
        return Ok(Value::String(lb_container::go_duration(ns)));
    }
    let mut out = String::new();
    go_format(value, &mut out);
    Ok(Value::String(out))
}

/// The fields of docker's types that are Go slices, which print `[]` when nil (JSON
/// `null`).
pub(super) fn is_go_slice(name: &str) -> bool {
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
