//! The connection table as buckets of ways in an array map
//! (`FLOW_BUCKETS`; layout and protocol in `lb_common::flow_table`, shared
//! with lbd): a flow's hash names its two buckets, a lookup reads the
//! first bucket's header line and the matching way's line (the second
//! bucket only on a miss), an insert reads both headers and claims a way
//! with a compare-and-swap. No kernel lock, no free list, no allocation.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use lb_common::{
    consts::{
        CONFIG_F_SYN_FLOOD, EVENT_CONNTRACK_INSERT_FAILED, FLOW_F_ACL_MARK, FLOW_F_FIN,
        FLOW_F_HALF_OPEN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP,
    },
    flow_table::{
        self, bucket_index, class_of, nearby_bucket_index, rank_class, rank_word, tag_rank,
        FlowBucket, Placed, Seen, CLASS_CLOSED, CLASS_DATAGRAM, CLASS_ESTABLISHED, CLASS_HALF_OPEN,
        FLOW_WAYS, TIER_IDLE_OPEN, TIER_LIVE,
    },
    hash::{flow_hash, flow_hash_after, table_hash},
    stats::Counter,
    FlowEntry, FlowKey, VipMeta,
};

use super::{
    admitted, entry_flags, half_open, idle_horizons, insert_failed, lapsed, new_entry,
    pending::{self, PendingFlow},
    pinned_backend, unchanged, Decision,
};
use crate::{
    guard::{acl::Gate, limit},
    maps::{CONFIG, FLOW_BUCKETS},
    parse::{Packet, TCP_ACK, TCP_SYN},
    select,
    state::{self, PacketState},
    stats,
};

/// Buckets in `FLOW_BUCKETS` minus one (a power of two minus one); set by
/// lbd at load time from the table's size.
#[unsafe(no_mangle)]
static FLOW_BUCKET_MASK: u32 = 0;

/// The two buckets of a flow with table hash `place` (`table_hash`; the
/// same bucket twice in a one-bucket table).
#[inline(always)]
fn buckets_of(place: u32) -> Option<(*mut FlowBucket, *mut FlowBucket)> {
    let mask = bucket_mask();
    let first = FLOW_BUCKETS.get_ptr_mut(bucket_index(place, mask))?;
    let second = FLOW_BUCKETS.get_ptr_mut(nearby_bucket_index(place, mask))?;
    Some((first, second))
}

