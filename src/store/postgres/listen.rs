//! LISTEN/NOTIFY: how idle workers on every host learn at once that work arrived.
//!
//! Writers call [`notify`] inside the transaction that made a job claimable or asked
//! workers to stop, so the wake-up is delivered exactly when the change commits. Each
//! subscribed process runs one [`listen_forever`] thread on a connection of its own.
//! Invariants: a wake-up only says "look now"; notifications sent while the listener
//! was disconnected are lost, so after every reconnect it wakes once; an idle
//! connection is probed every [`LISTEN_PROBE`], so a half-open TCP connection cannot
//! silence it forever.

use std::thread;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, NoTls};

use super::connect::CONNECT_TIMEOUT;
use super::{Db, Step, quote_ident};
use crate::store::Wake;

/// Wakes every listener of a channel (`$1`); sent when the transaction commits.
const NOTIFY: &str = "SELECT pg_notify($1, '')";

/// How often an idle LISTEN connection is probed: a half-open TCP connection would
/// otherwise wait for notifications forever.
const LISTEN_PROBE: Duration = Duration::from_secs(30);
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Wakes LISTENing workers on every host; delivered when the transaction commits.
pub(super) fn notify<C: GenericClient>(db: &mut Db<'_, C>, channel: &str) -> Step<()> {
    db.execute(NOTIFY, &[&channel])?;
    Ok(())
}

/// The LISTEN thread: delivers notifications to `wake` for as long as the process
/// lives, reconnecting with backoff. After a reconnect it wakes once, since
/// notifications sent while it was away are lost.
pub(super) fn listen_forever(config: &postgres::Config, channel: &str, wake: &Wake) {
    let mut backoff = LISTEN_BACKOFF_MIN;
    let mut reconnecting = false;
    loop {
        let listening = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {}", quote_ident(channel)))?;
            Ok(client)
        });
        if let Ok(mut client) = listening {
            backoff = LISTEN_BACKOFF_MIN;
            if reconnecting {
                wake();
            }
            pump(&mut client, wake);
        }
        reconnecting = true;
        thread::sleep(backoff);
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// Calls `wake` for each notification until the connection breaks.
fn pump(client: &mut Client, wake: &Wake) {
    loop {
        if !deliver(client, wake) {
            return;
        }
        if client.is_closed() || client.is_valid(CONNECT_TIMEOUT).is_err() {
            return;
        }
    }
}

/// Delivers notifications until none came for [`LISTEN_PROBE`] (returns true) or the
/// connection failed (returns false).
fn deliver(client: &mut Client, wake: &Wake) -> bool {
    let mut notifications = client.notifications();
    let mut iter = notifications.timeout_iter(LISTEN_PROBE);
    loop {
        match iter.next() {
            Ok(Some(_)) => wake(),
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// The NOTIFY channel for a schema. Channel names are identifiers, which PostgreSQL
/// cuts at 63 bytes; two long schema names sharing a prefix merely share wake-ups.
pub(super) fn channel_name(schema: &str) -> String {
    let mut name = format!("queuectl_{schema}");
    name.truncate(63);
    name
}
