//! The clock the data plane stamps flows with, read from userspace: flow
//! ages, drain liveness and VRRP state files compare against it.

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_coarse_ns` reads (at
/// most one tick behind).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
