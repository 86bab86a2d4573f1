//! Connection table: pins each flow to the backend it started on, so a
//! change of the backend set moves no established flow (except flows of a
//! backend that is gone: those are hashed again).
//!
//! Two designs behind one interface (`decide`, `peek`), chosen when lbd
//! loads the object (`CONNTRACK_DESIGN`, a read-only global the verifier
//! sees as a constant, so the other design's code is pruned): the bucket
//! table (`buckets`, lbd's default) and a kernel map (`kernel_map`: the
//! shared LRU hash, lbd's default before it, and its variants for the
//! bench). A SYN's handshake never displaces a live flow: the bucket
//! table takes it into a way no live flow holds, with the half-open
//! class its ACK turns established, else (and in SYN-flood mode) it is
//! held apart (`half_open`), as the kernel map always holds it, and
//! enters the connection table when its ACK follows.

mod buckets;
mod half_open;
mod kernel_map;
mod pending;

pub use pending::PendingFlow;

use core::ptr::addr_of_mut;

use lb_common::{
    consts::{
        EVENT_CONNTRACK_INSERT_FAILED, FLOW_F_ACL_MARK, FLOW_F_FIN, FLOW_F_RST, FLOW_F_STATE,
    },
    flow_table::{
        as_datagram, idle_horizons_of, over_within, ticks, victim_order, TIER_HANDSHAKE, TIER_SHIFT,
    },
    stats::Counter,
    Backend, FlowEntry, FlowKey, VipMeta,
};

