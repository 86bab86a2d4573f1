//! The tunnel modes (`ipip`, `gue`) of the compiled packet path under
//! BPF_PROG_TEST_RUN, on both entry points (`on_both_hooks!`), and the
//! health-check program `tc_hc_encap`: the real object, programmed by the
//! real control plane, run from inside the NAT bed's namespace (routes
//! and neighbours for the FIB; `tunnelbed`). Every wrapped frame is
//! checked by etherparse: MACs, the outer header (addresses, protocol,
//! TTL, DF, TOS, flow label, IPv4 header checksum), GUE's UDP header and
//! its checksum (computed here over the whole datagram, independently of
//! the data plane's payload-free computation), and the inner packet
//! byte for byte. Needs root.

use std::net::IpAddr;

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketBuilder,
    PacketHeaders, PayloadSlice, TransportHeader,
};
use lb_common::{
    consts::{AF_INET, EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE},
    hash::flow_hash,
    stats::Counter,
    tunnel::{self, HC_MARK_BASE, IPPROTO_IPIP, IPPROTO_IPV6, OUTER_TTL},
    FlowEntry, FlowKey, Mode,
};
use lb_tests::{
    natbed::{
        addr, neighbour_mac, FibNetns, BACKENDS4, BACKENDS6, BEHIND_GATEWAY4, BEHIND_GATEWAY6,
        CLIENT4, CLIENT6, GATEWAY4, GATEWAY6, IN_DEV, IN_MAC, OUT_DEV, OUT_MAC, SAME_IF4, SAME_IF6,
        UNROUTED4, UNROUTED6,
    },
    packet::{self, fix_ipv4_checksum, Flow, Tcp, ACK, CLIENT_MAC, SYN},
    testbed::{flow_key, tc_action, Hook, VIP4, VIP6},
    tunnelbed::{tunnel_vip, TunnelBed},
};
use lb_userspace::config::{Protocol, VipConfig};

/// Ports of the VIPs (one service per mode, family and backend family).
const IPIP: u16 = 80;
const GUE: u16 = 81;
const IPIP_4IN6: u16 = 82;
const GUE_4IN6: u16 = 83;
const GUE_UDP: u16 = 53;
/// Ports of the special-case VIPs (one backend each).
const SAME_IF: u16 = 90;
const NO_NEIGHBOUR: u16 = 91;
const NO_ROUTE: u16 = 92;
const DSR: u16 = 99;
/// Longer than the data plane's per-kind event interval.
const EVENT_GAP: std::time::Duration = std::time::Duration::from_millis(1_100);

fn vips() -> Vec<VipConfig> {
    let mut out = Vec::new();
    for (vip, backends) in [(VIP4, &BACKENDS4), (VIP6, &BACKENDS6)] {
        out.push(tunnel_vip(vip, IPIP, Protocol::Tcp, backends, Mode::Ipip));
        out.push(tunnel_vip(vip, GUE, Protocol::Tcp, backends, Mode::Gue));
        out.push(tunnel_vip(vip, GUE_UDP, Protocol::Udp, backends, Mode::Gue));
    }
    out.push(tunnel_vip(
        VIP4,
        IPIP_4IN6,
        Protocol::Tcp,
        &BACKENDS6,
        Mode::Ipip,
    ));
    out.push(tunnel_vip(
        VIP4,
        GUE_4IN6,
        Protocol::Tcp,
        &BACKENDS6,
        Mode::Gue,
    ));
    out.push(tunnel_vip(
        VIP4,
        GUE_4IN6,
        Protocol::Udp,
        &BACKENDS6,
        Mode::Gue,
    ));
    out
}

/// VIPs whose one backend is special: on the clients' interface, behind
/// a gateway without a neighbour entry, without a route; and a DSR VIP.
fn odd_vips() -> Vec<VipConfig> {
    let mut out = Vec::new();
    for (vip, same, gw, none) in [
        (VIP4, SAME_IF4, BEHIND_GATEWAY4, UNROUTED4),
        (VIP6, SAME_IF6, BEHIND_GATEWAY6, UNROUTED6),
    ] {
        out.push(tunnel_vip(vip, SAME_IF, Protocol::Tcp, &[same], Mode::Ipip));
        out.push(tunnel_vip(
            vip,
            NO_NEIGHBOUR,
            Protocol::Tcp,
            &[gw],
            Mode::Ipip,
        ));
        out.push(tunnel_vip(vip, NO_ROUTE, Protocol::Tcp, &[none], Mode::Gue));
    }
    out.push(lb_tests::testbed::vip(
        VIP4,
        DSR,
        Protocol::Tcp,
        vec![lb_tests::testbed::backend("198.18.0.11", 0x11, 100)],
    ));
    out
}

