//! `worker start --metrics ADDR`: serves `GET /metrics` (the document of
//! [`crate::metrics`], plus this process's store round trips) from the worker
//! process.
//!
//! Invariants: serving never slows the claim loop: the server runs on a thread of
//! its own with a store connection of its own (opened on the first request, opened
//! again after a failure), and the only thing it shares with the supervisor is the
//! round-trip histogram behind a mutex, held for a copy. A request that cannot be
//! answered gets a 503 with the store's one-line error, and the worker carries on.
//! The address is resolved by [`metrics_address`]: a bare port (or `:PORT`) binds
//! 127.0.0.1, so nothing is exposed beyond the host unless the address says so.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::metrics::{self, Histogram};
use crate::store::{self, IfMissing, Location, OpenFor, Store};

/// The round trips a worker process measures, shared with its metrics server.
pub type RoundTrips = Arc<Mutex<Histogram>>;

/// The address `--metrics` asks for: `PORT` and `:PORT` are `127.0.0.1:PORT`;
/// anything else must be `HOST:PORT` (a name, an IPv4 address, or `[IPv6]`).
pub fn metrics_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        return port_only
            .parse::<u16>()
            .map(|port| format!("127.0.0.1:{port}"))
            .map_err(|_| format!("--metrics: port '{port_only}' is out of range (0-65535)"));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err(format!(
            "--metrics: '{text}' is not an address; give PORT, :PORT or HOST:PORT \
             (e.g. 9464 or 0.0.0.0:9464)"
        )),
    }
}

/// A running metrics server.
pub struct MetricsServer {
    /// Where it listens (the port chosen by the system for port 0).
    pub addr: SocketAddr,
}

/// Binds `addr` and serves `/metrics` for the store at `location` from a thread of
/// its own, with `round_trips` as this process's measurements.
pub fn start(
    location: Location,
    addr: &str,
    host: String,
    round_trips: RoundTrips,
) -> Result<MetricsServer, String> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| format!("--metrics: cannot listen on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("--metrics: {addr} is not an IP address"))?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(&server, &location, &host, &round_trips))
        .map_err(|e| format!("--metrics: cannot start a thread: {e}"))?;
    Ok(MetricsServer { addr: bound })
}

fn serve(server: &tiny_http::Server, location: &Location, host: &str, trips: &RoundTrips) {
    let mut store: Option<Box<dyn Store>> = None;
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let (status, body, content_type) = match (request.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                match document(&mut store, location, host, trips) {
                    Ok(text) => (200, text, "text/plain; version=0.0.4; charset=utf-8"),
                    Err(e) => {
                        store = None;
                        (503, format!("{e}\n"), "text/plain; charset=utf-8")
                    }
                }
            }
            (tiny_http::Method::Get, _) => (
                404,
                "not found; metrics are at /metrics\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
            _ => (
                405,
                "only GET is served\n".to_owned(),
                "text/plain; charset=utf-8",
            ),
        };
        let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes());
        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
        if let Ok(header) = header {
            response = response.with_header(header);
        }
        // A client that went away is no concern of the worker's.
        let _ = request.respond(response);
    }
}

/// The store's document plus this process's round trips.
fn document(
    store: &mut Option<Box<dyn Store>>,
    location: &Location,
    host: &str,
    trips: &RoundTrips,
) -> Result<String, crate::error::StoreError> {
    let open = match store {
        Some(open) => open,
        None => store.insert(store::open(location, OpenFor::Worker, IfMissing::Create)?),
    };
    let mut text = metrics::exposition(open.as_mut())?;
    let histogram = trips.lock().map(|h| h.clone()).unwrap_or_default();
    text.push_str(&metrics::round_trip_family(host, &histogram));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_binds_loopback_only() {
        assert_eq!(metrics_address("9464").as_deref(), Ok("127.0.0.1:9464"));
        assert_eq!(metrics_address(":0").as_deref(), Ok("127.0.0.1:0"));
        assert_eq!(
            metrics_address("0.0.0.0:9464").as_deref(),
            Ok("0.0.0.0:9464")
        );
        assert_eq!(metrics_address("[::1]:9464").as_deref(), Ok("[::1]:9464"));
        assert!(metrics_address("99999").is_err());
        assert!(metrics_address("localhost").is_err());
        assert!(metrics_address("").is_err());
    }
}