use crate::{
    guard::acl::Gate,
    maps::IDLE_HORIZONS,
    parse::{Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    select,
    state::PacketState,
    stats,
};

/// `CONNTRACK_DESIGN`: the bucket table in `FLOW_BUCKETS`.
pub const DESIGN_BUCKETS: u32 = 0;
/// `CONNTRACK_DESIGN`: the kernel map `CONNTRACK`.
pub const DESIGN_KERNEL_MAP: u32 = 1;

/// Which design this object runs (`DESIGN_*`); set by lbd at load time.
#[unsafe(no_mangle)]
static CONNTRACK_DESIGN: u32 = DESIGN_BUCKETS;

#[inline(always)]
fn design() -> u32 {
    // SAFETY: a read of a global; volatile so the compiler keeps the read
    // and the loader's value (not this initializer) decides.
    unsafe { core::ptr::read_volatile(&CONNTRACK_DESIGN) }
}

/// Where a flow goes, and whether it was new to the table.
pub struct Decision {
    /// Backend id.
    pub backend_id: u32,
    /// The backend (its entry in `BACKENDS`: a reference, not a copy, to
    /// keep the packet path's frame small).
    pub backend: &'static Backend,
    /// True when the flow was not tracked before this packet.
    pub new_flow: bool,
    /// `bpf_ktime_get_coarse_ns()` as the table update read it, 0 if
    /// none did (a routed mode's next-hop cache reuses it).
    pub now: u64,
    /// The flow's `flow_hash` if known (the pick's, or the one its entry
    /// kept), else 0.
    pub hash: u32,
}

/// The backend of this packet's flow: the tracked one if it is still
/// alive, else (a TCP flow held half-open) its SYN's, else a fresh Maglev
/// pick that is then remembered: for a TCP SYN as a handshake (see
/// `buckets::decide`; the kernel map holds it in the half-open table),
/// in the connection table for anything else. None:
/// no backend, or (`refused` set to `DropRateLimited`) a new flow over
/// its source's limit (`guard::limit`, asked only where an entry would be
/// created), or (`refused` set to the lists' verdict) a source the VIP's
/// deny and allow lists refuse: `gate` is checked here unless the flow's
/// entry carries its mark or the packet is a TCP SYN (checked before, see
/// `forward`), and every entry written gets the mark. An
/// out-parameter, not a `Result`: the verifier cannot follow an enum
/// discriminant kept in a niche of `Decision`. `state`: this CPU's, for
/// the counters of a tracked flow's packet.
#[inline(always)]
pub fn decide(
    vip: &VipMeta,
    packet: &Packet,
    gate: &Gate,
    refused: &mut Counter,
    state: *mut PacketState,
) -> Option<Decision> {
    if design() == DESIGN_KERNEL_MAP {
        kernel_map::decide(vip, packet, gate, refused, state)
    } else {
        buckets::decide(vip, packet, gate, refused, state)
    }
}

/// Whether the packet may go on: it opens a TCP flow (`opening`: its
/// lists were checked before), its flow's entry (`entry_flags`; None: the
/// table does not hold the flow) carries the mark of the rules in force,
/// or the lists let it through. Sets `refused` to the lists' verdict if
/// not.
#[inline(always)]
pub(super) fn admitted(
    gate: &Gate,
    (entry_flags, opening): (Option<u32>, bool),
    key: &FlowKey,
    refused: &mut Counter,
) -> bool {
    if opening {
        return true;
    }
    if let Some(flags) = entry_flags {
        if flags & FLOW_F_ACL_MARK == gate.mark() {
            return true;
        }
    }
    match gate.check(key) {
        Ok(()) => true,
        Err(counter) => {
            *refused = counter;
            false
        }
    }
}

/// After the packet path: runs the insert it queued (a new flow into the
/// bucket table, a new half-open flow into the half-open table; see
/// `pending`) and returns its outcome (packed) unchanged. Every entry
/// point calls it once, last.
#[inline(always)]
pub fn settle_pending(outcome: u64, state: *mut PacketState) -> u64 {
    // SAFETY: this CPU's packet state, from the entry point.
    pending::settle(outcome, unsafe { addr_of_mut!((*state).pending) })
}

/// The backend of a flow without changing anything: the tracked one if it
/// is still alive, else its SYN's if it is half-open (`half_open`), else
/// Maglev's pick. For packets that are about a
/// flow without being part of it (ICMP errors): they must reach its
/// backend, but neither create, refresh nor re-pin an entry. Rare: a
/// function of its own, out of the packet path's frame.
#[inline(never)]
pub fn peek(vip: &VipMeta, key: &FlowKey) -> Option<Decision> {
    if design() == DESIGN_KERNEL_MAP {
        kernel_map::peek(vip, key)
    } else {
        buckets::peek(vip, key)
    }
}

/// A new flow's entry, seen at `now` (`mark`: `Gate::mark`).
#[inline(always)]
pub(super) fn new_entry(
    backend_id: u32,
    backend: &Backend,
    packet: &Packet,
    (hash, mark): (u32, u32),
    now: u64,
) -> FlowEntry {
    FlowEntry {
        backend_id,
        backend_generation: backend.generation,
        last_seen_ns: now,
        flags: entry_flags(0, packet.tcp_flags, mark),
        hash,
    }
}

/// A flow entry's flags after this packet: its state marks (`flags`, the
/// old ones) and those of `tcp_flags`, and the ACL mark `mark`
/// (`Gate::mark`, replacing the old one). A SYN without ACK is a new
/// connection on the tuple (a client reusing its port): the old
/// connection's FIN/RST marks go, so the new one is not taken for closed
/// (evicted first, counted as closing by a drain).
#[inline(always)]
pub(super) fn entry_flags(flags: u32, tcp_flags: u8, mark: u32) -> u32 {
    let kept = if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        0
    } else {
        flags & FLOW_F_STATE
    };
    kept | flow_flags(tcp_flags) | mark
}

/// A flow this packet inserted: counted, and sent to its pick.
#[inline(always)]
pub(super) fn inserted(
    backend_id: u32,
    backend: &'static Backend,
    now: u64,
    hash: u32,
) -> Decision {
    stats::count(Counter::ConntrackNew);
    Decision {
        backend_id,
        backend,
        new_flow: true,
        now,
        hash,
    }
}

/// A flow's backend that changes nothing in the table: a tracked flow's,
/// a half-open flow's, or a pick for a packet about a flow.
#[inline(always)]
pub(super) fn unchanged(
    backend_id: u32,
    backend: &'static Backend,
    now: u64,
    hash: u32,
) -> Decision {
    Decision {
        backend_id,
        backend,
        new_flow: false,
        now,
        hash,
    }
}

