//! Who may change the store through the dashboard, and from where.
//!
//! Invariants:
//! - Without a token (`--token`, `QUEUECTL_DASHBOARD_TOKEN`) every action answers
//!   403: the dashboard is read-only.
//! - With one, an action needs either the token itself in the `X-Queuectl-Token`
//!   header (scripts, curl) or a session cookie the page got by signing in with the
//!   token (`POST /api/v1/login`). The cookie is `HttpOnly; SameSite=Strict`, holds
//!   a random session id (never the token), and lives in this process's memory only.
//!   The token never appears in a URL.
//! - Every POST, signing in included, is refused with 403 when it comes from
//!   another site: an `Origin` that is not this dashboard's own (`http://` + `Host`),
//!   or a `Sec-Fetch-Site` other than `same-origin` or `none`. Requests without
//!   either header (curl, scripts) are not browsers' cross-site requests.
//! - Tokens and session ids are compared in constant time.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::json;

use super::http::{ApiError, Reply, Req};

/// The session cookie's name.
const COOKIE: &str = "queuectl_session";
/// Sessions kept; signing in more often than this drops the oldest.
const MAX_SESSIONS: usize = 256;

pub struct Auth {
    token: Option<String>,
    sessions: Mutex<VecDeque<String>>,
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether actions are offered at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `req` carries the token or a live session.
    fn signed_in(&self, req: &Req) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        if req
            .header("X-Queuectl-Token")
            .is_some_and(|given| same(given, token))
        {
            return true;
        }
        let Some(session) = cookie(req, COOKIE) else {
            return false;
        };
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.iter().any(|s| same(s, session))
    }

    /// Refuses (403) a request that may not act.
    pub fn require(&self, req: &Req) -> Result<(), ApiError> {
        if !self.enabled() {
            return Err(ApiError::new(
                403,
                "the dashboard is read-only; start it with --token (or \
                 QUEUECTL_DASHBOARD_TOKEN) to allow actions",
            ));
        }
        if self.signed_in(req) {
            return Ok(());
        }
        Err(ApiError::new(
            403,
            "this action needs the dashboard's token: sign in on the page, or send it \
             in the X-Queuectl-Token header",
        ))
    }
}

/// Refuses (403) a request a browser sent from another site.
pub fn check_origin(req: &Req) -> Result<(), ApiError> {
    if let Some(site) = req.header("Sec-Fetch-Site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(foreign());
    }
    if let Some(origin) = req.header("Origin") {
        let host = req.header("Host").unwrap_or("");
        let own = [format!("http://{host}"), format!("https://{host}")];
        if host.is_empty() || !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(foreign());
        }
    }
    Ok(())
}

fn foreign() -> ApiError {
    ApiError::new(
        403,
        "cross-site request refused: actions are only accepted from the dashboard's own page",
    )
}

/// `GET /api/v1/session`: whether actions are offered and whether this browser may
/// use them, so the page shows the buttons and the sign-in form only when they work.
pub fn session(req: &Req, auth: &Auth) -> Reply {
    Reply::ok(&json!({
        "actions": auth.enabled(),
        "signed_in": auth.signed_in(req),
    }))
}

/// `POST /api/v1/login` with `{"token": "..."}`: sets the session cookie.
pub fn login(req: &Req, auth: &Auth) -> Result<Reply, ApiError> {
    auth.require_enabled()?;
    let body = req.json()?;
    let given = body.get("token").and_then(|t| t.as_str()).unwrap_or("");
    if !auth.token.as_deref().is_some_and(|t| same(given, t)) {
        return Err(ApiError::new(
            403,
            "wrong token; use the one the dashboard was started with",
        ));
    }
    let id = new_session_id()?;
    {
        let mut sessions = auth.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(id.clone());
    }
    Ok(
        Reply::ok(&json!({"actions": true, "signed_in": true})).with_header(
            "Set-Cookie",
            format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict"),
        ),
    )
}

/// `POST /api/v1/logout`: forgets this browser's session.
pub fn logout(req: &Req, auth: &Auth) -> Reply {
    if let Some(session) = cookie(req, COOKIE) {
        let mut sessions = auth.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|s| !same(s, session));
    }
    Reply::ok(&json!({"actions": auth.enabled(), "signed_in": false})).with_header(
        "Set-Cookie",
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    )
}

impl Auth {
    fn require_enabled(&self) -> Result<(), ApiError> {
        if self.enabled() {
            Ok(())
        } else {
            self.require(&Req::empty())
        }
    }
}

/// 32 random bytes in hex.
fn new_session_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::new(503, format!("cannot make a session id: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The value of cookie `name` in the request's `Cookie` header.
fn cookie<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.header("Cookie")?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares in time that depends on the lengths only.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Req {
        let mut req = Req::empty();
        for (k, v) in headers {
            req.push_header(k, v);
        }
        req
    }

    #[test]
    fn foreign_origins_are_refused_and_own_ones_pass() {
        let host = ("Host", "127.0.0.1:8080");
        assert!(check_origin(&req(&[host, ("Origin", "http://127.0.0.1:8080")])).is_ok());
        assert!(check_origin(&req(&[host])).is_ok());
        for bad in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
            let e = check_origin(&req(&[host, ("Origin", bad)])).expect_err(bad);
            assert_eq!(e.status, 403);
        }
        let cross = req(&[host, ("Sec-Fetch-Site", "cross-site")]);
        assert_eq!(check_origin(&cross).expect_err("cross-site").status, 403);
        assert!(check_origin(&req(&[host, ("Sec-Fetch-Site", "same-origin")])).is_ok());
    }

    #[test]
    fn actions_need_the_token_or_a_session() {
        let read_only = Auth::new(None);
        assert_eq!(
            read_only
                .require(&req(&[("X-Queuectl-Token", "")]))
                .expect_err("read-only")
                .status,
            403
        );
        let auth = Auth::new(Some("s3cret".into()));
        assert!(
            auth.require(&req(&[("X-Queuectl-Token", "s3cret")]))
                .is_ok()
        );
        assert!(
            auth.require(&req(&[("X-Queuectl-Token", "s3cre")]))
                .is_err()
        );
        assert!(
            auth.require(&req(&[("Cookie", "queuectl_session=nope")]))
                .is_err()
        );
        auth.sessions.lock().expect("lock").push_back("abc".into());
        assert!(
            auth.require(&req(&[("Cookie", "x=1; queuectl_session=abc")]))
                .is_ok()
        );
    }
}
