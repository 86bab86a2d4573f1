//! The peers of one node's replication: one [`Peer`] per configured
//! address (its own sender, queue and counters), and the [`Receipts`] of
//! what each peer delivered to this node's listener.
//!
//! Received batches are matched to configured peers by **node id**: the
//! listener knows the sending node only by the id its handshake
//! authenticated (the TCP source address is whatever the peer's kernel
//! picked, not necessarily its configured listen address), and this
//! node's sender to a peer learns that same id from its own handshake
//! with the peer (every lbd uses one id, `host/interface`, for both
//! directions). A peer's receipts are found as soon as this node's
//! session to it is up; what arrived before is kept under the id.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;
use tracing::debug;

use crate::{
    api::schema::ReplicationPeerStatus,
    bgp::announce::DumpProgress,
    sync::{self, count_of, BatchKind, ReceivedBatch, SyncStats, SyncStatsSnapshot},
};

/// Node ids [`Receipts`] remembers at most: every sender holds the key,
/// but a misconfigured one that changes its id must not grow memory.
const MAX_KNOWN_NODES: usize = 64;

/// One configured peer: the sender that streams to it.
pub(crate) struct Peer {
    address: SocketAddr,
    sender: sync::Sender,
    stats: Arc<SyncStats>,
    sessions: watch::Receiver<u64>,
    /// The sender's session number when the last walk started: the walk
    /// read its records during that session (see [`Peer::read`]).
    seen: u64,
    /// Owed a new session's dump: set when a walk starts for a new
    /// session, cleared once a walk gave it the dump (a failed walk
    /// leaves it owed to the next). Only such peers get one: the others
    /// keep their incremental stream.
    dump_owed: bool,
}

impl Peer {
    /// Wraps a started sender to `address` counting into `stats`.
    pub(crate) fn new(address: SocketAddr, sender: sync::Sender, stats: Arc<SyncStats>) -> Self {
        let sessions = sender.sessions();
        let seen = *sessions.borrow();
        Self {
            address,
            sender,
            stats,
            sessions,
            seen,
            dump_owed: false,
        }
    }

    /// The peer's address (as configured).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether a session started since the last call: the peer may have
    /// missed batches (or restarted), so it needs a full dump. Called when
    /// a walk starts; remembers the session number for [`Peer::read`]
    /// (read and marked seen at once, so a session starting meanwhile is
    /// not lost).
    pub(crate) fn new_session(&mut self) -> bool {
        let now = *self.sessions.borrow_and_update();
        let changed = now != self.seen;
        self.seen = now;
        changed
    }

    /// Whether the walk starting now reads this peer a new session's
    /// dump: a session began since the last walk started (see
    /// [`Peer::new_session`]), or the walk that read its dump failed.
    pub(crate) fn owed_dump(&mut self) -> bool {
        if self.new_session() {
            self.dump_owed = true;
        }
        self.dump_owed
    }

    /// Whether the walk in flight reads this peer a session's dump (see
    /// [`Peer::owed_dump`]).
    pub(crate) fn dump_is_owed(&self) -> bool {
        self.dump_owed
    }

    /// A walk's records went to this peer (its dump too, if it was owed
    /// one).
    pub(crate) fn dumped(&mut self) {
        self.dump_owed = false;
    }

    /// How the walk in flight (or the last one) read its records, given
    /// with them to the sender: as `dump`, their ages taken `at` (its
    /// start), during the session this peer had when the walk started. The sender drops a full sync read
    /// before the session it would go out in (a dump made while the peer
    /// was down must not pass for the new session's dump, which the next
    /// walk makes: see `sync::Sender::send`).
    pub(crate) fn read(&self, dump: sync::Dump, at: Instant) -> sync::Read {
        sync::Read {
            dump,
            session: self.seen,
            at,
        }
    }

    /// Closes the sender for good (see `sync::Sender::close`); returns
    /// the peer's address with how it went.
    pub(crate) async fn close(self, limit: Duration) -> (SocketAddr, sync::Closed) {
        (self.address, self.sender.close(limit).await)
    }

    /// The sender to this peer.
    pub(crate) fn sender(&self) -> &sync::Sender {
        &self.sender
    }

    /// The sender's counters.
    pub(crate) fn stats(&self) -> SyncStatsSnapshot {
        self.stats.snapshot()
    }

