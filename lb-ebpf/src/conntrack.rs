//! Connection table: pins each flow to the backend it started on, so a
//! change of the backend set moves no established flow (except flows of a
//! backend that is gone: those are hashed again).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{
    consts::{EVENT_CONNTRACK_INSERT_FAILED, FLOW_F_FIN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS},
    stats::Counter,
    Backend, FlowEntry, FlowKey, VipMeta,
};

use crate::{
    maps::CONNTRACK,
    parse::{Packet, TCP_FIN, TCP_RST},
    select, stats,
};

/// Where a flow goes, and whether it was new to the table.
pub struct Decision {
    /// Backend id.
    pub backend_id: u32,
    /// The backend.
    pub backend: Backend,
    /// True when the flow was not tracked before this packet.
    pub new_flow: bool,
}

/// The backend of this packet's flow: the tracked one if it is still
/// alive, otherwise a fresh Maglev pick that is then remembered.
#[inline(always)]
pub fn decide(vip: &VipMeta, packet: &Packet) -> Option<Decision> {
    let key = &packet.key;
    if let Some(entry) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: the LRU map keeps the value alive for this program run.
        let entry = unsafe { &mut *entry };
        if let Some(backend) = select::live_backend(entry.backend_id) {
            if backend.generation == entry.backend_generation {
                stats::count(Counter::ConntrackHit);
                touch(entry, packet.tcp_flags);
                return Some(Decision {
                    backend_id: entry.backend_id,
                    backend,
                    new_flow: false,
                });
            }
        }
        // The pinned backend is gone: hash again and re-pin in place.
        let (backend_id, backend) = select::pick(vip, key)?;
        stats::count(Counter::ConntrackRehash);
        entry.backend_id = backend_id;
        entry.backend_generation = backend.generation;
        touch(entry, packet.tcp_flags);
        return Some(Decision {
            backend_id,
            backend,
            new_flow: false,
        });
    }
    let (backend_id, backend) = select::pick(vip, key)?;
    let entry = FlowEntry {
        backend_id,
        backend_generation: backend.generation,
        // SAFETY: plain helper call.
        last_seen_ns: unsafe { bpf_ktime_get_ns() },
        flags: flow_flags(packet.tcp_flags),
        _pad: 0,
    };
    if CONNTRACK.insert(key, entry, 0).is_err() {
        stats::count(Counter::ConntrackInsertFailed);
        stats::report(EVENT_CONNTRACK_INSERT_FAILED, vip.id, key);
    } else {
        stats::count(Counter::ConntrackNew);
    }
    Some(Decision {
        backend_id,
        backend,
        new_flow: true,
    })
}

/// The backend of a flow without changing anything: the tracked one if it
/// is still alive, otherwise Maglev's pick. For packets that are about a
/// flow without being part of it (ICMP errors): they must reach its
/// backend, but neither create, refresh nor re-pin an entry.
#[inline(always)]
pub fn peek(vip: &VipMeta, key: &FlowKey) -> Option<Decision> {
    // SAFETY: the value is copied out before any map update can free it.
    if let Some(entry) = unsafe { CONNTRACK.get(key) } {
        if let Some(backend) = select::live_backend(entry.backend_id) {
            if backend.generation == entry.backend_generation {
                return Some(Decision {
                    backend_id: entry.backend_id,
                    backend,
                    new_flow: false,
                });
            }
        }
    }
    let (backend_id, backend) = select::pick(vip, key)?;
    Some(Decision {
        backend_id,
        backend,
        new_flow: false,
    })
}

/// Refreshes the entry's age (rarely) and its FIN/RST marks.
#[inline(always)]
fn touch(entry: &mut FlowEntry, tcp_flags: u8) {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS {
        entry.last_seen_ns = now;
    }
    let flags = flow_flags(tcp_flags);
    if flags & !entry.flags != 0 {
        entry.flags |= flags;
    }
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
