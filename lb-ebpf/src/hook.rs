//! The one thing that differs between the two hooks the packet path runs
//! at, beyond the frame's bounds and the pass and drop verdicts it shares
//! with the decap program (`lb_ebpf_frame::Frame`): which interface it came in on,
//! how checksums are patched, how the frame grows or shrinks (tunnel
//! headers, ICMP answers: `bpf_xdp_adjust_head/tail` at XDP,
//! `bpf_skb_adjust_room` with the encapsulation flags and
//! `bpf_skb_change_head/tail` at tc) and how an outcome becomes a verdict.
//! `forward`, `nat` and `parse` are generic over [`Hook`], so XDP and tc
//! share one source; each implementation is a handful of inlined accessors,
//! so the XDP path compiles to what it was before tc existed.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, BPF_F_ADJ_ROOM_FIXED_GSO,
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR,
    },
    helpers::{
        bpf_check_mtu, bpf_csum_update, bpf_redirect, bpf_skb_change_head, bpf_skb_change_tail,
        bpf_skb_vlan_pop, bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
    },
    programs::{TcContext, XdpContext},
};
use lb_common::stats::Counter;
use lb_ebpf_frame::{
    ipv6_ext::{NEXTHDR_DEST, NEXTHDR_HOP, NEXTHDR_ROUTING},
    Frame, ETH_P_IPV6,
};

use crate::{
    forward::Outcome,
    maps::TX_PORTS,
    nat::rewrite::csum_apply,
    parse::{ptr_at, ETH_P_8021AD, ETH_P_8021Q},
};

/// Whether a 32-bit one's-complement sum is zero (0x0000 or 0xffff once
/// folded to 16 bits): a checksum it is added to stays as it is.
#[inline(always)]
fn sums_to_zero(sum: u32) -> bool {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s == 0 || s == 0xffff
}

