//! Half-open (SYN-only) entries: the SYN's backend, their timeout, and
//! entries of a backend gone.
use super::*;

#[test]
fn a_half_open_flow_goes_to_its_syns_backend_whatever_maglev_says() {
    let world = World::new();
    let client = "198.18.1.10:40000";
    let other = world.not_maglevs(client);
    let held = entry(world.id(other), 2, 0);
    let answer = world.explain_with(client, None, Some(held));
    assert_eq!(answer.decision, FlowDecision::HalfOpen, "{answer:?}");
    assert_eq!(answer.backend.as_ref().unwrap().address.to_string(), other);
    let half_open = answer.half_open.unwrap();
    assert!(half_open.current && half_open.live);
    assert!((half_open.age_s - 2.0).abs() < 1e-9);
    assert_eq!((answer.entry, answer.maglev), (None, None));

    // Past the half-open timeout it still steers until a SYN takes
    // its place, but is no longer live.
    let old = world.explain_with(client, None, Some(entry(world.id(other), 12, 0)));
    assert_eq!(old.decision, FlowDecision::HalfOpen);
    assert!(!old.half_open.unwrap().live);

    // The connection table's entry, when there is one, decides: the
    // data plane does not read the half-open table then.
    let tracked = entry(world.id(&world.maglev_address(client).to_string()), 1, 0);
    let answer = world.explain_with(client, Some(tracked), Some(held));
    assert_eq!(answer.decision, FlowDecision::Tracked);
    assert_eq!(answer.half_open, None);
}

#[test]
fn a_syn_the_connection_table_took_is_shown_half_open_with_its_timeout() {
    let world = World::new();
    let client = "198.18.1.10:40000";
    let other = world.not_maglevs(client);
    let handshake = entry(world.id(other), 2, FLOW_F_HALF_OPEN);
    let answer = world.explain(client, Some(handshake));
    assert_eq!(answer.decision, FlowDecision::HalfOpen, "{answer:?}");
    assert_eq!(answer.backend.as_ref().unwrap().address.to_string(), other);
    let held = answer.half_open.unwrap();
    assert!(held.current && held.live);
    assert_eq!((answer.entry, answer.maglev), (None, None));

    // Past the half-open timeout (not the connection's idle timeout)
    // it is no longer live; it still steers.
    let old = world.explain(client, Some(entry(world.id(other), 12, FLOW_F_HALF_OPEN)));
    assert_eq!(old.decision, FlowDecision::HalfOpen);
    assert!(!old.half_open.unwrap().live);

    // Once its ACK made it established, it is a tracked flow.
    let established = world.explain(client, Some(entry(world.id(other), 12, 0)));
    assert_eq!(established.decision, FlowDecision::Tracked);
    assert!(established.entry.unwrap().live);
}

#[test]
fn a_half_open_entry_of_a_backend_gone_is_stale_and_the_flow_is_hashed_again() {
    let mut world = World::new();
    let client = "198.18.1.10:40000";
    let pinned = world.maglev_address(client).to_string();
    let id = world.id(&pinned);
    world.set_admin(&pinned, AdminState::Maintenance);
    let answer = world.explain_with(client, None, Some(entry(id, 1, 0)));
    assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
    let stale = answer.half_open.unwrap();
    assert!(!stale.current);
    assert_eq!(stale.backend.unwrap().address.to_string(), pinned);
    assert_ne!(answer.backend.unwrap().address.to_string(), pinned);
    assert!(answer.maglev.is_some());
}
