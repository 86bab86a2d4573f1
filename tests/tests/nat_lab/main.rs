//! NAT mode end to end (issue 12) in the routed lab: the client behind
//! router r1, lbd on the LB network, unmodified nginx backends on port 8080
//! behind router r2. Each test builds its own lab and lbd config with NAT
//! VIPs (`forwarding = "nat"`, NAT addresses `NAT4`/`NAT6` on the LB) and
//! checks what the issue promises: balanced new flows with exact counters
//! and the client hidden from the backends (xdp and tc), kept-alive
//! connections across backend changes and lbd's restarts (kill -9,
//! SIGTERM), long-lived streams across a VRRP failover, port
//! exhaustion dropped, counted and recovered, a table full of closed flows
//! freeing them early (its pressure), a missing next-hop neighbour
//! dropped, counted and resolved, connections following a next-hop
//! router replaced under them, and a NAT address removed under lbd
//! reported. Needs root.
//!
//! One module per scenario; `setup` builds the lab and lbd's config,
//! `observe` reads what the tests check.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

mod backend_changes;
mod balance;
mod failover;
mod nat_address;
mod neighbour;
mod observe;
mod port_exhaustion;
mod preempt;
mod restarts;
mod setup;
mod table_pressure;

/// The node's NAT address for IPv4 VIPs.
const NAT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// The node's NAT address for IPv6 VIPs.
const NAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x50);
/// New connections per family in the balance tests.
const REQUESTS: u32 = 3_000;
/// The longest wait between two reads an unloaded run's streams stay
/// under across a VRRP failover: a stall over it is only printed as a
/// note, not a failure (TCP backoff on a loaded machine stretches it, and
/// a timing target belongs in a benchmark).
const STALL_LIMIT: Duration = Duration::from_secs(4);
/// Drop verdicts none of the healthy runs may produce.
const DROPS: [&str; 10] = [
    "drop_malformed",
    "drop_internal",
    "drop_no_tx_port",
    "drop_nat_ports_exhausted",
    "drop_nat_table_full",
    "drop_no_route",
    "drop_no_neighbour",
    "drop_nat_no_flow",
    "drop_ttl_exceeded",
    "drop_too_big",
];

/// Every name in `DROPS` is a counter the data plane has: a renamed one
/// would otherwise be filtered for and never found, and the checks that
/// no drop happened could not fail.
#[test]
fn the_drops_checked_for_are_counters() {
    lb_tests::support::assert_are_counters(&DROPS);
}
