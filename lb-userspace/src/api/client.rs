//! The admin API's client side, for `lbctl`: one HTTP/1.1 exchange per call on
//! a fresh connection to lbd's socket, bounded by a timeout, with failures sorted
//! into what a CLI reports differently (not running, no permission, no answer in
//! time, an error from lbd, a garbled answer), each with a stable exit code.
//! Also the encoding of path segments (see the [module docs](super)).

use std::{
    fmt::Write as _,
    io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UnixStream,
};
use tracing::debug;

use super::{
    flow_schema::FlowExplanation,
    route::Route,
    schema::{
        BackendSpec, Change, ConfigText, GuardStatus, NodeChange, NodeStatus, StateChange, Status,
        VipSpec, VipStatus, WeightChange,
    },
    ApiError, Method, API_VERSION,
};
use crate::{
    guard::{AclRule, Limits, Scope},
    model::FlowCount,
    vip_id::VipId,
};

/// Largest response body read, in bytes: generous for status dumps, but bounded.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// How long a connect is retried while the socket's listen backlog is
/// full (a non-blocking connect then fails with `EAGAIN` rather than
/// waiting): lbd takes newcomers as its connections give way, so a full
/// backlog is a short wait, not a refusal.
const BACKLOG_WAIT: Duration = Duration::from_secs(2);
/// The first pause between those retries; it doubles up to
/// [`MAX_BACKLOG_PAUSE`].
const FIRST_BACKLOG_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause between those retries.
const MAX_BACKLOG_PAUSE: Duration = Duration::from_millis(200);

