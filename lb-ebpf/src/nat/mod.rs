//! NAT forwarding (full NAT): a client -> VIP packet leaves as NAT address
//! -> backend, the backend's reply comes back to the NAT address and
//! leaves as VIP -> client. Both directions are entries of `NAT_FLOWS`
//! keyed by the packet as it arrives, so both take the same code: look up,
//! mark what the flow has seen, find the next hop, rewrite. Backends need
//! no change and may be anywhere the FIB can route to.

// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the BPF stack (512 bytes for the whole program).
#![allow(clippy::needless_borrows_for_generic_args)]

mod icmp;
pub mod ports;
pub mod rewrite;
pub mod scratch;

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns};
use lb_common::{
    consts::{
        AF_INET, AF_INET6, EVENT_NAT_PORTS_EXHAUSTED, EVENT_NO_BACKEND, FLOW_TOUCH_INTERVAL_NS,
        IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED, NAT_F_RST,
        NAT_F_SYN,
    },
    hash::flow_hash,
    nat::counterpart_key,
    stats::Counter,
    Backend, FlowKey, NatEntry, VipMeta,
};

use crate::{
    fib,
    forward::Outcome,
    hook::Hook,
    maps::{NAT_FLOWS, NAT_SCRATCH, NAT_SOURCES},
    parse::{Class, Packet, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    select, stats,
};
use ports::EEXIST;
use rewrite::{L3Info, Layout};
use scratch::NatScratch;

/// Translates one packet of a NAT VIP (client -> VIP): through its flow's
/// entry, or a new flow's when the packet may open one (UDP, a TCP SYN).
#[inline(always)]
pub fn forward<C: Hook>(ctx: &C, vip: &VipMeta, packet: &Packet) -> Outcome {
    match packet.class {
        Class::Flow => {}
        Class::BadTcpFlags => return Counter::DropTcpFlags.into(),
        // About a flow without one: not ours, up the stack as before.
        Class::IcmpError => return error(ctx, packet, NAT_DIR_FORWARD, Counter::PassUnsupportedL4),
    }
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Counter::DropMalformed.into();
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let Some(at) = scratch::layout(scratch, packet) else {
        return Counter::PassIpv6Ext.into();
    };
    let Some(l3) = rewrite::l3_info(ctx, packet.key.family, &at) else {
        return Counter::DropMalformed.into();
    };
    if l3.ttl <= 1 {
        return Counter::DropTtlExceeded.into();
    }
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let key = &packet.key;
    if let Some(entry) = NAT_FLOWS.get_ptr_mut(key) {
        // SAFETY: a hash map value stays valid for this program run.
        let entry = unsafe { &mut *entry };
        stats::count(Counter::NatHit);
        if packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
            && entry.flags & (NAT_F_FIN | NAT_F_RST) != 0
        {
            reopen_reply(key, entry);
        }
        let refresh = touch(entry, packet.tcp_flags, 0, now);
        return send(
            ctx,
            &packet.key,
            &at,
            entry,
            &l3,
            refresh,
            false,
            Counter::Forwarded,
        );
    }
    if key.proto == IPPROTO_TCP && packet.tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return Counter::DropNatNoFlow.into();
    }
    let Some((backend_id, backend)) = select::pick(vip, key) else {
        stats::report(EVENT_NO_BACKEND, vip.id, key);
        return Counter::DropNoBackend.into();
    };
    open(
        ctx,
        scratch,
        vip,
        packet,
        &at,
        &l3,
        (backend_id, &backend),
        now,
    )
}

/// Translates a packet for no VIP if it is a backend's reply to a NAT'd
/// flow (backend -> NAT address, leaving as VIP -> client); anything else
/// goes up the stack as before.
#[inline(always)]
pub fn reply<C: Hook>(ctx: &C, packet: &Packet) -> Outcome {
    if packet.class == Class::IcmpError {
        return error(ctx, packet, NAT_DIR_REPLY, Counter::PassNotVip);
    }
    let Some(entry) = NAT_FLOWS.get_ptr_mut(&packet.key) else {
        return Counter::PassNotVip.into();
    };
    // SAFETY: a hash map value stays valid for this program run.
    let entry = unsafe { &mut *entry };
    if entry.direction != NAT_DIR_REPLY {
        return Counter::PassNotVip.into();
    }
    // From here on the packet belongs to a translated flow: it never
    // reaches the stack, which does not know the flow.
    if packet.class == Class::BadTcpFlags {
        return Counter::DropTcpFlags.into();
    }
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Counter::DropMalformed.into();
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let Some(at) = scratch::layout(scratch, packet) else {
        return Counter::PassIpv6Ext.into();
    };
    let Some(l3) = rewrite::l3_info(ctx, packet.key.family, &at) else {
        return Counter::DropMalformed.into();
    };
    if l3.ttl <= 1 {
        return Counter::DropTtlExceeded.into();
    }
    stats::count(Counter::NatHit);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let refresh = touch(entry, packet.tcp_flags, NAT_F_REPLIED, now);
    send(
        ctx,
        &packet.key,
        &at,
        entry,
        &l3,
        refresh,
        false,
        Counter::ForwardedNatReply,
    )
}

