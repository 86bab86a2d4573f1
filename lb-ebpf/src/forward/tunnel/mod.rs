//! Tunnelled direct server return (`Mode::Ipip`, `Mode::Gue`): the backend
//! is chosen exactly as for DSR at L2 (the connection table, Maglev; ICMP
//! errors about a flow go to its backend without touching its entry),
//! then the client's IP packet, untouched, is wrapped in an outer header
//! to the backend (`encap`) and sent to the backend's next hop (`hop`, a
//! per-CPU cache of FIB lookups). A packet that would not fit the route's
//! MTU once wrapped is answered with ICMP fragmentation-needed / ICMPv6
//! packet-too-big instead (`too_big`). `hc` runs the same encapsulation
//! for lbd's own health checks (the `tc_hc_encap` program).
//!
//! Two steps, for the verifier: the packet path (`forward`, inlined in
//! it) only picks the backend and leaves a `Job` in this CPU's packet
//! state (`state`), returning the marker outcome `PENDING`; the entry
//! point then runs `finish` on the same slot. So the wrapping code is
//! verified once (its inputs come from a map, not from each of the
//! parser's paths). The common case (a client's IPv4 packet wrapped in
//! IPIP for an IPv4 backend whose next hop is cached, see
//! `encap::send_lean`) runs inline in the entry point, with one helper
//! call (the grow) and no function call; every other case runs in
//! `finish_general`, a function of its own, so its stack
//! frames do not add to the packet path's (the BPF stack is 512 bytes for
//! a whole call chain). The entry point's own frame is part of every
//! chain, and the deepest of the others leave it 32 bytes (the verifier
//! refuses the object past that: "combined stack size ... Too large"),
//! so the lean path must not spill more than its map keys and a slot or
//! two.
//!
//! Limits, on purpose:
//! - VLAN tags of the client's frame are not carried into the tunnel (it
//!   leaves by a routed interface): at XDP their bytes make part of the
//!   room; at tc every tag (the one the device or the kernel took off,
//!   and any still in the frame: QinQ) is popped before the grow, since
//!   the kernel's room helper needs an IP skb (`Hook::untag_for_wrap`).
//! - An IPv6 extension chain longer than 256 bytes (where the transport
//!   header lies past what the path reads) goes up the stack
//!   (`PassIpv6Ext`), as in NAT mode: before the guards and the
//!   connection table (`forward::past_what_is_read`), uncharged.

mod encap;
pub mod hc;
mod hop;
mod outer;
// Also NAT's answer to a packet too big for its route (`nat::finish`).
pub(crate) mod too_big;

use core::ptr::addr_of;

use lb_common::{stats::Counter, FlowKey, Mode, VipMeta};

use crate::{
    conntrack::Decision,
    forward::Outcome,
    hook::Hook,
    maps::BACKENDS,
    parse::{Class, Packet},
    state::{self, PacketState},
    stats,
};

/// The outcome `forward` returns when the packet is to be wrapped: never
/// a verdict (`TunnelEncap` is an event counter), replaced by `finish`'s
/// outcome before anything is counted.
pub const PENDING: Counter = Counter::TunnelEncap;

/// `Job::flags`: GUE (else IPIP).
pub const JOB_GUE: u32 = 1;
/// `Job::flags`: a health check (never answered with ICMP, no traffic
/// counted).
pub const JOB_HC: u32 = 2;
/// `Job::flags`: an ICMP error about the flow.
pub const JOB_ICMP_ERROR: u32 = 4;
/// `Job::flags`: the flow was new to the connection table.
pub const JOB_NEW_FLOW: u32 = 8;

/// One packet to wrap, as the packet path leaves it for `finish`.
#[repr(C)]
pub struct Job {
    /// The packet's flow (for an ICMP error: the flow it is about).
    pub key: FlowKey,
    /// The backend's id: its record in `BACKENDS` (read again by `finish`
    /// rather than copied here: a copy measured slower than the lookup)
    /// and the hop cache's index.
    pub backend_id: u32,
    /// The VIP's id.
    pub vip_id: u32,
    /// Offset of the (inner) IP header.
    pub l3_off: u32,
    /// Offset of its transport (or ICMP) header.
    pub l4_off: u32,
    /// Where the FIB lookup starts.
    pub ifindex: u32,
    /// `JOB_*`.
    pub flags: u32,
    /// Length of the frame as it came (traffic counters).
    pub bytes: u32,
    /// The flow's `flow_hash` if the connection table knew it, else 0
    /// (computed where needed).
    pub hash: u32,
    /// `Decision::now` (0: read the clock when needed).
    pub now: u64,
}

