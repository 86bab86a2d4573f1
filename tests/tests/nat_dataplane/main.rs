//! The NAT forwarding mode of the compiled packet path under
//! BPF_PROG_TEST_RUN, on both entry points (`on_both_hooks!`): the real
//! object, programmed by the real control plane (`forwarding = "nat"`),
//! run from inside a namespace whose routes and neighbours the program's
//! FIB lookups see (`natbed`). Every translated frame is checked by
//! etherparse: MACs, addresses, ports, TTL / hop limit, the IPv4 header
//! checksum and the TCP/UDP checksum. Needs root.

use std::{collections::HashMap, net::IpAddr};

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Type, Icmpv6Type, LinkHeader, NetHeaders, PacketBuilder,
    PacketHeaders, TransportHeader,
};
use lb_common::{
    consts::{
        names, AF_INET, AF_INET6, EVENT_NAT_PORTS_EXHAUSTED, EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE,
        NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED, NAT_F_SYN,
    },
    nat::counterpart_key,
    stats::Counter,
    FlowKey, NatEntry,
};
use lb_tests::{
    natbed::{
        addr, nat_vip, neighbour_mac, FibNetns, NatBed, BACKENDS4, BACKENDS6, BEHIND_GATEWAY4,
        BEHIND_GATEWAY6, CLIENT4, CLIENT6, GATEWAY4, GATEWAY6, IN_DEV, IN_MAC, NAT4, NAT6, OUT_DEV,
        OUT_MAC, SAME_IF4, SAME_IF6, UNROUTED4, UNROUTED6,
    },
    packet::{self, Flow, Tcp, ACK, CLIENT_MAC, SYN},
    support::ip,
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    reconcile::addr_words,
};

/// Port the backends of the TCP VIPs listen on (differs from the VIP's).
const BACKEND_PORT: u16 = 8080;
/// Longer than the data plane's per-kind event interval.
const EVENT_GAP: std::time::Duration = std::time::Duration::from_millis(1_100);
/// Source ports of the NAT addresses.
const PORTS: (u16, u16) = (20_000, 29_999);

/// The four NAT VIPs of most cases: TCP :80 (backends on :8080) and UDP
/// :53 (backends on the VIP's port), IPv4 and IPv6.
fn vips() -> Vec<VipConfig> {
    let with = |list: [&'static str; 3], port| list.map(|a| (a, port));
    vec![
        nat_vip(
            VIP4,
            80,
            Protocol::Tcp,
            &with(BACKENDS4, Some(BACKEND_PORT)),
            NAT4,
            PORTS,
        ),
        nat_vip(VIP4, 53, Protocol::Udp, &with(BACKENDS4, None), NAT4, PORTS),
        nat_vip(
            VIP6,
            80,
            Protocol::Tcp,
            &with(BACKENDS6, Some(BACKEND_PORT)),
            NAT6,
            PORTS,
        ),
        nat_vip(VIP6, 53, Protocol::Udp, &with(BACKENDS6, None), NAT6, PORTS),
    ]
}

/// Runs `body` on a fresh bed serving `vips`, inside a fresh namespace.
fn in_netns(hook: Hook, vips: Vec<VipConfig>, body: fn(&mut NatBed)) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut bed = NatBed::new(hook, &vips, in_if, out_if).expect("test bed");
            body(&mut bed);
        })
        .expect("the test body (see its panic above)");
}

fn counter(bed: &NatBed, counter: Counter) -> u64 {
    bed.bed.counter(counter).expect("counter")
}

/// What a translated frame must look like.
#[derive(Debug)]
struct Expected {
    smac: [u8; 6],
    dmac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    ttl: u8,
    /// A UDP checksum of 0 (none, IPv4) must stay 0.
    udp_zero: bool,
}

/// Parses `frame` with etherparse and checks every field and checksum.
fn check(frame: &[u8], want: &Expected) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(
        (eth.source, eth.destination),
        (want.smac, want.dmac),
        "MACs"
    );
    let payload = headers.payload.slice();
    let transport = headers.transport.as_ref().expect("a transport header");
    let (sport, dport, checksum, computed) = match (&headers.net, transport) {
        (Some(NetHeaders::Ipv4(ip, _)), t) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "addresses"
            );
            assert_eq!(ip.time_to_live, want.ttl, "TTL");
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "IPv4 header checksum"
            );
            match t {
                TransportHeader::Tcp(tcp) => (
                    tcp.source_port,
                    tcp.destination_port,
                    tcp.checksum,
                    tcp.calc_checksum_ipv4(ip, payload).expect("size"),
                ),
                TransportHeader::Udp(udp) => (
                    udp.source_port,
                    udp.destination_port,
                    udp.checksum,
                    if want.udp_zero {
                        0
                    } else {
                        udp.calc_checksum_ipv4(ip, payload).expect("size")
                    },
                ),
                other => panic!("transport {other:?}"),
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), t) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (want.src, want.dst),
                "addresses"
            );
            assert_eq!(ip.hop_limit, want.ttl, "hop limit");
            match t {
                TransportHeader::Tcp(tcp) => (
                    tcp.source_port,
                    tcp.destination_port,
                    tcp.checksum,
                    tcp.calc_checksum_ipv6(ip, payload).expect("size"),
                ),
                TransportHeader::Udp(udp) => (
                    udp.source_port,
                    udp.destination_port,
                    udp.checksum,
                    udp.calc_checksum_ipv6(ip, payload).expect("size"),
                ),
                other => panic!("transport {other:?}"),
            }
        }
        other => panic!("network headers {other:?}"),
    };
    assert_eq!((sport, dport), (want.sport, want.dport), "ports");
    assert_eq!(checksum, computed, "TCP/UDP checksum of {want:?}");
}

/// A client flow to `vip`:`port`.
fn client_flow(vip: &str, port: u16, sport: u16) -> Flow {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    Flow {
        src: addr(client),
        dst: addr(vip),
        sport,
        dport: port,
    }
}