/// A packet context the balancer can run on (`EbpfContext`: helpers such
/// as the FIB lookup take the raw context).
pub trait Hook: Frame {
    /// Sent back out of the interface it came in on.
    fn bounce(&self) -> Self::Verdict;
    /// The interface the frame came in on: where routed packets' FIB
    /// lookups start, and how a next hop on the same interface is told
    /// from one that needs a redirect.
    fn ingress_ifindex(&self) -> u32;
    /// Sent out of another interface (`ifindex`), for routed packets.
    fn redirect(&self, ifindex: u32) -> Self::Verdict;
    /// Whether a forwarded packet with egress `ifindex` (0: the ingress
    /// interface) can leave by it: asked before the packet is counted as
    /// sent (`DropNoTxPort` if not), so the counters say what the verdict
    /// does.
    fn reaches(&self, ifindex: u32) -> bool;
    /// Adds `diff` (a one's-complement sum of `!old + new` words) to the
    /// IPv4 header checksum at `off`. False if it could not be done.
    fn l3_csum_add(&self, off: usize, diff: u32) -> bool;
    /// Adds to the TCP/UDP checksum at `off` the change of the
    /// pseudo-header (`pseudo`, addresses) and of the header itself
    /// (`plain`, ports). `udp`: a zero checksum (none, on IPv4) stays
    /// zero and a computed zero is written as 0xffff. False if it could not
    /// be done; at tc this invalidates packet pointers.
    fn l4_csum_add(&self, off: usize, pseudo: u32, plain: u32, udp: bool) -> bool;
    /// Adds `diff` (as for `l3_csum_add`) to the sum a CHECKSUM_COMPLETE
    /// skb carries of its packet from the IP header on (`skb->csum`), for
    /// a change `l4_csum_add` did not account there (see `nat::rewrite`).
    /// Nothing at XDP, nor at tc on an skb of another checksum state.
    fn complete_csum_add(&self, diff: u32);
    /// Makes room for `len` bytes right after the 14-byte Ethernet header
    /// (an encapsulation's outer headers; what lay there moves back).
    /// `flags`: the `BPF_F_ADJ_ROOM_*` flags saying what is pushed, so at
    /// tc a GSO packet stays segmentable (XDP ignores them). False if it
    /// could not be done; invalidates packet pointers.
    fn grow_after_mac(&self, len: u32, flags: u64) -> bool;
    /// Makes room for `len` bytes at the front of the frame (its whole
    /// content moves back). False if it could not be done; invalidates
    /// packet pointers.
    fn grow_head(&self, len: u32) -> bool;
    /// Cuts the frame to `len` bytes (at most its length). False if it
    /// could not be done; invalidates packet pointers.
    fn cut_to(&self, len: u32) -> bool;
    /// Makes the first `len` bytes directly readable (tc: pulls them into
    /// the linear part; XDP frames are linear). False if it could not be
    /// done; invalidates packet pointers.
    fn make_linear(&self, len: u32) -> bool;
    /// The segment payload size of a GSO packet (tc: a GRO'd skb), 0 for a
    /// single packet (always, at XDP).
    fn gso_size(&self) -> u32;
    /// The largest IP packet a frame without `gso_size` can carry as one
    /// packet on the wire, so a longer frame is an aggregate whose packets
    /// are at most this: at XDP the ingress device's MTU (generic XDP
    /// runs after GRO and sees its aggregates, with no segment size), at
    /// tc no bound (`u32::MAX`: an aggregate has its `gso_size`). A helper
    /// call at XDP: asked only of a frame already longer than a route's
    /// MTU.
    fn wire_mtu(&self) -> u32;
    /// Drops a VLAN tag held outside the frame (tc: an accelerated tag the
    /// device took off), so a packet leaving by another interface does not
    /// get it back. Nothing at XDP, where tags are in the frame.
    fn drop_offloaded_tag(&self);
    /// Takes every VLAN tag off a frame about to leave by another
    /// interface (a routed packet: its tags belong to the network it came
    /// from): the `tags` bytes of them in the frame (0, 4 or 8, between
    /// the MACs and the IP ethertype) and, at tc, one the device took off.
    /// False if it could not be done (then the frame is dropped);
    /// invalidates packet pointers.
    fn strip_tags(&self, tags: u32) -> bool;
    /// Readies a tagged frame for a wrap's grow (`grow_after_mac`): the
    /// `tags` bytes of VLAN tags in the frame (0, 4 or 8) and, at tc, one
    /// the device took off. Returns how many of the `tags` bytes are still
    /// in the frame, to count toward the room the outer header takes; None
    /// if it could not be done (then the frame is dropped). Invalidates
    /// packet pointers.
    fn untag_for_wrap(&self, tags: u32) -> Option<u32>;
}

