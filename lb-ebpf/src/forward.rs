//! The packet path and direct server return at L2: the frame keeps its IP
//! packet untouched and goes back out of the same interface, addressed to
//! the backend's MAC from ours.

use aya_ebpf::programs::XdpContext;
use lb_common::{consts::EVENT_NO_BACKEND, stats::Counter};
use network_types::eth::EthHdr;

use crate::{
    conntrack, lookup,
    maps::CONFIG,
    parse::{self, Class},
    stats,
};

/// Runs the whole path for one frame; the returned counter is the verdict.
#[inline(always)]
pub fn balance(ctx: &XdpContext) -> Counter {
    let packet = match parse::parse(ctx) {
        Ok(packet) => packet,
        Err(reason) => return reason,
    };
    let Some(vip) = lookup::vip_of(&packet.key) else {
        return Counter::PassNotVip;
    };
    // One test on the hot path: anything but a plain flow packet is rare.
    let (backend_id, backend, new_flow, verdict) = if packet.class == Class::Flow {
        let Some(decision) = conntrack::decide(&vip, &packet) else {
            stats::report(EVENT_NO_BACKEND, vip.id, &packet.key);
            return Counter::DropNoBackend;
        };
        (
            decision.backend_id,
            decision.backend,
            decision.new_flow,
            Counter::Forwarded,
        )
    } else if packet.class == Class::IcmpError {
        let Some((backend_id, backend)) = conntrack::peek(&vip, &packet.key) else {
            stats::report(EVENT_NO_BACKEND, vip.id, &packet.key);
            return Counter::DropNoBackend;
        };
        (backend_id, backend, false, Counter::ForwardedIcmpError)
    } else {
        return Counter::DropTcpFlags;
    };
    let Some(eth) = parse::ptr_at::<EthHdr>(ctx, 0) else {
        return Counter::DropMalformed;
    };
    // SAFETY: bounds checked by ptr_at; XDP owns the frame.
    unsafe {
        (*eth).src_addr = match CONFIG.get(0) {
            Some(config) => config.iface_mac,
            None => (*eth).dst_addr,
        };
        (*eth).dst_addr = backend.mac;
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    stats::count_traffic(vip.id, backend_id, bytes, new_flow);
    verdict
}
