//! The supervisor's inbox: everything that can wake it, and the threads and
//! callbacks that post to it.
//!
//! The supervisor sleeps in one `ppoll` ([`Inbox::sleep`]) on an `eventfd` and on
//! the pidfds of the shells it runs, so a shell's exit, a commit by another process
//! and a signal all end its wait at once; it never polls while something is
//! happening. Threads post an [`Event`] on a channel and then ring the `eventfd`
//! ([`EventSender::send`]); a shell's exit needs no thread at all, which is what
//! keeps a job to about two context switches of the worker's own (DECISIONS §29).
//! When the store cannot send wake-ups, a short poll interval stands in.
//!
//! Invariant: an event is on the channel before the `eventfd` is rung, so a sleep
//! that ends on the ring finds it; the ring is drained before the channel is read,
//! so no ring is left over for an event already taken.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use crate::log;
use crate::store::{Duty, Store};

/// How long an idle worker waits without any wake-up before looking anyway.
const POLL_FALLBACK: Duration = Duration::from_secs(1);
/// Poll interval when cross-process wake-ups are unavailable.
const POLL_WITHOUT_WAKEUPS: Duration = Duration::from_millis(50);

/// Something the supervisor has to look at (a shell's exit is not an event: the
/// supervisor sees it on the shell's pidfd).
pub enum Event {
    /// The store may have changed (a commit, ours or another process's).
    Wake,
    /// SIGINT, SIGTERM or SIGHUP arrived (the signal's number).
    Signal(i32),
}

/// A new inbox and the sender other threads post to it with.
pub fn channel() -> io::Result<(EventSender, Inbox)> {
    // SAFETY: eventfd has no memory-safety preconditions; the descriptor it returns
    // is owned by the OwnedFd from here on.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let ring = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    let (sender, receiver) = mpsc::channel();
    Ok((
        EventSender {
            sender,
            ring: Arc::clone(&ring),
        },
        Inbox { receiver, ring },
    ))
}

/// Posts events to the supervisor's [`Inbox`] from any thread.
#[derive(Clone)]
pub struct EventSender {
    sender: Sender<Event>,
    ring: Arc<OwnedFd>,
}

impl EventSender {
    /// Posts `event` and wakes the supervisor; fails once the inbox is gone.
    pub fn send(&self, event: Event) -> Result<(), mpsc::SendError<Event>> {
        self.sender.send(event)?;
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor we own. A full
        // counter (EAGAIN) already means "wake up", so the result is not needed.
        unsafe {
            libc::write(
                self.ring.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
        Ok(())
    }
}

/// The supervisor's end: events from other threads, and sleeping until one comes,
/// a watched shell exits or a timer is due.
pub struct Inbox {
    receiver: Receiver<Event>,
    ring: Arc<OwnedFd>,
}

impl Inbox {
    /// Sleeps until an event is posted, one of `exits` (pidfds of running shells)
    /// becomes readable (the shell has exited), or `timeout` passes. Returns the
    /// positions in `exits` of the shells that exited, and drains the ring: read
    /// the posted events with [`Inbox::try_recv`] afterwards.
    pub fn sleep(&self, exits: &[RawFd], timeout: Duration) -> Vec<usize> {
        let mut fds: Vec<libc::pollfd> = std::iter::once(self.ring.as_raw_fd())
            .chain(exits.iter().copied())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a live array of `fds.len()` pollfds and `timeout` a live
        // timespec; ppoll writes only the revents fields.
        let ready = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &timeout,
                std::ptr::null(),
            )
        };
        if ready <= 0 {
            // A timeout, or EINTR (a signal: its event is posted by its thread).
            return Vec::new();
        }
        if fds[0].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from a descriptor we own; the
            // descriptor is non-blocking, so a lost race just returns EAGAIN.
            unsafe {
                libc::read(
                    self.ring.as_raw_fd(),
                    (&mut count as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                );
            }
        }
        fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, fd)| fd.revents != 0)
            .map(|(position, _)| position)
            .collect()
    }

    /// The next event posted, if any.
    pub fn try_recv(&self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }
}

/// Starts cross-process wake-ups, with `duty` for the stores that wake one process
/// per queue set for one job; returns the idle poll interval to use.
pub fn subscribe(store: &dyn Store, events: &EventSender, duty: &Arc<Duty>) -> Duration {
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
pub fn forward_signals(events: EventSender) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_posted_event_ends_the_sleep_and_is_read_after_it() {
        let (sender, inbox) = channel().expect("inbox");
        let poster = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            sender.send(Event::Wake).is_ok()
        });
        let started = Instant::now();
        let exited = inbox.sleep(&[], Duration::from_secs(20));
        assert!(exited.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken by the post"
        );
        assert!(poster.join().unwrap_or(false));
        assert!(matches!(inbox.try_recv(), Some(Event::Wake)));
        assert!(inbox.try_recv().is_none());
    }

    #[test]
    fn an_exited_child_ends_the_sleep_by_its_pidfd() {
        let (_sender, inbox) = channel().expect("inbox");
        let mut running = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep 30");
        let mut quick = std::process::Command::new("sleep")
            .arg("0.05")
            .spawn()
            .expect("sleep 0.05");
        let fd = |child: &std::process::Child| {
            crate::worker::spawn::exit_fd(child.id() as libc::pid_t).expect("pidfd")
        };
        let (long_fd, quick_fd) = (fd(&running), fd(&quick));
        let started = Instant::now();
        let mut exited = Vec::new();
        while exited.is_empty() && started.elapsed() < Duration::from_secs(20) {
            exited = inbox.sleep(
                &[long_fd.as_raw_fd(), quick_fd.as_raw_fd()],
                Duration::from_secs(20),
            );
        }
        assert_eq!(exited, vec![1], "only the quick child has exited");
        assert!(inbox.try_recv().is_none());
        let _ = running.kill();
        let _ = running.wait();
        let _ = quick.wait();
    }
}
