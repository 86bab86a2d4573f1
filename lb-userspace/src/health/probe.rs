//! The network side of a health check: one probe of one backend, TCP
//! connect, HTTP/1.1 GET or PostgreSQL StartupMessage, bounded as a whole
//! by a timeout, and the classification of what went wrong. No state and
//! no retries: the [`machine`](super::machine) decides what a result
//! means.

use std::{
    fmt,
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request,
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tracing::trace;

use super::{
    pgsql,
    tunnel_socket::{connect_through, TunnelPath},
};

/// The most response body an HTTP probe reads before it closes the
/// connection: enough to let a small answer finish cleanly, never so much
/// that a big page slows the checks down.
const MAX_DRAIN: usize = 16 * 1024;
/// How long a body may take to arrive after the status has decided the
/// check (the connection is then reset, which ends it either way).
const DRAIN_GRACE: Duration = Duration::from_millis(50);

/// The `User-Agent` of HTTP probes, so backends can tell them apart from
/// client traffic in their logs.
const USER_AGENT: &str = "lbd-health-check";

/// What a probe does to decide whether a backend is alive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    /// The backend accepts a TCP connection: cheap, and enough for any TCP
    /// service.
    Tcp,
    /// The backend answers an HTTP/1.1 GET with the expected status: also
    /// catches an application that accepts connections but cannot serve.
    Http {
        /// Request path in origin form, e.g. "/healthz" (a missing leading
        /// '/' is added; empty means "/").
        path: String,
        /// `Host` header; `None` sends the target's IP (bracketed for IPv6).
        host: Option<String>,
        /// The only status that counts as healthy, e.g. 200.
        expect_status: u16,
    },
    /// The backend, a PostgreSQL server or a PgBouncer, answers a
    /// StartupMessage with an authentication request (or, trusting the
    /// check, starts the session): also catches a server that accepts
    /// connections but refuses sessions (starting up, shutting down, too
    /// many clients, an unknown database).
    Pgsql {
        /// The role named in the StartupMessage.
        user: String,
        /// The database named (None: the server's default, the user's
        /// name).
        database: Option<String>,
    },
}

/// What to probe: where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ProbeTarget {
    /// The backend's address and check port (through a tunnel: the VIP's
    /// address, which the backend holds, and the check port).
    pub address: SocketAddr,
    /// The kind of check.
    pub kind: CheckKind,
    /// Checks that follow the data path: through the backend's tunnel
    /// (None: straight to `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<TunnelPath>,
}

/// The result of one probe, as the state machine and the status output
/// need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Healthy, or why not.
    pub outcome: Outcome,
    /// How long the probe took, connect included (about the timeout when it
    /// timed out).
    pub latency: Duration,
}

/// Whether one probe found the backend healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The backend passed.
    Success,
    /// The backend answered that it is full: it refuses new sessions for
    /// want of resources (PostgreSQL's SQLSTATE class 53, PgBouncer's
    /// client limits) yet serves the ones it has, so the machine keeps its
    /// established flows rather than cut them (see [`Health::Full`]). The
    /// reason is the server's answer.
    ///
    /// [`Health::Full`]: super::Health::Full
    Full(FailureReason),
    /// The backend failed, and why.
    Failure(FailureReason),
}

