//! The clock the data plane stamps flows with, read from userspace: flow
//! ages, drain liveness and VRRP state files compare against it.

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_coarse_ns` reads (at
/// most one tick behind).
pub(crate) fn monotonic_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in ns: exactly what `bpf_ktime_get_coarse_ns`
/// reads now (both take the timekeeper's value of the last tick). A rank
/// word lbd stamps into the connection table must not be ahead of the
/// data plane's clock: the precise clock runs up to one kernel tick
/// ahead, and a way stamped one rank tick ahead looks aged past the
/// tick wrap, expired, to the data plane's eviction (`victim_order`).
pub(crate) fn monotonic_coarse_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
