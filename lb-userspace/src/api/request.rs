//! Reading one request off a connection and checking it before any
//! handler sees it: the head's size and fields, the path's and query's
//! percent-encoding, that an endpoint has the path and takes the method
//! (404, 405: before the body is read), the body's size, type and
//! deadline. Every refusal is an answer naming what is wrong, never a
//! dropped connection.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::{
    body::{Body as _, Incoming},
    header::{self, HeaderMap},
};
use serde::de;
use serde_json::Value;

use super::{
    code, route, Method, Request, Response, API_VERSION, MAX_REQUEST_BYTES, NO_ENDPOINT_PREFIX,
};

/// Bytes of an unwanted request body read and dropped before answering (see
/// [`discard`]): twice the largest body taken, so a client just past the limit
/// gets its 413.
const DISCARD_LIMIT: u64 = 2 * MAX_REQUEST_BYTES as u64;
/// Time spent reading and dropping an unwanted request body.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads an HTTP request (its body bounded in size and time) and decodes it
/// with [`parse_request`], or gives the error answer.
pub(super) async fn read_request(
    request: hyper::Request<Incoming>,
    body_timeout: Duration,
) -> Result<Request, Response> {
    let (head, mut body) = request.into_parts();
    // A head refused anyway is answered without reading the body first.
    if let Err(answer) = read_head(&head) {
        discard(&mut body).await;
        return Err(answer);
    }
    let bytes = read_body(&mut body, body_timeout).await?;
    parse_request(&head, &bytes)
}

/// Decodes a request hyper has parsed (`head`) and whose body was read
/// (`body`) into the handler's [`Request`], or the error answer to give: a
/// 404 outside `/v1/` or for a path no endpoint has (whatever the method,
/// and before the body is looked at), 405 for a path of the API that does
/// not take the method, 400 for bad percent-encoding, a query key given
/// twice, a body that is not JSON or has a key twice in one object, 413
/// for a body over [`MAX_REQUEST_BYTES`], 415 for a body not labelled as
/// JSON.
///
/// Pure (no I/O, no clock) so that everything a client controls can be
/// checked without a socket: the server answers with exactly this, and the
/// fuzz target `api_request` feeds it arbitrary requests.
pub fn parse_request(head: &hyper::http::request::Parts, body: &[u8]) -> Result<Request, Response> {
    let mut request = read_head(head)?;
    if body.is_empty() {
        return Ok(request);
    }
    if body.len() > MAX_REQUEST_BYTES {
        return Err(too_large());
    }
    if !is_json(&head.headers) {
        return Err(Response::error(
            415,
            code::UNSUPPORTED_MEDIA_TYPE,
            "a request body must be sent with Content-Type: application/json",
        ));
    }
    request.body = parse_json(body)?;
    Ok(request)
}

/// Most JSON values (numbers, strings, arrays, objects, ...) a request
/// body may hold: the largest valid request (a VIP with its 1000 backends,
/// see [`MAX_REQUEST_BYTES`]) has about 20,000. Bounds the memory one
/// request can take whatever its bytes hold: 4 MiB of `[0,0,...]` would
/// otherwise be 2 million values, over 64 MiB, for each of the 64
/// connections the server takes.
const MAX_REQUEST_VALUES: usize = 200_000;

/// A request body as JSON, refusing a key given twice in one object (at any
/// depth) rather than keeping the last: 400 `bad_json` for text that is not
/// JSON, 400 `bad_request` naming the key for a duplicate or naming the
/// limit for a body of more than [`MAX_REQUEST_VALUES`] values. Linear in
/// the body's size (a value's path is written only for the error).
fn parse_json(body: &[u8]) -> Result<Value, Response> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let budget = std::cell::Cell::new(MAX_REQUEST_VALUES);
    let top = StrictValue {
        place: Place::Top,
        budget: &budget,
    };
    let parsed = de::DeserializeSeed::deserialize(top, &mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|e| {
        if e.is_data() {
            // The only data errors building a value are a duplicate key
            // and too many values.
            Response::error(400, code::BAD_REQUEST, format!("invalid request body: {e}"))
        } else {
            Response::error(
                400,
                code::BAD_JSON,
                format!("request body is not valid JSON: {e}"),
            )
        }
    })
}

/// Where a value is in a request body, written out as its JSON path
/// (`backends[1].weight`) only when an error names it: each value's
/// place is a link to its parent's, so reading a body costs no copy of
/// the path (a long key over a long array made copying it quadratic).
#[derive(Clone, Copy)]
enum Place<'p> {
    /// The body itself.
    Top,
    /// The value of `key` in the object at the place.
    Key(&'p Place<'p>, &'p str),
    /// The `index`th element of the array at the place.
    Index(&'p Place<'p>, usize),
}

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Top => Ok(()),
            Place::Key(Place::Top, key) => f.write_str(&shown(key)),
            Place::Key(parent, key) => write!(f, "{parent}.{}", shown(key)),
            Place::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// `key` as an error names it: at most its first 64 bytes, then `...`
/// if it is longer (a key of megabytes would make the answer as long).
fn shown(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= 64 {
        return key.into();
    }
    let mut end = 64;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &key[..end]).into()
}

/// Reads any JSON value as `serde_json::Value` does, but refuses an object
/// with a key twice, naming the key by its JSON path (`backends[1].weight`),
/// and a body of more values than `budget` has left.
struct StrictValue<'p> {
    /// Where the value is, for the error.
    place: Place<'p>,
    /// Values the body may still hold.
    budget: &'p std::cell::Cell<usize>,
}

