//! The plain-HTTP endpoints for supervisors and Prometheus: `/metrics`
//! (OpenMetrics text when the scraper asks for it, as Prometheus does, the
//! classic text format otherwise), `/healthz` (the process answers) and
//! `/readyz` (the data plane is attached and filled). Loopback by default;
//! read-only: nothing here changes state.
//!
//! The engine renders the metrics, in its own loop, and renders are
//! shared ([`Renders`]): a scrape that arrives while a render runs gets
//! that render's text, and past [`RENDERS_PER_WINDOW`] renders within
//! [`RENDER_WINDOW`], scrapes get the newest render's text (at most that
//! window old; when the newest is older, a render failed, and the next
//! scrape renders anew) until the window allows another. A render asked of
//! the engine is kept even when its scrape's client has hung up. So a
//! flood of scrapes costs the engine at most four renders a second, while
//! a scraper that asks now and then always gets a fresh one. A change
//! through the admin API or a reload (counted in `changes`) makes the next
//! scrape render anew: a scrape after a change sees it.
//!
//! Bounded, so that no client can take the file descriptors health checks
//! and the admin API need: 64 connections at once (a newcomer takes the
//! slot of one that has sent no request, or of a busy one after its answer
//! has gone out, see `slots`), 5 s for a request's head, 30 s per
//! connection.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
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
    net::TcpStream,
    sync::{mpsc, oneshot, Mutex},
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::{
    slots::{self, Slot, Slots},
    sync::log_limit::LogLimit,
};

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
/// A failed accept is warned at most this often (the others are counted):
/// it repeats at every backoff for as long as its cause lasts (out of
/// descriptors, say).
const ACCEPT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Renders the engine does for scrapes within [`RENDER_WINDOW`]; past
/// them, scrapes share the newest render.
pub(crate) const RENDERS_PER_WINDOW: usize = 4;
/// See [`RENDERS_PER_WINDOW`]: also the oldest a shared render can be.
pub(crate) const RENDER_WINDOW: Duration = Duration::from_secs(1);

/// Serves until the task is aborted. `changes` counts the engine's
/// changes (API changes, reloads): a render made before the last one is
/// not shared.
pub async fn serve(
    address: SocketAddr,
    scrapes: mpsc::Sender<Scrape>,
    changes: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // An IPv6 address still tentative right after boot is waited for.
    let listener = crate::sync::bind::bind_listener(address, "metrics")
        .await
        .with_context(|| format!("metrics listener on {address}"))?;
    info!(%address, "metrics on http://{address}/metrics");
    let mut builder = http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT);
    let renders = Arc::new(Renders::new(
        scrapes,
        Budget::new(RENDERS_PER_WINDOW, RENDER_WINDOW),
        changes,
    ));
    Ok(tokio::spawn(async move {
        let slots = Slots::new(MAX_CONNECTIONS, slots::GRACE, slots::WRITE_GRACE);
        let mut accept_failures = LogLimit::new(ACCEPT_FAILURE_LOG_INTERVAL);
        loop {
            // Past the cap, connections wait in the kernel's backlog.
            slots.ready().await;
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    log_accept_failure(&mut accept_failures, &error, std::time::Instant::now());
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
                Arc::clone(&renders),
                ready.clone(),
            ));
        }
    }))
}

/// Logs a failed accept (`error`, at `now`) unless one was logged lately
/// (`limit`), with how many were left out since.
fn log_accept_failure(limit: &mut LogLimit, error: &std::io::Error, now: std::time::Instant) {
    match limit.allow(now) {
        Some(suppressed) => warn!(%error, suppressed, "accepting a metrics connection failed"),
        None => debug!(%error, "accepting a metrics connection failed"),
    }
}

