//! One census: what it counts with ([`CensusInput`]), what it found
//! ([`Census`]), and the tally of a walk of the connection table and the
//! half-open table, on the engine's mappings or on a second mapping of its
//! own ([`CensusTables`]).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use lb_common::{
    consts::{FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS, IPPROTO_UDP},
    FlowEntry, FlowKey,
};

use crate::{
    conntrack::table::FlowTable,
    model::{AdminState, FlowCount, IdleTimeouts},
};

/// Flows a walk reads between two looks at its cancel flag.
const CANCEL_EVERY: u64 = 4096;

/// What a census counts with, taken from the engine at its start.
#[derive(Debug, Clone)]
pub(crate) struct CensusInput {
    /// When it started (what reads and drains are compared with).
    pub started: Instant,
    /// The monotonic clock at its start (entries' `last_seen_ns`).
    pub now_ns: u64,
    /// Generation of every applied backend, by id: a flow naming an id
    /// with another generation is a removed backend's leftover (counted
    /// in the table's `entries` while live, in no backend's flows).
    pub generations: HashMap<u32, u32>,
    /// Idle timeouts (live against idle flows).
    pub timeouts: IdleTimeouts,
    /// A `[sync]` mesh node: the peers' flows it holds as copies (see
    /// `replication::is_peer_copy`) are no backend's flows here, so the
    /// counts and `drain --wait` are this node's own. Off elsewhere: no
    /// copy is marked there, and an own stamp may look marked.
    pub copies_apart: bool,
}

/// One walk's counts.
#[derive(Debug, Clone)]
pub(crate) struct Census {
    /// When the walk started.
    pub started: Instant,
    /// How long it took.
    pub took: Duration,
    /// Flows per backend, by its id and generation.
    pub(super) by_backend: HashMap<(u32, u32), FlowCount>,
    /// Live flows of the whole table (what an eviction would cut: closed
    /// and expired entries stay in their ways until a new flow takes
    /// them, so they do not count towards full), those of removed
    /// backends and VIPs too: their ways stay taken, ranked live, until
    /// they idle out.
    pub entries: u64,
    /// Of them, the TCP handshakes (`FLOW_F_HALF_OPEN`).
    pub handshakes: u64,
    /// Half-open flows held in the half-open table (None: not read by
    /// this census).
    pub half_open: Option<u64>,
}

impl Census {
    /// A census of nothing (one cancelled).
    pub(crate) fn empty(started: Instant) -> Self {
        Self {
            started,
            took: Duration::ZERO,
            by_backend: HashMap::new(),
            entries: 0,
            handshakes: 0,
            half_open: None,
        }
    }

    /// The flows of the backend with `id` and `generation` (none for a
    /// backend applied after the census started).
    pub(crate) fn backend(&self, id: u32, generation: u32) -> FlowCount {
        self.by_backend
            .get(&(id, generation))
            .copied()
            .unwrap_or_default()
    }

    /// Whether this census counts a backend in `admin` state as of it: a
    /// draining backend's flows only if the walk began after the drain
    /// did (an earlier one may count flows that ended since, and a zero
    /// from it does not say the drain is over).
    pub(crate) fn counts_since(&self, admin: &AdminState) -> bool {
        match admin {
            AdminState::Draining { since, .. } => self.started >= *since,
            AdminState::Enabled | AdminState::Maintenance => true,
        }
    }
}

/// Where a flow stands, as a census counts it.
#[derive(Debug, Clone, Copy)]
enum Standing {
    /// FIN or RST seen, and no packet since for the closing horizon
    /// (`closed_and_quiet`).
    Closing,
    /// No packet within its idle timeout.
    Idle,
    /// Neither: live.
    Live,
}

/// Counts `flows` (a walk of the connection table) as of `input`; None
/// when `cancel` was set meanwhile. The half-open table is left to the
/// caller (`half_open` None).
pub(crate) fn tally(
    flows: impl IntoIterator<Item = (FlowKey, FlowEntry)>,
    input: &CensusInput,
    cancel: &AtomicBool,
) -> Option<Census> {
    let mut by_backend: HashMap<(u32, u32), FlowCount> = HashMap::new();
    let mut entries = 0u64;
    let mut handshakes = 0u64;
    let mut read = 0u64;
    for (key, entry) in flows {
        read += 1;
        if read.is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            return None;
        }
        // A handshake (its SYN in the table, no ACK yet) is live for the
        // half-open timeout, then idle: an abandoned SYN does not hold a
        // drain for the connection's idle timeout.
        let handshake = entry.flags & FLOW_F_HALF_OPEN != 0;
        let idle_limit = if handshake {
            crate::daemon::flow::HALF_OPEN_TIMEOUT
        } else if key.proto == IPPROTO_UDP {
            input.timeouts.udp
        } else {
            input.timeouts.tcp
        };
        let silent = Duration::from_nanos(input.now_ns.saturating_sub(entry.last_seen_ns));
        let state = if closed_and_quiet(&entry, silent) {
            Standing::Closing
        } else if silent > idle_limit + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS) {
            Standing::Idle
        } else {
            // Live in the table whatever its backend: a removed backend's
            // or VIP's flow holds its way, ranked live by eviction, until
            // it idles out or its next packet re-pins it.
            entries += 1;
            handshakes += u64::from(handshake);
            Standing::Live
        };
        let generation = entry.backend_generation;
        if input.generations.get(&entry.backend_id) != Some(&generation) {
            // A removed backend's (or VIP's) leftover: no backend's flow,
            // nothing a drain waits for.
            continue;
        }
        if input.copies_apart && crate::daemon::replication::is_peer_copy(entry.last_seen_ns) {
            // A peer's flow, not forwarded here since it was copied: it
            // takes its way (counted above), but no drain here waits for
            // it, and per-node counts do not add up the whole mesh.
            continue;
        }
        let count = by_backend
            .entry((entry.backend_id, generation))
            .or_default();
        match state {
            Standing::Closing => count.closing += 1,
            Standing::Idle => count.idle += 1,
            Standing::Live => count.live += 1,
        }
    }
    Some(Census {
        started: input.started,
        took: input.started.elapsed(),
        by_backend,
        entries,
        handshakes,
        half_open: None,
    })
}