/// Runs `body` on a fresh bed serving `vips`, inside a fresh namespace.
fn in_netns(hook: Hook, vips: Vec<VipConfig>, body: fn(&mut TunnelBed, &[VipConfig])) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut bed = TunnelBed::new(hook, &vips, in_if, out_if).expect("test bed");
            body(&mut bed, &vips);
        })
        .expect("the test body (see its panic above)");
}

fn counter(bed: &TunnelBed, counter: Counter) -> u64 {
    bed.nat.bed.counter(counter).expect("counter")
}

fn find<'a>(vips: &'a [VipConfig], vip: &str, port: u16, protocol: Protocol) -> &'a VipConfig {
    vips.iter()
        .find(|v| v.address == addr(vip) && v.port == port && v.protocol == protocol)
        .expect("a VIP of the fixture")
}

fn client_flow(vip: &str, port: u16, sport: u16) -> Flow {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    Flow {
        src: addr(client),
        dst: addr(vip),
        sport,
        dport: port,
    }
}

fn frame(flow: &Flow, protocol: Protocol, flags: Tcp, payload: &[u8]) -> Vec<u8> {
    match protocol {
        Protocol::Tcp => packet::tcp(flow, flags, None, payload),
        Protocol::Udp => packet::udp(flow, None, payload),
    }
}

fn words_addr(words: [u32; 4], v4: bool) -> IpAddr {
    let b: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if v4 {
        IpAddr::from([b[0], b[1], b[2], b[3]])
    } else {
        IpAddr::from(<[u8; 16]>::try_from(b).expect("16 bytes"))
    }
}

/// What a wrapped frame must be.
struct Wrapped<'a> {
    /// Next hop's MAC.
    dmac: [u8; 6],
    /// Outer source and destination.
    src: IpAddr,
    dst: IpAddr,
    /// GUE: (source port, destination port); IPIP: None.
    gue: Option<(u16, u16)>,
    /// GUE over IPv6: whether the checksum must be 0 (the inner packet
    /// gives none).
    zero_csum: bool,
    /// The inner IP packet, exactly.
    inner: &'a [u8],
    /// IPv6 outer flow label.
    flow_label: u32,
}

/// Parses `out` with etherparse and checks it against `want`.
fn check_wrapped(out: &[u8], want: &Wrapped) {
    let headers = PacketHeaders::from_ethernet_slice(out).expect("etherparse parses the output");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!((eth.source, eth.destination), (OUT_MAC, want.dmac), "MACs");
    let inner_v4 = want.inner[0] >> 4 == 4;
    let tos = if inner_v4 {
        want.inner[1]
    } else {
        (want.inner[0] << 4) | (want.inner[1] >> 4)
    };
    let payload: &[u8] = match &headers.payload {
        PayloadSlice::Ip(ip) => ip.payload,
        PayloadSlice::Udp(p) => p,
        other => panic!("payload {other:?}"),
    };
    assert_eq!(payload, want.inner, "the inner packet is untouched");
    match &headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "outer addresses"
            );
            assert_eq!(ip.time_to_live, OUTER_TTL);
            assert!(ip.dont_fragment, "DF");
            assert_eq!(ip.dscp.value() << 2 | ip.ecn.value(), tos, "TOS copied");
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 checksum"
            );
            let proto = if want.gue.is_some() { 17 } else { IPPROTO_IPIP };
            assert_eq!(ip.protocol.0, proto);
            if let Some((sport, dport)) = want.gue {
                let Some(TransportHeader::Udp(udp)) = &headers.transport else {
                    panic!("no UDP header");
                };
                assert_eq!((udp.source_port, udp.destination_port), (sport, dport));
                assert_eq!(usize::from(udp.length), 8 + want.inner.len());
                assert_eq!(udp.checksum, 0, "GUE over IPv4 carries no checksum");
            }
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "outer addresses"
            );
            assert_eq!(ip.hop_limit, OUTER_TTL);
            assert_eq!(ip.traffic_class, tos, "traffic class copied");
            assert_eq!(ip.flow_label.value(), want.flow_label, "flow label");
            if let Some((sport, dport)) = want.gue {
                assert_eq!(ip.next_header.0, 17);
                let Some(TransportHeader::Udp(udp)) = &headers.transport else {
                    panic!("no UDP header");
                };
                assert_eq!((udp.source_port, udp.destination_port), (sport, dport));
                assert_eq!(usize::from(udp.length), 8 + want.inner.len());
                if want.zero_csum {
                    assert_eq!(udp.checksum, 0);
                } else {
                    // The full computation over the whole datagram.
                    let full = udp.calc_checksum_ipv6(ip, want.inner).expect("size");
                    assert_eq!(udp.checksum, full, "GUE UDP checksum over IPv6");
                    assert_ne!(udp.checksum, 0);
                }
            } else {
                let proto = if inner_v4 { IPPROTO_IPIP } else { IPPROTO_IPV6 };
                assert_eq!(ip.next_header.0, proto);
            }
        }
        other => panic!("outer {other:?}"),
    }
}

