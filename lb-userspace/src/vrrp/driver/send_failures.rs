//! The rate limit of warnings about adverts that did not leave
//! ([`SendFailures`]): a small bookkeeping type, apart from the loop.

use std::time::{Duration, Instant};

use crate::sync::log_limit::LogLimit;

/// Least time between two warnings about adverts that did not leave: with
/// the link down every advert fails, up to 100 a second.
pub(super) const SEND_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The rate limit of the warnings about adverts that did not leave: the
/// first failure is said at once, then one line per
/// [`SEND_FAILURE_LOG_EVERY`] with those left unsaid, whether or not
/// adverts left in between (intermittent failures, a full buffer now and
/// then, are said no more often than a run of them). The first advert
/// that leaves after a run of failures that was warned about says how
/// many that run counted; after a run said nothing about, nothing is said
/// (its failures are counted in the next warning's unsaid ones).
#[derive(Debug, Clone)]
pub(super) struct SendFailures {
    limit: LogLimit,
    /// Failed sends since the last advert that left.
    failed: u64,
    /// A warning was said since the last advert that left.
    warned: bool,
}

impl Default for SendFailures {
    fn default() -> Self {
        Self {
            limit: LogLimit::new(SEND_FAILURE_LOG_EVERY),
            failed: 0,
            warned: false,
        }
    }
}

impl SendFailures {
    /// A send failed at `now`: `Some(n)` to warn, with `n` failures left
    /// unsaid since the last warning, or `None` (counted).
    pub(super) fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failed = self.failed.saturating_add(1);
        let warn = self.limit.allow(now);
        self.warned |= warn.is_some();
        warn
    }

    /// An advert left: `Some(n)` with the sends that failed before it, if
    /// a warning was said about them. The rate limit runs on.
    pub(super) fn sent(&mut self) -> Option<u64> {
        let failed = std::mem::take(&mut self.failed);
        std::mem::take(&mut self.warned).then_some(failed)
    }
}
