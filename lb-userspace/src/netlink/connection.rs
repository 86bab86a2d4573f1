//! One routing netlink connection, bounded and reopened: every request
//! lbd makes goes through [`Netlink::request`], so a lost reply times out
//! and a connection whose task ended is replaced on the same runtime.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures_util::TryStreamExt as _;
use rtnetlink::Handle;
use tracing::warn;

use crate::sync::log_limit::LogLimit;

use super::NetlinkError;

/// The longest one netlink request may wait for its answer: the kernel
/// answers in well under a millisecond (longer while something holds RTNL,
/// but not seconds), whereas a reply netlink-proto loses (a
/// message it cannot decode, or one dropped in a receive buffer overrun)
/// never ends the request, and the main loop and VRRP await them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Reopenings of the connection are warned at most this often (the others
/// are counted): a cause that lasts would reopen it at every request.
const REOPEN_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a connection's task runs: the connection, boxed so the opener of a
/// test can give another.
type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Opens a connection: the future that drives it and the handle requests
/// go through. A function so tests can give one that never answers.
type Opener = fn() -> std::io::Result<(ConnectionFuture, Handle)>;

/// A routing netlink connection, driven by a task on the tokio runtime it
/// was opened on. Every request is bounded by [`REQUEST_TIMEOUT`]; a
/// connection whose task ended (netlink-proto ends it on any receive error
/// but ENOBUFS) is reopened, on the same runtime, so lbd does not go blind
/// to its interface while it reports ready. Clones share the connection.
#[derive(Clone)]
pub(crate) struct Netlink {
    shared: Arc<Shared>,
}

/// What the clones of a [`Netlink`] share.
struct Shared {
    /// The runtime the first connection's task was spawned on: reopened
    /// connections are driven there too (the VRRP thread's for its own).
    runtime: tokio::runtime::Handle,
    /// How connections are opened.
    open: Opener,
    /// The longest a request waits for its answer.
    timeout: Duration,
    /// The connection requests go to now.
    current: Mutex<Connection>,
    /// Limits the warnings of reopenings.
    reopen_log: Mutex<LogLimit>,
}

/// One opened connection.
#[derive(Clone)]
struct Connection {
    /// Requests go through it.
    handle: Handle,
    /// Set when the connection's future ended or was dropped (the task
    /// aborted), before the streams of its pending requests end: a reply
    /// stream that ends then may have been cut short, not finished.
    ended: Arc<AtomicBool>,
    /// The task driving it.
    task: tokio::task::AbortHandle,
    /// Which opening this is: a connection seen ended by several requests
    /// is replaced once.
    generation: u64,
}

impl Connection {
    /// Opens a connection with `open` and spawns its task on `runtime`.
    fn open(
        runtime: &tokio::runtime::Handle,
        open: Opener,
        generation: u64,
    ) -> std::io::Result<Self> {
        let (connection, handle) = open()?;
        let ended = Arc::new(AtomicBool::new(false));
        let task = runtime
            .spawn(Watched {
                connection,
                ended: Arc::clone(&ended),
            })
            .abort_handle();
        Ok(Self {
            handle,
            ended,
            task,
            generation,
        })
    }

    /// Whether its task has ended: requests through it fail, or are cut
    /// short.
    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire) || self.task.is_finished()
    }
}

/// A connection's future that says when it has ended, before the
/// connection (with the senders of its pending requests' replies) is
/// dropped: see [`Connection::ended`].
struct Watched {
    /// The connection's own future.
    connection: ConnectionFuture,
    /// Set when it ends.
    ended: Arc<AtomicBool>,
}

impl Future for Watched {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let done = self.connection.as_mut().poll(cx);
        if done.is_ready() {
            self.ended.store(true, Ordering::Release);
        }
        done
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Before the fields: the reply streams end after this is seen.
        self.ended.store(true, Ordering::Release);
    }
}

/// The whole answer of a dump request `what` (`stream`), its error
/// naming the request: what every listing [`Netlink::request`] makes does
/// with its stream.
pub(super) async fn dump<T>(
    stream: impl futures_util::Stream<Item = Result<T, rtnetlink::Error>>,
    what: &str,
) -> Result<Vec<T>, NetlinkError> {
    stream
        .try_collect::<Vec<_>>()
        .await
        .map_err(|source| NetlinkError::Request {
            what: what.to_owned(),
            source,
        })
}

/// rtnetlink's connection, as a [`ConnectionFuture`].
fn open_rtnetlink() -> std::io::Result<(ConnectionFuture, Handle)> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    Ok((Box::pin(connection), handle))
}

