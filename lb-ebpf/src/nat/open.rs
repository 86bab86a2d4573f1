//! A new NAT flow: a source port (the reply entry is the reservation),
//! the forward entry with its next hop, then the packet.

// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the BPF stack (512 bytes for the whole program).
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::bindings::BPF_NOEXIST;
use lb_common::{
    consts::{AF_INET, AF_INET6, EVENT_NAT_PORTS_EXHAUSTED, NAT_DIR_FORWARD, NAT_DIR_REPLY},
    hash::flow_hash,
    stats::Counter,
    Backend, FlowKey, NatEntry, VipMeta,
};

use super::{
    flags::nat_flags,
    ports::{self, EEXIST},
    rewrite::{L3Info, Layout},
    scratch::NatScratch,
    send,
};
use crate::{
    fib,
    forward::Outcome,
    guard::limit,
    hook::Hook,
    maps::{NAT_FLOWS, NAT_SOURCES},
    parse::Packet,
    stats,
};

/// Opens a new flow: a source port (the reply entry), the forward entry
/// with its next hop, then the packet. Another CPU opening the same flow
/// at the same time wins: its entry is used and this one's port freed.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn open<C: Hook>(
    ctx: &C,
    scratch: &mut NatScratch,
    vip: &VipMeta,
    packet: &Packet,
    at: &Layout,
    l3: &L3Info,
    (backend_id, backend): (u32, &Backend),
    now: u64,
) -> Outcome {
    let key = &packet.key;
    if !limit::admit(vip.id, key) {
        return Counter::DropRateLimited.into();
    }
    let Some(source) = NAT_SOURCES.get(vip.id) else {
        return Counter::DropNatPortsExhausted.into();
    };
    let family_ok =
        source.family == key.family && (key.family == AF_INET || key.family == AF_INET6);
    if !family_ok {
        return Counter::DropNatPortsExhausted.into();
    }
    let backend_port = if backend.port != 0 {
        backend.port
    } else {
        key.dport
    };
    let vip_id = vip.id as u16;
    scratch.reply_key = FlowKey {
        src: backend.addr,
        dst: source.addr,
        sport: backend_port,
        dport: 0,
        proto: key.proto,
        family: key.family,
        _pad: 0,
    };
    scratch.reply = NatEntry {
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        backend_id,
        last_seen_ns: now,
        direction: NAT_DIR_REPLY,
        vip_id,
        ..NatEntry::default()
    };
    let port = match ports::reserve(
        &mut scratch.reply_key,
        &scratch.reply,
        source,
        flow_hash(key),
    ) {
        Ok(port) => port,
        Err(counter) => {
            if counter == Counter::DropNatPortsExhausted {
                stats::report(EVENT_NAT_PORTS_EXHAUSTED, vip.id, key);
            }
            return counter.into();
        }
    };
    scratch.entry = NatEntry {
        src: source.addr,
        dst: backend.addr,
        sport: port,
        dport: backend_port,
        backend_id,
        last_seen_ns: now,
        flags: nat_flags(packet.tcp_flags),
        direction: NAT_DIR_FORWARD,
        vip_id,
        ..NatEntry::default()
    };
    // The next hop before the insert, so the entry goes in with it (a
    // failure leaves it unset: the next packet looks again).
    let hop = fib::resolve(ctx, key, &mut scratch.entry, l3);
    match NAT_FLOWS.insert(key, &scratch.entry, u64::from(BPF_NOEXIST)) {
        Ok(()) => stats::count(Counter::NatNew),
        Err(e) => {
            let _ = NAT_FLOWS.remove(&scratch.reply_key);
            if e != EEXIST {
                return Counter::DropNatTableFull.into();
            }
            let Some(existing) = NAT_FLOWS.get_ptr_mut(key) else {
                return Counter::DropNatTableFull.into();
            };
            // SAFETY: a hash map value stays valid for this program run.
            let existing = unsafe { &mut *existing };
            stats::count(Counter::NatHit);
            return send(ctx, key, at, existing, l3, false, false, Counter::Forwarded);
        }
    }
    if let Err(counter) = hop {
        return counter.into();
    }
    send(
        ctx,
        key,
        at,
        &mut scratch.entry,
        l3,
        false,
        true,
        Counter::Forwarded,
    )
}
