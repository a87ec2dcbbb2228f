//! The store's event log, what `lb events` reads: one JSON line per event (docker's
//! `events.Message`: a type, an action, the actor's id and attributes, the time in
//! nanoseconds), appended by every lb process that changes something (one `write` of a
//! line under `O_APPEND`: processes never interleave a line). The log is bounded: past
//! [`MAX_LOG`] bytes it is renamed to one older file, which the next rotation replaces.
//!
//! It knows events as data: which operations record which events is their callers'.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

use crate::store::Store;

/// The log's size past which it is rotated.
const MAX_LOG: u64 = 1 << 20;

/// One event, docker's `events.Message` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `container`, `image`, `volume`, `network`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event now.
    pub fn now(kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) -> Event {
        let time_nano = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Event {
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes: attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            time_nano,
        }
    }
}

impl Store {
    /// Appends `event` to the log. Best effort: an event that cannot be written (a full
    /// disk) never fails the operation it tells of.
    pub fn record_event(&self, event: &Event) {
        let path = self.layout().events();
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
            let _ = std::fs::rename(&path, self.layout().events_old());
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
        {
            let _ = f.write_all(&line);
        }
    }

    /// The events logged, oldest first, from the older file and the current one; lines
    /// that do not parse (a write cut by a crash) are skipped.
    pub fn events(&self) -> Vec<Event> {
        let mut out = Vec::new();
        for path in [self.layout().events_old(), self.layout().events()] {
            if let Ok(f) = std::fs::File::open(&path) {
                out.extend(
                    std::io::BufReader::new(f)
                        .lines()
                        .map_while(Result::ok)
                        .filter_map(|l| serde_json::from_str(&l).ok()),
                );
            }
        }
        out
    }

    /// The events logged after the first `skip` of [`Store::events`]' current file, and
    /// how far that file was read: what `lb events` follows.
    pub fn events_after(&self, offset: u64) -> (Vec<Event>, u64) {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.layout().events();
        let Ok(mut f) = std::fs::File::open(&path) else {
            return (Vec::new(), 0);
        };
        let len = f.metadata().map_or(0, |m| m.len());
        // Rotated meanwhile: the new file from its start.
        let from = if len < offset { 0 } else { offset };
        let mut text = Vec::new();
        if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut text).is_err() {
            return (Vec::new(), from);
        }
        // Only whole lines: one being written is read next time.
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let events = text[..whole]
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect();
        (events, from + whole as u64)
    }

    /// The current log's length: where following starts.
    pub fn events_end(&self) -> u64 {
        std::fs::metadata(self.layout().events()).map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_read_back_and_followed() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = Event::now(
            "container",
            "start",
            "abc",
            &[("name", "web"), ("image", "x")],
        );
        store.record_event(&e);
        let end = store.events_end();
        store.record_event(&Event::now("container", "die", "abc", &[("exitCode", "0")]));
        let all = store.events();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], e);
        let (after, to) = store.events_after(end);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].action, "die");
        assert_eq!(to, store.events_end());
        assert_eq!(store.events_after(to).0, Vec::new());
    }
}