    /// The peer's line in the status, as of `now`.
    pub(crate) fn status(&self, receipts: &Receipts, now: Instant) -> ReplicationPeerStatus {
        let node = self.sender.peer_node();
        let got = node
            .as_deref()
            .and_then(|id| receipts.get(id))
            .unwrap_or_default();
        let sent = self.stats.snapshot();
        ReplicationPeerStatus {
            address: self.address.to_string(),
            node,
            connected: self.sender.connected(),
            records_sent: sent.records_sent,
            records_received: got.records,
            full_dumps_received: got.full_dumps,
            batches_dropped: sent.dropped_batches,
            last_received_s: got.last_age(now).map(|age| age.as_secs()),
            last_received_unix_s: got.last_unix_s(),
            ..ReplicationPeerStatus::default()
        }
    }
}

/// What one sending node delivered to this node since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// Records (flows and NAT'd flows).
    pub records: u64,
    /// Complete full dumps: the last frame of a full sync of the flows
    /// and of the NAT'd flows (each tick that dumps sends both).
    pub full_dumps: u64,
    flows_dumped: bool,
    nat_dumped: bool,
    /// When the last batch arrived (None: none yet), on the monotonic
    /// clock: its age.
    last_at: Option<Instant>,
    /// The wall clock at the last batch's arrival: its timestamp, kept
    /// as read rather than worked out later from its age.
    last_wall: Option<SystemTime>,
    /// When this node's loop last took a frame of a full sync (flows or
    /// NAT'd flows), if it did: while no dump is complete, whether the
    /// first one is still arriving (see [`Receipt::dump_progress`]). The
    /// loop's time, not the frame's decode: frames queued behind a busy
    /// loop still show the dump moving as the loop takes them.
    last_dump_frame: Option<Instant>,
}

impl Receipt {
    /// Where this node's first complete dump from the sender stands, for
    /// the BGP start-up gate: done once one completed; arriving while
    /// frames of a full sync came (the latest then); nothing before.
    pub(crate) fn dump_progress(&self) -> DumpProgress {
        match (self.full_dumps, self.last_dump_frame) {
            (1.., _) => DumpProgress::Done,
            (0, Some(at)) => DumpProgress::Arriving(at),
            (0, None) => DumpProgress::Nothing,
        }
    }

    /// How long before `now` the last batch arrived (None: none yet).
    pub(crate) fn last_age(&self, now: Instant) -> Option<Duration> {
        self.last_at.map(|at| now.saturating_duration_since(at))
    }

    /// When the last batch arrived, Unix time in whole seconds (None:
    /// none yet, or a wall clock before 1970 then).
    pub(crate) fn last_unix_s(&self) -> Option<u64> {
        self.last_wall
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_secs())
    }
}

/// When the daemon took a received batch, and how long it had waited
/// since the listener decoded it (its receive queue): the batch arrived
/// `queued` before `at` and `wall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrival {
    /// The monotonic clock when the daemon took it.
    pub(crate) at: Instant,
    /// The wall clock then.
    pub(crate) wall: SystemTime,
    /// How long it waited before.
    pub(crate) queued: Duration,
}

impl Arrival {
    /// A batch decoded at `received_ns` (CLOCK_MONOTONIC, see
    /// [`ReceivedBatch::received_ns`]) taken now.
    pub(crate) fn of(received_ns: u64) -> Self {
        let queued = crate::clock::monotonic_ns().saturating_sub(received_ns);
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
            queued: Duration::from_nanos(queued),
        }
    }
}

/// Receipts by sending node id.
#[derive(Debug, Default)]
pub(crate) struct Receipts(HashMap<String, Receipt>);

