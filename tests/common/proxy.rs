//! A TCP proxy between a worker and PostgreSQL that can lose the server's reply to
//! a `COMMIT`: the client's `COMMIT` reaches the server (so it commits), then the
//! client's connection is cut before the reply comes back. One thread per
//! direction per connection; the listener thread lives as long as the test.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// The simple-query message the driver sends to commit a transaction.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

/// A proxy to one PostgreSQL server; see the module docs.
pub struct CommitCutter {
    port: u16,
    state: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// `COMMIT`s forwarded so far.
    commits: AtomicUsize,
    /// Replies lost so far.
    cuts: AtomicUsize,
    /// While set, connections are cut as soon as they arrive, as by a server that
    /// is not up yet.
    closed: AtomicBool,
    /// Connections accepted so far, cut or forwarded.
    attempts: AtomicUsize,
    /// Bytes whose transaction's `COMMIT` loses its reply (see
    /// [`CommitCutter::cut_commit_after`]).
    pattern: Mutex<Option<Vec<u8>>>,
}

impl CommitCutter {
    /// Starts a proxy to the server of `url` (`postgres://user@host:port/...`).
    pub fn start(url: &str) -> CommitCutter {
        CommitCutter::start_as(url, false)
    }

    /// Starts a proxy that cuts every connection until [`CommitCutter::open`]: a
    /// database that is down.
    pub fn start_closed(url: &str) -> CommitCutter {
        CommitCutter::start_as(url, true)
    }

    fn start_as(url: &str, closed: bool) -> CommitCutter {
        let upstream = host_port(url).to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Counters::default());
        state.closed.store(closed, Ordering::SeqCst);
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                shared.attempts.fetch_add(1, Ordering::SeqCst);
                if shared.closed.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                thread::spawn(move || relay(client, server, &shared));
            }
        });
        CommitCutter { port, state }
    }

    /// `url` with its server replaced by this proxy.
    pub fn route(&self, url: &str) -> String {
        url.replacen(host_port(url), &format!("127.0.0.1:{}", self.port), 1)
    }

    /// Lets connections through from now on (after [`CommitCutter::start_closed`]).
    pub fn open(&self) {
        self.state.closed.store(false, Ordering::SeqCst);
    }

    /// Connections accepted so far, cut (while closed) or forwarded.
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    /// Loses the reply to the `COMMIT` of the next transaction in which `pattern`
    /// passes either way (a parameter the client sends, a value in the rows the
    /// server returns): a round trip the worker happens to make
    /// first (an idle poll, a recovery pass) is let through.
    pub fn cut_commit_after(&self, pattern: &[u8]) {
        *self.state.pattern.lock().unwrap_or_else(|e| e.into_inner()) = Some(pattern.to_vec());
    }

    /// `COMMIT`s seen so far (forwarded or cut).
    pub fn commits(&self) -> usize {
        self.state.commits.load(Ordering::SeqCst)
    }

    /// Replies lost so far.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

/// `host:port` of a `postgres://user@host:port/db?...` URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

impl Counters {
    /// Whether the armed pattern is in `chunk`; if so, disarms it.
    fn take_pattern_in(&self, chunk: &[u8]) -> bool {
        let mut pattern = self.pattern.lock().unwrap_or_else(|e| e.into_inner());
        let found = pattern
            .as_ref()
            .is_some_and(|p| chunk.windows(p.len()).any(|w| w == p.as_slice()));
        if found {
            *pattern = None;
        }
        found
    }
}

fn relay(client: TcpStream, server: TcpStream, counters: &Arc<Counters>) {
    let (Ok(mut from_client), Ok(mut to_client), Ok(mut from_server), Ok(mut to_server)) = (
        client.try_clone(),
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    // The armed pattern passed on this connection: its next COMMIT is cut.
    let cut_this_transaction = Arc::new(AtomicBool::new(false));
    let seen_by_server_side = Arc::clone(&cut_this_transaction);
    let state = Arc::clone(counters);
    thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf) {
            if state.take_pattern_in(&buf[..n]) {
                seen_by_server_side.store(true, Ordering::SeqCst);
            }
            if to_client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n @ 1..) = from_client.read(&mut buf) {
        let chunk = &buf[..n];
        if counters.take_pattern_in(chunk) {
            cut_this_transaction.store(true, Ordering::SeqCst);
        }
        let commit = chunk.windows(COMMIT.len()).any(|w| w == COMMIT);
        if commit {
            counters.commits.fetch_add(1, Ordering::SeqCst);
        }
        let cut = commit && cut_this_transaction.swap(false, Ordering::SeqCst);
        if cut {
            // The client loses its connection first, so no byte of the reply can
            // reach it; then the COMMIT goes on and the server commits.
            let _ = client.shutdown(Shutdown::Both);
            let _ = to_server.write_all(chunk);
            counters.cuts.fetch_add(1, Ordering::SeqCst);
            let _ = to_server.shutdown(Shutdown::Write);
            return;
        }
        if to_server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Both);
}