/// Why a call failed, sorted by what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket at the path: lbd is not running, or lbctl looks in the
    /// wrong place (the config's `admin_socket` is another path).
    #[error("no admin socket at {}: lbd is not running, or its config's admin_socket is elsewhere (pass --socket or set LBCTL_SOCKET; for `systemctl reload lbd`, whose ExecReload runs `lbctl reload`, add a drop-in with Environment=LBCTL_SOCKET=PATH)", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// A socket file at the path, but nothing listening on it: left by an
    /// lbd that was killed or crashed (a clean stop removes it).
    #[error("lbd is not running: its admin socket {} exists but nothing listens on it (an lbd that was killed or crashed left it); start lbd again (it replaces the socket), or run `lbd --cleanup` if it is to stay down (it removes the socket too)", path.display())]
    NotListening {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path (a regular file, a
    /// directory): the path is wrong, and lbd would refuse it too.
    #[error("{} is not a socket (it is {what}): not lbd's admin socket; check --socket (LBCTL_SOCKET) and the config's admin_socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What it is instead, as a person reads it ("a directory").
        what: &'static str,
    },
    /// The socket's listen backlog stayed full for as long as lbctl
    /// waited: lbd is very busy, or stuck.
    #[error("lbd's admin socket {} is busy: its queue of new connections stayed full for {after:?}; try again", path.display())]
    Busy {
        /// The socket path.
        path: PathBuf,
        /// How long lbctl tried.
        after: Duration,
    },
    /// The socket exists but this user may not connect to it.
    #[error("permission denied on lbd's admin socket {} (run as root, or as a member of the config's admin_socket_group)", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// lbd did not answer a look in time.
    #[error("lbd did not answer within {after:?} (admin socket {})", path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        after: Duration,
    },
    /// lbd did not answer a change in time. lbd carries a change out even
    /// when its caller has gone, so it may be applied: not "unreachable".
    #[error("lbd did not answer the change within {after:?} (admin socket {}): it may have been applied or may still be; check `lbctl status` before trying again", path.display())]
    ChangeTimeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection ended (or lbd's answer could not be read) after a
    /// change was sent, before its answer came: lbd carries a change out
    /// even when its caller has gone, so it may be applied, as after
    /// [`ClientError::ChangeTimeout`]; not "unreachable", nor a mere
    /// protocol error.
    #[error("the connection to lbd ended before it answered the change ({why}; admin socket {}): it may have been applied or may still be; check `lbctl status` before trying again", path.display())]
    ChangeCutOff {
        /// The socket path.
        path: PathBuf,
        /// What ended the exchange.
        why: String,
    },
    /// lbd closed (or reset) the connection before any answer came: it
    /// crashed or stopped mid-request (systemd starts it again), or its
    /// queue of new connections was dropped. For a look or a dry run
    /// nothing was done and trying again later may work; a change cut off
    /// so is [`ClientError::ChangeCutOff`] instead.
    #[error("lbd closed the connection without answering ({why}; admin socket {}): it is restarting or stopping; nothing was done, try again later", path.display())]
    Dropped {
        /// The socket path.
        path: PathBuf,
        /// What ended the exchange.
        why: String,
    },
    /// The socket path is one no socket can have (longer than a socket
    /// address holds, or under something that is no directory): the path
    /// is wrong, and trying again would not help.
    #[error("--socket (LBCTL_SOCKET) {}: {source}; no socket can be at this path, check it and the config's admin_socket", path.display())]
    BadSocketPath {
        /// The socket path.
        path: PathBuf,
        /// What the OS said of it.
        #[source]
        source: io::Error,
    },
    /// Connecting failed for another reason.
    #[error("connecting to lbd's admin socket {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// lbd answered with an error (non-2xx).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The exchange itself went wrong: a malformed answer, a dropped connection,
    /// or a request that could not be built.
    #[error("talking to lbd: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Exit code for anything else (5xx, protocol errors).
    pub const EXIT_OTHER: u8 = 1;
    /// Exit code for a usage error (a socket path that is no socket, or
    /// that no socket can have, or one this user has no permission on:
    /// waiting mends none of them) or a request lbd rejected (4xx but 409
    /// and an object's 404; a 404 for an endpoint lbd does not have is
    /// one).
    pub const EXIT_USAGE: u8 = 2;
    /// Exit code for "no such thing": a 404 for a VIP, backend, ACL rule
    /// or limit (not for an endpoint).
    pub const EXIT_NOT_FOUND: u8 = 3;
    /// Exit code for a conflict with the current state (409).
    pub const EXIT_CONFLICT: u8 = 4;
    /// Exit code for lbd unreachable: not running (no socket, or nothing
    /// listening on it), too busy, no answer, or answering 503 (shutting
    /// down for a restart, or out of connections): nothing was done, and
    /// trying again later may work.
    pub const EXIT_UNAVAILABLE: u8 = 5;
    /// Exit code for a change lbd did not answer, in time or before the
    /// connection ended, or whose carrying out lbd's engine stopped in
    /// the middle of (its 500 `maybe_applied`): it may be applied.
    pub const EXIT_CHANGE_UNANSWERED: u8 = 8;

    /// The `lbctl` exit code for this error; stable, so scripts can branch on it.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotRunning { .. }
            | Self::NotListening { .. }
            | Self::Busy { .. }
            | Self::Timeout { .. }
            | Self::Dropped { .. }
            | Self::Connect { .. } => Self::EXIT_UNAVAILABLE,
            // Waiting mends none of these: a script looping on 5 ("try
            // again later") would loop for ever.
            Self::NotASocket { .. }
            | Self::PermissionDenied { .. }
            | Self::BadSocketPath { .. } => Self::EXIT_USAGE,
            Self::ChangeTimeout { .. } | Self::ChangeCutOff { .. } => Self::EXIT_CHANGE_UNANSWERED,
            Self::Api(e) if e.code == super::code::MAYBE_APPLIED => Self::EXIT_CHANGE_UNANSWERED,
            // A path lbd has no endpoint for (lbctl newer than lbd) is a
            // request it refused, not a missing VIP or backend.
            Self::Api(e) if e.is_no_endpoint() => Self::EXIT_USAGE,
            Self::Api(e) => match e.status {
                404 => Self::EXIT_NOT_FOUND,
                409 => Self::EXIT_CONFLICT,
                503 => Self::EXIT_UNAVAILABLE,
                400..=499 => Self::EXIT_USAGE,
                _ => Self::EXIT_OTHER,
            },
            Self::Protocol(_) => Self::EXIT_OTHER,
        }
    }
}

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
        let dry_run = query.iter().any(|(key, _)| *key == "dry_run");
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

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.send(Route::Status, false).await
    }

    /// `GET /v1/vips`.
    pub async fn vips(&self) -> Result<Vec<VipStatus>, ClientError> {
        self.send(Route::ListVips, false).await
    }

    /// `GET /v1/vips/{vip}`.
    pub async fn vip(&self, id: VipId) -> Result<VipStatus, ClientError> {
        self.send(Route::GetVip(id), false).await
    }

    /// `POST /v1/vips`.
    pub async fn add_vip(&self, spec: VipSpec, dry_run: bool) -> Result<Change, ClientError> {
        self.send(Route::AddVip(spec), dry_run).await
    }

    /// `DELETE /v1/vips/{vip}`.
    pub async fn remove_vip(&self, id: VipId, dry_run: bool) -> Result<Change, ClientError> {
        self.send(Route::RemoveVip(id), dry_run).await
    }

    /// `POST /v1/vips/{vip}/backends`.
    pub async fn add_backend(
        &self,
        id: VipId,
        spec: BackendSpec,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(Route::AddBackend(id, spec), dry_run).await
    }

    /// `DELETE /v1/vips/{vip}/backends/{address}`.
    pub async fn remove_backend(
        &self,
        id: VipId,
        address: IpAddr,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(Route::RemoveBackend(id, address), dry_run).await
    }

    /// `PUT /v1/vips/{vip}/backends/{address}/state`.
    pub async fn set_state(
        &self,
        id: VipId,
        address: IpAddr,
        change: StateChange,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(Route::SetState(id, address, change), dry_run)
            .await
    }

    /// `PUT /v1/vips/{vip}/backends/{address}/weight`.
    pub async fn set_weight(
        &self,
        id: VipId,
        address: IpAddr,
        weight: u32,
        dry_run: bool,
    ) -> Result<Change, ClientError> {
        self.send(
            Route::SetWeight(id, address, WeightChange { weight }),
            dry_run,
        )
        .await
    }

    /// `GET /v1/vips/{vip}/backends/{address}/flows`.
    pub async fn backend_flows(
        &self,
        id: VipId,
        address: IpAddr,
    ) -> Result<FlowCount, ClientError> {
        self.send(Route::Flows(id, address), false).await
    }

    /// `GET /v1/vips/{vip}/flows/{client}`.
    pub async fn flow(
        &self,
        id: VipId,
        client: SocketAddr,
    ) -> Result<FlowExplanation, ClientError> {
        self.send(Route::Flow(id, client), false).await
    }

    /// `POST /v1/reload`.
    pub async fn reload(&self, dry_run: bool) -> Result<Change, ClientError> {
        self.send(Route::Reload, dry_run).await
    }

    /// `GET /v1/config`.
    pub async fn config(&self) -> Result<ConfigText, ClientError> {
        self.send(Route::Config, false).await
    }

    /// `GET /v1/node`.
    pub async fn node(&self) -> Result<NodeStatus, ClientError> {
        self.send(Route::Node, false).await
    }

    /// `PUT /v1/node/state`.
    pub async fn set_node_state(
        &self,
        state: crate::bgp::NodeState,
        dry_run: bool,
    ) -> Result<NodeStatus, ClientError> {
        self.send(Route::SetNode(NodeChange { state }), dry_run)
            .await
    }

    /// `GET /v1/acl`: deny/allow rules and limits with their counts.
    pub async fn guard(&self) -> Result<GuardStatus, ClientError> {
        self.send(Route::Acl, false).await
    }

    /// `POST /v1/acl`.
    pub async fn add_acl(&self, rule: AclRule, dry_run: bool) -> Result<GuardStatus, ClientError> {
        self.send(Route::AddAcl(rule), dry_run).await
    }

    /// `DELETE /v1/acl/{scope}/{action}/{source}`.
    pub async fn remove_acl(
        &self,
        rule: AclRule,
        dry_run: bool,
    ) -> Result<GuardStatus, ClientError> {
        self.send(Route::RemoveAcl(rule), dry_run).await
    }

    /// `PUT /v1/limits/{scope}`.
    pub async fn set_limits(
        &self,
        scope: Scope,
        limits: Limits,
        dry_run: bool,
    ) -> Result<GuardStatus, ClientError> {
        self.send(Route::SetLimits(scope, limits), dry_run).await
    }

    /// `DELETE /v1/limits/{scope}`.
    pub async fn clear_limits(
        &self,
        scope: Scope,
        dry_run: bool,
    ) -> Result<GuardStatus, ClientError> {
        self.send(Route::ClearLimits(scope), dry_run).await
    }

    /// What the `--api-timeout` ending an exchange at `stage` means: a
    /// change whose bytes went out may be applied (lbd finishes it); one
    /// never sent was not, and is reported as lbd unreachable (busy, when
    /// its listen backlog was still full), as a look is.
    fn timed_out(&self, stage: Stage, change: bool) -> ClientError {
        let (path, after) = (self.path.clone(), self.timeout);
        match stage {
            Stage::Sent if change => ClientError::ChangeTimeout { path, after },
            Stage::BacklogFull => ClientError::Busy { path, after },
            Stage::Connecting | Stage::Connected | Stage::Sent => {
                ClientError::Timeout { path, after }
            }
        }
    }

    /// What an exchange that failed with `error` at `stage` means: a
    /// change whose bytes went out and whose answer never came whole (the
    /// connection dropped, an answer that could not be read) may be
    /// applied, as when it times out; anything else is `error` itself.
    fn cut_off(&self, error: ClientError, stage: Stage, change: bool) -> ClientError {
        match error {
            ClientError::Protocol(why) | ClientError::Dropped { why, .. }
                if change && stage == Stage::Sent =>
            {
                ClientError::ChangeCutOff {
                    path: self.path.clone(),
                    why,
                }
            }
            other => other,
        }
    }

    /// What a failed exchange (`error`, hyper's) means: lbd closing or
    /// resetting the connection before any answer came is
    /// [`ClientError::Dropped`] (lbd unavailable for now, as across a
    /// restart), anything else a garbled exchange.
    fn exchange_error(&self, error: &hyper::Error) -> ClientError {
        if unanswered(error) {
            ClientError::Dropped {
                path: self.path.clone(),
                why: error.to_string(),
            }
        } else {
            ClientError::Protocol(error.to_string())
        }
    }

    /// Connects, sends `request`, and reads the status and whole body,
    /// noting in `stage` how far it got.
    async fn exchange(
        &self,
        request: hyper::Request<Full<Bytes>>,
        stage: &Arc<AtomicU8>,
    ) -> Result<(hyper::StatusCode, Bytes), ClientError> {
        let stream = retry_while_backlog_full(BACKLOG_WAIT, || async {
            let connected = UnixStream::connect(&self.path).await;
            if matches!(&connected, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                stage.store(Stage::BacklogFull as u8, Ordering::SeqCst);
            }
            connected
        })
        .await
        .map_err(|e| self.connect_error(e))?;
        stage.store(Stage::Connected as u8, Ordering::SeqCst);
        let stream = NotingWrites {
            stream,
            stage: Arc::clone(stage),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.exchange_error(&e))?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.exchange_error(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Protocol(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        // The connection is driven here rather than spawned, so that it ends
        // with the call (and with the timeout).
        let mut exchange = std::pin::pin!(exchange);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = exchange.as_mut() => result,
            result = connection.as_mut() => match result {
                // Closed cleanly: the exchange has its answer or its error.
                Ok(()) => exchange.await,
                Err(e) => Err(self.exchange_error(&e)),
            },
        }
    }

    /// Sorts a connect error into what the user should do about it.
    fn connect_error(&self, source: io::Error) -> ClientError {
        let path = self.path.clone();
        match source.kind() {
            io::ErrorKind::NotFound => ClientError::NotRunning { path },
            // A file is there: a socket nobody listens on, or (Linux
            // refuses those the same way) something else.
            io::ErrorKind::ConnectionRefused => match not_a_socket(&path) {
                Some(what) => ClientError::NotASocket { path, what },
                None => ClientError::NotListening { path },
            },
            // Still full after the retries.
            io::ErrorKind::WouldBlock => ClientError::Busy {
                path,
                after: BACKLOG_WAIT,
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
            // Too long for a socket address, or a name too long, or under
            // a file or a symlink loop: no socket can be there.
            io::ErrorKind::InvalidInput
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => ClientError::BadSocketPath { path, source },
            _ if source.raw_os_error() == Some(libc::ELOOP) => {
                ClientError::BadSocketPath { path, source }
            }
            _ => ClientError::Connect { path, source },
        }
    }
}

/// Whether hyper's `error` says the connection ended (closed, or reset
/// by lbd) before an answer's head came, rather than an answer that came
/// garbled: hyper's "connection closed before message completed", or
/// an `ECONNRESET`/`EPIPE`/`ECONNABORTED` underneath.
fn unanswered(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io_error) = inner.downcast_ref::<io::Error>() {
            return matches!(
                io_error.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            );
        }
        source = inner.source();
    }
    false
}