impl Outcome {
    /// Whether the probe passed, for tests that need no reason.
    #[cfg(test)]
    pub(crate) fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

impl Outcome {
    /// The label a probe that did not pass counts under in the failures by
    /// reason (status, metrics): its [`FailureReason::label`], or `full`
    /// for a refusal for capacity. None for a success.
    pub(crate) fn failure_label(&self) -> Option<&'static str> {
        match self {
            Outcome::Success => None,
            Outcome::Full(_) => Some("full"),
            Outcome::Failure(reason) => Some(reason.label()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Full(reason) => write!(f, "full (refuses new sessions): {reason}"),
            Outcome::Failure(reason) => reason.fmt(f),
        }
    }
}

/// Why a probe failed; the text is short enough for a log line or a
/// transition reason, and [`FailureReason::label`] keys metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Nothing decisive within the timeout (or the kernel gave up on the
    /// connect): the backend or the path to it is overloaded or gone.
    #[error("timeout")]
    Timeout,
    /// The backend host answered the connect with a reset: nothing listens.
    #[error("connection refused")]
    Refused,
    /// No route to the backend's host or network.
    #[error("unreachable")]
    Unreachable,
    /// Any other socket error, as the OS words it.
    #[error("I/O error: {0}")]
    Io(String),
    /// This node could not run the check (no port, descriptor, buffer or
    /// memory to spare): says nothing of the backend, so its state stays.
    #[error("not run here: {0}")]
    Local(String),
    /// The HTTP answer came with another status than expected.
    #[error("HTTP status {got}, expected {expected}")]
    HttpStatus {
        /// Status received.
        got: u16,
        /// Status expected.
        expected: u16,
    },
    /// The HTTP exchange failed: bad request settings, a malformed answer,
    /// or the connection closed before the answer.
    #[error("HTTP error: {0}")]
    Http(String),
    /// The PostgreSQL server (or PgBouncer) answered the StartupMessage
    /// with an error, in its own words.
    #[error("PostgreSQL {severity} {code}: {message}")]
    PgsqlError {
        /// `FATAL`, `ERROR`, ... ("?" when not given).
        severity: String,
        /// The SQLSTATE code, e.g. 57P03 ("?" when not given).
        code: String,
        /// The server's message ("?" when not given).
        message: String,
    },
    /// The PostgreSQL exchange failed: an answer that is neither an
    /// authentication request nor an error, malformed, cut short or longer
    /// than a check reads, or the connection closed or reset.
    #[error("PostgreSQL protocol: {0}")]
    Pgsql(String),
    /// A check through the tunnel was not run: the path that wraps it as
    /// clients' packets are wrapped (`tc_hc_encap` on egress) is not in
    /// place, and unwrapped it would be answered by this node or balanced
    /// as a client's flow, passing whatever the backend's state. A
    /// failure, not `Local`: a check that cannot follow the data path
    /// must not keep a backend up.
    #[error("check path not attached: {0}")]
    PathNotAttached(String),
    /// The check failed while the interface checks leave by was down: the
    /// failure is this node's link, not the backend's, so it moves no
    /// streak (a flap of the balancer's own link must not take every
    /// backend down).
    #[error("not counted, interface {interface} is down: {failure}")]
    InterfaceDown {
        /// The interface.
        interface: String,
        /// How the check failed.
        failure: Box<FailureReason>,
    },
}

impl FailureReason {
    /// A stable snake_case name for metrics labels, which must not change
    /// with the error's wording.
    pub fn label(&self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Refused => "refused",
            FailureReason::Unreachable => "unreachable",
            FailureReason::Io(_) => "io",
            FailureReason::Local(_) => "local",
            FailureReason::HttpStatus { .. } => "http_status",
            FailureReason::Http(_) => "http",
            FailureReason::PgsqlError { .. } => "pgsql_error",
            FailureReason::Pgsql(_) => "pgsql",
            FailureReason::PathNotAttached(_) => "path_not_attached",
            FailureReason::InterfaceDown { .. } => "interface_down",
        }
    }

    /// Whether the failure is this node's (no port or descriptor, its
    /// link down) rather than the backend's: such a failure moves no
    /// streak, and the backend's health stays as it is.
    pub(crate) fn is_local(&self) -> bool {
        matches!(
            self,
            FailureReason::Local(_) | FailureReason::InterfaceDown { .. }
        )
    }

    /// Whether the server refused the check's session for want of
    /// resources only (see [`pgsql::refuses_for_capacity`]): it still
    /// serves its established sessions, so the probe's outcome is
    /// [`Outcome::Full`], not a failure.
    pub(crate) fn refuses_for_capacity(&self) -> bool {
        match self {
            FailureReason::PgsqlError { code, message, .. } => {
                pgsql::refuses_for_capacity(code, message)
            }
            _ => false,
        }
    }
}

