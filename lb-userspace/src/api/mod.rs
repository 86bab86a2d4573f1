//! lbd's admin API: JSON over HTTP/1.1 on a Unix domain socket, shared by the
//! daemon ([`server`]) and `lbctl` ([`client`]).
//!
//! This module owns the wire contract both sides agree on: the version prefix,
//! the request and response shapes a handler sees, the error body, and the size
//! limit. It knows nothing of VIPs or backends: the daemon supplies its
//! operations through [`Handler`], with JSON values in and out.
//!
//! # Wire format
//!
//! - Every endpoint lives under `/v1/`; anything else is a 404 with the
//!   code `no_endpoint` (a missing VIP, backend, rule or limit is a 404
//!   `not_found`).
//! - Methods are `GET`, `POST`, `PUT` and `DELETE`. A path of the API that
//!   does not take the method is a 405 whose `Allow` header lists the ones it
//!   takes (read off the one route table, `route::allowed_methods`); another
//!   method on a path the API does not have is a 404 `no_endpoint`.
//! - A request body, when there is one, is JSON with `Content-Type:
//!   application/json` (415 otherwise, 400 `bad_json` if it does not parse,
//!   400 `bad_request` naming the key if an object has a key twice) and
//!   at most [`MAX_REQUEST_BYTES`] bytes (413 otherwise). The head may have at
//!   most [`MAX_REQUEST_HEADERS`] fields and [`MAX_REQUEST_HEAD_BYTES`] bytes
//!   (431 and the connection closed otherwise); a client that is too slow to
//!   send it is disconnected.
//! - Every response body is JSON (none for 204). A non-2xx answer has the body
//!   `{"error":{"code":"not_found","message":"..."}}`, which clients turn into
//!   an [`ApiError`].
//!
//! # Path segments
//!
//! Segments are percent-encoded as in RFC 3986: the unreserved characters
//! `A-Z a-z 0-9 - . _ ~` stand for themselves and every other byte of the
//! segment's UTF-8 is written `%XX` (upper-case hex). So an IPv6 VIP key
//! `[2001:db8::1]:80/tcp` travels as `%5B2001%3Adb8%3A%3A1%5D%3A80%2Ftcp`: a
//! `/` inside a segment (`%2F`, as in a VIP's protocol or an ACL prefix)
//! never splits it. [`client::segment`] encodes;
//! the server splits the raw path on `/` first and decodes each segment after,
//! rejecting malformed escapes and non-UTF-8 with a 400. Query keys and values
//! use the same encoding; the server also reads `+` in a query as a space, as
//! browsers and curl's `--data-urlencode` write it.

use std::{collections::BTreeMap, fmt, future::Future};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

pub mod client;
pub mod convert;
pub mod flow_schema;
mod request;
pub mod route;
pub mod schema;
pub mod server;
pub mod wire_name;

/// How the message of every "no such endpoint" 404 starts: what tells
/// one from an older lbd (whose code for it was `not_found`, as for a
/// missing VIP) apart from a missing object.
pub(crate) const NO_ENDPOINT_PREFIX: &str = "no such endpoint:";

/// The version prefix of every path: `/v1/...`. Bumped only for incompatible changes,
/// so an old `lbctl` gets a clear 404 instead of a misread answer.
pub(crate) const API_VERSION: &str = "v1";

/// Largest request body the server reads, in bytes. An admin request is a few
/// hundred bytes, the largest valid one (a VIP with its 1000 backends, each with
/// an IPv6 address, a MAC and a health object whose texts, `expect_body`
/// among them, are at their longest, written in characters JSON escapes)
/// about 3.5 MiB: the API takes what the config file does. The bound keeps a runaway client from making lbd
/// buffer without end (the body is read as it comes, not reserved up front).
pub(crate) const MAX_REQUEST_BYTES: usize = 5 << 20;

/// Most header fields a request may have; more is answered 431 and the
/// connection closed. lbctl sends four, curl five.
pub(crate) const MAX_REQUEST_HEADERS: usize = 32;

/// Largest request head (request line and header fields), in bytes; more is
/// answered 431 and the connection closed.
pub(crate) const MAX_REQUEST_HEAD_BYTES: usize = 16 << 10;

