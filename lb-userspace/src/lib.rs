//! lbd as a library: the daemon's parts, so tests and tools drive the same
//! code the binaries run. Modules no other crate uses are `pub(crate)`, and
//! `unreachable_pub` keeps items inside them from claiming more, so the
//! compiler reports what is dead.
#![warn(unreachable_pub)]

// The lock-free tables shared with the data plane (the connection and NAT
// bucket tables, the VIP index) read a tag or generation before and after
// an entry with plain loads, relying on x86-64 never reordering loads with
// loads (see `lb_common::vip_index`). Elsewhere (arm64) both sides need
// acquire loads first: refuse to build rather than misread entries.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "lbd supports x86-64 only: its lock-free tables rely on x86-64 load ordering; \
     other architectures need acquire loads on both the data plane's and lbd's side first"
);
pub mod api;
pub mod bgp;
pub(crate) mod clock;
pub mod config;
pub mod conntrack;
pub mod daemon;
pub mod dataplane;
pub(crate) mod ebpf_object;
pub mod flood;
pub(crate) mod fresh_file;
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
pub(crate) mod test_logs;
#[cfg(test)]
pub(crate) mod test_netns;
#[cfg(test)]
pub(crate) mod test_scratch;
pub(crate) mod tunnel;
pub mod vip_id;
pub mod vip_index;
pub mod vrrp;

/// This build's version: the crate's, and the commit it was built from
/// when built in git (`0.1.0+git<UTC commit date>.<hash>`, see
/// `lb_build::version`), so builds of one crate version can be told
/// apart: status `version`, `lbd_build_info`, the package's `Version:`.
pub const BUILD_VERSION: &str = env!("LB_BUILD_VERSION");

/// What `lbd --version` and `lbctl --version` print after the binary's
/// name: the version and the product they belong to.
pub const VERSION: &str = concat!(env!("LB_BUILD_VERSION"), " (lb, an eBPF/XDP load balancer)");

#[cfg(test)]
mod tests {
    /// Built from git, the version names the commit: two builds of one
    /// crate version are told apart (and ordered by the package).
    #[test]
    fn the_version_names_the_commit_built() {
        assert!(
            super::BUILD_VERSION.starts_with(env!("CARGO_PKG_VERSION")),
            "{}",
            super::BUILD_VERSION
        );
        assert!(super::VERSION.starts_with(super::BUILD_VERSION));
        let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let in_git = std::process::Command::new("git")
            .args(["-C", workspace, "rev-parse", "HEAD"])
            .output()
            .is_ok_and(|out| out.status.success());
        if in_git {
            let commit = super::BUILD_VERSION
                .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), "+git"))
                .unwrap_or_else(|| panic!("no commit in {}", super::BUILD_VERSION));
            assert!(commit.contains('.'), "{commit}");
        }
    }
}
