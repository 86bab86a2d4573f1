//! The desk: which reads of counts a census answers and which wait for the
//! next, as a state machine over time with no clock and no threads, so it
//! is tested apart from the walks that feed it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::Census;

/// How long after its start a census still answers a read (a table
/// whose walk takes longer gets twice its walk): fresh enough that a
/// status read just after flows opened shows them, and at most one walk
/// starts per this much time however often counts are read.
pub(crate) const FRESH: Duration = Duration::from_millis(250);

/// The reads of counts and the censuses that answer them, as a state
/// machine over time (no clock, no threads: [`Censuses`](super::Censuses) drives it).
/// `R` is a parked read (its answer's channel).
pub(crate) struct Desk<R> {
    /// The latest finished census.
    latest: Option<Arc<Census>>,
    /// When the census in flight started (at most one).
    in_flight: Option<Instant>,
    /// Reads waiting for a census, with when they came.
    waiting: Vec<(Instant, R)>,
}

impl<R> Default for Desk<R> {
    fn default() -> Self {
        Self {
            latest: None,
            in_flight: None,
            waiting: Vec::new(),
        }
    }
}

impl<R> Desk<R> {
    /// How long after its start a census answers a read: [`FRESH`], or
    /// twice the latest walk when that is longer.
    fn tolerance(&self) -> Duration {
        self.latest
            .as_ref()
            .map_or(FRESH, |latest| FRESH.max(latest.took.saturating_mul(2)))
    }

    /// Whether `census` answers a read that came at `came` while the
    /// newest drain (of a backend whose flows it counts) began at
    /// `drain`: it started at most the tolerance before the read, and
    /// after the drain.
    fn answers(&self, census: &Census, came: Instant, drain: Option<Instant>) -> bool {
        census.started + self.tolerance() >= came && drain.is_none_or(|d| census.started >= d)
    }

    /// A read at `now` (`drain`: see [`Desk::answers`]): answered from the
    /// latest census if that answers it, else parked.
    pub(crate) fn read(
        &mut self,
        now: Instant,
        drain: Option<Instant>,
        read: R,
    ) -> Option<(Arc<Census>, R)> {
        match &self.latest {
            Some(latest) if self.answers(latest, now, drain) => Some((Arc::clone(latest), read)),
            _ => {
                self.waiting.push((now, read));
                None
            }
        }
    }

    /// Whether a census is to start: a read waits and none is in flight.
    pub(crate) fn wants_census(&self) -> bool {
        !self.waiting.is_empty() && self.in_flight.is_none()
    }

    /// A census started at `at`.
    pub(crate) fn started(&mut self, at: Instant) {
        self.in_flight = Some(at);
    }

    /// Whether a census is in flight.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The census in flight ended with `census` (None: it failed): the
    /// waiting reads it answers (`drain` as of now), with it.
    pub(crate) fn finished(
        &mut self,
        census: Option<Census>,
        drain: Option<Instant>,
    ) -> Vec<(Arc<Census>, R)> {
        self.in_flight = None;
        let Some(census) = census else {
            return Vec::new();
        };
        let census = Arc::new(census);
        self.latest = Some(Arc::clone(&census));
        let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(came, _)| self.answers(&census, *came, drain));
        self.waiting = waiting;
        answered
            .into_iter()
            .map(|(_, read)| (Arc::clone(&census), read))
            .collect()
    }
}
