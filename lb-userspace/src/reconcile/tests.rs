use super::*;
use crate::{
    config::{BackendConfig, VipConfig},
    dataplane::FakeMaps,
};
use lb_common::{Backend, TrafficCounters};

fn backend(address: &str, weight: u32) -> BackendConfig {
    let last = address
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    BackendConfig {
        mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, last])),
        weight,
        ..BackendConfig::new(address.parse().unwrap())
    }
}

fn vip(size: u32, backends: Vec<BackendConfig>) -> VipConfig {
    VipConfig {
        table_size: size,
        backends,
        ..VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp)
    }
}

fn three() -> Vec<BackendConfig> {
    vec![
        backend("198.18.0.11", 100),
        backend("198.18.0.12", 100),
        backend("198.18.0.13", 100),
    ]
}

const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

fn run(
    balancer: &mut Balancer,
    maps: &mut FakeMaps,
    vips: &[VipConfig],
    mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
) -> Result<ApplyReport, ReconcileError> {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, mac_of))
        .collect();
    balancer.apply(maps, &desired)
}

/// Both copies of the VIP's table in the fake maps.
fn copies(maps: &FakeMaps, vip_id: u32, size: u32) -> [Vec<u32>; 2] {
    let copy = |c: u32| {
        (0..size)
            .map(|s| maps.tables.get(&(vip_id, c, s)).copied().unwrap_or(0))
            .collect()
    };
    [copy(0), copy(1)]
}

#[test]
fn vip_ids_parse_and_print_the_same() {
    for text in ["198.18.0.100:80/tcp", "[2001:2::100]:443/udp"] {
        let id: VipId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
    }
    let id: VipId = "198.18.0.100:53".parse().unwrap();
    assert_eq!(id.protocol, Protocol::Tcp);
    for bad in [
        "198.18.0.100",
        "198.18.0.100:80/sctp",
        "2001:2::1:80",
        "198.18.0.100:0",
        "x:80",
    ] {
        assert!(bad.parse::<VipId>().is_err(), "{bad} parsed");
    }
}

#[test]
fn first_apply_fills_both_copies_then_flips() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let desired = [vip(1009, three())];
    let report = run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
    assert_eq!(report.vips_added, 1);
    assert_eq!(report.backends_written, 3);
    assert_eq!(report.slots_written, 2 * 1009);
    let key = VipId::of(&desired[0]).key();
    let live = maps.live_table(&key).unwrap();
    let [a, b] = copies(&maps, maps.vips[&key].id, 1009);
    assert_eq!(a, b);
    assert_eq!(a, live);
    assert!(live.iter().all(|id| (1..=3).contains(id)));
    // Every backend is alive with its configured MAC.
    for b in maps.backends.values() {
        assert_eq!(b.flags & BACKEND_F_ALIVE, BACKEND_F_ALIVE);
    }
}

#[test]
fn an_unchanged_apply_writes_nothing() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let desired = [vip(1009, three())];
    run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
    let writes = maps.slot_writes;
    let report = run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
    assert_eq!(report, ApplyReport::default());
    assert_eq!(maps.slot_writes, writes);
}

/// A change of affinity alone is one VIP update: no table written, no
/// flip (the same table, hashed by another key). A restarted lbd reads
/// the affinity back with the rest of the VIP's meta.
#[test]
fn an_affinity_change_rewrites_the_vips_meta_alone_and_a_restart_reads_it_back() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let mut sticky = vip(1009, three());
    run(&mut balancer, &mut maps, &[sticky.clone()], NO_MAC).unwrap();
    let key = VipId::of(&sticky).key();
    let before = maps.vips[&key];
    assert_eq!(before.affinity(), lb_common::Affinity::Connection as u32);
    let writes = maps.slot_writes;
    sticky.affinity = lb_common::Affinity::Source;
    let report = run(&mut balancer, &mut maps, &[sticky.clone()], NO_MAC).unwrap();
    assert_eq!((report.tables_flipped, report.slots_written), (0, 0));
    assert_eq!(maps.slot_writes, writes);
    let after = maps.vips[&key];
    assert_eq!(
        after,
        before.with_affinity(lb_common::Affinity::Source),
        "the same table and copy, the mode kept"
    );

    let mut restarted = Balancer::new(4);
    restarted.adopt(&maps.adopted_state());
    assert_eq!(
        restarted.vips()[&VipId::of(&sticky)].affinity,
        lb_common::Affinity::Source
    );
    // Its first apply keeps the affinity (and the mode).
    run(&mut restarted, &mut maps, &[sticky], NO_MAC).unwrap();
    assert_eq!(maps.vips[&key].forwarding, after.forwarding);
}

