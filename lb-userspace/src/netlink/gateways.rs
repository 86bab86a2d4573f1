//! The next hops the routing table names, with the interface each is
//! reached by: the gateways a routed (NAT or tunnelled) packet may be
//! sent to. lbd keeps their neighbour entries resolved ahead of need, so
//! the first packets after a failover (the new master has never sent to
//! them) or after an entry expired are not dropped while the kernel
//! resolves it, and confirms a STALE one, so a router replaced at the
//! same address with a new MAC is followed.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
};

use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia,
};
use rtnetlink::RouteMessageBuilder;
use tracing::warn;

use super::{Netlink, NetlinkError};

impl Netlink {
    /// Every next hop a route (single or multipath, IPv4 and IPv6, of any
    /// table) names, as (interface, gateway), the gateway given as
    /// RTA_GATEWAY or RTA_VIA, without duplicates: what the data plane's
    /// FIB lookups may send to, on the attached interface or another (a
    /// two-armed node reaches its backends by a second interface). Routes
    /// naming only a nexthop object are not covered (warned about once).
    pub(crate) async fn next_hops(&self) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        let routes = self.routes().await?;
        warn_next_hop_objects(&routes);
        let mut out = Vec::new();
        for hop in routes.iter().flat_map(route_next_hops) {
            if !out.contains(&hop) {
                out.push(hop);
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
        let what = "dumping the routing table";
        for request in requests {
            let routes = self
                .request(what, |handle| {
                    let request = request.clone();
                    async move { super::dump(handle.route().get(request).execute(), what).await }
                })
                .await?;
            out.extend(routes);
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

/// The next hops of one route, as (interface, gateway): its RTA_GATEWAY
/// or RTA_VIA (an IPv4 route over an IPv6 next hop, RFC 5549) with its
/// RTA_OIF, and those of its multipath hops with theirs.
fn route_next_hops(route: &RouteMessage) -> Vec<(u32, IpAddr)> {
    let oif = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    });
    let mut out = Vec::new();
    for attribute in &route.attributes {
        match (attribute, oif) {
            (RouteAttribute::MultiPath(hops), _) => {
                for hop in hops {
                    out.extend(
                        hop.attributes
                            .iter()
                            .find_map(next_hop_of)
                            .map(|gateway| (hop.interface_index, gateway)),
                    );
                }
            }
            (_, Some(oif)) => out.extend(next_hop_of(attribute).map(|gateway| (oif, gateway))),
            _ => {}
        }
    }
    out
}

/// The IP next hop an attribute names, if it is RTA_GATEWAY or an IP
/// RTA_VIA. A via keeps its own family (an IPv6 via of an IPv4 route is
/// resolved in the IPv6 neighbour table, as the kernel's FIB does).
fn next_hop_of(attribute: &RouteAttribute) -> Option<IpAddr> {
    match attribute {
        RouteAttribute::Gateway(address) => address_of(address),
        RouteAttribute::Via(RouteVia::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Via(RouteVia::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn address_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Whether a unicast route names its next hop only by a nexthop object
/// (RTA_NH_ID without the interface and gateway the kernel adds under
/// `net.ipv4.nexthop_compat_mode=1`), so its gateway cannot be read here.
fn next_hop_object_only(route: &RouteMessage) -> bool {
    route.header.kind == RouteType::Unicast
        && route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::NhId(_)))
        && !route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(_) | RouteAttribute::MultiPath(_)))
}

/// Warns, once per process, that routes using nexthop objects are not
/// resolved ahead (netlink-packet-route has no RTM_GETNEXTHOP to read
/// their gateways by).
fn warn_next_hop_objects(routes: &[RouteMessage]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if routes.iter().any(next_hop_object_only) && !WARNED.swap(true, Ordering::Relaxed) {
        warn!(
            "some routes name their next hop only by a nexthop object (net.ipv4.nexthop_compat_mode=0): their gateways are not resolved ahead of need, so the first routed (NAT) packets to them after a failover may be dropped until the kernel resolves them; set net.ipv4.nexthop_compat_mode=1 to have them resolved"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteNextHop;

    /// The gateways of `route` that leave by `ifindex`.
    fn route_gateways(route: &RouteMessage, ifindex: u32) -> Vec<IpAddr> {
        route_next_hops(route)
            .into_iter()
            .filter(|(index, _)| *index == ifindex)
            .map(|(_, gateway)| gateway)
            .collect()
    }

    /// A multipath route's hop by interface `index` to IPv6 `gateway`.
    fn hop(index: u32, gateway: &str) -> RouteNextHop {
        let mut hop = RouteNextHop::default();
        hop.interface_index = index;
        hop.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet6(
            gateway.parse().unwrap(),
        ))];
        hop
    }

    /// Each next hop is named with the interface it leaves by, a
    /// multipath route's on each of its interfaces: the data plane may
    /// send by any of them, and a link-local gateway is only that
    /// interface's.
    #[test]
    fn next_hops_carry_their_interface() {
        let mut multipath = RouteMessage::default();
        multipath.attributes = vec![RouteAttribute::MultiPath(vec![
            hop(2, "fe80::1"),
            hop(3, "fe80::1"),
        ])];
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            route_next_hops(&multipath),
            [(2, a("fe80::1")), (3, a("fe80::1"))]
        );
        let mut single = RouteMessage::default();
        single.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet("198.18.0.1".parse().unwrap())),
            RouteAttribute::Oif(4),
        ];
        assert_eq!(route_next_hops(&single), [(4, a("198.18.0.1"))]);
        // Without an interface there is nowhere to resolve it.
        single.attributes.pop();
        assert!(route_next_hops(&single).is_empty());
    }

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

    /// A next hop given as RTA_VIA (an IPv4 route over an IPv6 next hop:
    /// RFC 5549, BGP unnumbered) is a gateway too, at the top level and
    /// in a multipath hop; an MPLS via is not an IP next hop.
    #[test]
    fn vias_of_single_and_multipath_routes_are_gateways() {
        let via = |a: &str| RouteAttribute::Via(RouteVia::Inet6(a.parse().unwrap()));
        let mut single = RouteMessage::default();
        single.attributes = vec![RouteAttribute::Oif(2), via("fe80::1")];
        assert_eq!(
            route_gateways(&single, 2),
            vec!["fe80::1".parse::<IpAddr>().unwrap()]
        );
        assert!(route_gateways(&single, 3).is_empty());
        single.attributes = vec![
            RouteAttribute::Oif(2),
            RouteAttribute::Via(RouteVia::Inet("198.18.0.1".parse().unwrap())),
        ];
        assert_eq!(
            route_gateways(&single, 2),
            vec!["198.18.0.1".parse::<IpAddr>().unwrap()]
        );
        single.attributes = vec![
            RouteAttribute::Oif(2),
            RouteAttribute::Via(RouteVia::Packet(vec![2, 0, 0, 0, 0, 1])),
        ];
        assert!(route_gateways(&single, 2).is_empty());

        let hop = |index: u32, attribute: RouteAttribute| {
            let mut hop = RouteNextHop::default();
            hop.interface_index = index;
            hop.attributes = vec![attribute];
            hop
        };
        let mut multipath = RouteMessage::default();
        multipath.attributes = vec![RouteAttribute::MultiPath(vec![
            hop(2, via("fe80::2")),
            hop(3, via("fe80::3")),
            hop(
                2,
                RouteAttribute::Gateway(RouteAddress::Inet("198.18.0.4".parse().unwrap())),
            ),
        ])];
        let found: Vec<String> = route_gateways(&multipath, 2)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["fe80::2", "198.18.0.4"]);
    }

    /// In a namespace of its own: an IPv4 route via an IPv6 link-local
    /// next hop (`ip route add … via inet6 fe80::1 dev X`), and each hop
    /// of a multipath one, are found as gateways of X (`next_hops`), and probing one
    /// resolves it in X's IPv6 neighbour table, where the data plane's
    /// FIB lookup looks for it.
    #[test]
    fn an_ipv4_route_via_an_ipv6_next_hop_is_found_and_resolved() {
        if !crate::test_netns::is_root() {
            eprintln!("skipped: the routes need root (a netns of their own)");
            return;
        }
        crate::test_netns::in_own_netns(|| {
            use crate::test_netns::ip;
            ip(&["link", "add", "gw0", "type", "veth", "peer", "name", "gwp0"]);
            ip(&["link", "add", "gw1", "type", "veth", "peer", "name", "gwp1"]);
            for link in ["gw0", "gwp0", "gw1", "gwp1"] {
                ip(&["link", "set", link, "up"]);
            }
            ip(&["-6", "addr", "add", "fe80::10/64", "dev", "gw0", "nodad"]);
            ip(&["-6", "addr", "add", "fe80::1/64", "dev", "gwp0", "nodad"]);
            ip(&[
                "route",
                "add",
                "198.18.1.0/24",
                "via",
                "inet6",
                "fe80::1",
                "dev",
                "gw0",
            ]);
            ip(&[
                "route",
                "add",
                "198.18.2.0/24",
                "nexthop",
                "via",
                "inet6",
                "fe80::2",
                "dev",
                "gw0",
                "nexthop",
                "via",
                "inet6",
                "fe80::3",
                "dev",
                "gw1",
            ]);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let netlink = Netlink::connect().unwrap();
                let index = netlink.interface("gw0").await.unwrap().index;
                let mut found: Vec<String> = netlink
                    .next_hops()
                    .await
                    .unwrap()
                    .iter()
                    .filter(|(hop_index, _)| *hop_index == index)
                    .map(|(_, gateway)| gateway.to_string())
                    .collect();
                found.sort();
                assert_eq!(found, ["fe80::1", "fe80::2"]);
                let next_hop: IpAddr = "fe80::1".parse().unwrap();
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    crate::netlink::probe_on(next_hop, index);
                    let known = netlink.neighbours(index).await.unwrap();
                    if known.contains_key(&next_hop) {
                        break;
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "fe80::1 never resolved: {known:?}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            });
        });
    }

    /// A route naming only a nexthop object (compat mode off) is told
    /// apart (it is warned about); with the kernel's compat interface and
    /// gateway, or of another type, it is not.
    #[test]
    fn a_route_with_only_a_nexthop_object_is_told_apart() {
        let mut route = RouteMessage::default();
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::NhId(7)];
        assert!(next_hop_object_only(&route));
        route.header.kind = RouteType::BlackHole;
        assert!(!next_hop_object_only(&route));
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![
            RouteAttribute::NhId(7),
            RouteAttribute::Oif(2),
            RouteAttribute::Via(RouteVia::Inet6("fe80::6".parse().unwrap())),
        ];
        assert!(!next_hop_object_only(&route));
        assert_eq!(
            route_gateways(&route, 2),
            ["fe80::6".parse::<IpAddr>().unwrap()]
        );
        route.attributes = vec![RouteAttribute::Oif(2)];
        assert!(!next_hop_object_only(&route));
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
