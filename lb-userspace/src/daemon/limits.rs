//! The process limits lbd raises before it starts: open files (for many
//! backends) and locked memory (which older kernels charge BPF maps to).

use tracing::{info, warn};

/// Raises the soft open-file limit to the hard one (before privileges are
/// dropped, though it needs none) and logs the result: the default 1024 is
/// too few for a node with many backends, and the listeners' bounds (see
/// `slots`) are sized against what is left.
pub(super) fn raise_open_file_limit() {
    match crate::rlimit::raise_nofile() {
        Ok(limit) if limit.soft > limit.before => info!(
            soft = limit.soft,
            hard = limit.hard,
            was = limit.before,
            "open-file limit (RLIMIT_NOFILE) raised to the hard limit"
        ),
        Ok(limit) => info!(
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit (RLIMIT_NOFILE) already at the hard limit"
        ),
        Err(error) => warn!(%error, "could not raise the open-file limit (RLIMIT_NOFILE)"),
    }
}

/// Raises the locked-memory limit to unlimited (kernels before 5.11
/// charge the maps to it: `sudo lbd` would fail to create them with a
/// misleading EPERM), best effort: a newer kernel charges them to the
/// memory cgroup instead, so a failure is only worth a warning before
/// 5.11.
pub(super) fn raise_locked_memory_limit() {
    use aya::util::KernelVersion;
    match crate::rlimit::raise_memlock() {
        Ok(crate::rlimit::Memlock::Unlimited) => {
            tracing::debug!("locked-memory limit (RLIMIT_MEMLOCK) already unlimited");
        }
        Ok(crate::rlimit::Memlock::Raised { soft, hard }) => info!(
            was_soft = soft,
            was_hard = hard,
            "locked-memory limit (RLIMIT_MEMLOCK) raised to unlimited (kernels before 5.11 charge BPF maps to it)"
        ),
        Err(error) => {
            let charged = KernelVersion::current()
                .map_or(true, |version| version < KernelVersion::new(5, 11, 0));
            if charged {
                warn!(%error, "could not raise the locked-memory limit (RLIMIT_MEMLOCK) to unlimited: this kernel charges BPF maps to it, so creating them may fail with EPERM (raise it: `ulimit -l unlimited`, or LimitMEMLOCK=infinity as the systemd unit does)");
            } else {
                tracing::debug!(%error, "could not raise the locked-memory limit (RLIMIT_MEMLOCK); this kernel charges BPF maps to the memory cgroup instead");
            }
        }
    }
}