/// Serves one connection until the client closes it, it idles past
/// [`IDLE_TIMEOUT`], it has lived [`CONNECTION_TIMEOUT`], or its slot is
/// taken for a newcomer.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut slot: Slot<IpAddr>,
    builder: http1::Builder,
    renders: Arc<Renders>,
    ready: Arc<AtomicBool>,
) {
    let handle = slot.handle();
    let service = service_fn(move |request: Request<Incoming>| {
        let renders = Arc::clone(&renders);
        let ready = ready.clone();
        let busy = handle.try_busy();
        async move {
            let Some(busy) = busy else {
                return Ok::<_, Infallible>(closing(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "too many connections\n",
                )));
            };
            let response = answer(&request, &renders, &ready).await;
            // Told to make room for a newcomer while answering: this
            // answer is the connection's last.
            Ok(if busy.finish() {
                closing(response)
            } else {
                response
            })
        }
    });
    // Watched: an answer being written (a large body to a slow scraper)
    // is not cut for a newcomer.
    let stream = slot.watch(stream);
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

/// `response` with `Connection: close`: hyper closes the connection once
/// it is sent, and reads no further request on it.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    response
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// The answer to a method other than GET or HEAD: a 405 with the `Allow`
/// header RFC 9110 asks of one, so a client learns what the listener takes.
fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static("GET, HEAD"),
    );
    response
}

async fn answer(
    request: &Request<Incoming>,
    renders: &Renders,
    ready: &AtomicBool,
) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        return method_not_allowed();
    }
    match request.uri().path() {
        "/metrics" => {
            let openmetrics = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let arrived = Instant::now();
            match tokio::time::timeout(RENDER_TIMEOUT, renders.get(arrived)).await {
                Ok(Ok(rendered)) if openmetrics => {
                    text(StatusCode::OK, OPENMETRICS, rendered.openmetrics)
                }
                Ok(Ok(rendered)) => text(StatusCode::OK, PROMETHEUS_TEXT, rendered.classic),
                Ok(Err(NoRender::ShuttingDown)) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n",
                ),
                Ok(Err(NoRender::NoAnswer)) | Err(_) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no answer from lbd\n",
                ),
            }
        }
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /readyz\n",
        ),
    }
}

/// One render of the metrics, in both formats.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    /// OpenMetrics text, as the engine rendered it.
    openmetrics: Bytes,
    /// The classic text format of the same.
    classic: Bytes,
    /// When the engine's text arrived: a scrape that arrived before then
    /// gets it.
    finished: Instant,
    /// The engine's change count when it was asked for: shared only while
    /// there has been no change since.
    generation: u64,
}

/// Why a scrape got no render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoRender {
    /// The engine's loop reads no more scrapes: lbd is stopping.
    ShuttingDown,
    /// The engine dropped the scrape without an answer.
    NoAnswer,
}

/// How many renders scrapes may ask of the engine: at most `renders`
/// within any `window`. Pure: the time is passed in.
#[derive(Debug)]
pub(crate) struct Budget {
    renders: usize,
    window: Duration,
    /// When the renders within the last window started, oldest first.
    started: VecDeque<Instant>,
}

impl Budget {
    /// At most `renders` (at least one) within any `window`.
    pub(crate) fn new(renders: usize, window: Duration) -> Self {
        Self {
            renders: renders.max(1),
            window,
            started: VecDeque::new(),
        }
    }

    /// Whether a render may start at `now`; counted if so.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        while self
            .started
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.started.pop_front();
        }
        if self.started.len() >= self.renders {
            return false;
        }
        self.started.push_back(now);
        true
    }
}

/// The metrics renders scrapes share (see the module doc): one render at
/// a time, its text kept for the scrapes that come while it runs, and
/// for those past the [`Budget`].
#[derive(Debug)]
pub(crate) struct Renders {
    scrapes: mpsc::Sender<Scrape>,
    /// The engine's change count (see [`serve`]).
    changes: Arc<AtomicU64>,
    /// Held while a render runs, by the render's own task (so a scrape
    /// whose client hangs up does not take the render with it): the
    /// scrapes that come meanwhile wait for it, then take its text.
    state: Arc<Mutex<Shared>>,
    /// How long the engine may take to answer a render.
    timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    budget: Budget,
    last: Option<Rendered>,
}

