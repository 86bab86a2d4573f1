//! Least privilege: once lbd has started (program loaded and attached, maps
//! filled, sockets bound), it keeps only the capabilities the running daemon
//! still uses ([`KEPT`], plus `CAP_NET_BIND_SERVICE` when a listener's port
//! is below 1024) and drops every other one from the effective, permitted,
//! inheritable, ambient and bounding sets, and sets `no_new_privs`, so a bug
//! in the admin API, the health checker or the replication channel cannot be
//! turned into more than the daemon needs — and neither can a program it
//! runs (VRRP's `notify`): with `no_new_privs`, an exec'd program gets at
//! most the kept set, never more through setuid or file capabilities.
//!
//! Capabilities belong to threads, not processes, and the tokio runtime's
//! threads exist long before start-up ends. [`drop_after_start`] changes the
//! calling thread itself and then every other thread of the process: each is
//! sent a signal whose handler makes the same (async-signal-safe) system
//! calls on its own thread, and the call returns only once
//! `/proc/self/task/*/status` shows every thread with the reduced sets.
//! Threads created later inherit them from their creator.
//!
//! Also here: who may use the admin socket ([`admin_socket_options`]).

use std::{
    io,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use caps::{CapSet, Capability};
use tracing::{info, warn};

use crate::config::Config;

/// What the running daemon keeps, each for what it does after start-up:
///
/// - `CAP_BPF`: every `bpf()` call on the maps (filling them on each change
///   and reload, reading counters, walking the connection table) when
///   `kernel.unprivileged_bpf_disabled` is set, as on Debian; before
///   Linux 6.5 even map reads through an open descriptor need it.
/// - `CAP_PERFMON`: with `CAP_BPF`, what the verifier asks of a program that
///   is loaded again (pinned programs, see `CAP_SYS_ADMIN`); kept only where
///   the kernel knows it.
/// - `CAP_NET_ADMIN`: VIP addresses added and removed over rtnetlink by
///   VRRP, the XDP program attached again or detached at shutdown.
/// - `CAP_NET_RAW`: VRRP's raw sockets, and a new packet socket for each
///   gratuitous ARP / unsolicited neighbour advertisement.
/// - `CAP_SYS_ADMIN`: pinning on and reopening from bpffs (`BPF_*_GET_FD_BY_ID`
///   needs it on every kernel), and the `bpf()` calls above on kernels older
///   than 5.8, which have no `CAP_BPF`. It is broad; it is kept because lbd
///   must be able to take its data plane back over without a restart.
pub const KEPT: &[Capability] = &[
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_SYS_ADMIN,
];

/// Kept as well when the metrics or sync listener is on a port below 1024.
pub const LOW_PORT: Capability = Capability::CAP_NET_BIND_SERVICE;

/// Used during start-up only, then dropped: `CAP_CHOWN` gives the admin
/// socket to `admin_socket_group`; `CAP_SETPCAP` lets lbd shrink its own
/// bounding set. A service manager that starts lbd with a reduced bounding
/// set must leave these in (see `deploy/systemd/lbd.service`).
pub(crate) const START_UP_ONLY: &[Capability] = &[Capability::CAP_CHOWN, Capability::CAP_SETPCAP];

/// Every capability lbd may use at some point: [`KEPT`], [`LOW_PORT`] and
/// [`START_UP_ONLY`]. The systemd unit's `CapabilityBoundingSet=` must be
/// exactly this (a test checks it), so there is one list.
pub fn service_capabilities() -> CapMask {
    let mut mask = CapMask::of(KEPT);
    mask.insert(LOW_PORT);
    mask.union(CapMask::of(START_UP_ONLY))
}

mod admin_socket;
mod mask;
#[cfg(test)]
mod tests;
mod threads;

use threads::Plan;

pub(crate) use admin_socket::admin_socket_options;
pub use admin_socket::group_id;
pub use mask::CapMask;
pub use threads::ThreadStatus;

/// The capabilities lbd keeps for `config`: [`KEPT`], and [`LOW_PORT`] if a
/// listener (metrics, connection-table sync) is on a port below 1024.
pub fn wanted(config: &Config) -> CapMask {
    let mut mask = CapMask::of(KEPT);
    let low = |port: u16| port != 0 && port < 1024;
    let mut ports = config
        .metrics_listen
        .iter()
        .map(std::net::SocketAddr::port)
        .chain(
            config
                .vrrp
                .iter()
                .filter_map(|v| v.sync_listen.map(|a| a.port())),
        );
    if ports.any(low) {
        mask.insert(LOW_PORT);
    }
    mask
}

/// Why privileges could not be dropped. lbd stops rather than run with more
/// than it should.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Reading the current capabilities failed.
    #[error("reading this thread's capabilities: {0}")]
    Read(#[from] caps::errors::CapsError),
    /// A system call changing capabilities failed.
    #[error("dropping capabilities: {what}: {source}")]
    Syscall {
        /// Which step.
        what: &'static str,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// Another thread did not take the reduced set in time.
    #[error("thread {tid} still has more than the kept capabilities after {after:?}")]
    Straggler {
        /// The thread.
        tid: i32,
        /// How long lbd waited.
        after: Duration,
    },
    /// It was tried twice (the first try may have been half done).
    #[error("privileges were already dropped (or dropping them failed before)")]
    AlreadyDone,
    /// lbd was started without what it needs to load and attach a program.
    #[error("{}", cannot_start_message(*uid, *missing))]
    CannotStart {
        /// The real user id lbd runs as.
        uid: u32,
        /// What it lacks of [`NEEDED_TO_START`].
        missing: CapMask,
    },
}

/// What lbd cannot start without: `CAP_BPF` for the maps and the program
/// (`CAP_SYS_ADMIN` stands in on kernels before 5.8) and `CAP_NET_ADMIN` to
/// attach it. Checked once, up front, so a start without them says so
/// instead of failing at the first `bpf()` call.
pub(crate) const NEEDED_TO_START: &[Capability] = &[Capability::CAP_BPF, Capability::CAP_NET_ADMIN];

/// What `effective` lacks to start lbd (empty: enough).
pub(crate) fn missing_to_start(effective: CapMask) -> CapMask {
    let mut missing = CapMask::of(NEEDED_TO_START).minus(effective);
    if effective.contains(Capability::CAP_SYS_ADMIN) {
        // Kernels before 5.8 know no CAP_BPF: CAP_SYS_ADMIN covers it.
        missing = missing.minus(CapMask::of(&[Capability::CAP_BPF]));
    }
    missing
}

/// The refusal of a start as `uid` without `missing`.
pub(crate) fn cannot_start_message(uid: u32, missing: CapMask) -> String {
    format!(
        "lbd needs root: it loads an XDP program and its maps (CAP_BPF) and attaches it to an \
         interface (CAP_NET_ADMIN), and it runs as uid {uid} without {missing}. Start it as root \
         (e.g. with sudo, or the systemd unit in deploy/systemd), or give it at least CAP_BPF and \
         CAP_NET_ADMIN (CAP_SYS_ADMIN too to pin the data plane)"
    )
}

/// Refuses to go on when this thread lacks what lbd needs to start (see
/// [`NEEDED_TO_START`]).
pub fn check_can_start() -> Result<(), PrivilegeError> {
    let effective = CapMask::from_set(&caps::read(None, CapSet::Effective)?);
    let missing = missing_to_start(effective);
    if missing == CapMask::default() {
        return Ok(());
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    Err(PrivilegeError::CannotStart { uid, missing })
}

/// What [`drop_after_start`] left in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Effective and permitted sets of every thread.
    pub kept: CapMask,
    /// The bounding set of every thread.
    pub bounding: CapMask,
    /// Wanted but not held to begin with (an old kernel, a restricted
    /// service manager): not kept.
    pub missing: CapMask,
}

/// Set by the first call: dropping is done once.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Drops every capability but [`wanted`]`(config)` from every thread of the
/// process, clears the inheritable and ambient sets, shrinks the bounding set
/// to the kept set and sets `no_new_privs`; logs what was kept. Call it once,
/// after start-up: nothing lbd does afterwards needs more.
///
/// Capabilities that were never held are reported as missing, not an error;
/// the bounding set is left alone (with a warning) if lbd was started without
/// `CAP_SETPCAP`, since `no_new_privs` already keeps exec'd programs at the
/// kept set.
pub fn drop_after_start(config: &Config) -> Result<Dropped, PrivilegeError> {
    if STARTED.swap(true, Ordering::SeqCst) {
        return Err(PrivilegeError::AlreadyDone);
    }
    let permitted = CapMask::from_set(&caps::read(None, CapSet::Permitted)?);
    let effective = CapMask::from_set(&caps::read(None, CapSet::Effective)?);
    let bounding = CapMask::from_set(&caps::read(None, CapSet::Bounding)?);
    let wanted = wanted(config);
    let keep = wanted.intersection(permitted);
    let missing = wanted.minus(permitted);
    let mut bounding_drop = bounding.minus(keep);
    if bounding_drop != CapMask::default() && !effective.contains(Capability::CAP_SETPCAP) {
        warn!(
            bounding = %bounding,
            "no CAP_SETPCAP: the bounding set stays as it is (no_new_privs still keeps programs lbd runs at the kept set)"
        );
        bounding_drop = CapMask::default();
    }
    let plan = Plan {
        keep,
        bounding: bounding.minus(bounding_drop),
    };
    threads::apply_everywhere(&plan, bounding_drop)?;
    info!(
        kept = %keep,
        missing = %missing,
        bounding = %plan.bounding,
        "capabilities dropped on every thread; no_new_privs set"
    );
    Ok(Dropped {
        kept: keep,
        bounding: plan.bounding,
        missing,
    })
}