#[test]
fn a_change_writes_only_the_changed_slots_into_each_copy() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    let key = VipId::of(&vip(1009, three())).key();
    let before = maps.live_table(&key).unwrap();
    let active_before = maps.vips[&key].active_table;

    let mut four = three();
    four.push(backend("198.18.0.14", 100));
    let report = run(&mut balancer, &mut maps, &[vip(1009, four)], NO_MAC).unwrap();
    let after = maps.live_table(&key).unwrap();
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(changed > 0 && changed < 1009 / 2, "changed {changed}");
    assert_eq!(report.slots_written, 2 * changed);
    assert_eq!(report.tables_flipped, 1);
    assert_ne!(
        maps.vips[&key].active_table, active_before,
        "the VIP flipped copies"
    );
    let [a, b] = copies(&maps, maps.vips[&key].id, 1009);
    assert_eq!(a, b);
}

#[test]
fn in_minimal_mode_a_removal_moves_only_the_removed_backends_slots() {
    let many: Vec<BackendConfig> = (0..100)
        .map(|i| backend(&format!("198.18.1.{}", i + 1), 100))
        .collect();
    for mode in [MaglevMode::Consistent, MaglevMode::Minimal] {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        balancer.set_maglev_mode(mode);
        run(
            &mut balancer,
            &mut maps,
            &[vip(65_537, many.clone())],
            NO_MAC,
        )
        .unwrap();
        let key = VipId::of(&vip(65_537, many.clone())).key();
        let before = maps.live_table(&key).unwrap();
        let gone = balancer.vips()[&VipId::of(&vip(65_537, many.clone()))].backends
            [&"198.18.1.50".parse::<IpAddr>().unwrap()]
            .id;
        let held = before.iter().filter(|&&b| b == gone).count();
        let mut fewer = many.clone();
        fewer.remove(49);
        run(&mut balancer, &mut maps, &[vip(65_537, fewer)], NO_MAC).unwrap();
        let after = maps.live_table(&key).unwrap();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        match mode {
            MaglevMode::Minimal => assert_eq!(moved, held),
            MaglevMode::Consistent => assert!(moved > held, "{moved} vs {held}"),
        }
        assert!(!after.contains(&gone));
    }
}

#[test]
fn a_staged_change_plans_exactly_what_its_commit_writes() {
    let many: Vec<BackendConfig> = (0..100)
        .map(|i| backend(&format!("198.18.1.{}", i + 1), 100))
        .collect();
    let mut fewer = many.clone();
    fewer.remove(49);
    for mode in [MaglevMode::Consistent, MaglevMode::Minimal] {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        balancer.set_maglev_mode(mode);
        run(
            &mut balancer,
            &mut maps,
            &[vip(65_537, many.clone())],
            NO_MAC,
        )
        .unwrap();
        let key = VipId::of(&vip(65_537, many.clone())).key();
        let before = maps.live_table(&key).unwrap();
        let desired = [DesiredVip::from_config(&vip(65_537, fewer.clone()), NO_MAC)];
        let staged = balancer.stage(&desired).unwrap();
        let plan = balancer.plan(&staged);
        // Staging wrote nothing.
        assert_eq!(maps.live_table(&key).unwrap(), before);
        balancer.commit(&mut maps, staged).unwrap();
        let after = maps.live_table(&key).unwrap();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].change, PlanChange::Changed);
        let planned = plan[0].moved_fraction.unwrap();
        assert!(
            (planned - moved as f64 / 65_537.0).abs() < 1e-12,
            "{mode:?}: planned {planned}, moved {moved}"
        );
        if mode == MaglevMode::Minimal {
            // Exactly the removed backend's share, as the plan said.
            assert!((planned - 0.01).abs() < 0.001, "{planned}");
        }
    }
}

