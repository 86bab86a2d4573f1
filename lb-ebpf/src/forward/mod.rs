//! The packet path: parse, find the VIP, then hand the packet to its
//! forwarding mode (one module per mode: `dsr_l2`, `nat`, `tunnel` for
//! IPIP and GUE); a packet for no VIP may still be a backend's reply to a
//! NAT'd flow.

mod dsr_l2;
pub mod tunnel;

use lb_common::{consts::CONFIG_F_NAT, stats::Counter, Mode};

use crate::{hook::Hook, lookup, maps::CONFIG, nat, parse};

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

/// Runs the whole path for one frame (for a tunnelled VIP up to the
/// pending wrap, see `tunnel`). Not inlined, so its large frame is not on
/// the stack under `tunnel::finish`, which the entry point calls after it.
#[inline(never)]
pub fn balance<C: Hook>(ctx: &C) -> Outcome {
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return reason.into(),
    };
    let Some(vip) = lookup::vip_of(&packet.key) else {
        return not_for_a_vip(ctx, &packet);
    };
    if vip.mode == Mode::Nat as u32 {
        return nat::forward(ctx, &vip, &packet);
    }
    if vip.mode == Mode::Ipip as u32 || vip.mode == Mode::Gue as u32 {
        return tunnel::forward(ctx, &vip, &packet);
    }
    dsr_l2::forward(ctx, &vip, &packet).into()
}

/// A packet for no VIP: a reply of a NAT'd flow when some VIP is in NAT
/// mode (one array read decides, so DSR-only nodes pass it up as before).
#[inline(always)]
fn not_for_a_vip<C: Hook>(ctx: &C, packet: &parse::Packet) -> Outcome {
    match CONFIG.get(0) {
        Some(config) if config.flags & CONFIG_F_NAT != 0 => nat::reply(ctx, packet),
        _ => Counter::PassNotVip.into(),
    }
}
