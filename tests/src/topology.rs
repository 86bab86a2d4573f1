//! The shape of a namespace lab, as data: L2 networks (one bridge each in
//! the switch namespace), routers with a leg on several networks, and where
//! the client, the load balancers and the backends sit. `lab::Lab` builds
//! it; this module only describes it and works out the static routes, so a
//! routed lab needs no routing daemon. Only the benchmarking ranges
//! (198.18.0.0/15, 2001:2::/48) are used, and no route leads out of the lab.

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, Ipv6Addr},
};

/// Port the backends of the routed lab listen on (it differs from the
/// VIP's, as a NAT backend's may).
pub const ROUTED_BACKEND_PORT: u16 = 8080;

/// One L2 network: a /24 and a /64, a bridge in the switch namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Short name, for messages (`lan`, `clients`, `backends`).
    pub name: String,
    /// The IPv4 network (a /24; the last octet is ignored).
    pub ipv4: Ipv4Addr,
    /// The IPv6 network (a /64; the interface part is ignored).
    pub ipv6: Ipv6Addr,
    /// Index into `Topology::routers` of the router hosts on this network
    /// take as their default route (None: hosts get no default route).
    pub gateway: Option<usize>,
}

impl NetworkSpec {
    /// The IPv4 address of host number `host` on this network.
    pub fn host_v4(&self, host: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.ipv4.octets();
        Ipv4Addr::new(a, b, c, host)
    }

    /// The IPv6 address of host number `host`: the same digits as the
    /// IPv4 host part (`.11` → `::11`), as the labs have always written them.
    pub fn host_v6(&self, host: u8) -> Ipv6Addr {
        let mut segments = self.ipv6.segments();
        segments[4..].fill(0);
        // Decimal digits read as hex: 11 → 0x11, 254 → 0x254.
        segments[7] = u16::from_str_radix(&host.to_string(), 16).unwrap_or(0);
        Ipv6Addr::from(segments)
    }
}

/// Where an interface sits: which network, which host number on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    /// Index into `Topology::networks`.
    pub network: usize,
    /// Host number (last IPv4 octet) on that network.
    pub host: u8,
}

/// A router: a namespace with one leg (`eth0`, `eth1`, ...) per network in
/// `legs`, forwarding IPv4 and IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSpec {
    /// Short name (`r1`); its namespace is `<prefix>-<name>`.
    pub name: String,
    /// Its legs, in interface order.
    pub legs: Vec<Attach>,
}

/// How the backends are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendStyle {
    /// Direct server return: the VIPs on `lo`, `arp_ignore=1` and
    /// `arp_announce=2`; nginx on the VIPs' port.
    Dsr,
    /// Untouched hosts: nothing on `lo`, default sysctls; nginx on `port`.
    Unmodified {
        /// The port nginx listens on.
        port: u16,
    },
}

impl BackendStyle {
    /// The port the backends' nginx listens on.
    pub fn port(self) -> u16 {
        match self {
            Self::Dsr => crate::lab::HTTP_PORT,
            Self::Unmodified { port } => port,
        }
    }
}

/// The whole shape of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The L2 networks; network `i` is bridge `br<i>`.
    pub networks: Vec<NetworkSpec>,
    /// The routers.
    pub routers: Vec<RouterSpec>,
    /// The client.
    pub client: Attach,
    /// The load balancer nodes (1 to 4): `lb`, `lb2`, ...
    pub lbs: Vec<Attach>,
    /// The nginx backends (1 to 50): `b1`, `b2`, ...
    pub backends: Vec<Attach>,
    /// DSR-modified or unmodified backends.
    pub backend_style: BackendStyle,
    /// Put the VIPs on the first LB's interface at build time (no VRRP).
    pub static_vip: bool,
}

/// The LB network of every lab: 198.18.0.0/24, 2001:2::/64 (the VIPs'
/// network).
fn lan() -> NetworkSpec {
    NetworkSpec {
        name: "lan".to_owned(),
        ipv4: Ipv4Addr::new(198, 18, 0, 0),
        ipv6: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        gateway: None,
    }
}

/// The clients' network (198.18.1.0/24, 2001:2:0:1::/64) behind router
/// `gateway`.
fn clients(gateway: usize) -> NetworkSpec {
    NetworkSpec {
        name: "clients".to_owned(),
        ipv4: Ipv4Addr::new(198, 18, 1, 0),
        ipv6: Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0),
        gateway: Some(gateway),
    }
}

fn lbs_on(network: usize, lbs: usize) -> Vec<Attach> {
    (0..lbs)
        .map(|i| Attach {
            network,
            host: 2 + i as u8,
        })
        .collect()
}

fn backends_on(network: usize, backends: usize) -> Vec<Attach> {
    (1..=backends)
        .map(|i| Attach {
            network,
            host: 10 + i as u8,
        })
        .collect()
}