#[test]
fn a_change_to_one_vip_leaves_the_others_alone() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let mut other = vip(1009, three());
    other.port = 443;
    run(
        &mut balancer,
        &mut maps,
        &[vip(1009, three()), other.clone()],
        NO_MAC,
    )
    .unwrap();
    let mut two = three();
    two.pop();
    let report = run(&mut balancer, &mut maps, &[vip(1009, two), other], NO_MAC).unwrap();
    assert_eq!(report.tables_flipped, 1, "{report:?}");
    assert_eq!(
        report.backends_written, 1,
        "only the removed backend: {report:?}"
    );
}

#[test]
fn a_removed_backend_is_retired_after_the_flip_and_its_id_reused_with_a_new_generation() {
    let mut maps = FakeMaps::default();
    // As at the limit: no id but the freed one to hand out.
    let mut balancer = Balancer::with_backend_ids(4, 3);
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    let id_of = |b: &Balancer, a: &str| {
        let applied = b.vips().values().next().unwrap();
        applied.backends[&a.parse::<IpAddr>().unwrap()].clone()
    };
    let gone = id_of(&balancer, "198.18.0.12");

    let two = vec![backend("198.18.0.11", 100), backend("198.18.0.13", 100)];
    run(&mut balancer, &mut maps, &[vip(1009, two.clone())], NO_MAC).unwrap();
    let key = VipId::of(&vip(1009, three())).key();
    assert!(!maps.live_table(&key).unwrap().contains(&gone.id));
    assert_eq!(
        maps.backends[&gone.id],
        Backend {
            generation: maps.backends[&gone.id].generation,
            vip_id: super::apply::RETIRED_VIP_ID,
            ..Backend::default()
        },
        "retired backend not alive"
    );
    assert_ne!(maps.backends[&gone.id].generation, gone.generation);

    let mut again = two;
    again.push(backend("198.18.0.15", 100));
    run(&mut balancer, &mut maps, &[vip(1009, again)], NO_MAC).unwrap();
    let new = id_of(&balancer, "198.18.0.15");
    assert_eq!(new.id, gone.id, "the freed id is reused");
    assert_ne!(new.generation, gone.generation, "with a new generation");
    assert_eq!(maps.backends[&new.id].generation, new.generation);
}

#[test]
fn a_reused_vip_or_backend_id_starts_with_no_traffic() {
    let mut maps = FakeMaps::default();
    // As at the limit: no id but the freed one to hand out.
    let mut balancer = Balancer::with_backend_ids(4, 3);
    let counted = TrafficCounters {
        packets: 7,
        bytes: 700,
        new_flows: 1,
    };
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    let applied = balancer.vips().values().next().unwrap().clone();
    let vip_id = applied.id;
    let backend_id = applied.backends[&"198.18.0.12".parse::<IpAddr>().unwrap()].id;
    maps.vip_traffic.insert(vip_id, counted);
    maps.backend_traffic.insert(backend_id, counted);
    let kept = applied.backends[&"198.18.0.11".parse::<IpAddr>().unwrap()].id;
    maps.backend_traffic.insert(kept, counted);

    // The backend goes and comes back: a new backend on the freed id.
    let two = vec![backend("198.18.0.11", 100), backend("198.18.0.13", 100)];
    run(&mut balancer, &mut maps, &[vip(1009, two)], NO_MAC).unwrap();
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    let again = balancer.vips().values().next().unwrap().backends
        [&"198.18.0.12".parse::<IpAddr>().unwrap()]
        .id;
    assert_eq!(again, backend_id, "the freed id is reused");
    assert_eq!(maps.backend_traffic.get(&again), None, "counters cleared");
    assert_eq!(
        maps.backend_traffic.get(&kept),
        Some(&counted),
        "a backend that stayed keeps its counters"
    );
    assert_eq!(maps.vip_traffic.get(&vip_id), Some(&counted));

    // The VIP goes and comes back on the same id.
    run(&mut balancer, &mut maps, &[], NO_MAC).unwrap();
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    assert_eq!(balancer.vips().values().next().unwrap().id, vip_id);
    assert_eq!(maps.vip_traffic.get(&vip_id), None, "counters cleared");
}

