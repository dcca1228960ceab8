//! Requests and responses of the dashboard: the parts of a request the routes read
//! ([`Req`]), what they answer ([`Reply`]), API errors as `{"error": "..."}` with a
//! status ([`ApiError`]), and the security headers every response carries.

use std::io::Read;

use serde_json::{Value, json};

use crate::error::{InputError, StoreError};

/// The largest request body accepted (an enqueue's job JSON, a login).
const MAX_BODY: u64 = 1 << 20;

/// The Content-Security-Policy of every response: only the dashboard's own files,
/// no inline script or style, no framing, forms and fetches to itself only.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// What the routes read of a request.
pub struct Req {
    pub method: String,
    /// The path's segments, each percent-decoded on its own (so a job id holding
    /// `/` travels as `%2F` in one segment).
    pub segments: Vec<String>,
    /// Percent-decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn read(request: &mut tiny_http::Request) -> Result<Req, ApiError> {
        let url = request.url().to_owned();
        let (raw_path, raw_query) = url.split_once('?').unwrap_or((&url, ""));
        let segments = raw_path
            .trim_matches('/')
            .split('/')
            .map(decode)
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| ApiError::new(400, "bad URL encoding"))?;
        let mut query = Vec::new();
        for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || ApiError::new(400, "bad URL encoding in the query");
            query.push((decode(k).ok_or_else(bad)?, decode(v).ok_or_else(bad)?));
        }
        let headers = request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_owned(),
                    h.value.as_str().to_owned(),
                )
            })
            .collect();
        let method = request.method().as_str().to_ascii_uppercase();
        let mut body = Vec::new();
        if method == "POST" {
            request
                .as_reader()
                .take(MAX_BODY + 1)
                .read_to_end(&mut body)
                .map_err(|e| ApiError::new(400, format!("cannot read the request body: {e}")))?;
            if body.len() as u64 > MAX_BODY {
                return Err(ApiError::new(413, "the request body is larger than 1 MiB"));
            }
        }
        Ok(Req {
            method,
            segments,
            query,
            headers,
            body,
        })
    }

    /// A request with nothing in it (for checks that need one, and tests).
    pub fn empty() -> Req {
        Req {
            method: String::new(),
            segments: Vec::new(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[cfg(test)]
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.headers.push((name.to_owned(), value.to_owned()));
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`, if given and not empty.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON value (an empty body is `{}`).
    pub fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::new(400, format!("the request body is not JSON: {e}")))
    }
}

/// Decodes `%XX` escapes (the page encodes with `encodeURIComponent`, so `+` is a
/// plain `+`, as it may be in a job id); `None` when the result is not UTF-8 or an
/// escape is broken.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a `Host` header names this machine's loopback (`localhost`, `127.x.y.z`,
/// `[::1]`, with any port). A missing header passes (HTTP/1.0 clients).
pub fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else { return true };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An API error: a status and a one-line message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match e {
            StoreError::NotFound(_) => 404,
            StoreError::Conflict(_) => 409,
            StoreError::DuplicateId(_) | StoreError::UnknownAfter(_) => 400,
            // A read-only store refuses the action; reading it still works.
            StoreError::ReadOnly(_) => 403,
            StoreError::BadLocation(_)
            | StoreError::Missing(_)
            | StoreError::TooNew { .. }
            | StoreError::Unavailable { .. }
            | StoreError::Io { .. } => 503,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::new(400, e.to_string())
    }
}

impl From<crate::error::Failure> for ApiError {
    fn from(e: crate::error::Failure) -> ApiError {
        ApiError::new(if e.code == 2 { 400 } else { 503 }, e.message)
    }
}

/// A response before the security headers are added.
pub struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// API answers must not be cached; the embedded files may be for a while.
    cache: &'static str,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
            cache: "no-store",
        }
    }

    pub fn ok(value: &Value) -> Reply {
        Reply::json(200, value)
    }

    pub fn error(e: &ApiError) -> Reply {
        Reply::json(e.status, &json!({ "error": e.message }))
    }

    pub fn asset(content_type: &'static str, body: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
            cache: "no-cache",
        }
    }

    pub fn text(content_type: &'static str, body: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
            cache: "no-store",
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn into_response(self) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let mut response = tiny_http::Response::from_data(self.body).with_status_code(self.status);
        let fixed = security_headers()
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .chain([
                ("Content-Type", self.content_type.to_owned()),
                ("Cache-Control", self.cache.to_owned()),
            ])
            .chain(self.headers);
        for (name, value) in fixed {
            if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(header);
            }
        }
        response
    }
}

/// The headers every response carries.
pub fn security_headers() -> [(&'static str, &'static str); 5] {
    [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_broken_ones_are_refused() {
        assert_eq!(decode("a%20b+c%2Fd").as_deref(), Some("a b+c/d"));
        assert_eq!(decode("%e2%9c%93").as_deref(), Some("✓"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%ff"), None);
    }

    #[test]
    fn only_loopback_hosts_pass() {
        for ok in [
            "localhost:8080",
            "127.0.0.1:1",
            "127.1.2.3",
            "[::1]:80",
            "LOCALHOST",
        ] {
            assert!(loopback_host(Some(ok)), "{ok}");
        }
        for bad in ["evil.example:8080", "10.0.0.1", "localhost.evil.example"] {
            assert!(!loopback_host(Some(bad)), "{bad}");
        }
        assert!(loopback_host(None));
    }
}
