//! The health-check program `tc_hc_encap`: a check follows the data
//! path through the tunnel, so a backend whose decap broke is down.

use std::net::IpAddr;

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use lb_common::{
    consts::{names, AF_INET},
    hash::flow_hash,
    stats::Counter,
    tunnel::{self, HC_MARK_BASE},
};
use lb_tests::{
    natbed::{addr, neighbour_mac, FibNetns, BACKENDS4, BACKENDS6, IN_DEV, OUT_DEV},
    packet::{self, Flow, Tcp, SYN},
    testbed::{flow_key, tc_action, Hook, VIP4, VIP6},
    tunnelbed::TunnelBed,
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find,
    frames::{check_wrapped, icmp_error, outer_source, Wrapped},
    odd_vips, vips, DSR, GUE, GUE_UDP, IPIP,
};

/// The health-check program: a marked packet to a tunnelled VIP is
/// wrapped for the backend the mark names and redirected to its next
/// hop's interface; an unmarked one leaves untouched; a mark naming a
/// backend of another VIP or an unknown backend is dropped, counted. A
/// marked packet to a VIP that is not tunnelled is not this program's
/// (`checks_of_another_lbd_pass_untouched`).
#[test]
fn health_checks_follow_the_tunnel() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut vips = vips();
            vips.extend(odd_vips());
            let mut bed = TunnelBed::new(Hook::Tc, &vips, in_if, out_if).expect("bed");
            // lbd's check from the node (its address on in0) to a VIP,
            // as it leaves on lo: zero MACs.
            for (vip, node, port) in [(VIP4, "198.18.0.1", GUE), (VIP6, "2001:2::1", IPIP)] {
                let config = find(&vips, vip, port, Protocol::Tcp).clone();
                let backend = addr(if vip == VIP4 {
                    BACKENDS4[1]
                } else {
                    BACKENDS6[2]
                });
                let id = bed.backend_id(&config, backend).expect("id");
                let flow = Flow {
                    src: addr(node),
                    dst: addr(vip),
                    sport: 50_000,
                    dport: port,
                };
                let mut check = packet::tcp(&flow, SYN, None, b"");
                check[..12].copy_from_slice(&[0; 12]);
                let (verdict, out, mark) =
                    bed.run_hc_marked(&check, HC_MARK_BASE | id).expect("run");
                assert_eq!(verdict, tc_action::REDIRECT, "{vip}");
                assert_eq!(mark, 0, "a wrapped check is unmarked");
                // Wrapped and unmarked: leaving by an interface that runs
                // the program too, it passes untouched.
                let (verdict, again) = bed.run_hc(&out, 0).expect("run");
                assert_eq!((verdict, &again), (tc_action::PASS, &out));
                let key = flow_key(&flow, Protocol::Tcp);
                let hash = flow_hash(&key);
                check_wrapped(
                    &out,
                    &Wrapped {
                        dmac: neighbour_mac(&backend.to_string()).expect("neighbour"),
                        src: outer_source(&bed.config, &key, key.family == AF_INET),
                        dst: backend,
                        gue: (port == GUE).then(|| {
                            (
                                u16::from_be(tunnel::gue_source_port(hash)),
                                tunnel::GUE_PORT_DEFAULT,
                            )
                        }),
                        zero_csum: false,
                        inner: &check[14..],
                        flow_label: hash & 0xf_ffff,
                    },
                );
                // Unmarked, or another mark: untouched.
                for mark in [0, 7, 0x4c41_0001] {
                    let (verdict, out) = bed.run_hc(&check, mark).expect("run");
                    assert_eq!(
                        (verdict, out.as_slice()),
                        (tc_action::PASS, check.as_slice())
                    );
                }
                // A backend of another VIP, an id no backend has.
                let other = find(&vips, vip, GUE_UDP, Protocol::Udp);
                let other_id = bed.backend_id(other, backend).expect("id");
                assert_ne!(other_id, id);
                for wrong in [other_id, 4000] {
                    let (verdict, _) = bed.run_hc(&check, HC_MARK_BASE | wrong).expect("run");
                    assert_eq!(verdict, tc_action::SHOT);
                }
            }
            assert_eq!(counter(&bed, Counter::HcEncap), 2);
            assert_eq!(counter(&bed, Counter::HcDrop), 4);
            assert_eq!(
                counter(&bed, Counter::TunnelEncap),
                0,
                "checks are not client traffic"
            );
        })
        .expect("the test body (see its panic above)");
}

