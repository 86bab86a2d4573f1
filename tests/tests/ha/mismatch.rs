//! Two nodes whose VRRP address lists differ (a pair's VIP set changed on
//! one node only) ignore each other's adverts, as RFC 5798 says, and both
//! become master: each warns in its log, naming the peer and the addresses
//! only one side lists, at most once a minute however many adverts come.

use std::time::{Duration, Instant};

use lb_tests::{
    lab::VIP4,
    support::{status_on, wait_until},
};
use lb_userspace::vrrp::State;

use crate::{observe::wait_for_vip, setup::lab};

/// The second address node B moves and A does not.
const OTHER: &str = "198.18.0.101";

/// The log lines of `log` warning about an address mismatch from `peer`.
fn mismatch_lines(log: &str, peer: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains("address_mismatch") && l.contains(peer))
        .count()
}

#[test]
fn different_address_lists_are_warned_about_naming_the_peer() {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let config_a = lab.ha_config(&a, &b, &["b1"], 150, true).expect("config");
    let config_b = lab
        .ha_config(&b, &a, &["b1"], 100, true)
        .expect("config")
        .replace(
            "[[vrrp]]\n",
            &format!("[[vrrp]]\naddresses = [\"{VIP4}\", \"{OTHER}\"]\n"),
        );
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    let (peer_a, peer_b) = (a.ipv4.to_string(), b.ipv4.to_string());

    // Each ignores the other: both take the VIP.
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(10));
    for node in [&a, &b] {
        assert_eq!(status_on(&lab, node).vrrp[0].state, State::Master);
    }
    wait_until("both to warn", Duration::from_secs(5), || {
        mismatch_lines(&lab.log("lbd-a"), &peer_b) > 0
            && mismatch_lines(&lab.log("lbd-b"), &peer_a) > 0
    });
    // The addresses only one side lists are named.
    let line = |log: String, peer: &str| {
        log.lines()
            .find(|l| l.contains("address_mismatch") && l.contains(peer))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let on_a = line(lab.log("lbd-a"), &peer_b);
    assert!(on_a.contains(&format!("only_theirs=[{OTHER}]")), "{on_a}");
    let on_b = line(lab.log("lbd-b"), &peer_a);
    assert!(on_b.contains(&format!("only_ours=[{OTHER}]")), "{on_b}");

    // Ten adverts a second keep coming: counted, not logged again.
    wait_until(
        "lb to ignore 20 more of lb2's adverts",
        Duration::from_secs(10),
        || {
            status_on(&lab, &a).vrrp[0]
                .ignored
                .get("address_mismatch")
                .is_some_and(|n| *n >= 20)
        },
    );
    assert_eq!(mismatch_lines(&lab.log("lbd-a"), &peer_b), 1);
}