impl Hook for XdpContext {
    #[inline(always)]
    fn bounce(&self) -> u32 {
        xdp_action::XDP_TX
    }

    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: the context pointer is the program's argument.
        unsafe { (*self.ctx).ingress_ifindex }
    }

    /// Through the `TX_PORTS` devmap (lbd fills it with the interfaces
    /// routed packets may leave by). The packet path asked `reaches`
    /// first, so the interface is there; one lbd took out in the instant
    /// between drops the frame (the fallback action in the flags' low
    /// bits: XDP_DROP, not XDP_ABORTED, and never the stack).
    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> u32 {
        match TX_PORTS.redirect(ifindex, u64::from(xdp_action::XDP_DROP)) {
            Ok(action) | Err(action) => action,
        }
    }

    /// The ingress interface (a bounce, no devmap), or one in `TX_PORTS`.
    #[inline(always)]
    fn reaches(&self, ifindex: u32) -> bool {
        ifindex == 0
            || ifindex == Hook::ingress_ifindex(self)
            || TX_PORTS.get_ifindex(ifindex).is_some()
    }

    /// Plain RFC 1624 arithmetic: an XDP frame carries no checksum state.
    #[inline(always)]
    fn l3_csum_add(&self, off: usize, diff: u32) -> bool {
        let Some(field) = ptr_at::<[u8; 2], _>(self, off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let field = unsafe { &mut *field };
        *field = csum_apply(u16::from_ne_bytes(*field), diff).to_ne_bytes();
        true
    }

    #[inline(always)]
    fn l4_csum_add(&self, off: usize, pseudo: u32, plain: u32, udp: bool) -> bool {
        let Some(field) = ptr_at::<[u8; 2], _>(self, off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let field = unsafe { &mut *field };
        let old = u16::from_ne_bytes(*field);
        if udp && old == 0 {
            return true;
        }
        let diff = u64::from(pseudo) + u64::from(plain);
        let diff = (diff & 0xffff_ffff) as u32 + (diff >> 32) as u32;
        let mut new = csum_apply(old, diff);
        if udp && new == 0 {
            new = 0xffff;
        }
        *field = new.to_ne_bytes();
        true
    }

    #[inline(always)]
    fn complete_csum_add(&self, _diff: u32) {}

    #[inline(always)]
    fn grow_after_mac(&self, len: u32, _flags: u64) -> bool {
        // The Ethernet header is written afresh after this, so moving
        // the start back is all it takes.
        self.grow_head(len)
    }

    #[inline(always)]
    fn grow_head(&self, len: u32) -> bool {
        // SAFETY: helper on our own context.
        unsafe { bpf_xdp_adjust_head(self.ctx, -(len as i32)) == 0 }
    }

    #[inline(always)]
    fn cut_to(&self, len: u32) -> bool {
        // Through memory: folded into one expression, the compiler would
        // subtract `data_end` from a scalar, which the verifier refuses.
        let have = Frame::frame_len(self) as i32;
        // SAFETY: a read of a local.
        let have = unsafe { core::ptr::read_volatile(&have) };
        // SAFETY: helper on our own context.
        unsafe { bpf_xdp_adjust_tail(self.ctx, len as i32 - have) == 0 }
    }

    #[inline(always)]
    fn make_linear(&self, _len: u32) -> bool {
        true
    }

    #[inline(always)]
    fn gso_size(&self) -> u32 {
        0
    }

    /// By `bpf_check_mtu` on the ingress device (ifindex 0); unknown
    /// (`u32::MAX`, the frame judged by its length) if the helper fails.
    #[inline(always)]
    fn wire_mtu(&self) -> u32 {
        let mut mtu: u32 = 0;
        // SAFETY: a helper on our own context, writing a local.
        let ret = unsafe { bpf_check_mtu(self.ctx.cast(), 0, &mut mtu, 0, 0) };
        if ret < 0 || mtu == 0 {
            u32::MAX
        } else {
            mtu
        }
    }

    #[inline(always)]
    fn drop_offloaded_tag(&self) {}

    /// Nothing: the tags stay, the outer header goes where they were (one
    /// `bpf_xdp_adjust_head` for the whole wrap).
    #[inline(always)]
    fn untag_for_wrap(&self, tags: u32) -> Option<u32> {
        Some(tags)
    }

    /// The MACs move forward over the tags, then the frame's start.
    #[inline(always)]
    fn strip_tags(&self, tags: u32) -> bool {
        let moved = match tags {
            0 => return true,
            4 => move_macs::<16>(self, 4),
            8 => move_macs::<20>(self, 8),
            _ => false,
        };
        // SAFETY: helper on our own context.
        moved && unsafe { bpf_xdp_adjust_head(self.ctx, tags as i32) == 0 }
    }
}

/// Copies the 12 bytes of MACs `by` bytes forward, within the first `N`
/// (`12 + by`) bytes of the frame. False if the frame is shorter.
#[inline(always)]
fn move_macs<const N: usize>(ctx: &XdpContext, by: usize) -> bool {
    let Some(head) = ptr_at::<[u8; N], _>(ctx, 0) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at; the MACs are copied out before
    // the (overlapping) write.
    let head = unsafe { &mut *head };
    let mut macs = [0u8; 12];
    macs.copy_from_slice(&head[..12]);
    head[by..by + 12].copy_from_slice(&macs);
    true
}

impl Hook for TcContext {
    /// To the egress of the ingress interface (TC_ACT_REDIRECT).
    #[inline(always)]
    fn bounce(&self) -> i32 {
        self.redirect(self.ingress_ifindex())
    }

    /// The device the skb is on: at tc ingress, the one it came in on
    /// (`ingress_ifindex`, the skb's `skb_iif`, is the same there, but a
    /// test run leaves it unset).
    #[inline(always)]
    #[allow(clippy::misnamed_getters)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: the context pointer is the program's argument.
        unsafe { (*self.skb.skb).ifindex }
    }

    /// To the egress of `ifindex` (TC_ACT_REDIRECT).
    #[inline(always)]
    fn redirect(&self, ifindex: u32) -> i32 {
        // SAFETY: a helper call with plain integers.
        unsafe { bpf_redirect(ifindex, 0) as i32 }
    }

    /// Always: `bpf_redirect` needs no map, and takes any index. (An
    /// index whose interface was deleted cannot be told here: the kernel
    /// drops such an skb after the program, in `skb_do_redirect`. A NAT
    /// flow's or tunnel hop's cached index is looked up again within
    /// `FLOW_TOUCH_INTERVAL_NS`, so that lasts at most about a second.)
    #[inline(always)]
    fn reaches(&self, _ifindex: u32) -> bool {
        true
    }

    /// Plain RFC 1624 arithmetic, as at XDP: `bpf_l3_csum_replace` does
    /// only this too (after making the header writable, which the
    /// program's direct writes of the addresses have already done). The
    /// IPv4 header checksum is never part of CHECKSUM_PARTIAL offload, and
    /// an edit of the header that patches its own checksum leaves the
    /// header's one's-complement sum, so a CHECKSUM_COMPLETE skb's
    /// `csum`, unchanged. One helper call less per packet.
    #[inline(always)]
    fn l3_csum_add(&self, off: usize, diff: u32) -> bool {
        let Some(field) = ptr_at::<[u8; 2], _>(self, off) else {
            return false;
        };
        // SAFETY: bounds checked by ptr_at.
        let field = unsafe { &mut *field };
        *field = csum_apply(u16::from_ne_bytes(*field), diff).to_ne_bytes();
        true
    }

    /// The kernel's helpers: on a CHECKSUM_PARTIAL skb (a local sender's
    /// offload, e.g. from a veth) the field holds only the pseudo-header's
    /// sum, so address changes must be applied differently and port changes
    /// not at all, which plain arithmetic cannot know. A `plain` change
    /// that sums to zero (ports unchanged, or NAT's checksum-neutral port,
    /// see `nat::ports`) changes nothing in either case: its call is
    /// skipped.
    #[inline(always)]
    fn l4_csum_add(&self, off: usize, pseudo: u32, plain: u32, udp: bool) -> bool {
        let zero = if udp {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        };
        self.l4_csum_replace(
            off,
            0,
            u64::from(pseudo),
            zero | u64::from(BPF_F_PSEUDO_HDR),
        )
        .is_ok()
            && (sums_to_zero(plain) || self.l4_csum_replace(off, 0, u64::from(plain), zero).is_ok())
    }

    /// `bpf_csum_update`, which adds to `skb->csum` on a CHECKSUM_COMPLETE
    /// skb and fails on any other (the failure is the "nothing" of the
    /// contract). Not `l4_csum_add`'s `BPF_F_IPV6` (Linux 6.16), which
    /// older kernels refuse. No call for a change that sums to zero.
    #[inline(always)]
    fn complete_csum_add(&self, diff: u32) {
        if !sums_to_zero(diff) {
            // SAFETY: a helper on our own skb; it touches no packet data.
            let _ = unsafe { bpf_csum_update(self.skb.skb, diff) };
        }
    }

    /// `bpf_skb_adjust_room` at the MAC header with the encapsulation
    /// flags (plus `BPF_F_ADJ_ROOM_FIXED_GSO`: a GRO'd packet keeps its
    /// segment size, the caller checked the segments fit).
    #[inline(always)]
    ///
    /// The kernel refuses the flags on an skb it already marks as
    /// encapsulated (a packet that came through another tunnel, or one
    /// this program wrapped before, as in a benchmark's repeated runs);
    /// a single (non-GSO) packet is then wrapped without them: they only
    /// steer segmentation.
    fn grow_after_mac(&self, len: u32, flags: u64) -> bool {
        let fixed = u64::from(BPF_F_ADJ_ROOM_FIXED_GSO);
        self.adjust_room(len as i32, BPF_ADJ_ROOM_MAC, flags | fixed)
            .is_ok()
            || (Hook::gso_size(self) == 0
                && self
                    .adjust_room(len as i32, BPF_ADJ_ROOM_MAC, fixed)
                    .is_ok())
    }

    #[inline(always)]
    fn grow_head(&self, len: u32) -> bool {
        // SAFETY: helper on our own context.
        unsafe { bpf_skb_change_head(self.skb.skb, len, 0) == 0 }
    }

    /// Also ends GSO for the skb (the kernel resets it on a cut).
    #[inline(always)]
    fn cut_to(&self, len: u32) -> bool {
        // SAFETY: helper on our own context.
        unsafe { bpf_skb_change_tail(self.skb.skb, len, 0) == 0 }
    }

    #[inline(always)]
    fn make_linear(&self, len: u32) -> bool {
        let want = self.len().min(len);
        ((self.data_end() - self.data()) as u32) >= want || self.pull_data(want).is_ok()
    }

    #[inline(always)]
    fn gso_size(&self) -> u32 {
        // SAFETY: the context pointer is the program's argument.
        unsafe { (*self.skb.skb).gso_size }
    }

    #[inline(always)]
    fn wire_mtu(&self) -> u32 {
        u32::MAX
    }

    #[inline(always)]
    fn drop_offloaded_tag(&self) {
        // SAFETY: the context pointer is the program's argument; the
        // helper works on our own skb.
        unsafe {
            if (*self.skb.skb).vlan_present != 0 {
                bpf_skb_vlan_pop(self.skb.skb);
            }
        }
    }

    /// By the kernel's `bpf_skb_vlan_pop`, once per tag: each call takes
    /// off the accelerated tag if there is one, else the first tag in the
    /// frame, and moves a tag still in the frame into the accelerated
    /// slot, so one call per tag leaves none.
    #[inline(always)]
    fn strip_tags(&self, tags: u32) -> bool {
        // SAFETY: the context pointer is the program's argument.
        let offloaded = unsafe { (*self.skb.skb).vlan_present } != 0;
        let pops = tags / 4 + u32::from(offloaded);
        for i in 0..3 {
            // SAFETY: a helper on our own skb.
            if i < pops && unsafe { bpf_skb_vlan_pop(self.skb.skb) } != 0 {
                return false;
            }
        }
        true
    }

    /// Every tag goes (`strip_tags`), so the grow is the whole outer
    /// header. The room helper refuses an skb whose protocol is a tag's,
    /// and popping only the accelerated tag (what `drop_offloaded_tag`
    /// does) is wrong for QinQ: the kernel took the outer tag off before
    /// tc (`skb_vlan_untag`), and the pop moves the inner one from the
    /// frame into the accelerated slot, so the frame would lose 4 bytes
    /// the room counted on (the outer header overwriting the inner IP
    /// header) and the tag would be put back on egress.
    #[inline(always)]
    fn untag_for_wrap(&self, tags: u32) -> Option<u32> {
        self.strip_tags(tags).then_some(0)
    }
}