/// See `conntrack::decide`. A tracked flow is looked up and refreshed
/// here; a new flow goes to its Maglev pick at once, and its insert is
/// queued (`pending`) for the entry point to run after the packet path:
/// into this table. A TCP SYN goes in with the half-open class (its ACK
/// then finds it in its first bucket and makes it established: one
/// lookup, no second insert), but only into a way that holds no live
/// flow; with none, or in SYN-flood mode (`CONFIG_F_SYN_FLOOD`), it goes
/// to the half-open table, so a flood never displaces a connection. A
/// TCP flow the half-open table holds goes to its SYN's backend: a
/// retransmitted SYN leaves it there, any other packet (the client's
/// ACK) moves it into this table.
///
/// The flow is placed in this table by its `table_hash` (for IPv6 much
/// cheaper than `flow_hash`, and every tracked packet computes it);
/// `flow_hash` (Maglev's, and the half-open table's) is computed only
/// for a flow this table does not hold (for IPv4 the two are one).
#[inline(always)]
pub(super) fn decide(
    vip: &VipMeta,
    packet: &Packet,
    gate: &Gate,
    refused: &mut Counter,
    state: *mut PacketState,
) -> Option<Decision> {
    let key = &packet.key;
    let place = table_hash(key);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let mask = bucket_mask();
    let placed = (
        bucket_index(place, mask),
        nearby_bucket_index(place, mask),
        place,
    );
    let Some(first) = FLOW_BUCKETS.get_ptr_mut(placed.0) else {
        let hash = flow_hash_after(key, place);
        let (backend_id, backend) = select::pick_with(vip, key, hash)?;
        return Some(insert_failed(vip, packet, backend_id, backend, hash));
    };
    let tcp = key.proto == IPPROTO_TCP;
    // A SYN without ACK opens a flow: almost always a new one, so the
    // loads of its two bucket headers, of its half-open bucket's and of
    // its Maglev slot are started together (their cache misses overlap)
    // before the lookups that rule out a retransmitted SYN. Any other
    // packet is almost always a tracked flow's, found in its first
    // bucket: its second is looked up only if it is not there.
    let opening = packet.opens_tcp_flow();
    let (mut hash, pick) = if opening {
        let hash = flow_hash_after(key, place);
        if let Some(second) = FLOW_BUCKETS.get_ptr_mut(placed.1) {
            // SAFETY: both are live elements of the table.
            unsafe {
                flow_table::warm(first);
                flow_table::warm(second);
            }
        }
        half_open::warm(hash);
        (hash, select::pick_with(vip, key, hash))
    } else {
        (0, None)
    };
    // SAFETY: a live element of the table.
    let found = match unsafe { flow_table::find(first, key, place) } {
        Some(seen) => Some((first, seen)),
        None => {
            if !opening {
                // Almost always a new flow now (a table holding its
                // configured flows keeps about 5 % of them in their second
                // bucket): the loads of its half-open bucket's header and
                // of its Maglev slot start here, their misses overlapping
                // the second bucket's.
                hash = flow_hash_after(key, place);
                half_open::warm(hash);
                select::warm(vip, key, hash);
            }
            // So does the load of the slot its insert would write (a SYN's
            // too: it goes into this table as a handshake).
            // SAFETY: as above.
            unsafe { flow_table::warm_free_way(first) };
            match FLOW_BUCKETS.get_ptr_mut(placed.1) {
                Some(second) if second != first => {
                    // SAFETY: as above.
                    unsafe { flow_table::find(second, key, place) }.map(|seen| (second, seen))
                }
                _ => None,
            }
        }
    };
    let marked = found.as_ref().map(|(_, seen)| seen.entry.flags);
    if !admitted(gate, (marked, opening), key, refused) {
        return None;
    }
    let mark = gate.mark();
    if let Some((bucket, seen)) = found {
        return tracked(
            vip,
            packet,
            (bucket, &seen),
            (now, mark, opening, pick.is_some()),
            (refused, state),
        );
    }
    // Here `hash` is the flow's `flow_hash` (a SYN's from the start, any
    // other packet's since its first bucket missed).
    if tcp {
        // Found, the entry stays until the insert into this table is done
        // (`pending::PROMOTE_INTO_BUCKETS`).
        let how = if opening {
            half_open::SYN
        } else {
            half_open::LOOK
        };
        if let Some(known) = half_open::known(key, hash, (how, now)) {
            return Some(from_half_open(
                packet,
                (vip.id, &known),
                opening,
                (now, hash, mark),
                placed,
                state,
            ));
        }
    }
    let (backend_id, backend) = match pick {
        Some(pick) => pick,
        None => select::pick_with(vip, key, hash)?,
    };
    // A way being written under the flow's fingerprint: most likely the
    // flow itself, tracked, its entry being rewritten (lbd's install, a
    // FIN on another CPU) or inserted by another CPU, which the lookups
    // skip. Not a new flow: neither charged to the limits (an
    // established connection never is) nor inserted (a second copy
    // beside it); this packet goes to Maglev's pick, untracked, counted
    // as a hit (as a packet whose insert finds the flow just put there).
    if being_written(place) {
        state::count(state, Counter::ConntrackHit);
        return Some(unchanged(backend_id, backend, now, hash));
    }
    // Only a flow neither table holds is charged for (`guard::limit`):
    // any packet that creates an entry, in flood mode too (the ACK of a
    // handshake pushed out of the half-open table pays again; bare ACKs
    // would otherwise open entries past the limit).
    if !limit::admit(vip.id, key) {
        *refused = Counter::DropRateLimited;
        return None;
    }
    let entry = new_entry(backend_id, backend, packet, (hash, mark), now);
    if opening {
        let entry = FlowEntry {
            flags: entry.flags | FLOW_F_HALF_OPEN,
            ..entry
        };
        if syn_flood() {
            half_open::queue(state, vip.id, key, &entry, now);
        } else {
            let rank = rank_word(now, CLASS_HALF_OPEN);
            let into = pending::SYN_INTO_BUCKETS;
            pending::queue(state, into, vip.id, (key, &entry), rank, placed);
        }
    } else {
        // Established (a UDP flow's class is set by its insert,
        // `insert_pending`).
        let rank = rank_word(now, class_of(entry.flags, true));
        pending::queue(
            state,
            pending::INTO_BUCKETS,
            vip.id,
            (key, &entry),
            rank,
            placed,
        );
    }
    Some(Decision {
        backend_id,
        backend,
        new_flow: true,
        now,
        hash,
    })
}