/// Probes `target` once; the check, connect included, is bounded by
/// `timeout` up to its verdict (an HTTP body after the status gets only
/// a short grace). Never fails: every problem is a [`FailureReason`].
pub(crate) async fn probe(target: &ProbeTarget, timeout: Duration) -> ProbeResult {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let checked = match &target.kind {
        CheckKind::Tcp => within(deadline, tcp(target)).await,
        CheckKind::Http {
            path,
            host,
            expect_status,
        } => {
            let host = match host {
                Some(host) => host.clone(),
                None => default_host(target.address),
            };
            http(target, path, &host, *expect_status, deadline).await
        }
        CheckKind::Pgsql { user, database } => {
            postgres(target, user, database.as_deref(), deadline).await
        }
    };
    let outcome = match checked {
        Ok(()) => Outcome::Success,
        Err(reason) if reason.refuses_for_capacity() => Outcome::Full(reason),
        Err(reason) => Outcome::Failure(reason),
    };
    let latency = start.elapsed();
    trace!(address = %target.address, %outcome, ?latency, "probe done");
    ProbeResult { outcome, latency }
}

/// The result of a probe of `target` while the path of checks through
/// the tunnel is not attached (`unattached`: why; None: it is): such a
/// check is failed with that reason rather than sent, since unwrapped it
/// would not follow the data path (see [`FailureReason::PathNotAttached`]).
/// None: probe as usual (a direct check, or the path is there).
pub(crate) fn unattached_result(
    target: &ProbeTarget,
    unattached: Option<&str>,
) -> Option<ProbeResult> {
    let reason = unattached.filter(|_| target.through.is_some())?;
    Some(ProbeResult {
        outcome: Outcome::Failure(FailureReason::PathNotAttached(reason.to_owned())),
        latency: Duration::ZERO,
    })
}

/// `fut` unless `deadline` passes first (then a `Timeout`).
async fn within<T>(
    deadline: tokio::time::Instant,
    fut: impl std::future::Future<Output = Result<T, FailureReason>>,
) -> Result<T, FailureReason> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .unwrap_or(Err(FailureReason::Timeout))
}

/// TCP check: the connect is the whole test; the socket is closed at once.
async fn tcp(target: &ProbeTarget) -> Result<(), FailureReason> {
    connect(target, Close::Reset).await.map(drop)
}

/// How a check's connection ends when it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// With a reset, as HAProxy closes its checks: a check leaves no
    /// TIME_WAIT behind, so thousands of backends checked every few
    /// seconds hold no ports.
    Reset,
    /// The usual way (a FIN once nothing is left unread), for servers that
    /// log a reset as an error (PostgreSQL does, for every check).
    Graceful,
}

/// Connects (through the tunnel when the target says so), with errors
/// classified; `close` says how the connection ends when dropped.
async fn connect(target: &ProbeTarget, close: Close) -> Result<TcpStream, FailureReason> {
    let stream = match &target.through {
        None => TcpStream::connect(target.address).await,
        Some(path) => connect_through(target.address, path).await,
    }
    .map_err(|e| classify(&e))?;
    if close == Close::Reset {
        // A zero linger never blocks the drop (tokio warns of a nonzero
        // one); a socket that takes no linger option still closes, the
        // usual way.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    Ok(stream)
}

/// PostgreSQL check: a StartupMessage as `user` (of `database`) on a
/// fresh connection, judged by the first message back (see
/// [`pgsql::exchange`]); then a graceful close (see [`pgsql::close`]).
/// `deadline` bounds all of it, the close included.
async fn postgres(
    target: &ProbeTarget,
    user: &str,
    database: Option<&str>,
    deadline: tokio::time::Instant,
) -> Result<(), FailureReason> {
    let startup = pgsql::startup_message(user, database)?;
    let mut stream = within(deadline, connect(target, Close::Graceful)).await?;
    // Only a latency nicety: the message is one small write anyway.
    let _ = stream.set_nodelay(true);
    let verdict = within(deadline, pgsql::exchange(&mut stream, &startup)).await;
    // Cut short by the deadline, the drop closes as it can (a reset if
    // the server's answer is left unread).
    let _ = tokio::time::timeout_at(deadline, pgsql::close(&mut stream)).await;
    verdict
}

/// Maps a socket error to a failure reason. A shortage on this node
/// (ports, descriptors, buffers, memory) is `Local`: the check did not
/// run, and says nothing of the backend.
fn classify(e: &io::Error) -> FailureReason {
    let local = matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable | io::ErrorKind::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    if local {
        return FailureReason::Local(e.to_string());
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => FailureReason::Refused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            FailureReason::Unreachable
        }
        io::ErrorKind::TimedOut => FailureReason::Timeout,
        _ => FailureReason::Io(e.to_string()),
    }
}

