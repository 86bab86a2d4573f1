//! ECN through the unwrap (RFC 6040 §4.2, normal mode): the balancer copies
//! the inner packet's ECN field into the outer header, so a router on the
//! way may mark the outer header CE; the unwrapped packet must carry that
//! mark (or be dropped when its transport cannot take it), for every
//! encapsulation at both hooks. Expectations are RFC 6040's table 2,
//! spelt out here; the output is checked byte for byte against a packet
//! built here (its IPv4 checksum computed afresh) and by etherparse.

use lb_common::{decap::DecapCounter, tunnel::GUE_PORT_DEFAULT};
use lb_tests::{
    craft::checksum,
    decapbed::{tunnel_frame, DecapBed, Encap, BACKEND_V4, BACKEND_V6},
    testbed::{action, Hook},
};

use crate::{
    bed,
    checks::{assert_refused, assert_unwrapped, run_case},
    gue0, gue1, inner_tcp, inner_udp, VIP4, VIP6,
};

/// ECN codepoints (RFC 3168).
const NOT_ECT: u8 = 0b00;
const ECT_1: u8 = 0b01;
const ECT_0: u8 = 0b10;
const CE: u8 = 0b11;

/// A DSCP (AF11) on both headers, as the balancer copies it: the unwrap
/// must leave it alone.
const DSCP: u8 = 0x28;