/// A new flow, then a tracked packet of it: both wrapped for the flow's
/// backend, counted.
fn new_then_tracked(
    bed: &mut TunnelBed,
    vips: &[VipConfig],
    vip: &str,
    port: u16,
    protocol: Protocol,
) {
    let config = find(vips, vip, port, protocol).clone();
    let gue = config.forwarding == Mode::Gue;
    let flow = client_flow(vip, port, 40_001);
    let key = flow_key(&flow, protocol);
    let mut first = frame(&flow, protocol, SYN, b"hello through the tunnel");
    // A TOS / traffic class to copy.
    if key.family == AF_INET {
        first[15] = 0xb8;
        fix_ipv4_checksum(&mut first);
    } else {
        first[14] = 0x6b;
        first[15] = 0x80;
    }
    let (verdict, out) = bed.run_on(bed.nat.in_if, &first).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect, "new flow verdict");
    let tcp = protocol == Protocol::Tcp;
    // A TCP SYN is held half-open (a handshake), a UDP datagram tracked at once.
    let entry = if tcp {
        bed.nat.bed.handshake(&key)
    } else {
        bed.nat.bed.dataplane.flow(&key).expect("read")
    }
    .expect("tracked");
    assert_eq!(
        entry.hash,
        flow_hash(&key),
        "the entry keeps the pick's hash"
    );
    let backend = bed
        .backend_address(&config, entry.backend_id)
        .expect("backend");
    let backend_v4 = backend.is_ipv4();
    let src = if backend_v4 {
        words_addr(
            [
                tunnel::outer_source_v4(&bed.config, key.src[0], key.sport),
                0,
                0,
                0,
            ],
            true,
        )
    } else {
        words_addr(
            tunnel::outer_source_v6(&bed.config, &key.src, key.sport),
            false,
        )
    };
    let hash = flow_hash(&key);
    let want = |inner: &'static [u8]| -> Wrapped<'static> {
        Wrapped {
            dmac: neighbour_mac(&backend.to_string()).expect("a backend neighbour"),
            src,
            dst: backend,
            gue: gue.then(|| {
                (
                    u16::from_be(tunnel::gue_source_port(hash)),
                    tunnel::GUE_PORT_DEFAULT,
                )
            }),
            zero_csum: false,
            inner,
            flow_label: hash & 0xf_ffff,
        }
    };
    let inner: &'static [u8] = Box::leak(first[14..].to_vec().into_boxed_slice());
    check_wrapped(&out, &want(inner));
    assert_eq!(counter(bed, Counter::ConntrackNew), u64::from(!tcp));
    assert_eq!(counter(bed, Counter::ConntrackHalfOpenNew), u64::from(tcp));
    assert_eq!(counter(bed, Counter::TunnelEncap), 1);
    assert_eq!(counter(bed, Counter::Forwarded), 1);
    let hops = bed.hops(entry.backend_id).expect("hops");
    assert!(
        hops.iter()
            .any(|h| h.ifindex == bed.nat.out_if && h.mtu == 1500 && h.smac == OUT_MAC),
        "the next hop is cached: {hops:?}"
    );

    let second = frame(&flow, protocol, ACK, b"more");
    let (verdict, out) = bed.run_on(bed.nat.in_if, &second).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect);
    let inner: &'static [u8] = Box::leak(second[14..].to_vec().into_boxed_slice());
    check_wrapped(&out, &want(inner));
    if tcp {
        // The ACK brings the flow into the connection table.
        assert_eq!(counter(bed, Counter::ConntrackHalfOpenPromoted), 1);
        assert_eq!(counter(bed, Counter::ConntrackNew), 1);
    }
    assert_eq!(counter(bed, Counter::TunnelEncap), 2);
    assert_eq!(counter(bed, Counter::Forwarded), 2);
    let id = bed.nat.bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&config)].id;
    let traffic = bed.nat.bed.dataplane.vip_traffic(id).expect("stats");
    assert_eq!((traffic.packets, traffic.new_flows), (2, 1));
    assert_eq!(
        traffic.bytes,
        (first.len() + second.len()) as u64,
        "traffic counts the frames as they came"
    );

    // An entry without the hash (as lbd's replication writes them): the
    // packet hashes the flow itself, to the same outer header.
    let unhashed = FlowEntry { hash: 0, ..entry };
    bed.nat
        .bed
        .dataplane
        .install_flow(&key, &unhashed)
        .expect("install");
    let third = frame(&flow, protocol, ACK, b"again");
    let (verdict, out) = bed.run_on(bed.nat.in_if, &third).expect("test run");
    assert_eq!(verdict, bed.verdicts().redirect);
    let inner: &'static [u8] = Box::leak(third[14..].to_vec().into_boxed_slice());
    check_wrapped(&out, &want(inner));
    assert_eq!(counter(bed, Counter::TunnelEncap), 3);
}

