//! After a stop's withdrawal: BIRD has taken it ("Reconfigured") when the
//! routers have not yet moved this node's flows away, so packets of
//! established flows keep arriving for a while (BGP UPDATEs sent,
//! received, the FIBs rewritten). A program detached at once would hand
//! them to the kernel, which has no such flows. The stop forwards on until
//! the withdrawn addresses' traffic has been quiet for [`QUIET`], or for
//! at most [`CAP`], and this is the decision, as a pure function of the
//! packet counts it samples.

use std::time::{Duration, Instant};

/// Traffic quiet this long after a withdrawal: the routers have moved it.
pub(crate) const QUIET: Duration = Duration::from_secs(1);
/// The longest a stop forwards on after its withdrawal: flows that keep
/// coming longer are not the routers converging (a router that ignores
/// the withdrawal, a static route), and the stop must end.
pub(crate) const CAP: Duration = Duration::from_secs(5);
/// How often the counters are sampled.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Why the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Converged {
    /// No packet for [`QUIET`]: `waited` after the withdrawal.
    Quiet {
        /// Since the withdrawal.
        waited: Duration,
    },
    /// Still forwarding after [`CAP`].
    Capped,
}

/// The wait after a withdrawal: the packet count last seen, and when it
/// last changed.
#[derive(Debug)]
pub(crate) struct Convergence {
    withdrawn: Instant,
    first: Option<u64>,
    packets: Option<u64>,
    changed: Instant,
}

impl Convergence {
    /// The wait after a withdrawal at `now`, with the withdrawn
    /// addresses' packet count then (None: it could not be read).
    pub(crate) fn new(now: Instant, packets: Option<u64>) -> Self {
        Self {
            withdrawn: now,
            first: packets,
            packets,
            changed: now,
        }
    }

    /// Takes the count sampled at `now`; returns why the wait ends, if it
    /// does. A count that could not be read counts as traffic (nothing
    /// says it was quiet), so the wait then runs to [`CAP`].
    pub(crate) fn observe(&mut self, packets: Option<u64>, now: Instant) -> Option<Converged> {
        if packets.is_none() || packets != self.packets {
            self.packets = packets;
            self.changed = now;
        }
        if now.saturating_duration_since(self.changed) >= QUIET {
            return Some(Converged::Quiet {
                waited: now.saturating_duration_since(self.withdrawn),
            });
        }
        (now.saturating_duration_since(self.withdrawn) >= CAP).then_some(Converged::Capped)
    }

    /// Packets forwarded for the withdrawn addresses since the withdrawal
    /// (None: a count could not be read).
    pub(crate) fn forwarded_since(&self) -> Option<u64> {
        Some(self.packets?.wrapping_sub(self.first?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_idle_node_waits_one_quiet_second() {
        let t0 = Instant::now();
        let mut wait = Convergence::new(t0, Some(7));
        assert_eq!(wait.observe(Some(7), t0 + 500 * MS), None);
        assert_eq!(
            wait.observe(Some(7), t0 + QUIET),
            Some(Converged::Quiet { waited: QUIET })
        );
        assert_eq!(wait.forwarded_since(), Some(0));
    }

    #[test]
    fn traffic_after_the_withdrawal_holds_the_detach_until_it_stops() {
        let t0 = Instant::now();
        let mut wait = Convergence::new(t0, Some(100));
        // The routers still send flows for 1.5 s.
        for (at, count) in [(500, 150), (1000, 200), (1500, 230)] {
            assert_eq!(wait.observe(Some(count), t0 + at * MS), None, "{at} ms");
        }
        assert_eq!(wait.observe(Some(230), t0 + 2400 * MS), None);
        assert_eq!(
            wait.observe(Some(230), t0 + 2500 * MS),
            Some(Converged::Quiet { waited: 2500 * MS })
        );
        assert_eq!(wait.forwarded_since(), Some(130));
    }

    #[test]
    fn traffic_that_never_stops_is_waited_for_no_longer_than_the_cap() {
        let t0 = Instant::now();
        let mut wait = Convergence::new(t0, Some(0));
        let mut at = Duration::ZERO;
        let mut count = 0;
        let ended = loop {
            at += POLL;
            count += 10;
            if let Some(end) = wait.observe(Some(count), t0 + at) {
                break (end, at);
            }
            assert!(at < CAP, "never ended");
        };
        assert_eq!(ended, (Converged::Capped, CAP));
    }

    #[test]
    fn counters_that_cannot_be_read_are_not_taken_for_quiet() {
        let t0 = Instant::now();
        let mut wait = Convergence::new(t0, None);
        assert_eq!(wait.observe(None, t0 + 2 * QUIET), None);
        assert_eq!(wait.observe(None, t0 + CAP), Some(Converged::Capped));
        assert_eq!(wait.forwarded_since(), None);
    }
}
