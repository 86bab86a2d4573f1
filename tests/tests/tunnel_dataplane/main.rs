//! The tunnel modes (`ipip`, `gue`) of the compiled packet path under
//! BPF_PROG_TEST_RUN, on both entry points (`on_both_hooks!`), and the
//! health-check program `tc_hc_encap`: the real object, programmed by the
//! real control plane, run from inside the NAT bed's namespace (routes
//! and neighbours for the FIB; `tunnelbed`). Every wrapped frame is
//! checked by etherparse: MACs, the outer header (addresses, protocol,
//! TTL, DF, TOS, flow label, IPv4 header checksum), GUE's UDP header and
//! its checksum (computed here over the whole datagram, independently of
//! the data plane's payload-free computation), and the inner packet
//! byte for byte. Needs root.
mod frames;
mod health;
mod icmp;
mod inner_headers;
mod mtu;
mod next_hop;
mod repeated;
mod vlan;
mod wrap;

use lb_common::{stats::Counter, Mode};
use lb_tests::{
    natbed::{
        addr, FibNetns, BACKENDS4, BACKENDS6, BEHIND_GATEWAY4, BEHIND_GATEWAY6, IN_DEV, OUT_DEV,
        SAME_IF4, SAME_IF6, UNROUTED4, UNROUTED6,
    },
    testbed::{Hook, VIP4, VIP6},
    tunnelbed::{tunnel_vip, TunnelBed},
};
use lb_userspace::config::{Protocol, VipConfig};

/// Ports of the VIPs (one service per mode, family and backend family).
pub(crate) const IPIP: u16 = 80;
pub(crate) const GUE: u16 = 81;
pub(crate) const IPIP_4IN6: u16 = 82;
pub(crate) const GUE_4IN6: u16 = 83;
pub(crate) const GUE_UDP: u16 = 53;
/// Ports of the special-case VIPs (one backend each).
pub(crate) const SAME_IF: u16 = 90;
pub(crate) const NO_NEIGHBOUR: u16 = 91;
pub(crate) const NO_ROUTE: u16 = 92;
pub(crate) const DSR: u16 = 99;
/// Longer than the data plane's per-kind event interval.
pub(crate) const EVENT_GAP: std::time::Duration = std::time::Duration::from_millis(1_100);

pub(crate) fn vips() -> Vec<VipConfig> {
    let mut out = Vec::new();
    for (vip, backends) in [(VIP4, &BACKENDS4), (VIP6, &BACKENDS6)] {
        out.push(tunnel_vip(vip, IPIP, Protocol::Tcp, backends, Mode::Ipip));
        out.push(tunnel_vip(vip, GUE, Protocol::Tcp, backends, Mode::Gue));
        out.push(tunnel_vip(vip, GUE_UDP, Protocol::Udp, backends, Mode::Gue));
    }
    out.push(tunnel_vip(
        VIP4,
        IPIP_4IN6,
        Protocol::Tcp,
        &BACKENDS6,
        Mode::Ipip,
    ));
    out.push(tunnel_vip(
        VIP4,
        GUE_4IN6,
        Protocol::Tcp,
        &BACKENDS6,
        Mode::Gue,
    ));
    out.push(tunnel_vip(
        VIP4,
        GUE_4IN6,
        Protocol::Udp,
        &BACKENDS6,
        Mode::Gue,
    ));
    out
}

/// VIPs whose one backend is special: on the clients' interface, behind
/// a gateway without a neighbour entry, without a route; and a DSR VIP.
pub(crate) fn odd_vips() -> Vec<VipConfig> {
    let mut out = Vec::new();
    for (vip, same, gw, none) in [
        (VIP4, SAME_IF4, BEHIND_GATEWAY4, UNROUTED4),
        (VIP6, SAME_IF6, BEHIND_GATEWAY6, UNROUTED6),
    ] {
        out.push(tunnel_vip(vip, SAME_IF, Protocol::Tcp, &[same], Mode::Ipip));
        out.push(tunnel_vip(
            vip,
            NO_NEIGHBOUR,
            Protocol::Tcp,
            &[gw],
            Mode::Ipip,
        ));
        out.push(tunnel_vip(vip, NO_ROUTE, Protocol::Tcp, &[none], Mode::Gue));
    }
    out.push(lb_tests::testbed::vip(
        VIP4,
        DSR,
        Protocol::Tcp,
        vec![lb_tests::testbed::backend("198.18.0.11", 0x11, 100)],
    ));
    out
}

/// Runs `body` on a fresh bed serving `vips`, inside a fresh namespace.
pub(crate) fn in_netns(hook: Hook, vips: Vec<VipConfig>, body: fn(&mut TunnelBed, &[VipConfig])) {
    let netns = FibNetns::new().expect("namespace");
    let in_if = netns.ifindex(IN_DEV).expect("in0");
    let out_if = netns.ifindex(OUT_DEV).expect("out0");
    netns
        .run(move || {
            let mut bed = TunnelBed::new(hook, &vips, in_if, out_if).expect("test bed");
            body(&mut bed, &vips);
        })
        .expect("the test body (see its panic above)");
}

pub(crate) fn counter(bed: &TunnelBed, counter: Counter) -> u64 {
    bed.nat.bed.counter(counter).expect("counter")
}

pub(crate) fn find<'a>(
    vips: &'a [VipConfig],
    vip: &str,
    port: u16,
    protocol: Protocol,
) -> &'a VipConfig {
    vips.iter()
        .find(|v| v.address == addr(vip) && v.port == port && v.protocol == protocol)
        .expect("a VIP of the fixture")
}
