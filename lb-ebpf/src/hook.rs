//! The one thing that differs between the two hooks the packet path runs
//! at: where the frame is, how long it is, and how an outcome becomes a
//! verdict. `forward` and `parse` are generic over [`Hook`], so XDP and tc
//! share one source; each implementation is a handful of inlined accessors,
//! so the XDP path compiles to what it was before tc existed.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    programs::{TcContext, XdpContext},
};
use lb_common::stats::Counter;

/// `TC_ACT_OK` (linux/pkt_cls.h): continue, up the stack. Spelt here
/// because the bindings type it differently per target.
const TC_ACT_OK: i32 = 0;
/// `TC_ACT_SHOT`: drop.
const TC_ACT_SHOT: i32 = 2;

/// A packet context the balancer can run on.
pub trait Hook {
    /// What the program returns.
    type Verdict;
    /// Start of the directly readable (linear) frame.
    fn data(&self) -> usize;
    /// End of the directly readable frame.
    fn data_end(&self) -> usize;
    /// Length of the whole frame: for tc, the linear part may be shorter
    /// (the length fields of the headers are checked against this).
    fn frame_len(&self) -> usize;
    /// Up the stack untouched.
    fn pass(&self) -> Self::Verdict;
    /// Dropped.
    fn drop_frame(&self) -> Self::Verdict;
    /// Sent back out of the interface it came in on.
    fn bounce(&self) -> Self::Verdict;
}

impl Hook for XdpContext {
    type Verdict = u32;

    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        XdpContext::data_end(self) - XdpContext::data(self)
    }

    #[inline(always)]
    fn pass(&self) -> u32 {
        xdp_action::XDP_PASS
    }

    #[inline(always)]
    fn drop_frame(&self) -> u32 {
        xdp_action::XDP_DROP
    }

    #[inline(always)]
    fn bounce(&self) -> u32 {
        xdp_action::XDP_TX
    }
}

impl Hook for TcContext {
    type Verdict = i32;

    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }

    #[inline(always)]
    fn frame_len(&self) -> usize {
        TcContext::len(self) as usize
    }

    #[inline(always)]
    fn pass(&self) -> i32 {
        TC_ACT_OK
    }

    #[inline(always)]
    fn drop_frame(&self) -> i32 {
        TC_ACT_SHOT
    }

    /// To the egress of the ingress interface (TC_ACT_REDIRECT).
    #[inline(always)]
    fn bounce(&self) -> i32 {
        // SAFETY: the context pointer is the program's argument.
        let ifindex = unsafe { (*self.skb.skb).ifindex };
        // SAFETY: a helper call with plain integers.
        unsafe { bpf_redirect(ifindex, 0) as i32 }
    }
}

/// The verdict for a final counter, on either hook.
#[inline(always)]
pub fn verdict<C: Hook>(ctx: &C, outcome: Counter) -> C::Verdict {
    match outcome {
        Counter::Forwarded | Counter::ForwardedIcmpError => ctx.bounce(),
        Counter::DropMalformed | Counter::DropNoBackend | Counter::DropTcpFlags => ctx.drop_frame(),
        _ => ctx.pass(),
    }
}

/// How much of a tc frame must be linear before the parser runs: more
/// than the deepest header chain the parser reads in practice (Ethernet,
/// two VLAN tags, IPv6, extension headers, an ICMP error quoting IPv6 and
/// its ports).
const TC_LINEAR: u32 = 256;

/// Makes the first `TC_LINEAR` bytes (or the whole frame, if shorter)
/// directly readable; costs nothing when they already are, which is the
/// usual case. Headers past what could be pulled read as cut short.
#[inline(always)]
pub fn linearize(ctx: &TcContext) {
    let want = ctx.len().min(TC_LINEAR);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // A failure leaves the frame as it was; the parser then judges
        // what it can read.
        let _ = ctx.pull_data(want);
    }
}
