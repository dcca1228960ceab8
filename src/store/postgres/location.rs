//! Where a PostgreSQL queue lives: a `postgres://` URL plus the schema that holds it.
//!
//! [`PgLocation`] owns parsing the URL and the `?schema=` option (or `--schema`),
//! naming a scratch schema beside it for `bench`, and every way the location is shown
//! to users. Invariant: the password stays inside the URL handed to the driver
//! ([`PgLocation::connection_url`]); [`PgLocation::describe`], [`PgLocation::host_port`]
//! and [`redact`] never contain it.

use crate::error::StoreError;
use crate::store::Result;

/// A parsed `postgres://` URL. The password stays inside and is never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// The URL as given, minus the `schema` parameter.
    url: String,
    pub schema: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

impl PgLocation {
    pub fn parse(text: &str, schema: Option<&str>) -> Result<PgLocation> {
        let bad = |why: &str| {
            StoreError::BadLocation(format!(
                "invalid PostgreSQL URL {}: {why}; expected postgres://user@host:port/dbname",
                redact(text)
            ))
        };
        let (base, query) = match text.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (text, None),
        };
        let mut url_schema = None;
        let mut kept = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("schema", value)) => url_schema = Some(value.to_owned()),
                _ => kept.push(pair),
            }
        }
        let schema = checked_schema(schema.map(str::to_owned).or(url_schema), text)?;
        let rest = base
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or_else(|| bad("missing ://"))?;
        let (authority, dbname) = rest.split_once('/').unwrap_or((rest, ""));
        if !authority.contains('@') && dbname.contains('@') {
            // `user:pa/ss@host`: what looks like the host and database holds a piece
            // of the password, which would be shown (found by tests/fuzz).
            return Err(bad(
                "a '/' in the user name or password must be written %2F (percent-encoded)",
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let user = userinfo.split(':').next().unwrap_or_default().to_owned();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => (
                h.to_owned(),
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (hostport.to_owned(), 5432),
        };
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(PgLocation {
            url,
            schema,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            port,
            user,
            dbname: dbname.to_owned(),
        })
    }

    /// A libpq key=value connection string (`host=db dbname=jobs user=bob
    /// password=...`), as `psql` takes it. The driver parses it (the same parser
    /// the connection uses, so what is accepted here connects there); a `schema=`
    /// setting, which libpq does not know, is queuectl's and is taken out first.
    pub fn parse_key_value(text: &str, schema: Option<&str>) -> Result<PgLocation> {
        let mut url_schema = None;
        let mut kept = Vec::new();
        for word in text.split_whitespace() {
            match word.strip_prefix("schema=") {
                Some(value) => url_schema = Some(value.to_owned()),
                None => kept.push(word),
            }
        }
        let settings = kept.join(" ");
        let config: postgres::Config = settings.parse().map_err(|e: postgres::Error| {
            let reason = e.to_string();
            StoreError::BadLocation(format!(
                "invalid PostgreSQL connection string {}: {}; give --db (or QUEUECTL_DB) \
                 key=value settings such as 'host=db.example dbname=jobs user=me'",
                redact(text),
                redact(&reason)
            ))
        })?;
        let schema = checked_schema(schema.map(str::to_owned).or(url_schema), text)?;
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        Ok(PgLocation {
            url: settings,
            schema,
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or_default().to_owned(),
            dbname: config.get_dbname().unwrap_or_default().to_owned(),
        })
    }

    /// The same database with a schema named after this one and `tag`, cut to
    /// PostgreSQL's 63-byte limit.
    pub fn scratch_beside(&self, tag: &str) -> PgLocation {
        let suffix = format!("_bench_{tag}");
        let keep = 63usize.saturating_sub(suffix.len()).min(self.schema.len());
        PgLocation {
            schema: format!("{}{suffix}", &self.schema[..keep]),
            ..self.clone()
        }
    }

    /// `postgres://user@host:port/db (schema s)`, never with the password.
    pub fn describe(&self) -> String {
        format!(
            "postgres://{}{}:{}/{} (schema {})",
            if self.user.is_empty() {
                String::new()
            } else {
                format!("{}@", self.user)
            },
            self.host,
            self.port,
            self.dbname,
            self.schema
        )
    }

    /// `host:port`, for messages.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The connection URL for the driver (may hold a password: never print it).
    pub fn connection_url(&self) -> &str {
        &self.url
    }
}

/// The schema to use (`queuectl` unless named), if it is a plain identifier.
fn checked_schema(schema: Option<String>, text: &str) -> Result<String> {
    let schema = schema.unwrap_or_else(|| "queuectl".to_owned());
    if schema.is_empty()
        || schema.len() > 63
        || !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || schema.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(StoreError::BadLocation(format!(
            "invalid PostgreSQL location {}: the schema must be 1-63 letters, digits or \
             underscores, not starting with a digit",
            redact(text)
        )));
    }
    Ok(schema)
}

