//! NAT VIPs: the translation, not the connection table, names the backend.
use super::*;

/// A NAT VIP's packets never read the connection table (nor the
/// half-open table): an entry left there from before the VIP switched
/// to NAT (a DSR VIP's flow) says nothing of where its next packet
/// goes. Without a translation, a SYN (a UDP packet) opens one to
/// Maglev's pick and any other TCP packet is dropped
/// (`drop_nat_no_flow`): the explanation is Maglev's pick, as for a
/// flow no table holds.
#[test]
fn a_nat_vip_without_a_translation_ignores_the_connection_table() {
    let world = World::new();
    let client = "198.18.1.10:40000";
    let other = world.not_maglevs(client);
    let table = world.live_table();
    for (entry, half_open) in [
        (Some(entry(world.id(other), 5, 0)), None),
        (None, Some(entry(world.id(other), 1, 0))),
    ] {
        let facts = Facts {
            vip: world.vip,
            client: client.parse().unwrap(),
            model: world.model.vip(&world.vip).unwrap(),
            applied: world.applied(),
            table: &table,
            entry,
            half_open,
            now_ns: NOW,
            idle_timeout: Duration::from_secs(900),
        };
        let dsr = explain(&facts);
        assert_ne!(dsr.decision, FlowDecision::Maglev, "{dsr:?}");
        let key = flow_key(&facts.vip, facts.client);
        let nat = crate::daemon::nat_flow::with_translation(dsr, &facts, &key, None, None);
        assert_eq!(nat.decision, FlowDecision::Maglev, "{nat:?}");
        assert_eq!(
            nat.backend.as_ref().map(|b| b.address),
            Some(world.maglev_address(client)),
            "{nat:?}"
        );
        assert!(nat.maglev.is_some(), "{nat:?}");
        assert_eq!((nat.entry, nat.half_open, nat.nat), (None, None, None));
    }
}

/// A backend id freed by a removal is given to the next backend added
/// at once, while the removed backend's NAT flows wait for the
/// reaper: their translation names the id, but still sends to the
/// removed backend's address. The explanation names no backend then
/// (lbctl: "removed"), not the id's new owner.
#[test]
fn a_translation_whose_backend_id_went_to_another_backend_names_none() {
    let world = World::new();
    let client = "198.18.1.10:40000";
    let table = world.live_table();
    let facts = Facts {
        vip: world.vip,
        client: client.parse().unwrap(),
        model: world.model.vip(&world.vip).unwrap(),
        applied: world.applied(),
        table: &table,
        entry: None,
        half_open: None,
        now_ns: NOW,
        idle_timeout: Duration::from_secs(900),
    };
    let key = flow_key(&facts.vip, facts.client);
    let (id, _) = world.id("198.18.0.12");
    let to = |address: &str| lb_common::NatEntry {
        dst: addr_words(address.parse().unwrap()).0,
        backend_id: id,
        last_seen_ns: NOW,
        direction: lb_common::consts::NAT_DIR_FORWARD,
        ..lb_common::NatEntry::default()
    };
    let nat = |forward| {
        crate::daemon::nat_flow::with_translation(
            explain(&facts),
            &facts,
            &key,
            Some(&forward),
            None,
        )
    };
    let own = nat(to("198.18.0.12"));
    assert_eq!(own.decision, FlowDecision::Tracked);
    assert_eq!(
        own.backend.map(|b| b.address.to_string()).as_deref(),
        Some("198.18.0.12")
    );
    // The id now belongs to 198.18.0.12; the flow goes to 198.18.0.14.
    let reused = nat(to("198.18.0.14"));
    assert_eq!(reused.decision, FlowDecision::Tracked);
    assert_eq!(reused.backend, None, "{reused:?}");
    assert_eq!(reused.nat.map(|n| n.backend_id), Some(id));
}