impl Topology {
    /// Today's lab: one segment (198.18.0.0/24, 2001:2::/64) with the
    /// client (.10), the LBs (.2 ...) and DSR backends (.11 ...); no routers.
    pub fn l2(lbs: usize, backends: usize, static_vip: bool) -> Self {
        Self {
            networks: vec![lan()],
            routers: Vec::new(),
            client: Attach {
                network: 0,
                host: 10,
            },
            lbs: lbs_on(0, lbs),
            backends: backends_on(0, backends),
            backend_style: BackendStyle::Dsr,
            static_vip,
        }
    }

    /// The routed lab: clients (198.18.1.0/24, 2001:2:0:1::/64) → router
    /// `r1` (.1 on both) → the LB network (198.18.0.0/24, 2001:2::/64) →
    /// router `r2` (.254 there, .1 on the backends') → backends
    /// (198.19.2.0/24, 2001:2:0:2::/64), unmodified, nginx on
    /// `ROUTED_BACKEND_PORT`. No backend is on-link for an LB.
    pub fn routed(lbs: usize, backends: usize, static_vip: bool) -> Self {
        const LAN: usize = 0;
        const CLIENTS: usize = 1;
        const BACKENDS: usize = 2;
        const R1: usize = 0;
        const R2: usize = 1;
        Self {
            networks: vec![
                NetworkSpec {
                    gateway: Some(R1),
                    ..lan()
                },
                clients(R1),
                NetworkSpec {
                    name: "backends".to_owned(),
                    ipv4: Ipv4Addr::new(198, 19, 2, 0),
                    ipv6: Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0),
                    gateway: Some(R2),
                },
            ],
            routers: vec![
                RouterSpec {
                    name: "r1".to_owned(),
                    legs: vec![
                        Attach {
                            network: CLIENTS,
                            host: 1,
                        },
                        Attach {
                            network: LAN,
                            host: 1,
                        },
                    ],
                },
                RouterSpec {
                    name: "r2".to_owned(),
                    legs: vec![
                        Attach {
                            network: LAN,
                            host: 254,
                        },
                        Attach {
                            network: BACKENDS,
                            host: 1,
                        },
                    ],
                },
            ],
            client: Attach {
                network: CLIENTS,
                host: 10,
            },
            lbs: lbs_on(LAN, lbs),
            backends: backends_on(BACKENDS, backends),
            backend_style: BackendStyle::Unmodified {
                port: ROUTED_BACKEND_PORT,
            },
            static_vip,
        }
    }

    /// The tunnel lab (issue 13): the routed lab's shape, but the backends
    /// serve the VIPs themselves, as tunnelled direct server return needs:
    /// the VIPs on `lo`, `arp_ignore=1` / `arp_announce=2`, nginx on the
    /// VIPs' port (every address). Still none is on-link for an LB, so
    /// only an encapsulated packet reaches them; every link keeps the veth
    /// default MTU of 1500, so encapsulating a full-size segment needs
    /// more than the path has.
    pub fn routed_tunnel(lbs: usize, backends: usize, static_vip: bool) -> Self {
        Self {
            backend_style: BackendStyle::Dsr,
            ..Self::routed(lbs, backends, static_vip)
        }
    }

    /// The active-active lab (issue 14): clients (198.18.1.0/24,
    /// 2001:2:0:1::/64) → router `r1` (.1 on both; `eth0` clients, `eth1`
    /// the LB network) → the LB network (198.18.0.0/24, 2001:2::/64) with
    /// the LB nodes (.2 ...) and DSR backends (.11 ...), whose replies go
    /// straight back through `r1`. No static VIP: the router learns the
    /// VIPs over BGP from the nodes.
    pub fn bgp(lbs: usize, backends: usize) -> Self {
        const LAN: usize = 0;
        const CLIENTS: usize = 1;
        const R1: usize = 0;
        Self {
            networks: vec![
                NetworkSpec {
                    gateway: Some(R1),
                    ..lan()
                },
                clients(R1),
            ],
            routers: vec![RouterSpec {
                name: "r1".to_owned(),
                legs: vec![
                    Attach {
                        network: CLIENTS,
                        host: 1,
                    },
                    Attach {
                        network: LAN,
                        host: 1,
                    },
                ],
            }],
            client: Attach {
                network: CLIENTS,
                host: 10,
            },
            lbs: lbs_on(LAN, lbs),
            backends: backends_on(LAN, backends),
            backend_style: BackendStyle::Dsr,
            static_vip: false,
        }
    }

    /// The static routes of a namespace attached to `networks`: for every
    /// network it is not on, the network and the next hop (router index,
    /// and the network both share). A host (`host` true) whose network has
    /// a gateway gets only the routes whose next hop differs from it (the
    /// default route covers the rest). `exclude` is the router itself, so
    /// its routes never point back at it.
    pub fn routes_from(
        &self,
        networks: &[usize],
        exclude: Option<usize>,
        host: bool,
    ) -> Vec<Route> {
        let hops = self.first_hops(networks, exclude);
        let gateway = networks
            .first()
            .and_then(|&n| self.networks.get(n))
            .and_then(|n| n.gateway);
        hops.into_iter()
            .enumerate()
            .filter_map(|(target, hop)| {
                let (router, via_network) = hop?;
                if networks.contains(&target) || (host && Some(router) == gateway) {
                    return None;
                }
                Some(Route {
                    target,
                    router,
                    via_network,
                })
            })
            .collect()
    }

    /// Breadth-first over networks (routers are the edges): for every
    /// network, the first router on a shortest path from `start` and the
    /// start network it is reached on.
    fn first_hops(&self, start: &[usize], exclude: Option<usize>) -> Vec<Option<(usize, usize)>> {
        let mut hop: Vec<Option<(usize, usize)>> = vec![None; self.networks.len()];
        let mut seen = vec![false; self.networks.len()];
        let mut queue = VecDeque::new();
        for &n in start {
            if let Some(s) = seen.get_mut(n) {
                *s = true;
                queue.push_back(n);
            }
        }
        while let Some(network) = queue.pop_front() {
            for (index, router) in self.routers.iter().enumerate() {
                if Some(index) == exclude || !router.legs.iter().any(|l| l.network == network) {
                    continue;
                }
                for leg in &router.legs {
                    let Some(s) = seen.get_mut(leg.network) else {
                        continue;
                    };
                    if *s {
                        continue;
                    }
                    *s = true;
                    hop[leg.network] = if start.contains(&network) {
                        Some((index, network))
                    } else {
                        hop[network]
                    };
                    queue.push_back(leg.network);
                }
            }
        }
        hop
    }
}