fn proto_of(port: u16) -> Protocol {
    if port == 53 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// A frame of `flow` (TCP with `flags`, or UDP for port 53 either way).
fn frame(flow: &Flow, protocol: Protocol, flags: Tcp, payload: &[u8]) -> Vec<u8> {
    match protocol {
        Protocol::Tcp => packet::tcp(flow, flags, None, payload),
        Protocol::Udp => packet::udp(flow, None, payload),
    }
}

/// The forward entry of `flow` and its reply key.
fn entries(bed: &NatBed, key: &FlowKey) -> (NatEntry, FlowKey, NatEntry) {
    let forward = bed.bed.dataplane.nat().flow(key).expect("forward entry");
    let reply_key = counterpart_key(key, &forward);
    let reply = bed
        .bed
        .dataplane
        .nat()
        .flow(&reply_key)
        .expect("reply entry");
    (forward, reply_key, reply)
}

fn words_to_addr(words: [u32; 4], family: u8) -> IpAddr {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if family == AF_INET {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        let array: [u8; 16] = bytes.try_into().expect("16 bytes");
        IpAddr::from(array)
    }
}

/// A new flow, a tracked packet of it, and the backend's reply: each
/// translated, checksummed and counted as the contract says.
fn new_tracked_and_reply(bed: &mut NatBed, vip: &str, port: u16) {
    new_tracked_and_reply_from(bed, vip, port, 40_001);
}

/// `new_tracked_and_reply` for a client flow from `sport`, on a bed that
/// may carry other flows (counters are compared with their values before);
/// returns the flow's NAT source port.
fn new_tracked_and_reply_from(bed: &mut NatBed, vip: &str, port: u16, sport: u16) -> u16 {
    let protocol = proto_of(port);
    let flow = client_flow(vip, port, sport);
    let key = flow_key(&flow, protocol);
    let id = bed.bed.balancer.vips()[&lb_userspace::reconcile::VipId {
        address: addr(vip),
        port,
        protocol,
    }]
        .id;
    let before = |counter: Counter| self::counter(bed, counter);
    let (new, hits, forwarded, replies) = (
        before(Counter::NatNew),
        before(Counter::NatHit),
        before(Counter::Forwarded),
        before(Counter::ForwardedNatReply),
    );
    let traffic = bed.bed.dataplane.vip_traffic(id).expect("stats");
    let flows = bed.flows().len();
    let first = frame(&flow, protocol, SYN, b"hello");
    let (verdict, out) = bed.run_on(bed.in_if, &first).expect("test run");
    assert_eq!(verdict, bed.verdicts.redirect, "new flow verdict");
    assert_eq!(counter(bed, Counter::NatNew), new + 1);
    assert_eq!(counter(bed, Counter::Forwarded), forwarded + 1);
    let (forward, reply_key, reply) = entries(bed, &key);
    let backend = words_to_addr(forward.dst, key.family);
    let backends: &[&str] = if key.family == AF_INET6 {
        &BACKENDS6
    } else {
        &BACKENDS4
    };
    assert!(backends.iter().any(|b| addr(b) == backend), "{backend}");
    let nat = if key.family == AF_INET6 { NAT6 } else { NAT4 };
    let backend_port = if protocol == Protocol::Tcp {
        BACKEND_PORT
    } else {
        port
    };
    let source_port = u16::from_be(forward.sport);
    assert!((PORTS.0..=PORTS.1).contains(&source_port), "{source_port}");
    assert_eq!(words_to_addr(forward.src, key.family), addr(nat));
    assert_eq!(u16::from_be(forward.dport), backend_port);
    assert_eq!(forward.direction, NAT_DIR_FORWARD);
    assert_eq!(
        forward.flags,
        if protocol == Protocol::Tcp {
            NAT_F_SYN
        } else {
            0
        }
    );
    assert_eq!((forward.ifindex, forward.smac), (bed.out_if, OUT_MAC));
    assert_eq!(Some(forward.dmac), neighbour_mac(&backend.to_string()));
    assert_eq!(reply.direction, NAT_DIR_REPLY);
    assert_eq!(
        (reply.src, reply.dst, reply.sport, reply.dport),
        (key.dst, key.src, key.dport, key.sport)
    );
    assert_eq!(
        (reply.backend_id, reply.vip_id),
        (forward.backend_id, forward.vip_id)
    );
    assert_eq!(bed.flows().len(), flows + 2, "two entries per flow");
    let to_backend = Expected {
        smac: OUT_MAC,
        dmac: forward.dmac,
        src: addr(nat),
        dst: backend,
        sport: source_port,
        dport: backend_port,
        ttl: 63,
        udp_zero: false,
    };
    check(&out, &to_backend);

    // A tracked packet: the same translation, no new flow.
    let (verdict, out) = bed
        .run_on(bed.in_if, &frame(&flow, protocol, ACK, b"more data"))
        .expect("test run");
    assert_eq!(verdict, bed.verdicts.redirect);
    check(&out, &to_backend);
    assert_eq!(counter(bed, Counter::NatNew), new + 1);
    assert_eq!(counter(bed, Counter::NatHit), hits + 1);
    assert_eq!(counter(bed, Counter::Forwarded), forwarded + 2);

    // The backend's reply, arriving on out0: back to VIP -> client on in0.
    let back = Flow {
        src: backend,
        dst: addr(nat),
        sport: backend_port,
        dport: source_port,
    };
    assert_eq!(flow_key(&back, protocol), reply_key);
    let syn_ack = Tcp {
        syn: true,
        ack: true,
        ..Tcp::default()
    };
    let (verdict, out) = bed
        .run_on(bed.out_if, &frame(&back, protocol, syn_ack, b"answer"))
        .expect("test run");
    assert_eq!(verdict, bed.verdicts.redirect, "reply verdict");
    check(
        &out,
        &Expected {
            smac: IN_MAC,
            dmac: CLIENT_MAC,
            src: addr(vip),
            dst: flow.src,
            sport: port,
            dport: flow.sport,
            ttl: 63,
            udp_zero: false,
        },
    );
    assert_eq!(counter(bed, Counter::ForwardedNatReply), replies + 1);
    assert_eq!(counter(bed, Counter::NatHit), hits + 2);
    let (_, _, reply) = entries(bed, &key);
    assert_ne!(
        reply.flags & NAT_F_REPLIED,
        0,
        "the reply entry saw a reply"
    );
    assert_eq!((reply.ifindex, reply.smac), (bed.in_if, IN_MAC));
    // Forward traffic is counted per VIP and backend, as for DSR.
    let after = bed.bed.dataplane.vip_traffic(id).expect("stats");
    assert_eq!(
        (after.packets, after.new_flows),
        (traffic.packets + 2, traffic.new_flows + 1)
    );
    source_port
}

/// A new flow's NAT source port is its checksum-neutral one while that is
/// free and in range (client port + VIP port = NAT port + backend port in
/// one's-complement arithmetic, so the ports' rewrite leaves the TCP/UDP
/// checksum as it is): the client's own port when the VIP's and the
/// backend's are equal. `new_tracked_and_reply_from` checks both
/// directions' translation and every checksum.
fn a_free_checksum_neutral_port_is_taken_first(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        // 30_000 + 80 = 22_000 + 8080.
        assert_eq!(new_tracked_and_reply_from(bed, VIP4, 80, 30_000), 22_000);
        assert_eq!(new_tracked_and_reply_from(bed, VIP6, 80, 30_000), 22_000);
        // Equal ports: the client's port is kept.
        assert_eq!(new_tracked_and_reply_from(bed, VIP4, 53, 25_000), 25_000);
        assert_eq!(new_tracked_and_reply_from(bed, VIP6, 53, 25_000), 25_000);
        // Out of the range (20_000..=29_999): a hashed port from it.
        let hashed = new_tracked_and_reply_from(bed, VIP4, 53, 40_002);
        assert_ne!(hashed, 40_002);
    });
}

