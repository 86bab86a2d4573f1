//! Flows that ended or went idle follow Maglev again.
use super::*;

/// A TCP flow that saw FIN or RST is over: the data plane re-pins the
/// next SYN there to Maglev's pick (`tracked`'s `reopening`,
/// lb-ebpf/src/conntrack/buckets.rs). The answer is that pick, as for
/// a UDP flow idle past its timeout, with the old entry shown as it is
/// (its backend alive, itself not live). An open connection idle past
/// the TCP timeout (no FIN/RST: a pooled database session) is not
/// over: its next packet (no SYN) goes by its entry, so the answer is
/// `tracked` on its backend, marked idle, with where a new connection
/// (SYN) on the tuple would go beside. Before, it answered Maglev's
/// pick, which the connection's next query did not take.
#[test]
fn a_tcp_flow_that_ended_follows_maglev_for_a_new_connection_an_idle_one_stays_tracked() {
    let mut world = World::new();
    let client = "198.18.1.10:40000";
    let other = world.not_maglevs(client);
    world
        .model
        .set_health(&vip(), other.parse().unwrap(), Health::Up);
    world.apply();
    for (age_s, flags, shown) in [
        (3, FLOW_F_FIN, vec![FlowFlag::Fin]),
        (3, FLOW_F_RST, vec![FlowFlag::Rst]),
        (
            3,
            FLOW_F_FIN | FLOW_F_RST,
            vec![FlowFlag::Fin, FlowFlag::Rst],
        ),
        (902, FLOW_F_FIN, vec![FlowFlag::Fin]),
    ] {
        let answer = world.explain(client, Some(entry(world.id(other), age_s, flags)));
        assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
        let backend = answer.backend.clone().unwrap();
        assert_eq!(backend.address, world.maglev_address(client));
        assert_ne!(backend.address.to_string(), other);
        assert!(answer.maglev.is_some(), "{answer:?}");
        assert_eq!(answer.dropped, None);
        assert_eq!(answer.new_connection, None);
        let ended = answer.entry.unwrap();
        assert_eq!(ended.backend.unwrap().address.to_string(), other);
        assert!(
            ended.current && !ended.live && !ended.idle,
            "{flags:#x} {age_s}"
        );
        assert_eq!(ended.flags, shown);
        assert!((ended.age_s - age_s as f64).abs() < 1e-9, "{}", ended.age_s);
    }
    // Idle 902 s, no FIN/RST: tracked on its backend, idle; a new
    // SYN would take Maglev's pick.
    let idle = world.explain(client, Some(entry(world.id(other), 902, 0)));
    assert_eq!(idle.decision, FlowDecision::Tracked, "{idle:?}");
    assert_eq!(idle.backend.clone().unwrap().address.to_string(), other);
    assert_eq!(idle.maglev, None);
    let held = idle.entry.clone().unwrap();
    assert!(held.current && !held.live && held.idle, "{held:?}");
    assert!((held.age_s - 902.0).abs() < 1e-9, "{}", held.age_s);
    let new = idle.new_connection.clone().expect("a new SYN's pick");
    assert_eq!(
        new.backend.as_ref().unwrap().address,
        world.maglev_address(client)
    );
    assert!(new.maglev.is_some() && new.dropped.is_none(), "{new:?}");
    let json = serde_json::to_value(&idle).unwrap();
    assert_eq!(json["decision"], "tracked");
    assert_eq!(json["entry"]["idle"], true);
    assert!(
        json["new_connection"]["maglev"]["slot"].is_number(),
        "{json}"
    );
    // Live (no FIN/RST, within the timeout): tracked, on its backend.
    let live = world.explain(client, Some(entry(world.id(other), 898, 0)));
    assert_eq!(live.decision, FlowDecision::Tracked, "{live:?}");
    assert_eq!(live.backend.unwrap().address.to_string(), other);
    assert_eq!(live.maglev, None);
    assert_eq!(live.new_connection, None);
    assert!(!live.entry.unwrap().idle);
}

/// A UDP flow idle past the UDP timeout: its next packet is a new
/// flow, which the data plane re-pins to Maglev's pick (UDP has no
/// SYN); within the timeout it keeps its backend. A TCP connection's
/// next SYN does the same once it is over
/// (`a_tcp_flow_that_ended_follows_maglev_for_a_new_connection_an_idle_one_stays_tracked`).
#[test]
fn a_udp_flow_idle_past_its_timeout_follows_maglev_again() {
    let world = World::udp();
    let client = "198.18.1.10:40000";
    let other = world.not_maglevs(client);
    let timeout = Duration::from_secs(30);
    let answer = world.explain_at(client, Some(entry(world.id(other), 40, 0)), None, timeout);
    assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
    let backend = answer.backend.unwrap();
    assert_eq!(backend.address, world.maglev_address(client));
    assert_ne!(backend.address.to_string(), other);
    assert!(answer.maglev.is_some());
    // The entry is shown as it is: its backend alive, itself not live.
    let idle = answer.entry.unwrap();
    assert_eq!(idle.backend.unwrap().address.to_string(), other);
    assert!(idle.current && !idle.live);
    assert!((idle.age_s - 40.0).abs() < 1e-9, "{}", idle.age_s);

    // Within the timeout: tracked, on its backend.
    let answer = world.explain_at(client, Some(entry(world.id(other), 20, 0)), None, timeout);
    assert_eq!(answer.decision, FlowDecision::Tracked, "{answer:?}");
    assert_eq!(answer.backend.unwrap().address.to_string(), other);
    assert!(answer.entry.unwrap().live);
    assert_eq!(answer.maglev, None);
}
