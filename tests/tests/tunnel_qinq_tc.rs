//! QinQ client frames to tunnel VIPs (`ipip`, `gue`) at tc on a live
//! interface, where BPF_PROG_TEST_RUN cannot go: receiving a frame, the
//! kernel takes its outer tag out of the frame into the skb's accelerated
//! slot (`skb_vlan_untag`) before tc runs, so `tc_lb` sees the inner tag
//! still in the frame and the outer one beside it. The wrap must take
//! both off and grow by the whole outer header (popping only the
//! accelerated tag moved the inner one into its slot: the outer header
//! then overwrote the first 4 bytes of the inner IP header, and the tag
//! went back on at egress).
//!
//! The bed: the tunnel test bed (`tunnelbed`, the real object and control
//! plane) inside the NAT bed's namespace (`natbed::FibNetns`, named and
//! swept like every lab namespace), its tc program attached to `in0`'s
//! ingress (tcx, as lbd attaches it). A packet socket on `in0`'s peer
//! sends the tagged frames; one on `out0`'s peer captures what the
//! program redirected out of `out0`, with the tag the skb still carries
//! beside the frame (`PACKET_AUXDATA`), and etherparse checks it (the
//! tunnel_dataplane tests' checker). Benchmarking addresses only. Needs
//! root.

#[path = "tunnel_dataplane/frames.rs"]
#[allow(dead_code)]
mod frames;

use frames::{check_wrapped, wrapped_for};
use lb_common::{stats::Counter, Mode};
use lb_tests::{
    craft::{ethertype, frame_bytes, tcp_flag, Ip, Upper},
    natbed::{client_flow, FibNetns, BACKENDS4, BACKENDS6, IN_DEV, OUT_DEV},
    packet_socket::{PacketSocket, Received},
    testbed::{Hook, VIP4, VIP6},
    tunnelbed::{tunnel_vip, TunnelBed},
};
use lb_userspace::config::{Protocol, VipConfig};

/// `in0`'s peer (the clients' side of the wire).
const CLIENT_DEV: &str = "in0p";
/// `out0`'s peer (the backends' side).
const BACKEND_DEV: &str = "out0p";

/// The tag stacks tried (TPIDs, outermost first): the outer tag is the
/// one the kernel takes off before tc.
const TAGS: [&[u16]; 3] = [
    &[ethertype::QINQ, ethertype::VLAN],
    &[ethertype::VLAN, ethertype::VLAN],
    &[ethertype::VLAN],
];

/// Every tunnel mode and outer family: (VIP, port, mode, backends,
/// overhead).
const MODES: [(&str, u16, Mode, &[&str], usize); 6] = [
    (VIP4, 80, Mode::Ipip, &BACKENDS4, 20),
    (VIP4, 81, Mode::Gue, &BACKENDS4, 28),
    (VIP6, 80, Mode::Ipip, &BACKENDS6, 40),
    (VIP6, 81, Mode::Gue, &BACKENDS6, 48),
    (VIP4, 82, Mode::Ipip, &BACKENDS6, 40),
    (VIP4, 83, Mode::Gue, &BACKENDS6, 48),
];

fn vips() -> Vec<VipConfig> {
    MODES
        .iter()
        .map(|&(vip, port, mode, backends, _)| tunnel_vip(vip, port, Protocol::Tcp, backends, mode))
        .collect()
}

/// Each tag stack and tunnel mode: the frame that leaves `out0` is the
/// client's IP packet byte for byte behind the whole outer header (its
/// length the overhead more than the inner packet's), with no tag in the
/// frame nor beside it; counted `Forwarded`, nothing `DropMalformed`.
#[test]
fn tagged_client_frames_are_wrapped_whole_at_tc_on_a_live_interface() {
    let netns = FibNetns::new().expect("namespace");
    let ifindex = |dev| netns.ifindex(dev).expect("ifindex");
    let (in_if, out_if) = (ifindex(IN_DEV), ifindex(OUT_DEV));
    let (client_if, backend_if) = (ifindex(CLIENT_DEV), ifindex(BACKEND_DEV));
    netns
        .run(move || {
            let vips = vips();
            let mut bed = TunnelBed::new(Hook::Tc, &vips, in_if, out_if).expect("test bed");
            bed.nat.bed.attach_tc_ingress(IN_DEV).expect("tc_lb on in0");
            let client = PacketSocket::bind(client_if).expect("client socket");
            let backend = PacketSocket::bind(backend_if).expect("backend socket");
            let mut sport = 43_000;
            let mut cases = 0;
            for tags in TAGS {
                let l3_off = 14 + 4 * tags.len();
                for (config, &(vip, port, _, _, overhead)) in vips.iter().zip(&MODES) {
                    sport += 1;
                    let flow = client_flow(vip, port, sport);
                    let sent = frame_bytes(
                        tags,
                        &Ip::new(flow.src, flow.dst),
                        &Upper::Tcp {
                            sport,
                            dport: port,
                            flags: tcp_flag::SYN,
                            payload: vec![0xa5; 64],
                        },
                    );
                    let inner = &sent[l3_off..];
                    let what = format!("{vip}:{port} behind {tags:x?}");
                    client.send(&sent).expect("send");
                    let Received { frame: out, tag } = backend
                        .to_backend()
                        .expect("receive")
                        .unwrap_or_else(|| panic!("{what}: nothing left out0"));
                    assert_eq!(tag, None, "{what}: no tag beside the frame");
                    assert_eq!(
                        out.len(),
                        14 + overhead + inner.len(),
                        "{what}: the whole outer header, no tag in the frame"
                    );
                    check_wrapped(&out, &wrapped_for(&bed, config, &flow, inner, false));
                    cases += 1;
                }
            }
            let counter = |c| bed.nat.bed.counter(c).expect("counter");
            assert_eq!(counter(Counter::Forwarded), cases);
            assert_eq!(counter(Counter::TunnelEncap), cases);
            assert_eq!(counter(Counter::DropMalformed), 0);
        })
        .expect("the test body (see its panic above)");
}
