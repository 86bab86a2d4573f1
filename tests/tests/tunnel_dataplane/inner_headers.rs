//! Inner packets with IPv4 options or IPv6 extension headers, wrapped
//! untouched: GUE over IPv6's checksum share of an inner IPv4 packet
//! comes from its header length (IHL), so it must hold with options
//! (the etherparse check sums the whole datagram); an inner IPv6 packet
//! with extension headers gives no share (`encap::read_inner`), so GUE
//! over IPv6 carries UDP checksum 0 (allowed for UDP tunnels over IPv6,
//! RFC 6935 section 5 and RFC 6936, what lb-decap and Linux's fou accept);
//! a chain whose transport header lies past what the wrap reads (offset
//! 256), or longer than the parser walks, goes up the stack
//! (`PassIpv6Ext`).

use lb_common::stats::Counter;
use lb_tests::{
    craft::{frame_bytes, ipv4_options, tcp_flag, Ext, Ip, Upper},
    natbed::client_flow,
    packet::Flow,
    testbed::{Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find,
    frames::{check_wrapped, wrapped_for},
    in_netns, vips, GUE, GUE_4IN6, GUE_UDP, IPIP, IPIP_4IN6,
};

/// The client's datagram or segment (`protocol`) of `flow`.
fn upper(flow: &Flow, protocol: Protocol, payload: &[u8]) -> Upper {
    match protocol {
        Protocol::Tcp => Upper::Tcp {
            sport: flow.sport,
            dport: flow.dport,
            flags: tcp_flag::SYN,
            payload: payload.to_vec(),
        },
        Protocol::Udp => Upper::Udp {
            sport: flow.sport,
            dport: flow.dport,
            payload: payload.to_vec(),
        },
    }
}

/// Inner IPv4 with options (12 bytes, and the most IPv4 allows: 40), over
/// IPIP and GUE, outer IPv4 and IPv6, TCP and UDP: the inner packet
/// untouched, GUE over IPv6's checksum the full computation's; an inner
/// UDP datagram without a checksum behind options gives GUE over IPv6
/// checksum 0 (the inner checksum is read behind the options).
fn inner_ipv4_options_are_carried(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let mut sport = 45_000;
        let mut wrapped = 0;
        for options in [12, 40] {
            for (port, protocol) in [
                (IPIP, Protocol::Tcp),
                (GUE, Protocol::Tcp),
                (GUE_UDP, Protocol::Udp),
                (IPIP_4IN6, Protocol::Tcp),
                (GUE_4IN6, Protocol::Tcp),
                (GUE_4IN6, Protocol::Udp),
            ] {
                sport += 1;
                let flow = client_flow(VIP4, port, sport);
                let mut ip = Ip::new(flow.src, flow.dst);
                ip.options = ipv4_options(options);
                let sent = frame_bytes(&[], &ip, &upper(&flow, protocol, b"behind options"));
                assert_eq!(usize::from(sent[14] & 0x0f) * 4, 20 + options);
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                assert_eq!(verdict, bed.verdicts().redirect, "{port} {options}");
                let config = find(vips, VIP4, port, protocol);
                check_wrapped(&out, &wrapped_for(bed, config, &flow, &sent[14..], false));
                wrapped += 1;
            }
            // No inner UDP checksum: none outside either.
            sport += 1;
            let flow = client_flow(VIP4, GUE_4IN6, sport);
            let mut ip = Ip::new(flow.src, flow.dst);
            ip.options = ipv4_options(options);
            let mut sent = frame_bytes(&[], &ip, &upper(&flow, Protocol::Udp, b"no checksum"));
            let csum = 14 + 20 + options + 6;
            sent[csum..csum + 2].copy_from_slice(&[0, 0]);
            let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
            assert_eq!(verdict, bed.verdicts().redirect);
            let config = find(vips, VIP4, GUE_4IN6, Protocol::Udp);
            check_wrapped(&out, &wrapped_for(bed, config, &flow, &sent[14..], true));
            wrapped += 1;
        }
        assert_eq!(counter(bed, Counter::TunnelEncap), wrapped);
        assert_eq!(counter(bed, Counter::Forwarded), wrapped);
    });
}

