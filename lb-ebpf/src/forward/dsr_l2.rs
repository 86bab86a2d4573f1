//! Direct server return at L2: the frame keeps its IP packet untouched and
//! goes back out of the same interface, addressed to the backend's MAC from
//! ours.

use crate::hook::Hook;
use lb_common::{consts::EVENT_NO_BACKEND, stats::Counter, VipMeta};
use network_types::eth::EthHdr;

use crate::{
    conntrack,
    maps::CONFIG,
    parse::{self, Class, Packet},
    stats,
};

/// Sends one packet of a DSR VIP to its backend; the returned counter is
/// the verdict (forwarded ones leave by the ingress interface).
#[inline(always)]
pub fn forward<C: Hook>(ctx: &C, vip: &VipMeta, packet: &Packet) -> Counter {
    // One test on the hot path: anything but a plain flow packet is rare.
    let decision = if packet.class == Class::Flow {
        conntrack::decide(vip, packet)
    } else if packet.class == Class::IcmpError {
        conntrack::peek(vip, &packet.key)
    } else {
        return Counter::DropTcpFlags;
    };
    let Some(decision) = decision else {
        stats::report(EVENT_NO_BACKEND, vip.id, &packet.key);
        return Counter::DropNoBackend;
    };
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
