//! What the accept loop shares with its connections, and the rate-limited
//! logs of what it refuses: anyone reaching the port can cause those at
//! will, so they are kept from flooding the log.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Instant,
};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    super::{
        backend_states::PeerBackendStates, digest::PeerDigests, session::log_session_end,
        slots::Sources, Timing,
    },
    ReceivedBatch,
};
use crate::sync::{log_limit::LogLimit, SyncConfig, SyncError, SyncStats};

/// What the accept loop shares with its connections.
pub(super) struct Shared {
    pub(super) config: SyncConfig,
    /// The config digests the masters sent.
    pub(super) digests: PeerDigests,
    /// The backend states the peers sent.
    pub(super) backend_states: PeerBackendStates,
    /// Who may shake hands (a reload may change it: see
    /// [`ListenerHandle::set_sources`](super::ListenerHandle::set_sources)).
    pub(super) sources: Arc<RwLock<Sources>>,
    pub(super) batches: mpsc::Sender<ReceivedBatch>,
    pub(super) stats: Arc<SyncStats>,
    pub(super) timing: Timing,
    /// Refused and failed handshakes are logged at most this often:
    /// anyone reaching the port can cause them at will.
    pub(super) refusals: Mutex<LogLimit>,
    /// The same for connections from addresses no peer has, apart: a
    /// scan of the port must not hide a real peer's failing handshakes.
    pub(super) strangers: Mutex<LogLimit>,
    /// Failed accepts (out of descriptors, say) are logged at most this
    /// often: they repeat at every backoff for as long as the cause lasts.
    pub(super) accept_failures: Mutex<LogLimit>,
}

impl Shared {
    /// Who may shake hands now.
    pub(super) fn sources(&self) -> Sources {
        self.sources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs a connection refused for its address, unless one was logged
    /// lately.
    pub(super) fn log_stranger(&self, peer: SocketAddr) {
        let allowed = self
            .strangers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        match allowed {
            Some(suppressed) => warn!(
                %peer,
                suppressed,
                "sync connection refused: its address is no configured peer's (sync_peer / sync.peers); a peer connects from the address it listens on: to let a new node join, add its listen address to sync.peers and reload (sync_peer: restart)"
            ),
            None => debug!(%peer, "sync connection refused: not a configured peer"),
        }
    }

    /// Logs a refused or failed handshake, unless one was logged lately.
    pub(super) fn log_refusal(
        &self,
        peer: SocketAddr,
        why: &dyn std::fmt::Display,
        error: Option<&SyncError>,
    ) {
        let allowed = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        match (allowed, error) {
            (Some(suppressed), Some(error)) => {
                warn!(%peer, suppressed, "{why}");
                log_session_end(error, false);
            }
            (Some(suppressed), None) => warn!(%peer, suppressed, "{why}"),
            (None, _) => debug!(%peer, "{why}"),
        }
    }
}

/// Logs a failed accept (`error`, at `now`) unless one was logged lately
/// (`limit`), with how many were left out since.
pub(super) fn log_accept_failure(limit: &Mutex<LogLimit>, error: &std::io::Error, now: Instant) {
    let allowed = limit
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .allow(now);
    match allowed {
        Some(suppressed) => warn!(%error, suppressed, "accepting a sync connection failed"),
        None => debug!(%error, "accepting a sync connection failed"),
    }
}
