//! What the balancer writes for NAT-mode VIPs: the mode in the VIP's
//! meta, the NAT source before the VIP names it, backend ports, the node
//! flag, and routed backends alive without a MAC.

use std::net::IpAddr;

use lb_common::{consts::CONFIG_F_NAT, Mode};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::FakeMaps,
};

const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

fn nat_vip() -> VipConfig {
    let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    vip.table_size = 13;
    vip.forwarding = Mode::Nat;
    vip.nat = Some(VipNat {
        source: "198.18.0.50".parse().unwrap(),
        own_source: false,
        port_min: 2000,
        port_max: 2999,
    });
    for (address, port) in [("198.19.2.11", Some(8080)), ("198.19.2.12", None)] {
        vip.backends.push(BackendConfig {
            port,
            ..BackendConfig::new(address.parse().unwrap())
        });
    }
    vip
}

fn apply(balancer: &mut Balancer, maps: &mut FakeMaps, vips: &[VipConfig]) {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, NO_MAC))
        .collect();
    balancer.apply(maps, &desired).unwrap();
}

#[test]
fn a_nat_vip_is_written_with_its_mode_source_ports_and_the_node_flag() {
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let vip = nat_vip();
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));

    let meta = maps.vips[&VipId::of(&vip).key()];
    assert_eq!(meta.mode, Mode::Nat as u32);
    let source = maps.nat_sources[&meta.id];
    assert_eq!(source.addr, addr_words("198.18.0.50".parse().unwrap()).0);
    assert_eq!((source.port_min, source.port_max), (2000, 2999));
    assert_eq!(source.family, lb_common::consts::AF_INET);
    let source_at = maps.log.iter().position(|l| l.starts_with("nat source"));
    let vip_at = maps.log.iter().position(|l| l.starts_with("vip"));
    assert!(
        source_at < vip_at,
        "the source is written first: {:?}",
        maps.log
    );
    assert_ne!(maps.config.flags & CONFIG_F_NAT, 0);

    // Routed backends need no MAC to be alive; ports in network order.
    let mut ports: Vec<u16> = maps
        .backends
        .values()
        .filter(|b| b.flags & lb_common::consts::BACKEND_F_ALIVE != 0)
        .map(|b| u16::from_be(b.port))
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [0, 8080]);
    assert!(maps
        .live_table(&VipId::of(&vip).key())
        .unwrap()
        .iter()
        .all(|id| *id != 0));
}

#[test]
fn switching_mode_rewrites_the_meta_and_the_last_nat_vip_clears_the_flag() {
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let mut vip = nat_vip();
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));
    let key = VipId::of(&vip).key();

    vip.forwarding = Mode::DsrL2;
    vip.nat = None;
    for backend in &mut vip.backends {
        backend.port = None;
        backend.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 9]));
    }
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));
    assert_eq!(maps.vips[&key].mode, Mode::DsrL2 as u32);
    assert_eq!(maps.config.flags & CONFIG_F_NAT, 0);

    vip.forwarding = Mode::Nat;
    vip.nat = nat_vip().nat;
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));
    assert_eq!(maps.vips[&key].mode, Mode::Nat as u32);
    assert_ne!(maps.config.flags & CONFIG_F_NAT, 0);

    apply(&mut balancer, &mut maps, &[]);
    assert_eq!(maps.config.flags & CONFIG_F_NAT, 0);
}
