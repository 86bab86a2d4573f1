//! Direct server return at L2: the frame keeps its IP packet untouched and
//! goes back out of the same interface, addressed to the backend's MAC from
//! ours.

use lb_common::{stats::Counter, VipMeta};
use network_types::eth::EthHdr;

use crate::{
    conntrack::Decision,
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
    let Some(eth) = parse::ptr_at::<EthHdr, C>(ctx, 0) else {
        return Counter::DropMalformed;
    };
    // SAFETY: bounds checked by ptr_at; the program owns the frame (tc: the verifier makes a cloned skb private first).
    unsafe {
        (*eth).src_addr = match CONFIG.get(0) {
            Some(config) => config.iface_mac,
            None => (*eth).dst_addr,
        };
        (*eth).dst_addr = decision.backend.mac;
    }
    let bytes = ctx.frame_len() as u64;
    stats::count_traffic(vip.id, decision.backend_id, bytes, decision.new_flow);
    if packet.class == Class::IcmpError {
        Counter::ForwardedIcmpError
    } else {
        Counter::Forwarded
    }
}
