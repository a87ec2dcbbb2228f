//! docker's `--filter label=...` and `label!=...` as its daemon applies them to prunes
//! and lists (`filters.Args.MatchKVList`): every `label` filter must match; a `label!`
//! set excludes only what all of its filters match.

use std::collections::BTreeMap;

/// The label filters of one command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    /// `label=KEY` or `label=KEY=VALUE`.
    pub wanted: Vec<String>,
    /// `label!=KEY` or `label!=KEY=VALUE`.
    pub refused: Vec<String>,
}

impl LabelFilter {
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty() && self.refused.is_empty()
    }

    /// Whether something with `labels` passes.
    pub fn passes(&self, labels: &BTreeMap<String, String>) -> bool {
        (self.wanted.is_empty() || all_match(&self.wanted, labels))
            && (self.refused.is_empty() || !all_match(&self.refused, labels))
    }
}

/// `MatchKVList`: every filter's key present (with its value, when it names one); never
/// for no labels at all.
fn all_match(filters: &[String], labels: &BTreeMap<String, String>) -> bool {
    !labels.is_empty()
        && filters.iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
            None => labels.contains_key(f.as_str()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn filter(wanted: &[&str], refused: &[&str]) -> LabelFilter {
        LabelFilter {
            wanted: wanted.iter().map(|s| s.to_string()).collect(),
            refused: refused.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn label_filters_as_dockers_daemon_applies_them() {
        let ab = labels(&[("a", "1"), ("b", "2")]);
        let none = labels(&[]);
        assert!(filter(&[], &[]).passes(&none));
        assert!(filter(&["a"], &[]).passes(&ab));
        assert!(filter(&["a=1", "b"], &[]).passes(&ab));
        assert!(!filter(&["a=2"], &[]).passes(&ab));
        assert!(!filter(&["a", "c"], &[]).passes(&ab));
        assert!(!filter(&["a"], &[]).passes(&none));
        // label!: excluded only when every one of them matches.
        assert!(!filter(&[], &["a"]).passes(&ab));
        assert!(filter(&[], &["a=2"]).passes(&ab));
        assert!(filter(&[], &["a", "c"]).passes(&ab));
        assert!(!filter(&[], &["a", "b=2"]).passes(&ab));
        assert!(filter(&[], &["a"]).passes(&none));
        assert!(!filter(&["a"], &["b"]).passes(&ab));
    }
}
