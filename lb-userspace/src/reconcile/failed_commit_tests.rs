//! A map write failing half-way through a commit: whatever part of the
//! change reached the maps, writing the previous state again (what the
//! engine does at once) leaves the maps exactly as a clean apply of it.

use std::net::IpAddr;

use lb_common::{consts::CONFIG_F_NAT, Mode};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::FakeMaps,
};

fn backend(address: &str) -> BackendConfig {
    let last = address.rsplit('.').next().unwrap().parse().unwrap();
    BackendConfig {
        mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, last])),
        ..BackendConfig::new(address.parse().unwrap())
    }
}

fn dsr_vip(backends: &[&str]) -> VipConfig {
    VipConfig {
        table_size: 13,
        backends: backends.iter().map(|a| backend(a)).collect(),
        ..VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp)
    }
}

fn nat_vip(source: &str, port_min: u16) -> VipConfig {
    let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 81, Protocol::Tcp);
    vip.table_size = 13;
    vip.forwarding = Mode::Nat;
    vip.nat = Some(VipNat {
        source: source.parse().unwrap(),
        own_source: false,
        port_min,
        port_max: 2999,
    });
    vip.backends.push(BackendConfig {
        port: Some(8080),
        ..BackendConfig::new("198.19.2.11".parse().unwrap())
    });
    vip
}

fn desired(vips: &[VipConfig]) -> Vec<DesiredVip> {
    vips.iter()
        .map(|v| DesiredVip::from_config(v, &|_: IpAddr| None))
        .collect()
}

/// What packets see: each VIP's meta (but which copy is active), both
/// copies of its table, the backends its table names, its NAT source,
/// and the node's NAT flag.
fn served(maps: &FakeMaps) -> String {
    let mut out = Vec::new();
    let mut keys: Vec<_> = maps.vips.keys().copied().collect();
    keys.sort_by_key(|k| (k.addr, k.port, k.proto));
    for key in keys {
        let meta = maps.vips[&key];
        let live = maps.live_table(&key).unwrap();
        let other: Vec<u32> = (0..meta.table_size)
            .map(|s| {
                let copy = 1 - meta.active_table;
                maps.tables.get(&(meta.id, copy, s)).copied().unwrap_or(0)
            })
            .collect();
        let mut named: Vec<u32> = live.clone();
        named.sort_unstable();
        named.dedup();
        let backends: Vec<_> = named.iter().map(|id| (id, maps.backends.get(id))).collect();
        out.push(format!(
            "{key:?} id {} size {} mode {} live {live:?} other copy {other:?} backends {backends:?} nat {:?}",
            meta.id,
            meta.table_size,
            meta.mode,
            maps.nat_sources.get(&meta.id)
        ));
    }
    out.push(format!("nat flag {}", maps.config.flags & CONFIG_F_NAT));
    out.join("\n")
}

#[test]
fn a_commit_failing_at_any_write_is_undone_by_writing_the_previous_state_again() {
    let before = [
        dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.13"]),
        nat_vip("198.18.0.50", 2000),
    ];
    let mut added = VipConfig::new("198.18.0.101".parse().unwrap(), 80, Protocol::Tcp);
    added.table_size = 13;
    added.backends.push(backend("198.18.0.15"));
    // One backend replaced, another NAT source and range, one VIP more.
    let after = [
        dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.14"]),
        nat_vip("198.18.0.51", 2500),
        added,
    ];

    let mut reference = FakeMaps::default();
    Balancer::new(4)
        .apply(&mut reference, &desired(&before))
        .unwrap();
    let expected = served(&reference);

    // How many writes the change makes.
    let mut counting = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    balancer.apply(&mut counting, &desired(&before)).unwrap();
    counting.writes_before_failure = Some(usize::MAX);
    let staged = balancer.stage(&desired(&after)).unwrap();
    balancer.commit(&mut counting, staged).unwrap();
    let writes = usize::MAX - counting.writes_before_failure.unwrap();
    assert!(writes > 10, "{writes} writes");

    for fail_at in 0..writes {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        balancer.apply(&mut maps, &desired(&before)).unwrap();
        maps.writes_before_failure = Some(fail_at);
        let staged = balancer.stage(&desired(&after)).unwrap();
        assert!(
            balancer.commit(&mut maps, staged).is_err(),
            "write {fail_at}"
        );
        maps.writes_before_failure = None;
        let staged = balancer.stage(&desired(&before)).unwrap();
        balancer.commit(&mut maps, staged).unwrap();
        assert_eq!(served(&maps), expected, "failed at write {fail_at}");
        // And the record is exact again: the same state writes nothing.
        let staged = balancer.stage(&desired(&before)).unwrap();
        let report = balancer.commit(&mut maps, staged).unwrap();
        assert_eq!(
            report.backends_written + report.slots_written,
            0,
            "failed at write {fail_at}"
        );
    }
}

#[test]
fn after_a_failed_commit_the_next_change_is_applied_whole() {
    let before = [dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.13"])];
    let after = [
        dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.14"]),
        nat_vip("198.18.0.50", 2000),
    ];
    let mut reference = FakeMaps::default();
    let mut fresh = Balancer::new(4);
    fresh.apply(&mut reference, &desired(&before)).unwrap();
    fresh.apply(&mut reference, &desired(&after)).unwrap();

    for fail_at in 0..6 {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        balancer.apply(&mut maps, &desired(&before)).unwrap();
        maps.writes_before_failure = Some(fail_at);
        let staged = balancer.stage(&desired(&after)).unwrap();
        assert!(balancer.commit(&mut maps, staged).is_err());
        maps.writes_before_failure = None;
        // No rollback: the same change again.
        let staged = balancer.stage(&desired(&after)).unwrap();
        balancer.commit(&mut maps, staged).unwrap();
        assert_eq!(
            served(&maps),
            served(&reference),
            "failed at write {fail_at}"
        );
    }
}
