//! The backup's side: a listener that accepts masters, authenticates
//! each in a session and hands their batches to the daemon, one per frame.
//!
//! Here the listener starts; beside it what it hands on ([`batch`]), the
//! handle its owner keeps ([`handle`]), the accept loop and its slots
//! ([`accept`]), each connection's handshake and session ([`connection`])
//! and the state and rate-limited logs they share ([`shared`]).

mod accept;
mod batch;
mod connection;
mod handle;
mod shared;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use tokio::sync::mpsc;
use tracing::{info, info_span, Instrument};

use self::{accept::accept_loop, shared::Shared};
pub use self::{
    batch::{BatchKind, ReceivedBatch},
    handle::ListenerHandle,
};
use super::{backend_states::PeerBackendStates, digest::PeerDigests, slots::Sources, Timing};
use crate::sync::{log_limit::LogLimit, SyncConfig, SyncError, SyncStats};

/// At most one log line this often for refused or failed handshakes.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Backup side: binds `addr`, accepts connections from the master(s) and
/// sends each authenticated batch to `batches`, one per frame, in order. A
/// full `batches` channel holds the connection back (TCP pushes back on
/// the master, whose write times out after 5 s and reconnects); a closed
/// one stops the listener. Any address may shake hands: a daemon, which
/// knows its peers, uses [`listen_for`].
pub async fn listen(
    addr: SocketAddr,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
) -> Result<ListenerHandle, SyncError> {
    listen_for(addr, Sources::Any, config, batches, stats).await
}

/// [`listen`], letting only `sources` shake hands.
pub async fn listen_for(
    addr: SocketAddr,
    sources: Sources,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
) -> Result<ListenerHandle, SyncError> {
    listen_with(addr, sources, config, batches, stats, Timing::default()).await
}

pub(super) async fn listen_with(
    addr: SocketAddr,
    sources: Sources,
    config: SyncConfig,
    batches: mpsc::Sender<ReceivedBatch>,
    stats: Arc<SyncStats>,
    timing: Timing,
) -> Result<ListenerHandle, SyncError> {
    config.validate()?;
    // An IPv6 address still tentative right after boot is waited for.
    let listener = crate::sync::bind::bind_listener(addr, "sync")
        .await
        .map_err(|source| SyncError::Io {
            action: "binding the sync listener",
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| SyncError::Io {
        action: "reading the sync listener's address",
        source,
    })?;
    info!(%local_addr, node = %config.node_id, ?sources, versions = %config.versions, "sync listener started");
    let sources = Arc::new(RwLock::new(sources));
    let digests = PeerDigests::default();
    let backend_states = PeerBackendStates::default();
    let shared = Arc::new(Shared {
        digests: digests.clone(),
        backend_states: backend_states.clone(),
        config,
        sources: sources.clone(),
        batches,
        stats,
        timing,
        refusals: Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL)),
        strangers: Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL)),
        accept_failures: Mutex::new(LogLimit::new(REFUSAL_LOG_INTERVAL)),
    });
    let task = tokio::spawn(
        accept_loop(listener, shared).instrument(info_span!("sync_listener", %local_addr)),
    );
    Ok(ListenerHandle {
        local_addr,
        task,
        sources,
        digests,
        backend_states,
    })
}
