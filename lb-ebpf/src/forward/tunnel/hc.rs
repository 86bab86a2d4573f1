//! Data-path health checks (`tc_hc_encap`, tc egress on `lo` and on the
//! balancer's interface): lbd's own check connections to a VIP carry the
//! skb mark `tunnel::HC_MARK_BASE | backend id`; this wraps them for that
//! backend exactly as a client's packet is wrapped (`encap`), so a
//! backend is up only if it serves the VIP through the tunnel. Unmarked
//! packets cost one load and a compare and go on untouched. So do marked
//! ones that are not this program's leaving on `lo`: every lbd of a
//! namespace runs its own copy on the egress of `lo`, one after the
//! other, and the mark does not say which lbd sent a packet, only its
//! destination does. Elsewhere (the balancer's interface) such a packet
//! is dropped (a check of this lbd's to a VIP it no longer tunnels, say,
//! which must not reach a balancer unwrapped).

use aya_ebpf::programs::TcContext;
use lb_common::{stats::Counter, tunnel, Mode, VipMeta};
use lb_ebpf_frame::{TC_ACT_SHOT, TC_ACT_UNSPEC};

use super::{encap, JOB_GUE, JOB_HC};

use crate::{
    forward::Outcome,
    hook::Hook,
    lookup,
    maps::{BACKENDS, TUNNEL_CONFIG},
    parse::{self, Class, Packet},
    state, stats,
};

/// The index of the loopback device `lo`, the same in every network
/// namespace: the kernel registers it first in each one and gives it this
/// index (`LOOPBACK_IFINDEX`, `loopback_net_init`); no other device can
/// have it.
const LOOPBACK_IFINDEX: u32 = 1;

/// What a marked packet is to this program.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prepared {
    /// Not a TCP/UDP packet to one of this program's tunnelled VIPs (its
    /// address, port and protocol): another lbd's check (on `lo`), a
    /// check of this lbd's whose VIP is gone or changed, or no check at
    /// all. No check of this lbd's is marked for a VIP that is not
    /// tunnelled (`through_tunnel` needs a tunnelled one).
    NotOurs,
    /// Ours, and its job is in this CPU's packet state: to be wrapped.
    Ready,
    /// Ours, but not to be wrapped: the mark names no backend of that VIP
    /// (or a gone one), or the packet is a TCP segment with flags no
    /// stack sends. Dropped, so that a check never bypasses the tunnel.
    Refused,
}

/// The program's verdict for one packet leaving the node.
#[inline(always)]
pub fn egress(ctx: &TcContext) -> i32 {
    // SAFETY: the context pointer is the program's argument.
    let mark = unsafe { (*ctx.skb.skb).mark };
    let Some(backend_id) = tunnel::hc_backend_of_mark(mark) else {
        // Not TC_ACT_OK: under tcx that ends the chain (see lb_ebpf_frame).
        return TC_ACT_UNSPEC;
    };
    crate::hook::linearize(ctx);
    match prepare(ctx, backend_id) {
        // On `lo`: left, mark and all, to the programs after this one
        // (another lbd's `tc_hc_encap`). Not counted: no counter fits
        // (`PassNotVip` is a verdict of the balancer's own packets).
        // Elsewhere (the balancer's interface, where the checks of a VRRP
        // backup leave: its VIPs are not local; an interface has one lbd,
        // a second is refused) it is no check another lbd's program would
        // wrap: a check of ours whose VIP a reload removed or changed
        // while its connection was open, say. Unwrapped it would reach
        // another balancer, which would answer it in its own mode: a
        // check passing without the tunnel. Dropped, counted.
        Prepared::NotOurs => {
            // SAFETY: the context pointer is the program's argument. At tc
            // egress, the index of the device the packet leaves by.
            if unsafe { (*ctx.skb.skb).ifindex } == LOOPBACK_IFINDEX {
                return TC_ACT_UNSPEC;
            }
        }
        Prepared::Ready => {
            let outcome = send(ctx);
            if outcome.counter == Counter::Forwarded {
                stats::count(Counter::HcEncap);
                // Wrapped once: unmarked, it passes this program untouched
                // where it leaves (the balancer's interface runs it too).
                ctx.set_mark(0);
                return ctx.redirect(outcome.egress);
            }
        }
        Prepared::Refused => {}
    }
    stats::count(Counter::HcDrop);
    TC_ACT_SHOT
}

/// Whether a marked packet is this program's to wrap for backend
/// `backend_id` (`Prepared`); when it is, leaves the job in this CPU's
/// packet state (`state`).
/// Not inlined, nor is `send`: their frames are not stacked.
#[inline(never)]
fn prepare(ctx: &TcContext, backend_id: u32) -> Prepared {
    let Some((packet, vip)) = to_tunnelled_vip(ctx) else {
        return Prepared::NotOurs;
    };
    if packet.class != Class::Flow {
        return Prepared::Refused;
    }
    match prepare_job(ctx, backend_id, &packet, &vip) {
        Some(()) => Prepared::Ready,
        None => Prepared::Refused,
    }
}

/// The packet and its VIP when it is a TCP/UDP packet to one of this
/// program's tunnelled VIPs; None for anything else (not IP, malformed,
/// ICMP, a fragment, another address, port or protocol, a VIP of
/// another mode).
#[inline(always)]
fn to_tunnelled_vip(ctx: &TcContext) -> Option<(Packet, VipMeta)> {
    let packet = parse::parse(ctx).ok()?;
    // An ICMP error's key is the flow it quotes, not its own destination.
    if packet.class == Class::IcmpError {
        return None;
    }
    let vip = lookup::vip_of(&packet.key)?;
    if vip.mode() != Mode::Gue as u32 && vip.mode() != Mode::Ipip as u32 {
        return None;
    }
    Some((packet, vip))
}

/// Leaves the job of wrapping `packet`, to tunnelled VIP `vip`, for
/// backend `backend_id` in this CPU's packet state; None when the
/// backend is not one of that VIP's (or, never in practice, the tunnel
/// config or this CPU's state cannot be read).
#[inline(always)]
fn prepare_job(ctx: &TcContext, backend_id: u32, packet: &Packet, vip: &VipMeta) -> Option<()> {
    let gue = vip.mode() == Mode::Gue as u32;
    // Any state but gone: checks of a backend that is down must still
    // reach it, that is how it comes back up.
    let backend = BACKENDS.get(backend_id)?;
    if u32::from(backend.vip_id) != vip.id || backend.generation == 0 {
        return None;
    }
    let config = TUNNEL_CONFIG.get(0)?;
    let state = state::this_cpu()?;
    // SAFETY: this CPU's slot, used by this program run only.
    let job = unsafe { &mut (*state).job };
    job.key = packet.key;
    job.backend_id = backend_id;
    job.vip_id = vip.id;
    job.l3_off = packet.l3_off as u32;
    job.l4_off = packet.l4_off as u32;
    job.ifindex = config.ifindex;
    job.flags = JOB_HC | if gue { JOB_GUE } else { 0 };
    job.bytes = ctx.len();
    job.now = 0;
    job.hash = 0;
    Some(())
}

/// The wrapping itself, in a function of its own as for client packets
/// (`finish`).
#[inline(never)]
fn send(ctx: &TcContext) -> Outcome {
    let Some(state) = state::this_cpu() else {
        return Counter::DropInternal.into();
    };
    // SAFETY: this CPU's slot, written by this program run.
    let job = unsafe { &(*state).job };
    match BACKENDS.get(job.backend_id) {
        Some(backend) => encap::send(ctx, job, backend),
        None => Counter::DropNoBackend.into(),
    }
}
