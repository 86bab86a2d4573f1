//! UDP's checksum edge cases under translation: none (0, IPv4) stays
//! none, and one that computes to 0 is sent as 0xffff.

use std::net::IpAddr;

use lb_common::consts::AF_INET;
use lb_tests::{
    natbed::{addr, client_flow, words_to_addr, NatBed, NAT4, OUT_MAC},
    packet::{self, Flow},
    testbed::{flow_key, Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    frames::{check, entries, Expected},
    in_netns, vips,
};

/// UDP over IPv4 without a checksum (0) keeps none, both ways.
fn udp_zero_checksum_stays_zero(hook: Hook) {
    in_netns(hook, vips(), zero_checksum_both_ways);
}

/// `udp_zero_checksum_stays_zero` on `bed`.
pub(crate) fn zero_checksum_both_ways(bed: &mut NatBed) {
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
}

/// A UDP checksum that computes to 0 after the translation is sent as
/// 0xffff (0 would mean "no checksum").
fn udp_checksum_computing_to_zero_is_sent_as_ffff(hook: Hook) {
    in_netns(hook, vips(), computing_to_zero_is_sent_as_ffff);
}

/// `udp_checksum_computing_to_zero_is_sent_as_ffff` on `bed`.
pub(crate) fn computing_to_zero_is_sent_as_ffff(bed: &mut NatBed) {
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
}

lb_tests::on_both_hooks!(
    udp_zero_checksum_stays_zero,
    udp_checksum_computing_to_zero_is_sent_as_ffff,
);
