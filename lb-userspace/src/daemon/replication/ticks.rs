//! A sending node's tick: whether it starts a walk of the connection table
//! (with the NAT flow table's scan, when due), what that walk reads, and
//! the hooks lbd's loop uses for the walk in flight. What a finished walk
//! sends is in [`sending`](super::sending).

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::Instant,
};

use tracing::debug;

use super::{
    nat,
    peers::Peer,
    records::{backend_names, Scan},
    walks::{self, walk, Due, Planned, Tables, Walk, WalkInput},
    Replication, Roles,
};
use crate::{clock::monotonic_ns, dataplane::Dataplane, reconcile::Balancer};

impl Replication {
    /// While sending: sends flows stamped since the last walk's start to
    /// every peer, or all of them when a full sync is due; a peer with a
    /// new session gets a dump of every entry, and only that peer (the
    /// others keep their stream: one walk reads both). In a full mesh,
    /// copies installed from peers and not forwarded here since are left
    /// out, but for the dump of a new session (see [`sends`](super::records::sends)). In a pair,
    /// only the flows of VIPs this node holds go (`roles`: the other
    /// family's instance may be mastered by the peer, which streams those
    /// itself).
    ///
    /// The walk of the connection table runs off lbd's loop where the
    /// table can be mapped a second time (see [`walks`]), and scans the
    /// NAT flow table too: its records go out when it ends
    /// ([`Replication::walk_ended`]); a tick while it runs starts nothing.
    pub(crate) fn start_walk(&mut self, dataplane: &Dataplane, balancer: &Balancer, roles: &Roles) {
        self.start_walk_in(dataplane, balancer, roles);
    }

    /// [`Replication::start_walk`] over `tables` (tests: tables in memory).
    pub(super) fn start_walk_in(
        &mut self,
        tables: &dyn Tables,
        balancer: &Balancer,
        roles: &Roles,
    ) {
        let Some(input) = self.begin(balancer, roles) else {
            return;
        };
        match self.walker.walk_for(tables, input) {
            Walk::Off(walk) => self.walker.launch(walk),
            Walk::Done(walked) => self.finish_walk(walked),
        }
    }

    /// [`Replication::start_walk`] walking in the caller's thread, whatever
    /// the table (the last tick before lbd stops, the bench); nothing while
    /// a walk is in flight (see [`Replication::wait_walk`]).
    pub(crate) fn tick_with(&mut self, dataplane: &Dataplane, balancer: &Balancer, roles: &Roles) {
        let Some(input) = self.begin(balancer, roles) else {
            return;
        };
        let walked = walk(dataplane, input, &AtomicBool::new(false));
        self.finish_walk(walked);
    }

    /// Starts a walk unless one is in flight: decides what it sends (the
    /// NAT flow table's scan with it, when due) and takes what the walk
    /// needs. Reads neither table: the walk does.
    fn begin(&mut self, balancer: &Balancer, roles: &Roles) -> Option<WalkInput> {
        let now = monotonic_ns();
        let peers = &mut self.peers;
        let planned = self.walks.start(|| due(peers), now, Instant::now())?;
        if planned.full {
            debug!(
                peers = self.peers.len(),
                session_dumps = self.peers.iter().filter(|p| p.dump_is_owed()).count(),
                periodic = planned.scan == Scan::Periodic,
                "full connection-table sync: walking the connection table and the NAT flow table"
            );
        }
        Some(WalkInput {
            planned,
            topology: self.topology,
            names: backend_names(balancer),
            roles: roles.clone(),
            nat: self.nat_scan(planned),
        })
    }

    /// Whether a walk of the connection table is in flight.
    pub(crate) fn walking(&self) -> bool {
        self.walks.walking()
    }

    /// What lbd's loop waits on for [`Replication::walk_ended`] (see
    /// [`walk_ended`](super::walk_ended)).
    pub(crate) fn walk_ends(&self) -> Arc<tokio::sync::Notify> {
        self.walker.ended()
    }

    /// A walk off the loop may have ended: sends its records.
    pub(crate) fn walk_ended(&mut self) {
        if let Some(walked) = self.walker.try_ended() {
            self.finish_walk(walked);
        }
    }

    /// Waits for the walk in flight, if any, and sends its records: the
    /// last tick before lbd stops walks after it.
    pub(crate) async fn wait_walk(&mut self) {
        if self.walking() {
            let walked = self.walker.wait().await;
            self.finish_walk(walked);
        }
    }

    /// The NAT flow table's scan for a walk of `scan`, if one is due (see
    /// [`nat::nat_records_in`]): every dump scans it; between them, a scan
    /// waits until the previous one's duration times [`NAT_SCAN_SPACING`](super::NAT_SCAN_SPACING)
    /// has passed, so these scans take at most a fifth of a core whatever
    /// the table's size (off lbd's loop, with the walk).
    fn nat_scan(&mut self, planned: Planned) -> Option<walks::NatScan> {
        if !nat_scan_due(self.nat_next_scan, planned.full, Instant::now()) {
            return None;
        }
        // NAT entries have a window of their own (see SCAN_MARGIN_NS).
        let scan = match planned.scan {
            Scan::Recent { .. } => Scan::Recent {
                since: self.nat_last_scan_ns.saturating_sub(nat::SCAN_MARGIN_NS),
            },
            dump => dump,
        };
        Some(walks::NatScan {
            scan,
            session: planned.session,
            rule: self.nat_rule,
        })
    }

    /// The next tick scans the NAT flow table whatever the spacing says:
    /// the last tick before stepping down sends the NAT'd flows opened
    /// since the last scan too.
    pub(crate) fn scan_nat_now(&mut self) {
        self.nat_next_scan = None;
    }

    /// [`Replication::tick_with`] for a node that holds every VIP (a
    /// pair's master of all, or a mesh node): sends all its flows,
    /// walking in the caller's thread.
    pub fn tick(&mut self, dataplane: &Dataplane, balancer: &Balancer) {
        self.tick_with(dataplane, balancer, &Roles::new([], true));
    }
}

/// What the walk starting now must read for `peers` (see [`Due`]):
/// asks every peer, consuming each one's new-session mark.
pub(super) fn due(peers: &mut [Peer]) -> Due {
    let mut due = Due::default();
    for peer in peers {
        if peer.owed_dump() {
            due.session = true;
        } else {
            due.rest = true;
        }
    }
    due
}

/// Whether a tick scans the NAT flow table: a full sync always does;
/// otherwise once the spacing after the last scan (`next`) has passed,
/// or when none is set (the first scan, or `scan_nat_now`).
pub(super) fn nat_scan_due(next: Option<Instant>, full: bool, now: Instant) -> bool {
    full || next.is_none_or(|t| now >= t)
}