/// Another lbd's check: every lbd of a namespace runs its own
/// `tc_hc_encap` on the egress of `lo` (one after the other, tcx links or
/// cls_bpf filters), and the mark does not say which lbd sent a packet.
/// A marked packet that is no TCP/UDP packet to one of this program's
/// tunnelled VIPs (another address, a port or protocol no VIP of ours
/// serves, a VIP of ours that is not tunnelled, which no check of ours
/// is marked for, ICMP, not IP) leaving on `lo` is left to the next
/// program (TC_ACT_UNSPEC): every byte and the mark unchanged, not
/// counted, whatever the mark names (a backend of ours or no backend).
/// Dropping it would fail the other lbd's checks, and take down all its
/// backends. Off `lo` it is dropped
/// (`marked_packets_not_ours_are_dropped_off_lo`).
#[test]
fn checks_of_another_lbd_pass_untouched() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut vips = vips();
            vips.extend(odd_vips());
            let mut bed = TunnelBed::new(Hook::Tc, &vips, in_if, out_if).expect("bed");
            let ours = find(&vips, VIP4, GUE, Protocol::Tcp).clone();
            let id = bed.backend_id(&ours, addr(BACKENDS4[1])).expect("id");
            let dsr = find(&vips, VIP4, DSR, Protocol::Tcp).clone();
            let dsr_id = bed.backend_id(&dsr, addr("198.18.0.11")).expect("id");
            for (what, frame) in not_ours() {
                for mark in [
                    HC_MARK_BASE | id,
                    HC_MARK_BASE | dsr_id,
                    HC_MARK_BASE | 4000,
                ] {
                    // lo as BPF_PROG_TEST_RUN's default device, and named.
                    let (verdict, out, mark_after) = bed.run_hc_marked(&frame, mark).expect("run");
                    assert_eq!(verdict, tc_action::PASS, "{what}, mark {mark:#x}");
                    assert_eq!(out, frame, "{what}, mark {mark:#x}: untouched");
                    assert_eq!(mark_after, mark, "{what}: the next program needs the mark");
                    let ran = run_hc_on(&mut bed, &frame, mark, LOOPBACK).expect("run");
                    assert_eq!(ran.ifindex, LOOPBACK, "{what}: run on lo");
                    assert_eq!(ran.verdict, tc_action::PASS, "{what}, mark {mark:#x}");
                    assert_eq!(ran.frame, frame, "{what}, mark {mark:#x}: untouched");
                    assert_eq!(ran.mark, mark, "{what}: the next program needs the mark");
                }
            }
            let flow = |src: &str, dst: &str, dport: u16| Flow {
                src: addr(src),
                dst: addr(dst),
                sport: 50_002,
                dport,
            };
            assert_eq!(counter(&bed, Counter::HcDrop), 0, "not counted");
            assert_eq!(counter(&bed, Counter::HcEncap), 0);
            // A tunnelled VIP of ours with a mark naming a backend that is
            // not one of its own (an unknown id, a backend of the DSR VIP),
            // or a segment no stack sends (SYN+FIN) with a right one, is
            // still dropped: that packet is ours and is not wrapped.
            let zero_macs = |mut frame: Vec<u8>| {
                frame[..12].copy_from_slice(&[0; 12]);
                frame
            };
            let to_ours = flow("198.18.0.1", VIP4, GUE);
            let check = zero_macs(packet::tcp(&to_ours, SYN, None, b""));
            let syn_fin = Tcp { fin: true, ..SYN };
            for (what, frame, backend) in [
                ("unknown backend", &check, 4000),
                ("the DSR VIP's backend", &check, dsr_id),
                (
                    "SYN+FIN",
                    &zero_macs(packet::tcp(&to_ours, syn_fin, None, b"")),
                    id,
                ),
            ] {
                let (verdict, _) = bed.run_hc(frame, HC_MARK_BASE | backend).expect("run");
                assert_eq!(verdict, tc_action::SHOT, "{what}");
            }
            assert_eq!(counter(&bed, Counter::HcDrop), 3);
            let (verdict, _) = bed.run_hc(&check, HC_MARK_BASE | id).expect("run");
            assert_eq!(verdict, tc_action::REDIRECT, "ours: wrapped");
        })
        .expect("the test body (see its panic above)");
}

