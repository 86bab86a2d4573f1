//! Interop with keepalived as a foreign VRRP peer: lbd and keepalived
//! elect and fail over both ways, and both nodes never hold the VIP at
//! once for more than 100 ms.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{Host, Lab, VIP4},
    support::{ip, status_on},
};
use lb_userspace::vrrp::State;

use crate::{
    observe::{vrrp_state, wait_for_vip},
    setup::lab,
};

/// Whether the node in `netns` holds the VIP; panics when `ip` fails (a
/// failed look is no answer, not "does not hold").
fn holds_vip(netns: &str) -> bool {
    ip(&["-n", netns, "-br", "addr", "show", "dev", "eth0"]).contains(&format!("{VIP4}/32"))
}

/// Watches both nodes' addresses about every 10 ms until `stop`; returns
/// the longest time both may have held the VIP at once. A sample looks at
/// one node, then the other; both may have held it since the start of the
/// last sample that saw one of them without it, so an overlap counts from
/// there (one sampling period more than the samples that saw both) to the
/// end of the last sample that saw both.
fn watch_overlap(lab: &Lab, stop: Arc<AtomicBool>) -> thread::JoinHandle<Duration> {
    let (a, b) = (lab.lbs[0].netns.clone(), lab.lbs[1].netns.clone());
    thread::spawn(move || {
        let mut longest = Duration::ZERO;
        // Start of the last sample that saw at most one holder.
        let mut apart_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let sampled_at = Instant::now();
            if holds_vip(&a) && holds_vip(&b) {
                longest = longest.max(apart_at.elapsed());
            } else {
                apart_at = sampled_at;
            }
            thread::sleep(Duration::from_millis(10));
        }
        longest
    })
}

/// The lab's HA config for `node` without the `sync_*` keys: keepalived
/// replicates no flows (README: leave them out with a keepalived peer;
/// an lbd with a `sync_peer` would hold back its preemption for the
/// peer's dump).
fn config_beside_keepalived(lab: &Lab, node: &Host, peer: &Host, priority: u8) -> String {
    lab.ha_config(node, peer, &["b1", "b2", "b3"], priority, true)
        .expect("config")
        .lines()
        .filter(|line| !line.starts_with("sync_"))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn lbd_and_keepalived_elect_and_fail_over_both_ways() {
    let mut lab = lab(3);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let stop = Arc::new(AtomicBool::new(false));
    let overlap = watch_overlap(&lab, stop.clone());

    // lbd (150) master, keepalived (100) backup.
    let config = config_beside_keepalived(&lab, &a, &b, 150);
    lab.start_keepalived(&b, "keepalived-b", 100, true)
        .expect("keepalived");
    lab.start_lbd_on(&a, "lbd-a", &config).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1000));
    assert!(
        !lab.holds_vip(&b).expect("ip addr"),
        "keepalived took the VIP from a higher-priority lbd:\n{}",
        lab.log("keepalived-b")
    );
    let received = status_on(&lab, &a).vrrp[0].counters.adverts_received;
    println!("lbd heard {received} adverts from keepalived as backup");
    assert_eq!(
        status_on(&lab, &a).vrrp[0].ignored.get("checksum"),
        None,
        "lbd rejected keepalived's adverts"
    );

    // lbd leaves: keepalived takes over.
    lab.interrupt("lbd-a").expect("stop lbd");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
    lab.terminate("keepalived-b").expect("stop keepalived");

    // keepalived (200) master, lbd (100) backup.
    lab.start_keepalived(&b, "keepalived-b2", 200, true)
        .expect("keepalived");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(10));
    let config = config_beside_keepalived(&lab, &a, &b, 100);
    lab.start_lbd_on(&a, "lbd-a2", &config).expect("lbd");
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        vrrp_state(&lab, &a),
        State::Backup,
        "lbd did not defer to keepalived:\n{}",
        lab.log("lbd-a2")
    );
    assert!(
        status_on(&lab, &a).vrrp[0].counters.adverts_received > 0,
        "lbd hears keepalived's adverts"
    );
    assert!(!lab.holds_vip(&a).expect("ip addr"));

    // keepalived leaves: lbd takes over.
    lab.terminate("keepalived-b2").expect("stop keepalived");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(5));
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 100).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    stop.store(true, Ordering::Relaxed);
    let longest = overlap.join().expect("watcher");
    println!(
        "longest time both nodes may have held the VIP (one sampling period included): {} ms",
        longest.as_millis()
    );
    assert!(
        longest <= Duration::from_millis(100),
        "both nodes may have held the VIP for {longest:?} (one sampling period included)"
    );
}