/// A taken neutral port (here by a flow from the same client port to
/// another VIP port served by the same backend port) sends a new flow to a
/// hashed port of the range, never a collision; its ports' change no
/// longer cancels out and is still checksummed right both ways.
fn a_taken_neutral_port_falls_back_to_a_hashed_one(hook: Hook) {
    let backend = [(BACKENDS4[0], Some(BACKEND_PORT))];
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &backend, NAT4, PORTS),
        nat_vip(VIP4, 81, Protocol::Tcp, &backend, NAT4, PORTS),
    ];
    in_netns(hook, vips, |bed| {
        assert_eq!(new_tracked_and_reply_from(bed, VIP4, 80, 30_000), 22_000);
        // 29_999 + 81 = 22_000 + 8080 too: taken.
        let second = new_tracked_and_reply_from(bed, VIP4, 81, 29_999);
        assert_ne!(second, 22_000);
        assert!((PORTS.0..=PORTS.1).contains(&second), "{second}");
    });
}

fn tcp_v4_new_tracked_and_reply(hook: Hook) {
    in_netns(hook, vips(), |bed| new_tracked_and_reply(bed, VIP4, 80));
}

fn tcp_v6_new_tracked_and_reply(hook: Hook) {
    in_netns(hook, vips(), |bed| new_tracked_and_reply(bed, VIP6, 80));
}

fn udp_v4_new_tracked_and_reply(hook: Hook) {
    in_netns(hook, vips(), |bed| new_tracked_and_reply(bed, VIP4, 53));
}

fn udp_v6_new_tracked_and_reply(hook: Hook) {
    in_netns(hook, vips(), |bed| new_tracked_and_reply(bed, VIP6, 53));
}

/// UDP over IPv4 without a checksum (0) keeps none, both ways.
fn udp_zero_checksum_stays_zero(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 53, 40_002);
        let mut first = packet::udp(&flow, None, b"no checksum");
        let csum = 14 + 20 + 6;
        first[csum..csum + 2].copy_from_slice(&[0, 0]);
        let (verdict, out) = bed.run_on(bed.in_if, &first).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        let key = flow_key(&flow, Protocol::Udp);
        let (forward, _, _) = entries(bed, &key);
        let backend = words_to_addr(forward.dst, AF_INET);
        check(
            &out,
            &Expected {
                smac: OUT_MAC,
                dmac: forward.dmac,
                src: addr(NAT4),
                dst: backend,
                sport: u16::from_be(forward.sport),
                dport: 53,
                ttl: 63,
                udp_zero: true,
            },
        );
        assert_eq!(&out[csum..csum + 2], &[0, 0]);
        let back = Flow {
            src: backend,
            dst: addr(NAT4),
            sport: 53,
            dport: u16::from_be(forward.sport),
        };
        let mut reply = packet::udp(&back, None, b"answer");
        reply[csum..csum + 2].copy_from_slice(&[0, 0]);
        let (verdict, out) = bed.run_on(bed.out_if, &reply).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(&out[csum..csum + 2], &[0, 0]);
    });
}

/// A UDP checksum that computes to 0 after the translation is sent as
/// 0xffff (0 would mean "no checksum").
fn udp_checksum_computing_to_zero_is_sent_as_ffff(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for vip in [VIP4, VIP6] {
            let flow = client_flow(vip, 53, 40_013);
            bed.run_on(bed.in_if, &packet::udp(&flow, None, b"open"))
                .expect("first");
            let key = flow_key(&flow, Protocol::Udp);
            let (forward, _, _) = entries(bed, &key);
            // The payload's first word makes the translated sum all ones:
            // it is the checksum the translated datagram has with a zero
            // word there.
            let mut payload = [0u8; 16];
            let header = etherparse::UdpHeader {
                source_port: u16::from_be(forward.sport),
                destination_port: 53,
                length: 8 + payload.len() as u16,
                checksum: 0,
            };
            let (src, dst) = (
                words_to_addr(forward.src, key.family),
                words_to_addr(forward.dst, key.family),
            );
            let word = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => header
                    .calc_checksum_ipv4_raw(s.octets(), d.octets(), &payload)
                    .expect("size"),
                (IpAddr::V6(s), IpAddr::V6(d)) => header
                    .calc_checksum_ipv6_raw(s.octets(), d.octets(), &payload)
                    .expect("size"),
                _ => unreachable!(),
            };
            payload[..2].copy_from_slice(&word.to_be_bytes());
            let (verdict, out) = bed
                .run_on(bed.in_if, &packet::udp(&flow, None, &payload))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect);
            let csum = if key.family == AF_INET {
                14 + 20 + 6
            } else {
                14 + 40 + 6
            };
            assert_eq!(&out[csum..csum + 2], &[0xff, 0xff], "{vip}");
            check(
                &out,
                &Expected {
                    smac: OUT_MAC,
                    dmac: forward.dmac,
                    src,
                    dst,
                    sport: u16::from_be(forward.sport),
                    dport: 53,
                    ttl: 63,
                    udp_zero: false,
                },
            );
        }
    });
}

/// VLAN tags stay; the translation happens behind them.
fn vlan_tags_are_kept(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_003);
        let first = packet::tcp(&flow, SYN, Some(42), b"");
        let (verdict, out) = bed.run_on(bed.in_if, &first).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(&out[12..16], &first[12..16], "the tag");
        let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
        check(
            &out,
            &Expected {
                smac: OUT_MAC,
                dmac: forward.dmac,
                src: addr(NAT4),
                dst: words_to_addr(forward.dst, AF_INET),
                sport: u16::from_be(forward.sport),
                dport: BACKEND_PORT,
                ttl: 63,
                udp_zero: false,
            },
        );
    });
}

