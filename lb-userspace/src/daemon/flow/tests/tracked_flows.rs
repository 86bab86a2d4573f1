//! Tracked and untracked flows: the pinned backend, draining and
//! maintenance, removed backends, slots that cannot take packets.
use super::*;

#[test]
fn an_untracked_flow_goes_to_maglevs_pick() {
    let world = World::new();
    for port in [40000, 40001, 40002, 50000] {
        let client = format!("198.18.1.10:{port}");
        let answer = world.explain(&client, None);
        assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
        let pick = answer.maglev.unwrap();
        let key = flow_key(&vip(), client.parse().unwrap());
        assert_eq!(pick.slot, flow_hash(&key) % 1009);
        assert_eq!(pick.table_size, 1009);
        let backend = answer.backend.unwrap();
        assert_eq!(backend.address, world.maglev_address(&client));
        assert_eq!(backend.id, pick.backend_id);
        assert_eq!(
            backend.state,
            Some(crate::api::schema::BackendState::Enabled)
        );
        assert_eq!(
            backend.health,
            Some(crate::api::schema::HealthStatus::Unknown)
        );
        assert!(backend.alive);
        assert_eq!((answer.entry, answer.dropped), (None, None));
    }
}

#[test]
fn with_source_affinity_every_port_of_a_client_has_the_clients_slot() {
    let mut text = String::from("interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\naffinity = \"source\"\n");
    for last in 11..=13 {
        text.push_str(&format!(
            "[[vip.backend]]\naddress = \"198.18.0.{last}\"\nmac = \"02:00:00:00:00:{last}\"\n"
        ));
    }
    let world = World::of(&Config::from_toml_str(&text, "test").unwrap(), vip());
    let key = flow_key(&vip(), "198.18.1.10:40000".parse().unwrap());
    let slot = lb_common::hash::source_hash(&key) % 1009;
    let mut backends = std::collections::BTreeSet::new();
    for port in [40000, 40001, 40002, 50000] {
        let answer = world.explain(&format!("198.18.1.10:{port}"), None);
        let pick = answer.maglev.unwrap();
        assert_eq!(
            (pick.slot, pick.affinity),
            (slot, lb_common::Affinity::Source),
            "{answer:?}"
        );
        backends.insert(answer.backend.unwrap().address);
    }
    assert_eq!(backends.len(), 1, "{backends:?}");
    // Without it, the flow's own slot.
    let answer = World::new().explain("198.18.1.10:40000", None);
    assert_eq!(
        answer.maglev.unwrap().affinity,
        lb_common::Affinity::Connection
    );
}

#[test]
fn a_tracked_flow_goes_to_its_pinned_backend_whatever_maglev_says() {
    let mut world = World::new();
    let client = "198.18.1.10:40000";
    // Pin it to a backend Maglev would not pick.
    let other = world.not_maglevs(client);
    world
        .model
        .set_health(&vip(), other.parse().unwrap(), Health::Up);
    world.apply();
    let answer = world.explain(client, Some(entry(world.id(other), 3, 0)));
    assert_eq!(answer.decision, FlowDecision::Tracked, "{answer:?}");
    let backend = answer.backend.clone().unwrap();
    assert_eq!(backend.address.to_string(), other);
    assert_eq!(backend.health, Some(crate::api::schema::HealthStatus::Up));
    let tracked = answer.entry.unwrap();
    assert!(tracked.current);
    assert_eq!(tracked.backend, Some(backend));
    assert!((tracked.age_s - 3.0).abs() < 1e-9, "{}", tracked.age_s);
    assert!(tracked.flags.is_empty());
    assert!(tracked.live);
    assert_eq!((answer.maglev, answer.dropped), (None, None));
}

#[test]
fn a_draining_backend_keeps_its_tracked_flows_and_says_so() {
    let mut world = World::new();
    let since = std::time::Instant::now();
    world.set_admin(
        "198.18.0.12",
        AdminState::Draining {
            since,
            deadline: None,
        },
    );
    let answer = world.explain(
        "198.18.1.10:40000",
        Some(entry(world.id("198.18.0.12"), 1, 0)),
    );
    assert_eq!(answer.decision, FlowDecision::Tracked);
    let backend = answer.backend.unwrap();
    assert_eq!(
        backend.state,
        Some(crate::api::schema::BackendState::Draining)
    );
    assert!(answer.entry.unwrap().live);
    // A new flow never lands on it.
    for port in 1000..1100 {
        let answer = world.explain(&format!("198.18.1.10:{port}"), None);
        assert_ne!(
            answer.backend.unwrap().address.to_string(),
            "198.18.0.12",
            "port {port}"
        );
    }
}

