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
    fmt, io,
    path::Path,
    sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use caps::{CapSet, Capability};
use tracing::{info, warn};

use crate::{
    api::server::ServeOptions,
    config::{AdminSocketGroup, Config},
};

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

/// A set of capabilities as the kernel writes it: bit n is capability n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapMask(pub u64);

impl CapMask {
    /// The set of `capabilities`.
    pub fn of(capabilities: &[Capability]) -> Self {
        Self(capabilities.iter().fold(0, |m, c| m | c.bitmask()))
    }

    /// Adds `capability`.
    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bitmask();
    }

    /// Whether `capability` is in the set.
    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bitmask() != 0
    }

    /// Both sets together.
    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// What both sets have.
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// What `self` has and `other` has not.
    pub fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The capabilities, lowest number first (named ones only).
    pub fn capabilities(self) -> Vec<Capability> {
        let mut all: Vec<Capability> = caps::all()
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect();
        all.sort_by_key(Capability::index);
        all
    }

    /// The set of a `caps` hash set.
    fn from_set(set: &caps::CapsHashSet) -> Self {
        Self(set.iter().fold(0, |m, c| m | c.bitmask()))
    }
}

impl fmt::Display for CapMask {
    /// `CAP_BPF,CAP_NET_ADMIN` (`none` when empty), for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .capabilities()
            .iter()
            .map(ToString::to_string)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

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

/// How long [`drop_after_start`] waits for the other threads.
const THREAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a thread that has not changed yet is signalled again.
const RESIGNAL_INTERVAL: Duration = Duration::from_millis(50);

/// The plan the signal handler applies: the kept set, and the capabilities to
/// take out of the bounding set.
static PLAN_KEEP: AtomicU64 = AtomicU64::new(0);
static PLAN_BOUNDING_DROP: AtomicU64 = AtomicU64::new(0);
/// Threads whose handler failed, and the last error number.
static HANDLER_FAILURES: AtomicUsize = AtomicUsize::new(0);
static HANDLER_ERRNO: AtomicI32 = AtomicI32::new(0);
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
    PLAN_KEEP.store(keep.0, Ordering::SeqCst);
    PLAN_BOUNDING_DROP.store(bounding_drop.0, Ordering::SeqCst);

