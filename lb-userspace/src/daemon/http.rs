//! The plain-HTTP endpoints for supervisors and Prometheus: `/metrics`
//! (OpenMetrics text when the scraper asks for it, as Prometheus does, the
//! classic text format otherwise; rendered by the engine on each scrape), `/healthz`
//! (the process answers) and `/readyz` (the data plane is attached and
//! filled). Loopback by default; read-only: nothing here changes state.
//! Bounded, so that no client can take the file descriptors health checks
//! and the admin API need: 64 connections at once (a newcomer takes the
//! slot of one that has sent no request, see `slots`), 5 s for a request's
//! head, 30 s per connection.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming, server::conn::http1, service::service_fn, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, info, warn};

use crate::slots::{self, Slot, Slots};

/// A scrape on its way to the engine, with where the text goes.
pub(crate) type Scrape = oneshot::Sender<String>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections served at once: each costs lbd a file descriptor, which
/// health checks and the admin API need too. Past it, a new connection
/// takes the slot of one that has sent no request (see `slots`), or waits
/// in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Time for a request's head, from the connection's start or the end of
/// the previous answer: an idle connection is closed after it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the engine may take to render a scrape.
const RENDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lives, however busy.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves until the task is aborted.
pub async fn serve(
    address: SocketAddr,
    scrapes: mpsc::Sender<Scrape>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("metrics listener on {address}"))?;
    info!(%address, "metrics on http://{address}/metrics");
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT);
    Ok(tokio::spawn(async move {
        let slots = Slots::new(MAX_CONNECTIONS, slots::GRACE);
        loop {
            // Past the cap, connections wait in the kernel's backlog.
            slots.ready().await;
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accepting a metrics connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let slot = slots.admit(peer.ip()).await;
            tokio::spawn(serve_connection(
                stream,
                peer,
                slot,
                builder.clone(),
                scrapes.clone(),
                ready.clone(),
            ));
        }
    }))
}

/// Serves one connection until the client closes it, it idles past
/// [`IDLE_TIMEOUT`], it has lived [`CONNECTION_TIMEOUT`], or its slot is
/// taken for a newcomer.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut slot: Slot<IpAddr>,
    builder: http1::Builder,
    scrapes: mpsc::Sender<Scrape>,
    ready: Arc<AtomicBool>,
) {
    let handle = slot.handle();
    let service = service_fn(move |request: Request<Incoming>| {
        let scrapes = scrapes.clone();
        let ready = ready.clone();
        let busy = handle.try_busy();
        async move {
            let Some(_busy) = busy else {
                return Ok::<_, Infallible>(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "too many connections\n".into(),
                ));
            };
            Ok(answer(&request, &scrapes, &ready).await)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(%peer, %error, "metrics connection ended with an error"),
            Err(_) => debug!(%peer, "metrics connection open too long; closed"),
        },
        () = slot.evicted() => debug!(%peer, "metrics connection closed to make room"),
    }
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn answer(
    request: &Request<Incoming>,
    scrapes: &mpsc::Sender<Scrape>,
    ready: &AtomicBool,
) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => {
            let (reply, rendered) = oneshot::channel();
            if scrapes.send(reply).await.is_err() {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n".into(),
                );
            }
            let openmetrics = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            match tokio::time::timeout(RENDER_TIMEOUT, rendered).await {
                Ok(Ok(body)) if openmetrics => text(StatusCode::OK, OPENMETRICS, body),
                Ok(Ok(body)) => text(
                    StatusCode::OK,
                    PROMETHEUS_TEXT,
                    crate::metrics::to_prometheus_text(&body),
                ),
                _ => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no answer from lbd\n".into(),
                ),
            }
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".into(),
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
