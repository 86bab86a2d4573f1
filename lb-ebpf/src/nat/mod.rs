//! NAT forwarding (full NAT): a client -> VIP packet leaves as NAT address
//! -> backend, the backend's reply comes back to the NAT address and
//! leaves as VIP -> client. Both directions are entries of the NAT flow
//! table (`table`, `NAT_BUCKETS`) keyed by the packet as it arrives, so
//! both take the same code: look up, mark what the flow has seen, find the
//! next hop, rewrite. Backends need no change and may be anywhere the FIB
//! can route to.
//!
//! Routed as a router would: a packet larger than its route's MTU (the
//! FIB's, cached in the entry with the next hop; at tc a GSO packet is
//! judged by its segments, at XDP a frame longer than the ingress
//! device's MTU, a GRO aggregate generic XDP sees, by that MTU) is not
//! sent. With DF (IPv4) or IPv6 it is
//! answered with ICMP fragmentation-needed / packet-too-big toward its
//! sender (the tunnel modes' answer, `too_big`: from the address it was
//! sent to, back out of the interface it came in on); IPv4 without DF
//! (the data plane cannot fragment) and ICMP errors are dropped
//! (`DropTooBig`). A packet leaving by another interface than it came in
//! on leaves without the VLAN tags of the network it came from; one sent
//! back out of its own (a backend on the clients' network) keeps them.

// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the BPF stack (512 bytes for the whole program).
#![allow(clippy::needless_borrows_for_generic_args)]

mod flags;
mod icmp;
mod open;
pub mod ports;
pub mod rewrite;
pub mod scratch;
mod table;

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use lb_common::{
    consts::{
        AF_INET, IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED, NAT_F_RST,
    },
    hash::table_hash,
    stats::Counter,
    FlowKey, NatEntry, VipMeta,
};
use lb_ebpf_frame::{ETH_LEN, UDP_LEN};

use crate::{
    fib,
    forward::{tunnel::too_big, Outcome},
    hook::Hook,
    maps::NAT_SCRATCH,
    parse::{ptr_at, Class, Packet, TCP_ACK, TCP_SYN},
    stats,
};
use rewrite::{L3Info, Layout};

/// What both directions need before translating: this CPU's scratch
/// slot, where the headers are, and a TTL / hop limit that survives the
/// hop; otherwise the counter saying why not.
#[inline(always)]
fn headers<C: Hook>(
    ctx: &C,
    packet: &Packet,
) -> Result<(&'static mut scratch::NatScratch, Layout, L3Info), Counter> {
    let scratch = NAT_SCRATCH.get_ptr_mut(0).ok_or(Counter::DropInternal)?;
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let at = scratch::layout(scratch, packet).ok_or(Counter::PassIpv6Ext)?;
    let l3 = rewrite::l3_info(ctx, packet.key.family, &at).ok_or(Counter::DropMalformed)?;
    if l3.ttl <= 1 {
        return Err(Counter::DropTtlExceeded);
    }
    Ok((scratch, at, l3))
}

/// The outcome `queue` returns for a NAT VIP's packet: never a verdict
/// (`NatHit` is an event counter), replaced by `finish`'s outcome before
/// anything is counted.
pub const PENDING_FORWARD: Counter = Counter::NatHit;
/// The same for a packet to no VIP that may be a NAT'd flow's reply.
pub const PENDING_REPLY: Counter = Counter::NatNew;

/// Leaves a packet for `finish` in this CPU's scratch slot: a NAT VIP's
/// (`vip`) or, with `None`, a possible reply. The NAT path then runs in a
/// frame of its own next to the packet path's, not under it (the BPF
/// stack is 512 bytes per call chain), as the tunnel modes' wrap does.
#[inline(always)]
pub fn queue(packet: &Packet, vip: Option<&VipMeta>) -> Outcome {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Counter::DropInternal.into();
    };
    // SAFETY: this CPU's slot, used by this program run only.
    unsafe {
        (*scratch).packet = *packet;
        if let Some(vip) = vip {
            (*scratch).vip = *vip;
        }
    }
    match vip {
        Some(_) => PENDING_FORWARD.into(),
        None => PENDING_REPLY.into(),
    }
}

/// What `send` returns for a packet too big for its route that is to be
/// answered (with the route's MTU in `egress`, the packet unchanged):
/// `finish` turns it into the answer, from one call site.
const TOO_BIG: Counter = Counter::SentIcmpTooBig;

