//! A routed packet whose egress interface has no slot in the XDP redirect
//! map (`TX_PORTS`: more interfaces than its slots, or one created since
//! lbd's last scan) is a counted drop (`DropNoTxPort`), in either
//! direction, never forwarded nor counted as the VIP's or backend's
//! traffic, and never translated; the same packets go out once the
//! interface is back. tc needs no map: there they are sent.

use etherparse::{NetHeaders, PacketHeaders};
use lb_common::{consts::AF_INET, stats::Counter};
use lb_tests::{
    natbed::{addr, client_flow, words_to_addr, NatBed, NAT4},
    packet::{self, Flow, ACK, SYN},
    testbed::{flow_key, Hook, VIP4},
};
use lb_userspace::config::Protocol;
use std::net::IpAddr;

use crate::{counter, frames::entries, in_netns, vips, BACKEND_PORT};

/// The IP source and destination of `frame`, by etherparse.
fn addresses(frame: &[u8]) -> (IpAddr, IpAddr) {
    let headers = PacketHeaders::from_ethernet_slice(frame).expect("etherparse parses the frame");
    match headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => (ip.source.into(), ip.destination.into()),
        Some(NetHeaders::Ipv6(ip, _)) => (ip.source.into(), ip.destination.into()),
        other => panic!("no IP header: {other:?}"),
    }
}

/// The counters a routed packet's verdict touches, and the VIP's traffic.
fn snapshot(bed: &NatBed, vip_id: u32) -> [u64; 5] {
    let traffic = bed.bed.dataplane.vip_traffic(vip_id).expect("VIP stats");
    [
        counter(bed, Counter::Forwarded),
        counter(bed, Counter::ForwardedNatReply),
        counter(bed, Counter::DropNoTxPort),
        traffic.packets,
        traffic.bytes,
    ]
}

fn a_routed_packet_without_a_redirect_slot_is_a_counted_drop(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let flow = client_flow(VIP4, 80, 40_201);
        let key = flow_key(&flow, Protocol::Tcp);
        let vip_id = bed.bed.balancer.vips()[&lb_userspace::reconcile::VipId {
            address: addr(VIP4),
            port: 80,
            protocol: Protocol::Tcp,
        }]
            .id;
        let (verdict, _) = bed
            .run_on(bed.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("syn");
        assert_eq!(verdict, bed.verdicts.redirect, "the flow opens");
        let (forward, _, _) = entries(bed, &key);
        let backend = words_to_addr(forward.dst, AF_INET);
        let back = Flow {
            src: backend,
            dst: addr(NAT4),
            sport: BACKEND_PORT,
            dport: u16::from_be(forward.sport),
        };
        let reply = packet::tcp(&back, ACK, None, b"reply");
        let data = packet::tcp(&flow, ACK, None, b"data");
        let xdp = bed.bed.hook == Hook::Xdp;

        // Client -> backend, its interface (out0) gone from the map.
        let out_if = bed.out_if;
        bed.bed
            .dataplane
            .nat_mut()
            .remove_tx_port(out_if)
            .expect("remove out0");
        let [forwarded, replies, no_port, packets, bytes] = snapshot(bed, vip_id);
        for _ in 0..10 {
            let (verdict, out) = bed.run_on(bed.in_if, &data).expect("test run");
            if xdp {
                assert_eq!(verdict, bed.verdicts.drop, "no slot for out0");
                assert_eq!(out, data, "dropped untranslated");
                assert_eq!(addresses(&out), (flow.src, addr(VIP4)));
            } else {
                assert_eq!(verdict, bed.verdicts.redirect, "tc needs no slot");
                assert_eq!(addresses(&out), (addr(NAT4), backend));
            }
        }
        let after = snapshot(bed, vip_id);
        if xdp {
            assert_eq!(
                after,
                [forwarded, replies, no_port + 10, packets, bytes],
                "[forwarded, replies, no_tx_port, VIP packets, VIP bytes]"
            );
        } else {
            assert_eq!(after[..3], [forwarded + 10, replies, no_port]);
            assert_eq!(after[3], packets + 10);
        }

        // Backend -> client, out0 back and in0 gone.
        bed.bed
            .dataplane
            .nat_mut()
            .add_tx_port(out_if)
            .expect("add out0");
        let in_if = bed.in_if;
        bed.bed
            .dataplane
            .nat_mut()
            .remove_tx_port(in_if)
            .expect("remove in0");
        let [forwarded, replies, no_port, packets, bytes] = snapshot(bed, vip_id);
        let (verdict, out) = bed.run_on(bed.out_if, &reply).expect("test run");
        if xdp {
            assert_eq!(verdict, bed.verdicts.drop, "no slot for in0");
            assert_eq!(out, reply, "dropped untranslated");
            assert_eq!(
                snapshot(bed, vip_id),
                [forwarded, replies, no_port + 1, packets, bytes]
            );
        } else {
            assert_eq!(verdict, bed.verdicts.redirect, "tc needs no slot");
            assert_eq!(addresses(&out), (addr(VIP4), flow.src));
            assert_eq!(counter(bed, Counter::ForwardedNatReply), replies + 1);
        }

        // Both back: both ways go out, translated.
        bed.bed
            .dataplane
            .nat_mut()
            .add_tx_port(in_if)
            .expect("add in0");
        let [forwarded, replies, no_port, packets, _] = snapshot(bed, vip_id);
        let (verdict, out) = bed.run_on(bed.in_if, &data).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(addresses(&out), (addr(NAT4), backend));
        let (verdict, out) = bed.run_on(bed.out_if, &reply).expect("test run");
        assert_eq!(verdict, bed.verdicts.redirect);
        assert_eq!(addresses(&out), (addr(VIP4), flow.src));
        let after = snapshot(bed, vip_id);
        assert_eq!(
            after[..4],
            [forwarded + 1, replies + 1, no_port, packets + 1],
            "[forwarded, replies, no_tx_port, VIP packets]"
        );
    });
}

lb_tests::on_both_hooks!(a_routed_packet_without_a_redirect_slot_is_a_counted_drop,);
