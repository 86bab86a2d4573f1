//! Direct server return at L2: the frame keeps its IP packet untouched and
//! goes back out of the same interface, addressed to the backend's MAC from
//! ours.

use lb_common::{stats::Counter, VipMeta};

use crate::{
    conntrack::Decision,
    copy,
    hook::Hook,
    maps::CONFIG,
    parse::{self, Class, Packet},
    stats,
};

/// Sends one packet of a DSR VIP to the backend `decision` names; the
/// returned counter is the verdict (forwarded ones leave by the ingress
/// interface).
#[inline(always)]
pub fn forward<C: Hook>(ctx: &C, vip: &VipMeta, packet: &Packet, decision: &Decision) -> Counter {
    let Some(eth) = parse::ptr_at::<[u16; 6], C>(ctx, 0) else {
        return Counter::DropInternal;
    };
    // SAFETY: bounds checked by ptr_at; the program owns the frame (tc: the verifier makes a cloned skb private first).
    let eth = unsafe { &mut *eth };
    // SAFETY (both `mac_words`): MAC fields of map values (see `copy`).
    let src = match CONFIG.get(0) {
        Some(config) => unsafe { copy::mac_words(&config.iface_mac) },
        None => [eth[0], eth[1], eth[2]],
    };
    let dst = unsafe { copy::mac_words(&decision.backend.mac) };
    copy::write_macs(eth, dst, src);
    let bytes = ctx.frame_len() as u64;
    stats::count_traffic(vip.id, decision.backend_id, bytes, decision.new_flow);
    if packet.class == Class::IcmpError {
        Counter::ForwardedIcmpError
    } else {
        Counter::Forwarded
    }
}
