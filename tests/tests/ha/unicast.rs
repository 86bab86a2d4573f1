//! Unicast peers: VRRP elects and fails over with adverts sent to the
//! peer's address instead of the multicast group.

use std::{
    thread,
    time::{Duration, Instant},
};

use lb_tests::{lab::Host, support::status_on};
use lb_userspace::vrrp::State;

use crate::{
    observe::{vrrp_state, wait_for_vip},
    setup::lab,
};

#[test]
fn unicast_peers_elect_without_multicast() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let unicast = |config: String, peer: &Host| {
        config.replace(
            "[[vrrp]]\n",
            &format!("[[vrrp]]\nunicast_peers = [\"{}\"]\n", peer.ipv4),
        )
    };
    let config_a = unicast(
        lab.ha_config(&a, &b, &["b1"], 150, true).expect("config"),
        &b,
    );
    let config_b = unicast(
        lab.ha_config(&b, &a, &["b1"], 100, true).expect("config"),
        &a,
    );
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    thread::sleep(Duration::from_millis(800));
    assert_eq!(
        vrrp_state(&lab, &b),
        State::Backup,
        "lb2 did not hear lb's unicast adverts"
    );
    assert!(status_on(&lab, &b).vrrp[0].counters.adverts_received > 0);
    assert!(!lab.holds_vip(&b).expect("ip addr"));
    lab.interrupt("lbd-a").expect("stop");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(5));
}
