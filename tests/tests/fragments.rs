//! Fragments under BPF_PROG_TEST_RUN, at both hooks: an IPv4 fragment
//! (first, middle, last) or an IPv6 packet with a fragment header,
//! addressed to a VIP address (a VIP's port or any other) or a NAT
//! address, is dropped and counted as `drop_fragment` (up the stack, the
//! node holds those addresses and would answer for the backends: a TCP RST
//! into a DSR flow, ICMP port unreachable for a NAT'd reply); to the
//! node's own address it passes up untouched (`pass_fragment`). Each frame
//! is checked by an independent parser (etherparse) to be the fragment it
//! claims, and each run to move exactly one verdict counter, by one, and
//! to leave the frame unchanged. Needs root (CAP_BPF, CAP_SYS_ADMIN).

use std::net::IpAddr;

use etherparse::{Ipv6ExtensionSlice, NetSlice, SlicedPacket};
use lb_common::stats::Counter;
use lb_tests::{
    craft::{self, Ext, Ip, Upper},
    natbed::nat_vip,
    testbed::{action, skb_refuses, vip4_tcp, vip6_tcp, Hook, TestBed, VIP4, VIP6},
};
use lb_userspace::config::{Protocol, VipConfig};

/// A NAT VIP's address (IPv4) and its NAT address.
const NAT_VIP4: &str = "198.18.0.101";
const NAT4: &str = "198.18.0.50";
/// A NAT VIP's address (IPv6) and its NAT address.
const NAT_VIP6: &str = "2001:2::101";
const NAT6: &str = "2001:2::50";
/// The node's own addresses: no VIP's, no NAT address.
const HOST4: &str = "198.18.0.2";
const HOST6: &str = "2001:2::2";
const CLIENT4: &str = "198.18.0.10";
const CLIENT6: &str = "2001:2::10";
/// A NAT VIP's backend (its replies go to the NAT address).
const BACKEND4: &str = "198.18.2.11";
const BACKEND6: &str = "2001:2:0:2::11";

fn vips() -> Vec<VipConfig> {
    vec![
        vip4_tcp(),
        vip6_tcp(),
        nat_vip(
            NAT_VIP4,
            53,
            Protocol::Udp,
            &[(BACKEND4, None)],
            NAT4,
            (2000, 2999),
        ),
        nat_vip(
            NAT_VIP6,
            53,
            Protocol::Udp,
            &[(BACKEND6, None)],
            NAT6,
            (2000, 2999),
        ),
    ]
}

fn addr(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// IPv4 flags and offset of a first (MF), middle (MF, 185 units) and
/// last (370 units) fragment of one packet.
const V4_FRAGMENTS: [(&str, u16); 3] = [("first", 0x2000), ("middle", 0x2000 | 185), ("last", 370)];

/// IPv6 fragment headers: first, middle, last, atomic (RFC 6946), and one
/// behind hop-by-hop options.
fn v6_fragments() -> Vec<(&'static str, Vec<Ext>)> {
    vec![
        ("first", vec![Ext::fragment(0, true)]),
        ("middle", vec![Ext::fragment(185, true)]),
        ("last", vec![Ext::fragment(370, false)]),
        ("atomic", vec![Ext::fragment(0, false)]),
        (
            "behind hop-by-hop",
            vec![Ext::hop_by_hop(), Ext::fragment(0, true)],
        ),
    ]
}

fn tcp(dport: u16) -> Upper {
    Upper::Tcp {
        sport: 40000,
        dport,
        flags: craft::tcp_flag::ACK,
        payload: vec![7; 64],
    }
}

fn udp(sport: u16, dport: u16) -> Upper {
    Upper::Udp {
        sport,
        dport,
        payload: vec![9; 64],
    }
}

/// An IPv4 fragment (`frag` = flags and offset) of `upper` to `dst`.
fn v4_fragment(src: &str, dst: &str, frag: u16, upper: &Upper, tags: &[u16]) -> Vec<u8> {
    let mut ip = Ip::new(addr(src), addr(dst));
    ip.frag = frag;
    craft::frame_bytes(tags, &ip, upper)
}

/// An IPv6 packet with extension headers `ext` (a fragment header among
/// them) carrying `upper` to `dst`.
fn v6_fragment(src: &str, dst: &str, ext: Vec<Ext>, upper: &Upper) -> Vec<u8> {
    let mut ip = Ip::new(addr(src), addr(dst));
    ip.ext = ext;
    craft::frame_bytes(&[], &ip, upper)
}

/// The independent parser's word: the frame is an IPv4 fragment or an
/// IPv6 packet with a fragment header, addressed to `dst`.
fn assert_fragment_to(frame: &[u8], dst: &str, what: &str) {
    let packet =
        SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("{what}: etherparse: {e}"));
    let (to, fragment) = match packet.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (
                IpAddr::from(h.destination_addr()),
                h.more_fragments() || h.fragments_offset().value() != 0,
            )
        }
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::from(ip.header().destination_addr()),
            ip.extensions()
                .clone()
                .into_iter()
                .any(|e| matches!(e, Ipv6ExtensionSlice::Fragment(_))),
        ),
        _ => panic!("{what}: not IP"),
    };
    assert_eq!(to, addr(dst), "{what}: destination");
    assert!(fragment, "{what}: etherparse sees no fragment");
}

