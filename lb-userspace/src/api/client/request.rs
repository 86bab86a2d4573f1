//! The HTTP request of a call: its path's segments and its query
//! percent-encoded (see the [API's module docs](crate::api)), its headers
//! and its JSON body.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use serde_json::Value;

use super::ClientError;
use crate::api::{Method, API_VERSION};

/// Percent-encodes one path segment (or query key or value): RFC 3986's
/// unreserved characters `A-Z a-z 0-9 - . _ ~` as they are, every other byte as
/// `%XX`. Always use it for values in paths: IPv6 addresses have `:`, `[`, `]`.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The request path for `segments` under the version prefix, each encoded with
/// [`segment`]: `api_path(&["vips", "[2001:db8::1]:80/tcp"])` is
/// `/v1/vips/%5B2001%3Adb8%3A%3A1%5D%3A80%2Ftcp`.
pub fn api_path(segments: &[&str]) -> String {
    let mut out = format!("/{API_VERSION}");
    for s in segments {
        out.push('/');
        out.push_str(&segment(s));
    }
    out
}

/// The HTTP request for a call.
pub(super) fn build_request(
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<hyper::Request<Full<Bytes>>, ClientError> {
    if !path.starts_with('/') {
        return Err(ClientError::Protocol(format!(
            "request path {path:?} does not start with '/'"
        )));
    }
    let mut target = path.to_owned();
    for (i, (key, value)) in query.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(&segment(key));
        target.push('=');
        target.push_str(&segment(value));
    }
    let builder = hyper::Request::builder()
        .method(method.to_http())
        .uri(target)
        .header(header::HOST, HeaderValue::from_static("localhost"))
        .header(header::ACCEPT, HeaderValue::from_static("application/json"));
    let (builder, bytes) = match body {
        Some(body) => (
            builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            Bytes::from(body.to_string()),
        ),
        None => (builder, Bytes::new()),
    };
    builder.body(Full::new(bytes)).map_err(|e| {
        ClientError::Protocol(format!("cannot build the request {method} {path}: {e}"))
    })
}
