//! Setting values (`queuectl::config`): `config set KEY VALUE` validates with
//! `Key::parse`, stores its canonical form, and workers read the stored text back
//! with `Config::from_stored`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use queuectl::config::{self, Config, KEYS};
use serde_json::Value;

use crate::{corpus, fuzzed};

/// The corpus as (key, value) pairs.
fn pairs() -> Vec<(String, String)> {
    corpus("config_values")
        .into_iter()
        .map(|v| match v {
            Value::Array(a) if a.len() == 2 => (
                a[0].as_str().expect("a key").to_owned(),
                a[1].as_str().expect("a value").to_owned(),
            ),
            other => panic!("config corpus lines are [key, value], got {other}"),
        })
        .collect()
}

/// For any value of `key`: no panic; an accepted value's canonical form is accepted
/// as itself (so storing it and reading it back changes nothing), and it is what the
/// settings in force show; a refused one names the key.
fn check(key: &str, value: &str) -> Result<(), TestCaseError> {
    let found = config::key(key);
    let Ok(k) = found else {
        return Ok(());
    };
    match k.parse(value) {
        Ok(canonical) => {
            let again = k.parse(&canonical);
            prop_assert_eq!(
                again.as_ref(),
                Ok(&canonical),
                "{}={:?} became {:?}, which does not parse as itself",
                key,
                value,
                canonical
            );
            let stored = BTreeMap::from([(key.to_owned(), canonical.clone())]);
            let effective = Config::effective(&stored);
            let shown = effective
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v);
            prop_assert_eq!(shown, Some(&canonical));
            let _ = Config::from_stored(&stored);
        }
        Err(e) => prop_assert!(e.to_string().contains(key), "{}: {}", key, e),
    }
    let _ = config::validate_change(&BTreeMap::new(), key, value);
    Ok(())
}

#[test]
fn the_corpus_parses_without_panicking() {
    for (key, value) in pairs() {
        check(&key, &value).unwrap_or_else(|e| panic!("{key}={value:?}: {e}"));
    }
}

fn key_name() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS.iter().map(|k| k.name.to_owned()).collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn any_value_of_any_key_parses_without_panicking(
        key in key_name(),
        value in fuzzed(pairs().into_iter().map(|(_, v)| v).collect()),
    ) {
        check(&key, &value)?;
    }

    /// Numbers in any notation, for every key.
    #[test]
    fn numbers_of_every_key_canonicalise(key in key_name(), n in any::<f64>(), unit in
        prop::sample::select(vec!["", "ms", "s", "m", "h", "d", "k", "KiB", "M"])) {
        check(&key, &format!("{n}{unit}"))?;
        check(&key, &format!("{n:e}{unit}"))?;
    }

    /// Whatever a store holds (even values no queuectl wrote), reading the settings
    /// never panics and gives every key a value that parses.
    #[test]
    fn any_stored_settings_read_without_panicking(
        stored in prop::collection::btree_map(key_name(), any::<String>(), 0..9)
    ) {
        let _ = Config::from_stored(&stored);
        for (k, v) in Config::effective(&stored) {
            prop_assert!(k.parse(&v).is_ok(), "{} = {:?} in force but invalid", k.name, v);
        }
    }
}
