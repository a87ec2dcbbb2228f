//! Never a panic: arbitrary bytes, and random mutations of real Dockerfiles (BuildKit's
//! conformance cases and lb's own test data), through both passes, the dump and expansion.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

#[path = "support/exercise.rs"]
mod exercise;
use exercise::exercise;

/// Seeds: every Dockerfile under the conformance data and `testdata/`.
fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let conformance = std::env::var("LB_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/conformance/buildkit"));
    let mut files = Vec::new();
    for dir in [
        conformance.join("parser/cases"),
        conformance.join("parser/negative"),
        root.join("testdata/dockerfiles"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if let Ok(data) = std::fs::read(e.path().join("Dockerfile")) {
                    files.push(data);
                }
            }
        }
    }
    if !conformance.is_dir() {
        lb_testkit::skip(&format!(
            "mutating conformance Dockerfiles: none found at {}",
            conformance.display()
        ));
    }
    files.push(b"FROM a\nRUN <<EOF\nx\nEOF\n".to_vec());
    files
}

/// Fragments that reach the parser's corners when spliced in.
const TOKENS: &[&str] = &[
    "\\\n",
    "`\n",
    "\n",
    "\r\n",
    "# escape=`\n",
    "#syntax=x\n",
    "<<EOF",
    "<<-EOF",
    "EOF\n",
    "\tEOF\n",
    "<<'E'",
    "\"",
    "'",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "${",
    "}",
    "$",
    ":-",
    "#",
    "%%",
    "//",
    "--",
    "--mount=type=cache,target=/x",
    "--from=",
    "ONBUILD ",
    "HEALTHCHECK --interval=1s CMD ",
    "ENV ",
    "ARG ",
    "COPY ",
    "\u{feff}",
    "\u{a0}",
    "\u{85}",
    "\0",
];

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    Delete(usize, usize),
    Flip(usize, u8),
    Duplicate(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| Mutation::Token(p, t)),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), 1..64usize, any::<usize>())
            .prop_map(|(p, n, at)| Mutation::Duplicate(p, n, at)),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let len = data.len();
    let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
    match m {
        Mutation::Insert(p, b) => {
            let p = at(*p);
            data.splice(p..p, b.iter().copied());
        }
        Mutation::Token(p, t) => {
            let p = at(*p);
            data.splice(p..p, TOKENS[*t].bytes());
        }
        Mutation::Delete(p, n) => {
            let p = at(*p);
            let end = (p + n).min(len);
            data.drain(p..end);
        }
        Mutation::Flip(p, b) => {
            if len > 0 {
                data[p % len] = *b;
            }
        }
        Mutation::Duplicate(p, n, to) => {
            let p = at(*p);
            let end = (p + n).min(len);
            let piece = data[p..end].to_vec();
            let to = at(*to);
            data.splice(to..to, piece);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&data);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(\\PC|[\\\\`'\"$#{}\\[\\]\n\t<-])*") {
        exercise(text.as_bytes());
    }

    #[test]
    fn mutated_dockerfiles_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..12),
    ) {
        let seeds = seeds();
        let mut data = seeds[seed.index(seeds.len())].clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        exercise(&data);
    }
}
