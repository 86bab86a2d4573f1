//! A NAT'd flow's translation both ways: a new flow, a tracked packet
//! and the backend's reply, IPv4 and IPv6, TCP and UDP; the choice of
//! source port; VLAN tags (off on another interface, one or two (QinQ),
//! kept on the same);
//! a closed translation opened again.

use etherparse::PacketHeaders;
use lb_common::{
    consts::{
        AF_INET, AF_INET6, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED, NAT_F_RST,
        NAT_F_SYN,
    },
    stats::Counter,
};
use lb_tests::{
    craft::{ethertype, frame_bytes, tcp_flag, Ip, Upper},
    natbed::{
        addr, client_flow, frame, nat_vip, neighbour_mac, words_to_addr, NatBed, BACKENDS4,
        BACKENDS6, IN_MAC, NAT4, NAT6, OUT_MAC, SAME_IF4, SAME_IF6,
    },
    packet::{self, Flow, Tcp, ACK, CLIENT_MAC, SYN},
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    counter,
    frames::{check, entries, proto_of, Expected},
    in_netns, vips, BACKEND_PORT, PORTS,
};

/// A new flow, a tracked packet of it, and the backend's reply: each
/// translated, checksummed and counted as the contract says.
pub(crate) fn new_tracked_and_reply(bed: &mut NatBed, vip: &str, port: u16) {
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

/// A tagged client's packet leaving by another interface (the backends'
/// network) leaves untagged: its tag belongs to the network it came from.
/// Its reply, untagged, goes back as it is. Both checked by etherparse.
fn vlan_tags_come_off_on_another_interface(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for vip in [VIP4, VIP6] {
            let flow = client_flow(vip, 80, 40_003);
            let first = packet::tcp(&flow, SYN, Some(42), b"");
            let (verdict, out) = bed.run_on(bed.in_if, &first).expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect);
            assert_eq!(out.len(), first.len() - 4, "the tag is gone");
            let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
            assert!(
                headers.link_exts.is_empty(),
                "no tag: {:?}",
                headers.link_exts
            );
            let key = flow_key(&flow, Protocol::Tcp);
            let (forward, _, _) = entries(bed, &key);
            check(
                &out,
                &Expected {
                    smac: OUT_MAC,
                    dmac: forward.dmac,
                    src: addr(if vip == VIP4 { NAT4 } else { NAT6 }),
                    dst: words_to_addr(forward.dst, key.family),
                    sport: u16::from_be(forward.sport),
                    dport: BACKEND_PORT,
                    ttl: 63,
                    udp_zero: false,
                },
            );
        }
    });
}

/// A QinQ client's packet (two tags, 802.1ad then 802.1Q, or 802.1Q
/// twice) leaving by another interface leaves without either: 8 bytes
/// shorter (at XDP the MACs move forward over both tags, at tc both are
/// popped), translated and checksummed as an untagged one, checked by
/// etherparse.
fn qinq_tags_come_off_on_another_interface(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let mut sport = 40_060;
        for tags in [
            [ethertype::QINQ, ethertype::VLAN],
            [ethertype::VLAN, ethertype::VLAN],
        ] {
            for vip in [VIP4, VIP6] {
                sport += 1;
                let flow = client_flow(vip, 80, sport);
                let first = frame_bytes(
                    &tags,
                    &Ip::new(flow.src, flow.dst),
                    &Upper::Tcp {
                        sport,
                        dport: 80,
                        flags: tcp_flag::SYN,
                        payload: b"behind two tags".to_vec(),
                    },
                );
                assert_eq!(&first[12..14], &tags[0].to_be_bytes());
                let (verdict, out) = bed.run_on(bed.in_if, &first).expect("test run");
                assert_eq!(verdict, bed.verdicts.redirect, "{vip} behind {tags:x?}");
                assert_eq!(out.len(), first.len() - 8, "both tags are gone");
                let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
                assert!(
                    headers.link_exts.is_empty(),
                    "no tag: {:?}",
                    headers.link_exts
                );
                assert_eq!(&out[12..14], &first[20..22], "the IP ethertype");
                assert_eq!(
                    out.last(),
                    first.last(),
                    "the payload moved with the packet"
                );
                let key = flow_key(&flow, Protocol::Tcp);
                let (forward, _, _) = entries(bed, &key);
                check(
                    &out,
                    &Expected {
                        smac: OUT_MAC,
                        dmac: forward.dmac,
                        src: addr(if vip == VIP4 { NAT4 } else { NAT6 }),
                        dst: words_to_addr(forward.dst, key.family),
                        sport: u16::from_be(forward.sport),
                        dport: BACKEND_PORT,
                        ttl: 63,
                        udp_zero: false,
                    },
                );
            }
        }
        assert_eq!(counter(bed, Counter::Forwarded), 4);
    });
}

