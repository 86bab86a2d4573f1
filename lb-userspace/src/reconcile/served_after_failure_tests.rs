//! After a commit failed at any write, the record holds what the maps
//! serve per VIP: the writes that follow (writing the previous state back,
//! or the next change) never change a table copy packets read, nor hand an
//! id a live table names to another backend, even when the failed change
//! had already given an id one VIP freed to another.

use std::collections::BTreeSet;

use lb_common::{
    consts::BACKEND_F_ALIVE, Backend, LbConfig, NatSource, TunnelConfig, VipKey, VipMeta,
};

use super::failed_commit_tests::backend;
use super::*;
use crate::{
    config::{Protocol, VipConfig},
    dataplane::FakeMaps,
};

/// A DSR VIP on port 80.
fn vip(address: &str, size: u32, backends: &[&str]) -> VipConfig {
    VipConfig {
        table_size: size,
        backends: backends.iter().map(|a| backend(a)).collect(),
        ..VipConfig::new(address.parse().unwrap(), 80, Protocol::Tcp)
    }
}

/// What the balancer is asked to serve for `vips`.
fn desired(vips: &[VipConfig]) -> Vec<DesiredVip> {
    vips.iter()
        .map(|v| DesiredVip::from_config(v, &|_: IpAddr| None))
        .collect()
}

/// `FakeMaps` that checks each write against what packets read at that
/// moment, before making it.
struct Watched {
    maps: FakeMaps,
    /// Which run, for the messages.
    what: String,
    /// The write that fails is made all the same (a map updated before
    /// the next one refused): a failed write may or may not have landed.
    made_anyway: bool,
}

impl Watched {
    /// Makes `write` on the fake maps, failing as they do, or after
    /// making it if `made_anyway`.
    fn pass<T>(
        &mut self,
        write: impl FnOnce(&mut FakeMaps) -> Result<T, DataplaneError>,
    ) -> Result<T, DataplaneError> {
        if self.made_anyway && self.maps.writes_before_failure == Some(0) {
            self.maps.writes_before_failure = None;
            write(&mut self.maps)?;
            self.maps.writes_before_failure = Some(0);
            return Err(DataplaneError::MissingMap("a write made, then refused"));
        }
        write(&mut self.maps)
    }

    /// The ids the live copy of some VIP's table names.
    fn live_ids(&self) -> BTreeSet<u32> {
        let keys: Vec<_> = self.maps.vips.keys().copied().collect();
        keys.iter()
            .flat_map(|key| self.maps.live_table(key).unwrap())
            .collect()
    }
}

impl MapWriter for Watched {
    fn set_config(&mut self, config: &LbConfig) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.set_config(config))
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        if self.live_ids().contains(&id) {
            let owner = |b: &Backend| (b.vip_id, b.addr, b.family);
            let held = self.maps.backends.get(&id).map(owner);
            assert_eq!(
                held,
                Some(owner(backend)),
                "{}: backend {id}, named by a live table, rewritten for another VIP or address",
                self.what
            );
        }
        self.pass(|maps| maps.set_backend(id, backend))
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        let slots: Vec<(u32, u32)> = slots.collect();
        let live = self
            .maps
            .vips
            .values()
            .any(|m| m.id == vip_id && m.active_table == table);
        for (slot, id) in &slots {
            let held = self.maps.tables.get(&(vip_id, table, *slot)).copied();
            assert!(
                !live || held == Some(*id),
                "{}: slot {slot} of VIP {vip_id}'s live copy {table} changed to {id}",
                self.what
            );
        }
        self.pass(|maps| maps.write_table(vip_id, table, &mut slots.into_iter()))
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.set_vip(key, meta))
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.remove_vip(key))
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.clear_vip_traffic(vip_id))
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.clear_backend_traffic(id))
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.set_nat_source(vip_id, source))
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.set_nat_enabled(enabled))
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.set_tunnel_config(config))
    }

    fn set_service_addrs(
        &mut self,
        addrs: &BTreeMap<ServiceAddr, u32>,
    ) -> Result<(), DataplaneError> {
        self.pass(|maps| maps.set_service_addrs(addrs))
    }
}

