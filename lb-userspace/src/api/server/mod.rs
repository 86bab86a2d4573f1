//! The admin API's server side, run by lbd: owns the socket file (never takes
//! over a live one, replaces a stale one, sets its mode and group, removes it on
//! the way out), accepts connections, turns HTTP requests into [`Request`]s for
//! the daemon's [`Handler`] and its [`Response`]s back into HTTP, and shuts down
//! gracefully. Reading and checking a request is `request`'s.
//!
//! Everything a client can send is answered, never panicked on: a path outside
//! `/v1/` (404), a method the path does not take (405, with `Allow`), a body too large (413), not JSON (400) or
//! not labelled as JSON (415), bad percent-encoding (400), a body that does not
//! arrive (408). That matters in lbd: its panic hook aborts the process on any
//! panic, this server's tasks included (see `bin/lbd.rs`), and systemd starts
//! it again; a client then sees its connection closed without an answer.

use std::{
    convert::Infallible,
    ffi::OsString,
    future::Future,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
    StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{UnixListener, UnixStream},
    sync::{mpsc, watch, Semaphore},
};
use tracing::{debug, error, info, warn};

mod socket_dir;
mod socket_file;
#[cfg(test)]
mod tests;

use socket_file::{
    bind_unlistened, check_existing, install, remove_if_stale, remove_socket_file, start_listening,
    SocketFile,
};

pub use super::request::parse_request;
use super::request::{parse_path, read_request};
use crate::{
    slots::{self, Slot, SlotHandle, Slots},
    sync::log_limit::LogLimit,
};

use super::{
    code, route, Handler, Method, Request, Response, MAX_REQUEST_HEADERS, MAX_REQUEST_HEAD_BYTES,
};

/// How long shutdown waits for in-flight requests before abandoning them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the check for a live server waits for a connection to be accepted.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client may take to send a request's whole head, from the
/// connection's start or the end of the previous answer (also how long an
/// idle connection stays open). One deadline for the head, not reset by
/// each byte: hyper's `header_read_timeout` starts it when it begins
/// reading a head and clears it only once the head is complete.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's body.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once. Past it, a new connection takes the slot of
/// one still waiting for its request — of the user (`SO_PEERCRED` uid)
/// holding the most slots, the one waiting longest —, or, when all are
/// busy, of that user's longest-held one after its answer, so slow or
/// busy clients cannot keep the owner out; when none can give way,
/// newcomers wait in the listen backlog. See `slots`.
const MAX_CONNECTIONS: usize = 64;
/// Handler tasks in flight at once. A handler runs to its end even when its
/// client hangs up (a change must not stop half-way), so the connection
/// slots do not bound them; past this a request is answered 503 at once
/// rather than queued behind a busy engine.
pub(crate) const MAX_HANDLERS_IN_FLIGHT: usize = 64;
/// A request refused for [`MAX_HANDLERS_IN_FLIGHT`] is warned at most this
/// often (the others are counted): clients can repeat it at will.
const BUSY_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A failed accept is warned at most this often (the others are counted):
/// it repeats at every backoff for as long as its cause lasts.
const ACCEPT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Who may connect (the socket file's mode and group), and how long a client
/// may take to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Permission bits of the socket file (connecting needs write permission).
    /// Default `0o600`: root only.
    pub mode: u32,
    /// Group (gid) to give the socket file, so with mode `0o660` its members may
    /// use `lbctl` without root. Default: none (root's group stays).
    pub group: Option<u32>,
    /// Time to send a request's head, from the connection's start or the end
    /// of the previous answer; past it the connection is closed. Default
    /// [`HEADER_READ_TIMEOUT`].
    pub header_timeout: Duration,
    /// Time to send a request's body; past it the answer is a 408. Default
    /// [`BODY_READ_TIMEOUT`].
    pub body_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            mode: 0o600,
            group: None,
            header_timeout: HEADER_READ_TIMEOUT,
            body_timeout: BODY_READ_TIMEOUT,
        }
    }
}

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A server already answers on the socket: a second lbd must not steal it.
    #[error("another lbd is already listening on {}", path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; it is left alone.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Someone other than root (or lbd's own user) may change a directory
    /// on the socket's path: they could replace the live socket with their
    /// own, or have lbd's chmod and chown of it follow a link they put in
    /// its place. See `socket_dir`.
    #[error("{why}: the admin socket {} needs a directory only root may change (mode 0755 or tighter, owned by root); choose another admin_socket or fix the directory", path.display())]
    UnsafeDirectory {
        /// The socket path.
        path: PathBuf,
        /// Which directory, and why.
        why: String,
    },
    /// The path has no file name (`/`, `..`).
    #[error("{}: not a usable socket path", path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
    },
    /// It could not be told whether a server answers on the socket.
    #[error("cannot tell whether another lbd is listening on {}: {source}", path.display())]
    Probe {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Creating or preparing the socket file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// The places for handler tasks ([`MAX_HANDLERS_IN_FLIGHT`]), shared by
/// every connection: a place is held by the handler's task, not by its
/// connection, so a client that hangs up does not give it back early.
#[derive(Debug)]
struct HandlerPlaces {
    permits: Arc<Semaphore>,
    /// Refusals are warned at most every [`BUSY_LOG_INTERVAL`].
    refusals: Mutex<LogLimit>,
}

impl HandlerPlaces {
    /// [`MAX_HANDLERS_IN_FLIGHT`] places, all free.
    fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_HANDLERS_IN_FLIGHT)),
            refusals: Mutex::new(LogLimit::new(BUSY_LOG_INTERVAL)),
        }
    }

    /// Logs a request refused for want of a place, unless one was lately.
    fn log_refusal(&self, method: Method, path: &[String]) {
        let path = format!("/v1/{}", path.join("/"));
        let allowed = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        match allowed {
            Some(suppressed) => warn!(
                method = method.as_str(),
                %path,
                suppressed,
                in_flight = MAX_HANDLERS_IN_FLIGHT,
                "admin API request refused (503): every handler place is taken, by requests the engine has not answered yet"
            ),
            None => debug!(method = method.as_str(), %path, "admin API request refused: busy"),
        }
    }
}

