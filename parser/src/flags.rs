//! Instruction flags (`--from=x`, `--link`, `--mount=...`): which ones an instruction takes
//! and their values, with BuildKit's rules and messages (`instructions/bflag.go`).

/// The kinds of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=value`, once.
    String,
    /// `--mount=value`, any number of times.
    Strings,
}

/// The flags an instruction was given, checked against the ones it takes.
#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(&'static str, Vec<String>)>,
}

impl Flags {
    /// Checks `given` (the node's flags) against `allowed`.
    pub fn parse(given: &[String], allowed: &[(&'static str, Kind)]) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for arg in given {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                return Err(with_suggestion(
                    format!("unknown flag: {name}"),
                    name,
                    &names,
                ));
            };
            let seen = flags.values.iter().position(|(n, _)| *n == key);
            if seen.is_some() && kind != Kind::Strings {
                return Err(format!("duplicate flag specified: {name}"));
            }
            let value = match kind {
                Kind::Bool => match value {
                    Some("") => return Err(format!("missing a value on flag: {name}")),
                    None => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("true") => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("false") => "false".to_string(),
                    Some(v) => {
                        return Err(format!("expecting boolean value for flag {name}, not: {v}"));
                    }
                },
                Kind::String | Kind::Strings => match value {
                    Some(v) => v.to_string(),
                    None => return Err(format!("missing a value on flag: {name}")),
                },
            };
            match seen {
                Some(i) => flags.values[i].1.push(value),
                None => flags.values.push((key, vec![value])),
            }
        }
        Ok(flags)
    }

    /// A string flag's value, if given.
    pub fn string(&self, name: &str) -> Option<String> {
        self.strings(name).last().cloned()
    }

    /// Every value of a repeatable flag, in order.
    pub fn strings(&self, name: &str) -> &[String] {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// A boolean flag: given without a value or as `=true`.
    pub fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }
}

/// Appends `(did you mean X?)` when a known word is close to `word`, as BuildKit does.
pub fn with_suggestion(message: String, word: &str, known: &[&str]) -> String {
    let lower = word.to_ascii_lowercase();
    let best = known
        .iter()
        .map(|k| (distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d > 0 && *d <= if k.len() >= 4 { 2 } else { 1 })
        .min();
    match best {
        Some((_, k)) => format!("{message} (did you mean {k}?)"),
        None => message,
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, Kind)] = &[
        ("from", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Strings),
    ];

    fn given(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values() {
        let f = Flags::parse(
            &given(&["--from=a", "--link", "--exclude=x", "--exclude=y"]),
            COPY,
        )
        .unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.strings("exclude"), ["x", "y"]);
        let f = Flags::parse(&given(&["--link=FALSE"]), COPY).unwrap();
        assert!(!f.bool("link"));
    }

    #[test]
    fn errors() {
        let e = |v: &[&str]| Flags::parse(&given(v), COPY).unwrap_err();
        assert_eq!(e(&["--form=a"]), "unknown flag: form (did you mean from?)");
        assert_eq!(e(&["--chown=a"]), "unknown flag: chown");
        assert_eq!(
            e(&["--from=a", "--from=b"]),
            "duplicate flag specified: from"
        );
        assert_eq!(e(&["--from"]), "missing a value on flag: from");
        assert_eq!(e(&["--link="]), "missing a value on flag: link");
        assert_eq!(
            e(&["--link=yes"]),
            "expecting boolean value for flag link, not: yes"
        );
    }
}
