//! The next hops the routing table names on an interface: the gateways a
//! routed (NAT) packet may be sent to. lbd keeps their neighbour entries
//! resolved ahead of need, so the first packets after a failover (the new
//! master has never sent to them) or after an entry expired are not
//! dropped while the kernel resolves it.

use std::{collections::BTreeSet, net::IpAddr};

use futures_util::TryStreamExt as _;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

use super::{Netlink, NetlinkError};

impl Netlink {
    /// Every gateway of a route (single or multipath) that leaves by
    /// interface `ifindex`, IPv4 and IPv6, without duplicates.
    pub(crate) async fn gateways(&self, ifindex: u32) -> Result<Vec<IpAddr>, NetlinkError> {
        let mut out = Vec::new();
        for route in self.routes().await? {
            for gateway in route_gateways(&route, ifindex) {
                if !out.contains(&gateway) {
                    out.push(gateway);
                }
            }
        }
        Ok(out)
    }

    /// Every interface a unicast route (single or multipath, IPv4 and
    /// IPv6) leaves by: those the FIB may name for a routed packet, which
    /// the NAT redirect map must hold first when it cannot hold all.
    pub(crate) async fn route_interfaces(&self) -> Result<BTreeSet<u32>, NetlinkError> {
        Ok(self
            .routes()
            .await?
            .iter()
            .flat_map(route_interfaces)
            .collect())
    }

    /// The routing table, IPv4 then IPv6.
    async fn routes(&self) -> Result<Vec<RouteMessage>, NetlinkError> {
        let mut out = Vec::new();
        let requests = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for request in requests {
            let mut routes = self.handle.route().get(request).execute();
            while let Some(route) =
                routes
                    .try_next()
                    .await
                    .map_err(|source| NetlinkError::Request {
                        what: "dumping the routing table".to_owned(),
                        source,
                    })?
            {
                out.push(route);
            }
        }
        Ok(out)
    }
}

/// The interfaces a unicast route leaves by (its own, or its hops').
fn route_interfaces(route: &RouteMessage) -> Vec<u32> {
    if route.header.kind != RouteType::Unicast {
        return Vec::new();
    }
    let mut out = Vec::new();
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => out.push(*index),
            RouteAttribute::MultiPath(hops) => {
                out.extend(hops.iter().map(|h| h.interface_index));
            }
            _ => {}
        }
    }
    out
}

/// The gateways of one route that leave by `ifindex`.
fn route_gateways(route: &RouteMessage, ifindex: u32) -> Vec<IpAddr> {
    let oif = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    });
    let mut out = Vec::new();
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Gateway(address) if oif == Some(ifindex) => {
                out.extend(address_of(address));
            }
            RouteAttribute::MultiPath(hops) => {
                for hop in hops.iter().filter(|h| h.interface_index == ifindex) {
                    out.extend(hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(address) => address_of(address),
                        _ => None,
                    }));
                }
            }
            _ => {}
        }
    }
    out
}

fn address_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteNextHop;

    #[test]
    fn gateways_of_single_and_multipath_routes_on_the_interface_only() {
        let mut single = RouteMessage::default();
        single.attributes = vec![
            RouteAttribute::Oif(2),
            RouteAttribute::Gateway(RouteAddress::Inet("198.18.0.1".parse().unwrap())),
        ];
        assert_eq!(
            route_gateways(&single, 2),
            vec!["198.18.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(route_gateways(&single, 3).is_empty());

        let hop = |index: u32, gateway: &str| {
            let mut hop = RouteNextHop::default();
            hop.interface_index = index;
            hop.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet6(
                gateway.parse().unwrap(),
            ))];
            hop
        };
        let mut multipath = RouteMessage::default();
        multipath.attributes = vec![RouteAttribute::MultiPath(vec![
            hop(2, "2001:2::1"),
            hop(3, "2001:2::2"),
            hop(2, "2001:2::3"),
        ])];
        let found: Vec<String> = route_gateways(&multipath, 2)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["2001:2::1", "2001:2::3"]);
        // A directly connected route has no gateway.
        let mut connected = RouteMessage::default();
        connected.attributes = vec![RouteAttribute::Oif(2)];
        assert!(route_gateways(&connected, 2).is_empty());
    }

    /// A unicast route's interfaces are its own and its hops'; a route
    /// of another type (local, blackhole) sends nothing out.
    #[test]
    fn the_interfaces_unicast_routes_leave_by() {
        let mut single = RouteMessage::default();
        single.header.kind = RouteType::Unicast;
        single.attributes = vec![RouteAttribute::Oif(2)];
        assert_eq!(route_interfaces(&single), [2]);
        let hop = |index: u32| {
            let mut hop = RouteNextHop::default();
            hop.interface_index = index;
            hop
        };
        let mut multipath = RouteMessage::default();
        multipath.header.kind = RouteType::Unicast;
        multipath.attributes = vec![RouteAttribute::MultiPath(vec![hop(3), hop(5)])];
        assert_eq!(route_interfaces(&multipath), [3, 5]);
        single.header.kind = RouteType::Local;
        assert!(route_interfaces(&single).is_empty());
    }
}
