//! Whether the peers' first full dumps arrived, for what waits on them: a
//! pair's preemption hold, a mesh node's readiness and the BGP start-up
//! gate.

use tracing::{info, warn};

use super::{Replication, Topology};
use crate::{bgp::announce::PeerDumps, vrrp::machine::PREEMPT_SYNC_HOLD};

impl Replication {
    /// Whether a pair's peer delivered a complete full dump since this
    /// node started, so a preemption no longer cuts the peer's flows (see
    /// [`crate::vrrp::machine::Machine::hold_preemption`]). Logs the end of
    /// the wait once: the dump, or [`PREEMPT_SYNC_HOLD`] passing without
    /// it (the VRRP machine then preempts anyway).
    pub(crate) fn peer_dumped(&mut self) -> bool {
        let dumped = match self.topology {
            Topology::VrrpPair => self.receipts.any_dumped(),
            Topology::FullMesh => self.all_peers_dumped(),
        };
        if !self.dump_wait_logged {
            let waited = self.started.elapsed();
            if dumped {
                self.dump_wait_logged = true;
                info!(
                    waited_ms = waited.as_millis(),
                    "connection-table replication: the peer's full dump arrived; preemption no longer waits for it"
                );
            } else if waited >= PREEMPT_SYNC_HOLD {
                self.dump_wait_logged = true;
                warn!(
                    hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                    "connection-table replication: no full dump from the peer since start; a VRRP preemption no longer waits for it, and the peer's connections not copied here break when it happens (check the peer's sync_peer and the key)"
                );
            }
        }
        dumped
    }

    /// Whether every configured peer has delivered one complete full dump
    /// (flows and NAT'd flows) to this node since start: a fresh node of
    /// a full mesh knows its peers' flows and may take traffic. Peers are
    /// matched by node id (see [`peers`](super::peers)); a peer this node has not
    /// reached yet is not done.
    pub fn all_peers_dumped(&self) -> bool {
        let nodes: Vec<Option<String>> =
            self.peers.iter().map(|p| p.sender().peer_node()).collect();
        self.receipts.all_dumped(nodes.iter().map(|n| n.as_deref()))
    }

    /// Where every configured peer's first full dump stands, each named
    /// by its configured address: the BGP start-up gate waits on past
    /// `startup_wait_ms` while one is still arriving (see
    /// [`crate::bgp::announce::Startup`]). Peers are matched by node id
    /// as in [`Self::all_peers_dumped`].
    pub(crate) fn peer_dumps(&self) -> PeerDumps {
        PeerDumps(
            self.peers
                .iter()
                .map(|p| {
                    let node = p.sender().peer_node();
                    let progress = self.receipts.dump_progress(node.as_deref());
                    (p.address().to_string(), progress)
                })
                .collect(),
        )
    }
}