/// The verdict for a final outcome, on either hook: forwarded packets go
/// out of `outcome.egress` (0, or the ingress interface: bounced back out
/// of it; another: redirected there).
#[inline(always)]
pub fn verdict<C: Hook>(ctx: &C, outcome: Outcome) -> C::Verdict {
    match outcome.counter {
        Counter::Forwarded
        | Counter::ForwardedIcmpError
        | Counter::ForwardedNatReply
        | Counter::ForwardedNatIcmpError
        | Counter::SentIcmpTooBig => {
            if outcome.egress == 0 || outcome.egress == ctx.ingress_ifindex() {
                ctx.bounce()
            } else {
                ctx.redirect(outcome.egress)
            }
        }
        Counter::DropMalformed
        | Counter::DropNoBackend
        | Counter::DropTcpFlags
        | Counter::DropNatPortsExhausted
        | Counter::DropNatTableFull
        | Counter::DropNoRoute
        | Counter::DropNoNeighbour
        | Counter::DropNatNoFlow
        | Counter::DropTtlExceeded
        | Counter::DropAclDenied
        | Counter::DropAclNotAllowed
        | Counter::DropRateLimited
        | Counter::DropTooBig
        | Counter::DropFragment
        | Counter::DropNoTxPort
        | Counter::DropInternal => ctx.drop_frame(),
        _ => ctx.pass(),
    }
}

