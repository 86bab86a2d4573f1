//! The packet path: parse, find the VIP, check its guards (deny and allow
//! lists: `guard::acl`, the one place for both hooks; a tracked flow's
//! packets meet them in the connection table), then hand the packet to its
//! forwarding mode (one module per mode: `dsr_l2`, `nat`, `tunnel` for
//! IPIP and GUE); a packet for no VIP may still be a backend's reply to a
//! NAT'd flow (only in a frame addressed to this node, as a VIP's). A
//! NAT or tunnelled VIP's packet whose transport header lies past what
//! those modes read goes up the stack after the lists, before the limits
//! (`past_what_is_read`).

mod dsr_l2;
pub mod tunnel;

use core::ptr::addr_of_mut;

use lb_common::{
    consts::{CONFIG_F_NAT, EVENT_NO_BACKEND},
    stats::Counter,
    Mode, VipMeta,
};

use crate::{
    conntrack::{self, Decision},
    guard,
    hook::Hook,
    lookup,
    maps::CONFIG,
    nat,
    parse::{self, Class},
    state::PacketState,
    stats,
};

/// What the packet path decided: the verdict counter (counted exactly
/// once by the entry point) and, for forwarded packets, the interface they
/// leave by.
#[derive(Clone, Copy)]
pub struct Outcome {
    /// The verdict counter.
    pub counter: Counter,
    /// Egress interface of a forwarded packet; 0 = the ingress one (the
    /// only one DSR at L2 uses).
    pub egress: u32,
}

impl From<Counter> for Outcome {
    /// An outcome that leaves by the ingress interface if forwarded.
    #[inline(always)]
    fn from(counter: Counter) -> Self {
        Outcome { counter, egress: 0 }
    }
}

impl Outcome {
    /// The outcome in one register (egress in the high half), for
    /// returning across a BPF-to-BPF call: a struct would come back
    /// through the caller's stack, and LLVM may leave a stack pointer in
    /// R0, which the verifier refuses at the callee's exit.
    #[inline(always)]
    pub fn packed(self) -> u64 {
        (u64::from(self.egress) << 32) | u64::from(self.counter as u32)
    }

    /// The outcome `packed` made.
    #[inline(always)]
    pub fn unpacked(word: u64) -> Self {
        Outcome {
            // SAFETY: the low half is a `Counter` (`repr(u32)`) that
            // `packed` stored; nothing else builds these words.
            counter: unsafe { core::mem::transmute::<u32, Counter>(word as u32) },
            egress: (word >> 32) as u32,
        }
    }
}

/// After `balance`: runs the step its marker outcome left pending (the
/// tunnel modes' wrap, the NAT path) in a frame of its own, or returns
/// its outcome as it is.
#[inline(always)]
pub fn finish<C: Hook>(ctx: &C, outcome: Outcome, state: *mut PacketState) -> Outcome {
    if outcome.counter == tunnel::PENDING {
        tunnel::finish(ctx, state)
    } else if outcome.counter == nat::PENDING_FORWARD {
        Outcome::unpacked(nat::finish(ctx, false))
    } else if outcome.counter == nat::PENDING_REPLY {
        Outcome::unpacked(nat::finish(ctx, true))
    } else {
        outcome
    }
}

/// Runs the whole path for one frame (for a tunnelled VIP up to the
/// pending wrap, see `tunnel`, left in `state`: this CPU's).
#[inline(always)]
pub fn balance<C: Hook>(ctx: &C, state: *mut PacketState) -> Outcome {
    Outcome::unpacked(balance_packed(ctx, state))
}

/// `balance`, returning `Outcome::packed`. Not inlined, so its large frame
/// is not on the stack under `tunnel::finish`, which the entry point calls
/// after it.
#[inline(never)]
fn balance_packed<C: Hook>(ctx: &C, state: *mut PacketState) -> u64 {
    balance_in_frame(ctx, state).packed()
}

#[inline(always)]
fn balance_in_frame<C: Hook>(ctx: &C, state: *mut PacketState) -> Outcome {
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return reason.into(),
    };
    let Some(vip) = lookup::vip_of(&packet.key) else {
        return not_for_a_vip(ctx, &packet);
    };
    if !to_this_node(ctx) {
        // A frame for another host's MAC that a switch flooded here (a
        // node of an ECMP group whose link went down): that node's to
        // balance, not this one's, which might pick another backend. The
        // kernel drops it as another host's.
        return Counter::PassForeignMac.into();
    }
    let past = past_what_is_read(&vip, &packet);
    let gate = guard::acl::Gate::of(vip.id);
    // A packet that may belong to a tracked flow meets the lists in the
    // connection table (see `Gate`); any other meets them here, first. So
    // does one that goes up the stack past them: a deny rule keeps its
    // source off the node's VIP address too.
    if past || !may_be_tracked(&vip, &packet) {
        if let Err(counter) = gate.check(&packet.key) {
            return counter.into();
        }
    }
    if past {
        return Counter::PassIpv6Ext.into();
    }
    if vip.mode() == Mode::Nat as u32 {
        return nat::queue(&packet, Some(&vip));
    }
    // DSR at L2 and the tunnel modes pick the backend the same way, from
    // one place (the connection table's code is inlined once).
    let decision = match backend_of(&vip, &packet, &gate, state) {
        Ok(decision) => decision,
        Err(counter) => return counter.into(),
    };
    if vip.mode() == Mode::Ipip as u32 || vip.mode() == Mode::Gue as u32 {
        // SAFETY: this CPU's packet state, from the entry point.
        let job = unsafe { &mut *addr_of_mut!((*state).job) };
        return tunnel::forward(ctx, &vip, &packet, &decision, job);
    }
    dsr_l2::forward(ctx, &vip, &packet, &decision).into()
}

