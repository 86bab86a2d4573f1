//! A finished walk's records queued for each peer: a session's dump for
//! the peers owed one, the scan's records for the others, one shared
//! allocation for all. Apart from the ticks that start walks: this is the
//! only place that writes to the senders' queues.

use std::{sync::Arc, time::Instant};

use tracing::{debug, trace};

use super::{
    peers::Peer,
    walks::{Planned, Split, Walked},
    Replication, NAT_SCAN_SPACING,
};
use crate::sync::{self, FlowRecord, NatFlowRecord};

impl Replication {
    /// The walk in flight ended with `walked`: its records go to every
    /// peer, the NAT'd flows' first (a session's dump to the peers owed
    /// one, the scan's records to the others). One that failed leaves its
    /// window and its dumps to the next (the next NAT scan looks back to
    /// the last one that ended).
    pub(super) fn finish_walk(&mut self, walked: Walked) {
        let Some(planned) = self.walks.finish(walked.is_some()) else {
            return;
        };
        let Some(collected) = walked else {
            self.walker.failed(Instant::now());
            return;
        };
        self.walker.succeeded();
        if planned.dumps_all() {
            let nat = collected.nat.as_ref().map_or(0, |n| n.records.dump_len());
            self.walks
                .dumped(collected.flows.dump_len().saturating_add(nat));
        }
        if let Some(nat) = collected.nat {
            trace!(
                records = nat.records.dump_len(),
                took_us = nat.took.as_micros(),
                "NAT flow table scanned"
            );
            self.nat_last_scan_ns = planned.started_ns;
            self.nat_next_scan = Some(Instant::now() + nat.took * NAT_SCAN_SPACING);
            self.send_nat(&nat.records, &planned);
        }
        if planned.full {
            debug!(
                records = collected.flows.dump_len(),
                peers = self.peers.len(),
                "full connection-table sync"
            );
        }
        self.send_flows(&collected.flows, &planned);
        for peer in &mut self.peers {
            peer.dumped();
        }
    }

    /// Queues the walk's flow records for every peer (each peer's own
    /// queue: a slow one drops its oldest batches, the others go on): a
    /// session's dump for each peer owed one, the scan's records for the
    /// others; marked with the session each peer had when the walk
    /// started: a dump read before a peer's current session is dropped, never taken
    /// for that session's dump (the next walk makes it), and a periodic
    /// dump never takes the place of a session's dump still queued. Their
    /// ages were taken `at` (the walk's start): the sender adds the time
    /// since when they go out.
    /// Each set is one allocation every peer's queue that gets it shares (a
    /// reference each, no copy: see `sync::channel::queue::Records`).
    pub(super) fn send_flows(&self, records: &Split<FlowRecord>, planned: &Planned) {
        for peer in &self.peers {
            if let Some((records, read)) = Self::for_peer(peer, records, planned) {
                peer.sender().send_read(records, read);
            }
        }
    }

    /// Queues NAT'd flow records for every peer, as [`Self::send_flows`].
    fn send_nat(&self, records: &Split<NatFlowRecord>, planned: &Planned) {
        for peer in &self.peers {
            if let Some((records, read)) = Self::for_peer(peer, records, planned) {
                peer.sender().send_nat_read(records, read);
            }
        }
    }

    /// What `peer` gets of a walk's `records`: the session's dump if it is
    /// owed one, else the scan's records; None when the walk read none for
    /// it (a peer a reload added while a walk ran that read only session
    /// dumps: its own session's dump follows).
    fn for_peer<T>(
        peer: &Peer,
        records: &Split<T>,
        planned: &Planned,
    ) -> Option<(Arc<[T]>, sync::Read)> {
        let at = planned.started;
        if peer.dump_is_owed() {
            let all = records.session.as_ref()?;
            return Some((Arc::clone(all), peer.read(sync::Dump::Session, at)));
        }
        planned.rest.then(|| {
            (
                Arc::clone(&records.rest),
                peer.read(planned.scan.dump(), at),
            )
        })
    }
}