/// How far an exchange got, for what its timeout means (see
/// [`Client::timed_out`]); kept in an [`AtomicU8`] the exchange and
/// its stream update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Stage {
    /// Connecting, nothing refused yet.
    Connecting,
    /// A connect found the socket's listen backlog full, and is retried.
    BacklogFull,
    /// Connected; no byte of the request written yet.
    Connected,
    /// Some of the request written: lbd may read it and act on it.
    Sent,
}

impl Stage {
    /// The stage stored as `n`; an unknown value (none is stored) counts
    /// as sent, the outcome that claims least.
    fn from_u8(n: u8) -> Self {
        [Self::Connecting, Self::BacklogFull, Self::Connected]
            .into_iter()
            .find(|stage| *stage as u8 == n)
            .unwrap_or(Self::Sent)
    }
}

/// The connection's stream, noting the first byte written to it as
/// [`Stage::Sent`]: from then on a change may reach lbd.
struct NotingWrites {
    /// The connection.
    stream: UnixStream,
    /// Where the exchange's stage is kept.
    stage: Arc<AtomicU8>,
}

impl NotingWrites {
    /// Notes `written` (a write's outcome) as [`Stage::Sent`] when it wrote
    /// a byte.
    fn note(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.stage.store(Stage::Sent as u8, Ordering::SeqCst);
        }
        written
    }
}

