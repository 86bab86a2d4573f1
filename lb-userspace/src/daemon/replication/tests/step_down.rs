//! A pair's step-down while lbd runs on: the next tick (or the next walk,
//! when one was in flight) still sends the VIPs handed over.

use super::*;

#[tokio::test]
async fn the_tick_after_a_step_down_still_sends_the_vips_handed_over() {
    let scratch = ScratchDir::new("lbr-stepdown");
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    let start = |topology| {
        Replication::start(
            topology,
            "127.0.0.1:0".parse().unwrap(),
            &[],
            &key_file,
            "lb-a",
        )
    };
    let (mut pair, _rx) = start(Topology::VrrpPair).await.unwrap();
    let (mut mesh, _rx2) = start(Topology::FullMesh).await.unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    let v6: Vec<IpAddr> = vec!["2001:2::100".parse().unwrap()];
    let roles =
        |m4: bool, m6: bool| Roles::new([(v4.as_slice(), m4), (v6.as_slice(), m6)], m4 || m6);
    // Master of both, twice: plain ticks.
    assert_eq!(pair.roles_for_tick(roles(true, true)), roles(true, true));
    pair.nat_next_scan = Some(Instant::now() + Duration::from_secs(3600));
    assert_eq!(pair.roles_for_tick(roles(true, true)), roles(true, true));
    assert!(pair.nat_next_scan.is_some());
    // The IPv4 instance steps down: this tick still sends it, NAT table
    // scanned whatever the spacing ...
    let last = pair.roles_for_tick(roles(false, true));
    assert!(last.any_master() && last.sends(v4[0]) && last.sends(v6[0]));
    assert!(pair.nat_next_scan.is_none(), "the NAT scan is forced");
    // ... and only this one.
    assert_eq!(pair.roles_for_tick(roles(false, true)), roles(false, true));
    // The other steps down too: its last tick sends it alone.
    let last = pair.roles_for_tick(roles(false, false));
    assert!(last.any_master() && !last.sends(v4[0]) && last.sends(v6[0]));
    assert_eq!(
        pair.roles_for_tick(roles(false, false)),
        roles(false, false)
    );
    // A full mesh streams everything anyway: no extra tick.
    assert_eq!(mesh.roles_for_tick(roles(true, true)), roles(true, true));
    assert_eq!(mesh.roles_for_tick(roles(false, true)), roles(false, true));
}

#[tokio::test]
async fn a_step_down_while_a_walk_runs_is_sent_by_the_next_walk() {
    let mut pair = with_silent_peer("walk-stepdown", Topology::VrrpPair).await;
    let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    let roles = |master| Roles::new([(v4.as_slice(), master)], master);
    assert_eq!(pair.roles_for_walk(roles(true)), Some(roles(true)));
    launch(
        &mut pair,
        Box::new(|_cancel: &AtomicBool| flows_only(Vec::new())),
    );
    // The instance steps down while the walk runs: no walk starts ...
    assert_eq!(pair.roles_for_walk(roles(false)), None);
    assert_eq!(pair.roles_for_walk(roles(false)), None);
    pair.wait_walk().await;
    // ... and the next still sends the VIP handed over, then no more.
    let last = pair.roles_for_walk(roles(false)).unwrap();
    assert!(last.any_master() && last.sends(v4[0]));
    assert_eq!(pair.roles_for_walk(roles(false)), Some(roles(false)));
}
