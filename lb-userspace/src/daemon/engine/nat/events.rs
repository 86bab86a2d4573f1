//! The routed data plane's events (a next hop to resolve, no route, no
//! free NAT port) acted on: apart from the periodic work of the tick.

use std::{net::IpAddr, time::Duration};

use lb_common::{
    consts::{EVENT_NAT_PORTS_EXHAUSTED, EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE},
    DataplaneEvent, Mode,
};
use tracing::{info, warn};

use super::super::Engine;
use crate::reconcile::words_addr;

impl Engine {
    /// The mode of the VIP whose data-plane id is `vip_id` (DSR when it
    /// is gone).
    fn vip_mode_of(&self, vip_id: u32) -> Mode {
        self.balancer
            .vips()
            .values()
            .find(|v| v.id == vip_id)
            .map_or(Mode::DsrL2, |v| v.mode)
    }

    /// The first backend of the VIP whose data-plane id is `vip_id`, to
    /// name a destination in a log.
    fn backend_of_id(&self, vip_id: u32) -> Option<IpAddr> {
        let vip = self.balancer.vips().values().find(|v| v.id == vip_id)?;
        vip.backends.keys().next().copied()
    }

    /// Acts on a routed data plane event; false when `event` is not one.
    pub(crate) fn on_nat_event(&mut self, event: &DataplaneEvent, vip: &str) -> bool {
        let now = Duration::from_nanos(crate::clock::monotonic_ns());
        match event.kind {
            EVENT_NO_NEIGHBOUR => {
                let gateway: IpAddr = words_addr(event.flow.dst, event.flow.family);
                let action = self.nat.events.no_neighbour(gateway, now);
                if action.probe {
                    crate::netlink::probe_on(gateway, probe_interface(event, self.interface.index));
                }
                // Info, not a warning: the kernel collects a neighbour entry
                // only the data plane uses (its use does not refresh it)
                // about once a minute, and flows with a next hop cached go
                // on forwarding through it meanwhile. Drops show in
                // drop_no_neighbour.
                if action.log {
                    info!(
                        %vip, next_hop = %gateway,
                        "data plane: the next hop has no neighbour entry; lbd makes the kernel resolve it. Flows with this next hop cached keep forwarding through it; packets with none are dropped until it answers (drop_no_neighbour; logged once a minute per next hop). If drops persist, check that {gateway} is reachable (ip neigh show {gateway})"
                    );
                }
                true
            }
            EVENT_NO_ROUTE if self.vip_mode_of(event.vip_id).is_tunnel() => {
                if self.nat.events.log_for_vip(event.kind, event.vip_id, now) {
                    let backend = self
                        .backend_of_id(event.vip_id)
                        .map_or_else(|| "its backends".to_owned(), |a| a.to_string());
                    warn!(
                        %vip, interface = %self.interface.name,
                        "data plane: no usable route for a tunnelled packet, dropped (drop_no_route; logged once a minute per VIP): add a route to {backend}, and check that forwarding is on for {} (lbd switches it on)", self.interface.name
                    );
                }
                true
            }
            EVENT_NO_ROUTE => {
                if self.nat.events.log_for_vip(event.kind, event.vip_id, now) {
                    // The event names the packet as it arrived; where it
                    // was to go is its translation's destination.
                    let flow = &event.flow;
                    let packet = format!(
                        "{} -> {}",
                        std::net::SocketAddr::new(
                            words_addr(flow.src, flow.family),
                            u16::from_be(flow.sport)
                        ),
                        std::net::SocketAddr::new(
                            words_addr(flow.dst, flow.family),
                            u16::from_be(flow.dport)
                        ),
                    );
                    let destination = match self.dataplane.nat().flow(flow) {
                        Some(entry) => words_addr(entry.dst, flow.family).to_string(),
                        None => "its translated destination".to_owned(),
                    };
                    warn!(
                        %vip, %packet, interface = %self.interface.name,
                        "data plane: no usable route for a NAT'd packet (none, or a blackhole, unreachable or prohibit route, or forwarding off where it came in), dropped (drop_no_route; logged once a minute per VIP): add a route to {destination}, and check that forwarding is on for {} (lbd switches it on). Packets too big for a route are not this: they count as sent_icmp_too_big or drop_too_big", self.interface.name
                    );
                }
                true
            }
            EVENT_NAT_PORTS_EXHAUSTED => {
                if self.nat.events.log_for_vip(event.kind, event.vip_id, now) {
                    warn!(
                        %vip,
                        "data plane: no free NAT source port for a new flow, dropped (drop_nat_ports_exhausted; logged once a minute per VIP): widen [nat] source_port_min..source_port_max, add backends, give the VIP its own nat_source, or shorten the NAT timeouts (lbctl status shows ports in use)"
                    );
                }
                true
            }
            _ => false,
        }
    }
}

/// The interface to resolve an `EVENT_NO_NEIGHBOUR`'s next hop on: the
/// egress interface the FIB named (a link-local gateway is only
/// reachable there, e.g. on the second interface of a two-armed node),
/// else, from a program that did not report it, the attached interface,
/// where the packet came in.
pub(super) fn probe_interface(event: &DataplaneEvent, attached: u32) -> u32 {
    match event.flow.src[0] {
        0 => attached,
        egress => egress,
    }
}