/// A SYN on a translation whose connection closed starts it afresh: same
/// source port, the forward entry back to SYN, the reply entry cleared.
fn a_syn_reuses_a_closed_translation(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_004);
        let key = flow_key(&flow, Protocol::Tcp);
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let (forward, _, _) = entries(bed, &key);
        let back = Flow {
            src: words_to_addr(forward.dst, AF_INET),
            dst: addr(NAT4),
            sport: BACKEND_PORT,
            dport: u16::from_be(forward.sport),
        };
        let fin = Tcp {
            fin: true,
            ack: true,
            ..Tcp::default()
        };
        bed.run_on(bed.in_if, &packet::tcp(&flow, fin, None, b""))
            .expect("fin");
        bed.run_on(bed.out_if, &packet::tcp(&back, fin, None, b""))
            .expect("fin back");
        let (closed, _, reply) = entries(bed, &key);
        assert_eq!(closed.flags, NAT_F_SYN | NAT_F_FIN);
        assert_eq!(reply.flags, NAT_F_REPLIED | NAT_F_FIN);
        let (verdict, _) = bed
            .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("new syn");
        assert_eq!(verdict, bed.verdicts.redirect);
        let (again, _, reply) = entries(bed, &key);
        assert_eq!(again.flags, NAT_F_SYN);
        assert_eq!(reply.flags, 0);
        assert_eq!(again.sport, forward.sport, "same translation");
        assert_eq!(counter(bed, Counter::NatNew), 1);
    });
}

/// A TCP segment other than a SYN with no translation cannot be
/// translated: dropped, nothing inserted.
fn tcp_non_syn_without_a_flow_is_dropped(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for vip in [VIP4, VIP6] {
            let flow = client_flow(vip, 80, 40_005);
            let frame = packet::tcp(&flow, ACK, None, b"x");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame);
        }
        assert_eq!(counter(bed, Counter::DropNatNoFlow), 2);
        assert!(bed.flows().is_empty());
    });
}

/// The guards in NAT mode: a new flow over its source's limit is dropped
/// before it takes a source port, the flows it already has go on; a
/// denied source is dropped before any lookup.
fn guards_drop_before_any_nat_state(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        use lb_userspace::guard::{AclRule, Action, GuardConfig, Limits, RateLimit, Scope};
        let mut config = GuardConfig::default();
        config.limits.insert(
            Scope::Global,
            Limits {
                source: Some(RateLimit::new(1, Some(1), "source").expect("rate")),
                ..Limits::default()
            },
        );
        let denied = client_flow(VIP4, 80, 40_020);
        config.acl.insert(AclRule {
            scope: Scope::Global,
            action: Action::Deny,
            source: format!("{}", denied.src).parse().expect("cidr"),
        });
        let first = client_flow(VIP6, 80, 40_021);
        let mut second = first;
        second.sport = 40_022;
        let mut guard = None;
        bed.bed.set_guard(&mut guard, config).expect("guard");
        let (verdict, _) = bed
            .run_on(bed.in_if, &packet::tcp(&first, SYN, None, b""))
            .expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect, "the first new flow");
        let flows = bed.flows().len();
        let over = packet::tcp(&second, SYN, None, b"");
        let (verdict, out) = bed.run_on(bed.in_if, &over).expect("test run");
        assert_eq!(
            verdict, bed.verdicts.drop,
            "a second new flow, over the limit"
        );
        assert_eq!(out, over);
        assert_eq!(bed.flows().len(), flows, "no translation, no source port");
        assert_eq!(counter(bed, Counter::DropRateLimited), 1);
        for _ in 0..3 {
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&first, ACK, None, b"x"))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect, "the tracked flow goes on");
        }
        let syn = packet::tcp(&denied, SYN, None, b"");
        let (verdict, _) = bed.run_on(bed.in_if, &syn).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop, "a denied source");
        assert_eq!(counter(bed, Counter::DropAclDenied), 1);
        assert_eq!(counter(bed, Counter::DropRateLimited), 1);
        assert_eq!(bed.flows().len(), flows);
    });
}

/// A packet that would leave with TTL 0 is dropped, both ways, IPv4 and
/// IPv6, before any state is made.
fn ttl_1_is_dropped(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_006);
        let mut frame = packet::tcp(&flow, SYN, None, b"");
        frame[14 + 8] = 1;
        packet::fix_ipv4_checksum(&mut frame);
        let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        let flow6 = client_flow(VIP6, 80, 40_006);
        let mut frame6 = packet::tcp(&flow6, SYN, None, b"");
        frame6[14 + 7] = 1;
        let (verdict, _) = bed.run_on(bed.in_if, &frame6).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(counter(bed, Counter::DropTtlExceeded), 2);
        assert!(bed.flows().is_empty());
        // A reply with TTL 1.
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
        let back = Flow {
            src: words_to_addr(forward.dst, AF_INET),
            dst: addr(NAT4),
            sport: BACKEND_PORT,
            dport: u16::from_be(forward.sport),
        };
        let mut reply = packet::tcp(&back, ACK, None, b"");
        reply[14 + 8] = 1;
        packet::fix_ipv4_checksum(&mut reply);
        let (verdict, _) = bed.run_on(bed.out_if, &reply).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(counter(bed, Counter::DropTtlExceeded), 3);
    });
}

/// Two source ports: the third concurrent flow to the one backend finds
/// none (dropped, counted, reported); once the reaper frees the entries,
/// new flows get ports again.
fn port_exhaustion_drops_and_recovers(hook: Hook) {
    let vips = vec![nat_vip(
        VIP4,
        80,
        Protocol::Tcp,
        &[(BACKENDS4[0], None)],
        NAT4,
        (30_000, 30_001),
    )];
    in_netns(hook, vips, |bed| {
        for sport in [41_000, 41_001] {
            let flow = client_flow(VIP4, 80, sport);
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect, "flow {sport}");
        }
        let third = packet::tcp(&client_flow(VIP4, 80, 41_002), SYN, None, b"");
        let (verdict, _) = bed.run_on(bed.in_if, &third).expect("test run");
        assert_eq!(verdict, bed.verdicts.drop);
        assert_eq!(counter(bed, Counter::DropNatPortsExhausted), 1);
        assert_eq!(counter(bed, Counter::NatNew), 2);
        let mut ports: Vec<u16> = bed
            .flows()
            .iter()
            .filter(|(_, e)| e.direction == NAT_DIR_FORWARD)
            .map(|(_, e)| u16::from_be(e.sport))
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, [30_000, 30_001]);
        let events = bed.bed.dataplane.drain_events();
        assert!(
            events.iter().any(|e| e.kind == EVENT_NAT_PORTS_EXHAUSTED),
            "{events:?}"
        );
        bed.clear_flows().expect("reap");
        let (verdict, _) = bed.run_on(bed.in_if, &third).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect, "after the reaper");
        assert_eq!(counter(bed, Counter::NatNew), 3);
    });
}