/// How long a flow marked closed (FIN or RST seen) must go without a
/// packet before the census counts it closing rather than live. A FIN
/// says only that one side is done: in DSR and the tunnel modes the
/// balancer sees the client's side alone, and a client that half-closes
/// after its request (`shutdown(SHUT_WR)`) keeps ACKing the response
/// through it for as long as it streams; an RST may be spoofed or out of
/// window (the backend ignores it, RFC 5961). Five touch intervals: a
/// flow whose packets still come is stamped every
/// `FLOW_TOUCH_INTERVAL_NS`, and the rest is slack for a pause in the
/// response or a retransmission's backoff; short enough that a drain
/// ends a few seconds after its last connection's final ACK.
pub(super) const CLOSING_QUIET_NS: u64 = 5 * FLOW_TOUCH_INTERVAL_NS;

/// Whether a flow (`entry`, silent for `silent`) is closing: FIN or RST
/// seen, and quiet past [`CLOSING_QUIET_NS`] since, plus the touch
/// interval its last-seen time may lag its last packet by. One still
/// seen within it is live: a drain must not end under a half-closed
/// connection still streaming.
fn closed_and_quiet(entry: &FlowEntry, silent: Duration) -> bool {
    let horizon = Duration::from_nanos(CLOSING_QUIET_NS + FLOW_TOUCH_INTERVAL_NS);
    entry.flags & (FLOW_F_FIN | FLOW_F_RST) != 0 && silent > horizon
}

/// Adds the handshakes the half-open table holds in time (`half_open`, a
/// walk of it) to their backends' live flows: the client's ACK still
/// takes such a handshake to its SYN's backend while that backend is
/// alive (a draining one is), so a drain must wait for it. The table's
/// totals (`entries`, `handshakes`: the connection table's) stay as
/// they are. False when `cancel` was set meanwhile.
pub(crate) fn tally_half_open(
    census: &mut Census,
    half_open: impl IntoIterator<Item = (FlowKey, FlowEntry)>,
    input: &CensusInput,
    cancel: &AtomicBool,
) -> bool {
    let limit =
        crate::daemon::flow::HALF_OPEN_TIMEOUT + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS);
    for (read, (_, entry)) in half_open.into_iter().enumerate() {
        if (read as u64 + 1).is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            return false;
        }
        let generation = entry.backend_generation;
        if input.generations.get(&entry.backend_id) != Some(&generation) {
            continue;
        }
        let silent = Duration::from_nanos(input.now_ns.saturating_sub(entry.last_seen_ns));
        if entry.flags & (FLOW_F_FIN | FLOW_F_RST) == 0 && silent <= limit {
            census
                .by_backend
                .entry((entry.backend_id, generation))
                .or_default()
                .live += 1;
        }
    }
    true
}

/// The connection table and the half-open table mapped a second time,
/// for walks on a thread of their own (the engine's mappings stay its
/// own). Holding the maps' fds, they outlive a data plane torn down
/// while a walk runs.
pub(crate) struct CensusTables {
    flows: FlowTable,
    half_open: FlowTable,
}

impl CensusTables {
    /// Walks `flows` (the connection table) and counts `half_open`, both
    /// mappings of their own (`Dataplane::remapped_tables`).
    pub(crate) fn new(flows: FlowTable, half_open: FlowTable) -> Self {
        Self { flows, half_open }
    }

    /// One census as of `input` (None: cancelled).
    pub(super) fn walk(&self, input: &CensusInput, cancel: &AtomicBool) -> Option<Census> {
        let mut census = tally(self.flows.iter(), input, cancel)?;
        if !tally_half_open(&mut census, self.half_open.iter(), input, cancel) {
            return None;
        }
        census.half_open = Some(self.half_open.count());
        census.took = input.started.elapsed();
        Some(census)
    }
}
