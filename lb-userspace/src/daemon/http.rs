//! The plain-HTTP endpoints for supervisors and Prometheus: `/metrics`
//! (OpenMetrics text when the scraper asks for it, as Prometheus does, the
//! classic text format otherwise; rendered by the engine on each scrape), `/healthz`
//! (the process answers) and `/readyz` (the data plane is attached and
//! filled). Loopback by default; read-only: nothing here changes state.

use std::{
    convert::Infallible,
    net::SocketAddr,
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
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tracing::{debug, info};

/// A scrape on its way to the engine, with where the text goes.
pub type Scrape = oneshot::Sender<String>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let scrapes = scrapes.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let scrapes = scrapes.clone();
                    let ready = ready.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &scrapes, &ready).await) }
                });
                let connection = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(error) = tokio::time::timeout(Duration::from_secs(60), connection).await
                {
                    debug!(%peer, %error, "metrics connection timed out");
                }
            });
        }
    }))
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
            match tokio::time::timeout(Duration::from_secs(10), rendered).await {
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
