//! `SERVICE_ADDRS` follows the VIPs served: every VIP's address and every
//! NAT VIP's NAT address, written only when the set changes, rewritten
//! after a failed commit, and through a staged change as through an apply.

use std::net::IpAddr;

use lb_common::{
    consts::{SERVICE_ADDR_F_NAT, SERVICE_ADDR_F_VIP},
    Mode, ServiceAddr,
};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::FakeMaps,
};

const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

fn vip(address: &str, port: u16) -> VipConfig {
    let mut vip = VipConfig::new(address.parse().unwrap(), port, Protocol::Tcp);
    vip.table_size = 13;
    vip.backends.push(BackendConfig {
        mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 0x11])),
        ..BackendConfig::new("198.18.2.11".parse().unwrap())
    });
    vip
}

fn nat_vip(address: &str, port: u16, source: &str) -> VipConfig {
    let mut vip = vip(address, port);
    vip.forwarding = Mode::Nat;
    vip.nat = Some(VipNat {
        source: source.parse().unwrap(),
        own_source: true,
        port_min: 2000,
        port_max: 2999,
    });
    vip
}

fn apply(balancer: &mut Balancer, maps: &mut FakeMaps, vips: &[VipConfig]) {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, NO_MAC))
        .collect();
    balancer.apply(maps, &desired).unwrap();
}

/// The set as `(address, flags)`, sorted.
fn held(maps: &FakeMaps) -> Vec<(IpAddr, u32)> {
    let mut out: Vec<(IpAddr, u32)> = maps
        .service_addrs
        .iter()
        .map(|(key, flags)| (words_addr(key.addr, key.family), *flags))
        .collect();
    out.sort();
    out
}

fn addrs(list: &[(&str, u32)]) -> Vec<(IpAddr, u32)> {
    let mut out: Vec<(IpAddr, u32)> = list.iter().map(|(a, f)| (a.parse().unwrap(), *f)).collect();
    out.sort();
    out
}

fn writes(maps: &FakeMaps) -> usize {
    maps.log.iter().filter(|l| *l == "service addrs").count()
}

#[test]
fn the_address_set_follows_vips_and_nat_addresses() {
    let mut balancer = Balancer::new(8);
    let mut maps = FakeMaps::default();
    let web = vip("198.18.0.100", 80);
    let dns6 = vip("2001:2::100", 53);
    apply(&mut balancer, &mut maps, &[web.clone(), dns6.clone()]);
    assert_eq!(
        held(&maps),
        addrs(&[
            ("198.18.0.100", SERVICE_ADDR_F_VIP),
            ("2001:2::100", SERVICE_ADDR_F_VIP)
        ])
    );
    assert_eq!(writes(&maps), 1);

    // A second port of the same address: the set is the same, not written.
    let web_tls = vip("198.18.0.100", 443);
    apply(
        &mut balancer,
        &mut maps,
        &[web.clone(), web_tls.clone(), dns6.clone()],
    );
    assert_eq!(writes(&maps), 1, "an unchanged set is not written again");

    // A NAT VIP brings its NAT address.
    let nat = nat_vip("198.18.0.101", 80, "198.18.0.50");
    apply(
        &mut balancer,
        &mut maps,
        &[web.clone(), web_tls.clone(), nat.clone()],
    );
    assert_eq!(
        held(&maps),
        addrs(&[
            ("198.18.0.100", SERVICE_ADDR_F_VIP),
            ("198.18.0.101", SERVICE_ADDR_F_VIP),
            ("198.18.0.50", SERVICE_ADDR_F_NAT),
        ]),
        "the IPv6 VIP's address went with it"
    );

    // The NAT address changes: the old one goes.
    let moved = nat_vip("198.18.0.101", 80, "198.18.0.51");
    apply(
        &mut balancer,
        &mut maps,
        &[web.clone(), web_tls.clone(), moved.clone()],
    );
    assert_eq!(
        held(&maps),
        addrs(&[
            ("198.18.0.100", SERVICE_ADDR_F_VIP),
            ("198.18.0.101", SERVICE_ADDR_F_VIP),
            ("198.18.0.51", SERVICE_ADDR_F_NAT),
        ])
    );

    // One port of an address removed: the address stays for the other.
    apply(&mut balancer, &mut maps, &[web_tls.clone(), moved.clone()]);
    assert_eq!(held(&maps).len(), 3);

    // Back to DSR: no NAT address any more.
    let mut dsr = moved.clone();
    dsr.forwarding = Mode::DsrL2;
    dsr.nat = None;
    apply(&mut balancer, &mut maps, &[web_tls.clone(), dsr]);
    assert_eq!(
        held(&maps),
        addrs(&[
            ("198.18.0.100", SERVICE_ADDR_F_VIP),
            ("198.18.0.101", SERVICE_ADDR_F_VIP),
        ])
    );

    apply(&mut balancer, &mut maps, &[]);
    assert!(held(&maps).is_empty(), "{:?}", held(&maps));
}