/// The default `Host` header: the IP, bracketed for IPv6 as in a URI,
/// with the port unless it is HTTP's 80 (RFC 9110 7.2: a Host without a
/// port means the scheme's default, and a server's virtual hosts may be
/// told apart by port).
fn default_host(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    match address.port() {
        80 => ip,
        port => format!("{ip}:{port}"),
    }
}

/// HTTP check: one GET on a fresh connection, success iff the status is the
/// expected one.
async fn http(
    target: &ProbeTarget,
    path: &str,
    host: &str,
    expect_status: u16,
    deadline: tokio::time::Instant,
) -> Result<(), FailureReason> {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::<Bytes>::new())
        .map_err(|e| FailureReason::Http(format!("invalid request: {e}")))?;

    let stream = within(deadline, connect(target, Close::Reset)).await?;
    // Only a latency nicety: the request is one small write anyway.
    let _ = stream.set_nodelay(true);
    let handshake = async {
        hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| hyper_failure(&e))
    };
    let (mut sender, conn) = within(deadline, handshake).await?;
    // The connection is driven here rather than in a spawned task, so that
    // the timeout dropping this future closes the socket too.
    let mut conn = std::pin::pin!(conn);
    let mut conn_done = false;

    let exchange = async {
        drive(conn.as_mut(), &mut conn_done, sender.send_request(request))
            .await
            .map_err(|e| hyper_failure(&e))
    };
    let response = within(deadline, exchange).await?;
    let got = response.status().as_u16();
    // Best effort: a small body that is already on its way is read to its
    // end; a big or slow one is cut short. The status is all that counts,
    // and it has come: a body that trickles is no timeout.
    let _ = tokio::time::timeout(
        DRAIN_GRACE,
        drive(
            conn.as_mut(),
            &mut conn_done,
            drain(response.into_body(), MAX_DRAIN),
        ),
    )
    .await;

    if got == expect_status {
        Ok(())
    } else {
        Err(FailureReason::HttpStatus {
            got,
            expected: expect_status,
        })
    }
}

/// Runs `fut` while also driving the connection `conn`, which does the
/// actual I/O. Once the connection has ended (`conn_done`), `fut` still
/// completes: hyper hands it the result or the error.
async fn drive<C, F>(mut conn: Pin<&mut C>, conn_done: &mut bool, fut: F) -> F::Output
where
    C: Future<Output = hyper::Result<()>>,
    F: Future,
{
    let mut fut = std::pin::pin!(fut);
    if !*conn_done {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            ended = conn.as_mut() => {
                *conn_done = true;
                if let Err(e) = ended {
                    trace!(error = %e, "health check connection ended");
                }
            }
        }
    }
    fut.await
}

/// Reads at most about `limit` bytes of `body`, stopping at its end.
async fn drain(mut body: Incoming, limit: usize) -> hyper::Result<()> {
    let mut read = 0;
    while read < limit {
        match body.frame().await {
            Some(frame) => read += frame?.data_ref().map_or(0, Bytes::len),
            None => break,
        }
    }
    Ok(())
}