#[test]
fn an_entry_of_a_backend_in_maintenance_is_stale_and_the_flow_is_hashed_again() {
    let mut world = World::new();
    let client = "198.18.1.10:40000";
    let pinned = world.maglev_address(client).to_string();
    let id = world.id(&pinned);
    world.set_admin(&pinned, AdminState::Maintenance);
    let answer = world.explain(client, Some(entry(id, 2, 0)));
    assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
    let stale = answer.entry.unwrap();
    assert!(!stale.current);
    let old = stale.backend.unwrap();
    assert_eq!(old.address.to_string(), pinned);
    assert_eq!(
        old.state,
        Some(crate::api::schema::BackendState::Maintenance)
    );
    assert!(!old.alive);
    let new = answer.backend.unwrap();
    assert_ne!(new.address.to_string(), pinned);
    assert_eq!(new.address, world.maglev_address(client));
}

#[test]
fn an_entry_of_a_removed_backend_is_stale_even_if_its_id_is_reused() {
    let mut world = World::new();
    let client = "198.18.1.10:40000";
    let (id, generation) = world.id("198.18.0.13");
    let answer = world.explain(client, Some(entry((id, generation + 100), 5, 0)));
    assert_eq!(answer.decision, FlowDecision::Maglev);
    let stale = answer.entry.unwrap();
    assert!(!stale.current);
    assert_eq!(stale.backend, None, "the generation does not match");
    assert_eq!(stale.backend_id, id);

    // Removed for real: no backend of the VIP has that id any more.
    let vip_id = vip();
    world
        .model
        .remove_backend(&vip_id, "198.18.0.13".parse().unwrap())
        .unwrap();
    world.apply();
    let answer = world.explain(client, Some(entry((id, generation), 5, 0)));
    assert_eq!(answer.decision, FlowDecision::Maglev);
    assert!(!answer.entry.unwrap().current);
}

#[test]
fn with_every_backend_in_maintenance_flows_are_dropped() {
    let mut world = World::new();
    let tracked = world.id("198.18.0.11");
    for address in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
        world.set_admin(address, AdminState::Maintenance);
    }
    let answer = world.explain("198.18.1.10:40000", None);
    assert_eq!(answer.decision, FlowDecision::Dropped, "{answer:?}");
    assert_eq!(answer.dropped, Some(DropReason::EmptySlot));
    assert_eq!(answer.backend, None);
    assert_eq!(answer.maglev.unwrap().backend_id, NO_BACKEND);

    // A tracked flow too: its entry is stale, the table has nothing.
    let answer = world.explain("198.18.1.10:40001", Some(entry(tracked, 1, 0)));
    assert_eq!(answer.decision, FlowDecision::Dropped);
    let stale = answer.entry.unwrap();
    assert!(!stale.current);
    assert_eq!(
        stale.backend.unwrap().state,
        Some(crate::api::schema::BackendState::Maintenance)
    );
}

#[test]
fn a_slot_whose_backend_cannot_take_packets_drops_the_flow() {
    let world = World::new();
    let client = "198.18.1.10:40000";
    let address = world.maglev_address(client);
    // The record says the slot's backend is dead (as after a MAC loss
    // the table has not caught up with).
    let mut applied = world.applied().clone();
    if let Some(b) = applied.backends.get_mut(&address) {
        b.alive = false;
    }
    let table = world.live_table();
    let answer = explain(&Facts {
        vip: vip(),
        client: client.parse().unwrap(),
        model: world.model.vip(&vip()).unwrap(),
        applied: &applied,
        table: &table,
        entry: None,
        half_open: None,
        now_ns: NOW,
        idle_timeout: Duration::from_secs(900),
    });
    assert_eq!(answer.decision, FlowDecision::Dropped);
    assert_eq!(answer.dropped, Some(DropReason::BackendNotAlive));

    // No table known at all.
    let answer = explain(&Facts {
        table: &[],
        ..Facts {
            vip: vip(),
            client: client.parse().unwrap(),
            model: world.model.vip(&vip()).unwrap(),
            applied: world.applied(),
            table: &table,
            entry: None,
            half_open: None,
            now_ns: NOW,
            idle_timeout: Duration::from_secs(900),
        }
    });
    assert_eq!(answer.dropped, Some(DropReason::NoTable));
}
