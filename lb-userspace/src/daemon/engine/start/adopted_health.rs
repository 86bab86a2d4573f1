//! The health a start gives backends of an adopted data plane: dead ones
//! down, fail-open VIPs held, backends the maps lack awaiting checks; apart
//! because the rules (and their tests) are long and stand alone.

use super::super::check_of;
use crate::{model::Model, reconcile::Balancer};

/// Backends the adopted data plane had marked dead start as down: a
/// restart must not send traffic to a backend the last lbd took out, until
/// its checks pass `rise` times. A backend restored in maintenance (see
/// `admin_state`) was dead for that: its health is left to its checks,
/// and it awaits the first (`admin_state` marks it so), so an enable
/// before then gives it no new flows.
///
/// A VIP with `on_all_down = "keep"` whose backends were all alive may
/// have been failing open: the maps cannot tell a backend up from one
/// down but taking flows for that, and no file keeps health. Its checked
/// backends start unknown (taking flows, as they did) and held (see
/// [`crate::model::FailOpenHold`]): one whose first checks fail keeps its
/// established flows, taking no new ones, while the others settle,
/// rather than have them cut before the last backend's checks fail and
/// the VIP fails open again. A backend that passes is held no more; a
/// VIP of which one was dead was not failing open, and holds none.
///
/// A checked backend with no live entry in the adopted maps waits for
/// its first checks (see [`await_checks_of_backends_not_adopted`]).
pub(in crate::daemon::engine) fn seed_health(model: &mut Model, balancer: &Balancer) {
    let mut down = Vec::new();
    let mut held = Vec::new();
    for (id, applied) in balancer.vips() {
        let Some(vip) = model.vips.get(id) else {
            continue;
        };
        let mut any_dead = false;
        let mut alive_checked = Vec::new();
        for (address, backend) in &applied.backends {
            let Some(known) = vip.backends.get(address) else {
                continue; // gone from the file: nothing to seed
            };
            let in_maintenance = known.admin == crate::model::AdminState::Maintenance;
            let health = known.config.health.as_ref().unwrap_or(&vip.config.health);
            let checked = !in_maintenance && check_of(*address, id.port, health, None).is_some();
            // A DSR backend without a MAC was not alive for want of it;
            // routed backends need none.
            let resolved = backend.mac.is_some() || applied.mode != lb_common::Mode::DsrL2;
            if !backend.alive && resolved && !in_maintenance {
                any_dead = true;
            }
            if checked && !backend.alive && resolved {
                down.push((*id, *address));
            }
            if checked && backend.alive {
                alive_checked.push((*id, *address));
            }
        }
        if vip.config.on_all_down == crate::config::AllDown::KeepLast && !any_dead {
            held.extend(alive_checked);
        }
    }
    for (id, address) in down {
        model.set_health(&id, address, crate::health::Health::Down);
    }
    for (id, address) in held {
        model.hold_as_if_failing_open(&id, address);
    }
    await_checks_of_backends_not_adopted(model, balancer);
}

/// A checked backend the adopted maps hold no live entry of (new to the
/// file, removed at run time before this start, or of a VIP the maps do
/// not have) has no established flows to keep while its first checks
/// run: it waits for them before it takes new flows, as a backend a
/// reload brings does (`Model::reloaded`), rather than take them at once
/// on an address that may be dead or given to another workload. Only on
/// an adopted start: a fresh start's backends all take flows at once.
pub(super) fn await_checks_of_backends_not_adopted(model: &mut Model, balancer: &Balancer) {
    for (id, vip) in &mut model.vips {
        let adopted = balancer.vips().get(id);
        let vip_config = &vip.config;
        for (address, backend) in &mut vip.backends {
            if adopted.is_some_and(|applied| applied.backends.contains_key(address)) {
                continue;
            }
            if crate::model::is_checked(vip_config, &backend.config) {
                backend.awaiting_checks = true;
            }
        }
    }
}

#[cfg(test)]
mod seed_health_tests {
    use std::{net::IpAddr, time::Instant};

    use super::*;
    use crate::config::Config;
    use crate::daemon::engine::admin_state;
    use crate::test_scratch::ScratchDir;
    use crate::{dataplane::FakeMaps, health::Health, model::Edit, reconcile::VipId};