impl Renders {
    /// Renders asked of the engine through `scrapes`, within `budget`,
    /// none shared across a change counted in `changes`.
    pub(crate) fn new(
        scrapes: mpsc::Sender<Scrape>,
        budget: Budget,
        changes: Arc<AtomicU64>,
    ) -> Self {
        Self {
            scrapes,
            changes,
            state: Arc::new(Mutex::new(Shared { budget, last: None })),
            timeout: RENDER_TIMEOUT,
        }
    }

    /// The metrics for a scrape that arrived at `arrived`: a render that
    /// finished since (it ran while the scrape waited), a new one if the
    /// budget allows, else the newest if it is younger than the budget's
    /// window (a new one if not: a render that failed does not leave
    /// scrapes with old text); never one from before a change. A render
    /// once asked of the engine lands in the shared state even when the
    /// scrape that asked for it is gone (its client hung up), so a budget
    /// spent by such scrapes still leaves the newest render fresh.
    pub(crate) async fn get(&self, arrived: Instant) -> Result<Rendered, NoRender> {
        let mut state = Arc::clone(&self.state).lock_owned().await;
        let generation = self.changes.load(Ordering::SeqCst);
        let now = Instant::now();
        let window = state.budget.window;
        let current = state
            .last
            .as_ref()
            .filter(|l| l.generation == generation)
            .cloned();
        if let Some(last) = current.as_ref().filter(|l| l.finished >= arrived) {
            return Ok(last.clone());
        }
        let fresh = current.filter(|l| now.saturating_duration_since(l.finished) < window);
        if !state.budget.take(now) {
            if let Some(last) = fresh {
                return Ok(last);
            }
        }
        let (done, result) = oneshot::channel();
        let scrapes = self.scrapes.clone();
        let timeout = self.timeout;
        tokio::spawn(async move {
            let rendered = tokio::time::timeout(timeout, render(&scrapes, generation))
                .await
                .unwrap_or(Err(NoRender::NoAnswer));
            if let Ok(rendered) = &rendered {
                state.last = Some(rendered.clone());
            }
            // The lock goes before the answer: a scrape that asks next
            // finds this render.
            drop(state);
            // The scrape may be gone: the render is kept all the same.
            let _ = done.send(rendered);
        });
        result.await.unwrap_or(Err(NoRender::NoAnswer))
    }
}