/// A static route: `target` network via router `router`'s leg on
/// `via_network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the destination network.
    pub target: usize,
    /// Index of the next-hop router.
    pub router: usize,
    /// The network shared with that router.
    pub via_network: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l2_lab_has_no_routes() {
        let t = Topology::l2(2, 3, true);
        assert!(t.routes_from(&[0], None, true).is_empty());
    }

    #[test]
    fn routed_lab_routes_go_through_the_right_router() {
        let t = Topology::routed(1, 2, true);
        // The client: everything via r1, i.e. only its default route.
        assert!(t.routes_from(&[1], None, true).is_empty());
        // The LB: backends via r2 (its gateway is r1).
        assert_eq!(
            t.routes_from(&[0], None, true),
            vec![Route {
                target: 2,
                router: 1,
                via_network: 0
            }]
        );
        // A backend: everything via r2, its gateway.
        assert!(t.routes_from(&[2], None, true).is_empty());
        // r1 reaches the backends via r2 on the LAN; r2 the clients via r1.
        assert_eq!(
            t.routes_from(&[1, 0], Some(0), false),
            vec![Route {
                target: 2,
                router: 1,
                via_network: 0
            }]
        );
        assert_eq!(
            t.routes_from(&[0, 2], Some(1), false),
            vec![Route {
                target: 1,
                router: 0,
                via_network: 0
            }]
        );
        assert_eq!(
            t.networks[2].host_v6(11),
            "2001:2:0:2::11".parse::<Ipv6Addr>().expect("address")
        );
        assert_eq!(t.networks[0].host_v4(254), Ipv4Addr::new(198, 18, 0, 254));
    }

    #[test]
    fn the_bgp_lab_needs_no_static_route() {
        let t = Topology::bgp(4, 4);
        // Every host and the router reach everything directly or through
        // their default route; the VIPs come from BGP.
        assert!(t.routes_from(&[0], None, true).is_empty());
        assert!(t.routes_from(&[1], None, true).is_empty());
        assert!(t.routes_from(&[1, 0], Some(0), false).is_empty());
        assert!(!t.static_vip);
        assert_eq!(t.lbs.len(), 4);
        assert_eq!(
            t.networks[0].host_v4(t.lbs[3].host),
            Ipv4Addr::new(198, 18, 0, 5)
        );
    }

    #[test]
    fn the_tunnel_lab_is_the_routed_lab_with_dsr_backends() {
        let routed = Topology::routed(2, 3, false);
        let tunnel = Topology::routed_tunnel(2, 3, false);
        assert_eq!(tunnel.backend_style, BackendStyle::Dsr);
        assert_eq!(tunnel.backend_style.port(), crate::lab::HTTP_PORT);
        assert_eq!(
            Topology {
                backend_style: routed.backend_style,
                ..tunnel
            },
            routed
        );
    }
}
