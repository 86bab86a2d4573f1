//! Connection table: pins each flow to the backend it started on, so a
//! change of the backend set moves no established flow (except flows of a
//! backend that is gone: those are hashed again).

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns};
use lb_common::{
    consts::{EVENT_CONNTRACK_INSERT_FAILED, FLOW_F_FIN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS},
    stats::Counter,
    Backend, FlowEntry, FlowKey, VipMeta,
};

use crate::{
    maps::CONNTRACK,
    parse::{Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    select, stats,
};

/// `-EEXIST`: the flow is already in the table.
const EEXIST: i32 = -17;

/// Where a flow goes, and whether it was new to the table.
pub struct Decision {
    /// Backend id.
    pub backend_id: u32,
    /// The backend.
    pub backend: Backend,
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
/// alive, otherwise a fresh Maglev pick that is then remembered.
#[inline(always)]
pub fn decide(vip: &VipMeta, packet: &Packet) -> Option<Decision> {
    // A SYN without ACK opens a flow: insert straight away (the kernel's
    // own lookup refuses a duplicate), which saves a lookup that would
    // miss. A retransmitted SYN finds its entry and takes the tracked path.
    if packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        let key = &packet.key;
        let (backend_id, backend, hash) = select::pick_hashed(vip, key)?;
        let entry = new_entry(backend_id, &backend, packet, hash);
        let now = entry.last_seen_ns;
        match CONNTRACK.insert(key, entry, u64::from(BPF_NOEXIST)) {
            Ok(()) => {
                stats::count(Counter::ConntrackNew);
                return Some(Decision {
                    backend_id,
                    backend,
                    new_flow: true,
                    now,
                    hash,
                });
            }
            Err(EEXIST) => {}
            Err(_) => return Some(insert_failed(vip, packet, backend_id, backend, hash)),
        }
    }
    tracked_or_new(vip, packet)
}

/// The general path: look the flow up, insert it if it is new.
#[inline(always)]
fn tracked_or_new(vip: &VipMeta, packet: &Packet) -> Option<Decision> {
    let key = &packet.key;
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: the LRU map keeps the value alive for this program run.
        let entry = unsafe { &mut *entry };
        if let Some(backend) = pinned_backend(entry) {
            stats::count(Counter::ConntrackHit);
            let now = touch(entry, packet.tcp_flags);
            return Some(Decision {
                backend_id: entry.backend_id,
                backend,
                new_flow: false,
                now,
                hash: entry.hash,
            });
        }
        // The pinned backend is gone: hash again and re-pin in place.
        let (backend_id, backend, hash) = select::pick_hashed(vip, key)?;
        stats::count(Counter::ConntrackRehash);
        entry.backend_id = backend_id;
        entry.backend_generation = backend.generation;
        entry.hash = hash;
        let now = touch(entry, packet.tcp_flags);
        return Some(Decision {
            backend_id,
            backend,
            new_flow: false,
            now,
            hash,
        });
    }
    let (backend_id, backend, hash) = select::pick_hashed(vip, key)?;
    let entry = new_entry(backend_id, &backend, packet, hash);
    let now = entry.last_seen_ns;
    if CONNTRACK.insert(key, entry, 0).is_err() {
        return Some(insert_failed(vip, packet, backend_id, backend, hash));
    }
    stats::count(Counter::ConntrackNew);
    Some(Decision {
        backend_id,
        backend,
        new_flow: true,
        now,
        hash,
    })
}

#[inline(always)]
fn new_entry(backend_id: u32, backend: &Backend, packet: &Packet, hash: u32) -> FlowEntry {
    FlowEntry {
        backend_id,
        backend_generation: backend.generation,
        // SAFETY: plain helper call.
        last_seen_ns: unsafe { bpf_ktime_get_coarse_ns() },
        flags: flow_flags(packet.tcp_flags),
        hash,
    }
}

/// A full table (plain hash) or a failed allocation: the flow still goes
/// to its Maglev backend, untracked; counted and reported.
#[inline(always)]
fn insert_failed(
    vip: &VipMeta,
    packet: &Packet,
    backend_id: u32,
    backend: Backend,
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

/// The backend of a flow without changing anything: the tracked one if it
/// is still alive, otherwise Maglev's pick. For packets that are about a
/// flow without being part of it (ICMP errors): they must reach its
/// backend, but neither create, refresh nor re-pin an entry.
#[inline(always)]
pub fn peek(vip: &VipMeta, key: &FlowKey) -> Option<Decision> {
    // SAFETY: the value is copied out before any map update can free it.
    if let Some(entry) = unsafe { CONNTRACK.get(key) } {
        if let Some(backend) = pinned_backend(entry) {
            return Some(Decision {
                backend_id: entry.backend_id,
                backend,
                new_flow: false,
                now: 0,
                hash: entry.hash,
            });
        }
    }
    let (backend_id, backend, hash) = select::pick_hashed(vip, key)?;
    Some(Decision {
        backend_id,
        backend,
        new_flow: false,
        now: 0,
        hash,
    })
}

/// The backend a tracked flow is pinned to, if it is still alive and still
/// the same backend (not a later one that reuses its id).
#[inline(always)]
fn pinned_backend(entry: &FlowEntry) -> Option<Backend> {
    let backend = select::live_backend(entry.backend_id)?;
    (backend.generation == entry.backend_generation).then_some(backend)
}

/// Refreshes the entry's age (rarely) and its FIN/RST marks; returns the
/// time it read. Ages use the
/// coarse clock (one tick of resolution, far finer than the one-second
/// touch interval): it is a plain read, where the precise clock costs a
/// clocksource read on every packet.
#[inline(always)]
fn touch(entry: &mut FlowEntry, tcp_flags: u8) -> u64 {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS {
        entry.last_seen_ns = now;
    }
    let flags = flow_flags(tcp_flags);
    if flags & !entry.flags != 0 {
        entry.flags |= flags;
    }
    now
}

#[inline(always)]
fn flow_flags(tcp_flags: u8) -> u32 {
    let mut flags = 0;
    if tcp_flags & TCP_FIN != 0 {
        flags |= FLOW_F_FIN;
    }
    if tcp_flags & TCP_RST != 0 {
        flags |= FLOW_F_RST;
    }
    flags
}
