//! Inner packets with IPv4 options or IPv6 extension headers, wrapped
//! untouched: GUE over IPv6's checksum share of an inner IPv4 packet
//! comes from its header length (IHL), so it must hold with options
//! (the etherparse check sums the whole datagram); an inner IPv6 packet
//! with extension headers gives no share (`encap::read_inner`), so GUE
//! over IPv6 carries UDP checksum 0 (allowed for UDP tunnels over IPv6,
//! RFC 6935 section 5 and RFC 6936, what lb-decap and Linux's fou accept);
//! a chain whose transport header lies past what the wrap reads (offset
//! 256), or longer than the parser walks, goes up the stack
//! (`PassIpv6Ext`), before the guards and the connection table see it:
//! no token charged, no entry made, nothing but that verdict counted.

use std::collections::BTreeMap;

use lb_common::stats::Counter;
use lb_tests::{
    craft::{frame_bytes, ipv4_options, tcp_flag, Ext, Ip, Upper},
    natbed::{client_flow, frame, CLIENT6},
    packet::{Flow, SYN},
    testbed::{Hook, VIP4, VIP6},
    tunnelbed::TunnelBed,
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    guard::{AclRule, Action, Guard, GuardConfig, Limits, RateLimit, Scope},
    vip_id::VipId,
};

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

/// Every node counter that is not 0, summed over CPUs.
fn counters(bed: &TunnelBed) -> BTreeMap<u32, u64> {
    bed.nat
        .bed
        .dataplane
        .counters()
        .expect("counters")
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|(c, v)| (c as u32, v))
        .collect()
}

/// New flows counted for VIP `vip`.
fn vip_new_flows(bed: &TunnelBed, vip: &VipConfig) -> u64 {
    let id = bed.nat.bed.balancer.vips()[&VipId::of(vip)].id;
    bed.nat
        .bed
        .dataplane
        .vip_traffic(id)
        .expect("VIP stats")
        .new_flows
}

