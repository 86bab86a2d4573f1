//! The connection table as lbd reads it: flows per backend for drains
//! and metrics, and replication with the peers.

use std::{collections::HashMap, time::Duration};

use lb_common::consts::{FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_RST, IPPROTO_UDP};

use super::Engine;
use crate::{
    daemon::replication::Topology,
    model::{FlowCount, IdleTimeouts},
    sync::ReceivedBatch,
};

/// Longest a stepping-down node waits for its last flows to go out.
const FINAL_FLUSH: Duration = Duration::from_millis(500);

impl Engine {
    /// Flows in the connection table per backend id, split into live,
    /// closing and idle; the live flows of the whole table (what an
    /// eviction would cut: closed and expired entries stay in their ways
    /// until a new flow takes them, so they do not count towards full),
    /// and of them the TCP handshakes (`FLOW_F_HALF_OPEN`).
    pub(crate) fn flow_counts(&self) -> (HashMap<u32, FlowCount>, u64, u64) {
        let timeouts = IdleTimeouts {
            tcp: self.config.tcp_idle_timeout,
            udp: self.config.udp_idle_timeout,
        };
        let now = crate::clock::monotonic_ns();
        let generations: HashMap<u32, u32> = self
            .balancer
            .vips()
            .values()
            .flat_map(|v| v.backends.values())
            .map(|b| (b.id, b.generation))
            .collect();
        let mut counts: HashMap<u32, FlowCount> = HashMap::new();
        let mut entries = 0u64;
        let mut handshakes = 0u64;
        for (key, entry) in self.dataplane.flows() {
            if generations.get(&entry.backend_id) != Some(&entry.backend_generation) {
                continue; // a removed backend's leftover
            }
            let count = counts.entry(entry.backend_id).or_default();
            // A handshake (its SYN in the table, no ACK yet) is live for
            // the half-open timeout, then idle: an abandoned SYN does not
            // hold a drain for the connection's idle timeout.
            let handshake = entry.flags & FLOW_F_HALF_OPEN != 0;
            let idle_limit = if handshake {
                crate::daemon::flow::HALF_OPEN_TIMEOUT
            } else if key.proto == IPPROTO_UDP {
                timeouts.udp
            } else {
                timeouts.tcp
            };
            let silent = Duration::from_nanos(now.saturating_sub(entry.last_seen_ns));
            if entry.flags & (FLOW_F_FIN | FLOW_F_RST) != 0 {
                count.closing += 1;
            } else if silent
                > idle_limit + Duration::from_nanos(lb_common::consts::FLOW_TOUCH_INTERVAL_NS)
            {
                count.idle += 1;
            } else {
                count.live += 1;
                entries += 1;
                handshakes += u64::from(handshake);
            }
        }
        (counts, entries, handshakes)
    }

    /// Replication tick: a sending node (a pair's master of some
    /// instance, every node of a full mesh) sends its recent flows (a
    /// pair's master only those of the VIPs it holds).
    /// The first tick after an instance stepped down from master (lbd
    /// running on) still sends the flows of the VIPs it handed over (see
    /// `Replication::roles_for_tick`). Also opens the VRRP instances'
    /// preemption hold once the peer's full dump arrived.
    pub(crate) fn sync_tick(&mut self) {
        let roles = self.replication_roles();
        if let Some(replication) = &mut self.replication {
            let roles = replication.roles_for_tick(roles);
            if replication.topology().sends(roles.any_master()) {
                replication.tick_with(&self.dataplane, &self.balancer, &roles);
            }
            // Only a backup waits for a dump (a master receives none).
            let waiting = self.vrrp.iter().any(|i| !i.is_master());
            if replication.topology() == Topology::VrrpPair && waiting && replication.peer_dumped()
            {
                for instance in &self.vrrp {
                    instance.peer_synced();
                }
            }
        }
    }

    /// Before stepping down for good (SIGINT, a planned switchover): one
    /// last tick and a bounded wait until it is written, so the flows of
    /// the last tick interval reach the peer that takes over.
    pub(crate) async fn final_sync(&mut self) {
        if let Some(replication) = &mut self.replication {
            replication.scan_nat_now();
        }
        self.sync_tick();
        if let Some(replication) = &self.replication {
            replication.flush(FINAL_FLUSH).await;
        }
    }

    /// Counts flows from a peer and installs them, each as this node's
    /// role for its VIP says: in a pair, the backup of a VIP's instance
    /// takes the master's copies as they come, while its master installs
    /// only what it holds nothing fresher of (copies queued before it
    /// took over); every node of a full mesh installs unless fresher.
    pub(crate) fn on_sync(&mut self, batch: &ReceivedBatch) {
        let roles = self.replication_roles();
        if let Some(replication) = &mut self.replication {
            replication.received(batch);
            replication.install_with(batch, &mut self.dataplane, &self.balancer, &roles);
        }
    }
}