#[test]
fn a_staged_change_writes_the_set_on_commit_and_a_failed_one_rewrites_it_next() {
    let mut balancer = Balancer::new(8);
    let mut maps = FakeMaps::default();
    let web = vip("198.18.0.100", 80);
    apply(&mut balancer, &mut maps, std::slice::from_ref(&web));
    let desired = |vips: &[VipConfig]| -> Vec<DesiredVip> {
        vips.iter()
            .map(|v| DesiredVip::from_config(v, NO_MAC))
            .collect()
    };

    let nat = nat_vip("198.18.0.101", 80, "198.18.0.50");
    let staged = balancer.stage(&desired(&[web.clone(), nat])).unwrap();
    assert_eq!(held(&maps).len(), 1, "staging writes nothing");
    balancer.commit(&mut maps, staged).unwrap();
    assert_eq!(
        held(&maps),
        addrs(&[
            ("198.18.0.100", SERVICE_ADDR_F_VIP),
            ("198.18.0.101", SERVICE_ADDR_F_VIP),
            ("198.18.0.50", SERVICE_ADDR_F_NAT),
        ])
    );

    // A commit that fails at its first write: the maps may hold any part
    // of it (here, an entry the record does not know of).
    let staged = balancer
        .stage(&desired(std::slice::from_ref(&web)))
        .unwrap();
    maps.writes_before_failure = Some(0);
    assert!(balancer.commit(&mut maps, staged).is_err());
    maps.writes_before_failure = None;
    maps.service_addrs.insert(
        ServiceAddr {
            addr: addr_words("198.18.0.99".parse().unwrap()).0,
            family: lb_common::consts::AF_INET,
            _pad: [0; 3],
        },
        SERVICE_ADDR_F_VIP,
    );
    // The next apply of the same state as before writes the set again.
    apply(
        &mut balancer,
        &mut maps,
        &[web.clone(), nat_vip("198.18.0.101", 80, "198.18.0.50")],
    );
    assert_eq!(
        held(&maps),
        addrs(&[
            ("198.18.0.100", SERVICE_ADDR_F_VIP),
            ("198.18.0.101", SERVICE_ADDR_F_VIP),
            ("198.18.0.50", SERVICE_ADDR_F_NAT),
        ])
    );
}

/// `SERVICE_ADDRS` is not pinned: a new lbd's map starts empty even when
/// it adopts the VIPs a previous lbd left, so its first apply writes the
/// set although the VIPs do not change.
#[test]
fn a_balancer_that_adopted_its_vips_writes_the_set_at_its_first_apply() {
    let web = vip("198.18.0.100", 80);
    let mut previous = Balancer::new(8);
    let mut pinned = FakeMaps::default();
    apply(&mut previous, &mut pinned, std::slice::from_ref(&web));
    let state = crate::dataplane::AdoptedState {
        vips: pinned.vips.iter().map(|(k, m)| (*k, *m)).collect(),
        backends: pinned.backends.iter().map(|(id, b)| (*id, *b)).collect(),
    };

    let mut balancer = Balancer::new(8);
    balancer.adopt(&state);
    let mut fresh = FakeMaps::default();
    apply(&mut balancer, &mut fresh, std::slice::from_ref(&web));
    assert_eq!(held(&fresh), addrs(&[("198.18.0.100", SERVICE_ADDR_F_VIP)]));
}