impl Receipts {
    /// Counts `batch`, which arrived as `arrival` says, under its
    /// sender's node id.
    pub(crate) fn note(&mut self, batch: &ReceivedBatch, arrival: Arrival) {
        if !self.0.contains_key(&batch.peer) && self.0.len() >= MAX_KNOWN_NODES {
            // Per batch: debug, not to flood the log; the peer's line in
            // the status shows nothing received, which is the signal.
            debug!(peer_node = %batch.peer, limit = MAX_KNOWN_NODES, "replication: too many node ids; this one's batches are installed but not counted per peer");
            return;
        }
        let receipt = self.0.entry(batch.peer.clone()).or_default();
        receipt.records += count_of(batch.records.len() + batch.nat.len());
        receipt.last_at = Some(arrival.at.checked_sub(arrival.queued).unwrap_or(arrival.at));
        receipt.last_wall = Some(
            arrival
                .wall
                .checked_sub(arrival.queued)
                .unwrap_or(arrival.wall),
        );
        if batch.full_sync {
            receipt.last_dump_frame = Some(arrival.at);
        }
        if batch.full_sync && batch.last {
            match batch.kind {
                BatchKind::Flows => receipt.flows_dumped = true,
                BatchKind::Nat => receipt.nat_dumped = true,
            }
            // A session without NatBatch (a peer of an earlier release)
            // sends no NAT'd flows: its flows are its whole dump.
            if batch.version < sync::wire::NAT_BATCH_VERSION {
                receipt.nat_dumped = true;
            }
            if receipt.flows_dumped && receipt.nat_dumped {
                receipt.full_dumps += 1;
                receipt.flows_dumped = false;
                receipt.nat_dumped = false;
            }
        }
    }

    /// What `node` delivered, if anything.
    pub(crate) fn get(&self, node: &str) -> Option<Receipt> {
        self.0.get(node).copied()
    }

    /// Where the first full dump of `node` (a configured peer's id;
    /// `None` for a peer never reached yet) stands.
    pub(crate) fn dump_progress(&self, node: Option<&str>) -> DumpProgress {
        node.and_then(|id| self.get(id))
            .map_or(DumpProgress::Nothing, |r| r.dump_progress())
    }

    /// Whether some node delivered a complete full dump (a pair's one
    /// peer: its id need not be known from this node's own session).
    pub(crate) fn any_dumped(&self) -> bool {
        self.0.values().any(|r| r.full_dumps > 0)
    }

