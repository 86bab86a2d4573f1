//! The tc program on CHECKSUM_COMPLETE skbs (what most NICs deliver): the
//! sum of the packet from the IP header on that such an skb carries
//! (`skb->csum`) must follow every rewrite, or the stack that receives
//! the packet (a veth peer, a local socket) finds it wrong. The test run
//! checks it and fails the run (EBADMSG) if it does not. Each case runs
//! on two fresh tc beds, on plain skbs and on CHECKSUM_COMPLETE ones: the
//! case's own checks pass on both, and every run gives the same verdict
//! and frame on both.

use lb_tests::{
    natbed::{FibNetns, NatBed, IN_DEV, OUT_DEV},
    testbed::{Hook, VIP4, VIP6},
};

use crate::{
    icmp::icmp_errors_reach_the_other_side,
    translation::new_tracked_and_reply,
    udp_checksum::{computing_to_zero_is_sent_as_ffff, zero_checksum_both_ways},
    vips,
};

/// Every run of `body` on a fresh tc bed: (verdict, frame afterwards).
fn recorded(checksum_complete: bool, body: fn(&mut NatBed)) -> Vec<(u32, Vec<u8>)> {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut bed = NatBed::new(Hook::Tc, &vips(), in_if, out_if).expect("test bed");
            bed.checksum_complete = checksum_complete;
            bed.recorded = Some(Vec::new());
            body(&mut bed);
            bed.recorded.take().unwrap_or_default()
        })
        .expect("the test body (see its panic above)")
}

/// `body` on CHECKSUM_COMPLETE skbs gives what it gives on plain ones.
fn same_as_plain(body: fn(&mut NatBed)) {
    let plain = recorded(false, body);
    let complete = recorded(true, body);
    assert_eq!(complete.len(), plain.len(), "runs");
    assert!(!plain.is_empty());
    for (i, (complete, plain)) in complete.iter().zip(&plain).enumerate() {
        assert_eq!(complete, plain, "run {i}");
    }
}

#[test]
fn tcp_v4_new_tracked_and_reply() {
    same_as_plain(|bed| new_tracked_and_reply(bed, VIP4, 80));
}

#[test]
fn udp_v4_new_tracked_and_reply() {
    same_as_plain(|bed| new_tracked_and_reply(bed, VIP4, 53));
}

#[test]
fn tcp_v6_new_tracked_and_reply() {
    same_as_plain(|bed| new_tracked_and_reply(bed, VIP6, 80));
}

#[test]
fn udp_v6_new_tracked_and_reply() {
    same_as_plain(|bed| new_tracked_and_reply(bed, VIP6, 53));
}

#[test]
fn icmp_errors_v4() {
    same_as_plain(|bed| icmp_errors_reach_the_other_side(bed, VIP4, 80));
    same_as_plain(|bed| icmp_errors_reach_the_other_side(bed, VIP4, 53));
}

#[test]
fn icmp_errors_v6() {
    same_as_plain(|bed| icmp_errors_reach_the_other_side(bed, VIP6, 80));
    same_as_plain(|bed| icmp_errors_reach_the_other_side(bed, VIP6, 53));
}

/// UDP over IPv4 without a checksum, its ports changed (not the neutral
/// port: the client's is out of the range): no helper sees the change.
#[test]
fn udp_v4_zero_checksum() {
    same_as_plain(zero_checksum_both_ways);
}

/// A UDP checksum computing to 0, sent as 0xffff, IPv4 and IPv6.
#[test]
fn udp_checksum_computing_to_zero() {
    same_as_plain(computing_to_zero_is_sent_as_ffff);
}
