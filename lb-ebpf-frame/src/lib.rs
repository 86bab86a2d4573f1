//! The part of a packet context that both eBPF programs of this workspace
//! use the same way at either hook: the balancer (`lb-ebpf`) and the
//! backend's decap (`lb-decap-ebpf`) each extend [`Frame`] with what only
//! they do (forwarding, rewriting, stripping tunnels), and read the frame
//! through one bounds-checked [`ptr_at`]; the headers both read alike are
//! parsed here too: IPv6 extension-header chains ([`ipv6_ext`]) and the
//! quotes of ICMP errors ([`icmp_error`]). Every item is inlined, so each
//! program compiles to what it would with its own copy.
#![no_std]

pub mod icmp_error;
pub mod ipv6_ext;

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    programs::{TcContext, XdpContext},
    EbpfContext,
};

/// `TC_ACT_OK` (linux/pkt_cls.h): up the stack, but under tcx it is
/// `TCX_PASS`, which also ends the tcx chain: programs attached after ours
/// never see the packet. Not a pass verdict here (see [`TC_ACT_UNSPEC`]).
/// Spelt here because the bindings type it differently per target.
pub const TC_ACT_OK: i32 = 0;
/// `TC_ACT_UNSPEC` (linux/pkt_cls.h), `TCX_NEXT` under tcx: the next tcx
/// program runs, then legacy tc filters, then the stack takes the packet
/// as usual. The tc pass verdict: a program attached after ours (Cilium,
/// monitoring) still sees what we let through.
pub const TC_ACT_UNSPEC: i32 = -1;
/// `TC_ACT_SHOT` (linux/pkt_cls.h): drop.
pub const TC_ACT_SHOT: i32 = 2;

/// Ethernet header length, untagged.
pub const ETH_LEN: usize = 14;
/// Ethernet type of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// Ethernet type of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_LEN: usize = 40;
/// UDP header.
pub const UDP_LEN: usize = 8;

/// A packet context a program can run on, XDP or tc: where the frame is,
/// how long it is, and the two verdicts every program returns.
pub trait Frame: EbpfContext {
    /// What the program returns.
    type Verdict;
    /// Start of the directly readable (linear) frame.
    fn data(&self) -> usize;
    /// End of the directly readable frame.
    fn data_end(&self) -> usize;
    /// Length of the whole frame: for tc, the linear part may be shorter
    /// (the length fields of the headers are checked against this).
    fn frame_len(&self) -> usize;
    /// Up the stack (untouched, or as the program left it).
    fn pass(&self) -> Self::Verdict;
    /// Dropped.
    fn drop_frame(&self) -> Self::Verdict;
}

impl Frame for XdpContext {
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
}

impl Frame for TcContext {
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

    /// `TC_ACT_UNSPEC` (`TCX_NEXT`), not `TC_ACT_OK`: passing must not
    /// hide the packet from the programs after ours.
    #[inline(always)]
    fn pass(&self) -> i32 {
        TC_ACT_UNSPEC
    }

    #[inline(always)]
    fn drop_frame(&self) -> i32 {
        TC_ACT_SHOT
    }
}

/// Pointer to a `T` at `offset` in the frame, if the whole `T` is inside
/// the directly readable part: the one check the verifier needs before a
/// packet access.
#[inline(always)]
pub fn ptr_at<T, C: Frame>(ctx: &C, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// An IPv6 address as the maps key it: four network-order words.
#[inline(always)]
pub fn words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}
