//! LISTEN/NOTIFY: how idle workers on every host learn at once that work arrived.
//!
//! Writers call [`notify`] (or [`notify_one_job`]) inside the transaction that made a
//! job claimable or asked workers to stop, so the wake-up is delivered exactly when
//! the change commits. Each subscribed process runs one [`listen_forever`] thread on
//! a connection of its own.
//!
//! Duty (DECISIONS §26): among the worker processes serving the same queue set, the
//! one whose LISTEN connection holds the session-level advisory lock keyed by
//! (schema, queue set) is on duty, and only it reacts to a one-job wake-up (payload
//! [`ONE_JOB`]). Every other payload (stop requests, cancels, many jobs, queue
//! changes, and the empty payload of older releases) wakes every process. A process
//! on duty whose slots are all busy steps down when a one-job wake-up arrives:
//! it unlocks and sends [`STEPPED_DOWN`], and a process with a free slot that
//! receives it takes duty. Whoever takes duty wakes its supervisor once, since
//! one-job wake-ups sent before are lost to it; a process with a free slot and no
//! duty tries to take it every [`DUTY_RETRY`] (a holder that died dropped its
//! connection, and so its lock).
//!
//! Invariants: a wake-up only says "look now"; notifications sent while the listener
//! was disconnected are lost, so after every reconnect it wakes once; an idle
//! connection is probed every [`LISTEN_PROBE`], so a half-open TCP connection cannot
//! silence it forever; duty is held only on the live LISTEN connection, and
//! [`Duty::on_duty`] is cleared before that connection is given up.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, NoTls};

use super::connect::CONNECT_TIMEOUT;
use super::{Db, Step, quote_ident};
use crate::store::{Duty, Wake};

/// Wakes every listener of a channel (`$1`); sent when the transaction commits.
const NOTIFY: &str = "SELECT pg_notify($1, '')";
/// Wakes only the duty holder of each queue set: one job arrived.
const NOTIFY_ONE_JOB: &str = "SELECT pg_notify($1, '1')";
/// The payload of a one-job wake-up.
const ONE_JOB: &str = "1";
/// The payload a duty holder sends when it steps down.
const STEPPED_DOWN: &str = "duty";
/// First key of the duty advisory lock ("QDTY"); the second hashes schema and queue
/// set. The migration lock uses another first key ("QCTL").
const DUTY_LOCK: i32 = 0x5144_5459;
const TAKE_DUTY: &str = "SELECT pg_try_advisory_lock($1, hashtext($2))";
const STEP_DOWN: &str = "SELECT pg_advisory_unlock($1, hashtext($2)), pg_notify($3, 'duty')";

/// How often an idle LISTEN connection is probed: a half-open TCP connection would
/// otherwise wait for notifications forever.
const LISTEN_PROBE: Duration = Duration::from_secs(30);
/// How often a process with a free slot and no duty tries to take it (the worker's
/// own fallback poll is as frequent).
const DUTY_RETRY: Duration = Duration::from_secs(1);
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Wakes LISTENing workers on every host; delivered when the transaction commits.
pub(super) fn notify<C: GenericClient>(db: &mut Db<'_, C>, channel: &str) -> Step<()> {
    db.execute(NOTIFY, &[&channel])?;
    Ok(())
}

/// Wakes the duty holder of every queue set (and every process of an older
/// release): one job arrived. Delivered when the transaction commits.
pub(super) fn notify_one_job<C: GenericClient>(db: &mut Db<'_, C>, channel: &str) -> Step<()> {
    db.execute(NOTIFY_ONE_JOB, &[&channel])?;
    Ok(())
}

/// A worker process's duty: the shared flags and the lock's name within the server.
pub(super) struct DutyLock {
    pub duty: Arc<Duty>,
    /// schema and queue set, hashed by the server into the lock's second key.
    pub key: String,
}

impl DutyLock {
    pub fn new(schema: &str, duty: Arc<Duty>) -> DutyLock {
        let key = format!("{schema}\n{}", duty.queue_set());
        DutyLock { duty, key }
    }
}