/// Runs `frame`: the verdict, exactly one verdict counter moved (by one,
/// `counter`) and the frame unchanged.
fn expect(bed: &mut TestBed, frame: &[u8], verdict: u32, counter: Counter, what: &str) {
    assert!(!skb_refuses(frame), "{what}: a frame both hooks take");
    let verdicts = |bed: &TestBed| -> Vec<(Counter, u64)> {
        bed.dataplane
            .counters()
            .expect("counters")
            .into_iter()
            .filter(|(c, _)| c.is_verdict())
            .collect()
    };
    let before = verdicts(bed);
    let (got, out) = bed
        .run(frame)
        .unwrap_or_else(|e| panic!("test run for {what}: {e:#}"));
    let moved: Vec<(Counter, u64)> = before
        .iter()
        .zip(verdicts(bed))
        .filter(|(b, a)| a.1 != b.1)
        .map(|(b, a)| (b.0, a.1 - b.1))
        .collect();
    assert_eq!(got, verdict, "verdict for {what}");
    assert_eq!(moved, [(counter, 1)], "{what}: verdict counters moved");
    assert_eq!(out, frame, "{what}: the frame must leave unchanged");
}

fn fragments_to_a_vip_address_are_dropped_on_any_port(hook: Hook) {
    let mut bed = TestBed::with_hook(&vips(), hook).expect("test bed");
    for (port, service) in [(80, "the VIP's port"), (8080, "a port that is no VIP")] {
        for (name, frag) in V4_FRAGMENTS {
            let what = format!("IPv4 {name} fragment to {VIP4}:{port} ({service})");
            let frame = v4_fragment(CLIENT4, VIP4, frag, &tcp(port), &[]);
            assert_fragment_to(&frame, VIP4, &what);
            expect(&mut bed, &frame, action::DROP, Counter::DropFragment, &what);
        }
        for (name, ext) in v6_fragments() {
            let what = format!("IPv6 {name} fragment to [{VIP6}]:{port} ({service})");
            let frame = v6_fragment(CLIENT6, VIP6, ext, &tcp(port));
            assert_fragment_to(&frame, VIP6, &what);
            expect(&mut bed, &frame, action::DROP, Counter::DropFragment, &what);
        }
    }
    // Behind a VLAN tag, and with DF and MF both set.
    let what = "IPv4 first fragment to the VIP in a VLAN";
    let frame = v4_fragment(CLIENT4, VIP4, 0x2000, &tcp(80), &[0x8100]);
    assert_fragment_to(&frame, VIP4, what);
    expect(&mut bed, &frame, action::DROP, Counter::DropFragment, what);
    let what = "IPv4 fragment with DF and MF to the VIP";
    let frame = v4_fragment(CLIENT4, VIP4, 0x6000, &tcp(80), &[]);
    assert_fragment_to(&frame, VIP4, what);
    expect(&mut bed, &frame, action::DROP, Counter::DropFragment, what);
    // Nothing reached a backend.
    assert_eq!(bed.counter(Counter::Forwarded).expect("counter"), 0);
}