#[test]
fn backends_without_a_mac_stay_out_until_it_is_known() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let mut backends = three();
    backends[1].mac = None;
    let desired = [vip(1009, backends)];
    run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
    let key = VipId::of(&desired[0]).key();
    let table = maps.live_table(&key).unwrap();
    let unresolved = balancer.vips().values().next().unwrap().backends
        [&"198.18.0.12".parse::<IpAddr>().unwrap()]
        .id;
    assert!(!table.contains(&unresolved));
    assert_eq!(maps.backends[&unresolved].flags & BACKEND_F_ALIVE, 0);

    let mac = [2, 0, 0, 0, 0, 0x12];
    let report = run(&mut balancer, &mut maps, &desired, &|_| Some(mac)).unwrap();
    assert_eq!(report.backends_written, 1);
    assert!(maps.live_table(&key).unwrap().contains(&unresolved));
    assert_eq!(maps.backends[&unresolved].mac, mac);
}

#[test]
fn a_dead_backend_leaves_the_table_before_it_is_marked_dead() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let config = vip(1009, three());
    let mut desired = DesiredVip::from_config(&config, NO_MAC);
    balancer
        .apply(&mut maps, std::slice::from_ref(&desired))
        .unwrap();
    let address: IpAddr = "198.18.0.12".parse().unwrap();
    let id = balancer.vips()[&desired.id].backends[&address].id;

    // Record the order of writes: the table flip must come first.
    desired.backends[1].alive = false;
    let report = balancer
        .apply(&mut maps, std::slice::from_ref(&desired))
        .unwrap();
    assert_eq!(
        report.backends_written, 1,
        "{report:?} {:?} {:?}",
        maps.log, maps.backends
    );
    assert_eq!(
        maps.backends[&id].flags & BACKEND_F_ALIVE,
        0,
        "{:?} {:?}",
        maps.log,
        maps.backends[&id]
    );
    assert!(!maps.live_table(&desired.id.key()).unwrap().contains(&id));
    assert_eq!(
        maps.log.last(),
        Some(&format!("backend {id}")),
        "log: {:?}",
        maps.log
    );

    // Draining: alive, but no new flows.
    desired.backends[1].alive = true;
    desired.backends[1].weight = 0;
    let report = balancer
        .apply(&mut maps, std::slice::from_ref(&desired))
        .unwrap();
    assert_eq!(report.backends_written, 1);
    assert_eq!(maps.backends[&id].flags & BACKEND_F_ALIVE, BACKEND_F_ALIVE);
    assert!(!maps.live_table(&desired.id.key()).unwrap().contains(&id));
}

#[test]
fn removing_a_vip_removes_its_key_and_retires_its_backends() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    let desired = [vip(1009, three())];
    run(&mut balancer, &mut maps, &desired, NO_MAC).unwrap();
    let report = run(&mut balancer, &mut maps, &[], NO_MAC).unwrap();
    assert_eq!(report.vips_removed, 1);
    assert!(maps.vips.is_empty());
    assert!(maps
        .backends
        .values()
        .all(|b| b.vip_id == super::apply::RETIRED_VIP_ID && b.addr == [0; 4] && b.flags == 0));
    assert!(balancer.vips().is_empty());
}

#[test]
fn more_vips_than_the_maps_hold_is_an_error() {
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(1);
    let mut second = vip(1009, three());
    second.port = 81;
    let err = run(
        &mut balancer,
        &mut maps,
        &[vip(1009, three()), second],
        NO_MAC,
    )
    .unwrap_err();
    assert!(matches!(err, ReconcileError::TooManyVips(1)), "{err}");
}

