//! The operator's backend states over the sync channel, for
//! `engine::shared_states`: every sender gets this node's states to send
//! (whatever the topology: a pair's backup shares its states too, so a
//! change made there reaches the master), and the listener keeps those
//! each peer sent.

use std::{collections::HashMap, sync::Arc, time::Instant};

use super::Replication;
use crate::sync::wire::BackendStateRecord;

impl Replication {
    /// Gives every peer's sender this node's backend states (sent when
    /// they change, and every so often; the same states again change
    /// nothing).
    pub(crate) fn share_backend_states(&self, own: Arc<[BackendStateRecord]>) {
        for peer in &self.peers {
            peer.sender().set_backend_states(Arc::clone(&own));
        }
    }

    /// The backend states each peer sent (by node id) and that are not
    /// stale at `now`.
    pub(crate) fn peer_backend_states(
        &self,
        now: Instant,
    ) -> HashMap<String, Arc<[BackendStateRecord]>> {
        self._listener.peer_backend_states().current(now)
    }

    /// The peers (by address) known to take this node's backend states:
    /// their lbd sent its own, within the expiry, under the node id their
    /// session names (so it speaks a protocol version with them).
    pub(crate) fn peers_taking_states(&self, now: Instant) -> Vec<std::net::IpAddr> {
        let sending = self.peer_backend_states(now);
        self.peers
            .iter()
            .filter(|peer| {
                peer.sender()
                    .peer_node()
                    .is_some_and(|node| sending.contains_key(&node))
            })
            .map(|peer| peer.address().ip())
            .collect()
    }
}
