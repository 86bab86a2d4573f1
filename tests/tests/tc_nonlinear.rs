//! `tc_lb` on frames the kernel holds non-linear, where BPF_PROG_TEST_RUN
//! cannot go (its skbs are linear: on this 6.18 kernel it refuses a
//! `__sk_buff` with `data_end` set and a frame longer than a page). NICs
//! such as mlx5 or ice leave at most 256 bytes of a frame in the skb's
//! linear part; `tc_lb` made only its first 256 bytes readable, so an IPv6
//! frame whose extension-header chain (or the TCP header after it)
//! reached past them read as cut short and was dropped as malformed,
//! whoever it was for, where XDP balances it.
//!
//! The bed: the DSR test bed (`testbed`, the real object and control
//! plane) inside the NAT bed's namespace (`natbed::FibNetns`, named and
//! swept like every lab namespace), its tc program attached to `in0`'s
//! ingress (tcx, as lbd attaches it), MTU 9000 on `in0` and its peer. A
//! packet socket on the peer sends each frame with a virtio-net header
//! (`PACKET_VNET_HDR`) whose `hdr_len` is 256: for a frame longer than a
//! page the kernel then builds the skb with those 256 bytes linear and
//! the rest in page fragments, as such a NIC does, and veth hands it to
//! `in0`'s tc ingress as it is. Another packet socket on the peer
//! captures what the program bounced back out of `in0`. Benchmarking
//! addresses only. Needs root.

use std::time::{Duration, Instant};

use lb_common::stats::Counter;
use lb_tests::{
    craft::{
        ethertype::{QINQ, VLAN},
        frame_bytes, tcp_flag, Ext, Ip, Kind, Upper,
    },
    natbed::{client_flow, FibNetns, IN_DEV},
    packet_socket::PacketSocket,
    support::ip,
    testbed::{vip6_tcp, Hook, TestBed, VIP6},
};

/// `in0`'s peer (the clients' side of the wire).
const CLIENT_DEV: &str = "in0p";
/// What a NIC such as mlx5 or ice leaves linear at most.
const NIC_LINEAR: u16 = 256;
/// TCP payload: the frames are longer than a page, so the packet socket
/// builds them non-linear.
const PAYLOAD: usize = 4800;
/// TCP payload of the control frame: shorter than a page, the packet
/// socket builds it linear whatever `hdr_len` says.
const SHORT_PAYLOAD: usize = 64;
/// An address of `in0` (the node's own), not a VIP.
const NODE6: &str = "2001:2::1";

/// Destination options `words` 8-byte units long (up to 256), holding
/// PadN options of at most 257 bytes each (`Ext::dest_opts` holds one,
/// so at most 32 units).
fn dest_opts(words: usize) -> Ext {
    let mut left = words * 8 - 2;
    let mut body = Vec::with_capacity(left);
    while left > 0 {
        // A PadN option is at least 2 bytes: never leave 1.
        let option = if left > 257 {
            (left - 2).min(257)
        } else {
            left
        };
        body.extend([1, u8::try_from(option - 2).expect("PadN length")]);
        body.resize(body.len() + option - 2, 0);
        left -= option;
    }
    Ext {
        kind: Kind::DestOpts,
        body,
    }
}

/// A TCP SYN from the client to `dst` port 80 behind VLAN `tags`,
/// carrying `ext` and `payload` bytes.
fn syn_with(dst: &str, sport: u16, tags: &[u16], ext: Vec<Ext>, payload: usize) -> Vec<u8> {
    let flow = client_flow(VIP6, 80, sport);
    let mut header = Ip::new(flow.src, dst.parse().expect("address"));
    header.ext = ext;
    frame_bytes(
        tags,
        &header,
        &Upper::Tcp {
            sport,
            dport: 80,
            flags: tcp_flag::SYN,
            payload: vec![0x5a; payload],
        },
    )
}

