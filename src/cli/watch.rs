//! Waiting for the store to change, for the commands that block (`logs -f`,
//! `enqueue --wait`, `wait`).
//!
//! A [`Watch`] sleeps until the store's change signal fires (inotify on the SQLite
//! WAL, LISTEN on PostgreSQL) or [`FALLBACK`] passes, whichever is first: not every
//! change is signalled (on PostgreSQL a finished attempt or shipped output sends no
//! NOTIFY), so the fallback bounds how late a change is seen. Bursts of signals are
//! coalesced so a busy queue does not turn into a busy loop. Ctrl-C only raises a
//! flag ([`Watch::interrupted`]): the waiting command stops and exits 130, and the
//! jobs it watched are left alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::store::Store;

/// The longest a change can go unseen when the store did not signal it.
pub const FALLBACK: Duration = Duration::from_millis(250);

/// The shortest time between two looks at the store, however often it signals.
const MIN_SPACING: Duration = Duration::from_millis(20);

/// The exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
pub const INTERRUPTED: i32 = 130;

/// Wake-ups from one store, and whether Ctrl-C was pressed.
pub struct Watch {
    wakes: Option<Receiver<()>>,
    interrupted: Arc<AtomicBool>,
    last_look: Instant,
}

impl Watch {
    /// Subscribes to `store`'s change signal and catches SIGINT. Without either the
    /// watch still works: it polls every [`FALLBACK`], and Ctrl-C ends the process.
    pub fn new(store: &dyn Store) -> Watch {
        let (sender, receiver) = channel();
        let wake = Arc::new(move || {
            let _ = sender.send(());
        });
        let wakes = match store.subscribe(wake) {
            Ok(()) => Some(receiver),
            Err(e) => {
                crate::log::warn(&format!(
                    "no change signal from the store ({e}); looking every {} ms",
                    FALLBACK.as_millis()
                ));
                None
            }
        };
        let interrupted = Arc::new(AtomicBool::new(false));
        if let Err(e) = signal_hook::flag::register(libc::SIGINT, Arc::clone(&interrupted)) {
            crate::log::warn(&format!("cannot catch Ctrl-C: {e}"));
        }
        Watch {
            wakes,
            interrupted,
            last_look: Instant::now(),
        }
    }

    /// Whether Ctrl-C was pressed: the caller stops and exits [`INTERRUPTED`].
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// Blocks until the store signals a change, [`FALLBACK`] (or `at_most`, if
    /// shorter) passes, or Ctrl-C is pressed.
    pub fn wait(&mut self, at_most: Option<Duration>) {
        let limit = at_most.map_or(FALLBACK, |d| d.min(FALLBACK));
        // Ctrl-C interrupts the sleep below only on the fallback's schedule, so the
        // sleep is cut in short slices to answer it promptly.
        let deadline = Instant::now() + limit;
        while !self.interrupted() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let slice = left.min(Duration::from_millis(50));
            match &self.wakes {
                Some(wakes) => match wakes.recv_timeout(slice) {
                    Ok(()) => {
                        while wakes.try_recv().is_ok() {}
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.wakes = None;
                    }
                },
                None => std::thread::sleep(slice),
            }
        }
        let since = self.last_look.elapsed();
        if since < MIN_SPACING {
            std::thread::sleep(MIN_SPACING - since);
        }
        self.last_look = Instant::now();
    }
}