    apply(keep.0, bounding_drop.0).map_err(|(what, errno)| PrivilegeError::Syscall {
        what,
        source: io::Error::from_raw_os_error(errno),
    })?;
    other_threads(&plan)?;
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

/// What every thread must show once done.
#[derive(Debug, Clone, Copy)]
struct Plan {
    keep: CapMask,
    bounding: CapMask,
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The calling thread: takes `bounding_drop` out of its bounding set (while
/// it still has `CAP_SETPCAP`), clears its ambient set, sets effective and
/// permitted to `keep` and inheritable to nothing, then sets `no_new_privs`.
/// Only system calls, no allocation and no locks: it runs in a signal
/// handler. Applying it again changes nothing and succeeds: the plan's
/// signal is a real-time one, so a thread not scheduled before it is
/// signalled again gets it twice, and by then it has no `CAP_SETPCAP` to
/// drop with (only capabilities still in the set are dropped). On
/// failure: the step and the error number.
fn apply(keep: u64, bounding_drop: u64) -> Result<(), (&'static str, i32)> {
    for cap in 0..64u32 {
        // SAFETY: prctl with integer arguments only.
        let present =
            unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) } == 1;
        if bounding_drop >> cap & 1 == 1 && present {
            // SAFETY: prctl with integer arguments only.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc != 0 {
                return Err(("shrinking the bounding set", errno()));
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // EINVAL: a kernel without ambient capabilities (before 4.3): nothing to clear.
    if rc != 0 && errno() != libc::EINVAL {
        return Err(("clearing the ambient set", errno()));
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |shift: u32| {
        let bits = u32::try_from(keep >> shift & 0xffff_ffff).unwrap_or(0);
        CapData {
            effective: bits,
            permitted: bits,
            inheritable: 0,
        }
    };
    let data = [word(0), word(32)];
    // SAFETY: capset(2) reads a version-3 header and two data structs, both ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::addr_of_mut!(header),
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err((
            "setting the effective, permitted and inheritable sets",
            errno(),
        ));
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(("setting no_new_privs", errno()));
    }
    Ok(())
}

/// The signal handler: applies the plan on the thread it interrupts.
extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: errno is this thread's; saved and restored around the calls.
    let saved = unsafe { *libc::__errno_location() };
    let keep = PLAN_KEEP.load(Ordering::SeqCst);
    let bounding_drop = PLAN_BOUNDING_DROP.load(Ordering::SeqCst);
    if let Err((_, errno)) = apply(keep, bounding_drop) {
        HANDLER_ERRNO.store(errno, Ordering::SeqCst);
        HANDLER_FAILURES.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The signal that carries the plan to the other threads: a real-time signal
/// nothing else in lbd uses.
fn plan_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// Sets `handler` for the plan's signal.
fn set_handler(handler: libc::sighandler_t) -> Result<(), PrivilegeError> {
    // SAFETY: a zeroed sigaction is valid; fields set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: sigemptyset on our own struct; sigaction with valid pointers.
    let rc = unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(plan_signal(), &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(PrivilegeError::Syscall {
            what: "installing the signal handler",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Brings every other thread to the plan: signals each one whose status does
/// not show it yet, until all do.
fn other_threads(plan: &Plan) -> Result<(), PrivilegeError> {
    set_handler(on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t)?;
    let result = signal_until_done(plan);
    // Every thread is done (or lbd stops): a late signal is ignored.
    let restored = set_handler(libc::SIG_IGN);
    result.and(restored)
}

fn signal_until_done(plan: &Plan) -> Result<(), PrivilegeError> {
    // SAFETY: getpid and gettid cannot fail.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let started = Instant::now();
    let mut signalled: Vec<(i32, Instant)> = Vec::new();
    loop {
        if HANDLER_FAILURES.load(Ordering::SeqCst) > 0 {
            return Err(PrivilegeError::Syscall {
                what: "on another thread",
                source: io::Error::from_raw_os_error(HANDLER_ERRNO.load(Ordering::SeqCst)),
            });
        }
        let mut behind = None;
        for tid in threads(Path::new("/proc/self/task")) {
            if tid == me {
                continue;
            }
            let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
            else {
                continue; // gone meanwhile
            };
            if ThreadStatus::parse(&status).is_some_and(|s| s.matches(plan)) {
                continue;
            }
            behind = Some(tid);
            let last = signalled.iter_mut().find(|(t, _)| *t == tid);
            let due = last
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= RESIGNAL_INTERVAL);
            if due {
                // SAFETY: tgkill to a thread of our own process; ESRCH (gone) is fine.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, plan_signal()) };
                match last {
                    Some((_, at)) => *at = Instant::now(),
                    None => signalled.push((tid, Instant::now())),
                }
            }
        }
        let Some(tid) = behind else {
            return Ok(());
        };
        if started.elapsed() > THREAD_TIMEOUT {
            return Err(PrivilegeError::Straggler {
                tid,
                after: THREAD_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The thread ids under a `/proc/<pid>/task` directory.
fn threads(dir: &Path) -> Vec<i32> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The privilege lines of a `/proc/<pid>/status` (or a task's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadStatus {
    /// `CapInh`.
    pub inheritable: CapMask,
    /// `CapPrm`.
    pub permitted: CapMask,
    /// `CapEff`.
    pub effective: CapMask,
    /// `CapBnd`.
    pub bounding: CapMask,
    /// `CapAmb` (empty on kernels without it).
    pub ambient: CapMask,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
}

impl ThreadStatus {
    /// Reads the lines out of the text of a status file; `None` if the
    /// capability lines are not all there.
    pub fn parse(text: &str) -> Option<Self> {
        let mut status = Self::default();
        let mut seen = 0;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let mask = || u64::from_str_radix(value, 16).ok().map(CapMask);
            match key {
                "CapInh" => status.inheritable = mask()?,
                "CapPrm" => status.permitted = mask()?,
                "CapEff" => status.effective = mask()?,
                "CapBnd" => status.bounding = mask()?,
                "CapAmb" => {
                    status.ambient = mask()?;
                    continue;
                }
                "NoNewPrivs" => {
                    status.no_new_privs = value == "1";
                    continue;
                }
                _ => continue,
            }
            seen += 1;
        }
        (seen == 4).then_some(status)
    }

    fn matches(&self, plan: &Plan) -> bool {
        self.effective == plan.keep
            && self.permitted == plan.keep
            && self.inheritable == CapMask::default()
            && self.ambient == CapMask::default()
            && self.bounding == plan.bounding
            && self.no_new_privs
    }
}

/// Who may connect to the admin socket: root only (mode 0600), or root and
/// the members of `admin_socket_group` (mode 0660, the socket's group set to
/// it). A group that does not exist is an error: lbd does not start with a
/// socket other than the one configured.
pub(crate) fn admin_socket_options(config: &Config) -> anyhow::Result<ServeOptions> {
    let Some(group) = &config.admin_socket_group else {
        return Ok(ServeOptions::default());
    };
    let gid = match group {
        AdminSocketGroup::Gid(gid) => *gid,
        AdminSocketGroup::Name(name) => group_id(name)?.ok_or_else(|| {
            anyhow::anyhow!("admin_socket_group: there is no group named {name:?}")
        })?,
    };
    Ok(ServeOptions {
        mode: 0o660,
        group: Some(gid),
        ..ServeOptions::default()
    })
}

/// The id of group `name` from the system's group database (`/etc/group`,
/// or whatever NSS is set up with); `None` if there is no such group.
pub fn group_id(name: &str) -> anyhow::Result<Option<u32>> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| anyhow::anyhow!("group name {name:?} contains a NUL byte"))?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: a zeroed group struct is valid; getgrnam_r fills it with
        // pointers into `buffer`, which outlives every use.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and `buffer.len()` is its size.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(group.gr_gid)),
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 4, 0),
            // Some NSS modules answer "not found" with an error number.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => {
                return Err(anyhow::anyhow!(
                    "looking up group {name:?}: {}",
                    io::Error::from_raw_os_error(errno)
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applying the plan twice on one thread (a re-sent signal queued
    /// behind the first) succeeds and leaves the thread as once. Runs on a
    /// thread of its own (capabilities are per thread), as root.
    #[test]
    fn the_plan_applied_twice_on_a_thread_succeeds() {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let keep = 1u64 << 21; // CAP_SYS_ADMIN
        let drop = 1u64 << 31 | 1u64 << 8; // CAP_SETFCAP, CAP_SETPCAP
        let (first, second, status) = std::thread::spawn(move || {
            let first = apply(keep, drop);
            let second = apply(keep, drop);
            // SAFETY: gettid cannot fail.
            let tid = unsafe { libc::gettid() };
            let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
                .expect("own status");
            (first, second, status)
        })
        .join()
        .expect("thread");
        assert_eq!(first, Ok(()));
        assert_eq!(second, Ok(()), "applied again");
        let status = ThreadStatus::parse(&status).expect("capability lines");
        assert_eq!(status.effective, CapMask(keep));
        assert_eq!(status.permitted, CapMask(keep));
        assert_eq!(status.bounding.0 & drop, 0);
        assert!(status.no_new_privs);
    }

    #[test]
    fn a_start_needs_cap_bpf_and_cap_net_admin() {
        let none = CapMask::default();
        assert_eq!(missing_to_start(none), CapMask::of(NEEDED_TO_START));
        assert_eq!(
            missing_to_start(CapMask::of(&[
                Capability::CAP_BPF,
                Capability::CAP_NET_ADMIN
            ])),
            none
        );
        assert_eq!(
            missing_to_start(CapMask::of(&[Capability::CAP_BPF])),
            CapMask::of(&[Capability::CAP_NET_ADMIN])
        );
        // Before Linux 5.8, CAP_SYS_ADMIN does what CAP_BPF does now.
        assert_eq!(
            missing_to_start(CapMask::of(&[
                Capability::CAP_SYS_ADMIN,
                Capability::CAP_NET_ADMIN
            ])),
            none
        );
    }

    #[test]
    fn the_refusal_says_root_and_what_is_missing_in_one_line() {
        let message = cannot_start_message(65534, CapMask::of(NEEDED_TO_START));
        assert!(message.starts_with("lbd needs root"), "{message}");
        assert!(
            message.contains("uid 65534 without CAP_NET_ADMIN,CAP_BPF"),
            "{message}"
        );
        assert_eq!(message.lines().count(), 1);
    }

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!("interface = \"eth0\"\n{extra}"), "test").unwrap()
    }

    #[test]
    fn the_kept_set_adds_net_bind_service_only_for_a_low_port() {
        let base = CapMask::of(KEPT);
        assert_eq!(wanted(&config("")), base, "default metrics port 9641");
        assert_eq!(wanted(&config("metrics_listen = \"off\"\n")), base);
        let mut low = base;
        low.insert(LOW_PORT);
        assert_eq!(wanted(&config("metrics_listen = \"127.0.0.1:641\"\n")), low);
        assert_eq!(
            wanted(&config("metrics_listen = \"127.0.0.1:1024\"\n")),
            base
        );
        let sync = "[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vrrp]]\nvrid = 1\npriority = 100\n\
            sync_listen = \"198.18.0.2:540\"\nsync_peer = \"198.18.0.3:7540\"\nsync_key_file = \"/etc/lbd/sync.key\"\n";
        assert_eq!(wanted(&config(sync)), low);
    }

    #[test]
    fn masks_print_and_combine() {
        let mask = CapMask::of(&[Capability::CAP_NET_RAW, Capability::CAP_BPF]);
        assert_eq!(mask.to_string(), "CAP_NET_RAW,CAP_BPF");
        assert_eq!(CapMask::default().to_string(), "none");
        assert_eq!(mask.0, 1 << 13 | 1 << 39);
        assert_eq!(
            mask.minus(CapMask::of(&[Capability::CAP_BPF])),
            CapMask::of(&[Capability::CAP_NET_RAW])
        );
        let service = service_capabilities();
        for cap in KEPT.iter().chain(START_UP_ONLY).chain([&LOW_PORT]) {
            assert!(service.contains(*cap), "{cap}");
        }
        assert_eq!(
            service.capabilities().len(),
            KEPT.len() + START_UP_ONLY.len() + 1
        );
    }

    /// The values of `key=` lines in a unit file, split on whitespace.
    fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .flat_map(str::split_whitespace)
            .collect()
    }

    #[test]
    fn the_systemd_unit_allows_exactly_the_capabilities_lbd_uses() {
        let unit = include_str!("../../deploy/systemd/lbd.service");
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            let names = unit_values(unit, key);
            let mut mask = CapMask::default();
            for name in &names {
                let cap: Capability = name.parse().unwrap_or_else(|_| panic!("{key}: {name}"));
                assert!(!mask.contains(cap), "{key}: {name} twice");
                mask.insert(cap);
            }
            assert_eq!(mask, service_capabilities(), "{key} is {mask}");
        }
        assert_eq!(unit_values(unit, "NoNewPrivileges"), ["yes"]);
        assert_eq!(
            unit_values(unit, "ExecStart"),
            ["/usr/local/sbin/lbd", "--config", "/etc/lbd/lbd.toml"]
        );
        assert_eq!(
            unit_values(unit, "ExecStopPost"),
            [
                "/usr/local/sbin/lbd",
                "--config",
                "/etc/lbd/lbd.toml",
                "--release-vips"
            ]
        );
        // Open files for a node with every backend checked at once (4095),
        // both listeners full (64 each) and the maps.
        let nofile: Vec<u64> = unit_values(unit, "LimitNOFILE")
            .iter()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        assert!(
            matches!(nofile[..], [n] if n >= 8192),
            "LimitNOFILE={nofile:?}"
        );
        // The families lbd opens sockets of, and no others.
        assert_eq!(
            unit_values(unit, "RestrictAddressFamilies"),
            ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"]
        );
    }

    #[test]
    fn status_lines_are_read() {
        let text =
            "Name:\tlbd\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t000000c000203000\n\
            CapEff:\t000000c000203000\nCapBnd:\t000000c000203000\nCapAmb:\t0000000000000000\n\
            NoNewPrivs:\t1\nSeccomp:\t0\n";
        let status = ThreadStatus::parse(text).unwrap();
        assert_eq!(status.effective, CapMask(0xc0_0020_3000));
        assert_eq!(status.effective, CapMask::of(KEPT));
        assert!(status.no_new_privs);
        assert_eq!(status.ambient, CapMask::default());
        let plan = Plan {
            keep: CapMask::of(KEPT),
            bounding: CapMask::of(KEPT),
        };
        assert!(status.matches(&plan));
        let not_yet = text.replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        assert!(!ThreadStatus::parse(&not_yet).unwrap().matches(&plan));
        assert_eq!(ThreadStatus::parse("CapEff:\t0\n"), None);
        assert_eq!(ThreadStatus::parse(&text.replace("c000203000", "zz")), None);
    }

    #[test]
    fn groups_resolve_by_name_and_id() {
        // Every system has group "root" with id 0.
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-lbd-test").unwrap(), None);
        let options = admin_socket_options(&config("admin_socket_group = \"root\"\n")).unwrap();
        assert_eq!((options.mode, options.group), (0o660, Some(0)));
        let options = admin_socket_options(&config("admin_socket_group = 1234\n")).unwrap();
        assert_eq!((options.mode, options.group), (0o660, Some(1234)));
        let options = admin_socket_options(&config("")).unwrap();
        assert_eq!((options.mode, options.group), (0o600, None));
        let error = admin_socket_options(&config("admin_socket_group = \"no-such-group-lbd\"\n"))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "admin_socket_group: there is no group named \"no-such-group-lbd\""
        );
    }
}
