//! What the plan of a change lists: a VIP whose table stays is listed
//! when a backend's written settings change.

use std::net::IpAddr;

use lb_common::Mode;

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::FakeMaps,
};

const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

fn nat_vip(port: Option<u16>) -> VipConfig {
    let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    vip.table_size = 13;
    vip.forwarding = Mode::Nat;
    vip.nat = Some(VipNat {
        source: "198.18.0.50".parse().unwrap(),
        own_source: false,
        port_min: 2000,
        port_max: 2999,
    });
    vip.backends.push(BackendConfig {
        port,
        ..BackendConfig::new("198.19.2.11".parse().unwrap())
    });
    vip
}

/// A reload that puts a NAT backend's port back (9090 set at run time,
/// 8080 in the file) rewrites the backend: its dry run lists the VIP, as
/// the change is not nothing.
#[test]
fn a_backend_port_change_is_in_the_plan() {
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let running = [DesiredVip::from_config(&nat_vip(Some(9090)), NO_MAC)];
    balancer.apply(&mut maps, &running).unwrap();

    let file = [DesiredVip::from_config(&nat_vip(Some(8080)), NO_MAC)];
    let staged = balancer.stage(&file).unwrap();
    let plan = balancer.plan(&staged);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(plan[0].change, PlanChange::Changed);
    assert_eq!(plan[0].moved_fraction, Some(0.0));

    let same = balancer.stage(&running).unwrap();
    assert!(balancer.plan(&same).is_empty());
}

/// A VIP whose table size changes has every slot placed afresh: the plan
/// says all of it moves (as the model's plan, `lbctl config check`, does),
/// not that nothing moves, which is what an added or removed VIP's
/// absent fraction means.
#[test]
fn a_new_table_size_moves_the_whole_table() {
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let running = [DesiredVip::from_config(&nat_vip(Some(8080)), NO_MAC)];
    balancer.apply(&mut maps, &running).unwrap();

    let mut resized = nat_vip(Some(8080));
    resized.table_size = 17;
    let staged = balancer
        .stage(&[DesiredVip::from_config(&resized, NO_MAC)])
        .unwrap();
    let plan = balancer.plan(&staged);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(plan[0].change, PlanChange::Changed);
    assert_eq!(plan[0].moved_fraction, Some(1.0));
}