/// `checks_of_another_lbd_pass_untouched`'s packets leaving by another
/// interface than `lo` (the balancer's own, which runs `tc_hc_encap` too
/// for the checks of a VRRP backup, whose VIPs are not local): dropped
/// and counted (`HcDrop`), whatever the mark names. Another lbd's checks
/// meet this program on `lo` only; a marked packet here is a check of
/// this lbd's that no VIP of ours takes any more (a reload removed the
/// VIP or changed its port or mode while the connection was open), and
/// unwrapped it could reach another balancer, which would answer it in
/// its own mode: a check passing without the tunnel. A check of ours is
/// still wrapped there.
#[test]
fn marked_packets_not_ours_are_dropped_off_lo() {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut vips = vips();
            vips.extend(odd_vips());
            let mut bed = TunnelBed::new(Hook::Tc, &vips, in_if, out_if).expect("bed");
            let ours = find(&vips, VIP4, GUE, Protocol::Tcp).clone();
            let id = bed.backend_id(&ours, addr(BACKENDS4[1])).expect("id");
            let dsr = find(&vips, VIP4, DSR, Protocol::Tcp).clone();
            let dsr_id = bed.backend_id(&dsr, addr("198.18.0.11")).expect("id");
            let mut dropped = 0;
            for (what, frame) in not_ours() {
                for ifindex in [in_if, out_if] {
                    for mark in [
                        HC_MARK_BASE | id,
                        HC_MARK_BASE | dsr_id,
                        HC_MARK_BASE | 4000,
                    ] {
                        let ran = run_hc_on(&mut bed, &frame, mark, ifindex).expect("run");
                        assert_eq!(ran.ifindex, ifindex, "{what}: run on {ifindex}");
                        assert_eq!(
                            ran.verdict,
                            tc_action::SHOT,
                            "{what}, mark {mark:#x}, on {ifindex}"
                        );
                        dropped += 1;
                    }
                }
            }
            assert_eq!(counter(&bed, Counter::HcDrop), dropped, "each counted");
            assert_eq!(counter(&bed, Counter::HcEncap), 0);
            // A check of ours leaving by the balancer's interface (the
            // VRRP backup's) is wrapped as on lo.
            let check = Flow {
                src: addr("198.18.0.1"),
                dst: addr(VIP4),
                sport: 50_002,
                dport: GUE,
            };
            let mut check = packet::tcp(&check, SYN, None, b"");
            check[..12].copy_from_slice(&[0; 12]);
            let (verdict, on_lo, _) = bed.run_hc_marked(&check, HC_MARK_BASE | id).expect("run");
            assert_eq!(verdict, tc_action::REDIRECT, "ours, on lo");
            let ran = run_hc_on(&mut bed, &check, HC_MARK_BASE | id, in_if).expect("run");
            assert_eq!(ran.ifindex, in_if);
            assert_eq!(ran.verdict, tc_action::REDIRECT, "ours, on in0");
            assert_eq!(ran.mark, 0, "a wrapped check is unmarked");
            assert_eq!(ran.frame, on_lo, "wrapped as on lo");
            let outer = PacketHeaders::from_ethernet_slice(&ran.frame).expect("a frame");
            match (outer.net, outer.transport) {
                (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(udp))) => {
                    assert_eq!(IpAddr::from(ip.destination), addr(BACKENDS4[1]));
                    assert_eq!(udp.destination_port, tunnel::GUE_PORT_DEFAULT);
                }
                other => panic!("not GUE over IPv4: {other:?}"),
            }
            assert_eq!(counter(&bed, Counter::HcEncap), 2);
            assert_eq!(counter(&bed, Counter::HcDrop), dropped);
        })
        .expect("the test body (see its panic above)");
}

/// The loopback device's index in every namespace (the kernel's
/// `LOOPBACK_IFINDEX`).
const LOOPBACK: u32 = 1;

/// A run of `tc_hc_encap` (`run_hc_on`).
struct Ran {
    verdict: u32,
    frame: Vec<u8>,
    /// The skb's mark afterwards.
    mark: u32,
    /// The index of the device the skb was on, as the kernel reports it.
    ifindex: u32,
}