fn ipip_v4(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, IPIP, Protocol::Tcp)
    });
}

fn ipip_v6(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP6, IPIP, Protocol::Tcp)
    });
}

fn ipip_4in6(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, IPIP_4IN6, Protocol::Tcp)
    });
}

fn gue_v4_tcp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE, Protocol::Tcp)
    });
}

fn gue_v4_udp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE_UDP, Protocol::Udp)
    });
}

fn gue_v6_tcp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP6, GUE, Protocol::Tcp)
    });
}

fn gue_v6_udp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP6, GUE_UDP, Protocol::Udp)
    });
}

fn gue_4in6_tcp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE_4IN6, Protocol::Tcp)
    });
}

fn gue_4in6_udp(hook: Hook) {
    in_netns(hook, vips(), |bed, v| {
        new_then_tracked(bed, v, VIP4, GUE_4IN6, Protocol::Udp)
    });
}

/// GUE over IPv6 whose inner IPv4 UDP datagram has no checksum: the outer
/// one is 0 (RFC 6936), the rest as usual.
fn gue_4in6_udp_without_checksum_sends_zero(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let flow = client_flow(VIP4, GUE_4IN6, 40_002);
        let mut first = packet::udp(&flow, None, b"no checksum");
        first[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &first).expect("test run");
        assert_eq!(verdict, bed.verdicts().redirect);
        let key = flow_key(&flow, Protocol::Udp);
        let config = find(vips, VIP4, GUE_4IN6, Protocol::Udp);
        let entry = bed
            .nat
            .bed
            .dataplane
            .flow(&key)
            .expect("read")
            .expect("tracked");
        let backend = bed
            .backend_address(config, entry.backend_id)
            .expect("backend");
        let hash = flow_hash(&key);
        check_wrapped(
            &out,
            &Wrapped {
                dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
                src: words_addr(
                    tunnel::outer_source_v6(&bed.config, &key.src, key.sport),
                    false,
                ),
                dst: backend,
                gue: Some((
                    u16::from_be(tunnel::gue_source_port(hash)),
                    tunnel::GUE_PORT_DEFAULT,
                )),
                zero_csum: true,
                inner: &first[14..],
                flow_label: hash & 0xf_ffff,
            },
        );
    });
}

