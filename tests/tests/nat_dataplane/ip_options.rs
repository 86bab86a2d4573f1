//! NAT translation behind IPv4 options and IPv6 extension headers: the
//! ports and the TCP/UDP checksum are rewritten at the transport header
//! the parser found behind them (`Packet::l4_off`, laundered by
//! `nat::scratch::layout`), both ways, the options and extension headers
//! left as they came; a transport header past what the NAT path rewrites
//! (offset 256), or a chain longer than the parser walks, goes up the
//! stack (`PassIpv6Ext`) before any state is made.

use lb_common::stats::Counter;
use lb_tests::{
    craft::{frame_bytes, ipv4_options, tcp_flag, Ext, Ip, Upper},
    natbed::{addr, client_flow, words_to_addr, NatBed, IN_MAC, NAT4, NAT6, OUT_MAC},
    packet::{Flow, CLIENT_MAC},
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    counter,
    frames::{check, entries, proto_of, Expected},
    in_netns, vips, BACKEND_PORT,
};

/// A segment (TCP with `flags`) or datagram (UDP) of `flow`.
fn upper(flow: &Flow, protocol: Protocol, flags: u8, payload: &[u8]) -> Upper {
    match protocol {
        Protocol::Tcp => Upper::Tcp {
            sport: flow.sport,
            dport: flow.dport,
            flags,
            payload: payload.to_vec(),
        },
        Protocol::Udp => Upper::Udp {
            sport: flow.sport,
            dport: flow.dport,
            payload: payload.to_vec(),
        },
    }
}

/// The frame of `flow` with `shape` applied to its IP header (options,
/// extension headers).
fn shaped(flow: &Flow, protocol: Protocol, flags: u8, shape: &dyn Fn(&mut Ip)) -> Vec<u8> {
    let mut ip = Ip::new(flow.src, flow.dst);
    shape(&mut ip);
    frame_bytes(&[], &ip, &upper(flow, protocol, flags, b"payload behind"))
}

/// Where the transport header of an untagged frame starts (IHL, or the
/// extension chain walked here).
fn l4_off(frame: &[u8]) -> usize {
    if frame[14] >> 4 == 4 {
        return 14 + usize::from(frame[14] & 0x0f) * 4;
    }
    let (mut next, mut off) = (frame[14 + 6], 14 + 40);
    while [0, 43, 60].contains(&next) {
        next = frame[off];
        off += (usize::from(frame[off + 1]) + 1) * 8;
    }
    off
}

/// A new flow of the client to `vip`:`port` from `sport`, its frames
/// shaped by `shape`, then the backend's reply shaped the same way: both
/// translated at the transport header behind the options / extension
/// headers (every field and checksum checked by etherparse), the bytes
/// between the fixed IP header and the transport header untouched.
fn both_ways(bed: &mut NatBed, vip: &str, port: u16, sport: u16, shape: &dyn Fn(&mut Ip)) {
    let protocol = proto_of(port);
    let flow = client_flow(vip, port, sport);
    let sent = shaped(&flow, protocol, tcp_flag::SYN, shape);
    let l4 = l4_off(&sent);
    let fixed = if vip.contains(':') { 14 + 40 } else { 14 + 20 };
    assert!(l4 > fixed, "options or extension headers");
    let (verdict, out) = bed.run_on(bed.in_if, &sent).expect("test run");
    assert_eq!(verdict, bed.verdicts.redirect, "{vip}:{port} {sport}");
    assert_eq!(out.len(), sent.len());
    assert_eq!(&out[fixed..l4], &sent[fixed..l4], "options kept");
    let key = flow_key(&flow, protocol);
    let (forward, _, _) = entries(bed, &key);
    let backend = words_to_addr(forward.dst, key.family);
    let nat = addr(if vip.contains(':') { NAT6 } else { NAT4 });
    let backend_port = if protocol == Protocol::Tcp {
        BACKEND_PORT
    } else {
        port
    };
    let source_port = u16::from_be(forward.sport);
    check(
        &out,
        &Expected {
            smac: OUT_MAC,
            dmac: forward.dmac,
            src: nat,
            dst: backend,
            sport: source_port,
            dport: backend_port,
            ttl: 63,
            udp_zero: false,
        },
    );
    let back = Flow {
        src: backend,
        dst: nat,
        sport: backend_port,
        dport: source_port,
    };
    let reply = shaped(&back, protocol, tcp_flag::SYN | tcp_flag::ACK, shape);
    let (verdict, out) = bed.run_on(bed.out_if, &reply).expect("test run");
    assert_eq!(
        verdict, bed.verdicts.redirect,
        "reply of {vip}:{port} {sport}"
    );
    assert_eq!(out.len(), reply.len());
    assert_eq!(&out[fixed..l4], &reply[fixed..l4], "options kept");
    check(
        &out,
        &Expected {
            smac: IN_MAC,
            dmac: CLIENT_MAC,
            src: addr(vip),
            dst: flow.src,
            sport: port,
            dport: sport,
            ttl: 63,
            udp_zero: false,
        },
    );
}

