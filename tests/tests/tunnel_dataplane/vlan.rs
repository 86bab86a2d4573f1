//! VLAN-tagged client frames on the tunnel path (one 802.1Q tag, and
//! QinQ: 802.1ad or 802.1Q, then 802.1Q): the tags are not carried into
//! the tunnel. At XDP their bytes make part of the room the outer header
//! takes; at tc (where the kernel's room helper needs an IP skb) they are
//! all popped before the grow, with the same frame as the result. A test
//! run cannot put a tag in the skb's accelerated slot, where a live
//! interface has the outer one (`tests/tunnel_qinq_tc.rs` covers that).
//! A tagged frame too big once wrapped is answered at both hooks, its
//! tags kept.

use lb_common::stats::Counter;
use lb_tests::{
    craft::{ethertype, frame_bytes, tcp_flag, Ip, Upper},
    natbed::{addr, client_flow},
    testbed::{Hook, VIP4, VIP6},
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find,
    frames::{check_too_big, check_wrapped, wrapped_for},
    in_netns, vips, GUE, GUE_4IN6, IPIP, IPIP_4IN6,
};

/// The tag stacks tried (TPIDs, outermost first).
const TAGS: [&[u16]; 3] = [
    &[ethertype::VLAN],
    &[ethertype::QINQ, ethertype::VLAN],
    &[ethertype::VLAN, ethertype::VLAN],
];

/// Every tunnel mode and outer family: (VIP, port, overhead).
pub(crate) const MODES: [(&str, u16, usize); 6] = [
    (VIP4, IPIP, 20),
    (VIP4, GUE, 28),
    (VIP6, IPIP, 40),
    (VIP6, GUE, 48),
    (VIP4, IPIP_4IN6, 40),
    (VIP4, GUE_4IN6, 48),
];

/// A TCP segment of the client's flow to `vip`:`port` from `sport` with
/// `flags`, `payload_len` bytes of payload, behind `tags`.
pub(crate) fn client_segment(
    tags: &[u16],
    vip: &str,
    port: u16,
    sport: u16,
    flags: u8,
    payload_len: usize,
) -> Vec<u8> {
    let flow = client_flow(vip, port, sport);
    frame_bytes(
        tags,
        &Ip::new(flow.src, flow.dst),
        &Upper::Tcp {
            sport,
            dport: port,
            flags,
            payload: vec![0xa5; payload_len],
        },
    )
}

/// A tagged client frame: wrapped for its backend at both hooks, the
/// outer header in place of Ethernet and tags (the frame grows by the
/// overhead less the tags), the inner packet byte for byte; at tc the
/// tags are popped before the grow, at XDP the outer header covers them.
fn tagged_client_frames_are_wrapped_without_their_tags(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        let mut sport = 41_000;
        let mut cases = 0;
        for tags in TAGS {
            let l3_off = 14 + 4 * tags.len();
            for (vip, port, overhead) in MODES {
                sport += 1;
                let sent = client_segment(tags, vip, port, sport, tcp_flag::SYN, 64);
                assert_eq!(&sent[12..14], &tags[0].to_be_bytes());
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                let what = format!("{vip}:{port} behind {tags:x?}");
                assert_eq!(verdict, bed.verdicts().redirect, "{what}");
                assert_eq!(
                    out.len(),
                    14 + overhead + (sent.len() - l3_off),
                    "{what}: the tags make part of the room"
                );
                let config = find(vips, vip, port, Protocol::Tcp);
                let flow = client_flow(vip, port, sport);
                check_wrapped(
                    &out,
                    &wrapped_for(bed, config, &flow, &sent[l3_off..], false),
                );
                cases += 1;
            }
        }
        assert_eq!(counter(bed, Counter::TunnelEncap), cases);
        assert_eq!(counter(bed, Counter::Forwarded), cases);
        assert_eq!(counter(bed, Counter::DropMalformed), 0);
        assert_eq!(counter(bed, Counter::DropInternal), 0);
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), 0);
    });
}

/// A tagged frame one byte too big for the route's MTU (1500) once
/// wrapped: answered at both hooks (the answer is decided before any
/// grow), back to the client behind the same tags, reporting the MTU
/// left for the inner packet.
fn too_big_tagged_frames_are_answered_behind_their_tags(hook: Hook) {
    in_netns(hook, vips(), |bed, _| {
        let mut sport = 42_000;
        let mut cases = 0;
        for tags in TAGS {
            let l3_off = 14 + 4 * tags.len();
            for (vip, port, overhead) in MODES {
                sport += 1;
                let header = if addr(vip).is_ipv4() { 40 } else { 60 };
                let inner = 1500 - overhead + 1;
                let sent = client_segment(tags, vip, port, sport, tcp_flag::ACK, inner - header);
                assert_eq!(sent.len(), l3_off + inner);
                let (verdict, out) = bed.run_on(bed.nat.in_if, &sent).expect("test run");
                assert_eq!(
                    verdict,
                    bed.verdicts().bounce,
                    "{vip}:{port} behind {tags:x?}"
                );
                let mtu = u16::try_from(1500 - overhead).expect("MTU");
                check_too_big(&out, &sent, l3_off, mtu);
                cases += 1;
            }
        }
        assert_eq!(counter(bed, Counter::SentIcmpTooBig), cases);
        assert_eq!(counter(bed, Counter::TunnelEncap), 0);
        assert_eq!(counter(bed, Counter::DropMalformed), 0);
        assert_eq!(counter(bed, Counter::DropInternal), 0);
    });
}

lb_tests::on_both_hooks!(
    tagged_client_frames_are_wrapped_without_their_tags,
    too_big_tagged_frames_are_answered_behind_their_tags,
);
