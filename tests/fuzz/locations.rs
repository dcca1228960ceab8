//! Store locations (`--db`, `QUEUECTL_DB`): `Location::parse` tells a SQLite path
//! from a PostgreSQL URL or libpq settings, and nothing shown to users (the
//! description, errors, `redact`) may contain a password.

use proptest::prelude::*;
use queuectl::store::Location;
use queuectl::store::postgres::redact;

use crate::{corpus_strings, fuzzed};

/// No panic, whatever the text and schema; and the password-free forms are free of
/// any password the text held.
fn check(text: &str, password: Option<&str>) -> Result<(), TestCaseError> {
    let parsed = Location::parse(text, None);
    let Some(password) = password else {
        return Ok(());
    };
    let shown = match &parsed {
        Ok(location) => location.describe(),
        Err(e) => e.to_string(),
    };
    prop_assert!(!shown.contains(password), "{:?} shown as {:?}", text, shown);
    let redacted = redact(text);
    prop_assert!(
        !redacted.contains(password),
        "{:?} redacted as {:?}",
        text,
        redacted
    );
    Ok(())
}

#[test]
fn the_corpus_parses_without_panicking() {
    for text in corpus_strings("locations") {
        let password = text.contains("secret").then_some("secret");
        check(&text, password).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let _ = Location::parse(&text, Some("q1"));
    }
}

proptest! {
    #[test]
    fn any_text_parses_without_panicking(
        text in fuzzed(corpus_strings("locations")),
        schema in prop::option::of("[a-z_\"-]{0,70}"),
    ) {
        check(&text, None)?;
        let _ = Location::parse(&text, schema.as_deref());
    }

    /// A password in a URL, whatever characters it holds, is never shown.
    #[test]
    fn a_url_password_is_never_shown(
        scheme in prop::sample::select(vec!["postgres", "postgresql", "POSTGRES", "Postgresql"]),
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9!$%&()*+,;=.:/@?#~_-]{6,20}",
        host in "[a-z]{1,8}(:[0-9]{1,5})?",
        db in "[a-z]{0,8}",
        query in prop::option::of("(schema=[a-z]{1,8}|sslmode=disable)"),
    ) {
        // A password made only of characters that are also in the rest would be
        // found there: make it unmistakable.
        let password = format!("PW{password}");
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let text = format!("{scheme}://{user}:{password}@{host}/{db}{query}");
        check(&text, Some(&password))?;
    }

    /// Likewise in libpq settings, quoted or not.
    #[test]
    fn a_settings_password_is_never_shown(
        password in "[A-Za-z0-9!$%&()*+,;.:/@?#~_-]{6,20}",
        quoted in any::<bool>(),
        before in prop::sample::select(vec!["host=db", "host=db dbname=jobs", "dbname=jobs user=u"]),
        after in prop::sample::select(vec!["", " port=5432", " sslmode=disable"]),
    ) {
        let password = format!("PW{password}");
        let value = if quoted { format!("'{password}'") } else { password.clone() };
        let text = format!("{before} password={value}{after}");
        check(&text, Some(&password))?;
    }
}
