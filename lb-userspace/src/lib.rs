//! lbd as a library: the daemon's parts, so tests and tools drive the same
//! code the binaries run.
pub mod api;
pub mod config;
pub mod conntrack_kind;
pub mod daemon;
pub mod dataplane;
pub mod ebpf_object;
pub mod health;
pub mod logging;
pub mod maglev;
pub mod maglev_update;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod pinning;
pub mod privilege;
pub mod reconcile;
pub(crate) mod rlimit;
pub(crate) mod slots;
pub mod sync;
pub mod vrrp;