/// The daemon's handler and the places its tasks take, shared by every
/// connection.
struct Handling<H> {
    handler: Arc<H>,
    places: HandlerPlaces,
}

/// Builds the [`ServerError::Io`] for `what` on `path`.
fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ServerError + 'a {
    move |source| ServerError::Io {
        what: format!("{what} {}", path.display()),
        source,
    }
}

/// The admin API, bound and not yet serving: lets the daemon report a socket
/// problem before it says it is ready. Dropping it removes the socket file.
#[derive(Debug)]
pub(crate) struct Server {
    listener: UnixListener,
    socket: SocketFile,
    options: ServeOptions,
}

impl Server {
    /// Takes the socket at `path`: refuses if someone other than root (or
    /// lbd's user) may change a directory on its path (see `socket_dir`),
    /// if a live server answers there or if something other than a socket
    /// is there, replaces a stale socket, and creates the new one with
    /// `options`' mode and group.
    ///
    /// The socket is bound under a temporary name beside `path`, given its mode
    /// and group, then renamed over `path`: it never appears at `path` with the
    /// process umask's looser mode.
    pub(crate) async fn bind(path: &Path, options: &ServeOptions) -> Result<Self, ServerError> {
        let Some(name) = path.file_name() else {
            return Err(ServerError::InvalidPath {
                path: path.to_owned(),
            });
        };
        // Before anything is looked at or bound there.
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if let Some(why) = socket_dir::unsafe_socket_dir(dir) {
            return Err(ServerError::UnsafeDirectory {
                path: path.to_owned(),
                why,
            });
        }
        if check_existing(path).await? {
            info!(path = %path.display(), "replacing the stale admin socket of an earlier lbd");
        }
        let mut temporary = OsString::from(".");
        temporary.push(name);
        temporary.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(temporary);
        // A leftover of a process that had our pid: nobody listens on it.
        remove_socket_file(&temporary).await?;

        // Bound but not listening until its mode and group are set: a connect
        // under the umask's looser mode meanwhile is refused, not queued.
        let unlistened = bind_unlistened(&temporary).map_err(io_error("binding", &temporary))?;
        let installed = match install(&temporary, path, options).await {
            Ok(socket) => start_listening(unlistened)
                .map(|listener| (listener, socket))
                .map_err(io_error("listening on", path)),
            Err(e) => Err(e),
        };
        match installed {
            Ok((listener, socket)) => {
                info!(
                    path = %path.display(),
                    mode = format_args!("{:o}", options.mode),
                    group = ?options.group,
                    "admin API listening"
                );
                Ok(Self {
                    listener,
                    socket,
                    options: *options,
                })
            }
            Err(e) => {
                // Gone already if it was moved to `path` (whose `SocketFile`
                // removed it) before listening failed.
                match tokio::fs::remove_file(&temporary).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        let path = temporary.display();
                        warn!(%path, error = %e, "removing the temporary admin socket");
                    }
                }
                Err(e)
            }
        }
    }

    /// Where the socket is.
    pub(crate) fn path(&self) -> &Path {
        &self.socket.path
    }

    /// Serves `handler` until `shutdown` completes; then stops accepting, removes
    /// the socket file, and waits up to 5 s for requests in flight to finish.
    pub(crate) async fn run<H: Handler>(
        self,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let Self {
            listener,
            socket,
            options,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection and handler task holds a sender: `recv` returning
        // `None` means all of them are done.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        // Keyed by the peer's uid (`None` if the kernel does not say).
        let slots = Slots::<Option<u32>>::new(MAX_CONNECTIONS, slots::GRACE, slots::WRITE_GRACE);
        let handling = Arc::new(Handling {
            handler,
            places: HandlerPlaces::new(),
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .max_headers(MAX_REQUEST_HEADERS)
            .max_header_size(MAX_REQUEST_HEAD_BYTES);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut accept_failures = LogLimit::new(ACCEPT_FAILURE_LOG_INTERVAL);

        loop {
            // Past the cap, and with no connection to give way, newcomers
            // wait in the backlog.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = slots.ready() => {}
            }
            let stream = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        log_accept_failure(&mut accept_failures, &e, Instant::now());
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        }
                    }
                },
            };
            let peer = stream.peer_cred().ok().map(|cred| cred.uid());
            let slot = tokio::select! {
                biased;
                () = &mut shutdown => break,
                slot = slots.admit(peer) => slot,
            };
            tokio::spawn(serve_connection(
                stream,
                builder.clone(),
                Arc::clone(&handling),
                stop_rx.clone(),
                alive_tx.clone(),
                slot,
                options.body_timeout,
            ));
        }

        // Remove the file while the listener still holds its inode (so the
        // identity check cannot match a newcomer's), then stop listening.
        drop(socket);
        drop(listener);
        stop_tx.send_replace(true);
        drop(alive_tx);
        info!("admin API shutting down");
        if tokio::time::timeout(DRAIN_TIMEOUT, alive_rx.recv())
            .await
            .is_err()
        {
            warn!(
                timeout = ?DRAIN_TIMEOUT,
                "admin requests still in flight after the shutdown timeout; abandoning them"
            );
        }
        info!("admin API stopped");
    }
}