/// An ICMP error about a flow (to the VIP, quoting its reply) goes to the
/// flow's backend, wrapped, without touching the flow's entry.
fn icmp_error_about_a_flow_goes_wrapped_to_its_backend(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        for (vip, router) in [(VIP4, GATEWAY4), (VIP6, GATEWAY6)] {
            let flow = client_flow(vip, GUE, 40_003);
            let key = flow_key(&flow, Protocol::Tcp);
            bed.run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            let config = find(vips, vip, GUE, Protocol::Tcp);
            // Half-open: the error follows the SYN's backend all the same.
            let entry = bed.nat.bed.handshake(&key).expect("held half-open");
            let backend = bed
                .backend_address(config, entry.backend_id)
                .expect("backend");
            let reply = packet::tcp(
                &Flow {
                    src: flow.dst,
                    dst: flow.src,
                    sport: flow.dport,
                    dport: flow.sport,
                },
                SYN,
                None,
                b"a reply from the backend",
            );
            let error = icmp_error(router, &reply);
            let (verdict, out) = bed.run_on(bed.nat.in_if, &error).expect("test run");
            assert_eq!(verdict, bed.verdicts().redirect, "{vip}");
            let hash = flow_hash(&key);
            let v4 = key.family == AF_INET;
            check_wrapped(
                &out,
                &Wrapped {
                    dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
                    src: if v4 {
                        words_addr(
                            [
                                tunnel::outer_source_v4(&bed.config, key.src[0], key.sport),
                                0,
                                0,
                                0,
                            ],
                            true,
                        )
                    } else {
                        words_addr(
                            tunnel::outer_source_v6(&bed.config, &key.src, key.sport),
                            false,
                        )
                    },
                    dst: backend,
                    gue: Some((
                        u16::from_be(tunnel::gue_source_port(hash)),
                        tunnel::GUE_PORT_DEFAULT,
                    )),
                    zero_csum: false,
                    inner: &error[14..],
                    flow_label: hash & 0xf_ffff,
                },
            );
            let after = bed.nat.bed.handshake(&key).expect("still half-open");
            assert_eq!(after, entry, "an error does not touch the flow's entry");
        }
        assert_eq!(counter(bed, Counter::ForwardedIcmpError), 2);
        assert_eq!(counter(bed, Counter::TunnelEncap), 4);
    });
}

/// An ICMP error from `router` to the sender of `sent`, quoting it.
fn icmp_error(router: &str, sent: &[u8]) -> Vec<u8> {
    let headers = PacketHeaders::from_ethernet_slice(sent).expect("parse");
    let quote = &sent[14..];
    let eth = PacketBuilder::ethernet2([0x02, 0, 0, 0, 0xfe, 0xfe], IN_MAC);
    let mut out = Vec::new();
    match headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            let router: std::net::Ipv4Addr = router.parse().expect("router");
            eth.ipv4(router.octets(), ip.source, 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
                ))
                .write(&mut out, quote)
                .expect("icmp");
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            let router: std::net::Ipv6Addr = router.parse().expect("router");
            eth.ipv6(router.octets(), ip.source, 64)
                .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
                .write(&mut out, quote)
                .expect("icmp");
        }
        other => panic!("{other:?}"),
    }
    out
}

/// A packet that would not fit the route's MTU (1500) once wrapped is
/// answered: ICMP fragmentation-needed / ICMPv6 packet-too-big from the
/// VIP to the client, back out of the ingress interface, quoting as much
/// as the reply may carry, every checksum right.
fn too_big_is_answered_with_icmp(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        for (vip, port, overhead) in [
            (VIP4, IPIP, 20),
            (VIP4, GUE, 28),
            (VIP6, IPIP, 40),
            (VIP6, GUE, 48),
            (VIP4, GUE_4IN6, 48),
        ] {
            let flow = client_flow(vip, port, 40_004);
            let header = if vip == VIP4 { 20 + 20 } else { 40 + 20 };
            let payload = vec![0x5a; 1500 - header];
            let big = packet::tcp(&flow, ACK, None, &payload);
            assert_eq!(big.len(), 14 + 1500);
            let before = counter(bed, Counter::SentIcmpTooBig);
            let (verdict, out) = bed.run_on(bed.nat.in_if, &big).expect("test run");
            assert_eq!(verdict, bed.verdicts().bounce, "{vip}:{port}");
            assert_eq!(counter(bed, Counter::SentIcmpTooBig), before + 1);
            let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
            let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
                panic!("no Ethernet");
            };
            assert_eq!(
                (eth.source, eth.destination),
                (IN_MAC, CLIENT_MAC),
                "MACs swapped"
            );
            let mtu = 1500 - overhead;
            let quoted = headers.payload.slice();
            match (&headers.net, &headers.transport) {
                (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
                    assert_eq!(out.len(), 14 + 576, "an IPv4 error is 576 bytes");
                    assert_eq!(
                        (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                        (addr(vip), addr(CLIENT4))
                    );
                    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                    assert_eq!(
                        icmp.icmp_type,
                        Icmpv4Type::DestinationUnreachable(
                            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu }
                        )
                    );
                    assert_eq!(
                        icmp.checksum,
                        icmp.icmp_type.calc_checksum(quoted),
                        "ICMP checksum"
                    );
                    assert_eq!(quoted, &big[14..14 + 548], "the quote");
                }
                (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
                    assert_eq!(out.len(), 14 + 1280, "an IPv6 error is 1280 bytes");
                    assert_eq!(
                        (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                        (addr(vip), addr(CLIENT6))
                    );
                    assert_eq!(
                        icmp.icmp_type,
                        Icmpv6Type::PacketTooBig {
                            mtu: u32::from(mtu)
                        }
                    );
                    let computed = icmp
                        .icmp_type
                        .calc_checksum(ip.source, ip.destination, quoted)
                        .expect("size");
                    assert_eq!(icmp.checksum, computed, "ICMPv6 checksum");
                    assert_eq!(quoted, &big[14..14 + 1232], "the quote");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
    });
}

/// A packet that fits once wrapped is not answered: 1500 - overhead.
fn a_packet_that_just_fits_is_wrapped(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        let flow = client_flow(VIP4, IPIP, 40_005);
        let big = packet::tcp(&flow, ACK, None, &vec![1; 1480 - 40]);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &big).expect("test run");
        assert_eq!(verdict, bed.verdicts().redirect);
        assert_eq!(out.len(), 14 + 1500);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
    });
}