#[test]
fn at_the_backend_limit_one_vips_freed_ids_serve_anothers_new_backends() {
    // Every backend id in use: five VIPs, the first (by order) one short
    // of the per-VIP limit, the last holding the rest.
    let total = (lb_common::consts::MAX_BACKENDS - 1) as usize;
    let address = |vip: usize, n: usize| -> String {
        format!("198.19.{}.{}", vip * 4 + n / 250, n % 250 + 1)
    };
    let sizes = [999, 1000, 1000, 1000, total - 3999];
    let vips = |extra_in_first: bool, one_less_in_last: bool| -> Vec<VipConfig> {
        sizes
            .iter()
            .enumerate()
            .map(|(v, &size)| {
                let count = match v {
                    0 if extra_in_first => size + 1,
                    4 if one_less_in_last => size - 1,
                    _ => size,
                };
                let mut config = vip(
                    65_537,
                    (0..count).map(|n| backend(&address(v, n), 1)).collect(),
                );
                config.port = 80 + v as u16;
                config
            })
            .collect()
    };
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(8);
    run(&mut balancer, &mut maps, &vips(false, false), NO_MAC).unwrap();
    // Adding one more alone is refused, saying how to get there.
    let err = run(&mut balancer, &mut maps, &vips(true, false), NO_MAC).unwrap_err();
    assert!(
        err.to_string().contains("remove backends in one change"),
        "{err}"
    );
    // With another VIP giving one up in the same change, it fits: the VIP
    // that frees an id is applied first, though it sorts last.
    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(8);
    run(&mut balancer, &mut maps, &vips(false, false), NO_MAC).unwrap();
    run(&mut balancer, &mut maps, &vips(true, true), NO_MAC).unwrap();
    let served: usize = balancer.vips().values().map(|v| v.backends.len()).sum();
    assert_eq!(served, total);
}