/// `packet` (an IP packet) with traffic class / TOS `DSCP | ecn`; an IPv4
/// header's checksum is computed afresh.
fn with_ecn(packet: &[u8], ecn: u8) -> Vec<u8> {
    let mut p = packet.to_vec();
    let class = DSCP | ecn;
    if p[0] >> 4 == 6 {
        p[0] = 0x60 | (class >> 4);
        p[1] = (class << 4) | (p[1] & 0x0f);
    } else {
        p[1] = class;
        let ihl = usize::from(p[0] & 0x0f) * 4;
        p[10] = 0;
        p[11] = 0;
        let c = checksum(&[&p[..ihl]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// An IPv6 packet with a flow label whose top nibble shares a byte with
/// the ECN bits: the unwrap must not touch it.
fn with_flow_label(packet: &[u8]) -> Vec<u8> {
    let mut p = packet.to_vec();
    p[1] = (p[1] & 0xf0) | 0x5;
    p[2] = 0x12;
    p[3] = 0x34;
    p
}

/// `frame` (Ethernet + outer IP) with the outer ECN field `ecn`.
fn with_outer_ecn(frame: &[u8], ecn: u8) -> Vec<u8> {
    [frame[..14].to_vec(), with_ecn(&frame[14..], ecn)].concat()
}

/// Every encapsulation: (name, frame builder for an inner packet, inner
/// packet before its ECN field is set, counter).
type Form = (&'static str, fn(&[u8]) -> Vec<u8>, Vec<u8>, DecapCounter);

fn forms() -> Vec<Form> {
    let tcp4 = inner_tcp(VIP4, 80);
    let udp4 = inner_udp(VIP4, 53);
    let tcp6 = with_flow_label(&inner_tcp(VIP6, 80));
    vec![
        (
            "ipip v4",
            |i| tunnel_frame(BACKEND_V4, Encap::Ipip, i),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "ip6ip6",
            |i| tunnel_frame(BACKEND_V6, Encap::Ipip, i),
            tcp6.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "4in6",
            |i| tunnel_frame(BACKEND_V6, Encap::Ipip, i),
            tcp4.clone(),
            DecapCounter::DecapIpip,
        ),
        (
            "gue1 v4",
            |i| tunnel_frame(BACKEND_V4, gue1(), i),
            udp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 v6, checksum",
            |i| {
                tunnel_frame(
                    BACKEND_V6,
                    Encap::Gue1 {
                        port: GUE_PORT_DEFAULT,
                        csum: true,
                    },
                    i,
                )
            },
            tcp6.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue1 4in6",
            |i| tunnel_frame(BACKEND_V6, gue1(), i),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v4",
            |i| tunnel_frame(BACKEND_V4, gue0(i), i),
            tcp4.clone(),
            DecapCounter::DecapGue,
        ),
        (
            "gue0 v6",
            |i| tunnel_frame(BACKEND_V6, gue0(i), i),
            tcp6,
            DecapCounter::DecapGue,
        ),
        (
            "gue0 4in6",
            |i| tunnel_frame(BACKEND_V6, gue0(i), i),
            tcp4,
            DecapCounter::DecapGue,
        ),
    ]
}

/// RFC 6040 table 2: (outer, inner, the inner field after the unwrap or
/// `None` for a drop).
const TABLE: [(u8, u8, Option<u8>); 16] = [
    (NOT_ECT, NOT_ECT, Some(NOT_ECT)),
    (NOT_ECT, ECT_0, Some(ECT_0)),
    (NOT_ECT, ECT_1, Some(ECT_1)),
    (NOT_ECT, CE, Some(CE)),
    (ECT_0, NOT_ECT, Some(NOT_ECT)),
    (ECT_0, ECT_0, Some(ECT_0)),
    (ECT_0, ECT_1, Some(ECT_1)),
    (ECT_0, CE, Some(CE)),
    (ECT_1, NOT_ECT, Some(NOT_ECT)),
    (ECT_1, ECT_0, Some(ECT_1)),
    (ECT_1, ECT_1, Some(ECT_1)),
    (ECT_1, CE, Some(CE)),
    (CE, NOT_ECT, None),
    (CE, ECT_0, Some(CE)),
    (CE, ECT_1, Some(CE)),
    (CE, CE, Some(CE)),
];

/// Runs one (outer, inner) combination of `form` at `bed` and checks it
/// against `want`.
fn check(bed: &mut DecapBed, form: &Form, outer: u8, inner: u8, want: Option<u8>) {
    let (name, frame_of, packet, counter) = form;
    let sent = with_ecn(packet, inner);
    let frame = with_outer_ecn(&frame_of(&sent), outer);
    let what = format!("{name}, outer {outer:02b}, inner {inner:02b}");
    match want {
        Some(ecn) => {
            let out = run_case(bed, &what, &frame, action::PASS, *counter);
            assert_unwrapped(
                &out,
                &with_ecn(packet, ecn),
                &format!("{what} ({:?})", bed.hook),
            );
        }
        None => assert_refused(
            bed,
            &what,
            &frame,
            action::DROP,
            DecapCounter::DropUnsupported,
        ),
    }
}

/// The case a router between balancer and backend causes: outer CE over
/// an ECN-capable inner packet comes out CE, its IPv4 checksum valid.
#[test]
fn an_outer_ce_mark_is_carried_to_the_inner_packet() {
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for form in forms() {
            check(&mut bed, &form, CE, ECT_0, Some(CE));
            check(&mut bed, &form, CE, ECT_1, Some(CE));
        }
    }
}

/// Outer CE over a Not-ECT inner packet: its transport cannot take the
/// mark, so the packet is dropped (counted), not delivered unmarked.
#[test]
fn an_outer_ce_mark_over_a_not_ect_packet_is_dropped_and_counted() {
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for form in forms() {
            check(&mut bed, &form, CE, NOT_ECT, None);
        }
    }
}

/// Every combination of table 2, for every encapsulation at both hooks:
/// outer Not-ECT and ECT(0) leave the inner packet as it came, outer
/// ECT(1) turns an inner ECT(0) into ECT(1).
#[test]
fn every_ecn_combination_follows_rfc_6040() {
    for hook in Hook::ALL {
        let mut bed = bed(hook);
        for form in forms() {
            for (outer, inner, want) in TABLE {
                check(&mut bed, &form, outer, inner, want);
            }
        }
    }
}