/// IPv4 options (12 bytes, and the most IPv4 allows: 40), TCP and UDP.
fn ipv4_options_translated_both_ways(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let mut sport = 45_000;
        for len in [12, 40] {
            for port in [80, 53] {
                sport += 1;
                both_ways(bed, VIP4, port, sport, &|ip: &mut Ip| {
                    ip.options = ipv4_options(len);
                });
            }
        }
        assert_eq!(counter(bed, Counter::NatNew), 4);
        assert_eq!(counter(bed, Counter::Forwarded), 4);
        assert_eq!(counter(bed, Counter::ForwardedNatReply), 4);
    });
}

/// A segment for the routing header (any address: segments left is 0).
const SEGMENT: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];

/// IPv6 extension headers the parser skips (hop-by-hop, destination
/// options, a routing header with no segments left; up to the four it
/// walks; 200 bytes of them, the transport header at offset 254), TCP
/// and UDP.
fn ipv6_extension_headers_translated_both_ways(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let chains: [fn() -> Vec<Ext>; 4] = [
            || vec![Ext::hop_by_hop()],
            || vec![Ext::hop_by_hop(), Ext::dest_opts(2)],
            || {
                vec![
                    Ext::hop_by_hop(),
                    Ext::dest_opts(1),
                    Ext::routing(0, SEGMENT),
                    Ext::dest_opts(1),
                ]
            },
            || vec![Ext::dest_opts(25)],
        ];
        let mut sport = 46_000;
        for chain in chains {
            for port in [80, 53] {
                sport += 1;
                both_ways(bed, VIP6, port, sport, &|ip: &mut Ip| ip.ext = chain());
            }
        }
        assert_eq!(counter(bed, Counter::NatNew), 8);
        assert_eq!(counter(bed, Counter::ForwardedNatReply), 8);
        assert_eq!(counter(bed, Counter::PassIpv6Ext), 0);
    });
}

/// A client's packet whose transport header lies past offset 256 (208
/// bytes of extension headers: at 262), or behind five extension headers:
/// passed up as it came, counted `PassIpv6Ext`, no translation made.
fn an_extension_chain_past_what_nat_reads_is_passed_up(hook: Hook) {
    in_netns(hook, vips(), |bed| {
        let chains: [fn() -> Vec<Ext>; 2] =
            [|| vec![Ext::dest_opts(26)], || vec![Ext::dest_opts(1); 5]];
        let mut sport = 47_000;
        let mut passed = 0;
        for chain in chains {
            for port in [80, 53] {
                sport += 1;
                let flow = client_flow(VIP6, port, sport);
                let sent = shaped(&flow, proto_of(port), tcp_flag::SYN, &|ip: &mut Ip| {
                    ip.ext = chain()
                });
                let (verdict, out) = bed.run_on(bed.in_if, &sent).expect("test run");
                assert_eq!(verdict, bed.verdicts.pass, "{port} {}", chain().len());
                assert_eq!(out, sent, "passed as it came");
                passed += 1;
                assert_eq!(counter(bed, Counter::PassIpv6Ext), passed);
            }
        }
        assert!(bed.flows().is_empty(), "no translation");
        assert_eq!(counter(bed, Counter::NatNew), 0);
        assert_eq!(counter(bed, Counter::Forwarded), 0);
    });
}

lb_tests::on_both_hooks!(
    ipv4_options_translated_both_ways,
    ipv6_extension_headers_translated_both_ways,
    an_extension_chain_past_what_nat_reads_is_passed_up,
);