/// Whether a way of the buckets of a flow with table hash `place` that a
/// writer holds carries the flow's fingerprint
/// (`flow_table::written_under`): its way may be being written, its
/// lookup having missed it. A function of its own: inlined, the values
/// it holds grew the packet path's frame past the verifier's 512 bytes
/// per call chain.
#[inline(never)]
fn being_written(place: u32) -> bool {
    let Some((first, second)) = buckets_of(place) else {
        return false;
    };
    // SAFETY: both are live elements of the table.
    unsafe { flow_table::written_under(first, second, place) }
}

/// A packet of a flow the half-open table holds (`known`): to its SYN's
/// backend; unless it is a retransmitted SYN (`opening`), the flow's
/// insert into this table is queued with that backend (at `placed`: its
/// buckets and table hash here) in `state` (this CPU's).
#[inline(always)]
fn from_half_open(
    packet: &Packet,
    (vip_id, known): (u32, &half_open::Known),
    opening: bool,
    (now, hash, mark): (u64, u32, u32),
    placed: (u32, u32, u32),
    state: *mut PacketState,
) -> Decision {
    let entry = new_entry(known.backend_id, known.backend, packet, (hash, mark), now);
    if !opening {
        let rank = rank_word(now, class_of(entry.flags, true));
        let into = pending::PROMOTE_INTO_BUCKETS;
        pending::queue(state, into, vip_id, (&packet.key, &entry), rank, placed);
    }
    unchanged(entry.backend_id, known.backend, now, entry.hash)
}

/// Whether lbd is in SYN-flood mode (`CONFIG_F_SYN_FLOOD`): a SYN's
/// insert then goes to the half-open table alone.
#[inline(always)]
fn syn_flood() -> bool {
    CONFIG
        .get(0)
        .is_some_and(|config| config.flags & CONFIG_F_SYN_FLOOD != 0)
}

/// `FLOW_BUCKET_MASK`.
#[inline(always)]
fn bucket_mask() -> u32 {
    // SAFETY: a read of a global (volatile: the loader's value decides).
    unsafe { core::ptr::read_volatile(&FLOW_BUCKET_MASK) }
}

/// A queued insert into the bucket table (`pending::settle`), a function
/// of its own called from one place. Counted here: `ConntrackNew` when
/// the flow was inserted (`ConntrackHalfOpenNew` for a SYN's half-open
/// flow: it becomes a new flow at its ACK, `touch`; the claim counts
/// the open connections it evicts, `count_evicted`), `ConntrackHit` when
/// another CPU had just inserted it, `ConntrackInsertFailed` (and the
/// event) when every way was taken by writers (nothing for a SYN: its
/// flow then goes to the half-open table, `no_room`; no event for a
/// `promoting` ACK: its handshake stays tracked in the half-open table,
/// sent to its backend, for the next packet to promote). Returns the
/// claim's result (a value in the return register: the verifier refuses
/// a stack pointer left there).
#[inline(never)]
pub(super) fn insert_pending(pending: *mut PendingFlow) -> u32 {
    // A promotion (the handshake's ACK) is told from the slot, not from
    // an argument: a flag in a register, known on each of the caller's
    // paths, kept them apart in the verifier (~90 k more instructions).
    // SAFETY: this CPU's slot, filled by `queue`, still armed.
    let promoting = unsafe { pending::is_promotion(pending) };
    let slot = pending;
    // SAFETY: as above.
    let pending = unsafe { &*pending };
    let mask = bucket_mask();
    let (Some(first), Some(second)) = (
        FLOW_BUCKETS.get_ptr_mut(pending.first & mask),
        FLOW_BUCKETS.get_ptr_mut(pending.second & mask),
    ) else {
        stats::count(Counter::ConntrackInsertFailed);
        return CLAIM_CONTENDED;
    };
    // A flow of any protocol but TCP is queued established (`class_of`
    // knows no protocol) and goes in as a datagram flow, held to the UDP
    // horizon (`CLASS_ESTABLISHED` | 1 is `CLASS_DATAGRAM`). Here, not
    // where the packet path queues it: there the protocol is known on
    // each parser path, and the verifier walked each path's tail twice
    // (~49 k more instructions).
    let rank = pending.rank | u32::from(pending.key.proto != IPPROTO_TCP);
    // SAFETY: both are live elements of the table; key and entry are in
    // this CPU's slot (the key with the slot's provenance: the claim
    // reaches the slot's counters from it, `counters_of`).
    let rank_and_place = (u64::from(rank) << 32) | u64::from(pending.place);
    let placed = unsafe {
        let key = core::ptr::addr_of!((*slot).key);
        lb_flow_claim(first, second, key, &pending.entry, rank_and_place)
    };
    let half_open = rank_class(pending.rank) == CLASS_HALF_OPEN;
    match placed {
        CLAIM_INSERTED if half_open => stats::count(Counter::ConntrackHalfOpenNew),
        CLAIM_INSERTED => stats::count(Counter::ConntrackNew),
        CLAIM_CONTENDED if half_open => {}
        CLAIM_CONTENDED => {
            stats::count(Counter::ConntrackInsertFailed);
            // The event says a flow went untracked (forwarded by hash
            // only); a deferred promotion is still tracked.
            if !promoting {
                stats::report(EVENT_CONNTRACK_INSERT_FAILED, pending.vip_id, &pending.key);
            }
        }
        // Another CPU inserted it a moment ago: its entry stands.
        _ => stats::count(Counter::ConntrackHit),
    }
    placed
}