#[test]
fn an_adopted_backends_mac_keeps_it_alive_until_the_neighbour_table_answers() {
    let mut maps = FakeMaps::default();
    let mut previous = Balancer::new(4);
    run(&mut previous, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    let key = VipId::of(&vip(1009, three())).key();
    let live = maps.live_table(&key).unwrap();
    let written = maps.backends.clone();

    // A restarted lbd: the file names no MACs and the neighbour table
    // has not answered yet; it starts from the MACs the maps hold.
    let state = maps.adopted_state();
    let mut balancer = Balancer::new(4);
    balancer.adopt(&state);
    let macs: std::collections::HashMap<IpAddr, [u8; 6]> =
        balancer.backend_macs().into_iter().collect();
    assert_eq!(macs.len(), 3, "{macs:?}");
    let mut unresolved = three();
    for backend in &mut unresolved {
        backend.mac = None;
    }
    run(&mut balancer, &mut maps, &[vip(1009, unresolved)], &|a| {
        macs.get(&a).copied()
    })
    .unwrap();
    assert_eq!(maps.live_table(&key).unwrap(), live, "no flow moves");
    for (id, backend) in &written {
        let now = maps.backends[id];
        assert_eq!(now.mac, backend.mac, "backend {id} keeps its MAC");
        assert_ne!(now.flags & BACKEND_F_ALIVE, 0, "backend {id} stays alive");
    }
}

/// A backend removed, then lbd restarted: the next lbd adopts the maps and
/// must not give the removed backend's id and generation to a new backend
/// (of another VIP here), or the removed one's flows, still pinned to
/// them, would go there.
#[test]
fn after_a_restart_a_removed_backends_id_and_generation_are_not_handed_out_again() {
    let mut maps = FakeMaps::default();
    let mut previous = Balancer::new(4);
    let other_vip = |backends| VipConfig {
        port: 443,
        ..vip(1009, backends)
    };
    let other = || other_vip(vec![backend("198.18.0.21", 100)]);
    let mut four = three();
    four.push(backend("198.18.0.14", 100));
    run(
        &mut previous,
        &mut maps,
        &[vip(1009, four), other()],
        NO_MAC,
    )
    .unwrap();
    let gone = previous
        .vips()
        .values()
        .flat_map(|v| v.backends.iter())
        .find(|(a, _)| **a == "198.18.0.14".parse::<IpAddr>().unwrap())
        .map(|(_, b)| (b.id, b.generation))
        .unwrap();
    run(
        &mut previous,
        &mut maps,
        &[vip(1009, three()), other()],
        NO_MAC,
    )
    .unwrap();

    let state = maps.adopted_state();
    let mut balancer = Balancer::new(4);
    balancer.adopt(&state);
    let grown = other_vip(vec![
        backend("198.18.0.21", 100),
        backend("198.18.0.22", 100),
    ]);
    run(
        &mut balancer,
        &mut maps,
        &[vip(1009, three()), grown],
        NO_MAC,
    )
    .unwrap();
    let added = balancer
        .vips()
        .values()
        .flat_map(|v| v.backends.iter())
        .find(|(a, _)| **a == "198.18.0.22".parse::<IpAddr>().unwrap())
        .map(|(_, b)| (b.id, b.generation))
        .unwrap();
    assert_ne!(added, gone, "a new backend, a new (id, generation)");
    assert_ne!(added.1, gone.1, "generations are not handed out again");
}

/// A removed backend's id goes to the back of the line of free ids: a NAT
/// flow counts its packets into `BACKEND_STATS` by the id it was opened
/// with until the reaper's sweep takes it away, so a backend added soon
/// after on that id would show the removed one's traffic and flows. So
/// too when the change that removed it failed half-way after its flip.
#[test]
fn a_removed_backends_id_is_not_the_one_the_next_added_backend_gets() {
    let address = |a: &str| a.parse::<IpAddr>().unwrap();
    let two = vec![backend("198.18.0.11", 100), backend("198.18.0.13", 100)];
    let mut again = two.clone();
    again.push(backend("198.18.0.15", 100));
    let desired = |backends: &[BackendConfig]| {
        [DesiredVip::from_config(
            &vip(1009, backends.to_vec()),
            NO_MAC,
        )]
    };
    let id_of = |balancer: &Balancer, a: &str| {
        balancer.vips().values().next().unwrap().backends[&address(a)].id
    };

    let mut maps = FakeMaps::default();
    let mut balancer = Balancer::new(4);
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    let gone = id_of(&balancer, "198.18.0.12");
    run(&mut balancer, &mut maps, &[vip(1009, two.clone())], NO_MAC).unwrap();
    run(
        &mut balancer,
        &mut maps,
        &[vip(1009, again.clone())],
        NO_MAC,
    )
    .unwrap();
    assert_ne!(id_of(&balancer, "198.18.0.15"), gone);

    let mut checked = 0;
    for fail_at in 0.. {
        let mut maps = FakeMaps::default();
        let mut balancer = Balancer::new(4);
        run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
        let gone = id_of(&balancer, "198.18.0.12");
        maps.writes_before_failure = Some(fail_at);
        let staged = balancer.stage(&desired(&two)).unwrap();
        if balancer.commit(&mut maps, staged).is_ok() {
            break;
        }
        maps.writes_before_failure = None;
        let held = balancer.vips().values().next().unwrap().backends.values();
        if held.map(|b| b.id).any(|id| id == gone) {
            // The flip was not made: .12 is still served.
            continue;
        }
        let staged = balancer.stage(&desired(&again)).unwrap();
        balancer.commit(&mut maps, staged).unwrap();
        assert_ne!(
            id_of(&balancer, "198.18.0.15"),
            gone,
            "failed at write {fail_at}"
        );
        checked += 1;
    }
    assert!(checked > 0, "some failed commit flipped");
}

/// Two `BACKENDS` entries of one VIP for one address (left by an earlier
/// lbd): the restarted lbd keeps the one written last and retires the
/// other on its first apply, after the flip (the live table may name it),
/// freeing its id, rather than leaving it alive and its id in use for
/// ever; and retires both when the VIP goes.
#[test]
fn an_adopted_duplicate_backend_entry_is_retired_after_the_first_flip() {
    let twelve: IpAddr = "198.18.0.12".parse().unwrap();
    let id = VipId::of(&vip(1009, three()));
    let mut maps = FakeMaps::default();
    run(
        &mut Balancer::new(4),
        &mut maps,
        &[vip(1009, three())],
        NO_MAC,
    )
    .unwrap();
    let live = maps.live_table(&id.key()).unwrap();
    let (&older, &entry) = maps
        .backends
        .iter()
        .find(|(_, b)| b.mac == [2, 0, 0, 0, 0, 12])
        .unwrap();
    assert!(live.contains(&older));
    // A second entry for .12, written later.
    let newer = 7;
    maps.backends.insert(
        newer,
        Backend {
            generation: entry.generation + 100,
            ..entry
        },
    );

    let mut balancer = Balancer::new(4);
    balancer.adopt(&maps.adopted_state());
    balancer.set_adopted_table(&id, live);
    assert!(!balancer.free_backend_ids.contains(&older));
    maps.log.clear();
    run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    assert_eq!(balancer.vips()[&id].backends[&twelve].id, newer);
    assert_eq!(
        maps.backends[&older],
        Backend {
            generation: maps.backends[&older].generation,
            vip_id: super::apply::RETIRED_VIP_ID,
            ..Backend::default()
        },
        "the older entry is retired"
    );
    assert!(maps.backends[&older].generation > entry.generation + 100);
    assert!(!maps.live_table(&id.key()).unwrap().contains(&older));
    let at = |write: &str| maps.log.iter().position(|w| w == write).unwrap();
    assert!(
        at(&format!("vip {}", maps.vips[&id.key()].id)) < at(&format!("backend {older}")),
        "retired after the flip: {:?}",
        maps.log
    );
    assert!(balancer.free_backend_ids.contains(&older), "its id is free");
    let report = run(&mut balancer, &mut maps, &[vip(1009, three())], NO_MAC).unwrap();
    assert_eq!(report, ApplyReport::default(), "nothing left to write");

    // Adopted again with both entries, the VIP removed: both retired.
    maps.backends.insert(newer, entry);
    let mut balancer = Balancer::new(4);
    balancer.adopt(&maps.adopted_state());
    run(&mut balancer, &mut maps, &[], NO_MAC).unwrap();
    for id in [older, newer] {
        assert_eq!(maps.backends[&id].vip_id, super::apply::RETIRED_VIP_ID);
        assert!(balancer.free_backend_ids.contains(&id));
    }
}

/// A backend removed just before a restart: the restarted lbd hands its id
/// out only after every id never used, as the previous lbd would have (a
/// freed id goes to the back of the line), or a new backend at the same
/// address would take over the removed one's NAT flows (which carry no
/// generation) and their counts; ids retired earlier come back first.
#[test]
fn after_a_restart_an_id_retired_just_before_is_handed_out_last() {
    let mut maps = FakeMaps::default();
    let mut previous = Balancer::with_backend_ids(4, 8);
    let mut four = three();
    four.push(backend("198.18.0.14", 100));
    run(&mut previous, &mut maps, &[vip(1009, four.clone())], NO_MAC).unwrap();
    let id_of = |balancer: &Balancer, address: &str| {
        let address: IpAddr = address.parse().unwrap();
        balancer
            .vips()
            .values()
            .find_map(|v| v.backends.get(&address))
            .map(|b| b.id)
            .unwrap()
    };
    let (first, third) = (
        id_of(&previous, "198.18.0.11"),
        id_of(&previous, "198.18.0.13"),
    );
    // .13 goes, then .11: both ids retired, .13's first.
    let without = |gone: &[&str]| {
        four.iter()
            .filter(|b| !gone.contains(&b.address.to_string().as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    let two_gone = without(&["198.18.0.13", "198.18.0.11"]);
    run(
        &mut previous,
        &mut maps,
        &[vip(1009, without(&["198.18.0.13"]))],
        NO_MAC,
    )
    .unwrap();
    run(
        &mut previous,
        &mut maps,
        &[vip(1009, two_gone.clone())],
        NO_MAC,
    )
    .unwrap();

    let mut balancer = Balancer::with_backend_ids(4, 8);
    balancer.adopt(&maps.adopted_state());
    let mut handed = Vec::new();
    for n in 0..6 {
        let mut grown = two_gone.clone();
        grown.extend((0..=n).map(|k| backend(&format!("198.18.0.{}", 30 + k), 100)));
        run(&mut balancer, &mut maps, &[vip(1009, grown)], NO_MAC).unwrap();
        handed.push(id_of(&balancer, &format!("198.18.0.{}", 30 + n)));
    }
    assert!(
        handed[..4].iter().all(|id| *id != first && *id != third),
        "never-used ids first: {handed:?}"
    );
    assert_eq!(
        handed[4..],
        [third, first],
        "then retired ones, freed longest ago first"
    );
}
