//! A log rate limit: at most one line per interval for an event that
//! peers or strangers can repeat at will (failed installs, refused
//! handshakes), with the number left out since the last line.

use std::time::{Duration, Instant};

/// Lets one log line through per `every`; counts the others.
#[derive(Debug, Clone)]
pub(crate) struct LogLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of one line per `every`.
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log an event happening at `now`: `Some(n)` with the
    /// number of events left out since the last line, or `None` (counted).
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_rest_counted() {
        let mut limit = LogLimit::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(limit.allow(t), Some(0));
        assert_eq!(limit.allow(t + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t + Duration::from_secs(9)), None);
        assert_eq!(limit.allow(t + Duration::from_secs(10)), Some(2));
        assert_eq!(limit.allow(t + Duration::from_secs(11)), None);
    }
}
