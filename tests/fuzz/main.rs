//! Fuzzing on the stable toolchain: property tests (proptest) of the parsers that
//! read what users type or files hold: the job JSON of `enqueue` and `enqueue
//! --file` (`job_json`), durations (`durations`), setting values (`config_values`)
//! and store locations (`locations`).
//!
//! Each target checks its properties on two kinds of input: the committed corpus
//! (`tests/fuzz/corpus/TARGET.jsonl`, one JSON value per line: inputs that once
//! broke something or sit on an edge, each run as is), and generated inputs, half
//! of them random text and half corpus lines with random edits. Properties: never
//! panic; what is printed parses back to the same value; bad input is an error,
//! never a silent default.
//!
//! `cargo test --test fuzz` runs each target briefly (proptest's 256 cases per
//! property); `PROPTEST_CASES=100000 cargo test --release --test fuzz` runs longer.
//! A failing case is shrunk and saved by proptest under
//! `tests/proptest-regressions/TARGET.txt` (commit it), and its input belongs in the
//! corpus too.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;

mod config_values;
mod durations;
mod job_json;
mod locations;

/// The committed corpus of `target`: every line of `corpus/TARGET.jsonl` as JSON.
pub fn corpus(target: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(format!("{target}.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read the corpus {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad corpus line {l:?}: {e}", path.display()))
        })
        .collect()
}

/// The corpus of `target` as strings (its lines must be JSON strings).
pub fn corpus_strings(target: &str) -> Vec<String> {
    corpus(target)
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s,
            other => panic!("{target}: corpus lines must be JSON strings, got {other}"),
        })
        .collect()
}

/// One edit of a text: at a position (a fraction of its length), insert, delete or
/// replace one character.
#[derive(Debug, Clone)]
enum Edit {
    Insert(f64, char),
    Delete(f64),
    Replace(f64, char),
}

/// Characters that parsers give meaning to, plus anything at all.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(
            "0123456789.-+eE:;,/\\@?&=#%'\" {}[]nsmhdwyKMGiBtrufal_\u{0}\n\t\u{7f}\u{1b}\u{202e}é"
                .chars()
                .collect::<Vec<_>>()
        ),
        any::<char>(),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
    for edit in edits {
        match *edit {
            Edit::Insert(f, c) => {
                let i = at(f, chars.len());
                chars.insert(i, c);
            }
            Edit::Delete(f) if !chars.is_empty() => {
                let i = at(f, chars.len() - 1);
                chars.remove(i);
            }
            Edit::Replace(f, c) if !chars.is_empty() => {
                let i = at(f, chars.len() - 1);
                chars[i] = c;
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Inputs for a target: random text, or a corpus line with a few random edits.
pub fn fuzzed(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (0.0..1.0f64, interesting_char()).prop_map(|(f, c)| Edit::Insert(f, c)),
        (0.0..1.0f64).prop_map(Edit::Delete),
        (0.0..1.0f64, interesting_char()).prop_map(|(f, c)| Edit::Replace(f, c)),
    ];
    let mutated = (
        prop::sample::select(seeds),
        prop::collection::vec(edit, 0..6),
    )
        .prop_map(|(seed, edits)| apply(&seed, &edits));
    prop_oneof![
        mutated,
        prop::collection::vec(interesting_char(), 0..40).prop_map(|c| c.into_iter().collect()),
        any::<String>(),
    ]
}
