//! The handle the listener's owner keeps: the address bound, the peers
//! allowed (changed on a reload), the digests and backend states the
//! peers sent; dropping it stops the listener.

use std::{
    net::SocketAddr,
    sync::{Arc, PoisonError, RwLock},
};

use tokio::task::JoinHandle;
use tracing::info;

use super::super::{backend_states::PeerBackendStates, digest::PeerDigests, slots::Sources};

/// The running listener; dropping it stops accepting and closes every
/// connection.
#[derive(Debug)]
pub struct ListenerHandle {
    pub(super) local_addr: SocketAddr,
    pub(super) task: JoinHandle<()>,
    /// Who may shake hands, shared with the accept loop.
    pub(super) sources: Arc<RwLock<Sources>>,
    /// The config digests the masters sent.
    pub(super) digests: PeerDigests,
    /// The backend states the peers sent.
    pub(super) backend_states: PeerBackendStates,
}

impl ListenerHandle {
    /// The address bound, so a listener on port 0 can be found.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Lets `sources` shake hands from the next connection on (a reload
    /// of `[sync] peers`): a node joins a running mesh without a restart
    /// of the others. Sessions already up stay up (a peer removed is
    /// cut by its own side, or ages out as a silent one would).
    pub(crate) fn set_sources(&self, sources: Sources) {
        info!(
            ?sources,
            "sync listener: the peers allowed to shake hands changed"
        );
        *self.sources.write().unwrap_or_else(PoisonError::into_inner) = sources;
    }

    /// The config digests the masters sent (by node id), for the daemon
    /// to compare with its own.
    pub fn peer_digests(&self) -> &PeerDigests {
        &self.digests
    }

    /// The backend states the peers sent (by node id), for the daemon
    /// to merge with its own.
    pub fn peer_backend_states(&self) -> &PeerBackendStates {
        &self.backend_states
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