/// Translates an ICMP error about a NAT'd flow (see `icmp`): its key is
/// the direction `direction` of the flow; without one, `miss`. Reads the
/// flow's entry without changing it (an error is about a flow, not part of
/// it).
#[inline(always)]
fn error<C: Hook>(ctx: &C, packet: &Packet, direction: u8, miss: Counter) -> Outcome {
    let Some(entry) = NAT_FLOWS.get_ptr_mut(&packet.key) else {
        return miss.into();
    };
    // SAFETY: a hash map value stays valid for this program run.
    let entry = unsafe { &mut *entry };
    if entry.direction != direction {
        return miss.into();
    }
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Counter::DropMalformed.into();
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let Some(at) = scratch::layout(scratch, packet) else {
        return Counter::PassIpv6Ext.into();
    };
    let Some(l3) = rewrite::l3_info(ctx, packet.key.family, &at) else {
        return Counter::DropMalformed.into();
    };
    if l3.ttl <= 1 {
        return Counter::DropTtlExceeded.into();
    }
    if entry.ifindex == 0 {
        if let Err(counter) = fib::resolve(ctx, &packet.key, entry, &l3) {
            return counter.into();
        }
    }
    if !icmp::translate_error(ctx, &packet.key, &at, entry) {
        return Counter::DropMalformed.into();
    }
    Outcome {
        counter: Counter::ForwardedNatIcmpError,
        egress: entry.ifindex,
    }
}

/// Opens a new flow: a source port (the reply entry), the forward entry
/// with its next hop, then the packet. Another CPU opening the same flow
/// at the same time wins: its entry is used and this one's port freed.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn open<C: Hook>(
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

/// Sends a packet through its entry: the cached next hop, or a fresh FIB
/// lookup when there is none or `refresh` says it is time; then the
/// rewrite. `forwarded` is the verdict on success; forward-direction
/// packets count as VIP and backend traffic.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn send<C: Hook>(
    ctx: &C,
    key: &FlowKey,
    at: &Layout,
    entry: &mut NatEntry,
    l3: &L3Info,
    refresh: bool,
    new_flow: bool,
    forwarded: Counter,
) -> Outcome {
    if entry.ifindex == 0 || refresh {
        if let Err(counter) = fib::resolve(ctx, key, entry, l3) {
            return counter.into();
        }
    }
    if !rewrite::translate(ctx, key, at, entry) {
        return Counter::DropMalformed.into();
    }
    if entry.direction == NAT_DIR_FORWARD {
        stats::count_traffic(
            u32::from(entry.vip_id),
            entry.backend_id,
            ctx.frame_len() as u64,
            new_flow,
        );
    }
    Outcome {
        counter: forwarded,
        egress: entry.ifindex,
    }
}

/// Marks what a tracked direction has seen (`extra`: bits the direction
/// always sets, e.g. `NAT_F_REPLIED`) and refreshes its age at most every
/// `FLOW_TOUCH_INTERVAL_NS`; true when it did, which is also when the next
/// hop is looked up again. Writes only what changes.
#[inline(always)]
fn touch(entry: &mut NatEntry, tcp_flags: u8, extra: u8, now: u64) -> bool {
    let flags = if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        // A new connection reusing an old translation starts afresh.
        NAT_F_SYN | extra
    } else {
        entry.flags | (nat_flags(tcp_flags) & (NAT_F_FIN | NAT_F_RST)) | extra
    };
    if flags != entry.flags {
        entry.flags = flags;
    }
    if now.wrapping_sub(entry.last_seen_ns) > FLOW_TOUCH_INTERVAL_NS {
        entry.last_seen_ns = now;
        return true;
    }
    false
}

/// A SYN reusing a closed translation: the reply direction starts afresh
/// too (not yet answered, no FIN/RST), so the flow's state is the new
/// connection's, not the old one's.
#[inline(always)]
fn reopen_reply(key: &FlowKey, entry: &NatEntry) {
    if let Some(reply) = NAT_FLOWS.get_ptr_mut(&counterpart_key(key, entry)) {
        // SAFETY: a hash map value stays valid for this program run.
        unsafe { (*reply).flags = 0 };
    }
}

/// `NAT_F_*` bits for a packet's TCP flags (0 for UDP).
#[inline(always)]
fn nat_flags(tcp_flags: u8) -> u8 {
    let mut flags = 0;
    if tcp_flags & TCP_SYN != 0 {
        flags |= NAT_F_SYN;
    }
    if tcp_flags & TCP_FIN != 0 {
        flags |= NAT_F_FIN;
    }
    if tcp_flags & TCP_RST != 0 {
        flags |= NAT_F_RST;
    }
    flags
}
