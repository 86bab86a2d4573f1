//! What differs between the two hooks the decap program runs at beyond the
//! frame's bounds and verdicts (`lb_ebpf_frame::Frame`): how the outer
//! headers are removed, how the inner header is written (`ecn`), and how
//! an outcome becomes a verdict. `outer`, `inner`, `ecn` and `decap` are
//! generic over [`Hook`], so `xdp_decap` and `tc_decap` share one source.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
        BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_ADJ_ROOM_FIXED_GSO, BPF_F_RECOMPUTE_CSUM,
    },
    helpers::bpf_xdp_adjust_head,
    programs::{TcContext, XdpContext},
    EbpfContext as _,
};
use lb_common::decap::DecapCounter;
use lb_ebpf_frame::Frame;

use crate::parse::{ptr_at, ETH_LEN, ETH_P_IP, ETH_P_IPV6};

/// A packet context the decap program can run on.
pub trait Hook: Frame {
    /// Removes the `len` bytes right after the Ethernet header (the outer
    /// IP header and, for GUE, the UDP and GUE headers) and makes the
    /// Ethernet type say the inner family. False if the kernel refused;
    /// the frame is then as it was.
    fn strip(&self, len: u32, inner_v6: bool) -> bool;

    /// Writes the two bytes at `off` (inside the inner IP header, after
    /// `strip`): how `ecn` carries a congestion mark over. False if the
    /// bytes are not there.
    fn store_word(&self, off: usize, word: [u8; 2]) -> bool;
}

/// The Ethernet type of the inner packet.
#[inline(always)]
fn ether_type(inner_v6: bool) -> [u8; 2] {
    if inner_v6 {
        ETH_P_IPV6.to_be_bytes()
    } else {
        ETH_P_IP.to_be_bytes()
    }
}

impl Hook for XdpContext {
    /// The MAC addresses are copied out, the head moved past the outer
    /// headers, and the Ethernet header written again in front of the
    /// inner packet with the inner Ethernet type.
    #[inline(always)]
    fn strip(&self, len: u32, inner_v6: bool) -> bool {
        let Some(eth) = ptr_at::<[u8; 12], _>(self, 0) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let macs = unsafe { *eth };
        // SAFETY: helper on our own context; `len` is what the parser
        // found inside the frame.
        if unsafe { bpf_xdp_adjust_head(self.as_ptr().cast(), len as i32) } != 0 {
            return false;
        }
        // Packet pointers are invalid after the helper: checked again.
        let Some(eth) = ptr_at::<[u8; ETH_LEN], _>(self, 0) else {
            return false;
        };
        let kind = ether_type(inner_v6);
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let eth = &mut *eth;
            eth[..12].copy_from_slice(&macs);
            eth[12] = kind[0];
            eth[13] = kind[1];
        }
        true
    }

    /// A direct write (XDP has no checksum state to keep).
    #[inline(always)]
    fn store_word(&self, off: usize, word: [u8; 2]) -> bool {
        let Some(field) = ptr_at::<[u8; 2], _>(self, off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        unsafe { *field = word };
        true
    }
}

impl Hook for TcContext {
    /// `bpf_skb_adjust_room` at the MAC layer with the decap flag of the
    /// inner family (Linux 6.3; it also sets `skb->protocol`, so a 4in6
    /// packet reaches IPv4's receive path) and `BPF_F_ADJ_ROOM_FIXED_GSO`
    /// (a decap does not change the MSS of an aggregated packet), then
    /// the Ethernet type in the frame.
    #[inline(always)]
    fn strip(&self, len: u32, inner_v6: bool) -> bool {
        let family = if inner_v6 {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV6
        } else {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV4
        };
        if self
            .adjust_room(
                -(len as i32),
                BPF_ADJ_ROOM_MAC,
                u64::from(BPF_F_ADJ_ROOM_FIXED_GSO | family),
            )
            .is_err()
        {
            return false;
        }
        self.store(12, &ether_type(inner_v6), 0).is_ok()
    }

    /// `bpf_skb_store_bytes` with `BPF_F_RECOMPUTE_CSUM`: a CHECKSUM_COMPLETE
    /// skb's `csum` (the sum of everything after the Ethernet header) then
    /// follows the change, as the kernel's own tunnels keep it
    /// (`IP6_ECN_set_ce`); nothing to pull first, the helper works on any
    /// part of the skb.
    #[inline(always)]
    fn store_word(&self, off: usize, word: [u8; 2]) -> bool {
        self.store(off, &word, u64::from(BPF_F_RECOMPUTE_CSUM))
            .is_ok()
    }
}

/// The verdict for a final counter, on either hook: unwrapped packets and
/// packets that are not ours to judge go up the stack; the rest is dropped.
#[inline(always)]
pub fn verdict<C: Hook>(ctx: &C, counter: DecapCounter) -> C::Verdict {
    match counter {
        DecapCounter::DecapIpip
        | DecapCounter::DecapGue
        | DecapCounter::PassNotTunnel
        | DecapCounter::PassNotOurs => ctx.pass(),
        DecapCounter::DropNotVip
        | DecapCounter::DropMalformed
        | DecapCounter::DropUnsupported
        | DecapCounter::DropNotSource => ctx.drop_frame(),
    }
}

/// How much of a tc frame must be linear before the parser runs: more than
/// the deepest chain read (Ethernet, outer IPv6 + UDP + GUE, inner IPv6, an
/// ICMPv6 error quoting IPv6 and its ports).
const TC_LINEAR: u32 = 256;

/// The deepest byte the parser can read, each part at its largest:
/// Ethernet (14); the outer IP header, an IPv4 one with options (IHL 15:
/// 60; an outer IPv6 header is 40, or 48 with the fragment header read
/// before UDP); UDP (8); GUE variant 0 (4; variant 1 has none); the inner
/// IPv6 header (40; an inner IPv4 chain, at most 60 + an ICMP error
/// quoting IPv4 with options and its ports, 76, is shorter); four inner
/// IPv6 extension headers (`lb_ebpf_frame::ipv6_ext::EXT_MAX`) of at most
/// 2048 bytes each ((255 + 1) * 8); then an ICMPv6 error quoting IPv6 and
/// its ports (8 + 40 + 8 = 56).
const TC_LINEAR_MAX: u32 = 14 + 60 + 8 + 4 + 40 + 4 * 2048 + 56;

/// Makes the first `TC_LINEAR` bytes (or the whole frame) directly
/// readable; costs nothing when they already are.
#[inline(always)]
pub fn linearize(ctx: &TcContext) {
    let want = ctx.len().min(TC_LINEAR);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // A failure leaves the frame as it was; the parser then judges what
        // it can read.
        let _ = ctx.pull_data(want);
    }
}

/// For a frame judged malformed on its first `TC_LINEAR` bytes: makes up
/// to everything the parser can read directly readable (a long inner
/// extension-header chain reaches past `TC_LINEAR`; XDP sees the whole
/// frame). True if more became readable, so the frame is judged again;
/// only such frames pay for the larger pull.
#[inline(always)]
pub fn linearize_more(ctx: &TcContext) -> bool {
    let want = ctx.len().min(TC_LINEAR_MAX);
    ((ctx.data_end() - ctx.data()) as u32) < want && ctx.pull_data(want).is_ok()
}
