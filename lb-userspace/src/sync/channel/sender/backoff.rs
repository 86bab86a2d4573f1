//! The sender's reconnect delay ([`Backoff`]): apart because when a
//! session counts as healthy (and resets it) is its own rule, tested on
//! its own.

use std::time::Duration;

use super::super::Timing;

/// The sender's reconnect delay. Only a session that was healthy for a
/// silence period resets it (see [`Progress`](crate::sync::channel::session::Progress): both ways moving, up to
/// the last frame read and the last batch written): one cut right after
/// its handshake (a listener with no room) or whose writes never got
/// through (a receiver too slow for the dump: its write times out after
/// a silence period, so the session lasts that long, but was never
/// healthy) counts as a failure, or each reconnect, 100 ms after the
/// last, would publish a new session and make the daemon dump its whole
/// table again to that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::sync::channel) struct Backoff {
    timing: Timing,
    /// The delay before the next attempt.
    next: Duration,
    /// Attempts failed since the last healthy session (the first is
    /// logged as such, the others as repeats).
    failures: u64,
}

impl Backoff {
    pub(in crate::sync::channel) fn new(timing: Timing) -> Self {
        Self {
            timing,
            next: timing.backoff_min,
            failures: 0,
        }
    }

    /// After an attempt whose session was healthy for `healthy` (None:
    /// no session): the delay before the next, and whether the end is a
    /// repeat of the failure before (logged quieter).
    pub(in crate::sync::channel) fn after(
        &mut self,
        healthy: Option<Duration>,
    ) -> (Duration, bool) {
        if healthy.is_some_and(|up| up >= self.timing.silence) {
            self.next = self.timing.backoff_min;
            self.failures = 0;
        }
        let repeated = self.failures > 0;
        self.failures = self.failures.saturating_add(1);
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.timing.backoff_max);
        (delay, repeated)
    }
}