/// Largest transport header offset the NAT and tunnel paths read at (what
/// a tc program sees linear, see `hook::linearize`; their own bounds,
/// `nat::scratch` and `tunnel::encap`, for the verifier, are the same).
pub const L4_OFF_MAX: usize = 256;

/// Whether a NAT or tunnelled VIP's packet has its transport header past
/// `L4_OFF_MAX` (a long IPv6 extension chain): such a packet goes up the
/// stack untouched (`PassIpv6Ext`) once the lists let it (a denied source
/// is dropped as ever), before the limits and any table work, so it is
/// neither charged to its source's limit nor tracked. One with impossible TCP flags is dropped as any is. DSR
/// at L2 reads nothing past the IP header: it forwards them.
///
/// The offset is read from the packet in memory (volatile): read as a
/// plain value, LLVM allocates the parser's registers differently, and
/// the verifier goes through about 38k more instructions.
#[inline(always)]
fn past_what_is_read(vip: &VipMeta, packet: &parse::Packet) -> bool {
    // SAFETY: a field of a live local.
    let l4_off = unsafe { core::ptr::read_volatile(&packet.l4_off) };
    packet.class != Class::BadTcpFlags && l4_off > L4_OFF_MAX && vip.mode() != Mode::DsrL2 as u32
}

/// Whether the frame is addressed to this node: its destination MAC is
/// the interface's (`LbConfig::iface_mac`, unset in no running lbd).
#[inline(always)]
fn to_this_node<C: Hook>(ctx: &C) -> bool {
    let Some(config) = CONFIG.get(0) else {
        return true;
    };
    let Some(eth) = parse::ptr_at::<network_types::eth::EthHdr, C>(ctx, 0) else {
        return false;
    };
    // SAFETY: bounds checked by ptr_at.
    let dst = unsafe { (*eth).dst_addr };
    config.iface_mac == [0; 6] || dst == config.iface_mac
}

/// Whether the packet may belong to a flow the connection table tracks,
/// so its lists are checked there: a DSR or tunnelled VIP's flow packet
/// other than a TCP SYN (a SYN opens a flow: a denied SYN flood is
/// dropped before any table work).
#[inline(always)]
fn may_be_tracked(vip: &VipMeta, packet: &parse::Packet) -> bool {
    packet.class == Class::Flow && vip.mode() != Mode::Nat as u32 && !packet.opens_tcp_flow()
}

/// The backend of a DSR or tunnelled VIP's packet: its flow's (the
/// connection table), or for an ICMP error the backend of the flow it is
/// about (without touching its entry); the verdict if there is none (no
/// backend, a source the lists refuse, or a new flow over its source's
/// limit).
#[inline(always)]
fn backend_of(
    vip: &VipMeta,
    packet: &parse::Packet,
    gate: &guard::acl::Gate,
    state: *mut PacketState,
) -> Result<Decision, Counter> {
    let mut refused = Counter::DropNoBackend;
    // One test on the hot path: anything but a plain flow packet is rare.
    let decision = if packet.class == Class::Flow {
        conntrack::decide(vip, packet, gate, &mut refused, state)
    } else if packet.class == Class::IcmpError {
        conntrack::peek(vip, &packet.key)
    } else {
        return Err(Counter::DropTcpFlags);
    };
    decision.ok_or_else(|| {
        if refused == Counter::DropNoBackend {
            stats::report(EVENT_NO_BACKEND, vip.id, &packet.key);
        }
        refused
    })
}

/// A packet for no VIP: a reply of a NAT'd flow when some VIP is in NAT
/// mode (one array read decides, so DSR-only nodes pass it up as before)
/// and the frame is addressed to this node. One for another host's MAC (a
/// switch flooding a backend's reply meant for the VRRP master to the
/// backup, which holds the replicated translations) is that host's to
/// translate: passed up untouched as a VIP's would be (the kernel drops
/// it as another host's), its entries neither read nor touched.
#[inline(always)]
fn not_for_a_vip<C: Hook>(ctx: &C, packet: &parse::Packet) -> Outcome {
    match CONFIG.get(0) {
        Some(config) if config.flags & CONFIG_F_NAT != 0 && to_this_node(ctx) => {
            nat::queue(packet, None)
        }
        _ => Counter::PassNotVip.into(),
    }
}
