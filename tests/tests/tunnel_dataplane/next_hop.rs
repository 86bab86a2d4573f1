//! Next hops of wrapped packets by FIB: the ingress interface (bounced),
//! a missing neighbour or route (dropped and reported), an interface with
//! no slot in the XDP redirect map (dropped and counted, not as traffic),
//! and the next hop cached per backend.

use lb_common::{
    consts::{EVENT_NO_NEIGHBOUR, EVENT_NO_ROUTE},
    stats::Counter,
    FlowKey,
};
use lb_tests::{
    natbed::{
        addr, client_flow, neighbour_mac, FibNetns, GATEWAY4, GATEWAY6, IN_DEV, IN_MAC, OUT_DEV,
        SAME_IF4, SAME_IF6,
    },
    packet::{self, ACK, SYN},
    testbed::{flow_key, Hook, VIP4, VIP6},
    tunnelbed::TunnelBed,
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find, in_netns, odd_vips, vips, EVENT_GAP, IPIP, NO_NEIGHBOUR, NO_ROUTE, SAME_IF,
};

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

/// A wrapped packet whose egress interface (out0) has no slot in the XDP
/// redirect map: dropped, counted `DropNoTxPort`, neither forwarded nor
/// the VIP's traffic nor a tunnel encapsulation; sent (the outer header
/// checked by etherparse) once the slot is back. tc needs no slot.
fn a_wrap_without_a_redirect_slot_is_a_counted_drop(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let xdp = bed.nat.bed.hook == Hook::Xdp;
        let config = find(vips, VIP4, IPIP, Protocol::Tcp);
        let id = bed.nat.bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(config)].id;
        let out_if = bed.nat.out_if;
        bed.nat
            .bed
            .dataplane
            .nat_mut()
            .remove_tx_port(out_if)
            .expect("remove out0");
        let seen = |bed: &TunnelBed| {
            let traffic = bed.nat.bed.dataplane.vip_traffic(id).expect("VIP stats");
            [
                counter(bed, Counter::Forwarded),
                counter(bed, Counter::TunnelEncap),
                counter(bed, Counter::DropNoTxPort),
                traffic.packets,
            ]
        };
        let flow = client_flow(VIP4, IPIP, 40_210);
        let syn = packet::tcp(&flow, SYN, None, b"");
        let [forwarded, encap, no_port, packets] = seen(bed);
        let (verdict, out) = bed.run_on(bed.nat.in_if, &syn).expect("test run");
        let outer = |frame: &[u8]| match etherparse::PacketHeaders::from_ethernet_slice(frame)
            .expect("etherparse parses the frame")
            .net
        {
            Some(etherparse::NetHeaders::Ipv4(ip, _)) => ip.protocol,
            other => panic!("no IPv4 header: {other:?}"),
        };
        if xdp {
            assert_eq!(verdict, bed.verdicts().drop, "no slot for out0");
            assert_eq!(seen(bed), [forwarded, encap, no_port + 1, packets]);
        } else {
            assert_eq!(verdict, bed.verdicts().redirect, "tc needs no slot");
            assert_eq!(outer(&out), etherparse::IpNumber::IPV4);
            assert_eq!(seen(bed), [forwarded + 1, encap + 1, no_port, packets + 1]);
        }
        bed.nat
            .bed
            .dataplane
            .nat_mut()
            .add_tx_port(out_if)
            .expect("add out0");
        let [forwarded, encap, no_port, packets] = seen(bed);
        let flow = client_flow(VIP4, IPIP, 40_211);
        let (verdict, out) = bed
            .run_on(bed.nat.in_if, &packet::tcp(&flow, SYN, None, b""))
            .expect("test run");
        assert_eq!(verdict, bed.verdicts().redirect, "out0 back");
        assert_eq!(outer(&out), etherparse::IpNumber::IPV4);
        assert_eq!(seen(bed), [forwarded + 1, encap + 1, no_port, packets + 1]);
    });
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

lb_tests::on_both_hooks!(
    a_next_hop_on_the_ingress_interface_bounces,
    missing_next_hops_drop_and_report,
    the_next_hop_is_cached_per_backend,
    a_wrap_without_a_redirect_slot_is_a_counted_drop,
);
