//! The connection table as a kernel map (`CONNTRACK`: the shared LRU hash
//! lbd used before the bucket table, or the per-CPU LRU / plain hash lbd
//! can turn it into at load time): kept so `cargo xtask bench` measures
//! the designs side by side in one object.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns};
use lb_common::{
    consts::{FLOW_F_STATE, FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP},
    flow_table::{ESTABLISHED_IDLE_TICKS, TICK_SHIFT},
    hash::flow_hash,
    stats::Counter,
    FlowEntry, FlowKey, VipMeta,
};

use super::{
    admitted, entry_flags, half_open, insert_failed, inserted, new_entry, pinned_backend,
    unchanged, Decision,
};
use crate::{
    guard::{acl::Gate, limit},
    maps::CONNTRACK,
    parse::Packet,
    select,
    state::{self, PacketState},
    stats,
};

/// `-EEXIST`: the flow is already in the table.
const EEXIST: i32 = -17;

/// The backend of this packet's flow: the tracked one if it is still
/// alive, otherwise (a TCP flow the half-open table holds) its SYN's
/// backend, otherwise a fresh Maglev pick that is then remembered: a TCP
/// SYN in the half-open table (`half_open`), anything else here; the
/// lists (`conntrack::admitted`) right after the lookup. Inlined in the
/// packet path: a frame of its own (with the lists' below it) would put
/// the deepest call chain over BPF's 512 bytes of stack.
#[inline(always)]
pub(super) fn decide(
    vip: &VipMeta,
    packet: &Packet,
    gate: &Gate,
    refused: &mut Counter,
    state: *mut PacketState,
) -> Option<Decision> {
    let key = &packet.key;
    let found = CONNTRACK.get_ptr_mut(key);
    // SAFETY: the LRU map keeps the value alive for this program run.
    let marked = found.map(|entry| unsafe { (*entry).flags });
    if !admitted(gate, (marked, packet.opens_tcp_flow()), key, refused) {
        return None;
    }
    match found {
        // SAFETY: as above.
        Some(entry) => tracked(
            vip,
            packet,
            unsafe { &mut *entry },
            gate.mark(),
            (refused, state),
        ),
        None => untracked(vip, packet, gate.mark(), refused, state),
    }
}

/// A packet of a tracked flow (`entry`): its pinned backend if alive
/// (refreshing the entry), else a re-pin in place. A SYN on a flow that
/// is over (`lapsed`) opens a new connection on the tuple: re-pinned to
/// Maglev's pick too, as the bucket table does (`buckets::tracked`), and
/// charged to its source's limits as a new flow once it has a backend
/// (refused: `refused` set to `DropRateLimited`, the entry left as it
/// was). `state`: this CPU's, for the counters.
#[inline(always)]
fn tracked(
    vip: &VipMeta,
    packet: &Packet,
    entry: &mut FlowEntry,
    mark: u32,
    (refused, state): (&mut Counter, *mut PacketState),
) -> Option<Decision> {
    let reopened = packet.opens_tcp_flow() && lapsed(entry, now_ns());
    if !reopened {
        if let Some(backend) = pinned_backend(entry) {
            state::count(state, Counter::ConntrackHit);
            let now = touch(entry, packet.tcp_flags, mark);
            return Some(unchanged(entry.backend_id, backend, now, entry.hash));
        }
    }
    // The pinned backend is gone, or a new connection reuses the tuple:
    // hash again and re-pin in place.
    let (backend_id, backend, hash) = select::pick_hashed(vip, &packet.key)?;
    // A new connection pays once it has a backend (a SYN retried while
    // every backend is down takes no token).
    if reopened && !limit::admit(vip.id, &packet.key) {
        *refused = Counter::DropRateLimited;
        return None;
    }
    stats::count(if reopened {
        Counter::ConntrackHit
    } else {
        Counter::ConntrackRehash
    });
    entry.backend_id = backend_id;
    entry.backend_generation = backend.generation;
    entry.hash = hash;
    let now = touch(entry, packet.tcp_flags, mark);
    // A reopened tuple is a new connection: counted as a new flow of its
    // VIP and backend.
    Some(Decision {
        new_flow: reopened,
        ..unchanged(backend_id, backend, now, hash)
    })
}