/// The `code` strings of error bodies that the transport itself produces, so the
/// daemon's handler can use the same words for the same situations.
pub mod code {
    /// No such object: VIP, backend, ACL rule or limit (404).
    pub(crate) const NOT_FOUND: &str = "not_found";
    /// No such endpoint: a path (or a method on it) the API does not have
    /// (404), told apart from [`NOT_FOUND`] so that a client newer than lbd
    /// does not take a missing endpoint for a missing VIP.
    pub(crate) const NO_ENDPOINT: &str = "no_endpoint";
    /// The method is not one the endpoint supports (405).
    pub(crate) const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The request is malformed: path escapes, query, or a body of the wrong shape (400).
    pub const BAD_REQUEST: &str = "bad_request";
    /// The body is not valid JSON (400).
    pub(crate) const BAD_JSON: &str = "bad_json";
    /// The body is larger than [`super::MAX_REQUEST_BYTES`] (413).
    pub(crate) const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// A body came without `Content-Type: application/json` (415).
    pub(crate) const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// The body did not arrive in time (408).
    pub(crate) const TIMEOUT: &str = "timeout";
    /// The change conflicts with the current state (409); for the daemon's use.
    pub(crate) const CONFLICT: &str = "conflict";
    /// The change would go past a limit (too many VIPs or backends) (400);
    /// for the daemon's use.
    pub(crate) const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// Something failed inside lbd (500).
    pub(crate) const INTERNAL: &str = "internal";
    /// lbd's engine stopped while carrying out a change, before it
    /// answered (500): the change may be applied, in whole or in part,
    /// unlike an [`INTERNAL`] failure, which changed nothing; lbctl exits
    /// 8, as when lbd does not answer a change.
    pub(crate) const MAYBE_APPLIED: &str = "maybe_applied";
    /// lbd has as many requests in flight as it takes; nothing was done
    /// and trying again shortly may work (503).
    pub(crate) const BUSY: &str = "busy";
}

/// The HTTP methods the API uses; a closed set so handlers match exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Read state; never changes anything.
    Get,
    /// Create something or trigger an action.
    Post,
    /// Create or replace something at a known path.
    Put,
    /// Remove something.
    Delete,
}

impl Method {
    /// Every method the API uses, in the order an `Allow` header lists
    /// them.
    pub(crate) const ALL: [Method; 4] = [Self::Get, Self::Post, Self::Put, Self::Delete];

    /// The method's name on the wire, for logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    /// The API's method for an HTTP one, `None` for those it does not use.
    fn from_http(method: &hyper::Method) -> Option<Self> {
        match *method {
            hyper::Method::GET => Some(Self::Get),
            hyper::Method::POST => Some(Self::Post),
            hyper::Method::PUT => Some(Self::Put),
            hyper::Method::DELETE => Some(Self::Delete),
            _ => None,
        }
    }

    /// The HTTP method to send.
    fn to_http(self) -> hyper::Method {
        match self {
            Self::Get => hyper::Method::GET,
            Self::Post => hyper::Method::POST,
            Self::Put => hyper::Method::PUT,
            Self::Delete => hyper::Method::DELETE,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as the daemon's handler sees it: already routed under `/v1/`,
/// decoded, size-checked and parsed, so the handler only deals with meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Percent-decoded segments after `/v1/`, e.g.
    /// `["vips", "198.18.0.100:80/tcp", "backends", "198.18.0.11"]`; empty for `/v1/`.
    pub path: Vec<String>,
    /// Percent-decoded query parameters (each key at most once).
    pub query: BTreeMap<String, String>,
    /// The JSON body, `Null` when the request had none.
    pub body: Value,
}

impl Request {
    /// The path as `&str`s, for routing with slice patterns:
    /// `match (req.method, req.segments().as_slice()) { (Method::Get, ["status"]) => .. }`.
    pub fn segments(&self) -> Vec<&str> {
        self.path.iter().map(String::as_str).collect()
    }

    /// The body as a typed value, or the 400 answer to give when it does not fit,
    /// so a handler can write `let spec: VipSpec = match req.body_as() { .. }`.
    /// The answer names the JSON path of what does not fit
    /// (`backends[3].address: invalid IP address syntax`), as a refusal by
    /// the config file's rules does.
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, Response> {
        serde_path_to_error::deserialize(&self.body).map_err(|e| {
            let path = e.path().to_string();
            let message = if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            };
            Response::error(
                400,
                code::BAD_REQUEST,
                format!("invalid request body: {message}"),
            )
        })
    }

    /// The 404 for a path or method the handler has no endpoint for, worded like
    /// the server's own, for a handler's catch-all arm.
    pub(crate) fn no_route(&self) -> Response {
        Response::error(
            404,
            code::NO_ENDPOINT,
            format!(
                "{NO_ENDPOINT_PREFIX} {} {}",
                self.method,
                self.display_path()
            ),
        )
    }

    /// The path as it was sent (re-encoded), for messages.
    pub fn display_path(&self) -> String {
        let mut out = format!("/{API_VERSION}");
        for segment in &self.path {
            out.push('/');
            out.push_str(&client::segment(segment));
        }
        out
    }
}

/// A response: HTTP status and JSON body. The handler decides both; the server
/// only checks that the status is a valid final one (500 otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// JSON body; not sent for 204.
    pub body: Value,
}