fn fragments_to_a_nat_vip_or_its_nat_address_are_dropped(hook: Hook) {
    let mut bed = TestBed::with_hook(&vips(), hook).expect("test bed");
    // A backend's fragmented UDP reply to the NAT address (a translated
    // flow's, or any), and a client's fragment to the NAT VIP.
    for (name, frag) in V4_FRAGMENTS {
        let what = format!("IPv4 {name} fragment of a backend's reply to {NAT4}");
        let frame = v4_fragment(BACKEND4, NAT4, frag, &udp(53, 2345), &[]);
        assert_fragment_to(&frame, NAT4, &what);
        expect(&mut bed, &frame, action::DROP, Counter::DropFragment, &what);
        let what = format!("IPv4 {name} fragment to the NAT VIP {NAT_VIP4}");
        let frame = v4_fragment(CLIENT4, NAT_VIP4, frag, &udp(40000, 53), &[]);
        assert_fragment_to(&frame, NAT_VIP4, &what);
        expect(&mut bed, &frame, action::DROP, Counter::DropFragment, &what);
    }
    for (name, ext) in v6_fragments() {
        let what = format!("IPv6 {name} fragment of a backend's reply to {NAT6}");
        let frame = v6_fragment(BACKEND6, NAT6, ext.clone(), &udp(53, 2345));
        assert_fragment_to(&frame, NAT6, &what);
        expect(&mut bed, &frame, action::DROP, Counter::DropFragment, &what);
        let what = format!("IPv6 {name} fragment to the NAT VIP {NAT_VIP6}");
        let frame = v6_fragment(CLIENT6, NAT_VIP6, ext, &udp(40000, 53));
        assert_fragment_to(&frame, NAT_VIP6, &what);
        expect(&mut bed, &frame, action::DROP, Counter::DropFragment, &what);
    }
    assert_eq!(bed.counter(Counter::NatNew).expect("counter"), 0);
}

fn fragments_to_the_nodes_own_address_pass_up_untouched(hook: Hook) {
    let mut bed = TestBed::with_hook(&vips(), hook).expect("test bed");
    for (name, frag) in V4_FRAGMENTS {
        for upper in [tcp(80), udp(40000, 53)] {
            let what = format!("IPv4 {name} fragment to the node's {HOST4}");
            let frame = v4_fragment(CLIENT4, HOST4, frag, &upper, &[]);
            assert_fragment_to(&frame, HOST4, &what);
            expect(&mut bed, &frame, action::PASS, Counter::PassFragment, &what);
        }
    }
    for (name, ext) in v6_fragments() {
        let what = format!("IPv6 {name} fragment to the node's {HOST6}");
        let frame = v6_fragment(CLIENT6, HOST6, ext, &tcp(80));
        assert_fragment_to(&frame, HOST6, &what);
        expect(&mut bed, &frame, action::PASS, Counter::PassFragment, &what);
    }
}

/// The set follows the VIPs: once a VIP is removed, fragments to its
/// address are the node's business again.
fn fragments_to_a_removed_vips_address_pass_again(hook: Hook) {
    let mut bed = TestBed::with_hook(&vips(), hook).expect("test bed");
    let to_vip = v4_fragment(CLIENT4, VIP4, 0x2000, &tcp(80), &[]);
    let to_nat = v4_fragment(BACKEND4, NAT4, 0x2000, &udp(53, 2345), &[]);
    expect(
        &mut bed,
        &to_vip,
        action::DROP,
        Counter::DropFragment,
        "to the VIP",
    );
    expect(
        &mut bed,
        &to_nat,
        action::DROP,
        Counter::DropFragment,
        "to the NAT address",
    );
    bed.apply(&[vip6_tcp()]).expect("apply");
    expect(
        &mut bed,
        &to_vip,
        action::PASS,
        Counter::PassFragment,
        "to the removed VIP",
    );
    expect(
        &mut bed,
        &to_nat,
        action::PASS,
        Counter::PassFragment,
        "to the removed NAT address",
    );
    let to_vip6 = v6_fragment(CLIENT6, VIP6, vec![Ext::fragment(0, true)], &tcp(80));
    expect(
        &mut bed,
        &to_vip6,
        action::DROP,
        Counter::DropFragment,
        "to the VIP left",
    );
}

lb_tests::on_both_hooks!(
    fragments_to_a_vip_address_are_dropped_on_any_port,
    fragments_to_a_nat_vip_or_its_nat_address_are_dropped,
    fragments_to_the_nodes_own_address_pass_up_untouched,
    fragments_to_a_removed_vips_address_pass_again,
);