/// A packet of a flow this table does not hold: its SYN's backend if the
/// half-open table holds it, else a Maglev pick, remembered (a SYN's
/// insert queued in `state`, this CPU's).
#[inline(always)]
fn untracked(
    vip: &VipMeta,
    packet: &Packet,
    mark: u32,
    refused: &mut Counter,
    state: *mut PacketState,
) -> Option<Decision> {
    let key = &packet.key;
    let hash = flow_hash(key);
    let tcp = key.proto == IPPROTO_TCP;
    let opening = packet.opens_tcp_flow();
    let now = now_ns();
    if tcp {
        // Found, the entry stays until the flow is in the LRU
        // (`from_half_open`).
        let how = if opening {
            half_open::SYN
        } else {
            half_open::LOOK
        };
        if let Some(known) = half_open::known(key, hash, (how, now)) {
            return Some(from_half_open(
                vip,
                packet,
                &known,
                opening,
                (now, hash, mark),
            ));
        }
    }
    let (backend_id, backend) = select::pick_with(vip, key, hash)?;
    // Only a flow neither table holds is charged for (`guard::limit`),
    // any packet that creates an entry, in flood mode too.
    if !limit::admit(vip.id, key) {
        *refused = Counter::DropRateLimited;
        return None;
    }
    let entry = new_entry(backend_id, backend, packet, (hash, mark), now);
    if opening {
        half_open::queue(state, vip.id, key, &entry, now);
        return Some(Decision {
            backend_id,
            backend,
            new_flow: true,
            now,
            hash,
        });
    }
    if CONNTRACK.insert(key, entry, 0).is_err() {
        return Some(insert_failed(vip, packet, backend_id, backend, hash));
    }
    Some(inserted(backend_id, backend, now, hash))
}

/// A packet of a flow the half-open table holds (`known`): to its SYN's
/// backend; unless it is a retransmitted SYN (`opening`), the flow enters
/// the table with that backend.
#[inline(always)]
fn from_half_open(
    vip: &VipMeta,
    packet: &Packet,
    known: &half_open::Known,
    opening: bool,
    (now, hash, mark): (u64, u32, u32),
) -> Decision {
    let entry = new_entry(known.backend_id, known.backend, packet, (hash, mark), now);
    if !opening {
        // BPF_NOEXIST: another CPU's copy, if it just inserted one, stands
        // (the same backend).
        match CONNTRACK.insert(packet.key, entry, u64::from(BPF_NOEXIST)) {
            Ok(()) => stats::count(Counter::ConntrackNew),
            Err(EEXIST) => stats::count(Counter::ConntrackHit),
            Err(_) => {
                half_open::release(&packet.key, hash);
                return insert_failed(vip, packet, entry.backend_id, known.backend, entry.hash);
            }
        }
        half_open::release(&packet.key, hash);
    }
    unchanged(entry.backend_id, known.backend, now, entry.hash)
}

/// The backend of a flow without changing anything: the tracked one if it
/// is still alive, else its SYN's if it is half-open, else Maglev's pick.
/// For packets that are about a flow without being part of it (ICMP
/// errors): they must reach its
/// backend, but neither create, refresh nor re-pin an entry.
#[inline(always)]
pub(super) fn peek(vip: &VipMeta, key: &FlowKey) -> Option<Decision> {
    // SAFETY: the value is copied out before any map update can free it.
    if let Some(entry) = unsafe { CONNTRACK.get(key) } {
        if let Some(backend) = pinned_backend(entry) {
            return Some(unchanged(entry.backend_id, backend, 0, entry.hash));
        }
    }
    let hash = flow_hash(key);
    if let Some(known) = half_open::known(key, hash, (half_open::PEEK, 0)) {
        return Some(unchanged(known.backend_id, known.backend, 0, hash));
    }
    let (backend_id, backend) = select::pick_with(vip, key, hash)?;
    Some(unchanged(backend_id, backend, 0, hash))
}

/// Refreshes the entry's age (rarely), its FIN/RST marks and its ACL mark
/// (`mark`, `Gate::mark`); returns the time it read. Ages use the
/// coarse clock (one tick of resolution, far finer than the one-second
/// touch interval): it is a plain read, where the precise clock costs a
/// clocksource read on every packet.
#[inline(always)]
fn touch(entry: &mut FlowEntry, tcp_flags: u8, mark: u32) -> u64 {
    let now = now_ns();
    if now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS {
        entry.last_seen_ns = now;
    }
    let flags = entry_flags(entry.flags, tcp_flags, mark);
    if flags != entry.flags {
        entry.flags = flags;
    }
    now
}

/// Whether the flow of `entry` is over at `now`: closed (FIN or RST
/// seen) or idle past the established timeout (this table holds no
/// handshakes: they wait in `half_open`).
#[inline(always)]
fn lapsed(entry: &FlowEntry, now: u64) -> bool {
    entry.flags & FLOW_F_STATE != 0
        || now.wrapping_sub(entry.last_seen_ns) > u64::from(ESTABLISHED_IDLE_TICKS) << TICK_SHIFT
}

/// The coarse clock (see `touch`).
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_coarse_ns() }
}
