//! `lb events`: the store's event log as docker's CLI prints it (`TIME TYPE ACTION ID
//! (k=v, ...)`, or `--format`), `--since`/`--until` (Unix times, RFC 3339 dates or Go
//! durations before now), `--filter` (container, event, image, label, type, volume,
//! network). Without `--until` it follows the log, as docker's stream does; without
//! `--since`, only what happens from now is shown.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use lb_layerstore::{Event, Store};

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format the output using the given Go template
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

/// docker's `events.Message` as `--format` sees it: its current fields and the
/// deprecated `status`, `id`, `from` of container and image events.
#[derive(serde::Serialize)]
struct Message<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(rename = "Actor")]
    actor: &'a lb_layerstore::Actor,
    scope: &'static str,
    time: i64,
    #[serde(rename = "timeNano")]
    time_nano: i64,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// docker's `GetTimestamp`: a Go duration (before now), an RFC 3339 date, or Unix
/// seconds (with a fraction); nanoseconds since the epoch.
pub(crate) fn timestamp(value: &str, now: i64) -> anyhow::Result<i64> {
    if value != "0"
        && let Ok(ns) = lb_parser::parse_duration(value)
    {
        return Ok(now - ns);
    }
    if value.contains('-') || value.contains(':') {
        if let Some(secs) = lb_layerstore::parse_rfc3339(value) {
            return Ok(secs * 1_000_000_000);
        }
        if let Some(secs) = lb_layerstore::parse_rfc3339(&format!("{value}T00:00:00Z")) {
            return Ok(secs * 1_000_000_000);
        }
        bail!("failed to parse value as time or duration: {value:?}");
    }
    let (secs, frac) = value.split_once('.').unwrap_or((value, "0"));
    let secs: i64 = secs
        .parse()
        .map_err(|_| anyhow::anyhow!("failed to parse value as time or duration: {value:?}"))?;
    let frac = format!("{frac:0<9}");
    let nanos: i64 = frac[..9]
        .parse()
        .map_err(|_| anyhow::anyhow!("failed to parse value as time or duration: {value:?}"))?;
    Ok(secs * 1_000_000_000 + nanos)
}

/// Whether `e` passes the filters: the same key ORs its values, keys AND.
fn passes(filters: &[(String, String)], e: &Event) -> bool {
    let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
    let mut keys: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.dedup();
    keys.iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match *key {
                "type" => e.kind == *v,
                "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    e.kind == "container"
                        && (e.actor.id.starts_with(v.as_str()) || attr("name") == Some(v))
                }
                "image" => {
                    attr("image") == Some(v)
                        || (e.kind == "image" && (e.actor.id == *v || attr("name") == Some(v)))
                }
                "volume" => e.kind == "volume" && e.actor.id == *v,
                "network" => e.kind == "network" && (e.actor.id == *v || attr("name") == Some(v)),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => attr(lk) == Some(lv),
                    None => attr(v).is_some(),
                },
                // docker ignores a key it does not know.
                _ => true,
            })
    })
}

/// docker's default line: `TIME TYPE ACTION ID (k=v, ...)`, the time in UTC with nine
/// fraction digits.
fn line(e: &Event) -> String {
    let secs = e.time_nano.div_euclid(1_000_000_000);
    let nanos = e.time_nano.rem_euclid(1_000_000_000);
    let date = lb_layerstore::rfc3339(secs);
    let mut out = format!(
        "{}.{nanos:09}Z {} {} {}",
        date.trim_end_matches('Z'),
        e.kind,
        e.action,
        e.actor.id
    );
    if !e.actor.attributes.is_empty() {
        let attrs: Vec<String> = e
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(" ({})", attrs.join(", ")));
    }
    out
}

pub fn events(store: &Store, args: EventsArgs) -> anyhow::Result<ExitCode> {
    // A key docker does not know is ignored, as docker ignores it; a filter without `=`
    // is a usage error (125).
    let filters = match crate::filter_flags::parse(&args.filter, "-f, --filter", "events") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    let now = now_nanos();
    let since = args
        .since
        .as_deref()
        .map(|s| timestamp(s, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| timestamp(s, now))
        .transpose()?;
    let template = args
        .format
        .as_deref()
        .map(crate::template::Format::parse)
        .transpose()?;
    let show = |e: &Event| -> anyhow::Result<()> {
        let text = match &template {
            None => line(e),
            Some(t) => {
                let legacy = matches!(e.kind.as_str(), "container" | "image");
                t.render(&Message {
                    status: legacy.then_some(e.action.as_str()),
                    id: legacy.then_some(e.actor.id.as_str()),
                    from: (e.kind == "container")
                        .then(|| e.actor.attributes.get("image").map(String::as_str))
                        .flatten(),
                    kind: &e.kind,
                    action: &e.action,
                    actor: &e.actor,
                    scope: "local",
                    time: e.time_nano / 1_000_000_000,
                    time_nano: e.time_nano,
                })?
            }
        };
        println!("{text}");
        Ok(())
    };
    let wanted = |e: &Event| {
        since.is_none_or(|s| e.time_nano >= s)
            && until.is_none_or(|u| e.time_nano <= u)
            && passes(&filters, e)
    };
    let mut offset = store.events_end();
    if since.is_some() {
        for e in store.events().iter().filter(|e| wanted(e)) {
            show(e)?;
        }
    }
    // Followed until --until passes (for ever without it).
    loop {
        if until.is_some_and(|u| now_nanos() > u) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
        let (new, to) = store.events_after(offset);
        offset = to;
        for e in new
            .iter()
            .filter(|e| wanted(e) && since.is_none_or(|s| e.time_nano >= s))
        {
            show(e)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_filters_are_dockers() {
        let mut e = Event::now(
            "container",
            "start",
            "abc",
            &[("name", "web"), ("image", "bb")],
        );
        e.time_nano = 1_700_000_000_123_456_789;
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20.123456789Z container start abc (image=bb, name=web)"
        );
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(passes(&f(&[("container", "web")]), &e));
        assert!(passes(&f(&[("event", "stop"), ("event", "start")]), &e));
        assert!(!passes(&f(&[("event", "start"), ("type", "image")]), &e));
        assert!(passes(&f(&[("image", "bb")]), &e));
        assert_eq!(timestamp("10", 0).unwrap(), 10_000_000_000);
        assert_eq!(timestamp("1.5", 0).unwrap(), 1_500_000_000);
        assert_eq!(timestamp("1m", 60_000_000_000).unwrap(), 0);
        assert_eq!(
            timestamp("1970-01-01T00:00:10Z", 0).unwrap(),
            10_000_000_000
        );
    }
}