/// A full NAT flow table drops new flows (counted), never half of one,
/// and never evicts: with every slot of the table taken (both of any
/// key's buckets full) a SYN is dropped and nothing leaves; with room
/// for the reply entry only, that entry is taken out again; with room for
/// both, the flow opens.
fn a_full_flow_table_drops_new_flows_whole(hook: Hook) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            const SIZE: u32 = 1024;
            let mut bed =
                NatBed::with_flow_table(hook, &vips(), in_if, out_if, SIZE).expect("test bed");
            // A client whose forward key and reply key (its first port)
            // share no bucket: opened once in the empty table to learn its
            // reply key, then taken out again.
            let (frame, key, reply_key) = (40_014..40_064)
                .find_map(|port| {
                    let flow = client_flow(VIP4, 80, port);
                    let frame = packet::tcp(&flow, SYN, None, b"");
                    let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
                    assert_eq!(verdict, bed.verdicts.redirect);
                    let key = flow_key(&flow, Protocol::Tcp);
                    let (_, reply_key, _) = entries(&bed, &key);
                    bed.clear_flows().expect("clear");
                    let table = bed.bed.dataplane.nat().table();
                    let (f1, f2) = table.buckets_of(&key);
                    let (r1, _) = table.buckets_of(&reply_key);
                    (r1 != f1 && r1 != f2).then_some((frame, key, reply_key))
                })
                .expect("a client whose keys share no bucket");
            let opened = counter(&bed, Counter::NatNew);
            // Every slot taken by other flows' entries.
            let slots = bed.bed.dataplane.nat().table().slots() as usize;
            let filler = |i: u32| FlowKey {
                src: [
                    u32::from_be_bytes([198, 18, 9, 0]).wrapping_add(i).to_be(),
                    0,
                    0,
                    0,
                ],
                dst: [u32::from_be_bytes([198, 18, 9, 255]).to_be(), 0, 0, 0],
                sport: 1,
                dport: 2,
                proto: 6,
                family: AF_INET,
                _pad: 0,
            };
            for i in 0..1_000_000 {
                if bed.flows().len() == slots {
                    break;
                }
                // A key whose buckets are both full is refused: fine.
                let _ = bed
                    .bed
                    .dataplane
                    .nat_mut()
                    .install_flow(&filler(i), &NatEntry::default());
            }
            assert_eq!(bed.flows().len(), slots, "every slot taken");
            let before = bed.flows();
            // Full: dropped, nothing written, nothing evicted.
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            assert_eq!(counter(&bed, Counter::DropNatTableFull), 1);
            assert_eq!(bed.flows(), before, "nothing evicted, nothing added");
            // Room for the reply entry only (a slot of its first bucket):
            // it goes in, the forward entry finds none, it goes again.
            let free_one_in = |bed: &mut NatBed, bucket: u32| {
                let (held, _) = bed.bed.dataplane.nat().table().held_in(bucket)[0];
                bed.bed
                    .dataplane
                    .nat_mut()
                    .remove_flow(&held)
                    .expect("free");
            };
            let (r1, _) = bed.bed.dataplane.nat().table().buckets_of(&reply_key);
            free_one_in(&mut bed, r1);
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(counter(&bed, Counter::DropNatTableFull), 2);
            assert_eq!(bed.flows().len(), slots - 1, "the reply entry went again");
            assert!(bed.bed.dataplane.nat().flow(&reply_key).is_none());
            assert!(bed.bed.dataplane.nat().flow(&key).is_none());
            // Room for both: the flow opens.
            let (f1, _) = bed.bed.dataplane.nat().table().buckets_of(&key);
            free_one_in(&mut bed, f1);
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect);
            assert_eq!(counter(&bed, Counter::NatNew), opened + 1);
            let (forward, found_reply, _) = entries(&bed, &key);
            assert_eq!(found_reply, reply_key, "the same first port");
            assert_eq!(forward.direction, NAT_DIR_FORWARD);
        })
        .expect("the test body (see its panic above)");
}

/// A backend on the interface the client came in on: sent back out of it
/// (XDP_TX, not a redirect), to the backend's MAC from that interface's.
fn next_hop_on_the_ingress_interface_bounces(hook: Hook) {
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &[(SAME_IF4, None)], NAT4, PORTS),
        nat_vip(VIP6, 80, Protocol::Tcp, &[(SAME_IF6, None)], NAT6, PORTS),
    ];
    in_netns(hook, vips, |bed| {
        for (vip, backend, nat) in [(VIP4, SAME_IF4, NAT4), (VIP6, SAME_IF6, NAT6)] {
            let flow = client_flow(vip, 80, 40_007);
            let (verdict, out) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("test run");
            assert_eq!(verdict, bed.verdicts.bounce);
            let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
            assert_eq!(forward.ifindex, bed.in_if);
            check(
                &out,
                &Expected {
                    smac: IN_MAC,
                    dmac: neighbour_mac(backend).expect("mac"),
                    src: addr(nat),
                    dst: addr(backend),
                    sport: u16::from_be(forward.sport),
                    dport: 80,
                    ttl: 63,
                    udp_zero: false,
                },
            );
        }
    });
}

/// A next hop without a neighbour entry: dropped (never passed up, where
/// the stack would reset the connection), counted, and lbd told which
/// gateway to resolve.
fn a_missing_neighbour_drops_and_names_the_gateway(hook: Hook) {
    let vips = vec![
        nat_vip(
            VIP4,
            80,
            Protocol::Tcp,
            &[(BEHIND_GATEWAY4, None)],
            NAT4,
            PORTS,
        ),
        nat_vip(
            VIP6,
            80,
            Protocol::Tcp,
            &[(BEHIND_GATEWAY6, None)],
            NAT6,
            PORTS,
        ),
    ];
    in_netns(hook, vips, |bed| {
        for (vip, gateway, family) in [(VIP4, GATEWAY4, AF_INET), (VIP6, GATEWAY6, AF_INET6)] {
            // Events of a kind are rate-limited to one a second per CPU.
            std::thread::sleep(EVENT_GAP);
            let frame = packet::tcp(&client_flow(vip, 80, 40_008), SYN, None, b"");
            let (verdict, out) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
            assert_eq!(out, frame, "a dropped frame is not rewritten");
            let events = bed.bed.dataplane.drain_events();
            let event = events
                .iter()
                .find(|e| e.kind == EVENT_NO_NEIGHBOUR)
                .unwrap_or_else(|| panic!("no neighbour event in {events:?}"));
            assert_eq!(event.flow.family, family);
            assert_eq!(event.flow.dst, addr_words(addr(gateway)).0);
        }
        assert_eq!(counter(bed, Counter::DropNoNeighbour), 2);
        // The translation stays (its port reserved): once lbd got the
        // gateway resolved, the retransmitted SYN finds it and looks the
        // next hop up again.
        assert_eq!(bed.flows().len(), 4);
        assert_eq!(counter(bed, Counter::Forwarded), 0);
        ip(&[
            "neigh",
            "add",
            GATEWAY4,
            "lladdr",
            "02:00:00:00:fe:fe",
            "dev",
            OUT_DEV,
        ]);
        let flow = client_flow(VIP4, 80, 40_008);
        let (verdict, out) = bed
            .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(&out[..6], &[0x02, 0, 0, 0, 0xfe, 0xfe], "the gateway's MAC");
        assert_eq!(counter(bed, Counter::NatNew), 2);
        assert_eq!(counter(bed, Counter::NatHit), 1);
    });
}

