//! The health-check program `tc_hc_encap`: a check follows the data
//! path through the tunnel, so a backend whose decap broke is down.

use lb_common::{
    consts::AF_INET,
    hash::flow_hash,
    stats::Counter,
    tunnel::{self, HC_MARK_BASE},
};
use lb_tests::{
    natbed::{addr, neighbour_mac, FibNetns, BACKENDS4, BACKENDS6, IN_DEV, OUT_DEV},
    packet::{self, Flow, SYN},
    testbed::{flow_key, tc_action, Hook, VIP4, VIP6},
    tunnelbed::TunnelBed,
};
use lb_userspace::config::Protocol;

use crate::{
    counter, find,
    frames::{check_wrapped, outer_source, Wrapped},
    odd_vips, vips, DSR, GUE, GUE_UDP, IPIP,
};

/// The health-check program: a marked packet to a tunnelled VIP is
/// wrapped for the backend the mark names and redirected to its next
/// hop's interface; an unmarked one leaves untouched; a mark naming a
/// backend of another VIP, an unknown backend, or a packet to a VIP that
/// is not tunnelled is dropped, counted.
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
            // A check to a VIP that is not tunnelled.
            let dsr = find(&vips, VIP4, DSR, Protocol::Tcp).clone();
            let id = bed.backend_id(&dsr, addr("198.18.0.11")).expect("id");
            let flow = Flow {
                src: addr("198.18.0.1"),
                dst: addr(VIP4),
                sport: 50_001,
                dport: DSR,
            };
            let (verdict, _) = bed
                .run_hc(&packet::tcp(&flow, SYN, None, b""), HC_MARK_BASE | id)
                .expect("run");
            assert_eq!(verdict, tc_action::SHOT);
            assert_eq!(counter(&bed, Counter::HcEncap), 2);
            assert_eq!(counter(&bed, Counter::HcDrop), 5);
            assert_eq!(
                counter(&bed, Counter::TunnelEncap),
                0,
                "checks are not client traffic"
            );
        })
        .expect("the test body (see its panic above)");
}