/// Every VIP of `vips` is in the maps, its live table naming only alive
/// backends of its own.
fn serves_all(maps: &FakeMaps, vips: &[VipConfig], what: &str) {
    for vip in vips {
        let key = VipId::of(vip).key();
        let meta = maps.vips.get(&key).expect(what);
        for id in maps.live_table(&key).unwrap() {
            let b = maps.backends.get(&id).expect(what);
            assert_eq!(u32::from(b.vip_id), meta.id, "{what}: backend {id}");
            assert!(b.flags & BACKEND_F_ALIVE != 0, "{what}: backend {id}");
        }
    }
}

/// The record after a failed commit: each VIP the maps hold is recorded
/// (or a stray to remove), with the copy packets read, and the ids its
/// live table names as its backends, none counted free.
fn record_matches(maps: &FakeMaps, balancer: &Balancer, what: &str) {
    let free = &balancer.free_backend_ids;
    for (key, meta) in &maps.vips {
        let Some((_, vip)) = balancer.vips.iter().find(|(id, _)| id.key() == *key) else {
            assert!(
                balancer.strays.iter().any(|id| id.key() == *key),
                "{what}: VIP {} neither recorded nor a stray",
                meta.id
            );
            continue;
        };
        if vip.meta_unsure {
            // Written again before anything else.
            continue;
        }
        assert_eq!(vip.active, meta.active_table, "{what}: VIP {}", meta.id);
        let ids: BTreeSet<u32> = vip.backends.values().map(|b| b.id).collect();
        for id in maps.live_table(key).unwrap() {
            assert!(ids.contains(&id), "{what}: {id} not recorded");
            assert!(!free.contains(&id), "{what}: {id} counted free");
        }
    }
}

/// The number of writes committing `to` after `from` makes.
fn writes_of(from: &[VipConfig], to: &[VipConfig]) -> usize {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(8);
    balancer.apply(&mut maps, &desired(from)).unwrap();
    maps.writes_before_failure = Some(usize::MAX);
    let staged = balancer.stage(&desired(to)).unwrap();
    balancer.commit(&mut maps, staged).unwrap();
    usize::MAX - maps.writes_before_failure.unwrap()
}

/// A reload where a VIP goes and VIP B adds a backend that takes its id,
/// VIP A drops a backend (id 3) and a VIP added takes id 3, all in the
/// same change (six ids in all: a freed id is handed out only when no
/// other is free): the commit fails at each of its writes in turn; then
/// the previous state is written back and the change made again (or the
/// change made again at once), every write checked against what packets
/// read.
#[test]
fn after_a_failed_commit_no_write_touches_what_packets_read() {
    let a = |backends: &[&str]| vip("198.18.0.100", 13, backends);
    let b = |backends: &[&str]| vip("198.18.0.101", 13, backends);
    let gone = vip("198.18.0.102", 13, &["198.18.0.31"]);
    let added = vip("198.18.0.103", 13, &["198.18.0.41"]);
    let first = [
        a(&["198.18.0.11", "198.18.0.12", "198.18.0.13"]),
        b(&["198.18.0.21", "198.18.0.22"]),
    ];
    // The VIP to go comes last, so its ids are above .13's.
    let before = [first[0].clone(), first[1].clone(), gone];
    let after = [
        a(&["198.18.0.11", "198.18.0.12"]),
        b(&["198.18.0.21", "198.18.0.22", "198.18.0.50"]),
        added,
    ];

    // The scenario: .50 takes the removed VIP's id (freed first), .41
    // .13's.
    let start = |maps: &mut dyn MapWriter| {
        let mut balancer = Balancer::with_backend_ids(8, 6);
        balancer.apply(maps, &desired(&first)).unwrap();
        balancer.apply(maps, &desired(&before)).unwrap();
        balancer
    };
    let clean = start(&mut FakeMaps::default());
    let id_of = |balancer: &Balancer, vip: &VipConfig, address: &str| {
        balancer.vips[&VipId::of(vip)].backends[&address.parse::<IpAddr>().unwrap()].id
    };
    let (thirteen, removed) = (
        id_of(&clean, &before[0], "198.18.0.13"),
        id_of(&clean, &before[2], "198.18.0.31"),
    );
    let staged = clean.stage(&desired(&after)).unwrap();
    assert_eq!(id_of(&staged.next, &after[1], "198.18.0.50"), removed);
    assert_eq!(id_of(&staged.next, &after[2], "198.18.0.41"), thirteen);

    let mut counting = FakeMaps::default();
    let mut balancer = start(&mut counting);
    counting.writes_before_failure = Some(usize::MAX);
    let staged = balancer.stage(&desired(&after)).unwrap();
    balancer.commit(&mut counting, staged).unwrap();
    let writes = usize::MAX - counting.writes_before_failure.unwrap_or(0);
    assert!(writes > 15, "{writes} writes");
    for fail_at in 0..writes {
        for made_anyway in [false, true] {
            // No restore, then one failing at each of its writes, until one
            // succeeds.
            for restore_fails_at in std::iter::once(None).chain((0..).map(Some)) {
                let what = format!(
                    "failed at write {fail_at} (made: {made_anyway}), restore failing at {restore_fails_at:?}"
                );
                let mut maps = Watched {
                    maps: FakeMaps::default(),
                    what: format!("{what}: the commit"),
                    made_anyway,
                };
                let mut balancer = start(&mut maps);
                maps.maps.writes_before_failure = Some(fail_at);
                let staged = balancer.stage(&desired(&after)).unwrap();
                assert!(balancer.commit(&mut maps, staged).is_err(), "{what}");
                maps.maps.writes_before_failure = None;
                record_matches(&maps.maps, &balancer, &what);
                let mut restored = false;
                if let Some(again) = restore_fails_at {
                    maps.what = format!("{what}: the restore");
                    maps.maps.writes_before_failure = Some(again);
                    restored = balancer.restore(&mut maps, &desired(&before)).is_ok();
                    maps.maps.writes_before_failure = None;
                    if restored {
                        serves_all(&maps.maps, &before, &maps.what);
                        // The record is exact again: the same state writes
                        // nothing.
                        let report = balancer.apply(&mut maps, &desired(&before)).unwrap();
                        assert_eq!(report.backends_written + report.slots_written, 0, "{what}");
                    } else {
                        record_matches(&maps.maps, &balancer, &maps.what);
                    }
                }
                maps.what = format!("{what}: the next change");
                let staged = balancer.stage(&desired(&after)).unwrap();
                balancer.commit(&mut maps, staged).unwrap();
                serves_all(&maps.maps, &after, &maps.what);
                if restored {
                    break;
                }
            }
        }
    }
}

