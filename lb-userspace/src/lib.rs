//! lbd as a library: the daemon's parts, so tests and tools drive the same
//! code the binaries run. Modules no other crate uses are `pub(crate)`, and
//! `unreachable_pub` keeps items inside them from claiming more, so the
//! compiler reports what is dead.
#![warn(unreachable_pub)]
pub mod api;
pub mod bgp;
pub(crate) mod clock;
pub mod config;
pub mod conntrack;
pub mod daemon;
pub mod dataplane;
pub(crate) mod ebpf_object;
pub mod flood;
pub mod guard;
pub(crate) mod health;
pub mod import;
pub mod logging;
pub mod mac;
pub mod maglev;
pub mod map_batch;
pub(crate) mod map_log;
pub mod metrics;
pub mod model;
pub mod nat;
pub(crate) mod netlink;
mod node_counters;
pub(crate) mod ownership;
pub mod pinning;
pub(crate) mod plan;
pub mod privilege;
pub mod reconcile;
pub(crate) mod rlimit;
pub mod shared_mapping;
pub(crate) mod slots;
pub(crate) mod sockopt;
pub mod sync;
#[cfg(test)]
pub(crate) mod test_netns;
pub(crate) mod tunnel;
pub mod vip_id;
pub mod vip_index;
pub mod vrrp;

/// What `lbd --version` and `lbctl --version` print after the binary's
/// name: the version and the product they belong to.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (lb, an eBPF/XDP load balancer)"
);
