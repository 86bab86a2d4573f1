//! High availability end to end: two LB nodes running lbd with VRRP (and
//! connection-table replication) in front of nginx backends, and keepalived
//! as a foreign VRRP peer. Needs root.
//!
//! One module per scenario; `setup` builds the lab and starts the lbd
//! pair, `observe` reads a node's VRRP state and waits for the VIP.

use std::time::Duration;

mod addresses;
mod election;
mod failover;
mod forged_adverts;
mod ipv6;
mod keepalived;
mod mac;
mod mismatch;
mod notify_exit;
mod observe;
mod refused_start;
mod replication;
mod restarts;
mod setup;
mod shared_states;
mod tracking;
mod unicast;

/// The VIP as lbctl names it.
const VIP: &str = "198.18.0.100:80/tcp";
/// 3 × 100 ms + skew (256 − 100) × 100 ms / 256 for the priority-100 backup.
const MASTER_DOWN: Duration = Duration::from_micros(360_937);
