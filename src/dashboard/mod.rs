//! `queuectl dashboard`: a small web UI and its JSON API (`/api/v1/`), served from
//! the binary itself (the page's HTML, CSS and JS are embedded with `include_str!`).
//!
//! Invariants:
//! - Every response carries the security headers of [`security_headers`] (a strict
//!   Content-Security-Policy with no inline script, `nosniff`, no referrer, no
//!   framing), whatever the route or status.
//! - Nothing changes the store unless the dashboard was started with a token and the
//!   request proves it ([`auth`]): read-only is the default.
//! - Every list reads one page with `LIMIT` ([`crate::store::JobListing`]); no
//!   request loads every job.
//! - Each pool thread keeps one store connection of its own, opened as a worker
//!   opens it (shared, long-lived), and drops it after a store error so the next
//!   request reconnects.
//!
//! Layout: this file runs the server and the thread pool and routes requests;
//! `api` answers the reads, `actions` the writes, `auth` decides who may write,
//! `http` holds request and response helpers.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::Failure;
use crate::store::{self, IfMissing, Location, OpenFor, Store};

mod actions;
mod api;
mod auth;
mod http;

use http::{ApiError, Reply};

/// How many requests are served at once. The page polls once a second, so a few
/// threads serve several open pages; a slow store read holds one thread only.
const THREADS: usize = 4;

/// What `queuectl dashboard` was asked to serve.
pub struct Config {
    pub location: Location,
    pub listen: SocketAddr,
    /// `None`: read-only.
    pub token: Option<String>,
}

/// Shared by every pool thread.
struct Shared {
    location: Location,
    auth: auth::Auth,
    /// Whether the server listens on a loopback address only: then requests must
    /// name a loopback host (against DNS rebinding).
    loopback: bool,
}

/// Serves until the process is killed. Fails (one line) if the address cannot be
/// bound or the store cannot be opened.
pub fn serve(config: Config) -> Result<(), Failure> {
    // Open once up front: a wrong --db fails now, not on the first page view.
    drop(store::open(
        &config.location,
        OpenFor::Worker,
        IfMissing::Create,
    )?);
    let server = tiny_http::Server::http(config.listen).map_err(|e| {
        Failure::runtime(format!(
            "cannot listen on {}: {e}; choose another address with --listen",
            config.listen
        ))
    })?;
    let shared = Arc::new(Shared {
        location: config.location,
        auth: auth::Auth::new(config.token),
        loopback: config.listen.ip().is_loopback(),
    });
    let mode = if shared.auth.enabled() {
        "actions enabled with the token"
    } else {
        "read-only"
    };
    eprintln!("Dashboard: http://{}/ ({mode})", config.listen);
    let server = Arc::new(server);
    let mut threads = Vec::new();
    for i in 0..THREADS {
        let server = Arc::clone(&server);
        let shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("dashboard-{i}"))
            .spawn(move || serve_requests(&server, &shared))
            .map_err(|e| Failure::runtime(format!("cannot start a dashboard thread: {e}")))?;
        threads.push(thread);
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// One pool thread: takes requests until the server stops.
fn serve_requests(server: &tiny_http::Server, shared: &Shared) {
    let mut store: Option<Box<dyn Store>> = None;
    while let Ok(mut request) = server.recv() {
        let reply = handle(&mut request, shared, &mut store);
        let _ = request.respond(reply.into_response());
    }
}

/// Routes one request; a store error drops the connection for the next request.
fn handle(
    request: &mut tiny_http::Request,
    shared: &Shared,
    store: &mut Option<Box<dyn Store>>,
) -> Reply {
    let req = match http::Req::read(request) {
        Ok(req) => req,
        Err(e) => return Reply::error(&e),
    };
    if shared.loopback && !http::loopback_host(req.header("Host")) {
        return Reply::error(&ApiError::new(
            421,
            "this dashboard listens on a loopback address: open it as localhost or 127.0.0.1",
        ));
    }
    match route(&req, shared, store) {
        Ok(reply) => reply,
        Err(e) => {
            if e.status >= 500 {
                *store = None;
            }
            Reply::error(&e)
        }
    }
}

/// The store connection of this thread, opened on first use.
fn connection<'a>(
    shared: &Shared,
    store: &'a mut Option<Box<dyn Store>>,
) -> Result<&'a mut dyn Store, ApiError> {
    if store.is_none() {
        *store = Some(store::open(
            &shared.location,
            OpenFor::Worker,
            IfMissing::Create,
        )?);
    }
    match store {
        Some(s) => Ok(s.as_mut()),
        None => Err(ApiError::new(503, "the store is not open")),
    }
}

fn route(
    req: &http::Req,
    shared: &Shared,
    store: &mut Option<Box<dyn Store>>,
) -> Result<Reply, ApiError> {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET" | "HEAD", [""]) => Ok(Reply::asset(
            "text/html; charset=utf-8",
            include_str!("assets/index.html"),
        )),
        ("GET" | "HEAD", ["app.js"]) => Ok(Reply::asset(
            "text/javascript; charset=utf-8",
            include_str!("assets/app.js"),
        )),
        ("GET" | "HEAD", ["style.css"]) => Ok(Reply::asset(
            "text/css; charset=utf-8",
            include_str!("assets/style.css"),
        )),
        ("GET", ["metrics"]) => {
            let text = crate::metrics::exposition(connection(shared, store)?)?;
            Ok(Reply::text(
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ))
        }
        (_, ["api", "v1", rest @ ..]) => {
            let method = req.method.as_str();
            if method == "GET" {
                if rest == ["session"] {
                    return Ok(auth::session(req, &shared.auth));
                }
                return api::get(req, rest, connection(shared, store)?);
            }
            if method != "POST" {
                return Err(ApiError::new(405, "use GET to read and POST for actions"));
            }
            // Every state-changing request: same origin first, then the token.
            auth::check_origin(req)?;
            match rest {
                ["login"] => auth::login(req, &shared.auth),
                ["logout"] => Ok(auth::logout(req, &shared.auth)),
                _ => {
                    shared.auth.require(req)?;
                    actions::post(req, rest, connection(shared, store)?)
                }
            }
        }
        ("GET" | "HEAD", _) => Err(ApiError::new(404, "no such page")),
        _ => Err(ApiError::new(405, "method not allowed")),
    }
}
