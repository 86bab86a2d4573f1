//! The HTTP check: one HTTP/1.1 GET on a fresh connection, judged by its
//! status, and with `expect_body` by a text its body's first 16 KiB must
//! contain; without one, only the little of the body is read that lets a
//! small answer end cleanly.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    time::Duration,
};

use http_body_util::{BodyExt, Empty};
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request,
};
use hyper_util::rt::TokioIo;
use tracing::trace;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    connect::{connect, Close},
    tls, within, FailureReason, ProbeTarget,
};

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod tests;

/// The most response body an HTTP probe reads before it closes the
/// connection: enough to let a small answer finish cleanly, or to find an
/// `expect_body` text near a page's start, never so much that a big page
/// slows the checks down.
pub(super) const MAX_DRAIN: usize = 16 * 1024;
/// How long a body may take to arrive after the status has decided the
/// check (the connection is then reset, which ends it either way).
const DRAIN_GRACE: Duration = Duration::from_millis(50);

/// The `User-Agent` of HTTP probes, so backends can tell them apart from
/// client traffic in their logs.
const USER_AGENT: &str = "lbd-health-check";

/// The default `Host` header: the IP, bracketed for IPv6 as in a URI,
/// with the port unless it is HTTP's 80 (RFC 9110 7.2: a Host without a
/// port means the scheme's default, and a server's virtual hosts may be
/// told apart by port).
pub(super) fn default_host(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    match address.port() {
        80 => ip,
        port => format!("{ip}:{port}"),
    }
}

/// HTTP check: one GET on a fresh connection (with `tls`, over a TLS
/// handshake made within the deadline), success iff the status is the
/// expected one and, with `expect_body`, the body's first [`MAX_DRAIN`]
/// bytes contain that text.
pub(super) async fn http(
    target: &ProbeTarget,
    path: &str,
    host: &str,
    expect_status: u16,
    expect_body: Option<&str>,
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
    if target.tls {
        let peer = target.address.ip();
        let stream = within(
            deadline,
            tls::handshake(stream, Some(host), peer, tls::Alpn::Http1),
        )
        .await?;
        exchange(stream, request, expect_status, expect_body, deadline).await
    } else {
        exchange(stream, request, expect_status, expect_body, deadline).await
    }
}

/// The GET `request` over `stream` (plain TCP or TLS, one code path) and
/// the verdict on its answer, within `deadline`.
async fn exchange<S>(
    stream: S,
    request: Request<Empty<Bytes>>,
    expect_status: u16,
    expect_body: Option<&str>,
    deadline: tokio::time::Instant,
) -> Result<(), FailureReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    if let (Some(text), true) = (expect_body, got == expect_status) {
        // The body decides too: read within the check's own deadline.
        let search = async {
            drive(
                conn.as_mut(),
                &mut conn_done,
                find_in_body(response.into_body(), text.as_bytes(), MAX_DRAIN),
            )
            .await
            .map_err(|e| hyper_failure(&e))
        };
        return match within(deadline, search).await? {
            true => Ok(()),
            false => Err(FailureReason::HttpBody {
                expected: text.to_owned(),
            }),
        };
    }
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

/// Reads `body` until `text` occurs in the bytes read (true), or the body
/// ends or `limit` bytes were read without it (false): the bytes are
/// searched as one, so a text split between frames (writes, chunks) is
/// found, and none past `limit` is looked at.
async fn find_in_body(mut body: Incoming, text: &[u8], limit: usize) -> hyper::Result<bool> {
    let mut read: Vec<u8> = Vec::new();
    while read.len() < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        // Only where the new bytes could complete the text.
        let from = read.len().saturating_sub(text.len().saturating_sub(1));
        let take = data.len().min(limit - read.len());
        read.extend_from_slice(data.get(..take).unwrap_or(data));
        if contains(read.get(from..).unwrap_or(&read), text) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `text` occurs in `bytes` (an empty text always does).
fn contains(bytes: &[u8], text: &[u8]) -> bool {
    text.is_empty() || bytes.windows(text.len()).any(|w| w == text)
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