/// A tagged client's packet to a backend on the same network (sent back
/// out of the interface it came in on) keeps its tag.
fn vlan_tags_stay_on_the_same_interface(hook: Hook) {
    let vips = vec![
        nat_vip(VIP4, 80, Protocol::Tcp, &[(SAME_IF4, None)], NAT4, PORTS),
        nat_vip(VIP6, 80, Protocol::Tcp, &[(SAME_IF6, None)], NAT6, PORTS),
    ];
    in_netns(hook, vips, |bed| {
        for (vip, backend, nat) in [(VIP4, SAME_IF4, NAT4), (VIP6, SAME_IF6, NAT6)] {
            let flow = client_flow(vip, 80, 40_003);
            let first = packet::tcp(&flow, SYN, Some(42), b"");
            let (verdict, out) = bed.run_on(bed.in_if, &first).expect("test run");
            assert_eq!(verdict, bed.verdicts.bounce);
            assert_eq!(out.len(), first.len());
            assert_eq!(&out[12..18], &first[12..18], "the tag");
            let headers = PacketHeaders::from_ethernet_slice(&out).expect("parse");
            assert_eq!(headers.link_exts.len(), 1, "one tag");
            let (forward, _, _) = entries(bed, &flow_key(&flow, Protocol::Tcp));
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

/// A backend's reply in a frame for another host's MAC (a switch
/// flooding the reply meant for the VRRP master to the backup, which holds
/// the replicated translation) is that host's to translate: passed up
/// untouched (`PassNotVip`, as a VIP's packet for another MAC is; the
/// kernel drops it as another host's), both entries as they were (flags,
/// last seen, next hop), nothing sent to the client. The same frame
/// addressed to this node is translated back as ever.
fn a_reply_for_another_hosts_mac_is_left_alone(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        for (vip, nat) in [(VIP4, NAT4), (VIP6, NAT6)] {
            let flow = client_flow(vip, 80, 40_006);
            let key = flow_key(&flow, Protocol::Tcp);
            let (verdict, _) = bed
                .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
                .expect("syn");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}: SYN");
            let before = entries(bed, &key);
            let (forward, _, reply) = before;
            assert_eq!(reply.flags & NAT_F_REPLIED, 0);
            let back = Flow {
                src: words_to_addr(forward.dst, key.family),
                dst: addr(nat),
                sport: BACKEND_PORT,
                dport: u16::from_be(forward.sport),
            };
            let syn_ack = Tcp {
                syn: true,
                ack: true,
                ..Tcp::default()
            };
            let ours = packet::tcp(&back, syn_ack, None, b"answer");
            let mut foreign = ours.clone();
            foreign[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0e, 0x07]);
            let passed = counter(bed, Counter::PassNotVip);
            let hits = counter(bed, Counter::NatHit);
            let replies = counter(bed, Counter::ForwardedNatReply);
            let (verdict, out) = bed.run_on(bed.out_if, &foreign).expect("test run");
            assert_eq!(verdict, bed.verdicts.pass, "{vip}: passed up");
            assert_eq!(out, foreign, "{vip}: untouched");
            assert_eq!(counter(bed, Counter::PassNotVip), passed + 1, "{vip}");
            assert_eq!(counter(bed, Counter::NatHit), hits, "{vip}");
            assert_eq!(counter(bed, Counter::ForwardedNatReply), replies, "{vip}");
            assert_eq!(
                entries(bed, &key),
                before,
                "{vip}: the entries are not touched"
            );

            let (verdict, out) = bed.run_on(bed.out_if, &ours).expect("test run");
            assert_eq!(verdict, bed.verdicts.redirect, "{vip}: translated");
            check(
                &out,
                &Expected {
                    smac: IN_MAC,
                    dmac: CLIENT_MAC,
                    src: addr(vip),
                    dst: flow.src,
                    sport: 80,
                    dport: flow.sport,
                    ttl: 63,
                    udp_zero: false,
                },
            );
            assert_eq!(counter(bed, Counter::PassNotVip), passed + 1, "{vip}");
            assert_eq!(counter(bed, Counter::NatHit), hits + 1, "{vip}");
            assert_eq!(
                counter(bed, Counter::ForwardedNatReply),
                replies + 1,
                "{vip}"
            );
            let (_, _, reply) = entries(bed, &key);
            assert_ne!(reply.flags & NAT_F_REPLIED, 0, "{vip}: the reply seen");
        }
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

/// A backend's reset marks only the reply entry: a client's new SYN from
/// the same port clears it too (and stamps it, so replication sends the
/// change), so the new connection is not taken for a closed one (and
/// reaped while idle); a retransmitted SYN of a live handshake leaves the
/// reply entry as it is.
fn a_syn_after_the_backends_reset_starts_afresh(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_005);
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
        let syn_ack = Tcp {
            syn: true,
            ack: true,
            ..Tcp::default()
        };
        bed.run_on(bed.out_if, &packet::tcp(&back, syn_ack, None, b""))
            .expect("syn-ack");
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("retransmitted syn");
        let (_, _, reply) = entries(bed, &key);
        assert_eq!(reply.flags, NAT_F_REPLIED, "a live handshake's reply");
        let rst = Tcp {
            rst: true,
            ack: true,
            ..Tcp::default()
        };
        bed.run_on(bed.out_if, &packet::tcp(&back, rst, None, b""))
            .expect("backend's rst");
        let (reset, reply_key, reply) = entries(bed, &key);
        assert_eq!(reset.flags, NAT_F_SYN);
        assert_eq!(reply.flags & NAT_F_RST, NAT_F_RST);
        let rewound = rewind(bed, &reply_key);
        let (verdict, _) = bed
            .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("new syn");
        assert_eq!(verdict, bed.verdicts.redirect);
        let (again, _, reply) = entries(bed, &key);
        assert_eq!(again.flags, NAT_F_SYN);
        assert_eq!(
            reply.flags, 0,
            "the backend's reset is the old connection's"
        );
        assert!(
            reply.last_seen_ns > rewound,
            "the cleared reply entry is stamped: replication sends it"
        );
        assert_eq!(again.sport, forward.sport, "same translation");
    });
}

