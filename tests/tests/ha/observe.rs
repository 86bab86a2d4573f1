//! What the tests read from the pair: a node's VRRP state, and the
//! wait for a node to hold the VIP (how long a takeover took). Shared by
//! the scenarios.

use std::{
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{Host, Lab},
    support::{status_on, wait_until},
};
use lb_userspace::vrrp::State;

/// `node`'s state in its first VRRP instance.
pub(crate) fn vrrp_state(lab: &Lab, node: &Host) -> State {
    status_on(lab, node).vrrp[0].state
}

/// Waits until `node` holds the VIP and, where lbd runs on it (its admin
/// socket is there; a keepalived peer has none), says it is master (its
/// lbd's status: first VRRP instance `Master`); returns how long it took from
/// `since` to hold the VIP (only the address is polled that often, so the
/// time is the takeover's, not the status calls').
pub(crate) fn wait_for_vip(lab: &Lab, node: &Host, since: Instant, limit: Duration) -> Duration {
    loop {
        if lab.holds_vip(node).expect("ip addr") {
            let took = since.elapsed();
            if !lab.admin_socket_of(node).exists() {
                return took;
            }
            wait_until(
                &format!("{} holding the VIP to say it is master", node.name),
                Duration::from_secs(2),
                || vrrp_state(lab, node) == State::Master,
            );
            return took;
        }
        assert!(
            since.elapsed() < limit,
            "{} did not take the VIP within {limit:?}",
            node.name
        );
        thread::sleep(Duration::from_millis(5));
    }
}