/// Frames to the VIP whose extension-header chain, or the TCP header
/// after it, lies past the 256 linear bytes are balanced at tc as at XDP:
/// bounced to a backend's MAC, the IP packet unchanged, counted
/// `Forwarded`, none `DropMalformed`; also behind VLAN tags (the kernel
/// takes the outer one out of the frame before tc, so tc sees none, one
/// or two). One to the node's own address goes
/// up the stack (`PassNotVip`), not dropped. The control: the same chain
/// in a frame shorter than a page, which the kernel builds linear, is
/// balanced before the fix too.
#[test]
fn long_ipv6_extension_header_chains_in_non_linear_frames_are_balanced_at_tc() {
    let netns = FibNetns::new().expect("namespace");
    for dev in [IN_DEV, CLIENT_DEV] {
        ip(&["-n", &netns.name, "link", "set", dev, "mtu", "9000"]);
    }
    let client_if = netns.ifindex(CLIENT_DEV).expect("ifindex");
    netns
        .run(move || {
            let mut bed = TestBed::with_hook(&[vip6_tcp()], Hook::Tc).expect("test bed");
            bed.attach_tc_ingress(IN_DEV).expect("tc_lb on in0");
            let sender = PacketSocket::sender_with_vnet_header(client_if).expect("sending socket");
            let capture = PacketSocket::bind(client_if).expect("capturing socket");
            let counter = |c| bed.counter(c).expect("counter");

            let long = || vec![dest_opts(38)];
            let cases: [(&str, &[u16], Vec<Ext>, usize); 7] = [
                (
                    "linear (control): a 304-byte destination-options header",
                    &[],
                    long(),
                    SHORT_PAYLOAD,
                ),
                (
                    "a 304-byte destination-options header: the TCP header past 256 bytes",
                    &[],
                    long(),
                    PAYLOAD,
                ),
                (
                    "hop-by-hop, then destination options starting past 256 bytes",
                    &[],
                    vec![Ext::hop_by_hop(), dest_opts(25), dest_opts(2)],
                    PAYLOAD,
                ),
                (
                    "a chain ending at byte 254: the TCP header across the linear end",
                    &[],
                    vec![dest_opts(25)],
                    PAYLOAD,
                ),
                ("one tag, 304 bytes of options", &[VLAN], long(), PAYLOAD),
                ("QinQ, 304 bytes of options", &[QINQ, VLAN], long(), PAYLOAD),
                (
                    "three tags, 304 bytes of options",
                    &[QINQ, VLAN, VLAN],
                    long(),
                    PAYLOAD,
                ),
            ];
            for (sport, (what, tags, ext, payload)) in (40_000..).zip(cases) {
                let frame = syn_with(VIP6, sport, tags, ext, payload);
                assert_eq!(
                    frame.len() > 4096,
                    payload == PAYLOAD,
                    "{what}: longer than a page, built non-linear, unless the control"
                );
                let packet = &frame[14 + 4 * tags.len()..];
                let (forwarded, malformed) =
                    (counter(Counter::Forwarded), counter(Counter::DropMalformed));
                sender.send_linear(&frame, NIC_LINEAR).expect("send");
                let out = capture
                    .to_backend()
                    .expect("receive")
                    .map(|got| got.frame)
                    .unwrap_or_else(|| {
                        panic!(
                            "{what}: nothing bounced to a backend (DropMalformed {} -> {})",
                            malformed,
                            counter(Counter::DropMalformed)
                        )
                    });
                // The outer tag, if any, is reported beside the frame.
                assert!(
                    out.len() <= frame.len() && out.ends_with(packet),
                    "{what}: the IP packet unchanged"
                );
                assert_eq!(counter(Counter::Forwarded), forwarded + 1, "{what}");
                assert_eq!(counter(Counter::DropMalformed), malformed, "{what}");
            }

            // The node's own traffic: up the stack, not dropped.
            let (passed, malformed) = (
                counter(Counter::PassNotVip),
                counter(Counter::DropMalformed),
            );
            let frame = syn_with(NODE6, 40_100, &[], vec![dest_opts(38)], PAYLOAD);
            sender.send_linear(&frame, NIC_LINEAR).expect("send");
            let deadline = Instant::now() + Duration::from_secs(2);
            while counter(Counter::PassNotVip) == passed && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(
                counter(Counter::DropMalformed),
                malformed,
                "to the node's own address: not dropped as malformed"
            );
            assert!(
                counter(Counter::PassNotVip) > passed,
                "to the node's own address: up the stack"
            );
        })
        .expect("the test body (see its panic above)");
}
