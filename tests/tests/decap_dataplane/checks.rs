//! The test side's checks of what the program did: the unwrapped frame
//! (byte for byte and by etherparse, checksums included); the verdict and
//! exactly one counter; and, for a refusal, the bytes unchanged.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lb_common::decap::DecapCounter;
use lb_tests::{
    craft::checksum,
    decapbed::{ethernet, DecapBed},
    packet::{CLIENT_MAC, LB_MAC},
    testbed::{skb_refuses, Hook},
};

/// Checks with etherparse that `out` is an Ethernet frame holding exactly
/// `inner`, with the right Ethernet type and valid checksums.
pub(crate) fn assert_unwrapped(out: &[u8], inner: &[u8], what: &str) {
    assert_eq!(
        out,
        ethernet(CLIENT_MAC, LB_MAC, inner),
        "{what}: output frame"
    );
    let parsed =
        SlicedPacket::from_ethernet(out).unwrap_or_else(|e| panic!("{what}: etherparse: {e}"));
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &parsed.link else {
        panic!("{what}: no Ethernet header");
    };
    assert_eq!(eth.source(), CLIENT_MAC, "{what}");
    assert_eq!(eth.destination(), LB_MAC, "{what}");
    let (src, dst, pseudo_proto): (Vec<u8>, Vec<u8>, bool) = match &parsed.net {
        Some(NetSlice::Ipv4(v4)) => {
            assert_eq!(eth.ether_type(), etherparse::EtherType::IPV4, "{what}");
            let h = v4.header();
            let mut bytes = h.slice().to_vec();
            bytes[10] = 0;
            bytes[11] = 0;
            assert_eq!(
                checksum(&[&bytes]),
                h.header_checksum(),
                "{what}: inner IPv4 checksum"
            );
            (h.source().to_vec(), h.destination().to_vec(), false)
        }
        Some(NetSlice::Ipv6(v6)) => {
            assert_eq!(eth.ether_type(), etherparse::EtherType::IPV6, "{what}");
            let h = v6.header();
            (h.source().to_vec(), h.destination().to_vec(), true)
        }
        _ => panic!("{what}: no inner IP header"),
    };
    // The transport checksum, over the pseudo-header, must still verify.
    let (proto, segment) = match &parsed.transport {
        Some(TransportSlice::Tcp(t)) => (6u8, t.slice().to_vec()),
        Some(TransportSlice::Udp(u)) => (17u8, u.slice().to_vec()),
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(checksum(&[i.slice()]), 0, "{what}: ICMP checksum");
            return;
        }
        Some(TransportSlice::Icmpv6(i)) => (58u8, i.slice().to_vec()),
        _ => panic!("{what}: no TCP, UDP or ICMP header"),
    };
    let len = segment.len() as u32;
    let pseudo = if pseudo_proto {
        [src, dst, len.to_be_bytes().to_vec(), vec![0, 0, 0, proto]].concat()
    } else {
        [
            src,
            dst,
            vec![0, proto],
            (len as u16).to_be_bytes().to_vec(),
        ]
        .concat()
    };
    assert_eq!(
        checksum(&[&pseudo, &segment]),
        0,
        "{what}: transport checksum"
    );
}

/// Runs `frame` and checks verdict, counter (exactly one, `counter`) and,
/// for refusals, that the bytes did not change.
pub(crate) fn run_case(
    bed: &mut DecapBed,
    what: &str,
    frame: &[u8],
    verdict: u32,
    counter: DecapCounter,
) -> Vec<u8> {
    let before = bed.counters().expect("counters");
    let (raw, out) = bed.run(frame).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let got = bed.hook.as_xdp_action(raw).expect("verdict");
    assert_eq!(got, verdict, "{what} ({:?}): verdict", bed.hook);
    let after = bed.counters().expect("counters");
    for ((c, b), (_, a)) in before.iter().zip(&after) {
        let want = u64::from(*c == counter);
        assert_eq!(a - b, want, "{what} ({:?}): counter {}", bed.hook, c.name());
    }
    out
}

/// A refusal: `verdict` and `counter` (as `run_case`), the frame unchanged.
/// At tc, a frame the kernel refuses to make an skb of must be refused by
/// the test run itself (the program never sees it: no counter moves).
pub(crate) fn assert_refused(
    bed: &mut DecapBed,
    what: &str,
    frame: &[u8],
    verdict: u32,
    counter: DecapCounter,
) {
    if bed.hook == Hook::Tc && skb_refuses(frame) {
        let before = bed.counters().expect("counters");
        assert!(
            bed.run(frame).is_err(),
            "{what} (Tc): the kernel took a frame it refuses to make an skb of"
        );
        assert_eq!(
            bed.counters().expect("counters"),
            before,
            "{what} (Tc): a counter moved for a frame the program never saw"
        );
        return;
    }
    let out = run_case(bed, what, frame, verdict, counter);
    assert_eq!(
        out, frame,
        "{what} ({:?}): the frame must be unchanged",
        bed.hook
    );
}