/// A chain putting the transport header past offset 256 (one destination
/// options header of 256 bytes, Hdr Ext Len 31: at 310) is passed up
/// before the guards and the connection table: under an allow list
/// naming the client and a limit of one new flow per source, a SYN, a
/// mid-stream ACK and a UDP datagram of new flows go up as they came,
/// counted `PassIpv6Ext` and nothing else: no rule hit, no entry (table
/// or half-open), no new flow, no token spent (the client's next flow
/// of each VIP, a plain one, is still let in). Before, the wrap passed
/// them only after all that.
fn a_chain_past_what_the_wrap_reads_is_passed_up_uncharged(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let allow = AclRule {
            scope: Scope::Global,
            action: Action::Allow,
            source: format!("{CLIENT6}/128").parse().expect("cidr"),
        };
        let served = [
            (IPIP, Protocol::Tcp),
            (GUE, Protocol::Tcp),
            (GUE_UDP, Protocol::Udp),
        ];
        let one_a_second = Limits {
            source: Some(RateLimit::new(1, Some(1), "test").expect("rate")),
            ..Limits::default()
        };
        let config = GuardConfig {
            acl: [allow].into_iter().collect(),
            limits: served
                .iter()
                .map(|(port, protocol)| {
                    let vip = find(vips, VIP6, *port, *protocol);
                    (Scope::Vip(VipId::of(vip)), one_a_second)
                })
                .collect(),
        };
        let mut guard: Option<Guard> = None;
        bed.nat.bed.set_guard(&mut guard, config).expect("guard");
        let hits = |bed: &TunnelBed| {
            let counts = guard
                .as_ref()
                .expect("guard")
                .counts(bed.nat.bed.dataplane.guard())
                .expect("counts");
            let count = counts
                .iter()
                .find(|c| c.rule == allow)
                .expect("the rule is listed");
            assert!(count.id.is_some(), "the allow rule is in force");
            count.packets
        };
        let mut sport = 48_000;
        let mut passed = 0;
        for (port, protocol) in served {
            let uppers = match protocol {
                Protocol::Tcp => vec![tcp_flag::SYN, tcp_flag::ACK],
                Protocol::Udp => vec![0],
            };
            for flags in uppers {
                sport += 1;
                let flow = client_flow(VIP6, port, sport);
                let mut ip = Ip::new(flow.src, flow.dst);
                ip.ext = vec![Ext::dest_opts(32)];
                let upper = match protocol {
                    Protocol::Tcp => Upper::Tcp {
                        sport: flow.sport,
                        dport: flow.dport,
                        flags,
                        payload: b"far".to_vec(),
                    },
                    Protocol::Udp => upper(&flow, protocol, b"far"),
                };
                let sent = frame_bytes(&[], &ip, &upper);
                assert_eq!(sent[14 + 40 + 1], 31, "Hdr Ext Len");
                let before = counters(bed);
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                let what = format!("{port} {protocol:?} flags {flags:#x}");
                assert_eq!(verdict, bed.verdicts().pass, "{what}");
                assert_eq!(out, sent, "{what}: passed as it came");
                passed += 1;
                let mut want = before;
                *want.entry(Counter::PassIpv6Ext as u32).or_default() += 1;
                assert_eq!(counters(bed), want, "{what}: only its verdict counted");
            }
        }
        assert_eq!(counter(bed, Counter::PassIpv6Ext), passed);
        assert_eq!(hits(bed), passed, "each met the lists first");
        assert_eq!(bed.nat.bed.dataplane.flows().count(), 0, "no entry");
        assert_eq!(bed.nat.bed.handshakes(), 0, "no handshake held");
        for (port, protocol) in served {
            let vip = find(vips, VIP6, port, protocol);
            assert_eq!(vip_new_flows(bed, vip), 0, "{port}: no new flow");
        }
        // The client's tokens are all there: one plain new flow each.
        for (port, protocol) in served {
            sport += 1;
            let flow = client_flow(VIP6, port, sport);
            let sent = frame(&flow, protocol, SYN, b"near");
            let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
            assert_eq!(verdict, bed.verdicts().redirect, "{port}: not rate limited");
            let vip = find(vips, VIP6, port, protocol);
            check_wrapped(&out, &wrapped_for(bed, vip, &flow, &sent[14..], false));
            assert_eq!(vip_new_flows(bed, vip), 1, "{port}: its new flow");
        }
        assert_eq!(counter(bed, Counter::DropRateLimited), 0);
        assert_eq!(
            hits(bed),
            passed + served.len() as u64,
            "the plain flows met the list"
        );
        // A deny rule keeps its source off the VIP's address with such a
        // packet too: dropped, not passed up to the node's stack.
        let deny = AclRule {
            action: Action::Deny,
            ..allow
        };
        let config = GuardConfig {
            acl: [deny].into_iter().collect(),
            limits: Default::default(),
        };
        bed.nat.bed.set_guard(&mut guard, config).expect("guard");
        for (port, protocol) in served {
            sport += 1;
            let flow = client_flow(VIP6, port, sport);
            let mut ip = Ip::new(flow.src, flow.dst);
            ip.ext = vec![Ext::dest_opts(32)];
            let sent = frame_bytes(&[], &ip, &upper(&flow, protocol, b"far"));
            let before = counter(bed, Counter::DropAclDenied);
            let (verdict, _) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
            assert_eq!(verdict, bed.verdicts().drop, "{port}: denied");
            assert_eq!(counter(bed, Counter::DropAclDenied), before + 1, "{port}");
        }
        assert_eq!(counter(bed, Counter::PassIpv6Ext), passed, "none passed");
    });
}

lb_tests::on_both_hooks!(
    inner_ipv4_options_are_carried,
    inner_ipv6_extension_headers_are_carried,
    an_extension_chain_past_what_the_wrap_reads_is_passed_up,
    a_chain_past_what_the_wrap_reads_is_passed_up_uncharged,
);
