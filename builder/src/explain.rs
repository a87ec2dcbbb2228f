//! `lb build --explain`: for each step that ran, why no cache had it. A step's record
//! keeps its inputs (the document its cache key hashes, and for a COPY each source path
//! with the digest of what was taken of it); a step that ran is compared with the
//! closest record the caches hold: one on the same parent step (the input that differs
//! is named: a file under the context, a build arg or variable, the command, a mount),
//! else one of the same instruction on another parent (the step before it, or the base
//! image, changed), else none.
//!
//! Inputs documents cross the store and cache seams as JSON text the builder alone reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a step's cache key was made of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct StepInputs {
    /// The instruction as the image's history shows it.
    pub instruction: String,
    /// The document the key hashes ([`crate::cache_key::CacheKey::shape`]).
    pub key: Value,
    /// COPY/ADD: each source path and the digest of what was taken of it (none when the
    /// copy had more than [`MAX_FILES`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// The image the step's stage stands on (its manifest digest, or `scratch`).
    #[serde(default)]
    pub base: String,
}

/// A copy of more files than this keeps no list (records stay small).
pub(crate) const MAX_FILES: usize = 2000;

impl StepInputs {
    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string(self).expect("inputs serialise")
    }

    pub(crate) fn from_text(text: &str) -> Option<StepInputs> {
        serde_json::from_str(text).ok()
    }

    fn parent(&self) -> Option<&str> {
        self.key.get("parent").and_then(Value::as_str)
    }
}

/// Why `step` (a step that ran) did not hit, against `records` (the inputs of every
/// record the caches hold).
pub(crate) fn explain(step: &StepInputs, records: &[StepInputs]) -> String {
    let closest = |candidates: Vec<&StepInputs>| {
        candidates
            .into_iter()
            .map(|r| differences(step, r))
            .min_by_key(Vec::len)
    };
    let same_parent = records
        .iter()
        .filter(|r| r.parent().is_some() && r.parent() == step.parent())
        .collect();
    if let Some(diffs) = closest(same_parent) {
        if diffs.is_empty() {
            return "a record with these inputs exists, but its image is gone from the store"
                .into();
        }
        return diffs.join("; ");
    }
    // On another parent: the same step of an earlier build on the same base, if its own
    // inputs say anything.
    let same_kind = |r: &&StepInputs| kind(r) == kind(step);
    let same_base = records
        .iter()
        .filter(same_kind)
        .filter(|r| r.base == step.base)
        .collect();
    if let Some(diffs) = closest(same_base) {
        if diffs.is_empty() {
            return "a step before it ran (its own inputs match a record on another parent)".into();
        }
        return format!("{} (and a step before it differs)", diffs.join("; "));
    }
    if let Some(other) = records.iter().find(same_kind) {
        return format!(
            "the base image changed: the caches have steps like it on {}, this build's base is {}",
            other.base, step.base
        );
    }
    "no record of this step, or of one like it, in the caches".into()
}

/// What kind of step a key is: the names of its document's fields.
fn kind(step: &StepInputs) -> Vec<&str> {
    step.key
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// What differs between the inputs of two steps (their parents aside), named for a user.
fn differences(step: &StepInputs, record: &StepInputs) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(new), Some(old)) = (step.key.as_object(), record.key.as_object()) else {
        return out;
    };
    if kind(step) != kind(record) {
        return vec![format!("another instruction (was: {})", record.instruction)];
    }
    for (field, value) in new {
        let before = old.get(field).unwrap_or(&Value::Null);
        if before == value || field == "parent" {
            continue;
        }
        match field.as_str() {
            "env" => out.extend(env_changes(before, value)),
            "copy" => out.extend(file_changes(&step.files, &record.files)),
            "run" | "script" => {
                out.push(format!("the command changed (was: {})", record.instruction))
            }
            _ => out.push(format!("{field} changed: {before} -> {value}")),
        }
    }
    // A COPY's destination and flags are in its instruction, not its document's fields.
    if out.is_empty() && new.contains_key("copy") && step.instruction != record.instruction {
        out.push(format!(
            "the instruction changed (was: {})",
            record.instruction
        ));
    }
    out
}

/// Variables (build args and ENV) whose values differ.
fn env_changes(before: &Value, after: &Value) -> Vec<String> {
    let pairs = |v: &Value| -> BTreeMap<String, String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_str()?.to_string(),
                    p.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let (old, new) = (pairs(before), pairs(after));
    let mut out = Vec::new();
    for (k, v) in &new {
        match old.get(k) {
            Some(o) if o == v => {}
            Some(o) => out.push(format!("build arg or variable {k} changed: {o:?} -> {v:?}")),
            None => out.push(format!("build arg or variable {k} is new: {v:?}")),
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("build arg or variable {k} is gone"));
    }
    out
}

/// Source paths that differ between two copies.
fn file_changes(new: &BTreeMap<String, String>, old: &BTreeMap<String, String>) -> Vec<String> {
    if new.is_empty() || old.is_empty() {
        return vec!["the files copied changed".into()];
    }
    let mut changed = Vec::new();
    for (path, d) in new {
        match old.get(path) {
            Some(o) if o == d => {}
            Some(_) => changed.push(format!("{path} changed")),
            None => changed.push(format!("{path} is new")),
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        changed.push(format!("{path} is gone"));
    }
    const SHOWN: usize = 10;
    if changed.len() > SHOWN {
        let more = changed.len() - SHOWN;
        changed.truncate(SHOWN);
        changed.push(format!("and {more} more paths"));
    }
    if changed.is_empty() {
        changed.push("the files copied changed (their owners or destination)".into());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(instruction: &str, key: Value, files: &[(&str, &str)]) -> StepInputs {
        StepInputs {
            instruction: instruction.into(),
            base: "sha256:base".into(),
            key,
            files: files
                .iter()
                .map(|(p, d)| (p.to_string(), d.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_closest_record_names_what_changed() {
        let run = |v: &str, parent: &str| {
            step(
                "RUN make # buildkit",
                json!({"parent": parent, "run": ["make"], "env": [["VERSION", v]]}),
                &[],
            )
        };
        let records = vec![run("1", "p1")];
        assert_eq!(
            explain(&run("2", "p1"), &records),
            "build arg or variable VERSION changed: \"1\" -> \"2\""
        );
        assert!(explain(&run("1", "p2"), &records).contains("a step before it ran"));
        assert_eq!(
            explain(&run("3", "p2"), &records),
            "build arg or variable VERSION changed: \"1\" -> \"3\" (and a step before it differs)"
        );
        let mut other_base = run("1", "p3");
        other_base.base = "sha256:new".into();
        assert!(explain(&other_base, &records).contains("the base image changed"));

        let copy = |d: &str, files: &[(&str, &str)]| {
            step(
                "COPY . /app # buildkit",
                json!({"parent": "p", "copy": d, "from": "context"}),
                files,
            )
        };
        let records = vec![copy("c1", &[("src/a.rs", "1"), ("src/b.rs", "2")])];
        assert_eq!(
            explain(
                &copy(
                    "c2",
                    &[("src/a.rs", "1"), ("src/b.rs", "3"), ("new.txt", "4")]
                ),
                &records
            ),
            "new.txt is new; src/b.rs changed"
        );
        let none = step("RUN x # buildkit", json!({"parent": "p"}), &[]);
        assert!(explain(&none, &[]).contains("no record"));
    }
}
