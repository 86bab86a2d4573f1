//! Dropping capabilities on every thread of the process: the system calls
//! one thread makes on itself, and the signal that makes every other
//! thread make them too, until `/proc/self/task/*/status` shows it.

use std::{
    io,
    path::Path,
    sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use super::{CapMask, PrivilegeError};

/// How long [`super::drop_after_start`] waits for the other threads.
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

/// What every thread must show once done.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Effective and permitted sets.
    pub(super) keep: CapMask,
    /// The bounding set.
    pub(super) bounding: CapMask,
}

/// Applies `plan` on the calling thread, taking `bounding_drop` out of the
/// bounding set, then on every other thread of the process; returns once
/// every thread's status shows it.
pub(super) fn apply_everywhere(plan: &Plan, bounding_drop: CapMask) -> Result<(), PrivilegeError> {
    PLAN_KEEP.store(plan.keep.0, Ordering::SeqCst);
    PLAN_BOUNDING_DROP.store(bounding_drop.0, Ordering::SeqCst);
    apply(plan.keep.0, bounding_drop.0).map_err(|(what, errno)| PrivilegeError::Syscall {
        what,
        source: io::Error::from_raw_os_error(errno),
    })?;
    other_threads(plan)
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

/// This thread's last error number.
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
pub(super) fn apply(keep: u64, bounding_drop: u64) -> Result<(), (&'static str, i32)> {
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

/// Signals each other thread whose status does not show `plan` yet (again
/// every `RESIGNAL_INTERVAL`) until all do, a handler fails, or
/// `THREAD_TIMEOUT` passes.
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

    /// Whether the thread shows `plan` in force.
    pub(super) fn matches(&self, plan: &Plan) -> bool {
        self.effective == plan.keep
            && self.permitted == plan.keep
            && self.inheritable == CapMask::default()
            && self.ambient == CapMask::default()
            && self.bounding == plan.bounding
            && self.no_new_privs
    }
}
