//! The supervisor's inbox: everything that can wake it, and the threads and
//! callbacks that post to it.
//!
//! The supervisor waits on one channel only, so a finished run, a commit by another
//! process and a signal all end its wait at once; it never polls while something is
//! happening. When the store cannot send wake-ups, a short poll interval stands in.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use crate::log;
use crate::store::{Duty, Store};
use crate::worker::exec::Execution;

/// How long an idle worker waits without any wake-up before looking anyway.
const POLL_FALLBACK: Duration = Duration::from_secs(1);
/// Poll interval when cross-process wake-ups are unavailable.
const POLL_WITHOUT_WAKEUPS: Duration = Duration::from_millis(50);

/// Something the supervisor has to look at.
pub enum Event {
    /// Slot number `slot` finished its run.
    Done { slot: usize, execution: Execution },
    /// The store may have changed (a commit, ours or another process's).
    Wake,
    /// SIGINT, SIGTERM or SIGHUP arrived (the signal's number).
    Signal(i32),
}

/// Starts cross-process wake-ups, with `duty` for the stores that wake one process
/// per queue set for one job; returns the idle poll interval to use.
pub fn subscribe(store: &dyn Store, events: &Sender<Event>, duty: &Arc<Duty>) -> Duration {
    let events = events.clone();
    let wake = Arc::new(move || {
        let _ = events.send(Event::Wake);
    });
    match store.subscribe_worker(wake, Arc::clone(duty)) {
        Ok(()) => POLL_FALLBACK,
        Err(e) => {
            log::warn(&format!(
                "no wake-ups from the store ({e}); polling every {}",
                crate::duration::human(POLL_WITHOUT_WAKEUPS)
            ));
            POLL_WITHOUT_WAKEUPS
        }
    }
}

/// Posts an [`Event::Signal`] for each SIGINT, SIGTERM and SIGHUP, from a thread of
/// its own. SIGHUP is here so that closing the terminal a worker runs in stops it
/// gracefully (its running jobs finish) instead of killing it with its jobs, which
/// would then start over elsewhere. Without signal handling the worker still runs;
/// it says so in the log.
pub fn forward_signals(events: Sender<Event>) {
    let signals = signal_hook::iterator::Signals::new([
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGTSTP,
    ]);
    let mut signals = match signals {
        Ok(signals) => signals,
        Err(e) => {
            log::warn(&format!("cannot handle signals: {e}"));
            return;
        }
    };
    let spawned = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        log::warn(&format!("cannot handle signals: {e}"));
    }
}
