//! lbd as a library: the daemon's parts, so tests and tools drive the same
//! code the binaries run.
pub mod api;
pub mod clock;
pub mod config;
pub mod conntrack_kind;
pub mod daemon;
pub mod dataplane;
pub mod ebpf_object;
pub mod health;
pub mod logging;
pub mod mac;
pub mod maglev;
pub mod maglev_update;
pub mod map_log;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod ownership;
pub mod pinning;
pub mod plan;
pub mod privilege;
pub mod reconcile;
pub(crate) mod rlimit;
pub(crate) mod slots;
pub mod sync;
pub mod vip_id;
pub mod vrrp;

/// What `lbd --version` and `lbctl --version` print after the binary's
/// name: the version and the product they belong to.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (lb, an eBPF/XDP load balancer)"
);
