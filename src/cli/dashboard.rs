//! `queuectl dashboard`: checks the address and the token, then hands over to
//! [`crate::dashboard::serve`], which serves until the process is killed.
//!
//! Invariant: a non-loopback address is refused without a token (exit 2), so the
//! dashboard is never reachable from the network without one.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::Parser;

use super::Context;
use crate::error::Failure;

#[derive(Debug, Parser)]
pub struct Args {
    /// Address to serve on; a non-loopback one needs a token
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: String,

    /// Allow actions (retry, cancel, pause/resume, enqueue) to holders of this token
    /// (prefer the environment variable: arguments show in `ps`)
    #[arg(
        long,
        env = "QUEUECTL_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<(), Failure> {
    let listen = parse_listen(&args.listen)?;
    let token = match args.token {
        Some(t) if t.trim().is_empty() => {
            return Err(Failure::usage(
                "the dashboard token is empty; give a long random one with --token or QUEUECTL_DASHBOARD_TOKEN",
            ));
        }
        other => other,
    };
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(Failure::usage(format!(
            "refusing to serve the dashboard on non-loopback address {listen} without a token; \
             set QUEUECTL_DASHBOARD_TOKEN (or --token), or listen on 127.0.0.1"
        )));
    }
    crate::dashboard::serve(crate::dashboard::Config {
        location: ctx.location()?,
        listen,
        token,
    })
}

/// `HOST:PORT` with an IP address or `localhost` (resolved to its loopback).
fn parse_listen(text: &str) -> Result<SocketAddr, Failure> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = || {
        Failure::usage(format!(
            "--listen '{text}' is not an address; give IP:PORT such as 127.0.0.1:8080"
        ))
    };
    let (host, _) = text.rsplit_once(':').ok_or_else(bad)?;
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(bad());
    }
    text.to_socket_addrs()
        .map_err(|_| bad())?
        .find(|a| a.ip().is_loopback())
        .ok_or_else(bad)
}