/// Runs the NAT path for the packet `queue` left (`reply`: as a possible
/// reply); the outcome packed (`Outcome::packed`). What every outcome of
/// a kind needs before its verdict runs here, once, whichever path of the
/// translation produced it: the answer to a packet too big for its route
/// (`TOO_BIG`), and a packet leaving by another interface than it came in
/// on loses its VLAN tags.
#[inline(never)]
pub fn finish<C: Hook>(ctx: &C, reply: bool) -> u64 {
    let Some(scratch) = NAT_SCRATCH.get_ptr(0) else {
        return Outcome::from(Counter::DropInternal).packed();
    };
    // SAFETY: this CPU's slot, written by `queue` in this program run.
    // In place: a copy would take 72 bytes of this frame.
    let packet = unsafe { &*addr_of!((*scratch).packet) };
    let v4 = packet.key.family == AF_INET;
    let outcome = if reply {
        self::reply(ctx, packet)
    } else {
        forward(ctx, packet)
    };
    let forwarded = matches!(
        outcome.counter,
        Counter::Forwarded | Counter::ForwardedNatReply | Counter::ForwardedNatIcmpError
    );
    let too_big = outcome.counter == TOO_BIG;
    if !too_big && (!forwarded || outcome.egress == 0 || outcome.egress == ctx.ingress_ifindex()) {
        return outcome.packed();
    }
    // Written by `scratch::layout` for every packet that got this far;
    // read through memory, one bounded unknown for the verifier.
    // SAFETY: this CPU's slot, used by this program run only.
    let l3_off = unsafe { read_volatile(addr_of!((*scratch).l3_off)) };
    if !(ETH_LEN as u32..=L3_OFF_MAX).contains(&l3_off) {
        return Outcome::from(Counter::DropInternal).packed();
    }
    if too_big {
        // SAFETY: as above; `too_big` wrote the length.
        let len = unsafe { read_volatile(addr_of!((*scratch).too_big_len)) };
        let answer = too_big::reply(ctx, l3_off as usize, v4, len, outcome.egress);
        return Outcome::from(answer).packed();
    }
    if !ctx.strip_tags(l3_off - ETH_LEN as u32) {
        return Outcome::from(Counter::DropInternal).packed();
    }
    outcome.packed()
}

/// Largest IP header offset: Ethernet and two VLAN tags.
const L3_OFF_MAX: u32 = 22;

