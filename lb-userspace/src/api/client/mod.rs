//! The admin API's client side, for `lbctl`: one HTTP/1.1 exchange per call on
//! a fresh connection to lbd's socket, bounded by a timeout, with failures sorted
//! into what a CLI reports differently (not running, no permission, no answer in
//! time, an error from lbd, a garbled answer), each with a stable exit code.
//! Also the encoding of path segments (see the [module docs](super)).
//!
//! This module holds [`Client`] and its one way of making a call; the
//! typed endpoints, the exchange on the socket and the sorting of its
//! failures are in the files beside it.

mod connect;
mod endpoints;
mod error;
mod exchange;
mod request;
mod stage;
#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::debug;

pub use self::{
    error::ClientError,
    request::{api_path, segment},
};
use self::{request::build_request, stage::Stage};
use super::{route::Route, ApiError, Method};

/// A client of lbd's admin socket. Cheap: it holds only the path and timeout,
/// and connects anew for every call.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client of the socket at `path`; each call (connect, send, receive) must
    /// finish within `timeout`.
    pub fn new(path: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            path: path.into(),
            timeout,
        }
    }

    /// The socket path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and returns the JSON body of a 2xx answer (`Null` when
    /// empty). `path` is the encoded path without query, e.g. `/v1/status` or one
    /// from [`api_path`]; `query` pairs are encoded here.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let request = build_request(method, path, query, body)?;
        // As lbd reads it (`route::query_options`): the last `dry_run`,
        // true only as `true` or `1`.
        let dry_run = query
            .iter()
            .rev()
            .find(|(key, _)| *key == "dry_run")
            .is_some_and(|(_, value)| matches!(*value, "true" | "1"));
        let change = method != Method::Get && !dry_run;
        let stage = Arc::new(AtomicU8::new(Stage::Connecting as u8));
        let reached = || Stage::from_u8(stage.load(Ordering::SeqCst));
        let (status, bytes) =
            match tokio::time::timeout(self.timeout, self.exchange(request, &stage)).await {
                Err(_) => return Err(self.timed_out(reached(), change)),
                Ok(Err(error)) => return Err(self.cut_off(error, reached(), change)),
                Ok(Ok(answer)) => answer,
            };
        debug!(%method, path, status = status.as_u16(), "admin API call");
        if !status.is_success() {
            return Err(ApiError::from_response(status.as_u16(), &bytes).into());
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Protocol(format!("the answer to {method} {path} is not JSON: {e}"))
        })
    }

    /// [`Client::call`], with the answer read as a `T`.
    pub(crate) async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let value = self.call(method, path, query, body).await?;
        T::deserialize(value).map_err(|e| {
            ClientError::Protocol(format!("unexpected answer to {method} {path}: {e}"))
        })
    }

    /// Sends `route` (with `?dry_run=true` when asked), the answer read as
    /// a `T`: the one way lbctl reaches an endpoint.
    async fn send<T: DeserializeOwned>(
        &self,
        route: Route,
        dry_run: bool,
    ) -> Result<T, ClientError> {
        let encoded = route
            .encode()
            .map_err(|e| ClientError::Protocol(format!("encoding the request: {e}")))?;
        let segments: Vec<&str> = encoded.segments.iter().map(String::as_str).collect();
        let query: &[(&str, &str)] = if dry_run { &[("dry_run", "true")] } else { &[] };
        self.call_as(
            encoded.method,
            &api_path(&segments),
            query,
            encoded.body.as_ref(),
        )
        .await
    }
}