/// Removes the admin socket at `path` if nobody listens on it (left by an
/// lbd that was killed or crashed), for `lbd --cleanup`: `true` if it was
/// removed. A live socket, or anything that is not a socket, is left
/// alone (an error saying which).
pub(crate) async fn remove_stale_socket(path: &Path) -> Result<bool, ServerError> {
    remove_if_stale(path).await
}

/// Binds the admin socket at `path` and serves `handler` on it until `shutdown`
/// completes: [`Server::bind`] then [`Server::run`], for a caller that needs
/// nothing in between.
pub async fn serve<H: Handler>(
    path: &Path,
    options: ServeOptions,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(path, &options)
        .await?
        .run(handler, shutdown)
        .await;
    Ok(())
}

/// Serves one connection until the client closes it, the server stops, or
/// its slot is taken for a newcomer (at once while it waits for a request,
/// after its answer while it is busy).
async fn serve_connection<H: Handler>(
    stream: UnixStream,
    builder: http1::Builder,
    handling: Arc<Handling<H>>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    mut slot: Slot<Option<u32>>,
    body_timeout: Duration,
) {
    let handler_alive = alive.clone();
    let handle = slot.handle();
    let service = service_fn(move |request| {
        let handling = Arc::clone(&handling);
        let alive = handler_alive.clone();
        let slot = handle.clone();
        async move { Ok::<_, Infallible>(respond(request, handling, alive, body_timeout, slot).await) }
    });
    // Watched: an answer being written is not cut for a newcomer.
    let stream = slot.watch(stream);
    let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = slot.evicted() => {
            debug!("admin API connection closed to make room for a newer one");
            Ok(())
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "admin API connection ended with an error");
    }
    drop(alive);
}

/// Completes when the server stops, or when its task is gone (the sender dropped).
async fn stopped(mut stop: watch::Receiver<bool>) {
    // Either way the answer is the same: stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Answers one HTTP request, and logs it. The connection is busy (never
/// cut for a newcomer) from the moment the whole request is in until the
/// answer is ready; told meanwhile to make room, it closes after that
/// answer (`Connection: close`).
async fn respond<H: Handler>(
    request: hyper::Request<Incoming>,
    handling: Arc<Handling<H>>,
    alive: mpsc::Sender<()>,
    body_timeout: Duration,
    slot: SlotHandle<Option<u32>>,
) -> hyper::Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Whether this answer is the connection's last: it was told to make
    // room for a newcomer.
    let mut last = false;
    let answer = match read_request(request, body_timeout).await {
        Ok(request) => match slot.try_busy() {
            Some(busy) => {
                let answer = call_handler(&handling, request, alive).await;
                last = busy.finish();
                answer
            }
            // Being closed for a newcomer: the request is not handled.
            None => {
                last = true;
                Response::error(
                    503,
                    code::INTERNAL,
                    "too many connections; this one was closed to make room",
                )
            }
        },
        Err(answer) => answer,
    };
    let mut response = encode(answer);
    if last {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Ok(allow) = HeaderValue::from_str(&allow(&path)) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed = ?started.elapsed(),
        "admin API request"
    );
    response
}

