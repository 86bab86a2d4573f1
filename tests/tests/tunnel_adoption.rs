//! An adopting restart that brings tunnelled VIPs: the previous lbd's
//! program serves the new lbd's first commit (the pinned `VIPS`,
//! `BACKENDS`, `MAGLEV`) until the swap, but `TUNNEL_CONFIG` is not
//! pinned: each object has its own. The new lbd's tunnel settings must
//! reach the previous program's copy too, or a VIP switched from
//! `dsr-l2` to `gue` (or a 4in6 backend added next to an IPv4-only
//! `[tunnel]`) leaves from 0.0.0.0/0 (or ::/0), GUE to port 0, from the
//! commit to the swap. Under BPF_PROG_TEST_RUN, in the NAT bed's
//! namespace (routes and neighbours for the FIB). Needs root.

use std::net::IpAddr;

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use lb_common::{
    consts::{AF_INET, AF_INET6},
    tunnel, FlowKey, Mode, TunnelConfig,
};
use lb_tests::{
    natbed::{
        client_flow, frame, words_to_addr, FibNetns, NatBed, BACKENDS4, BACKENDS6, IN_DEV, OUT_DEV,
    },
    packet::SYN,
    testbed::{self, flow_key, Hook, VIP4},
    tunnelbed::{self, tunnel_vip},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    dataplane::{LoadOptions, MapSizes},
};

/// The VIP switched from `dsr-l2` to `gue` across the restart.
const SWITCHED: u16 = 81;
/// The VIP with IPv6 backends (4in6) the new config adds.
const ADDED_4IN6: u16 = 83;
/// Not the default (6080): only the new lbd's settings name it.
const GUE_PORT: u16 = 7000;

fn sizes() -> MapSizes {
    MapSizes {
        max_vips: 4,
        conntrack: 4096,
        nat_flows: 1024,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    }
}

/// The previous lbd's config: the VIP in `dsr-l2`, no tunnelled VIP (it
/// never wrote its `TUNNEL_CONFIG`: all zeros).
fn old_vips() -> Vec<VipConfig> {
    let backends = BACKENDS4
        .iter()
        .zip(11u8..)
        .map(|(address, mac)| testbed::backend(address, mac, 1))
        .collect();
    let mut vip = testbed::vip(VIP4, SWITCHED, Protocol::Tcp, backends);
    vip.forwarding = Mode::DsrL2;
    vec![vip]
}

/// The new lbd's config: the VIP in `gue`, and a GUE VIP with IPv6
/// backends.
fn new_vips() -> Vec<VipConfig> {
    vec![
        tunnel_vip(VIP4, SWITCHED, Protocol::Tcp, &BACKENDS4, Mode::Gue),
        tunnel_vip(VIP4, ADDED_4IN6, Protocol::Tcp, &BACKENDS6, Mode::Gue),
    ]
}

/// The outer source, destination and UDP destination port of a GUE frame.
fn outer_of(out: &[u8]) -> (IpAddr, IpAddr, u16) {
    let headers = PacketHeaders::from_ethernet_slice(out).expect("etherparse parses the output");
    let (src, dst) = match &headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
        Some(NetHeaders::Ipv6(ip, _)) => (IpAddr::from(ip.source), IpAddr::from(ip.destination)),
        other => panic!("outer {other:?}"),
    };
    let Some(TransportHeader::Udp(udp)) = &headers.transport else {
        panic!("no UDP header: {:?}", headers.transport);
    };
    (src, dst, udp.destination_port)
}

/// The outer source `config` gives a flow of `key` to a backend of the
/// outer family (IPv4 when `v4`).
fn source_of(config: &TunnelConfig, key: &FlowKey, v4: bool) -> IpAddr {
    if v4 {
        let word = tunnel::outer_source_v4(config, key.src[0], key.sport);
        words_to_addr([word, 0, 0, 0], AF_INET)
    } else {
        words_to_addr(
            tunnel::outer_source_v6(config, &key.src, key.sport),
            AF_INET6,
        )
    }
}

/// A previous lbd served no tunnelled VIP; the new one adopts its pinned
/// maps and commits a config that switches a VIP to `gue` and adds a
/// 4in6 GUE VIP. Until the swap the previous program serves that commit:
/// a new flow run through it after the commit leaves wrapped with the new
/// lbd's settings (the source prefix of the outer family, the GUE port),
/// not from 0.0.0.0/0 (or ::/0) to port 0.
#[test]
fn the_previous_program_wraps_with_the_new_tunnel_settings_until_the_swap() {
    for hook in Hook::ALL {
        let netns = FibNetns::new().expect("namespace");
        let in_if = netns.ifindex(IN_DEV).expect("in0");
        let out_if = netns.ifindex(OUT_DEV).expect("out0");
        netns
            .run(move || {
                let dir = lb_tests::lab::TestPins::new("lbtnat", &format!("tunnel-adopt-{hook:?}"))
                    .expect("pin directory");
                let options = LoadOptions {
                    pins: Some(dir.pins()),
                    ..LoadOptions::default()
                };
                let mut old =
                    NatBed::with_options(hook, &old_vips(), (in_if, out_if), sizes(), &options)
                        .expect("the previous data plane");
                let mut new = NatBed::adopting(hook, (in_if, out_if), sizes(), &options)
                    .expect("this lbd's data plane");
                assert!(new.bed.dataplane.adopted(), "the state maps are adopted");
                let config = TunnelConfig {
                    gue_port: GUE_PORT.to_be(),
                    ..tunnelbed::config(in_if)
                };
                new.bed.balancer.set_tunnel_config(config);
                // The first commit, into the adopted maps; no swap yet.
                new.bed.apply(&new_vips()).expect("the first commit");

                for (port, backends, v4) in [
                    (SWITCHED, &BACKENDS4, true),
                    (ADDED_4IN6, &BACKENDS6, false),
                ] {
                    let flow = client_flow(VIP4, port, 40_000 + port);
                    let key = flow_key(&flow, Protocol::Tcp);
                    let (verdict, out) = old
                        .run_on(old.in_if, &frame(&flow, Protocol::Tcp, SYN, b"x"))
                        .expect("test run of the previous program");
                    assert_eq!(verdict, old.verdicts.redirect, "{hook:?} port {port}");
                    let (src, dst, dport) = outer_of(&out);
                    assert_eq!(
                        (src, dport),
                        (source_of(&config, &key, v4), GUE_PORT),
                        "{hook:?} port {port}: the previous program wraps with the new settings"
                    );
                    assert!(
                        backends
                            .iter()
                            .any(|b| b.parse::<IpAddr>().ok() == Some(dst)),
                        "{hook:?} port {port}: to a backend, not {dst}"
                    );
                }
            })
            .expect("the test body (see its panic above)");
    }
}