/// The LISTEN thread: delivers notifications to `wake` for as long as the process
/// lives, reconnecting with backoff. After a reconnect it wakes once, since
/// notifications sent while it was away are lost. With `duty`, one-job wake-ups
/// reach `wake` only while this process is on duty (module docs).
pub(super) fn listen_forever(
    config: &postgres::Config,
    channel: &str,
    wake: &Wake,
    duty: Option<&DutyLock>,
) {
    let mut backoff = LISTEN_BACKOFF_MIN;
    let mut reconnecting = false;
    loop {
        let listening = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {}", quote_ident(channel)))?;
            Ok(client)
        });
        if let Ok(client) = listening {
            backoff = LISTEN_BACKOFF_MIN;
            let mut listener = Listener {
                client,
                channel,
                wake,
                duty,
                held: false,
            };
            if let Some(d) = duty {
                d.duty.set_supported(true);
            }
            if reconnecting {
                wake();
            }
            let _ = listener.pump();
            listener.give_up();
        }
        reconnecting = true;
        thread::sleep(backoff);
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// One LISTEN connection and the duty it may hold.
struct Listener<'a> {
    client: Client,
    channel: &'a str,
    wake: &'a Wake,
    duty: Option<&'a DutyLock>,
    /// This connection holds the duty lock.
    held: bool,
}

/// The connection failed.
struct Broken;

impl Listener<'_> {
    /// Delivers notifications until the connection breaks.
    fn pump(&mut self) -> Result<(), Broken> {
        self.take_duty_if_free()?;
        let mut probed = Instant::now();
        loop {
            let seeking = self.duty.is_some() && !self.held;
            let timeout = if seeking { DUTY_RETRY } else { LISTEN_PROBE };
            let first = {
                let mut notifications = self.client.notifications();
                notifications.timeout_iter(timeout).next()
            };
            match first {
                Ok(Some(n)) => {
                    let mut payloads = vec![n.payload().to_owned()];
                    {
                        let mut notifications = self.client.notifications();
                        let mut rest = notifications.iter();
                        while let Ok(Some(n)) = rest.next() {
                            payloads.push(n.payload().to_owned());
                        }
                    }
                    for payload in payloads {
                        self.deliver(&payload)?;
                    }
                }
                Ok(None) => {
                    if seeking && self.ready() {
                        // A statement on the connection: a probe too.
                        self.take_duty_if_free()?;
                        probed = Instant::now();
                    } else if probed.elapsed() >= LISTEN_PROBE {
                        self.probe()?;
                        probed = Instant::now();
                    }
                }
                Err(_) => return Err(Broken),
            }
        }
    }

    fn ready(&self) -> bool {
        self.duty.is_some_and(|d| d.duty.ready())
    }

    /// Acts on one notification (module docs).
    fn deliver(&mut self, payload: &str) -> Result<(), Broken> {
        let Some(duty) = self.duty else {
            (self.wake)();
            return Ok(());
        };
        match payload {
            ONE_JOB if self.held && duty.duty.ready() => (self.wake)(),
            ONE_JOB if self.held => self.step_down()?,
            ONE_JOB => {}
            STEPPED_DOWN => self.take_duty_if_free()?,
            _ => (self.wake)(),
        }
        Ok(())
    }

    /// Takes duty if this process has a free slot and nobody holds it; wakes the
    /// supervisor once on taking it.
    fn take_duty_if_free(&mut self) -> Result<(), Broken> {
        let Some(duty) = self.duty else {
            return Ok(());
        };
        if self.held || !duty.duty.ready() {
            return Ok(());
        }
        let row = self
            .client
            .query_one(TAKE_DUTY, &[&DUTY_LOCK, &duty.key])
            .map_err(|_| Broken)?;
        if row.try_get::<_, bool>(0).map_err(|_| Broken)? {
            self.held = true;
            duty.duty.set_on_duty(true);
            (self.wake)();
        }
        Ok(())
    }

    /// Every slot is busy and one job arrived: lets a process with a free slot take
    /// duty (and the job).
    fn step_down(&mut self) -> Result<(), Broken> {
        let Some(duty) = self.duty else {
            return Ok(());
        };
        duty.duty.set_on_duty(false);
        self.held = false;
        self.client
            .query_one(STEP_DOWN, &[&DUTY_LOCK, &duty.key, &self.channel])
            .map_err(|_| Broken)?;
        Ok(())
    }

    fn probe(&mut self) -> Result<(), Broken> {
        if self.client.is_closed() || self.client.is_valid(CONNECT_TIMEOUT).is_err() {
            return Err(Broken);
        }
        Ok(())
    }

    /// The connection is given up: its duty (if any) ends with it.
    fn give_up(&mut self) {
        if let Some(duty) = self.duty {
            duty.duty.set_on_duty(false);
            // No wake-ups until it reconnects: the worker's timers claim as often
            // as without duty meanwhile.
            duty.duty.set_supported(false);
        }
        self.held = false;
    }
}

/// The NOTIFY channel for a schema. Channel names are identifiers, which PostgreSQL
/// cuts at 63 bytes; two long schema names sharing a prefix merely share wake-ups.
pub(super) fn channel_name(schema: &str) -> String {
    let mut name = format!("queuectl_{schema}");
    name.truncate(63);
    name
}