/// A backend on the ingress interface: wrapped and bounced.
fn a_next_hop_on_the_ingress_interface_bounces(hook: Hook) {
    in_netns(hook, odd_vips(), |bed, _| {
        for (vip, backend) in [(VIP4, SAME_IF4), (VIP6, SAME_IF6)] {
            let flow = client_flow(vip, SAME_IF, 40_006);
            let (verdict, out) = bed
                .run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts().bounce, "{vip}");
            assert_eq!(&out[..6], &neighbour_mac(backend).expect("neighbour"));
            assert_eq!(&out[6..12], &IN_MAC);
        }
    });
}

/// No neighbour for the gateway: dropped, counted, the gateway reported;
/// no route: dropped, counted, reported. Nothing is cached.
fn missing_next_hops_drop_and_report(hook: Hook) {
    in_netns(hook, odd_vips(), |bed, _| {
        for (vip, gateway) in [(VIP4, GATEWAY4), (VIP6, GATEWAY6)] {
            std::thread::sleep(EVENT_GAP);
            let flow = client_flow(vip, NO_NEIGHBOUR, 40_007);
            let (verdict, _) = bed
                .run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts().drop, "{vip}");
            let events = bed.nat.bed.dataplane.drain_events();
            let gw: FlowKey = FlowKey {
                dst: lb_userspace::reconcile::addr_words(addr(gateway)).0,
                family: lb_userspace::reconcile::addr_words(addr(gateway)).1,
                ..FlowKey::default()
            };
            assert!(
                events
                    .iter()
                    .any(|e| e.kind == EVENT_NO_NEIGHBOUR && e.flow.dst == gw.dst),
                "{events:?}"
            );
            let flow = client_flow(vip, NO_ROUTE, 40_008);
            let (verdict, _) = bed
                .run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts().drop, "{vip}");
            let events = bed.nat.bed.dataplane.drain_events();
            assert!(
                events.iter().any(|e| e.kind == EVENT_NO_ROUTE),
                "{events:?}"
            );
        }
        assert_eq!(counter(bed, Counter::DropNoNeighbour), 2);
        assert_eq!(counter(bed, Counter::DropNoRoute), 2);
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
    });
}