/// One render asked of the engine, made at change count `generation`.
async fn render(scrapes: &mpsc::Sender<Scrape>, generation: u64) -> Result<Rendered, NoRender> {
    let (reply, rendered) = oneshot::channel();
    scrapes
        .send(reply)
        .await
        .map_err(|_| NoRender::ShuttingDown)?;
    let text = rendered.await.map_err(|_| NoRender::NoAnswer)?;
    Ok(Rendered {
        classic: Bytes::from(crate::metrics::to_prometheus_text(&text)),
        openmetrics: Bytes::from(text),
        finished: Instant::now(),
        generation,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A failing accept repeats at every backoff while its cause lasts
    /// (out of descriptors): one warning per interval, naming how many
    /// were left out, not one per backoff.
    #[test]
    fn a_failing_accept_is_warned_once_per_interval() {
        let mut limit = LogLimit::new(ACCEPT_FAILURE_LOG_INTERVAL);
        let error = std::io::Error::from_raw_os_error(libc::EMFILE);
        let start = std::time::Instant::now();
        let logs = crate::test_logs::logs_of(|| {
            for n in 0..10 {
                log_accept_failure(&mut limit, &error, start + Duration::from_millis(100 * n));
            }
            log_accept_failure(&mut limit, &error, start + ACCEPT_FAILURE_LOG_INTERVAL);
        });
        let warnings: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("accepting a metrics connection"))
            .filter(|l| l.contains("WARN"))
            .collect();
        assert_eq!(warnings.len(), 2, "{logs}");
        assert!(warnings[0].contains("suppressed=0"), "{logs}");
        assert!(warnings[1].contains("suppressed=9"), "{logs}");
    }

    #[test]
    fn the_budget_allows_so_many_renders_per_window() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut budget = Budget::new(2, ms(1000));
        assert!(budget.take(t0));
        assert!(budget.take(t0 + ms(10)));
        assert!(!budget.take(t0 + ms(20)));
        assert!(!budget.take(t0 + ms(999)));
        // The first has left the window: one more.
        assert!(budget.take(t0 + ms(1000)));
        assert!(!budget.take(t0 + ms(1005)));
        assert!(budget.take(t0 + ms(1010)));
    }

    /// An engine that answers each scrape with how many it has rendered,
    /// once `go` says so.
    fn engine(
        rendered: Arc<AtomicUsize>,
        go: Arc<tokio::sync::Notify>,
    ) -> (mpsc::Sender<Scrape>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Scrape>(16);
        let task = tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                go.notified().await;
                let n = rendered.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = reply.send(format!(
                    "# TYPE lbd_renders counter\nlbd_renders_total {n}\n# EOF\n"
                ));
            }
        });
        (tx, task)
    }

    #[tokio::test]
    async fn scrapes_that_come_during_a_render_share_it() {
        let rendered = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(tokio::sync::Notify::new());
        let (tx, engine) = engine(Arc::clone(&rendered), Arc::clone(&go));
        // A budget that never runs out: only the sharing of a running
        // render is asked about.
        let renders = Arc::new(Renders::new(
            tx,
            Budget::new(1000, Duration::from_secs(1)),
            Arc::default(),
        ));
        // Ten scrapes arrive before the engine has answered the first.
        let arrived = Instant::now();
        let scrapes: Vec<_> = (0..10)
            .map(|_| {
                let renders = Arc::clone(&renders);
                tokio::spawn(async move { renders.get(arrived).await })
            })
            .collect();
        tokio::task::yield_now().await;
        go.notify_one();
        for scrape in scrapes {
            // Bounded: a scrape left waiting is a failure, not a hang.
            let text = tokio::time::timeout(Duration::from_secs(5), scrape)
                .await
                .expect("the scrape shares the render within 5 s")
                .unwrap()
                .unwrap();
            assert_eq!(
                &text.openmetrics[..],
                b"# TYPE lbd_renders counter\nlbd_renders_total 1\n# EOF\n"
            );
            assert!(!text.classic.ends_with(b"# EOF\n"));
        }
        assert_eq!(
            rendered.load(Ordering::SeqCst),
            1,
            "one render for ten scrapes"
        );
        // A scrape after it: a render of its own.
        go.notify_one();
        let text = tokio::time::timeout(Duration::from_secs(5), renders.get(Instant::now()))
            .await
            .expect("a render within 5 s")
            .unwrap();
        assert!(text.openmetrics.ends_with(b"lbd_renders_total 2\n# EOF\n"));
        drop(renders);
        engine.await.unwrap();
    }

    /// The text of render `n`, as the engine in these tests sends it.
    fn render_text(n: usize) -> String {
        format!("# TYPE lbd_renders counter\nlbd_renders_total {n}\n# EOF\n")
    }

    /// Answers every render asked of it with the next number, from `n`.
    fn answer_from(mut n: usize, mut rx: mpsc::Receiver<Scrape>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(render_text(n));
                n += 1;
            }
        })
    }

    #[tokio::test]
    async fn a_render_whose_scrape_hung_up_still_becomes_the_newest() {
        let window = Duration::from_secs(1);
        let (tx, mut rx) = mpsc::channel::<Scrape>(16);
        let renders = Arc::new(Renders::new(tx, Budget::new(1, window), Arc::default()));
        let first = tokio::spawn({
            let renders = Arc::clone(&renders);
            async move { renders.get(Instant::now()).await }
        });
        rx.recv().await.unwrap().send(render_text(1)).unwrap();
        let text = first.await.unwrap().unwrap();
        assert_eq!(&text.openmetrics[..], render_text(1).as_bytes());
        // Render 1 leaves the window; a scrape asks for render 2 (within
        // the budget) and its client hangs up before the engine answers.
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        let gone = tokio::spawn({
            let renders = Arc::clone(&renders);
            async move { renders.get(Instant::now()).await }
        });
        let reply = rx.recv().await.unwrap();
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        // The engine answers all the same.
        let _ = reply.send(render_text(2));
        let _engine = answer_from(3, rx);
        // The budget is spent by render 2: the next scrape gets it (not
        // render 1, from before the window, nor a render of its own).
        let text = tokio::time::timeout(Duration::from_secs(5), renders.get(Instant::now()))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&text.openmetrics).unwrap(),
            render_text(2),
            "not the render the hung-up scrape asked for"
        );
    }

    #[tokio::test]
    async fn past_the_budget_a_render_older_than_the_window_is_not_served() {
        let window = Duration::from_secs(1);
        let (tx, mut rx) = mpsc::channel::<Scrape>(16);
        let renders = Renders::new(tx, Budget::new(1, window), Arc::default());
        let (text, ()) = tokio::join!(renders.get(Instant::now()), async {
            rx.recv().await.unwrap().send(render_text(1)).unwrap();
        });
        assert_eq!(&text.unwrap().openmetrics[..], render_text(1).as_bytes());
        // After the window, a render within the budget fails (the engine
        // drops it): render 1 stays the newest, now too old to share.
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        let (failed, ()) = tokio::join!(renders.get(Instant::now()), async {
            drop(rx.recv().await.unwrap());
        });
        assert_eq!(failed.unwrap_err(), NoRender::NoAnswer);
        // The budget is spent, yet the next scrape gets a new render.
        let _engine = answer_from(2, rx);
        let text = tokio::time::timeout(Duration::from_secs(5), renders.get(Instant::now()))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert_eq!(&text.openmetrics[..], render_text(2).as_bytes());
    }

    #[tokio::test]
    async fn past_the_budget_scrapes_get_the_newest_render() {
        let rendered = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(tokio::sync::Notify::new());
        let (tx, engine) = engine(Arc::clone(&rendered), Arc::clone(&go));
        let changes = Arc::new(AtomicU64::new(0));
        let renders = Renders::new(
            tx,
            Budget::new(2, Duration::from_secs(3600)),
            Arc::clone(&changes),
        );
        for n in 1..=2 {
            go.notify_one();
            let text = renders.get(Instant::now()).await.unwrap();
            assert!(text
                .openmetrics
                .ends_with(format!("lbd_renders_total {n}\n# EOF\n").as_bytes()));
        }
        // A flood of back-to-back scrapes: no more renders.
        for _ in 0..100 {
            let text = renders.get(Instant::now()).await.unwrap();
            assert!(text.openmetrics.ends_with(b"lbd_renders_total 2\n# EOF\n"));
        }
        assert_eq!(rendered.load(Ordering::SeqCst), 2);
        // A change: the next scrape sees it, budget or not; then it is
        // shared again.
        changes.fetch_add(1, Ordering::SeqCst);
        go.notify_one();
        let text = renders.get(Instant::now()).await.unwrap();
        assert!(text.openmetrics.ends_with(b"lbd_renders_total 3\n# EOF\n"));
        let text = renders.get(Instant::now()).await.unwrap();
        assert!(text.openmetrics.ends_with(b"lbd_renders_total 3\n# EOF\n"));
        assert_eq!(rendered.load(Ordering::SeqCst), 3);
        drop(renders);
        engine.await.unwrap();
    }

    #[test]
    fn a_method_other_than_get_is_a_405_naming_the_allowed_ones() {
        let response = method_not_allowed();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            response
                .headers()
                .get(hyper::header::ALLOW)
                .map(|v| v.as_bytes()),
            Some(&b"GET, HEAD"[..])
        );
    }

    #[tokio::test]
    async fn a_stopped_engine_is_a_refusal() {
        let (tx, rx) = mpsc::channel::<Scrape>(1);
        drop(rx);
        let renders = Renders::new(tx, Budget::new(1, Duration::from_secs(1)), Arc::default());
        assert_eq!(
            renders.get(Instant::now()).await.unwrap_err(),
            NoRender::ShuttingDown
        );
    }
}