/// A full table (plain hash) or a failed allocation: the flow still goes
/// to its Maglev backend, untracked; counted and reported.
#[inline(always)]
pub(super) fn insert_failed(
    vip: &VipMeta,
    packet: &Packet,
    backend_id: u32,
    backend: &'static Backend,
    hash: u32,
) -> Decision {
    stats::count(Counter::ConntrackInsertFailed);
    stats::report(EVENT_CONNTRACK_INSERT_FAILED, vip.id, &packet.key);
    Decision {
        backend_id,
        backend,
        new_flow: true,
        now: 0,
        hash,
    }
}

/// The backend a tracked flow is pinned to, if it is still alive and still
/// the same backend (not a later one that reuses its id).
#[inline(always)]
pub(super) fn pinned_backend(entry: &FlowEntry) -> Option<&'static Backend> {
    let backend = select::live_backend(entry.backend_id)?;
    (backend.generation == entry.backend_generation).then_some(backend)
}

/// Whether the bucket table's flow whose tag is `tag` is over at `now`
/// for a packet of it (`tcp`: a TCP packet): closed (FIN or RST seen) or
/// idle past its class's timeout, the idle horizons being lbd's
/// (`idle_horizons`, `flow_table::over_within`: an open TCP connection
/// idle past the TCP horizon too, though eviction takes it only after
/// handshakes, and a SYN never does). A SYN on such a tuple
/// opens a new connection, not a retransmission; a UDP packet on it
/// opens a new flow. A UDP packet's flow is judged by the datagram
/// horizon whatever class its tag carries (an older lbd's installs
/// ranked UDP flows established, see `flow_table::CLASS_ESTABLISHED`).
#[inline(always)]
pub(super) fn lapsed(tag: u64, now: u64, tcp: bool) -> bool {
    let tag = if tcp { tag } else { as_datagram(tag) };
    over_within(tag, ticks(now), idle_horizons())
}

/// Whether the half-open table's flow whose tag is `tag` is over at
/// `now_ticks` (`flow_table::ticks`): as `lapsed`, for a table whose
/// flows are all handshakes (their horizon is no setting of lbd's).
#[inline(always)]
pub(super) fn lapsed_at(tag: u64, now_ticks: u32) -> bool {
    victim_order(tag, now_ticks) < LIVE_TIER
}

/// The connection table's idle horizons (packed as
/// `flow_table::DEFAULT_IDLE_HORIZONS`: TCP's high, UDP's low, in rank
/// ticks) as lbd last wrote them to `IDLE_HORIZONS` at its start or a
/// reload, the defaults (15 minutes for both) if it has not.
///
/// A BPF-to-BPF function, never inlined, asked only where a flow's age
/// decides (a tracked flow's SYN or UDP packet, an insert into two full
/// buckets): with the map read inlined at every such place the program
/// took 332,993 instructions to verify, over the suite's bound of
/// 320,000 (docs/design/conntrack.md, "Idle horizons").
#[inline(never)]
pub(super) fn idle_horizons() -> u64 {
    // SAFETY: a read of the map's one value (volatile: lbd rewrites it).
    let word = IDLE_HORIZONS
        .get_ptr(0)
        .map_or(0, |word| unsafe { core::ptr::read_volatile(word) });
    idle_horizons_of(word)
}

/// The least `victim_order` of a handshake still in time (the half-open
/// table holds nothing else).
const LIVE_TIER: u32 = TIER_HANDSHAKE << TIER_SHIFT;

/// `FLOW_F_*` marks of a packet's TCP flags.
#[inline(always)]
pub(super) fn flow_flags(tcp_flags: u8) -> u32 {
    let mut flags = 0;
    if tcp_flags & TCP_FIN != 0 {
        flags |= FLOW_F_FIN;
    }
    if tcp_flags & TCP_RST != 0 {
        flags |= FLOW_F_RST;
    }
    flags
}