impl StrictValue<'_> {
    /// Takes one value from the budget, or the error naming the limit.
    fn count<E: de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "more than {MAX_REQUEST_VALUES} JSON values (the largest valid request has \
                 about 20,000)"
            ))),
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.count()?;
        // JSON has no NaN or infinity, so this is always a number.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.count()?;
        let mut out = Vec::new();
        loop {
            let element = StrictValue {
                place: Place::Index(&self.place, out.len()),
                budget: self.budget,
            };
            match seq.next_element_seed(element)? {
                Some(value) => out.push(value),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.count()?;
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let place = Place::Key(&self.place, &key);
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{place}: the key {:?} is given more than once",
                    shown(&key)
                )));
            }
            let value = map.next_value_seed(StrictValue {
                place,
                budget: self.budget,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The request without its body (`Null`): method, path and query, or the
/// error answer. A path no endpoint has is a 404 whatever the method, and
/// a path of the API that does not take the method a 405 (its `Allow`
/// header added by the server): both before the query and the body are
/// looked at, so a typo in the path (`POST /v1/vip`) is named as one, not
/// as a problem of its body.
fn read_head(head: &hyper::http::request::Parts) -> Result<Request, Response> {
    let path = parse_path(head.uri.path())?;
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let allowed = route::allowed_methods(&segments);
    let method = Method::from_http(&head.method);
    let Some(method) = method.filter(|method| allowed.contains(method)) else {
        return Err(route::not_routed(
            head.method.as_str(),
            head.uri.path(),
            &allowed,
        ));
    };
    let query = parse_query(head.uri.query())?;
    Ok(Request {
        method,
        path,
        query,
        body: Value::Null,
    })
}

/// The answer for a body over [`MAX_REQUEST_BYTES`].
fn too_large() -> Response {
    Response::error(
        413,
        code::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_REQUEST_BYTES} bytes"),
    )
}

/// Reads the whole body, at most [`MAX_REQUEST_BYTES`] of it, within `timeout`.
async fn read_body(body: &mut Incoming, timeout: Duration) -> Result<Bytes, Response> {
    let max = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX);
    // A declared Content-Length over the limit is refused before reading.
    if body.size_hint().lower() > max {
        discard(body).await;
        return Err(too_large());
    }
    match tokio::time::timeout(
        timeout,
        Limited::new(&mut *body, MAX_REQUEST_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            discard(body).await;
            Err(too_large())
        }
        Ok(Err(e)) => Err(Response::error(
            400,
            code::BAD_REQUEST,
            format!("reading the request body: {e}"),
        )),
        Err(_) => Err(Response::error(
            408,
            code::TIMEOUT,
            format!("the request body did not arrive within {timeout:?}"),
        )),
    }
}

/// Reads and drops the rest of a body that will not be used, so that a client
/// still sending it gets the error answer rather than a broken pipe. Bounded in
/// bytes and time: past either, hyper simply closes the connection after the answer.
async fn discard(body: &mut Incoming) {
    if body.size_hint().lower() > DISCARD_LIMIT {
        return;
    }
    let drain = async {
        let mut left = DISCARD_LIMIT;
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame
                .data_ref()
                .map_or(0, |data| u64::try_from(data.len()).unwrap_or(u64::MAX));
            match left.checked_sub(len) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    };
    // Out of time: same as out of bytes.
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The decoded segments after `/v1/`; 404 outside `/v1/`, 400 for an empty
/// segment (`//`) or bad percent-encoding. One trailing `/` is ignored.
pub(super) fn parse_path(raw: &str) -> Result<Vec<String>, Response> {
    let no_endpoint = || {
        Response::error(
            404,
            code::NO_ENDPOINT,
            format!("{NO_ENDPOINT_PREFIX} {raw} (the API is under /{API_VERSION}/)"),
        )
    };
    let rest = raw
        .strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(API_VERSION))
        .ok_or_else(no_endpoint)?;
    let rest = match rest {
        "" | "/" => return Ok(Vec::new()),
        rest => rest.strip_prefix('/').ok_or_else(no_endpoint)?,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|segment| {
            if segment.is_empty() {
                return Err(Response::error(
                    400,
                    code::BAD_REQUEST,
                    format!("empty path segment in {raw}"),
                ));
            }
            percent_decode(segment, false).ok_or_else(|| {
                Response::error(
                    400,
                    code::BAD_REQUEST,
                    format!("path segment {segment:?} has bad percent-encoding or is not UTF-8"),
                )
            })
        })
        .collect()
}

/// The decoded query parameters; 400 for bad encoding or a key given twice.
fn parse_query(raw: Option<&str>) -> Result<BTreeMap<String, String>, Response> {
    let mut query = BTreeMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_decode(s, true).ok_or_else(|| {
                Response::error(
                    400,
                    code::BAD_REQUEST,
                    format!("query parameter {pair:?} has bad percent-encoding or is not UTF-8"),
                )
            })
        };
        let key = decode(key)?;
        let value = decode(value)?;
        if query.contains_key(&key) {
            return Err(Response::error(
                400,
                code::BAD_REQUEST,
                format!("query parameter {key:?} is given more than once"),
            ));
        }
        query.insert(key, value);
    }
    Ok(query)
}

/// Decodes `%XX` escapes (and `+` as a space if `plus_is_space`); `None` for a
/// malformed escape or a result that is not UTF-8.
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    fn hex(digit: Option<&u8>) -> Option<u8> {
        digit
            .and_then(|&d| char::from(d).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.as_bytes().iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'%' => {
                let high = hex(bytes.next())?;
                let low = hex(bytes.next())?;
                out.push(high << 4 | low);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(byte),
        }
    }
    String::from_utf8(out).ok()
}
