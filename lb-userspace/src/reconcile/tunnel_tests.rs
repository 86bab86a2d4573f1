//! What the balancer writes for tunnelled VIPs: the mode in the VIP's
//! meta, IPv6 backends of an IPv4 VIP (4in6) with their own family,
//! `TUNNEL_CONFIG` before the first VIP that needs it and again when it
//! changes, routed backends alive without a MAC, and the refusal of a
//! backend whose outer family has no source.

use std::net::IpAddr;

use lb_common::{
    consts::{AF_INET, AF_INET6, BACKEND_F_ALIVE},
    Mode,
};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, TunnelSettings, VipConfig},
    dataplane::FakeMaps,
    tunnel::{resolve, OwnAddresses},
};

const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

fn tunnel_vip(mode: Mode) -> VipConfig {
    let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    vip.table_size = 13;
    vip.forwarding = mode;
    for address in ["198.19.2.11", "2001:2:2::12"] {
        vip.backends
            .push(BackendConfig::new(address.parse().unwrap()));
    }
    vip
}

fn node(v6: bool) -> NodeTunnel {
    let own = OwnAddresses {
        ipv4: Some("198.18.0.2".parse().unwrap()),
        ipv6: v6.then(|| "2001:2::2".parse().unwrap()),
    };
    resolve(&TunnelSettings::default(), 3, &own)
}

fn apply(
    balancer: &mut Balancer,
    maps: &mut FakeMaps,
    vips: &[VipConfig],
) -> Result<ApplyReport, ReconcileError> {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, NO_MAC))
        .collect();
    balancer.apply(maps, &desired)
}

#[test]
fn a_tunnelled_vip_is_written_with_its_mode_4in6_backends_and_the_tunnel_config_first() {
    for mode in [Mode::Ipip, Mode::Gue] {
        let mut balancer = Balancer::new(4);
        balancer.set_tunnel(node(true));
        let mut maps = FakeMaps::default();
        let vip = tunnel_vip(mode);
        apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap();

        let meta = maps.vips[&VipId::of(&vip).key()];
        assert_eq!(meta.mode(), mode as u32);
        let written = maps.tunnel.expect("TUNNEL_CONFIG written");
        assert_eq!(written, node(true).config);
        assert_eq!(written.ifindex, 3);
        let tunnel_at = maps.log.iter().position(|l| l == "tunnel config");
        let vip_at = maps.log.iter().position(|l| l.starts_with("vip"));
        assert!(tunnel_at < vip_at, "{:?}", maps.log);

        // Both backends alive without a MAC, each with its own family.
        let mut families: Vec<u8> = maps
            .backends
            .values()
            .filter(|b| b.flags & BACKEND_F_ALIVE != 0)
            .map(|b| b.family)
            .collect();
        families.sort_unstable();
        assert_eq!(families, [AF_INET, AF_INET6]);
        assert!(maps
            .live_table(&VipId::of(&vip).key())
            .unwrap()
            .iter()
            .all(|id| *id != 0));
    }
}

#[test]
fn the_tunnel_config_is_written_only_for_tunnelled_vips_and_again_when_it_changes() {
    let mut balancer = Balancer::new(4);
    balancer.set_tunnel(node(true));
    let mut maps = FakeMaps::default();
    let mut vip = tunnel_vip(Mode::DsrL2);
    vip.backends.truncate(1);
    vip.backends[0].mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 9]));
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap();
    assert_eq!(maps.tunnel, None, "no tunnelled VIP: the map is left alone");

    // The VIP switches to ipip: one meta update, config before it.
    vip.forwarding = Mode::Ipip;
    vip.backends[0].mac = None;
    maps.log.clear();
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap();
    assert_eq!(maps.vips[&VipId::of(&vip).key()].mode(), Mode::Ipip as u32);
    assert_eq!(maps.log.first().map(String::as_str), Some("tunnel config"));

    // Unchanged: not rewritten. Changed (a reload's new port): rewritten.
    maps.log.clear();
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap();
    assert!(!maps.log.iter().any(|l| l == "tunnel config"));
    let mut settings = TunnelSettings {
        gue_port: 7000,
        ..TunnelSettings::default()
    };
    balancer.set_tunnel(resolve(&settings, 3, &OwnAddresses::default()));
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap_err();
    settings.source_ipv4 = Some(("198.18.200.0".parse().unwrap(), 24));
    balancer.set_tunnel(resolve(&settings, 3, &OwnAddresses::default()));
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap();
    let written = maps.tunnel.unwrap();
    assert_eq!(u16::from_be(written.gue_port), 7000);
    assert_eq!(written.source_v4_len, 24);
}

#[test]
fn a_backend_without_an_outer_source_of_its_family_is_refused_and_nothing_written() {
    let mut balancer = Balancer::new(4);
    balancer.set_tunnel(node(false));
    let mut maps = FakeMaps::default();
    let vip = tunnel_vip(Mode::Gue);
    let error = apply(&mut balancer, &mut maps, std::slice::from_ref(&vip)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "VIP 198.18.0.100:80/tcp: backend 2001:2:2::12 needs an outer source of its family: set [tunnel] source_ipv6 or give the balancer's interface an address of that family"
    );
    assert!(maps.vips.is_empty() && maps.backends.is_empty() && maps.tunnel.is_none());
}