/// The health-check program: a marked packet to a tunnelled VIP is
/// wrapped for the backend the mark names and redirected to its next
/// hop's interface; an unmarked one leaves untouched; a mark naming a
/// backend of another VIP, an unknown backend, or a packet to a VIP that
/// is not tunnelled is dropped, counted.
fn health_checks_follow_the_tunnel() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut vips = vips();
            vips.extend(odd_vips());
            let mut bed = TunnelBed::new(Hook::Tc, &vips, in_if, out_if).expect("bed");
            // lbd's check from the node (its address on in0) to a VIP,
            // as it leaves on lo: zero MACs.
            for (vip, node, port) in [(VIP4, "198.18.0.1", GUE), (VIP6, "2001:2::1", IPIP)] {
                let config = find(&vips, vip, port, Protocol::Tcp).clone();
                let backend = addr(if vip == VIP4 {
                    BACKENDS4[1]
                } else {
                    BACKENDS6[2]
                });
                let id = bed.backend_id(&config, backend).expect("id");
                let flow = Flow {
                    src: addr(node),
                    dst: addr(vip),
                    sport: 50_000,
                    dport: port,
                };
                let mut check = packet::tcp(&flow, SYN, None, b"");
                check[..12].copy_from_slice(&[0; 12]);
                let (verdict, out, mark) =
                    bed.run_hc_marked(&check, HC_MARK_BASE | id).expect("run");
                assert_eq!(verdict, tc_action::REDIRECT, "{vip}");
                assert_eq!(mark, 0, "a wrapped check is unmarked");
                // Wrapped and unmarked: leaving by an interface that runs
                // the program too, it passes untouched.
                let (verdict, again) = bed.run_hc(&out, 0).expect("run");
                assert_eq!((verdict, &again), (tc_action::OK, &out));
                let key = flow_key(&flow, Protocol::Tcp);
                let hash = flow_hash(&key);
                let v4 = key.family == AF_INET;
                check_wrapped(
                    &out,
                    &Wrapped {
                        dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
                        src: if v4 {
                            words_addr(
                                [
                                    tunnel::outer_source_v4(&bed.config, key.src[0], key.sport),
                                    0,
                                    0,
                                    0,
                                ],
                                true,
                            )
                        } else {
                            words_addr(
                                tunnel::outer_source_v6(&bed.config, &key.src, key.sport),
                                false,
                            )
                        },
                        dst: backend,
                        gue: (port == GUE).then(|| {
                            (
                                u16::from_be(tunnel::gue_source_port(hash)),
                                tunnel::GUE_PORT_DEFAULT,
                            )
                        }),
                        zero_csum: false,
                        inner: &check[14..],
                        flow_label: hash & 0xf_ffff,
                    },
                );
                // Unmarked, or another mark: untouched.
                for mark in [0, 7, 0x4c41_0001] {
                    let (verdict, out) = bed.run_hc(&check, mark).expect("run");
                    assert_eq!((verdict, out.as_slice()), (tc_action::OK, check.as_slice()));
                }
                // A backend of another VIP, an id no backend has.
                let other = find(&vips, vip, GUE_UDP, Protocol::Udp);
                let other_id = bed.backend_id(other, backend).expect("id");
                assert_ne!(other_id, id);
                for wrong in [other_id, 4000] {
                    let (verdict, _) = bed.run_hc(&check, HC_MARK_BASE | wrong).expect("run");
                    assert_eq!(verdict, tc_action::SHOT);
                }
            }
            // A check to a VIP that is not tunnelled.
            let dsr = find(&vips, VIP4, DSR, Protocol::Tcp).clone();
            let id = bed.backend_id(&dsr, addr("198.18.0.11")).expect("id");
            let flow = Flow {
                src: addr("198.18.0.1"),
                dst: addr(VIP4),
                sport: 50_001,
                dport: DSR,
            };
            let (verdict, _) = bed
                .run_hc(&packet::tcp(&flow, SYN, None, b""), HC_MARK_BASE | id)
                .expect("run");
            assert_eq!(verdict, tc_action::SHOT);
            assert_eq!(counter(&bed, Counter::HcEncap), 2);
            assert_eq!(counter(&bed, Counter::HcDrop), 5);
            assert_eq!(
                counter(&bed, Counter::TunnelEncap),
                0,
                "checks are not client traffic"
            );
        })
        .expect("the test body (see its panic above)");
}

