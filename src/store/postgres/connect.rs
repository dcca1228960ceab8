//! Connecting to PostgreSQL: the driver config, the password and the connection setup.
//!
//! The Rust driver reads neither `PGPASSWORD` nor the password file, so this module
//! finds the password as psql would (URL, then `PGPASSWORD`, then `PGPASSFILE` or
//! `~/.pgpass`) and sets the timeouts that make an unreachable or silently vanished
//! server noticed. Invariants: the password goes into the driver's config and nowhere
//! else, and every message built here passes through [`scrub_password`]; a connection
//! is only handed out once its `search_path` is the queue's schema alone.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, NoTls};

use super::{PgLocation, error_text, quote_ident};
use crate::error::StoreError;
use crate::store::Result;

/// How long connecting may take: a CLI command that cannot reach the database must
/// fail within 5 s.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The driver config for `location`: the URL, a password from `PGPASSWORD` or the
/// password file when the URL has none (the Rust driver reads neither itself), and
/// timeouts so that an unreachable or silently vanished server is noticed.
pub(super) fn client_config(location: &PgLocation) -> Result<postgres::Config> {
    let mut config = postgres::Config::from_str(location.connection_url()).map_err(|e| {
        StoreError::BadLocation(format!(
            "invalid PostgreSQL URL {}: {}",
            location.describe(),
            scrub_password(
                error_text(&e),
                password_in_url(location.connection_url())
                    .as_deref()
                    .map(str::as_bytes)
            )
        ))
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host(&location.host);
    }
    if config.get_application_name().is_none() {
        config.application_name("queuectl");
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        // Unacknowledged writes give up after this long instead of the kernel's ~15 min.
        .tcp_user_timeout(Duration::from_secs(30));
    if config.get_password().is_none()
        && let Some(password) = find_password(&config, location)
    {
        config.password(password);
    }
    Ok(config)
}

/// `PGPASSWORD`, else the matching line of `PGPASSFILE` or `~/.pgpass`, as libpq does.
fn find_password(config: &postgres::Config, location: &PgLocation) -> Option<String> {
    if let Some(password) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        return Some(password);
    }
    let file = match std::env::var_os("PGPASSFILE").filter(|v| !v.is_empty()) {
        Some(file) => PathBuf::from(file),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let meta = fs::metadata(&file).ok()?;
    // libpq ignores a password file others can read; so do we, and say why.
    if meta.permissions().mode() & 0o077 != 0 {
        crate::log::warn(&format!(
            "password file {} has group or world access; ignoring it (chmod 0600 it)",
            file.display()
        ));
        return None;
    }
    let contents = fs::read_to_string(&file).ok()?;
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())?;
    let dbname = config.get_dbname().unwrap_or(&user);
    let port = config.get_ports().first().copied().unwrap_or(location.port);
    pgpass_lookup(&contents, &location.host, port, dbname, &user)
}

/// The password of the first `host:port:database:user:password` line matching the
/// connection (`*` matches anything; `\` escapes `:` and `\`; `#` starts a comment).
fn pgpass_lookup(
    contents: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    contents
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(pgpass_fields)
        .filter(|fields| fields.len() >= 5)
        .find(|fields| {
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|((text, wildcard), want)| *wildcard || text == want)
        })
        .map(|fields| fields[4].0.clone())
}

/// Splits a password file line on unescaped `:`; each field comes with whether it
/// was a bare `*` (an escaped `\*` is a literal asterisk).
fn pgpass_fields(line: &str) -> Vec<(String, bool)> {
    let mut fields = Vec::new();
    let (mut text, mut raw) = (String::new(), String::new());
    let mut chars = line.trim_end_matches('\r').chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw.push(c);
                if let Some(next) = chars.next() {
                    text.push(next);
                    raw.push(next);
                }
            }
            ':' => {
                let wildcard = raw == "*";
                fields.push((std::mem::take(&mut text), wildcard));
                raw.clear();
            }
            _ => {
                text.push(c);
                raw.push(c);
            }
        }
    }
    let wildcard = raw == "*";
    fields.push((text, wildcard));
    fields
}

/// Opens a connection with `search_path` set to the queue's schema, and JIT
/// compilation off: every statement here touches a handful of rows, and when a
/// generic plan's estimate crosses `jit_above_cost` (the claim's queue subquery
/// did) compiling took ~40 ms of a 1 ms statement.
pub(super) fn connect(config: &postgres::Config, location: &PgLocation) -> Result<Client> {
    let unreachable = |e: postgres::Error| {
        let message = scrub_password(
            format!(
                "cannot connect to PostgreSQL at {}: {}",
                location.host_port(),
                error_text(&e)
            ),
            config.get_password(),
        );
        if refused_for_good(&e) {
            // Waiting would not help: the server answered and said no.
            StoreError::BadLocation(format!(
                "{message}; fix the user, password or database in the URL (or PGPASSWORD)"
            ))
        } else {
            StoreError::unavailable_because(message, e)
        }
    };
    let mut client = config.connect(NoTls).map_err(unreachable)?;
    client
        .batch_execute(&format!(
            "SET search_path TO {}; SET jit = off",
            quote_ident(&location.schema)
        ))
        .map_err(unreachable)?;
    Ok(client)
}

/// Whether the server refused the connection for a reason that retrying cannot
/// change: bad credentials or no such role (SQLSTATE class 28), or no such database
/// (3D000). A refused connection, a timeout or a server still starting up
/// (57P03) are outages, and a worker waits them out.
fn refused_for_good(e: &postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        code.code().starts_with("28") || *code == postgres::error::SqlState::INVALID_CATALOG_NAME
    })
}

/// Removes a known password from a message, in case a driver message ever quotes it.
pub(super) fn scrub_password(message: String, password: Option<&[u8]>) -> String {
    match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) if !p.is_empty() => message.replace(p, "***"),
        _ => message,
    }
}

/// The password part of a URL's user info, if any (percent-encoding left as is).
pub(super) fn password_in_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_matches_fields_and_wildcards() {
        let file = "# comment\n\
                    otherhost:5432:*:*:nope\n\
                    db.example:*:queue:alice:first\n\
                    db.example:5432:queue:alice:second\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(file, "db.example", 5432, "queue", "alice").as_deref(),
            Some("first"),
            "the first matching line wins"
        );
        assert_eq!(
            pgpass_lookup(file, "db.example", 5432, "queue", "bob").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u:p\n", "h", 2, "d", "u"), None);
        assert_eq!(
            pgpass_lookup("h:1:d:u\n", "h", 1, "d", "u"),
            None,
            "too few fields"
        );
        assert_eq!(pgpass_lookup("", "h", 1, "d", "u"), None);
    }

    #[test]
    fn pgpass_unescapes_colons_and_backslashes() {
        let file = "h\\:x:5432:d:u:pa\\:ss\\\\word\r\n";
        assert_eq!(
            pgpass_lookup(file, "h:x", 5432, "d", "u").as_deref(),
            Some("pa:ss\\word")
        );
        // An escaped asterisk is a literal, not a wildcard.
        assert_eq!(pgpass_lookup("\\*:1:d:u:p", "h", 1, "d", "u"), None);
        assert_eq!(
            pgpass_lookup("\\*:1:d:u:p", "*", 1, "d", "u").as_deref(),
            Some("p")
        );
        // The password ends at the next unescaped colon, as in libpq.
        assert_eq!(
            pgpass_lookup("h:1:d:u:p:extra", "h", 1, "d", "u").as_deref(),
            Some("p")
        );
    }
}