/// How much of a tc frame must be linear before the parser runs: more
/// than the deepest header chain the parser reads without IPv6 extension
/// headers (Ethernet, two VLAN tags, IPv4 with options and an ICMP error
/// quoting IPv4 with options and its ports: 22 + 60 + 76 = 158; IPv6 and
/// an ICMPv6 error quoting IPv6 and its ports: 22 + 40 + 56 = 118).
const TC_LINEAR: u32 = 256;

/// The deepest byte the parser can read, each part at its largest:
/// Ethernet and two VLAN tags (22), the IPv6 header (40), four extension
/// headers (`lb_ebpf_frame::ipv6_ext::EXT_MAX`) of at most 2048 bytes each
/// ((255 + 1) * 8), then an ICMPv6 error quoting IPv6 and its ports
/// (8 + 40 + 8 = 56; a TCP header read is 20, UDP 8).
const TC_LINEAR_MAX: u32 = 14 + 8 + 40 + 4 * 2048 + 56;

/// Makes the first `TC_LINEAR` bytes (or the whole frame, if shorter)
/// directly readable; costs nothing when they already are, which is the
/// usual case. Headers past what could be pulled read as cut short.
///
/// An IPv6 frame whose first header after the IPv6 one is an extension
/// header the parser walks gets up to `TC_LINEAR_MAX` bytes instead: NICs
/// such as mlx5 or ice leave at most 256 bytes of a frame linear, and a
/// long chain (or the header after it) past them would read as cut short
/// and be dropped as malformed, whoever the frame is for, where XDP sees
/// the whole frame. Decided here, before the parser, rather than by
/// parsing again after a larger pull: the two ways through this function
/// leave the verifier the same state, where a second parse would double
/// what it checks after the parser (past the suite's bound). Only
/// non-linear frames look at their headers here, and only such IPv6
/// frames pay for the larger pull.
#[inline(always)]
pub fn linearize(ctx: &TcContext) {
    let want = ctx.len().min(TC_LINEAR);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // A failure leaves the frame as it was; the parser then judges
        // what it can read.
        let _ = ctx.pull_data(want);
    }
    let most = ctx.len().min(TC_LINEAR_MAX);
    if ((ctx.data_end() - ctx.data()) as u32) < most && starts_ipv6_ext_chain(ctx) {
        // As above: on failure the parser judges what it can read.
        let _ = ctx.pull_data(most);
    }
}

/// Whether the frame is IPv6 (untagged or under the tags `parse` reads:
/// an 802.1Q or 802.1ad one, then maybe an 802.1Q one) and its next
/// header is one the extension-header walk follows past (hop-by-hop,
/// routing, destination options). Constant offsets only, as the verifier
/// needs for packet reads.
#[inline(always)]
fn starts_ipv6_ext_chain(ctx: &TcContext) -> bool {
    // Ethernet, two tags, and the IPv6 header up to its next header.
    let Some(head) = ptr_at::<[u8; 14 + 8 + 7], _>(ctx, 0) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    let head = unsafe { &*head };
    let type_at = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
    let next = if type_at(12) == ETH_P_IPV6 {
        head[14 + 6]
    } else if type_at(12) != ETH_P_8021Q && type_at(12) != ETH_P_8021AD {
        return false;
    } else if type_at(16) == ETH_P_IPV6 {
        head[18 + 6]
    } else if type_at(16) == ETH_P_8021Q && type_at(20) == ETH_P_IPV6 {
        head[22 + 6]
    } else {
        return false;
    };
    matches!(next, NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST)
}