/// A change of a direction's marks (the first reply, a FIN) stamps its
/// entry's age at once, within the touch interval: lbd's replication
/// sends the entries touched since its last scan, so the peer learns at
/// its next scan that a connection was answered or is closing. A packet
/// that changes no mark, within the interval, writes nothing.
fn a_change_of_marks_stamps_the_entry_at_once(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_006);
        let key = flow_key(&flow, Protocol::Tcp);
        bed.run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        let (forward, reply_key, _) = entries(bed, &key);
        let back = Flow {
            src: words_to_addr(forward.dst, AF_INET),
            dst: addr(NAT4),
            sport: BACKEND_PORT,
            dport: u16::from_be(forward.sport),
        };
        let syn_ack = Tcp {
            syn: true,
            ack: true,
            ..Tcp::default()
        };
        let rewound = rewind(bed, &reply_key);
        bed.run_on(bed.out_if, &packet::tcp(&back, syn_ack, None, b""))
            .expect("syn-ack");
        let (_, _, reply) = entries(bed, &key);
        assert_ne!(reply.flags & NAT_F_REPLIED, 0);
        assert!(
            reply.last_seen_ns > rewound,
            "the first reply stamps the reply entry"
        );

        let rewound = rewind(bed, &key);
        bed.run_on(bed.in_if, &packet::tcp(&flow, ACK, None, b""))
            .expect("ack");
        assert_eq!(
            entries(bed, &key).0.last_seen_ns,
            rewound,
            "no mark changed: nothing written"
        );
        let fin = Tcp {
            fin: true,
            ack: true,
            ..Tcp::default()
        };
        bed.run_on(bed.in_if, &packet::tcp(&flow, fin, None, b""))
            .expect("fin");
        let (closing, _, _) = entries(bed, &key);
        assert_eq!(closing.flags, NAT_F_SYN | NAT_F_FIN);
        assert!(closing.last_seen_ns > rewound, "the FIN stamps the entry");
    });
}

/// Sets `key`'s entry as seen a nanosecond before its stamp, well within
/// the touch interval; returns that time.
fn rewind(bed: &mut NatBed, key: &lb_common::FlowKey) -> u64 {
    let entry = bed.bed.dataplane.nat().flow(key).expect("the entry");
    let rewound = lb_common::NatEntry {
        last_seen_ns: entry.last_seen_ns - 1,
        ..entry
    };
    bed.bed
        .dataplane
        .nat_mut()
        .install_flow(key, &rewound)
        .expect("rewind");
    rewound.last_seen_ns
}

lb_tests::on_both_hooks!(
    tcp_v4_new_tracked_and_reply,
    tcp_v6_new_tracked_and_reply,
    a_free_checksum_neutral_port_is_taken_first,
    a_taken_neutral_port_falls_back_to_a_hashed_one,
    udp_v4_new_tracked_and_reply,
    udp_v6_new_tracked_and_reply,
    vlan_tags_come_off_on_another_interface,
    qinq_tags_come_off_on_another_interface,
    vlan_tags_stay_on_the_same_interface,
    a_reply_for_another_hosts_mac_is_left_alone,
    a_syn_reuses_a_closed_translation,
    a_syn_after_the_backends_reset_starts_afresh,
    a_change_of_marks_stamps_the_entry_at_once,
);