/// A tracked flow keeps its cached next hop until its entry is touched
/// again (at most once per `FLOW_TOUCH_INTERVAL_NS`); then the FIB is asked
/// again and a changed neighbour is picked up.
fn the_next_hop_is_looked_up_again_when_the_entry_is_touched(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_010);
        let key = flow_key(&flow, Protocol::Tcp);
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let (forward, _, _) = entries(bed, &key);
        let backend = words_to_addr(forward.dst, AF_INET).to_string();
        let moved = [0x02, 0, 0, 0, 0xbe, 0x99];
        ip(&[
            "neigh",
            "replace",
            &backend,
            "lladdr",
            "02:00:00:00:be:99",
            "dev",
            OUT_DEV,
        ]);
        let ack = packet::tcp(&flow, ACK, None, b"");
        let (_, out) = bed.run_on(bed.in_if, &ack).expect("test run");
        assert_eq!(&out[..6], &forward.dmac, "cached next hop");
        assert_eq!(entries(bed, &key).0.last_seen_ns, forward.last_seen_ns);
        // Age the entry past the touch interval, as time would.
        let aged = NatEntry {
            last_seen_ns: 0,
            ..entries(bed, &key).0
        };
        bed.bed
            .dataplane
            .nat_mut()
            .install_flow(&key, &aged)
            .expect("age");
        let (verdict, out) = bed.run_on(bed.in_if, &ack).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(&out[..6], &moved, "looked up again");
        let touched = entries(bed, &key).0;
        assert_eq!(touched.dmac, moved);
        assert_ne!(touched.last_seen_ns, 0, "touched");
    });
}

/// A backend no route leads to: dropped, counted, reported.
fn no_route_drops_and_reports(hook: Hook) {
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &[(UNROUTED4, None)], NAT4, PORTS),
        nat_vip(VIP6, 80, Protocol::Tcp, &[(UNROUTED6, None)], NAT6, PORTS),
    ];
    in_netns(hook, vips, |bed| {
        for vip in [VIP4, VIP6] {
            let frame = packet::tcp(&client_flow(vip, 80, 40_009), SYN, None, b"");
            let (verdict, _) = bed.run_on(bed.in_if, &frame).expect("test run");
            assert_eq!(verdict, bed.verdicts.drop);
        }
        assert_eq!(counter(bed, Counter::DropNoRoute), 2);
        let events = bed.bed.dataplane.drain_events();
        assert!(
            events.iter().any(|e| e.kind == EVENT_NO_ROUTE),
            "{events:?}"
        );
    });
}

/// With NAT on, packets for no VIP and no translation still go up the
/// stack untouched (the node's own traffic).
fn other_traffic_still_passes(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let to_node = Flow {
            src: addr(BACKENDS4[0]),
            dst: addr("198.19.1.1"),
            sport: 22,
            dport: 50_000,
        };
        let frame = packet::tcp(&to_node, ACK, None, b"");
        let (verdict, out) = bed.run_on(bed.out_if, &frame).expect("test run");
        assert_eq!(verdict, bed.verdicts.pass);
        assert_eq!(out, frame);
        assert_eq!(counter(bed, Counter::PassNotVip), 1);
    });
}

/// An ICMP error about `sent` (a frame the data plane put out) from
/// `router`, arriving for `sent`'s source: IPv4 fragmentation needed or
/// IPv6 packet too big, quoting all of `sent`'s IP packet.
fn icmp_error(router: &str, sent: &[u8]) -> Vec<u8> {
    let headers = PacketHeaders::from_ethernet_slice(sent).expect("parse");
    let quote = &sent[14..];
    let eth = PacketBuilder::ethernet2(
        [0x02, 0, 0, 0, 0xfe, 0xfe],
        sent[6..12].try_into().expect("mac"),
    );
    let mut out = Vec::new();
    match headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => {
            let router: std::net::Ipv4Addr = router.parse().expect("router");
            let builder = eth.ipv4(router.octets(), ip.source, 64).icmpv4(
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400,
                }),
            );
            builder.write(&mut out, quote).expect("icmp");
        }
        Some(NetHeaders::Ipv6(ip, _)) => {
            let router: std::net::Ipv6Addr = router.parse().expect("router");
            let builder = eth
                .ipv6(router.octets(), ip.source, 64)
                .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 });
            builder.write(&mut out, quote).expect("icmp");
        }
        other => panic!("{other:?}"),
    }
    out
}

/// Checks a translated ICMP error: outer header and MACs as `outer`
/// says (ports unused), every checksum (outer IPv4, ICMP/ICMPv6 with its
/// pseudo-header, quoted IPv4 header, quoted UDP), and that the quote is
/// `original` (the packet its receiver really sent) but for the TTL /
/// hop limit and, for TCP, the quoted checksum (left, as IPVS does).
fn check_error(frame: &[u8], outer: &Expected, original: &[u8]) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    let Some(LinkHeader::Ethernet2(eth)) = &headers.link else {
        panic!("no Ethernet header");
    };
    assert_eq!(
        (eth.source, eth.destination),
        (outer.smac, outer.dmac),
        "MACs"
    );
    let quote = headers.payload.slice();
    let original = &original[14..];
    assert_eq!(quote.len(), original.len(), "quote length");
    match (&headers.net, &headers.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (outer.src, outer.dst),
                "outer addresses"
            );
            assert_eq!(ip.time_to_live, outer.ttl, "TTL");
            assert_eq!(
                ip.header_checksum,
                ip.calc_header_checksum(),
                "outer IPv4 checksum"
            );
            assert_eq!(
                icmp.checksum,
                icmp.icmp_type.calc_checksum(quote),
                "ICMP checksum"
            );
            let (quoted, _) = etherparse::Ipv4Header::from_slice(quote).expect("quoted IPv4");
            assert_eq!(
                quoted.header_checksum,
                quoted.calc_header_checksum(),
                "quoted IPv4 checksum"
            );
            // The same as sent but for TTL (byte 8) and header checksum (10, 11).
            for (i, (got, want)) in quote.iter().zip(original).enumerate() {
                let tcp_csum =
                    quoted.protocol == etherparse::IpNumber::TCP && (36..38).contains(&i);
                if ![8, 10, 11].contains(&i) && !tcp_csum {
                    assert_eq!(got, want, "quoted byte {i}");
                }
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
            assert_eq!(
                (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
                (outer.src, outer.dst),
                "outer addresses"
            );
            assert_eq!(ip.hop_limit, outer.ttl, "hop limit");
            assert_eq!(
                icmp.checksum,
                icmp.icmp_type
                    .calc_checksum(ip.source, ip.destination, quote)
                    .expect("size"),
                "ICMPv6 checksum"
            );
            let tcp = original[6] == 6;
            for (i, (got, want)) in quote.iter().zip(original).enumerate() {
                if i != 7 && !(tcp && (56..58).contains(&i)) {
                    assert_eq!(got, want, "quoted byte {i}");
                }
            }
        }
        other => panic!("not an ICMP error: {other:?}"),
    }
}

