//! Election: the higher-priority node becomes master and holds the VIP
//! alone, the backup knows its master, and replication connects.

use std::net::IpAddr;

use lb_tests::{
    client,
    lab::VIP4,
    support::{status_on, wait_replication},
};
use lb_userspace::vrrp::State;

use crate::{
    observe::vrrp_state,
    setup::{elected_pair, lab},
};

#[test]
fn the_higher_priority_node_is_elected_and_holds_the_vip_alone() {
    let mut lab = lab(3);
    let (a, b) = elected_pair(&mut lab, &["b1", "b2", "b3"], true);
    assert_eq!(vrrp_state(&lab, &a), State::Master);
    assert!(
        !lab.holds_vip(&b).expect("ip addr"),
        "the backup holds the VIP too"
    );
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 200).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let s = status_on(&lab, &b);
    assert_eq!(
        s.vrrp[0].master,
        Some(a.ipv4.into()),
        "the backup knows its master: {:?}\n{}",
        s.vrrp,
        lab.log("lbd-b")
    );
    wait_replication(&lab, &a);
}