/// A tracked flow's packets use the backend's cached next hop (no FIB
/// lookup: they are still sent after the neighbour entry is gone); a new
/// generation of the backend id looks it up again.
fn the_next_hop_is_cached_per_backend(hook: Hook) {
    let netns = FibNetns::new().expect("namespace");
    let name = netns.name.clone();
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            // The cache is per CPU: every run on the same one.
            lb_tests::bench::xdp::pin_to_cpu(0).expect("pin to CPU 0");
            let vips = vips();
            let mut bed = TunnelBed::new(hook, &vips, in_if, out_if).expect("bed");
            let config = find(&vips, VIP4, IPIP, Protocol::Tcp).clone();
            let flow = client_flow(VIP4, IPIP, 40_009);
            let key = flow_key(&flow, Protocol::Tcp);
            let (verdict, _) = bed
                .run_on(in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            assert_eq!(verdict, bed.verdicts().redirect);
            let entry = bed.nat.bed.handshake(&key).expect("held half-open");
            let backend = bed
                .backend_address(&config, entry.backend_id)
                .expect("backend");
            lb_tests::support::ip(&[
                "-n",
                &name,
                "neigh",
                "del",
                &backend.to_string(),
                "dev",
                OUT_DEV,
            ]);
            let (verdict, out) = bed
                .run_on(in_if, &packet::tcp(&flow, ACK, None, b""))
                .expect("ack");
            assert_eq!(verdict, bed.verdicts().redirect, "the cached next hop");
            assert_eq!(
                &out[..6],
                &neighbour_mac(&backend.to_string()).expect("mac")
            );
            // The same id, a new backend: looked up again, no neighbour now.
            let generation = bed
                .hops(entry.backend_id)
                .expect("hops")
                .iter()
                .map(|h| h.generation)
                .max()
                .expect("a cached hop");
            let (addr_words, family) = lb_userspace::reconcile::addr_words(backend);
            let id = bed.nat.bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&config)].id;
            lb_userspace::dataplane::MapWriter::set_backend(
                &mut bed.nat.bed.dataplane,
                entry.backend_id,
                &lb_common::Backend {
                    addr: addr_words,
                    generation: generation + 1,
                    vip_id: id as u16,
                    port: 0,
                    mac: [0; 6],
                    family,
                    flags: lb_common::consts::BACKEND_F_ALIVE,
                },
            )
            .expect("write backend");
            let (verdict, _) = bed
                .run_on(in_if, &packet::tcp(&flow, ACK, None, b""))
                .expect("ack");
            assert_eq!(verdict, bed.verdicts().drop);
            assert_eq!(counter(&bed, Counter::DropNoNeighbour), 1);
        })
        .expect("the test body (see its panic above)");
}

/// At tc a GRO'd skb bigger than the MTU is judged by its segments: the
/// answer comes only when one segment (headers + `gso_size` + overhead)
/// would not fit, with the MTU left for the inner packet; the answer is a
/// single packet.
#[test]
fn tc_judges_a_gso_packet_by_its_segments() {
    in_netns(Hook::Tc, vips(), |bed, _| {
        let flow = client_flow(VIP4, IPIP, 40_010);
        // 3000 bytes of IP packet, TCP segments of 1448 bytes (40 bytes
        // of headers): 1488 + 20 > 1500.
        let big = packet::tcp(&flow, ACK, None, &vec![7; 3000 - 40]);
        let (verdict, out) = bed.run_tc_gso(bed.nat.in_if, &big, 1448, 3).expect("run");
        assert_eq!(verdict, bed.verdicts().bounce);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
        assert_eq!(out.len(), 14 + 576);
        let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
        let Some(TransportHeader::Icmpv4(icmp)) = &headers.transport else {
            panic!("no ICMP");
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1480
            })
        );
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(headers.payload.slice())
        );
        // Segments of 1400 bytes fit (1440 + 20): no answer, whatever the
        // skb's length (the wrap itself needs a GSO type the test run
        // cannot set, see `run_tc_gso`).
        let (verdict, _) = bed.run_tc_gso(bed.nat.in_if, &big, 1400, 3).expect("run");
        assert_ne!(verdict, bed.verdicts().bounce);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 1);
    });
}

#[test]
fn health_checks() {
    health_checks_follow_the_tunnel();
}

lb_tests::on_both_hooks!(
    ipip_v4,
    ipip_v6,
    ipip_4in6,
    gue_v4_tcp,
    gue_v4_udp,
    gue_v6_tcp,
    gue_v6_udp,
    gue_4in6_tcp,
    gue_4in6_udp,
    gue_4in6_udp_without_checksum_sends_zero,
    icmp_error_about_a_flow_goes_wrapped_to_its_backend,
    too_big_is_answered_with_icmp,
    a_packet_that_just_fits_is_wrapped,
    a_next_hop_on_the_ingress_interface_bounces,
    missing_next_hops_drop_and_report,
    the_next_hop_is_cached_per_backend,
);