    /// Whether every one of `nodes` (the configured peers' ids; `None`
    /// for a peer never reached yet) delivered a complete full dump.
    pub(crate) fn all_dumped<'a>(&self, mut nodes: impl Iterator<Item = Option<&'a str>>) -> bool {
        nodes.all(|node| {
            node.and_then(|id| self.get(id))
                .is_some_and(|r| r.full_dumps > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(peer: &str, kind: BatchKind, full_sync: bool, last: bool) -> ReceivedBatch {
        ReceivedBatch {
            peer: peer.into(),
            version: sync::wire::PROTOCOL_VERSION,
            kind,
            full_sync,
            last,
            records: Vec::new(),
            nat: Vec::new(),
            received_ns: 0,
        }
    }

    /// A batch the daemon takes as it arrives.
    fn arrived() -> Arrival {
        Arrival {
            at: Instant::now(),
            wall: std::time::SystemTime::now(),
            queued: Duration::ZERO,
        }
    }

    #[test]
    fn a_dump_counts_once_both_kinds_completed() {
        let mut r = Receipts::default();
        let peers = || [Some("b"), Some("c")].into_iter();
        assert!(!r.all_dumped(peers()));
        r.note(&batch("b", BatchKind::Flows, true, false), arrived());
        r.note(&batch("b", BatchKind::Flows, false, true), arrived()); // incremental
        r.note(&batch("b", BatchKind::Nat, true, true), arrived());
        assert_eq!(r.get("b").unwrap().full_dumps, 0, "flows dump not finished");
        r.note(&batch("b", BatchKind::Flows, true, true), arrived());
        assert_eq!(r.get("b").unwrap().full_dumps, 1);
        assert!(!r.all_dumped(peers()), "c has sent nothing");
        r.note(&batch("c", BatchKind::Flows, true, true), arrived());
        assert!(!r.all_dumped(peers()));
        r.note(&batch("c", BatchKind::Nat, true, true), arrived());
        assert!(r.all_dumped(peers()));
        // A peer whose id is not known yet (never reached) is not done.
        assert!(!r.all_dumped([Some("b"), None].into_iter()));
        // Nobody else's dump counts for a configured peer.
        assert!(!r.all_dumped([Some("d")].into_iter()));
        assert!(r.all_dumped(std::iter::empty()));
    }

    #[test]
    fn a_peer_without_nat_batches_dumps_its_flows_only() {
        let mut r = Receipts::default();
        let old = ReceivedBatch {
            version: 1,
            ..batch("b", BatchKind::Flows, true, false)
        };
        r.note(&old, arrived());
        assert!(!r.any_dumped(), "the flows' dump is not finished");
        r.note(&ReceivedBatch { last: true, ..old }, arrived());
        assert!(
            r.any_dumped(),
            "a version-1 session has no NAT'd flows to wait for"
        );
        assert!(r.all_dumped([Some("b")].into_iter()));
    }

    /// When the last batch from a node arrived, for the status's age and
    /// the metrics' timestamp: none before the first; the wall clock read
    /// when it arrived (its decode), not when the daemon got to it, and
    /// kept as read rather than worked out again from an age.
    #[test]
    fn the_last_batch_is_stamped_at_its_arrival() {
        let mut r = Receipts::default();
        assert_eq!(r.get("b"), None);
        let at = Instant::now();
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Queued 2 s before the daemon took it.
        let arrival = Arrival {
            at,
            wall,
            queued: Duration::from_secs(2),
        };
        r.note(&batch("b", BatchKind::Flows, false, true), arrival);
        let got = r.get("b").unwrap();
        assert_eq!(got.last_unix_s(), Some(1_699_999_998));
        assert_eq!(
            got.last_age(at + Duration::from_secs(1)),
            Some(Duration::from_secs(3))
        );
        // An empty full dump (a peer with no flows) is a batch too: its
        // flows here are as fresh as it.
        let later = Arrival {
            at: at + Duration::from_secs(10),
            wall: wall + Duration::from_secs(10),
            queued: Duration::ZERO,
        };
        r.note(&batch("b", BatchKind::Flows, true, true), later);
        let got = r.get("b").unwrap();
        assert_eq!(got.last_unix_s(), Some(1_700_000_010));
        assert_eq!(
            got.last_age(at + Duration::from_secs(10)),
            Some(Duration::ZERO)
        );
        assert_eq!(Receipt::default().last_unix_s(), None);
        assert_eq!(Receipt::default().last_age(at), None);
    }

    /// The start-up gate's view of a peer's first dump: nothing before a
    /// frame of a full sync; arriving, stamped with when the loop took
    /// the latest such frame (incremental batches and a queue's wait do
    /// not count); done once both kinds completed, whatever comes after.
    #[test]
    fn a_peers_first_dump_is_seen_arriving_then_done() {
        let mut r = Receipts::default();
        let t0 = Instant::now();
        let at = |secs| Arrival {
            at: t0 + Duration::from_secs(secs),
            wall: std::time::SystemTime::now(),
            queued: Duration::from_secs(1),
        };
        assert_eq!(r.dump_progress(Some("b")), DumpProgress::Nothing);
        assert_eq!(r.dump_progress(None), DumpProgress::Nothing);
        r.note(&batch("b", BatchKind::Flows, false, true), at(1));
        assert_eq!(
            r.dump_progress(Some("b")),
            DumpProgress::Nothing,
            "an incremental batch is no dump"
        );
        r.note(&batch("b", BatchKind::Flows, true, false), at(2));
        assert_eq!(
            r.dump_progress(Some("b")),
            DumpProgress::Arriving(t0 + Duration::from_secs(2))
        );
        r.note(&batch("b", BatchKind::Flows, false, true), at(3));
        r.note(&batch("b", BatchKind::Flows, true, true), at(4));
        assert_eq!(
            r.dump_progress(Some("b")),
            DumpProgress::Arriving(t0 + Duration::from_secs(4)),
            "the NAT'd flows' dump is still to come"
        );
        r.note(&batch("b", BatchKind::Nat, true, true), at(5));
        assert_eq!(r.dump_progress(Some("b")), DumpProgress::Done);
        r.note(&batch("b", BatchKind::Flows, true, false), at(6));
        assert_eq!(r.dump_progress(Some("b")), DumpProgress::Done);
        assert_eq!(r.dump_progress(Some("c")), DumpProgress::Nothing);
    }

    #[test]
    fn any_dumped_needs_one_complete_dump() {
        let mut r = Receipts::default();
        assert!(!r.any_dumped());
        r.note(&batch("b", BatchKind::Flows, true, true), arrived());
        r.note(&batch("b", BatchKind::Nat, false, true), arrived());
        assert!(!r.any_dumped(), "the NAT'd flows' dump is missing");
        r.note(&batch("b", BatchKind::Nat, true, true), arrived());
        assert!(r.any_dumped());
    }
}