/// A hyper error as a failure reason, with its cause chain (hyper's own
/// text alone is often just "connection error").
fn hyper_failure(e: &hyper::Error) -> FailureReason {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    FailureReason::Http(text)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, SocketAddrV6};

    use tokio::net::TcpListener;

    use super::super::testing::{serve, Behavior};
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(500);

    /// While the check path is not attached, a check through the tunnel
    /// fails with the reason, unsent (sent unwrapped, it would reach the
    /// VIP on this node or be balanced as a client's flow and pass); a
    /// direct check, or one whose path is attached, probes as usual.
    #[test]
    fn a_check_through_an_unattached_path_fails_with_the_reason() {
        let vip: SocketAddr = "198.18.0.100:80".parse().unwrap();
        let through = ProbeTarget {
            through: Some(TunnelPath {
                mark: 7,
                backend: "198.19.2.11".parse().unwrap(),
                source: None,
            }),
            ..http_target(vip, "/", None)
        };
        let why = "tc_hc_encap not on the egress of eth0";
        let result = unattached_result(&through, Some(why)).expect("not probed");
        let Outcome::Failure(reason) = &result.outcome else {
            panic!("{result:?}");
        };
        assert_eq!(reason.label(), "path_not_attached");
        assert_eq!(
            result.outcome.to_string(),
            "check path not attached: tc_hc_encap not on the egress of eth0"
        );
        // Attached again: probed.
        assert_eq!(unattached_result(&through, None), None);
        // A direct check does not use the path.
        assert_eq!(
            unattached_result(&http_target(vip, "/", None), Some(why)),
            None
        );
    }

    fn http_target(address: SocketAddr, path: &str, host: Option<&str>) -> ProbeTarget {
        ProbeTarget {
            through: None,
            address,
            kind: CheckKind::Http {
                path: path.to_owned(),
                host: host.map(str::to_owned),
                expect_status: 200,
            },
        }
    }

    #[tokio::test]
    async fn tcp_success() {
        // The kernel completes the handshake from the backlog: no accept.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = ProbeTarget {
            through: None,
            address: listener.local_addr().unwrap(),
            kind: CheckKind::Tcp,
        };
        let result = probe(&target, TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Success);
        assert!(result.latency < TIMEOUT);
    }

    #[tokio::test]
    async fn tcp_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let target = ProbeTarget {
            through: None,
            address,
            kind: CheckKind::Tcp,
        };
        let result = probe(&target, TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Failure(FailureReason::Refused));
    }

    #[tokio::test]
    async fn http_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let result = probe(&http_target(address, "/", None), TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Failure(FailureReason::Refused));
    }

    #[tokio::test]
    async fn http_success_sends_path_and_host() {
        let mut server = serve(Behavior::Status).await;
        let target = http_target(server.addr, "/healthz?full=1", None);
        let result = probe(&target, TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Success);

        let request = server.requests.recv().await.unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(
            request.starts_with("GET /healthz?full=1 HTTP/1.1\r\n"),
            "{request}"
        );
        // Not port 80: the Host names the port too.
        let host = format!("\r\nhost: 127.0.0.1:{}\r\n", server.addr.port());
        assert!(lower.contains(&host), "{request}");
        assert!(lower.contains("\r\nconnection: close\r\n"), "{request}");
        assert!(
            lower.contains("\r\nuser-agent: lbd-health-check\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn http_custom_host_and_relative_path() {
        let mut server = serve(Behavior::Status).await;
        let target = http_target(server.addr, "status", Some("api.example"));
        assert_eq!(probe(&target, TIMEOUT).await.outcome, Outcome::Success);
        let request = server.requests.recv().await.unwrap();
        assert!(request.starts_with("GET /status HTTP/1.1\r\n"), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("\r\nhost: api.example\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn http_503_is_status_failure() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let result = probe(&http_target(server.addr, "/", None), TIMEOUT).await;
        assert_eq!(
            result.outcome,
            Outcome::Failure(FailureReason::HttpStatus {
                got: 503,
                expected: 200
            })
        );
    }

    #[tokio::test]
    async fn http_expecting_other_status() {
        let server = serve(Behavior::Status).await;
        server.set_healthy(false);
        let target = ProbeTarget {
            through: None,
            address: server.addr,
            kind: CheckKind::Http {
                path: "/".into(),
                host: None,
                expect_status: 503,
            },
        };
        assert_eq!(probe(&target, TIMEOUT).await.outcome, Outcome::Success);
    }

    #[tokio::test]
    async fn http_silent_server_times_out() {
        let server = serve(Behavior::Silent).await;
        let timeout = Duration::from_millis(200);
        let result = probe(&http_target(server.addr, "/", None), timeout).await;
        assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
        assert!(result.latency >= timeout, "{:?}", result.latency);
        assert!(result.latency < timeout * 4, "{:?}", result.latency);
    }

    #[tokio::test]
    async fn http_big_body_is_not_read_to_the_end() {
        // 64 MiB announced, 1 MiB sent, then the server stalls: reading the
        // body to its end would time out.
        let server = serve(Behavior::Huge).await;
        let result = probe(&http_target(server.addr, "/", None), TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Success);
    }

    #[tokio::test]
    async fn http_status_decides_though_the_body_stalls() {
        // The status has come; a body that never ends is no timeout.
        let server = serve(Behavior::Stalled).await;
        let result = probe(&http_target(server.addr, "/", None), TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Success);
        assert!(result.latency < TIMEOUT, "{:?}", result.latency);
    }

    #[tokio::test]
    async fn http_garbage_answer_is_http_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        });
        let result = probe(&http_target(address, "/", None), TIMEOUT).await;
        match result.outcome {
            Outcome::Failure(FailureReason::Http(text)) => assert!(!text.is_empty()),
            other => panic!("expected an HTTP failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn http_invalid_host_is_http_failure() {
        let server = serve(Behavior::Status).await;
        let target = http_target(server.addr, "/", Some("bad\nhost"));
        let result = probe(&target, TIMEOUT).await;
        assert!(
            matches!(result.outcome, Outcome::Failure(FailureReason::Http(ref t)) if t.starts_with("invalid request")),
            "{result:?}"
        );
        assert_eq!(server.connections(), 0);
    }

    #[test]
    fn default_host_brackets_ipv6_and_names_a_port_other_than_80() {
        assert_eq!(default_host("10.1.2.3:80".parse().unwrap()), "10.1.2.3");
        assert_eq!(
            default_host("10.1.2.3:8080".parse().unwrap()),
            "10.1.2.3:8080"
        );
        let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 3));
        assert_eq!(default_host(v6), "[::1]");
        let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6432, 0, 3));
        assert_eq!(default_host(v6), "[::1]:6432");
    }

    #[test]
    fn a_shortage_on_this_node_is_not_the_backends_failure() {
        for error in [
            io::Error::from(io::ErrorKind::AddrInUse),
            io::Error::from(io::ErrorKind::AddrNotAvailable),
            io::Error::from_raw_os_error(libc::EMFILE),
            io::Error::from_raw_os_error(libc::ENOBUFS),
        ] {
            let reason = classify(&error);
            assert!(
                matches!(reason, FailureReason::Local(_)),
                "{error}: {reason:?}"
            );
            assert_eq!(reason.label(), "local");
        }
    }

    #[test]
    fn classify_io_errors() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            classify(&e(io::ErrorKind::ConnectionRefused)),
            FailureReason::Refused
        );
        assert_eq!(
            classify(&e(io::ErrorKind::HostUnreachable)),
            FailureReason::Unreachable
        );
        assert_eq!(
            classify(&e(io::ErrorKind::NetworkUnreachable)),
            FailureReason::Unreachable
        );
        assert_eq!(
            classify(&e(io::ErrorKind::TimedOut)),
            FailureReason::Timeout
        );
        assert_eq!(classify(&e(io::ErrorKind::BrokenPipe)).label(), "io");
    }

    #[test]
    fn labels_and_display() {
        let cases = [
            (FailureReason::Timeout, "timeout", "timeout"),
            (FailureReason::Refused, "refused", "connection refused"),
            (FailureReason::Unreachable, "unreachable", "unreachable"),
            (
                FailureReason::Io("broken pipe".into()),
                "io",
                "I/O error: broken pipe",
            ),
            (
                FailureReason::HttpStatus {
                    got: 503,
                    expected: 200,
                },
                "http_status",
                "HTTP status 503, expected 200",
            ),
            (FailureReason::Http("bad".into()), "http", "HTTP error: bad"),
            (
                FailureReason::Pgsql("bad".into()),
                "pgsql",
                "PostgreSQL protocol: bad",
            ),
            (
                FailureReason::InterfaceDown {
                    interface: "eth0".into(),
                    failure: Box::new(FailureReason::Timeout),
                },
                "interface_down",
                "not counted, interface eth0 is down: timeout",
            ),
        ];
        for (reason, label, text) in cases {
            assert_eq!(reason.label(), label);
            assert_eq!(reason.to_string(), text);
        }
        assert_eq!(Outcome::Success.to_string(), "success");
        assert!(Outcome::Success.is_success());
        assert!(!Outcome::Failure(FailureReason::Refused).is_success());
    }
}