/// What an ICMP error must not change in a flow's entries: the marks,
/// the ages and the translation (the next-hop cache may be filled).
type FlowState = Vec<(u8, u64, [u32; 4], [u32; 4], u16, u16)>;

/// The `FlowState` of `key`'s flow.
fn flow_state(bed: &NatBed, key: &FlowKey) -> FlowState {
    let (forward, _, reply) = entries(bed, key);
    [forward, reply]
        .iter()
        .map(|e| (e.flags, e.last_seen_ns, e.src, e.dst, e.sport, e.dport))
        .collect()
}

/// ICMP errors about a NAT'd flow, as IPVS translates them: one from the
/// backends' side (to the NAT address, quoting NAT address -> backend)
/// reaches the client quoting what the client sent; one from the clients'
/// side (to the VIP, quoting VIP -> client) reaches the backend quoting
/// what the backend sent. The flow's entries do not change.
fn icmp_errors_reach_the_other_side(bed: &mut NatBed, vip: &str, port: u16) {
    let protocol = proto_of(port);
    let flow = client_flow(vip, port, 40_011);
    let key = flow_key(&flow, protocol);
    let sent = frame(&flow, protocol, SYN, b"a request of some length");
    let (_, to_backend) = bed.run_on(bed.in_if, &sent).expect("forward");
    let (forward, _, _) = entries(bed, &key);
    let state = flow_state(bed, &key);
    let backend = words_to_addr(forward.dst, key.family);
    let v6 = key.family == AF_INET6;
    let nat = addr(if v6 { NAT6 } else { NAT4 });
    let backend_side_router = if v6 { GATEWAY6 } else { GATEWAY4 };
    let error = icmp_error(backend_side_router, &to_backend);
    let (verdict, out) = bed
        .run_on(bed.out_if, &error)
        .expect("error from the backend side");
    assert_eq!(verdict, bed.verdicts.redirect);
    check_error(
        &out,
        &Expected {
            smac: IN_MAC,
            dmac: CLIENT_MAC,
            src: addr(vip),
            dst: flow.src,
            sport: 0,
            dport: 0,
            ttl: 63,
            udp_zero: false,
        },
        &sent,
    );
    assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 1);
    assert_eq!(flow_state(bed, &key), state, "unchanged");

    let back = Flow {
        src: backend,
        dst: nat,
        sport: u16::from_be(forward.dport),
        dport: u16::from_be(forward.sport),
    };
    let syn_ack = Tcp {
        syn: true,
        ack: true,
        ..Tcp::default()
    };
    let answered = frame(&back, protocol, syn_ack, b"an answer");
    let (_, to_client) = bed.run_on(bed.out_if, &answered).expect("reply");
    let state = flow_state(bed, &key);
    let client_side_router = if v6 { "2001:2::254" } else { "198.18.0.254" };
    let error = icmp_error(client_side_router, &to_client);
    let (verdict, out) = bed
        .run_on(bed.in_if, &error)
        .expect("error from the client side");
    assert_eq!(verdict, bed.verdicts.redirect);
    check_error(
        &out,
        &Expected {
            smac: OUT_MAC,
            dmac: forward.dmac,
            src: nat,
            dst: backend,
            sport: 0,
            dport: 0,
            ttl: 63,
            udp_zero: false,
        },
        &answered,
    );
    assert_eq!(counter(bed, Counter::ForwardedNatIcmpError), 2);
    assert_eq!(flow_state(bed, &key), state, "unchanged");
}

fn icmp_errors_v4(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP4, 80)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP4, 53)
    });
}

fn icmp_errors_v6(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP6, 80)
    });
    in_netns(hook, vips(), |bed| {
        icmp_errors_reach_the_other_side(bed, VIP6, 53)
    });
}

/// An ICMP error about no translation is not the NAT path's: it goes up
/// as before.
fn icmp_errors_about_unknown_flows_pass(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let never_sent = packet::tcp(
            &Flow {
                src: addr(NAT4),
                dst: addr(BACKENDS4[0]),
                sport: 20_000,
                dport: BACKEND_PORT,
            },
            SYN,
            None,
            b"",
        );
        let error = icmp_error(GATEWAY4, &never_sent);
        let (verdict, out) = bed.run_on(bed.out_if, &error).expect("test run");
        assert_eq!(verdict, bed.verdicts.pass);
        assert_eq!(out, error);
        assert_eq!(counter(bed, Counter::PassNotVip), 1);
    });
}

#[test]
fn both_programs_pass_the_verifier_with_a_sane_instruction_count() {
    let mut bed = lb_tests::testbed::TestBed::with_hook(&vips(), Hook::Xdp).expect("test bed");
    let (xdp, tc) = bed.verified_instructions();
    eprintln!("verified instructions: xdp {xdp}, tc {tc}");
    // DSR only was ~17.4 k; NAT adds a translation path per family and
    // protocol (~57 k), the tunnel modes one wrap function verified once
    // (~70 k). The bucket connection table's lookup and touch are BPF code
    // where the LRU table was one helper call, verified once per parser
    // path that reaches them (~215 k in all; the object loads without BTF,
    // so every function is verified once per state that calls it: the
    // insert runs from the entry point, after the packet path, to be
    // verified once; inlined in the path it took over 1 M). A regression
    // that multiplies that again lands far above this.
    assert!(xdp < 300_000 && tc < 300_000, "xdp {xdp}, tc {tc}");
}

lb_tests::on_both_hooks!(
    tcp_v4_new_tracked_and_reply,
    tcp_v6_new_tracked_and_reply,
    a_free_checksum_neutral_port_is_taken_first,
    a_taken_neutral_port_falls_back_to_a_hashed_one,
    udp_v4_new_tracked_and_reply,
    udp_v6_new_tracked_and_reply,
    udp_zero_checksum_stays_zero,
    udp_checksum_computing_to_zero_is_sent_as_ffff,
    vlan_tags_are_kept,
    a_syn_reuses_a_closed_translation,
    tcp_non_syn_without_a_flow_is_dropped,
    guards_drop_before_any_nat_state,
    ttl_1_is_dropped,
    port_exhaustion_drops_and_recovers,
    a_full_flow_table_drops_new_flows_whole,
    next_hop_on_the_ingress_interface_bounces,
    a_missing_neighbour_drops_and_names_the_gateway,
    no_route_drops_and_reports,
    other_traffic_still_passes,
    the_next_hop_is_looked_up_again_when_the_entry_is_touched,
    icmp_errors_v4,
    icmp_errors_v6,
    icmp_errors_about_unknown_flows_pass,
);