    /// The previous lbd's maps: b2 down by its checks, b3 in maintenance
    /// (both dead there). The next lbd's model seeds b2 down; b3, restored
    /// in maintenance, is dead for that and keeps its health to its checks;
    /// without its restored state it would be seeded down too.
    #[test]
    fn dead_backends_start_down_but_not_for_maintenance() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let [b1, b2, b3]: [IpAddr; 3] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(|a| a.parse().unwrap());
        let now = Instant::now();
        let mut before = Model::from_config(&config);
        before.set_health(&id, b2, Health::Down);
        before.apply(&Edit::Maintenance(id, b3), now).unwrap();
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();

        let health = |model: &Model, b| model.backend(&id, b).unwrap().health;
        let mut restored = Model::from_config(&config);
        restored.apply(&Edit::Maintenance(id, b3), now).unwrap();
        seed_health(&mut restored, &balancer);
        assert_eq!(health(&restored, b1), Health::Unknown);
        assert_eq!(health(&restored, b2), Health::Down);
        assert_eq!(health(&restored, b3), Health::Unknown);

        let mut plain = Model::from_config(&config);
        seed_health(&mut plain, &balancer);
        assert_eq!(health(&plain, b3), Health::Down);
        assert_eq!(health(&plain, b1), Health::Unknown);
    }

    /// The previous lbd's "keep" VIP failed open (every backend down, all
    /// alive in its maps). After a hitless restart the backends start
    /// unknown; their checks settle one by one. The first to fail again
    /// keeps its established flows (alive) while the others are still
    /// unknown, instead of having them cut before the last one fails and
    /// the VIP fails open again; once all have failed, it fails open as
    /// before the restart. A "keep" VIP with a backend dead in the maps
    /// was not failing open: its backends are not held.
    #[test]
    fn a_restart_of_a_vip_failing_open_cuts_no_backends_flows_while_checks_settle() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             on_all_down = \"keep\"\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let [b1, b2, b3]: [IpAddr; 3] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(|a| a.parse().unwrap());
        let alive = |model: &Model| -> Vec<bool> {
            model.desired(&|_| None)[0]
                .backends
                .iter()
                .map(|b| b.alive)
                .collect()
        };
        let mut before = Model::from_config(&config);
        for b in [b1, b2, b3] {
            before.set_health(&id, b, Health::Down);
        }
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();
        assert_eq!(alive(&before), [true, true, true], "failing open");

        let mut restored = Model::from_config(&config);
        seed_health(&mut restored, &balancer);
        restored.set_health(&id, b1, Health::Down);
        assert_eq!(alive(&restored), [true, true, true], "b1's flows stay");
        restored.set_health(&id, b2, Health::Down);
        assert_eq!(alive(&restored), [true, true, true], "b2's flows stay");
        restored.set_health(&id, b3, Health::Down);
        assert_eq!(
            restored.desired(&|_| None),
            before.desired(&|_| None),
            "failing open as before the restart"
        );

        // b2 was up, b1 and b3 down: not failing open, nothing held.
        let mut not_open = Model::from_config(&config);
        not_open.set_health(&id, b1, Health::Down);
        not_open.set_health(&id, b3, Health::Down);
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &not_open.desired(&|_| None))
            .unwrap();
        let mut restored = Model::from_config(&config);
        seed_health(&mut restored, &balancer);
        assert!(restored
            .vip(&id)
            .unwrap()
            .backends
            .values()
            .all(|b| b.fail_open_hold.is_none()));
    }

    /// The previous lbd's maps hold VIP 198.18.0.100:80 with b1 only
    /// (b2 was removed at run time, or added to the file while lbd was
    /// down). The file brings b1 and b2 (checked) and a VIP the maps do
    /// not have: after `seed_health`, b2 and the new VIP's backend wait
    /// for their first checks, as a reload's new backends do; b1, which
    /// has flows to keep, takes new flows at once; an unchecked backend
    /// never waits. A fresh start (nothing adopted, no `seed_health`)
    /// keeps them all taking flows at once.
    #[test]
    fn a_backend_the_adopted_maps_lack_awaits_its_first_checks() {
        let config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.14\"\nmac = \"02:00:00:00:00:14\"\n\
             health = { check = \"none\" }\n\
             [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.21\"\nmac = \"02:00:00:00:00:21\"\n",
            "lbd.toml",
        )
        .unwrap();
        let id = VipId::of(&config.vips[0]);
        let other = VipId::of(&config.vips[1]);
        let [b1, b2, b4, b21]: [IpAddr; 4] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.14", "198.18.0.21"]
                .map(|a| a.parse().unwrap());
        let now = Instant::now();
        let mut before = Model::from_config(&config);
        before.apply(&Edit::RemoveBackend(id, b2), now).unwrap();
        before.apply(&Edit::RemoveBackend(id, b4), now).unwrap();
        before.apply(&Edit::RemoveVip(other), now).unwrap();
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();

        let mut model = Model::from_config(&config);
        let waits =
            |model: &Model, vip: &VipId, b| model.backend(vip, b).unwrap().awaits_first_check();
        for (vip, b) in [(id, b1), (id, b2), (id, b4), (other, b21)] {
            assert!(
                !waits(&model, &vip, b),
                "a fresh start: {b} takes flows at once"
            );
        }
        seed_health(&mut model, &balancer);
        assert!(!waits(&model, &id, b1), "adopted with its flows");
        assert!(waits(&model, &id, b2), "no entry in the adopted maps");
        assert!(waits(&model, &other, b21), "of a VIP the maps do not have");
        assert!(!waits(&model, &id, b4), "unchecked");
        let weights: Vec<(IpAddr, u32)> = model.desired(&|_| None)[0]
            .backends
            .iter()
            .map(|b| (b.address, b.weight))
            .collect();
        assert_eq!(weights, vec![(b1, 100), (b2, 0), (b4, 100)]);
        model.set_health(&id, b2, Health::Up);
        assert!(!waits(&model, &id, b2), "its checks passed");
    }

    /// b3, in maintenance when the last lbd stopped (which may have known
    /// it down), is restored so from the backend state file; enabled at
    /// once (`maintenance --off`), it takes no new flow until a first
    /// check passes, and the answer says so; b1, unknown too, takes new
    /// flows throughout, and b2, restored draining, none.
    #[test]
    fn a_backend_restored_in_maintenance_awaits_its_first_check_once_enabled() {
        let dir = ScratchDir::new("seed");
        let mut config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
            "lbd.toml",
        )
        .unwrap();
        config.admin_socket = dir.join("lbd.sock");
        let id = VipId::of(&config.vips[0]);
        let [b1, b2, b3]: [IpAddr; 3] =
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"].map(|a| a.parse().unwrap());
        std::fs::write(
            admin_state::backend_state_file(&config).unwrap(),
            format!(
                "{{\"version\": 1, \"backends\": [\
                 {{\"vip\": \"{id}\", \"backend\": \"{b2}\", \"state\": \"draining\"}},\
                 {{\"vip\": \"{id}\", \"backend\": \"{b3}\", \"state\": \"maintenance\"}}]}}"
            ),
        )
        .unwrap();
        let mut admin = admin_state::AdminRecord::load(&config, None).unwrap();
        let now = Instant::now();
        // The previous lbd's maps: b3 dead for its maintenance.
        let mut before = Model::from_config(&config);
        before.apply(&Edit::Maintenance(id, b3), now).unwrap();
        let mut balancer = Balancer::new(4);
        balancer
            .apply(&mut FakeMaps::default(), &before.desired(&|_| None))
            .unwrap();

        let mut model = Model::from_config(&config);
        admin.restore(&mut model, now);
        seed_health(&mut model, &balancer);
        let weights = |model: &Model| -> Vec<(IpAddr, u32)> {
            model.desired(&|_| None)[0]
                .backends
                .iter()
                .map(|b| (b.address, b.weight))
                .collect()
        };
        let mut enabled = model.clone();
        enabled.apply(&Edit::Enable(id, b3), now).unwrap();
        assert_eq!(
            weights(&enabled),
            vec![(b1, 100), (b2, 0), (b3, 0)],
            "enabled before its first check"
        );
        let notes = enabled.newly_awaiting_checks(&model);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains(&b3.to_string()), "{notes:?}");
        assert!(notes[0].contains("once its checks pass"), "{notes:?}");

        let mut passed = enabled.clone();
        passed.set_health(&id, b3, Health::Up);
        assert_eq!(weights(&passed), vec![(b1, 100), (b2, 0), (b3, 100)]);
        let mut failed = enabled;
        failed.set_health(&id, b3, Health::Down);
        assert_eq!(weights(&failed), vec![(b1, 100), (b2, 0), (b3, 0)]);
        // Its first check passed while it was still in maintenance: the
        // enable gives it new flows at once, and says nothing of checks.
        let mut checked = model.clone();
        checked.set_health(&id, b3, Health::Up);
        let mut later = checked.clone();
        later.apply(&Edit::Enable(id, b3), now).unwrap();
        assert_eq!(weights(&later), vec![(b1, 100), (b2, 0), (b3, 100)]);
        assert!(later.newly_awaiting_checks(&checked).is_empty());
    }
}
