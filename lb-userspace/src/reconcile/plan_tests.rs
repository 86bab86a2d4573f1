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

/// An affinity change leaves the table as it is but hashes new flows by
/// another key: the VIP is in the plan with the change, and about as
/// many new flows move as two independent picks disagree (with three
/// equal backends, two thirds); the model's plan (`lbctl config check`)
/// says the same.
#[test]
fn an_affinity_change_is_in_the_plan_with_the_flows_it_moves() {
    let three = |affinity| {
        let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        vip.table_size = 1009;
        vip.affinity = affinity;
        for last in 11..=13 {
            vip.backends.push(BackendConfig {
                mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, last])),
                ..BackendConfig::new(format!("198.18.0.{last}").parse().unwrap())
            });
        }
        vip
    };
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let running = three(lb_common::Affinity::Connection);
    balancer
        .apply(&mut maps, &[DesiredVip::from_config(&running, NO_MAC)])
        .unwrap();
    let sticky = three(lb_common::Affinity::Source);
    let staged = balancer
        .stage(&[DesiredVip::from_config(&sticky, NO_MAC)])
        .unwrap();
    let plan = balancer.plan(&staged);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(
        plan[0].affinity,
        crate::plan::AffinityChange::of(
            lb_common::Affinity::Connection,
            lb_common::Affinity::Source
        )
    );
    let moved = plan[0].moved_fraction.unwrap();
    assert!((moved - 2.0 / 3.0).abs() < 0.01, "{moved}");

    let model = |vip: &VipConfig| {
        let mut config =
            crate::config::Config::from_toml_str("interface = \"eth0\"\n", "t").unwrap();
        config.vips.push(vip.clone());
        crate::model::Model::from_config(&config)
    };
    let modelled = crate::model::plan(&model(&running), &model(&sticky));
    assert_eq!(modelled.len(), 1, "{modelled:?}");
    assert_eq!(modelled[0].affinity, plan[0].affinity);
    assert!((modelled[0].moved_fraction.unwrap() - moved).abs() < 0.01);
    // The same affinity again: nothing to say.
    let same = balancer
        .stage(&[DesiredVip::from_config(&running, NO_MAC)])
        .unwrap();
    assert!(balancer.plan(&same).is_empty());
}

/// A VIP whose table size changes moves the flows whose slot names
/// another backend, as the data plane picks (`hash % size`): none with a
/// single backend, however the slots are placed (not all, as a new size
/// was said to), and an absent fraction is still an added or removed VIP.
#[test]
fn a_new_table_size_moves_the_flows_that_change_backend() {
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
    assert_eq!(plan[0].moved_fraction, Some(0.0));
}

/// Three backends, tables of 1,009 and 2,003 slots (too many hash pairs
/// to count them all): the sampled fraction is that of every hash modulo
/// both sizes, about two thirds (each table places flows afresh).
#[test]
fn a_new_table_size_moves_about_the_flows_every_hash_would() {
    let vip = |size: u32| {
        let mut vip = nat_vip(Some(8080));
        vip.table_size = size;
        for last in [12, 13] {
            vip.backends.push(BackendConfig {
                port: Some(8080),
                ..BackendConfig::new(IpAddr::from([198, 19, 2, last]))
            });
        }
        [DesiredVip::from_config(&vip, NO_MAC)]
    };
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    balancer.apply(&mut maps, &vip(1009)).unwrap();
    let staged = balancer.stage(&vip(2003)).unwrap();
    let plan = balancer.plan(&staged);
    assert_eq!(plan.len(), 1, "{plan:?}");
    let moved = plan[0].moved_fraction.unwrap();

    let id = VipId::of(&nat_vip(None));
    let old = balancer.vips[&id].live_table().unwrap();
    let new = staged.next.vips[&id].live_table().unwrap();
    let (m, n) = (old.len(), new.len());
    let every = (0..m * n).filter(|h| old[h % m] != new[h % n]).count() as f64 / (m * n) as f64;
    assert!((moved - every).abs() < 0.01, "{moved} vs {every}");
    assert!(every > 0.6 && every < 0.73, "{every}");
}
