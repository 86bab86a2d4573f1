//! Data-path health checks (`tc_hc_encap`, tc egress on `lo` and on the
//! balancer's interface): lbd's own check connections to a VIP carry the
//! skb mark `tunnel::HC_MARK_BASE | backend id`; this wraps them for that
//! backend exactly as a client's packet is wrapped (`encap`), so a
//! backend is up only if it serves the VIP through the tunnel. Unmarked
//! packets cost one load and a compare and go on untouched.

use aya_ebpf::programs::TcContext;
use lb_common::{stats::Counter, tunnel, Mode};
use lb_ebpf_frame::{TC_ACT_SHOT, TC_ACT_UNSPEC};

use super::{encap, JOB_GUE, JOB_HC};

use crate::{
    forward::Outcome,
    hook::Hook,
    lookup,
    maps::{BACKENDS, TUNNEL_CONFIG},
    parse::{self, Class},
    state, stats,
};

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
    if prepare(ctx, backend_id) {
        let outcome = send(ctx);
        if outcome.counter == Counter::Forwarded {
            stats::count(Counter::HcEncap);
            // Wrapped once: unmarked, it passes this program untouched
            // where it leaves (the balancer's interface runs it too).
            ctx.set_mark(0);
            return ctx.redirect(outcome.egress);
        }
    }
    stats::count(Counter::HcDrop);
    TC_ACT_SHOT
}

/// Leaves the job of wrapping a marked packet for backend `backend_id`
/// in this CPU's packet state (`state`); false when it is not one to
/// wrap (not a TCP/UDP packet to a tunnelled VIP, or the backend is not
/// one of that VIP's).
/// Not inlined, nor is `send`: their frames are not stacked.
#[inline(never)]
fn prepare(ctx: &TcContext, backend_id: u32) -> bool {
    prepare_job(ctx, backend_id).is_some()
}

#[inline(always)]
fn prepare_job(ctx: &TcContext, backend_id: u32) -> Option<()> {
    let packet = parse::parse(ctx).ok()?;
    if packet.class != Class::Flow {
        return None;
    }
    let vip = lookup::vip_of(&packet.key)?;
    let gue = vip.mode == Mode::Gue as u32;
    if !gue && vip.mode != Mode::Ipip as u32 {
        return None;
    }
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
        return Counter::DropMalformed.into();
    };
    // SAFETY: this CPU's slot, written by this program run.
    let job = unsafe { &(*state).job };
    match BACKENDS.get(job.backend_id) {
        Some(backend) => encap::send(ctx, job, backend),
        None => Counter::DropNoBackend.into(),
    }
}
