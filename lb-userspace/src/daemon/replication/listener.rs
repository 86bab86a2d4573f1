//! Replication's sync listener, bound at start or, when its address
//! cannot be bound then, in the background until it can be.
//!
//! Why: the sync port is above 1023, so any local user may bind it while
//! lbd is down (a restart, a crash, a boot where that user's process
//! starts first). A bind failure that stopped lbd's start would keep lbd
//! from running at all (no health checks, no VRRP) for as long as the
//! port is held. Now lbd starts: its senders stream to the peers as
//! usual, the failure is logged (rate-limited) and reported by
//! [`Listener::failure`], and the bind is tried again every
//! [`BIND_RETRY`] until it succeeds.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::sync::{self, log_limit::LogLimit, SyncError};

/// How often a listener whose bind failed tries again.
pub(super) const BIND_RETRY: Duration = Duration::from_secs(5);
/// At most one error line this often for a bind that keeps failing.
const BIND_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The sync listener: bound, or being retried in the background.
/// Dropping it stops the retries and closes the listener.
pub(super) struct Listener {
    /// The address bound, or why the last bind failed.
    state: Arc<Mutex<State>>,
    /// The listener bound at start.
    _bound: Option<sync::ListenerHandle>,
    /// The task retrying the bind (it keeps the listener once bound).
    retry: Option<JoinHandle<()>>,
}

/// Whether the listener is bound.
#[derive(Debug, Clone)]
enum State {
    /// At this address (the one configured, its port found if 0).
    Bound(SocketAddr),
    /// Not yet: the address configured and the last error, as the status
    /// tells it.
    Failing(String),
}

impl State {
    /// The failure of a bind of `address` with `error`.
    fn failing(address: SocketAddr, error: &SyncError, retry: Duration) -> Self {
        State::Failing(format!(
            "sync listener on {address} not bound: {error}; retried every {} s",
            retry.as_secs_f32()
        ))
    }
}

impl Listener {
    /// Binds `address` with `bind`; when that fails for a socket error
    /// (the address in use, not there yet), logs it and tries again every
    /// `retry` in the background. Errors of another kind (a bad config)
    /// are returned: trying again would not help.
    pub(super) async fn start<B, F>(
        address: SocketAddr,
        bind: B,
        retry: Duration,
    ) -> Result<Self, SyncError>
    where
        B: Fn() -> F + Send + 'static,
        F: Future<Output = Result<sync::ListenerHandle, SyncError>> + Send + 'static,
    {
        let error = match bind().await {
            Ok(handle) => {
                return Ok(Self {
                    state: Arc::new(Mutex::new(State::Bound(handle.local_addr()))),
                    _bound: Some(handle),
                    retry: None,
                })
            }
            Err(error @ SyncError::Io { .. }) => error,
            Err(error) => return Err(error),
        };
        error!(
            %address,
            %error,
            retry_s = retry.as_secs_f32(),
            "the connection-table sync listener cannot bind its address (another process may hold the port); lbd starts without it, sends to its peers as usual, and retries the bind in the background: until then no peer's flows reach this node"
        );
        let state = Arc::new(Mutex::new(State::failing(address, &error, retry)));
        let task = tokio::spawn(retry_bind(address, bind, retry, Arc::clone(&state)));
        Ok(Self {
            state,
            _bound: None,
            retry: Some(task),
        })
    }

    /// The state now.
    fn state(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The address bound (a port 0 configured: the one found), or why
    /// the listener is not bound yet (the address configured and the last
    /// error; it is retried): for the status.
    pub(super) fn status(&self) -> Result<SocketAddr, String> {
        match self.state() {
            State::Bound(address) => Ok(address),
            State::Failing(failure) => Err(failure),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(retry) = &self.retry {
            retry.abort();
        }
    }
}

/// Tries `bind` every `retry` until it succeeds, noting each failure in
/// `state` (logged at most once per [`BIND_LOG_INTERVAL`]); then keeps
/// the listener until aborted (the [`Listener`] dropped).
async fn retry_bind<B, F>(address: SocketAddr, bind: B, retry: Duration, state: Arc<Mutex<State>>)
where
    B: Fn() -> F,
    F: Future<Output = Result<sync::ListenerHandle, SyncError>>,
{
    let mut log = LogLimit::new(BIND_LOG_INTERVAL);
    // The start logged the first failure.
    let _ = log.allow(Instant::now());
    let handle = loop {
        tokio::time::sleep(retry).await;
        match bind().await {
            Ok(handle) => break handle,
            Err(error) => {
                if let Some(suppressed) = log.allow(Instant::now()) {
                    error!(%address, %error, suppressed, "the connection-table sync listener still cannot bind its address; retrying");
                }
                *state.lock().unwrap_or_else(PoisonError::into_inner) =
                    State::failing(address, &error, retry);
            }
        }
    };
    let bound = handle.local_addr();
    *state.lock().unwrap_or_else(PoisonError::into_inner) = State::Bound(bound);
    info!(%address, %bound, "the connection-table sync listener is bound at last: peers' flows reach this node again");
    let _listener = handle;
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::sync::{SyncConfig, SyncStats};

    /// A listener whose address another process holds at start: the
    /// start goes on (the failure named, with the address), and the
    /// listener comes up once the holder lets the address go.
    #[tokio::test]
    async fn a_listener_whose_address_is_taken_comes_up_once_it_is_free() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = holder.local_addr().unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let config = SyncConfig::new(b"test-key-0123456789abcdef".to_vec(), "lb-a");
        let stats = Arc::new(SyncStats::new());
        let bind = move || {
            sync::listen_for(
                address,
                sync::Sources::Any,
                config.clone(),
                tx.clone(),
                stats.clone(),
            )
        };
        let listener = Listener::start(address, bind, Duration::from_millis(20))
            .await
            .expect("a taken address does not fail the start");
        let failure = listener.status().expect_err("the failure is reported");
        assert!(failure.contains(&address.to_string()), "{failure}");
        assert!(std::net::TcpListener::bind(address).is_err(), "still held");
        drop(holder);
        let deadline = Instant::now() + Duration::from_secs(10);
        while listener.status().is_err() {
            assert!(Instant::now() < deadline, "the listener never came up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::net::TcpStream::connect(address)
            .await
            .expect("the listener accepts");
        // Dropped: the listener closes.
        drop(listener);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(address).is_err() {
            assert!(Instant::now() < deadline, "the listener stayed bound");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A config the listener refuses fails the start: no retry helps.
    #[tokio::test]
    async fn a_bad_config_still_fails_the_start() {
        let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let bind = || async { Err(SyncError::Config("short key".into())) };
        let started = Listener::start(address, bind, Duration::from_millis(20)).await;
        assert!(matches!(started, Err(SyncError::Config(_))));
    }
}