/// Translates one packet of a NAT VIP (client -> VIP): through its flow's
/// entry, or a new flow's when the packet may open one (UDP, a TCP SYN).
#[inline(always)]
pub fn forward<C: Hook>(ctx: &C, packet: &Packet) -> Outcome {
    match packet.class {
        Class::Flow => {}
        Class::BadTcpFlags => return Counter::DropTcpFlags.into(),
        // About a flow without one: not ours, up the stack as before.
        Class::IcmpError => return error(ctx, packet, NAT_DIR_FORWARD, Counter::PassUnsupportedL4),
    }
    let (_, at, l3) = match headers(ctx, packet) {
        Ok(found) => found,
        Err(counter) => return counter.into(),
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let key = &packet.key;
    let place = table_hash(key);
    if packet.opens_tcp_flow() {
        table::warm(place);
    }
    if let Some(entry) = table::find(key, place) {
        stats::count(Counter::NatHit);
        if packet.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            // Either side may have closed the old connection (a backend's
            // RST marks only the reply entry).
            flags::reopen_reply(key, entry, entry.flags & (NAT_F_FIN | NAT_F_RST) != 0, now);
        }
        let refresh = flags::touch(entry, packet.tcp_flags, 0, now);
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
    match open::open(now, place) {
        // The new entry's next hop is looked up by `send` (it is unset).
        Ok((entry, true)) => send(ctx, key, &at, entry, &l3, false, true, Counter::Forwarded),
        Ok((entry, false)) => {
            stats::count(Counter::NatHit);
            send(ctx, key, &at, entry, &l3, false, false, Counter::Forwarded)
        }
        Err(counter) => counter.into(),
    }
}

/// Translates a packet for no VIP if it is a backend's reply to a NAT'd
/// flow (backend -> NAT address, leaving as VIP -> client); anything else
/// goes up the stack as before.
#[inline(always)]
pub fn reply<C: Hook>(ctx: &C, packet: &Packet) -> Outcome {
    if packet.class == Class::IcmpError {
        return error(ctx, packet, NAT_DIR_REPLY, Counter::PassNotVip);
    }
    let Some(entry) = table::find(&packet.key, table_hash(&packet.key)) else {
        return Counter::PassNotVip.into();
    };
    if entry.direction != NAT_DIR_REPLY {
        return Counter::PassNotVip.into();
    }
    // From here on the packet belongs to a translated flow: it does not
    // reach the stack, which does not know the flow, but for one case
    // `headers` passes, as for a client's packet: an IPv6 extension chain
    // longer than the NAT path reads (`PassIpv6Ext`).
    if packet.class == Class::BadTcpFlags {
        return Counter::DropTcpFlags.into();
    }
    let (_, at, l3) = match headers(ctx, packet) {
        Ok(found) => found,
        Err(counter) => return counter.into(),
    };
    stats::count(Counter::NatHit);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let refresh = flags::touch(entry, packet.tcp_flags, NAT_F_REPLIED, now);
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
    let Some(entry) = table::find(&packet.key, table_hash(&packet.key)) else {
        return miss.into();
    };
    if entry.direction != direction {
        return miss.into();
    }
    let (_, at, l3) = match headers(ctx, packet) {
        Ok(found) => found,
        Err(counter) => return counter.into(),
    };
    if entry.ifindex == 0 {
        if let Err(counter) = fib::resolve(ctx, &packet.key, entry, &l3) {
            return counter.into();
        }
    }
    // Never an ICMP error about an ICMP error (RFC 1122).
    if entry.mtu != 0 && u32::from(l3.tot_len) > entry.mtu {
        return Counter::DropTooBig.into();
    }
    if !ctx.reaches(entry.ifindex) {
        return Counter::DropNoTxPort.into();
    }
    if !icmp::translate_error(ctx, &packet.key, &at, entry) {
        return Counter::DropInternal.into();
    }
    Outcome {
        counter: Counter::ForwardedNatIcmpError,
        egress: entry.ifindex,
    }
}

/// Sends a packet through its entry: the cached next hop, or a fresh FIB
/// lookup when there is none or `refresh` says it is time (a refresh that
/// finds no neighbour entry keeps the cached hop and sends, see
/// `fib::resolve`: only a flow without one drops); then, if it
/// fits the route's MTU, the rewrite (else `too_big`). `forwarded` is the
/// verdict on success; forward-direction packets count as VIP and
/// backend traffic.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn send<C: Hook>(
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
    // The packet's own length first: only one longer than the route's
    // MTU asks what it is on the wire.
    if entry.mtu != 0
        && u32::from(l3.tot_len) > entry.mtu
        && wire_len(ctx, key.proto, at, l3.tot_len) > entry.mtu
    {
        return too_big(l3, entry.mtu);
    }
    // Before the rewrite and the traffic counters: a packet that cannot
    // leave (XDP: no `TX_PORTS` slot for its interface) is no traffic.
    if !ctx.reaches(entry.ifindex) {
        return Counter::DropNoTxPort.into();
    }
    if !rewrite::translate(ctx, key, at, entry) {
        return Counter::DropInternal.into();
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

/// The size of the largest IP packet this one is on the wire: itself
/// (`tot_len`, from its header); at tc for a GSO packet one segment: the
/// headers up to the transport payload and `gso_size` bytes of it; at XDP
/// at most the ingress device's MTU (`Hook::wire_mtu`): a longer frame
/// is an aggregate generic XDP sees after GRO, whose packets came off the
/// wire no longer than that. Sent, it leaves as the GSO packet it still
/// is; note the kernel refuses a generic-XDP redirect of one longer than
/// the egress device's MTU (`xdp_ok_fwd_dev`): in generic mode bulk
/// traffic wants GRO off on the ingress device, or the tc hook.
#[inline(always)]
fn wire_len<C: Hook>(ctx: &C, proto: u8, at: &Layout, tot_len: u16) -> u32 {
    let tot_len = u32::from(tot_len);
    let gso = ctx.gso_size();
    if gso == 0 {
        return tot_len.min(ctx.wire_mtu());
    }
    let l4_header = if proto == IPPROTO_TCP {
        match ptr_at::<[u8; 13], C>(ctx, at.l4_off) {
            // SAFETY: bounds checked by ptr_at.
            Some(tcp) => u32::from(unsafe { (*tcp)[12] } >> 4) * 4,
            None => return tot_len,
        }
    } else {
        UDP_LEN as u32
    };
    ((at.l4_off - at.l3_off) as u32 + l4_header + gso).min(tot_len)
}

/// The outcome for a packet too big for its route (`mtu`): to be answered
/// (`TOO_BIG`, its length left in the scratch slot for `finish`) if it may
/// be, else `DropTooBig` (IPv4 without DF: a router would fragment it,
/// which the data plane cannot).
#[inline(always)]
fn too_big(l3: &L3Info, mtu: u32) -> Outcome {
    if !l3.df {
        return Counter::DropTooBig.into();
    }
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Counter::DropInternal.into();
    };
    // SAFETY: this CPU's slot, used by this program run only; volatile,
    // as `finish` reads it back.
    unsafe { write_volatile(addr_of_mut!((*scratch).too_big_len), u32::from(l3.tot_len)) };
    Outcome {
        counter: TOO_BIG,
        egress: mtu,
    }
}