/// Runs `tc_hc_encap` on `frame` with skb mark `mark` on the device of
/// index `ifindex` of the caller's namespace (BPF_PROG_TEST_RUN puts the
/// skb on the namespace's loopback device unless `__sk_buff::ifindex` is
/// above 1; `TunnelBed::run_hc_marked` leaves it 0).
fn run_hc_on(bed: &mut TunnelBed, frame: &[u8], mark: u32, ifindex: u32) -> anyhow::Result<Ran> {
    let mut out = vec![0u8; frame.len() + 256];
    // struct __sk_buff up to `ifindex` (offset 40): the mark at 8.
    let mut skb = vec![0u8; 44];
    skb[8..12].copy_from_slice(&mark.to_ne_bytes());
    skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let program: &mut SchedClassifier = bed
        .nat
        .bed
        .dataplane
        .ebpf_mut()
        .program_mut(names::PROG_TC_HC_ENCAP)
        .ok_or_else(|| anyhow::anyhow!("no {} program", names::PROG_TC_HC_ENCAP))?
        .try_into()?;
    // The whole struct comes back (the kernel refuses a shorter buffer).
    let mut skb_out = vec![0u8; 256];
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&skb),
        ctx_out: Some(&mut skb_out),
        ..TestRunOptions::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok(Ran {
        verdict: result.return_value,
        frame: out,
        mark: u32::from_ne_bytes(skb_out[8..12].try_into()?),
        ifindex: u32::from_ne_bytes(skb_out[40..44].try_into()?),
    })
}

/// Marked packets that are not checks of this program's (no TCP/UDP
/// packet to one of its tunnelled VIPs), as they leave the node (zero
/// MACs), each checked by etherparse to be what it says.
fn not_ours() -> Vec<(&'static str, Vec<u8>)> {
    let flow = |src: &str, dst: &str, dport: u16| Flow {
        src: addr(src),
        dst: addr(dst),
        sport: 50_002,
        dport,
    };
    // Another lbd's VIPs: addresses none of ours has.
    let other4 = flow("198.18.0.1", "198.18.0.200", GUE);
    let other6 = flow("2001:2::1", "2001:2::200", IPIP);
    // A reply of a flow of our tunnelled VIP, which a router answers
    // with an ICMP error to the VIP (quoting it).
    let reply = Flow {
        src: addr(VIP4),
        dst: addr("198.18.0.1"),
        sport: GUE,
        dport: 50_002,
    };
    let frames: Vec<(&str, Vec<u8>, Option<IpAddr>)> = vec![
        (
            "TCP, another address",
            packet::tcp(&other4, SYN, None, b""),
            Some(other4.dst),
        ),
        (
            "UDP, another address",
            packet::udp(&other4, None, b"check"),
            Some(other4.dst),
        ),
        (
            "TCP, another IPv6 address",
            packet::tcp(&other6, SYN, None, b""),
            Some(other6.dst),
        ),
        (
            "TCP, our VIP's address, a port no VIP of ours serves",
            packet::tcp(&flow("198.18.0.1", VIP4, 8080), SYN, None, b""),
            Some(addr(VIP4)),
        ),
        (
            "UDP to the port of our TCP VIP",
            packet::udp(&flow("198.18.0.1", VIP4, GUE), None, b"check"),
            Some(addr(VIP4)),
        ),
        (
            "TCP, our VIP that is not tunnelled",
            packet::tcp(&flow("198.18.0.1", VIP4, DSR), SYN, None, b""),
            Some(addr(VIP4)),
        ),
        (
            "ICMP to our VIP's address",
            packet::icmp_echo([198, 18, 0, 1], [198, 18, 0, 100]),
            Some(addr(VIP4)),
        ),
        (
            "an ICMP error about a flow of our tunnelled VIP",
            icmp_error("198.18.0.200", &packet::tcp(&reply, SYN, None, b"")),
            Some(addr(VIP4)),
        ),
        ("not IP", packet::arp_request(), None),
    ];
    frames
        .into_iter()
        .map(|(what, mut frame, dst)| {
            frame[..12].copy_from_slice(&[0; 12]);
            // The fixture is what it says (etherparse's reading).
            let headers = PacketHeaders::from_ethernet_slice(&frame).expect("a frame");
            let read = match headers.net {
                Some(NetHeaders::Ipv4(h, _)) => Some(IpAddr::from(h.destination)),
                Some(NetHeaders::Ipv6(h, _)) => Some(IpAddr::from(h.destination)),
                _ => None,
            };
            assert_eq!(read, dst, "{what}");
            (what, frame)
        })
        .collect()
}
