//! The interface a packet to an address leaves by: the output interface
//! of the kernel's route to it (RTM_GETROUTE), asked when a health check
//! fails, so the failure is discounted only while the interface that check
//! actually left by is down, not whenever lbd's own interface is (backends
//! may sit behind another interface than the one clients arrive on).

use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

use super::{carries_traffic, Netlink, NetlinkError};

/// The interface a route leaves by, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Egress {
    /// Its name.
    pub name: String,
    /// Whether it carries traffic (admin up, with its carrier).
    pub up: bool,
}

impl Netlink {
    /// The interface a packet to `destination` with mark `mark` (0: none;
    /// policy routing may select by it) leaves by; None when the kernel
    /// has no usable route (unreachable, prohibited, a blackhole, or the
    /// routes of an interface taken down went with it): the lookup's
    /// error for each (`no_route`), or a route of such a type.
    pub(crate) async fn egress(
        &self,
        destination: IpAddr,
        mark: u32,
    ) -> Result<Option<Egress>, NetlinkError> {
        let prefix = if destination.is_ipv4() { 32 } else { 128 };
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(destination, prefix)
            .map_err(|e| NetlinkError::Invalid(format!("route lookup of {destination}: {e}")))?;
        if mark != 0 {
            builder = builder.mark(mark);
        }
        let request = builder.build();
        let what = &format!("looking up the route to {destination} (mark {mark:#x})");
        let route = self
            .request(what, |handle| {
                let request = request.clone();
                async move {
                    let mut routes = handle.route().get(request).execute();
                    match routes.try_next().await {
                        Ok(route) => Ok(route),
                        Err(rtnetlink::Error::NetlinkError(e)) if no_route(e.raw_code()) => {
                            Ok(None)
                        }
                        Err(source) => Err(NetlinkError::Request {
                            what: what.clone(),
                            source,
                        }),
                    }
                }
            })
            .await?;
        let Some(index) = route.as_ref().and_then(output_interface) else {
            return Ok(None);
        };
        let Some(link) = self.link(index).await? else {
            return Ok(None);
        };
        let name = link
            .attributes
            .iter()
            .find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_else(|| format!("#{index}"));
        Ok(Some(Egress {
            name,
            up: carries_traffic(&link),
        }))
    }
}

/// Whether a route lookup's error says there is no usable route (rather
/// than that the lookup itself failed): the errors of the kernel's route
/// types that send nowhere (`fib_props`): unreachable, prohibit, and
/// blackhole, whose error is EINVAL (lbd builds the request itself, so
/// EINVAL does not mean a malformed one).
fn no_route(raw_code: i32) -> bool {
    [
        libc::ENETUNREACH,
        libc::EHOSTUNREACH,
        libc::EACCES,
        libc::EINVAL,
    ]
    .iter()
    .any(|code| raw_code == -code)
}

/// The output interface of a resolved route; None for a route that sends
/// nowhere (unreachable, prohibit, blackhole) or names none.
fn output_interface(route: &RouteMessage) -> Option<u32> {
    if matches!(
        route.header.kind,
        RouteType::Unreachable | RouteType::Prohibit | RouteType::BlackHole
    ) {
        return None;
    }
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_that_sends_nowhere_has_no_output_interface() {
        let mut route = RouteMessage::default();
        route.header.kind = RouteType::Unicast;
        route.attributes = vec![RouteAttribute::Oif(3)];
        assert_eq!(output_interface(&route), Some(3));
        route.header.kind = RouteType::Unreachable;
        assert_eq!(output_interface(&route), None);
        route.header.kind = RouteType::Unicast;
        route.attributes.clear();
        assert_eq!(output_interface(&route), None);
        assert!(no_route(-libc::ENETUNREACH));
        assert!(!no_route(-libc::ENOBUFS));
    }

    /// A blackhole route (IPv4's, and IPv6's on kernels that answer a
    /// lookup with its error) is the kernel's EINVAL: no usable route,
    /// not a failed lookup, so an own-link outage falling onto a covering
    /// blackhole is still told apart from a backend's failure.
    #[test]
    fn a_blackhole_route_is_no_route() {
        assert!(no_route(-libc::EINVAL));
        if !crate::test_netns::is_root() {
            eprintln!("skipped: the blackhole lookups need root (a netns of their own)");
            return;
        }
        crate::test_netns::in_own_netns(|| {
            use crate::test_netns::ip;
            ip(&["link", "set", "lo", "up"]);
            ip(&["route", "add", "blackhole", "198.18.251.0/24"]);
            ip(&["-6", "route", "add", "blackhole", "2001:2:0:f9::/64"]);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let netlink = Netlink::connect().unwrap();
                for destination in ["198.18.251.1", "2001:2:0:f9::1"] {
                    let egress = netlink.egress(destination.parse().unwrap(), 0).await;
                    assert!(matches!(egress, Ok(None)), "{destination}: {egress:?}");
                }
            });
        });
    }

    #[tokio::test]
    async fn the_route_to_a_local_address_leaves_by_loopback() {
        let netlink = Netlink::connect().unwrap();
        let egress = netlink
            .egress("127.0.0.1".parse().unwrap(), 0)
            .await
            .unwrap();
        assert_eq!(
            egress,
            Some(Egress {
                name: "lo".into(),
                up: true
            })
        );
    }
}