/// Replaces the password in a URL (`user:PASSWORD@`) or in libpq key=value settings
/// (`password=PASSWORD`, quoted or not) with `***`.
///
/// In a URL everything from the first `:` to the last `@` is hidden, not just what
/// lies before the first `/`: a password typed without percent-encoding may hold
/// `/`, `?` or `#`, and such a URL is exactly the one whose error echoes it
/// (found by `tests/fuzz/locations.rs`). Hiding too much of an odd URL is the
/// safe mistake.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return redact_key_value(text);
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => text.to_owned(),
    }
}

/// `password=...` in key=value settings, up to the end of its (possibly
/// single-quoted, backslash-escaped) value, replaced by `password=***`.
fn redact_key_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = &from["password".len()..];
        let trimmed = after_key.trim_start();
        let starts_word = before.is_empty() || before.ends_with(char::is_whitespace);
        let Some(value) = trimmed.strip_prefix('=').filter(|_| starts_word) else {
            out.push_str("password");
            rest = after_key;
            continue;
        };
        out.push_str("password=***");
        let value = value.trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let end = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            });
            close.map_or(value.len(), |(i, _)| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::connect::{client_config, password_in_url, scrub_password};

    #[test]
    fn url_parsing_keeps_the_password_out_of_descriptions() {
        let loc = PgLocation::parse(
            "postgres://bob:s3cret@db.example:6543/jobs?schema=q2&sslmode=disable",
            None,
        )
        .expect("valid URL");
        assert_eq!(loc.host, "db.example");
        assert_eq!(loc.port, 6543);
        assert_eq!(loc.user, "bob");
        assert_eq!(loc.dbname, "jobs");
        assert_eq!(loc.schema, "q2");
        assert!(!loc.describe().contains("s3cret"));
        assert_eq!(
            loc.connection_url(),
            "postgres://bob:s3cret@db.example:6543/jobs?sslmode=disable"
        );
        assert_eq!(
            password_in_url(loc.connection_url()).as_deref(),
            Some("s3cret")
        );
        let config = client_config(&loc).expect("driver accepts the URL");
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_dbname(), Some("jobs"));
    }

    #[test]
    fn schema_option_overrides_the_url_and_is_validated() {
        let loc = PgLocation::parse("postgresql://u@h/d?schema=a", Some("b")).expect("valid");
        assert_eq!(loc.schema, "b");
        assert_eq!(loc.port, 5432);
        assert_eq!(
            PgLocation::parse("postgres://u@h/d", None)
                .expect("valid")
                .schema,
            "queuectl"
        );
        for bad in ["x;drop", "1abc", "", "a\"b"] {
            assert!(
                PgLocation::parse("postgres://u@h/d", Some(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(redact("postgres://u:pw@h:5/d"), "postgres://u:***@h:5/d");
        assert_eq!(redact("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(
            redact("postgres://u:p/w?#@h:5/d?x=1"),
            "postgres://u:***@h:5/d?x=1"
        );
        assert_eq!(redact("postgres://u:p@w@h/d"), "postgres://u:***@h/d");
        assert_eq!(redact("/tmp/queue.db"), "/tmp/queue.db");
        assert_eq!(
            scrub_password("auth failed for pw".into(), Some(b"pw")),
            "auth failed for ***"
        );
        assert_eq!(scrub_password("kept".into(), None), "kept");
        let err =
            PgLocation::parse("postgres://u:topsecret@h:notaport/d", None).expect_err("bad port");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }

    #[test]
    fn key_value_settings_are_a_postgres_location_without_the_password_in_sight() {
        let loc = PgLocation::parse_key_value(
            "host=db.example port=6543 user=bob password='s3 cret' dbname=jobs schema=q2",
            None,
        )
        .expect("valid settings");
        assert_eq!(
            (
                loc.host.as_str(),
                loc.port,
                loc.user.as_str(),
                loc.dbname.as_str()
            ),
            ("db.example", 6543, "bob", "jobs")
        );
        assert_eq!(loc.schema, "q2");
        assert!(!loc.describe().contains("s3"), "{}", loc.describe());
        let config = client_config(&loc).expect("driver accepts the settings");
        assert_eq!(config.get_password(), Some(&b"s3 cret"[..]));
        assert_eq!(
            redact("host=h password='a b\\' c' dbname=d"),
            "host=h password=*** dbname=d"
        );
        assert_eq!(redact("host=h password=pw"), "host=h password=***");
        assert_eq!(redact("host=h mypassword=x"), "host=h mypassword=x");
        let err = PgLocation::parse_key_value("host=h password=topsecret bogus=1", None)
            .expect_err("unknown setting");
        assert!(!err.to_string().contains("topsecret"), "{err}");
    }
}