/// Leaves the job of wrapping one packet of a tunnelled VIP for the
/// backend `decision` names in `job` (this CPU's) for `finish`
/// (returning `PENDING`).
#[inline(always)]
pub fn forward<C: Hook>(
    ctx: &C,
    vip: &VipMeta,
    packet: &Packet,
    decision: &Decision,
    job: &mut Job,
) -> Outcome {
    let mut flags = if vip.mode() == Mode::Gue as u32 {
        JOB_GUE
    } else {
        0
    };
    if packet.class == Class::IcmpError {
        flags |= JOB_ICMP_ERROR;
    }
    if decision.new_flow {
        flags |= JOB_NEW_FLOW;
    }
    job.key = packet.key;
    job.backend_id = decision.backend_id;
    job.vip_id = vip.id;
    job.l3_off = packet.l3_off as u32;
    job.l4_off = packet.l4_off as u32;
    job.ifindex = ctx.ingress_ifindex();
    job.flags = flags;
    job.bytes = ctx.frame_len() as u32;
    job.now = decision.now;
    job.hash = decision.hash;
    PENDING.into()
}

/// Wraps the packet `forward` left `job` (this CPU's) for and counts it:
/// the verdict (`Forwarded`, `ForwardedIcmpError`, `SentIcmpTooBig`, or
/// why not) and its egress interface. The common case
/// (`encap::send_lean`) runs here, inlined in the entry point, which
/// verifies it once and calls no function for it; every other case goes
/// to `finish_general`.
#[inline(always)]
pub fn finish<C: Hook>(ctx: &C, state: *mut PacketState) -> Outcome {
    // SAFETY: this CPU's packet state, from the entry point.
    let job = unsafe { &*addr_of!((*state).job) };
    // The packet path's pick (a backend removed since reads as gone).
    let Some(backend) = BACKENDS.get(job.backend_id) else {
        return Counter::DropNoBackend.into();
    };
    match encap::send_lean(ctx, job, backend) {
        Some(outcome) => counted(ctx, state, job, outcome),
        None => finish_general(ctx, state),
    }
}

/// `finish` for every case the lean path does not take. Not inlined:
/// see the module docs.
#[inline(never)]
fn finish_general<C: Hook>(ctx: &C, state: *mut PacketState) -> Outcome {
    // SAFETY: this CPU's packet state, from the entry point.
    let job = unsafe { &*addr_of!((*state).job) };
    let Some(backend) = BACKENDS.get(job.backend_id) else {
        return Counter::DropNoBackend.into();
    };
    let outcome = encap::send(ctx, job, backend);
    if outcome.counter == encap::TOO_BIG {
        return encap::answer_too_big(ctx, job, outcome.egress).into();
    }
    counted(ctx, state, job, outcome)
}

/// A wrapped packet's outcome, counted (the tunnel event in `state`, the
/// VIP's and backend's traffic) if it was forwarded and can leave by its
/// egress interface (else `DropNoTxPort`, nothing else counted); ICMP
/// errors about a flow are forwarded as such.
#[inline(always)]
fn counted<C: Hook>(ctx: &C, state: *mut PacketState, job: &Job, outcome: Outcome) -> Outcome {
    if outcome.counter != Counter::Forwarded {
        return outcome;
    }
    if !ctx.reaches(outcome.egress) {
        return Counter::DropNoTxPort.into();
    }
    state::count(state, Counter::TunnelEncap);
    stats::count_traffic(
        job.vip_id,
        job.backend_id,
        u64::from(job.bytes),
        job.flags & JOB_NEW_FLOW != 0,
    );
    if job.flags & JOB_ICMP_ERROR != 0 {
        Outcome {
            counter: Counter::ForwardedIcmpError,
            egress: outcome.egress,
        }
    } else {
        outcome
    }
}
