//! A map write failing half-way through a commit: whatever part of the
//! change reached the maps, writing the previous state again (what the
//! engine does at once) leaves the maps exactly as a clean apply of it.

use std::{collections::BTreeSet, net::IpAddr};

use lb_common::{
    consts::{BACKEND_F_ALIVE, CONFIG_F_NAT},
    Backend, Mode,
};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::FakeMaps,
};

/// A backend with a MAC, so it takes packets (shared with
/// `served_after_failure_tests`).
pub(super) fn backend(address: &str) -> BackendConfig {
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
/// and the node's NAT flag; the backends' generations left out if
/// `without_generations`: a change that failed once hands out others than
/// one that did not.
fn served_as(maps: &FakeMaps, without_generations: bool) -> String {
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
        let backends: Vec<_> = named
            .iter()
            .map(|id| {
                let backend = maps.backends.get(id).map(|b| Backend {
                    generation: if without_generations { 0 } else { b.generation },
                    ..*b
                });
                (id, backend)
            })
            .collect();
        out.push(format!(
            "{key:?} id {} size {} mode {} live {live:?} other copy {other:?} backends {backends:?} nat {:?}",
            meta.id,
            meta.table_size,
            meta.forwarding,
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
    let expected_ids = served_as(&reference, true);

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
        // Only the five ids the change needs: a backend it removed comes
        // back on the id it freed (with more, on one never used), so the
        // ids are those of the reference.
        let mut balancer = Balancer::with_backend_ids(4, 5);
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
        // Without generations: once the change's flip may have been made,
        // its removed backend may have been retired (and its id taken), so
        // it comes back as a new one.
        assert_eq!(
            served_as(&maps, true),
            expected_ids,
            "failed at write {fail_at}"
        );
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
            served_as(&maps, true),
            served_as(&reference, true),
            "failed at write {fail_at}"
        );
    }
}

/// Every VIP of `vips` is in the maps, and its live table names only
/// backends the maps hold for it, alive: the program serves it.
fn serves_all(maps: &FakeMaps, vips: &[VipConfig], what: &str) {
    for vip in vips {
        let key = VipId::of(vip).key();
        let meta = maps
            .vips
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: VIP {} is gone", VipId::of(vip)));
        let live = maps.live_table(&key).unwrap();
        assert!(live.iter().all(|id| *id != 0), "{what}: an empty slot");
        for id in live {
            let backend = maps
                .backends
                .get(&id)
                .unwrap_or_else(|| panic!("{what}: backend {id} is not in the maps"));
            assert_eq!(u32::from(backend.vip_id), meta.id, "{what}: backend {id}");
            assert!(
                backend.flags & lb_common::consts::BACKEND_F_ALIVE != 0,
                "{what}: backend {id} is retired"
            );
        }
    }
}

/// lbd's first fill of an adopted data plane fails half-way: the maps
/// keep serving every VIP the previous lbd served (its program is still
/// attached), rather than being emptied by writing back the new lbd's
/// running state, which is nothing yet.
#[test]
fn a_failed_first_fill_of_adopted_maps_leaves_the_previous_lbds_vips_served() {
    let mut other = dsr_vip(&["198.18.0.21", "198.18.0.22"]);
    other.address = "198.18.0.101".parse().unwrap();
    let previous = [
        dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.13"]),
        other.clone(),
    ];
    let mut other_now = dsr_vip(&["198.18.0.21", "198.18.0.23"]);
    other_now.address = other.address;
    // The file this lbd starts with: a backend replaced in each VIP.
    let file = [
        dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.14"]),
        other_now,
    ];
    let fill = |fail_at: Option<usize>| {
        let mut maps = FakeMaps::default();
        Balancer::new(4)
            .apply(&mut maps, &desired(&previous))
            .unwrap();
        let mut balancer = Balancer::new(4);
        balancer.adopt(&maps.adopted_state());
        maps.writes_before_failure = fail_at;
        let staged = balancer.stage(&desired(&file)).unwrap();
        let result = balancer.commit(&mut maps, staged);
        (maps, balancer, result)
    };
    let (counted, _, result) = fill(Some(usize::MAX));
    result.unwrap();
    let writes = usize::MAX - counted.writes_before_failure.unwrap();
    assert!(writes > 6, "{writes} writes");

    for fail_at in 0..writes {
        let (mut maps, mut balancer, result) = fill(Some(fail_at));
        assert!(result.is_err(), "write {fail_at}");
        maps.writes_before_failure = None;
        // What the engine does next: write back its running model, the
        // empty one it starts with.
        let restored = balancer.restore(&mut maps, &[]).unwrap();
        assert!(
            !restored,
            "write {fail_at}: nothing of this lbd's to restore"
        );
        serves_all(&maps, &previous, &format!("failed at write {fail_at}"));
    }

    // Once a fill succeeded, a failed change is written back as before.
    let (mut maps, mut balancer, result) = fill(None);
    result.unwrap();
    maps.writes_before_failure = Some(1);
    let staged = balancer.stage(&desired(&previous)).unwrap();
    assert!(balancer.commit(&mut maps, staged).is_err());
    maps.writes_before_failure = None;
    assert!(balancer.restore(&mut maps, &desired(&file)).unwrap());
    serves_all(&maps, &file, "restored after the first fill");
}

/// A commit that failed half-way may have written its new backends'
/// generations into the maps; the next change never hands them out again
/// (the flows a failed change's backend pinned would follow a backend
/// given the same id and generation).
#[test]
fn a_failed_commits_generations_are_not_handed_out_again() {
    let before = [dsr_vip(&["198.18.0.11", "198.18.0.12"])];
    let failed = [dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.13"])];
    let next = [dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.14"])];
    let mut checked = 0;
    for fail_at in 0..8 {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        balancer.apply(&mut maps, &desired(&before)).unwrap();
        let known: std::collections::HashSet<u32> =
            maps.backends.values().map(|b| b.generation).collect();
        maps.writes_before_failure = Some(fail_at);
        let staged = balancer.stage(&desired(&failed)).unwrap();
        if balancer.commit(&mut maps, staged).is_ok() {
            break;
        }
        let written: Vec<u32> = maps
            .backends
            .values()
            .map(|b| b.generation)
            .filter(|g| *g != 0 && !known.contains(g))
            .collect();
        maps.writes_before_failure = None;
        let staged = balancer.stage(&desired(&next)).unwrap();
        balancer.commit(&mut maps, staged).unwrap();
        let added = balancer.vips().values().next().unwrap().backends
            [&"198.18.0.14".parse::<std::net::IpAddr>().unwrap()]
            .generation;
        assert!(
            !written.contains(&added),
            "failed at write {fail_at}: {added} was handed out before"
        );
        checked += usize::from(!written.is_empty());
    }
    assert!(checked > 0, "some failed commit wrote its new backend");
}

/// A commit that failed half-way may leave alive the entry of a backend
/// it removed (its VIP flipped, the retirement not made) or of one it
/// added (written, its VIP's flip not made), on an id the record then
/// counts free: no later apply would retire it, and flows pinned to it
/// would keep going to that backend. The next apply that succeeds
/// retires them (also after another failed commit), whatever it serves.
#[test]
fn after_a_failed_commit_no_entry_the_record_does_not_hold_stays_alive() {
    let before = [dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.13"])];
    let change = [dsr_vip(&["198.18.0.11", "198.18.0.12", "198.18.0.14"])];
    let last = |address: &str| address.rsplit('.').next().unwrap().parse::<u8>().unwrap();
    let (removed, added) = (last("198.18.0.13"), last("198.18.0.14"));
    let mut seen = BTreeSet::new();
    for fail_at in 0.. {
        for next in [&before, &change] {
            for next_fails in [false, true] {
                let mut maps = FakeMaps::default();
                let mut balancer = Balancer::new(4);
                balancer.apply(&mut maps, &desired(&before)).unwrap();
                maps.writes_before_failure = Some(fail_at);
                let staged = balancer.stage(&desired(&change)).unwrap();
                if balancer.commit(&mut maps, staged).is_ok() {
                    assert!(
                        seen.contains(&removed) && seen.contains(&added),
                        "both cases seen: {seen:?}"
                    );
                    return;
                }
                let held: BTreeSet<u32> = balancer
                    .vips()
                    .values()
                    .flat_map(|v| v.backends.values().map(|b| b.id))
                    .collect();
                seen.extend(
                    maps.backends
                        .iter()
                        .filter(|(id, b)| !held.contains(id) && b.flags & BACKEND_F_ALIVE != 0)
                        .map(|(_, b)| b.mac[5]),
                );
                if next_fails {
                    maps.writes_before_failure = Some(0);
                    let staged = balancer.stage(&desired(next)).unwrap();
                    assert!(balancer.commit(&mut maps, staged).is_err());
                }
                maps.writes_before_failure = None;
                let staged = balancer.stage(&desired(next)).unwrap();
                balancer.commit(&mut maps, staged).unwrap();
                let held: BTreeSet<u32> = balancer
                    .vips()
                    .values()
                    .flat_map(|v| v.backends.values().map(|b| b.id))
                    .collect();
                for (id, entry) in &maps.backends {
                    if !held.contains(id) {
                        assert_eq!(
                            (entry.vip_id, entry.flags),
                            (apply::RETIRED_VIP_ID, 0),
                            "failed at write {fail_at}, then {next_fails}: backend {id} left alive"
                        );
                    }
                }
            }
        }
    }
}