/// A fresh pin directory of this test process named `tag`, and its
/// guard: the pins go when the test ends, also when an assertion fails.
fn pin_dir(tag: &str) -> (lb_userspace::pinning::PinDir, lb_tests::lab::TestPins) {
    let dir = lb_tests::lab::TestPins::new("lbtnat", tag).expect("pin directory");
    (dir.pins(), dir)
}

/// A kernel hash map `FlowKey` -> `NatEntry` named `NAT_FLOWS`: the NAT
/// flow table of the releases before the bucket table.
fn nat_flows_hash_map(
    max_entries: u32,
) -> aya::maps::HashMap<aya::maps::MapData, FlowKey, NatEntry> {
    let sizes = (size_of::<FlowKey>() as u32, size_of::<NatEntry>() as u32);
    // BPF_MAP_TYPE_HASH
    let data = lb_tests::lbd_maps::create_map("NAT_FLOWS", 1, sizes, max_entries).expect("the map");
    aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("a hash map")
}

/// A previous release kept its NAT flows in a pinned kernel hash map
/// (`NAT_FLOWS`). An lbd of this release adopts that data plane and
/// carries every flow's two entries into the bucket table (right after
/// the load, and again once its program runs: what the old program
/// changed or added meanwhile), so established NAT'd connections keep
/// their source ports: their next packets go out translated as before.
#[test]
fn an_upgrade_from_a_nat_flows_hash_map_carries_established_translations_over() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let (pins, _cleanup) = pin_dir("upgrade");
            let options = lb_userspace::dataplane::LoadOptions {
                pins: Some(pins.clone()),
                ..Default::default()
            };
            let sizes = lb_userspace::dataplane::MapSizes {
                max_vips: 4,
                conntrack: 4096,
                nat_flows: 4096,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            };
            // The previous lbd: its VIPs, and NAT'd flows its program
            // opened (IPv4 and IPv6 TCP, IPv4 UDP).
            let flows: Vec<(Flow, Protocol)> = vec![
                (client_flow(VIP4, 80, 40_101), Protocol::Tcp),
                (client_flow(VIP4, 80, 40_102), Protocol::Tcp),
                (client_flow(VIP6, 80, 40_103), Protocol::Tcp),
                (client_flow(VIP4, 53, 40_104), Protocol::Udp),
            ];
            let mut old =
                NatBed::with_options(Hook::Xdp, &vips(), (in_if, out_if), sizes, &options)
                    .expect("the previous data plane");
            for (flow, protocol) in &flows {
                let (verdict, _) = old
                    .run_on(old.in_if, &frame(flow, *protocol, SYN, b""))
                    .expect("test run");
                assert_eq!(verdict, old.verdicts.redirect);
            }
            let entries: HashMap<FlowKey, NatEntry> = old.flows().into_iter().collect();
            assert_eq!(entries.len(), 2 * flows.len());
            drop(old);
            // As that release pinned it: the flows in a hash map, no
            // bucket table. The last flow is not there yet: the old
            // program opens it after the new lbd's load.
            std::fs::remove_file(pins.map_path(names::MAP_NAT_BUCKETS)).expect("unpin");
            let mut old_table = nat_flows_hash_map(4096);
            let (late, late_protocol) = flows[flows.len() - 1];
            let late_key = flow_key(&late, late_protocol);
            let late_reply = counterpart_key(&late_key, &entries[&late_key]);
            for (key, entry) in &entries {
                if *key != late_key && *key != late_reply {
                    old_table.insert(key, entry, 0).expect("old entry");
                }
            }
            aya::maps::IterableMap::map(&old_table)
                .pin(pins.map_path(names::MAP_NAT_FLOWS))
                .expect("pin NAT_FLOWS");

            let mut new = NatBed::adopting(Hook::Xdp, (in_if, out_if), sizes, &options)
                .expect("this release's data plane");
            assert!(new.bed.dataplane.adopted(), "the state maps are adopted");
            assert!(
                pins.map_path(names::MAP_NAT_FLOWS).exists(),
                "the old table's pin stays until the swap (an lbd that dies before it leaves the flows to the next)"
            );
            let carried: HashMap<FlowKey, NatEntry> = new.flows().into_iter().collect();
            assert_eq!(carried.len(), entries.len() - 2, "the flows of the load");
            for (key, entry) in &carried {
                assert_eq!(entry, &entries[key], "carried as it was");
            }
            // The old program opens one more flow before the swap.
            for key in [late_key, late_reply] {
                old_table.insert(key, entries[&key], 0).expect("late entry");
            }
            new.bed.dataplane.finish_adoption();
            let carried: HashMap<FlowKey, NatEntry> = new.flows().into_iter().collect();
            assert_eq!(carried, entries, "every flow, both entries");
            assert!(
                !pins.map_path(names::MAP_NAT_FLOWS).exists(),
                "the old table's pin is gone once the flows are carried after the swap"
            );
            // Each connection's next packet leaves translated as before:
            // the same source port, found (not opened again). (The
            // redirect targets are lbd's to fill, as it does.)
            for ifindex in [in_if, out_if] {
                new.bed
                    .dataplane
                    .nat_mut()
                    .add_tx_port(ifindex)
                    .expect("tx port");
            }
            // (The counters are adopted too: counted from here.)
            let (opened, hits) = (
                counter(&new, Counter::NatNew),
                counter(&new, Counter::NatHit),
            );
            for (flow, protocol) in &flows {
                let key = flow_key(flow, *protocol);
                let forward = entries[&key];
                let (verdict, out) = new
                    .run_on(new.in_if, &frame(flow, *protocol, ACK, b"x"))
                    .expect("test run");
                assert_eq!(verdict, new.verdicts.redirect, "{flow:?}");
                let (sport, dport) = ports_of(&out);
                assert_eq!(
                    (sport, dport),
                    (u16::from_be(forward.sport), u16::from_be(forward.dport)),
                    "{flow:?}"
                );
            }
            assert_eq!(counter(&new, Counter::NatNew), opened);
            assert_eq!(counter(&new, Counter::NatHit), hits + flows.len() as u64);
        })
        .expect("the test body (see its panic above)");
}

/// The transport ports of a frame (etherparse).
fn ports_of(frame: &[u8]) -> (u16, u16) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the output");
    match headers.transport.expect("a transport header") {
        TransportHeader::Tcp(tcp) => (tcp.source_port, tcp.destination_port),
        TransportHeader::Udp(udp) => (udp.source_port, udp.destination_port),
        other => panic!("{other:?}"),
    }
}