impl AsyncRead for NotingWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for NotingWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What is at `path` when it is not a socket ("a regular file", "a
/// directory", ...); `None` for a socket, or when it cannot be told.
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(if kind.is_socket() {
        return None;
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "neither a socket nor a regular file"
    })
}

/// `connect()`, tried again (pauses doubling from [`FIRST_BACKLOG_PAUSE`]
/// to [`MAX_BACKLOG_PAUSE`]) while it fails with `WouldBlock` (`EAGAIN`:
/// the listen backlog is full), for up to `wait`; then its last error.
async fn retry_while_backlog_full<T, F>(
    wait: Duration,
    mut connect: impl FnMut() -> F,
) -> io::Result<T>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = FIRST_BACKLOG_PAUSE;
    loop {
        match connect().await {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() + pause <= deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKLOG_PAUSE);
            }
            result => return result,
        }
    }
}

/// The HTTP request for a call.
fn build_request(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_encoding() {
        assert_eq!(segment("198.18.0.100:80:tcp"), "198.18.0.100%3A80%3Atcp");
        assert_eq!(
            segment("[2001:db8::1]:80:tcp"),
            "%5B2001%3Adb8%3A%3A1%5D%3A80%3Atcp"
        );
        assert_eq!(segment("a/b c%+é"), "a%2Fb%20c%25%2B%C3%A9");
        assert_eq!(segment("Az09-._~"), "Az09-._~");
        assert_eq!(
            api_path(&["vips", "2001:db8::1", "backends"]),
            "/v1/vips/2001%3Adb8%3A%3A1/backends"
        );
        assert_eq!(api_path(&[]), "/v1");
    }

    #[test]
    fn exit_codes() {
        let api = |status| {
            ClientError::Api(ApiError {
                status,
                code: "x".into(),
                message: "y".into(),
            })
            .exit_code()
        };
        assert_eq!(
            [api(400), api(404), api(409), api(413), api(500), api(503)],
            [2, 3, 4, 2, 1, 5]
        );
        // lbd's engine ended mid-change: the change may be applied, as
        // when lbd does not answer it (8), not a failure that changed
        // nothing (1).
        let maybe_applied = ClientError::Api(ApiError {
            status: 500,
            code: "maybe_applied".into(),
            message: "it may be applied".into(),
        });
        assert_eq!(maybe_applied.exit_code(), 8);
        let path = PathBuf::from("/run/lbd/lbd.sock");
        assert_eq!(
            ClientError::NotRunning { path: path.clone() }.exit_code(),
            5
        );
        // A permission or a path that is no socket does not mend by
        // waiting: not 5 ("try again later") but 2, as a path no socket
        // can have.
        assert_eq!(
            ClientError::PermissionDenied { path: path.clone() }.exit_code(),
            2
        );
        assert_eq!(
            ClientError::NotASocket {
                path: path.clone(),
                what: "a regular file"
            }
            .exit_code(),
            2
        );
        let timeout = ClientError::Timeout {
            path: path.clone(),
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.exit_code(), 5);
        let change = ClientError::ChangeTimeout {
            path,
            after: Duration::from_secs(1),
        };
        assert_eq!(change.exit_code(), 8);
        assert_eq!(ClientError::Protocol("x".into()).exit_code(), 1);
    }

    #[test]
    fn bad_paths_are_refused_before_connecting() {
        let r = build_request(Method::Get, "v1/status", &[], None);
        assert!(matches!(r, Err(ClientError::Protocol(_))));
        let r = build_request(Method::Get, "/v1/a b", &[], None);
        assert!(matches!(r, Err(ClientError::Protocol(_))));
    }

    #[tokio::test]
    async fn a_change_lbd_does_not_answer_in_time_may_have_been_applied() {
        let dir = std::env::temp_dir().join(format!("lbd-api-client-{}-slow", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lbd.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // Reads requests and never answers (a busy engine).
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let client = Client::new(&path, Duration::from_millis(200));
        let change = client
            .call(Method::Post, "/v1/reload", &[], None)
            .await
            .unwrap_err();
        assert_eq!(change.exit_code(), 8, "{change}");
        assert!(
            change.to_string().contains("may have been applied"),
            "{change}"
        );
        let look = client
            .call(Method::Get, "/v1/status", &[], None)
            .await
            .unwrap_err();
        assert_eq!(look.exit_code(), 5, "{look}");
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// lbd closing the connection after reading a change, before its
    /// answer (an lbd that crashed mid-change): it may be applied (exit 8,
    /// saying so), not a protocol error (exit 1); a look (or a dry run)
    /// cut off the same way changed nothing: lbd is unavailable for now
    /// (exit 5, try again later), not a garbled answer (exit 1).
    #[tokio::test]
    async fn a_change_whose_connection_drops_before_the_answer_may_have_been_applied() {
        use tokio::io::AsyncReadExt as _;
        let dir = std::env::temp_dir().join(format!("lbd-api-client-{}-cut", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lbd.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // Reads each request's head, then closes without answering.
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                drop(stream);
            }
        });
        let client = Client::new(&path, Duration::from_secs(5));
        let change = client
            .call(Method::Post, "/v1/reload", &[], None)
            .await
            .unwrap_err();
        assert!(
            matches!(&change, ClientError::ChangeCutOff { .. }),
            "{change:?}"
        );
        assert_eq!(change.exit_code(), 8, "{change}");
        assert!(
            change.to_string().contains("may have been applied"),
            "{change}"
        );
        let dry_run = client
            .call(Method::Post, "/v1/reload", &[("dry_run", "true")], None)
            .await
            .unwrap_err();
        assert!(
            matches!(&dry_run, ClientError::Dropped { .. }),
            "{dry_run:?}"
        );
        assert_eq!(dry_run.exit_code(), 5, "{dry_run}");
        let look = client
            .call(Method::Get, "/v1/status", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(&look, ClientError::Dropped { .. }), "{look:?}");
        assert_eq!(look.exit_code(), 5, "{look}");
        assert!(
            look.to_string().contains("without answering")
                && look.to_string().contains("nothing was done"),
            "{look}"
        );
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn not_running_when_no_socket() {
        let path = std::env::temp_dir().join(format!(
            "lbd-api-client-{}-missing/lbd.sock",
            std::process::id()
        ));
        let client = Client::new(&path, Duration::from_secs(1));
        let err = client
            .call(Method::Get, "/v1/status", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::NotRunning { .. }), "{err:?}");
        assert_eq!(err.exit_code(), ClientError::EXIT_UNAVAILABLE);
        // lbd may run on another socket: the message says how to point
        // lbctl (and `systemctl reload`) at it.
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("no admin socket at {}:", path.display()))
                && message
                    .contains("lbd is not running, or its config's admin_socket is elsewhere")
                && message.contains("--socket")
                && message.contains("LBCTL_SOCKET")
                && message.contains("Environment=LBCTL_SOCKET="),
            "{message}"
        );

        // A socket file nobody listens on (lbd killed or crashed): not
        // "no admin socket".
        let dir = std::env::temp_dir().join(format!("lbd-api-client-{}-stale", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lbd.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let err = Client::new(&path, Duration::from_secs(1))
            .call(Method::Get, "/v1/status", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::NotListening { .. }), "{err:?}");
        assert_eq!(err.exit_code(), ClientError::EXIT_UNAVAILABLE);
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "{} exists but nothing listens on it",
                path.display()
            )) && message.contains("killed or crashed")
                && !message.contains("no admin socket"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_path_that_is_not_a_socket_is_named_so() {
        let dir = std::env::temp_dir().join(format!(
            "lbd-api-client-{}-not-a-socket",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a-directory")).unwrap();
        std::fs::write(dir.join("a-file"), "precious").unwrap();
        for (name, what) in [("a-file", "a regular file"), ("a-directory", "a directory")] {
            let path = dir.join(name);
            let err = Client::new(&path, Duration::from_secs(1))
                .call(Method::Get, "/v1/status", &[], None)
                .await
                .unwrap_err();
            assert!(matches!(&err, ClientError::NotASocket { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains(&format!(
                    "{} is not a socket (it is {what})",
                    path.display()
                )) && !message.contains("nothing listens"),
                "{message}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("a-file")).unwrap(),
            "precious"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A listener on a socket in a fresh directory named after `tag`,
    /// with the smallest backlog, full with connections nobody accepted:
    /// the next non-blocking connect gets EAGAIN (returned). Gives the
    /// directory, the socket's path, the listener and the queued
    /// connections.
    async fn full_backlog(
        tag: &str,
    ) -> (
        std::path::PathBuf,
        std::path::PathBuf,
        std::os::unix::net::UnixListener,
        Vec<UnixStream>,
        io::Error,
    ) {
        let dir = std::env::temp_dir().join(format!("lbd-api-client-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lbd.sock");
        let socket =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&socket2::SockAddr::unix(&path).unwrap())
            .unwrap();
        socket.listen(0).unwrap();
        let mut queued = Vec::new();
        let full = loop {
            match UnixStream::connect(&path).await {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break e,
                Err(e) => panic!("connecting: {e}"),
            }
            assert!(queued.len() < 16, "the backlog does not fill");
        };
        (dir, path, socket.into(), queued, full)
    }

    #[tokio::test]
    async fn a_full_listen_backlog_is_waited_for() {
        let (dir, path, listener, queued, full) = full_backlog("backlog").await;
        // Given up at once, that is lbd "busy"...
        let client = Client::new(&path, Duration::from_secs(5));
        assert!(matches!(
            client.connect_error(full),
            ClientError::Busy { .. }
        ));
        // ...but a backlog that frees within the wait is waited for: the
        // server accepts the queued connections a moment later.
        let waiting = queued.len();
        let accepting = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            (0..=waiting)
                .map(|_| listener.accept().unwrap().0)
                .collect::<Vec<_>>()
        });
        let stream = retry_while_backlog_full(BACKLOG_WAIT, || UnixStream::connect(&path))
            .await
            .expect("connected once the backlog had room");
        drop((stream, queued));
        drop(accepting.join().unwrap());
        // Nobody ever accepting: the wait ends with WouldBlock.
        let started = std::time::Instant::now();
        let attempts = std::cell::Cell::new(0);
        let err = retry_while_backlog_full(Duration::from_millis(300), || {
            attempts.set(attempts.get() + 1);
            std::future::ready(Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(attempts.get() > 1, "tried again");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A change whose `--api-timeout` ends while lbctl still waits for
    /// room in a full listen backlog was never sent: lbd is busy (exit 5),
    /// not "it may have been applied" (exit 8).
    #[tokio::test]
    async fn a_change_never_sent_for_a_full_backlog_is_busy_not_maybe_applied() {
        // Nobody ever accepts: every further connect gets EAGAIN.
        let (dir, path, listener, queued, _) = full_backlog("unsent").await;
        // Shorter than the backlog wait: the timeout ends the connect.
        let timeout = Duration::from_millis(300);
        assert!(timeout < BACKLOG_WAIT);
        let client = Client::new(&path, timeout);
        let started = std::time::Instant::now();
        let change = client
            .call(Method::Post, "/v1/reload", &[], None)
            .await
            .unwrap_err();
        assert!(started.elapsed() < BACKLOG_WAIT, "{:?}", started.elapsed());
        assert!(matches!(&change, ClientError::Busy { .. }), "{change:?}");
        assert_eq!(
            change.exit_code(),
            ClientError::EXIT_UNAVAILABLE,
            "{change}"
        );
        assert!(
            !change.to_string().contains("may have been applied"),
            "{change}"
        );
        drop((queued, listener));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The stage an exchange reached decides its timeout's outcome.
    #[test]
    fn a_timeout_says_maybe_applied_only_for_a_change_sent() {
        let client = Client::new("/run/lbd/lbd.sock", Duration::from_secs(1));
        for stage in [
            Stage::Connecting,
            Stage::BacklogFull,
            Stage::Connected,
            Stage::Sent,
        ] {
            assert_eq!(Stage::from_u8(stage as u8), stage);
            let change = client.timed_out(stage, true);
            let look = client.timed_out(stage, false);
            assert_eq!(look.exit_code(), 5, "{stage:?}: {look}");
            let expected = if stage == Stage::Sent { 8 } else { 5 };
            assert_eq!(change.exit_code(), expected, "{stage:?}: {change}");
        }
        assert!(matches!(
            client.timed_out(Stage::BacklogFull, true),
            ClientError::Busy { .. }
        ));
    }

    /// A socket path no socket can have (longer than `sun_path`, or
    /// under something that is no directory) is bad usage, exit 2, naming
    /// the path: not "lbd not reachable, try again later" (exit 5), which
    /// a script would retry for ever.
    #[tokio::test]
    async fn a_socket_path_no_socket_can_have_is_bad_usage() {
        let long = format!("/{}", "a".repeat(200));
        let err = Client::new(&long, Duration::from_secs(1))
            .status()
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), ClientError::EXIT_USAGE, "{err:?}");
        assert!(
            err.to_string().contains(&long) && err.to_string().contains("--socket"),
            "{err}"
        );
        let dir =
            std::env::temp_dir().join(format!("lbd-api-client-{}-not-a-dir", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        let under_a_file = dir.join("file").join("lbd.sock");
        let err = Client::new(&under_a_file, Duration::from_secs(1))
            .status()
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), ClientError::EXIT_USAGE, "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A 404 for an endpoint lbd does not have (a newer lbctl against an
    /// older lbd) is a request lbd refused, exit 2, whether it says so
    /// with its own code or (an lbd from before that code) only in its
    /// message; exit 3 stays for a VIP, backend, rule or limit that does
    /// not exist.
    #[test]
    fn no_such_endpoint_is_not_no_such_object() {
        let api = |code: &str, message: &str| {
            ClientError::Api(ApiError {
                status: 404,
                code: code.into(),
                message: message.into(),
            })
            .exit_code()
        };
        assert_eq!(api("no_endpoint", "no such endpoint: GET /v1/node"), 2);
        assert_eq!(api("not_found", "no such endpoint: GET /v1/node"), 2);
        assert_eq!(api("not_found", "no VIP 198.18.0.100:80/tcp"), 3);
        assert_eq!(api("not_found", "no backend 198.18.0.11 in VIP x"), 3);
    }

    #[test]
    fn permission_denied_names_the_admin_group() {
        let message = ClientError::PermissionDenied {
            path: "/run/lbd/lbd.sock".into(),
        }
        .to_string();
        assert!(
            message.contains("root") && message.contains("admin_socket_group"),
            "{message}"
        );
    }
}
