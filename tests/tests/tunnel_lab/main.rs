//! Tunnelled direct server return end to end (issue 13) in the routed
//! lab: the client behind router r1, lbd on the LB network, backends
//! behind router r2 holding the VIPs on `lo` and running `lb-decap` at
//! XDP (the kernel has no ipip/fou modules: nothing else unwraps). For
//! `ipip` and `gue`, 4in4, 6in6 and 4in6, lbd at xdp and at tc: new
//! connections balanced with exact counters and the client's own address
//! at nginx; long-lived streams across a backend added and a VRRP
//! failover; a request too big for the path after encapsulation answered
//! with ICMP, then carried in smaller segments; kept-alive connections
//! across lbd's restarts (kill -9, SIGTERM); checks sent through the
//! tunnel taking out a backend whose decap stopped; and new connections
//! following a next-hop router replaced under them. Labs are shared
//! within a test and the variants loop inside it, to keep the suite's
//! time small. Needs root.
//!
//! One module per scenario; `setup` starts lbd, `observe` reads what
//! the checks read.

use std::time::Duration;

mod balance;
mod failover;
mod health;
mod lab_itself;
mod next_hop;
mod observe;
mod restarts;
mod setup;

/// New connections per VIP in the balance test.
const REQUESTS: u32 = 3_000;
/// The longest wait between two reads an unloaded run's streams stay
/// under across a VRRP failover: a stall over it is only printed as a
/// note, not a failure (TCP backoff on a loaded machine stretches it, and
/// a timing target belongs in a benchmark).
const STALL_LIMIT: Duration = Duration::from_secs(4);
/// The link MTU everywhere in the lab (veth's default).
const LINK_MTU: u32 = 1500;
/// Drop verdicts none of the healthy runs may produce.
const DROPS: [&str; 7] = [
    "drop_malformed",
    "drop_internal",
    "drop_no_tx_port",
    "drop_no_backend",
    "drop_no_route",
    "drop_no_neighbour",
    "drop_ttl_exceeded",
];

/// lb-decap's refusals none of the healthy runs may produce (read from
/// `lb-decap status`; `restarts` and `health` check `drop_not_source`).
const DECAP_REFUSALS: [&str; 4] = [
    "drop_not_vip",
    "drop_malformed",
    "drop_unsupported",
    "drop_not_source",
];

/// Every name in `DECAP_REFUSALS` is one of lb-decap's counters: a
/// renamed one would be looked up and never found.
#[test]
fn the_decap_refusals_checked_for_are_decap_counters() {
    lb_tests::support::assert_are_decap_counters(&DECAP_REFUSALS);
}

/// Every name in `DROPS` is a counter the data plane has: a renamed one
/// would otherwise be filtered for and never found, and the checks that
/// no drop happened could not fail.
#[test]
fn the_drops_checked_for_are_counters() {
    lb_tests::support::assert_are_counters(&DROPS);
}