impl Response {
    /// A response with any status, for 201/202/204 and the like.
    pub fn new(status: u16, body: impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(body) => Self { status, body },
            Err(e) => Self::error(500, code::INTERNAL, format!("encoding the response: {e}")),
        }
    }

    /// 200 with `body` (a 500 if `body` cannot be represented as JSON).
    pub fn ok(body: impl Serialize) -> Self {
        Self::new(200, body)
    }

    /// An error answer: body `{"error":{"code":..,"message":..}}`, the one shape
    /// every client parses into [`ApiError`].
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self {
            status,
            body: serde_json::json!({ "error": { "code": code, "message": message } }),
        }
    }
}

/// What the daemon implements: one function from request to response. The
/// server runs each call in its own task, so a client that hangs up mid-request
/// never cancels a half-done change. A panic in that task is answered 500 only
/// where panics unwind (the server's tests): lbd's panic hook aborts the whole
/// process on any panic, before unwinding (see `bin/lbd.rs`), and systemd
/// starts it again; its clients see their connections closed unanswered.
/// (lbd's handler only passes the request to the engine's loop, which answers
/// it: there, as everywhere in the daemon, input is refused, never panicked on.)
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// What a client gets back for a non-2xx answer: the status, and the error
/// body's code and message, so `lbctl` can print the message and pick an exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Machine-readable error code, e.g. `not_found` (see [`code`]).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// Whether this is lbd's 404 for an endpoint it does not have (this
    /// lbctl is newer than lbd), not for a VIP, backend, rule or limit:
    /// by its code, or by its message from an lbd older than that code.
    pub fn is_no_endpoint(&self) -> bool {
        self.status == 404
            && (self.code == code::NO_ENDPOINT
                || (self.code == code::NOT_FOUND && self.message.starts_with(NO_ENDPOINT_PREFIX)))
    }

    /// The error a non-2xx answer stands for. A body that is not the standard
    /// error shape (a proxy, a bug) still gives an error with the right status,
    /// with code `http_<status>` and the body's text (shortened) as message.
    fn from_response(status: u16, body: &[u8]) -> Self {
        if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
            return Self {
                status,
                code: error.code,
                message: error.message,
            };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            hyper::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_owned()
        } else {
            text.chars().take(200).collect()
        };
        Self {
            status,
            code: format!("http_{status}"),
            message,
        }
    }
}

/// The error body on the wire, as clients read it.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_body_shape() {
        let r = Response::error(409, code::CONFLICT, "VIP exists");
        assert_eq!(r.status, 409);
        assert_eq!(
            r.body,
            json!({"error": {"code": "conflict", "message": "VIP exists"}})
        );
    }

    #[test]
    fn api_error_from_standard_and_odd_bodies() {
        let e =
            ApiError::from_response(404, br#"{"error":{"code":"not_found","message":"no VIP"}}"#);
        assert_eq!(e.code, "not_found");
        assert_eq!(e.message, "no VIP");
        assert_eq!(e.to_string(), "no VIP (not_found)");

        let e = ApiError::from_response(502, b"Bad gateway\n");
        assert_eq!(
            (e.status, e.code.as_str(), e.message.as_str()),
            (502, "http_502", "Bad gateway")
        );

        let e = ApiError::from_response(503, b"");
        assert_eq!(e.message, "Service Unavailable");
    }

    #[test]
    fn typed_body_and_routing_helpers() {
        #[derive(Deserialize)]
        struct Weight {
            weight: u16,
        }
        let req = Request {
            method: Method::Put,
            path: vec!["vips".into(), "[2001:db8::1]:80:tcp".into()],
            query: BTreeMap::new(),
            body: json!({"weight": 7}),
        };
        assert!(matches!(req.segments().as_slice(), ["vips", _]));
        assert_eq!(req.body_as::<Weight>().map(|w| w.weight), Ok(7));
        let bad = Request {
            body: json!({"weight": "x"}),
            ..req.clone()
        };
        let err = bad.body_as::<Weight>().err().map(|r| r.status);
        assert_eq!(err, Some(400));
        let nr = req.no_route();
        assert_eq!(nr.status, 404);
        assert_eq!(
            nr.body["error"]["message"],
            "no such endpoint: PUT /v1/vips/%5B2001%3Adb8%3A%3A1%5D%3A80%3Atcp"
        );
    }
}