/// A segment for the routing header (any address: segments left is 0).
const SEGMENT: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];

/// Inner IPv6 with extension headers the parser skips (hop-by-hop first,
/// destination options, a routing header with no segments left; up to
/// the four it walks, and 200 bytes of them, the transport header at
/// offset 254): over IPIP untouched; over GUE untouched with UDP
/// checksum 0, as documented.
fn inner_ipv6_extension_headers_are_carried(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let chains: [Vec<Ext>; 5] = [
            vec![Ext::hop_by_hop()],
            vec![Ext::dest_opts(1)],
            vec![Ext::hop_by_hop(), Ext::dest_opts(2)],
            vec![
                Ext::hop_by_hop(),
                Ext::dest_opts(1),
                Ext::routing(0, SEGMENT),
                Ext::dest_opts(1),
            ],
            vec![Ext::dest_opts(25)],
        ];
        let mut sport = 46_000;
        let mut wrapped = 0;
        for chain in &chains {
            for (port, protocol) in [
                (IPIP, Protocol::Tcp),
                (GUE, Protocol::Tcp),
                (GUE_UDP, Protocol::Udp),
            ] {
                sport += 1;
                let flow = client_flow(VIP6, port, sport);
                let mut ip = Ip::new(flow.src, flow.dst);
                ip.ext = chain.clone();
                let sent = frame_bytes(&[], &ip, &upper(&flow, protocol, b"behind extensions"));
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                let what = format!(
                    "{port} {:?}",
                    chain.iter().map(|e| e.kind).collect::<Vec<_>>()
                );
                assert_eq!(verdict, bed.verdicts().redirect, "{what}");
                let config = find(vips, VIP6, port, protocol);
                let gue = port != IPIP;
                check_wrapped(&out, &wrapped_for(bed, config, &flow, &sent[14..], gue));
                if gue {
                    assert_eq!(&out[14 + 40 + 6..14 + 40 + 8], &[0, 0], "{what}");
                }
                wrapped += 1;
            }
        }
        assert_eq!(counter(bed, Counter::TunnelEncap), wrapped);
        assert_eq!(counter(bed, Counter::PassIpv6Ext), 0);
    });
}

/// Extension headers putting the transport header past offset 256 (208
/// bytes of them: at 262), or a chain of five (more than the parser
/// walks): passed up the stack as they came, counted `PassIpv6Ext`,
/// nothing wrapped; IPIP, GUE and GUE over UDP alike.
fn an_extension_chain_past_what_the_wrap_reads_is_passed_up(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        let chains: [Vec<Ext>; 2] = [vec![Ext::dest_opts(26)], vec![Ext::dest_opts(1); 5]];
        let mut sport = 47_000;
        let mut passed = 0;
        for chain in &chains {
            for (port, protocol) in [
                (IPIP, Protocol::Tcp),
                (GUE, Protocol::Tcp),
                (GUE_UDP, Protocol::Udp),
            ] {
                sport += 1;
                let flow = client_flow(VIP6, port, sport);
                let mut ip = Ip::new(flow.src, flow.dst);
                ip.ext = chain.clone();
                let sent = frame_bytes(&[], &ip, &upper(&flow, protocol, b"too far"));
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                assert_eq!(verdict, bed.verdicts().pass, "{port} {}", chain.len());
                assert_eq!(out, sent, "passed as it came");
                passed += 1;
                assert_eq!(counter(bed, Counter::PassIpv6Ext), passed);
            }
        }
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
        assert_eq!(counter(bed, Counter::Forwarded), 0);
    });
}

lb_tests::on_both_hooks!(
    inner_ipv4_options_are_carried,
    inner_ipv6_extension_headers_are_carried,
    an_extension_chain_past_what_the_wrap_reads_is_passed_up,
);