/// Whether `insert_pending`'s result says the flow was already there
/// (another CPU inserted it a moment ago).
#[inline(always)]
pub(super) fn found_at(placed: u32) -> bool {
    placed < CLAIM_INSERTED
}

/// Whether `insert_pending`'s result says the flow was not inserted (no
/// way it may take, or every way busy).
#[inline(always)]
pub(super) fn no_room(placed: u32) -> bool {
    placed == CLAIM_CONTENDED
}

/// `claim`: the flow was inserted.
const CLAIM_INSERTED: u32 = 0x100;
/// `claim`: not inserted (contended).
const CLAIM_CONTENDED: u32 = 0x200;

/// `flow_table::find_or_insert` as a function of its own: the position
/// the flow was found at (below `2 * FLOW_WAYS`), `CLAIM_INSERTED` or
/// `CLAIM_CONTENDED`, in one register. An insert that took the way of an
/// open connection counts it here (`ConntrackEvictedIdle`: idle past the
/// TCP horizon; `ConntrackEvictedLive`), when it takes it. `rank_and_place`: the rank word
/// (high 32 bits) and the flow's `table_hash` (low), in one argument
/// (five at most).
///
/// # Safety
/// `first`, `second`, `key` and `entry` must be valid (or null: refused).
#[unsafe(no_mangle)]
#[inline(never)]
pub unsafe extern "C" fn lb_flow_claim(
    first: *mut FlowBucket,
    second: *mut FlowBucket,
    key: *const FlowKey,
    entry: *const FlowEntry,
    rank_and_place: u64,
) -> u32 {
    if first.is_null() || second.is_null() || key.is_null() || entry.is_null() {
        return CLAIM_CONTENDED;
    }
    // SAFETY: `key` is the slot's, as `insert_pending` passes it.
    let counters = unsafe { counters_of(key) };
    // SAFETY: non-null, and valid per the contract.
    let (key, entry) = unsafe { (&*key, &*entry) };
    let (rank, place) = ((rank_and_place >> 32) as u32, rank_and_place as u32);
    // SAFETY: as above.
    // The idle horizons are read only if both buckets are full (an
    // expired flow is then evicted before any live one).
    match unsafe {
        flow_table::find_or_insert_within(
            first,
            second,
            key,
            entry,
            (rank, place),
            (idle_horizons, |tier| count_evicted(counters, tier)),
        )
    } {
        Placed::Found(pos) => (pos & (2 * FLOW_WAYS - 1)) as u32,
        Placed::Inserted(_) => CLAIM_INSERTED,
        Placed::Contended => CLAIM_CONTENDED,
    }
}

/// This CPU's counters (`PacketState::counters`), reached from `key`,
/// the queued flow's key in this CPU's `PACKET_STATE` slot
/// (`PendingFlow::key`): the claim counts its evictions there without a
/// map lookup (a lookup in the claim cost the verifier 8-11 k
/// instructions, past the suite's bound).
///
/// # Safety
/// `key` must point to `PendingFlow::key` of this CPU's slot, with the
/// slot's provenance.
#[inline(always)]
unsafe fn counters_of(key: *const FlowKey) -> *mut u64 {
    let offset =
        core::mem::offset_of!(PacketState, pending) + core::mem::offset_of!(PendingFlow, key);
    // SAFETY: per the contract, `offset` bytes into the same slot.
    unsafe { key.cast::<u8>().sub(offset).cast_mut().cast::<u64>() }
}

