//! The log of a check's local failures (no port, descriptor or buffer on
//! this node): they move no streak, so they are warned of, rate-limited.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

/// How often at most a check that keeps failing for a local reason
/// (`FailureReason::Local`: no port, descriptor or buffer on this node)
/// warns: such a failure moves no streak, so the backend's health is
/// frozen meanwhile, and that must not go unseen.
pub(super) const LOCAL_WARN_EVERY: Duration = Duration::from_secs(60);

/// The log of one check's local failures: a warning at the first, then
/// at most one per [`LOCAL_WARN_EVERY`] while they go on, and a note
/// when checks run again.
#[derive(Debug, Default)]
pub(super) struct LocalFailures {
    /// When the current run of local failures began.
    since: Option<Instant>,
    /// When it was last warned of.
    warned: Option<Instant>,
    /// Local failures since that warning.
    unwarned: u64,
}

/// What to log for one probe result (see [`LocalFailures::on_result`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LocalLog {
    /// Nothing.
    Quiet,
    /// A warning: the check could not run (`repeated`: local failures
    /// since the last warning, this one included).
    Warn { repeated: u64 },
    /// Checks run again after local failures that lasted `after`.
    Recovered { after: Duration },
}

impl LocalFailures {
    /// Takes one probe result at `now`, `local` when it failed for a
    /// local reason; says what to log.
    pub(super) fn on_result(&mut self, local: bool, now: Instant) -> LocalLog {
        if !local {
            return match self.since.take() {
                Some(since) => {
                    *self = Self::default();
                    LocalLog::Recovered {
                        after: now.saturating_duration_since(since),
                    }
                }
                None => LocalLog::Quiet,
            };
        }
        self.since.get_or_insert(now);
        self.unwarned = self.unwarned.saturating_add(1);
        let due = self
            .warned
            .is_none_or(|at| now.saturating_duration_since(at) >= LOCAL_WARN_EVERY);
        if !due {
            return LocalLog::Quiet;
        }
        self.warned = Some(now);
        LocalLog::Warn {
            repeated: std::mem::take(&mut self.unwarned),
        }
    }
}
