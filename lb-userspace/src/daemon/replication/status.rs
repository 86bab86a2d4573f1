//! The replication's status and counters, as the API and the metrics show
//! them.

use std::time::Instant;

use super::Replication;
use crate::{
    api::schema::{ReplicationPeerStatus, ReplicationStatus},
    sync::SyncStatsSnapshot,
};

impl Replication {
    /// Whether a session to some peer is up (a pair's one peer).
    pub fn connected(&self) -> bool {
        self.peers.iter().any(|p| p.sender().connected())
    }

    /// The channel's counters: every sender's and the listener's.
    pub fn channel_stats(&self) -> SyncStatsSnapshot {
        let mut total = self.listener_stats.snapshot();
        total.absorb(&self.retired);
        for peer in &self.peers {
            total.absorb(&peer.stats());
        }
        total
    }

    /// One line per configured peer.
    pub(crate) fn peer_status(&self) -> Vec<ReplicationPeerStatus> {
        let now = Instant::now();
        let sharing = self.peer_backend_states(now);
        self.peers
            .iter()
            .map(|p| {
                let mut status = self.drift.status(p.status(&self.receipts, now));
                status.shares_backend_states = status
                    .node
                    .as_ref()
                    .is_some_and(|node| sharing.contains_key(node));
                status
            })
            .collect()
    }

    /// The status's replication section.
    pub fn status(&self) -> ReplicationStatus {
        ReplicationStatus {
            connected: self.connected(),
            installed: self.flows.installed,
            unknown: self.flows.unknown,
            nat_installed: self.nat.installed,
            nat_unknown: self.nat.unknown,
            nat_conflicts: self.nat.conflicts,
            nat_table_full: self.nat.table_full,
            nat_failed: self.nat.failed,
            channel: self.channel_stats(),
            mode: Some(self.topology),
            kept_local: self.flows.kept_local,
            stale: self.flows.stale,
            failed: self.flows.failed,
            all_peers_dumped: self.all_peers_dumped(),
            peers: self.peer_status(),
        }
    }
}