/// Counts, in `counters` (`counters_of`), an insert's eviction of a flow
/// of tier `tier` (`flow_table::TIER_*`) if it was an open connection:
/// `ConntrackEvictedIdle` (idle past the TCP horizon) or
/// `ConntrackEvictedLive`. A SYN's insert takes neither.
#[inline(always)]
fn count_evicted(counters: *mut u64, tier: u32) {
    // 1 where equal, else 0, without a branch: a branch here kept the
    // verifier's paths of the claim apart (8 k instructions).
    let is = |want: u32| (u64::from(tier ^ want)).wrapping_sub(1) >> 63;
    // SAFETY: counters of this CPU's slot (below `COUNTER_COUNT`;
    // per-CPU: no other writer).
    unsafe {
        *counters.add(Counter::ConntrackEvictedIdle as usize) += is(TIER_IDLE_OPEN);
        *counters.add(Counter::ConntrackEvictedLive as usize) += is(TIER_LIVE);
    }
}

/// A packet of a tracked flow (as `seen` in its bucket): its pinned
/// backend if alive (refreshing the entry), else a re-pin. A SYN
/// (`opening`) on a flow that is over (`lapsed`: closed, or idle past its
/// class's timeout) opens a new connection on the tuple (a client reusing
/// its port): it is re-pinned to Maglev's pick as well, so a drained or
/// reweighted backend is left by new connections, not only by new
/// tuples. So is any UDP packet of a flow idle past the UDP horizon
/// (UDP has no SYN: its next packet after the horizon is a new flow,
/// counted as one). A SYN on a live flow (a retransmitted SYN of a
/// handshake, or one a spoofer sends into a connection) keeps its
/// backend, as does any other TCP packet. The reopened connection is a
/// new flow: charged to its source's limits like one neither table
/// holds, once it has a backend (`picked`: a SYN's Maglev pick, made
/// before the lookup, found one; without, it is dropped for want of a
/// backend and takes no token). A reopened UDP flow is not charged again
/// (it was when it was first inserted, and it takes no more of the
/// table): a second call of the limiter on each UDP parser path cost the
/// verifier ~29 k instructions, past the suite's bound. Refused:
/// `refused` set to `DropRateLimited`, the entry left as it was. `mark`:
/// `Gate::mark`, for the entry; `state`: this CPU's, for the counters.
#[inline(always)]
fn tracked(
    vip: &VipMeta,
    packet: &Packet,
    (bucket, seen): (*mut FlowBucket, &Seen),
    (now, mark, opening, picked): (u64, u32, bool, bool),
    (refused, state): (&mut Counter, *mut PacketState),
) -> Option<Decision> {
    // Only a SYN or a UDP packet asks (and reads the idle horizons), and
    // it asks the tag the lookup has just read: no memory of the table
    // beyond the tracked path's own.
    let tcp = packet.key.proto == IPPROTO_TCP;
    // A UDP flow seen within `FLOW_TOUCH_INTERVAL_NS` is in time whatever
    // the horizon (lbd writes none shorter, `flow_table::horizon_ticks`):
    // its packets, nearly all of a busy flow's, read nothing more.
    let idle = now.wrapping_sub(seen.entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS;
    let reopening = (opening || (!tcp && idle)) && lapsed(seen.tag, now, tcp);
    let pinned = if reopening {
        None
    } else {
        pinned_backend(&seen.entry)
    };
    let Some(backend) = pinned else {
        if reopening && opening {
            // `repin_into` would find no backend either (the same hash).
            if !picked {
                return None;
            }
            // `repin_into` sees the flow reopened too (lapsed now, lapsed
            // then).
            if !limit::admit(vip.id, &packet.key) {
                *refused = Counter::DropRateLimited;
                return None;
            }
        }
        return repin(vip, packet, bucket, seen);
    };
    // SAFETY: `bucket` is a live element of the table.
    match unsafe { touch(bucket, seen, (packet.tcp_flags, mark, tcp), now) } {
        Touched::EndedHandshake => {
            // The client's ACK of a handshake this table held: the flow is
            // new to the connections now (one CPU counts it: the rerank's).
            state::count(state, Counter::ConntrackNew);
            state::count(state, Counter::ConntrackHalfOpenPromoted);
        }
        Touched::Refreshed => state::count(state, Counter::ConntrackHit),
    }
    Some(unchanged(
        seen.entry.backend_id,
        backend,
        now,
        seen.entry.hash,
    ))
}

/// A tracked flow whose backend is gone, or a packet reopening a tuple
/// whose flow is over (as `seen` in `bucket`; see `tracked`): hash again
/// and re-pin in place.
#[inline(always)]
fn repin(vip: &VipMeta, packet: &Packet, bucket: *mut FlowBucket, seen: &Seen) -> Option<Decision> {
    let mut out = core::mem::MaybeUninit::<Decision>::uninit();
    // SAFETY: `out` is written when `repin_into` says so.
    repin_into(vip, packet, bucket, seen, out.as_mut_ptr()).then(|| unsafe { out.assume_init() })
}

/// `repin`'s body, out of the packet path's frame: writes the decision
/// into `out` and says whether it did. A flag in a register rather than
/// the decision returned: five arguments fill BPF's argument registers,
/// and the verifier refuses a function that leaves a stack pointer in
/// its return register.
#[inline(never)]
fn repin_into(
    vip: &VipMeta,
    packet: &Packet,
    bucket: *mut FlowBucket,
    seen: &Seen,
    out: *mut Decision,
) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let entry = &seen.entry;
    let hash = flow_hash(&packet.key);
    let Some((backend_id, backend)) = select::pick_with(vip, &packet.key, hash) else {
        return false;
    };
    // A new connection (a SYN) or UDP flow on the tuple, not a lost
    // backend. The same test `tracked` made, at a time no earlier: an
    // entry over then is over now (unless a reload lengthened the horizon
    // in between). Made again here rather than passed: a flag known on
    // each of the caller's paths had the verifier walk this function
    // once for each value.
    let tcp = packet.key.proto == IPPROTO_TCP;
    let reopened = (packet.opens_tcp_flow() || !tcp) && lapsed(seen.tag, now, tcp);
    if reopened {
        if tcp {
            // A handshake held here, as a SYN inserted one would be (its
            // ACK counts it promoted).
            stats::count(Counter::ConntrackHit);
            stats::count(Counter::ConntrackHalfOpenNew);
        } else {
            stats::count(Counter::ConntrackNew);
        }
    } else {
        stats::count(Counter::ConntrackRehash);
    }
    let repinned = FlowEntry {
        backend_id,
        backend_generation: backend.generation,
        last_seen_ns: now,
        // The ACL mark stays: it is still what the flow passed under
        // (the next packet checks the lists if it is stale).
        flags: entry_flags(entry.flags, packet.tcp_flags, entry.flags & FLOW_F_ACL_MARK),
        hash,
    };
    let class = if reopened {
        // A SYN's handshake, or a datagram flow.
        class_of(repinned.flags, false) | (u32::from(!tcp) * CLASS_DATAGRAM)
    } else {
        next_class(seen, &repinned, (packet.tcp_flags, tcp))
    };
    let repinned = FlowEntry {
        flags: with_class(repinned.flags, class),
        ..repinned
    };
    let rank = rank_word(now, class);
    // SAFETY: a live element of the table. If the way changed meanwhile,
    // this packet still goes to the new pick; the next one looks again.
    let _ = unsafe { flow_table::rewrite(bucket, seen, &repinned, rank) };
    // SAFETY: `out` points to the caller's decision.
    unsafe {
        out.write(Decision {
            // A reopened tuple is a new connection or UDP flow: counted
            // as a new flow of its VIP and backend.
            new_flow: reopened,
            ..unchanged(backend_id, backend, now, hash)
        });
    }
    true
}