impl NetlinkError {
    /// Whether the connection was closed when the request was made (its
    /// task had ended).
    fn is_closed_connection(&self) -> bool {
        matches!(
            self,
            Self::Request {
                source: rtnetlink::Error::RequestFailed,
                ..
            }
        )
    }
}

impl Netlink {
    /// Opens the connection (must run inside a tokio runtime, which drives
    /// it and any it is replaced with).
    pub(crate) fn connect() -> Result<Self, NetlinkError> {
        Self::connect_with(open_rtnetlink, REQUEST_TIMEOUT)
    }

    /// [`Self::connect`], with connections from `open` and requests
    /// bounded by `timeout`.
    fn connect_with(open: Opener, timeout: Duration) -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            NetlinkError::Connect(std::io::Error::other(format!(
                "no tokio runtime to drive it: {e}"
            )))
        })?;
        let first = Connection::open(&runtime, open, 0).map_err(NetlinkError::Connect)?;
        Ok(Self {
            shared: Arc::new(Shared {
                runtime,
                open,
                timeout,
                current: Mutex::new(first),
                reopen_log: Mutex::new(LogLimit::new(REOPEN_LOG_INTERVAL)),
            }),
        })
    }

    /// The connection to make a request on: the current one, reopened
    /// first if its task has ended.
    fn connection(&self, what: &str) -> Result<Connection, NetlinkError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if current.ended() {
            return self.reopen(&current, what, "its task had ended");
        }
        Ok(current)
    }

    /// Replaces `stale` (unless another request already has) with a new
    /// connection, warned about (rate-limited) with `cause`. A failure to
    /// open one is an error of the request `what`.
    fn reopen(
        &self,
        stale: &Connection,
        what: &str,
        cause: &str,
    ) -> Result<Connection, NetlinkError> {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.generation != stale.generation {
            return Ok(current.clone());
        }
        let generation = stale.generation.wrapping_add(1);
        let fresh = Connection::open(&self.shared.runtime, self.shared.open, generation).map_err(
            |source| NetlinkError::Reopen {
                what: what.to_owned(),
                source,
            },
        )?;
        current.task.abort();
        *current = fresh.clone();
        drop(current);
        let allowed = self
            .shared
            .reopen_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        if let Some(suppressed) = allowed {
            warn!(
                cause,
                request = what,
                suppressed,
                "reopened the routing netlink connection"
            );
        }
        Ok(fresh)
    }

    /// Makes the request `what` with `call`, given the connection's
    /// handle: bounded by the timeout (expiry is an error naming `what`),
    /// and, when the connection turns out closed (it failed the request,
    /// or ended while the answer came, which may then be cut short: a dump
    /// just stops), asked once more on a new connection within the same
    /// time.
    pub(super) async fn request<T, F, Fut>(&self, what: &str, call: F) -> Result<T, NetlinkError>
    where
        F: Fn(Handle) -> Fut,
        Fut: Future<Output = Result<T, NetlinkError>>,
    {
        let deadline = tokio::time::Instant::now() + self.shared.timeout;
        let mut connection = self.connection(what)?;
        let mut asked_again = false;
        loop {
            let Ok(result) =
                tokio::time::timeout_at(deadline, call(connection.handle.clone())).await
            else {
                return Err(NetlinkError::Timeout {
                    what: what.to_owned(),
                    after: self.shared.timeout,
                });
            };
            let closed = connection.ended()
                || result
                    .as_ref()
                    .is_err_and(NetlinkError::is_closed_connection);
            if !closed {
                return result;
            }
            if asked_again {
                return Err(NetlinkError::Closed {
                    what: what.to_owned(),
                });
            }
            connection = self.reopen(&connection, what, "it closed under a request")?;
            asked_again = true;
        }
    }

    /// The task driving the connection in use, for tests to end it.
    #[cfg(test)]
    pub(super) fn connection_task(&self) -> tokio::task::AbortHandle {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .task
            .clone()
    }

    /// A connection that never answers, with requests bounded by
    /// `timeout`: its task holds it but never polls it.
    #[cfg(test)]
    pub(super) fn stalled(timeout: Duration) -> Result<Self, NetlinkError> {
        fn open_stalled() -> std::io::Result<(ConnectionFuture, Handle)> {
            let (connection, handle, _) = rtnetlink::new_connection()?;
            Ok((
                Box::pin(async move {
                    let _connection = connection;
                    std::future::pending::<()>().await;
                }),
                handle,
            ))
        }
        Self::connect_with(open_stalled, timeout)
    }
}