/// In minimal mode a failed commit leaves the tables of the VIPs it did
/// not touch as they are: the next apply moves none of their slots (a
/// table rebuilt from scratch would move many: it depends on history).
#[test]
fn in_minimal_mode_a_failed_commit_moves_no_slot_of_an_untouched_vip() {
    let x = |backends: &[&str]| vip("198.18.0.100", 251, backends);
    let y = |backends: &[&str]| vip("198.18.0.101", 13, backends);
    let grown = x(&["198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14"]);
    let before = [grown.clone(), y(&["198.18.0.21", "198.18.0.22"])];
    let after = [
        grown.clone(),
        y(&["198.18.0.21", "198.18.0.22", "198.18.0.23"]),
    ];
    let setup = || {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(8);
        balancer.set_maglev_mode(MaglevMode::Minimal);
        let started = [
            x(&["198.18.0.11", "198.18.0.12", "198.18.0.13"]),
            before[1].clone(),
        ];
        balancer.apply(&mut maps, &desired(&started)).unwrap();
        balancer.apply(&mut maps, &desired(&before)).unwrap();
        (maps, balancer)
    };
    let key = VipId::of(&grown).key();
    let (maps, _) = setup();
    let table = maps.live_table(&key).unwrap();
    let mut fresh = FakeMaps::default();
    Balancer::new(8)
        .apply(&mut fresh, &desired(&before))
        .unwrap();
    assert_ne!(
        fresh.live_table(&key).unwrap(),
        table,
        "the grown table differs from a fresh build"
    );

    let writes = writes_of(&before, &after);
    for fail_at in 0..writes {
        for next in [&before, &after] {
            let (mut maps, mut balancer) = setup();
            maps.writes_before_failure = Some(fail_at);
            let staged = balancer.stage(&desired(&after)).unwrap();
            assert!(balancer.commit(&mut maps, staged).is_err());
            maps.writes_before_failure = None;
            let staged = balancer.stage(&desired(next)).unwrap();
            balancer.commit(&mut maps, staged).unwrap();
            assert_eq!(
                maps.live_table(&key).unwrap(),
                table,
                "failed at write {fail_at}"
            );
        }
    }
}