/// The eviction class of a flow still in time after this packet
/// (`tcp_flags`; `tcp`: a TCP packet): closed after FIN or RST,
/// established at the client's first ACK, a datagram flow for any packet
/// but TCP (a UDP flow an older lbd installed as established, see
/// `flow_table::CLASS_ESTABLISHED`, takes its class at its next refresh),
/// else as it was (a SYN reopening a tuple whose flow is over is
/// re-pinned as a handshake, `repin_into`).
#[inline(always)]
fn next_class(seen: &Seen, entry: &FlowEntry, (tcp_flags, tcp): (u8, bool)) -> u32 {
    let class = rank_class(tag_rank(seen.tag));
    if entry.flags & (FLOW_F_FIN | FLOW_F_RST) != 0 {
        CLASS_CLOSED
    } else if class == CLASS_HALF_OPEN && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_ACK {
        CLASS_ESTABLISHED
    } else {
        // `CLASS_ESTABLISHED` | 1 is `CLASS_DATAGRAM`.
        class | u32::from(!tcp)
    }
}

/// `flags` with `FLOW_F_HALF_OPEN` as eviction class `class` says.
#[inline(always)]
fn with_class(flags: u32, class: u32) -> u32 {
    if class == CLASS_HALF_OPEN {
        flags | FLOW_F_HALF_OPEN
    } else {
        flags & !FLOW_F_HALF_OPEN
    }
}