/// The `Allow` header of a 405 for `path` (as sent): the methods the route
/// table gives that path, or every method of the API for a path it does not
/// have (a 405 a handler gave of its own accord).
fn allow(path: &str) -> String {
    let allowed = parse_path(path)
        .map(|segments| {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            route::allowed_methods(&segments)
        })
        .unwrap_or_default();
    if allowed.is_empty() {
        route::allow_header(&Method::ALL)
    } else {
        route::allow_header(&allowed)
    }
}

/// Runs the handler in a task of its own: it finishes even if the client hangs
/// up (a change must not stop half-way). The task holds one of the places
/// until it ends; with none free the request is answered 503 at once, not
/// queued: hung-up clients retrying against a slow engine would otherwise
/// pile up tasks and stale work without bound. A panic in it becomes a 500 rather than a dropped connection only where
/// panics unwind (this module's tests): in lbd, whose panic hook aborts the
/// process before any unwinding (see `bin/lbd.rs`), the `JoinError` branch
/// below never runs, and the panic ends lbd (systemd starts it again).
async fn call_handler<H: Handler>(
    handling: &Handling<H>,
    request: Request,
    alive: mpsc::Sender<()>,
) -> Response {
    let places = &handling.places;
    let Ok(place) = Arc::clone(&places.permits).try_acquire_owned() else {
        places.log_refusal(request.method, &request.path);
        return Response::error(
            503,
            code::BUSY,
            format!(
                "lbd is busy: {MAX_HANDLERS_IN_FLIGHT} requests in flight (the engine has not answered them yet); try again shortly"
            ),
        );
    };
    let handler = Arc::clone(&handling.handler);
    let task = tokio::spawn(async move {
        let _alive = alive;
        let _place = place;
        handler.handle(request).await
    });
    match task.await {
        Ok(response) => response,
        Err(e) => {
            error!(error = %e, "admin API handler failed");
            Response::error(
                500,
                code::INTERNAL,
                "the request failed inside lbd; see its log",
            )
        }
    }
}

/// The HTTP response for `answer`: JSON body (none for 204 and 304), and a 500
/// instead of a status that is not a valid final one.
fn encode(answer: Response) -> hyper::Response<Full<Bytes>> {
    let (status, body) = match StatusCode::from_u16(answer.status) {
        Ok(status) if !status.is_informational() => (status, answer.body),
        _ => {
            error!(
                status = answer.status,
                "admin API handler answered with an invalid HTTP status"
            );
            let internal = Response::error(500, code::INTERNAL, "invalid response status");
            (StatusCode::INTERNAL_SERVER_ERROR, internal.body)
        }
    };
    let bytes = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Bytes::new()
    } else {
        let mut text = body.to_string();
        text.push('\n');
        Bytes::from(text)
    };
    let has_body = !bytes.is_empty();
    let mut response = hyper::Response::new(Full::new(bytes));
    *response.status_mut() = status;
    if has_body {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// Logs a failed accept (`error`, at `now`) unless one was logged lately
/// (`limit`), with how many were left out since.
fn log_accept_failure(limit: &mut LogLimit, error: &io::Error, now: Instant) {
    match limit.allow(now) {
        Some(suppressed) => warn!(%error, suppressed, "accepting an admin API connection failed"),
        None => debug!(%error, "accepting an admin API connection failed"),
    }
}

/// The accept loop's log limit, tested here beside it (the server's other
/// tests live in `tests.rs`).
#[cfg(test)]
mod accept_failure_tests {
    use super::*;

    /// A failing accept repeats at every backoff while its cause lasts
    /// (out of descriptors): one warning per interval, naming how many
    /// were left out, not one per backoff.
    #[test]
    fn a_failing_accept_is_warned_once_per_interval() {
        let mut limit = LogLimit::new(ACCEPT_FAILURE_LOG_INTERVAL);
        let error = io::Error::from_raw_os_error(libc::EMFILE);
        let start = Instant::now();
        let logs = crate::test_logs::logs_of(|| {
            for n in 0..10 {
                log_accept_failure(&mut limit, &error, start + Duration::from_millis(100 * n));
            }
            log_accept_failure(&mut limit, &error, start + ACCEPT_FAILURE_LOG_INTERVAL);
        });
        let warnings: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("accepting an admin API connection"))
            .filter(|l| l.contains("WARN"))
            .collect();
        assert_eq!(warnings.len(), 2, "{logs}");
        assert!(warnings[0].contains("suppressed=0"), "{logs}");
        assert!(warnings[1].contains("suppressed=9"), "{logs}");
    }
}