/// What `touch` did that the counters tell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Touched {
    /// Refreshed, or nothing to write.
    Refreshed,
    /// This packet ended a handshake (the client's ACK, or a FIN or RST).
    EndedHandshake,
}

/// Refreshes a tracked flow's age (at most every
/// `FLOW_TOUCH_INTERVAL_NS`), its FIN/RST marks, its ACL mark (`mark`,
/// `Gate::mark`) and its eviction class;
/// writes only what changed, so most packets of a flow write nothing. The
/// rank is set by a CAS from the tag `find` saw, so it never lands on a
/// way another CPU has taken since; changed flags are written under that
/// CAS's claim of the way (`flow_table::refresh`), a stale age alone by
/// the rank CAS and one store, as cheap as before. Whether this packet
/// ended a handshake (the client's ACK, or a FIN or RST); only the CPU
/// whose CAS did it is told. A flow that is over never gets here with a
/// SYN or a UDP packet (`tracked`). `tcp`: a TCP packet (see
/// `next_class`).
///
/// # Safety
/// `bucket` must be a live element of the table.
#[inline(always)]
unsafe fn touch(
    bucket: *mut FlowBucket,
    seen: &Seen,
    (tcp_flags, mark, tcp): (u8, u32, bool),
    now: u64,
) -> Touched {
    let entry = &seen.entry;
    let stale = now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS;
    let marked = FlowEntry {
        flags: entry_flags(entry.flags, tcp_flags, mark),
        ..*entry
    };
    let class = next_class(seen, &marked, (tcp_flags, tcp));
    let flags = with_class(marked.flags, class);
    let was = rank_class(tag_rank(seen.tag));
    if !stale && flags == entry.flags && class == was {
        return Touched::Refreshed;
    }
    // Changed flags are written under a claim of the way, never after a
    // bare rank CAS: another CPU may take the way between the two, and
    // the flags would land in its flow (`flow_table::begin_refresh`).
    // SAFETY: per the contract.
    if !unsafe { flow_table::refresh(bucket, seen, (now, flags), rank_word(now, class)) } {
        return Touched::Refreshed;
    }
    // The client's ACK, or its FIN or RST (the flow then closed): any
    // packet but a SYN ends the handshake, as it promotes a flow held in
    // the half-open table.
    if was == CLASS_HALF_OPEN && class != CLASS_HALF_OPEN {
        Touched::EndedHandshake
    } else {
        Touched::Refreshed
    }
}

/// See `conntrack::peek`.
#[inline(always)]
pub(super) fn peek(vip: &VipMeta, key: &FlowKey) -> Option<Decision> {
    // Both hashes up front (ICMP errors are rare; for IPv4 the two are
    // one, computed once): fewer values live across the lookups keeps
    // this frame small.
    let place = table_hash(key);
    let hash = flow_hash_after(key, place);
    if let Some((first, second)) = buckets_of(place) {
        // SAFETY: both are live elements of the table.
        if let Some((_, Seen { entry, .. })) =
            unsafe { flow_table::find_in(first, second, key, place) }
        {
            if let Some(backend) = pinned_backend(&entry) {
                return Some(unchanged(entry.backend_id, backend, 0, entry.hash));
            }
        }
    }
    if let Some(known) = half_open::known(key, hash, (half_open::PEEK, 0)) {
        return Some(unchanged(known.backend_id, known.backend, 0, hash));
    }
    let (backend_id, backend) = select::pick_with(vip, key, hash)?;
    Some(unchanged(backend_id, backend, 0, hash))
}
