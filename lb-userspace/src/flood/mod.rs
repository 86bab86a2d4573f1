//! Flood mode: lbd watches the half-open table's counters (SYNs held that
//! no ACK took out, half-open flows evicted in time) and says when a SYN
//! flood begins and ends: one log line per change, `lbctl status`, the
//! metrics `lbd_syn_flood` and `lbd_syn_flood_transitions_total` (an
//! alert rule and a dashboard panel ship in observability/). The decision
//! is the pure `machine`; this is its thin driver, called every
//! housekeeping tick with the counters the engine read. While a flood is
//! on, the data plane sends SYNs to the half-open table alone
//! (`CONFIG_F_SYN_FLOOD`), where otherwise a SYN takes a free way of the
//! connection table.

pub mod machine;

use std::time::Instant;

use lb_common::stats::Counter;
use tracing::{info, warn};

use self::machine::{FloodMachine, FloodState, FloodThresholds, FloodTransition, HalfOpenTotals};

/// The machine and what status and metrics show of it.
#[derive(Debug, Clone)]
pub struct FloodWatch {
    machine: FloodMachine,
    /// Flood mode as last written to the data plane
    /// (`CONFIG_F_SYN_FLOOD`); None until written once, so a node that
    /// adopted the maps of an lbd stopped during a flood clears the flag.
    written: Option<bool>,
}

impl Default for FloodWatch {
    fn default() -> Self {
        Self::new(FloodThresholds::default())
    }
}

impl FloodWatch {
    /// A watch in `Normal` with these thresholds.
    pub fn new(thresholds: FloodThresholds) -> Self {
        FloodWatch {
            machine: FloodMachine::new(thresholds),
            written: None,
        }
    }

    /// Takes new thresholds (a reload's `[flood]`): the next observation
    /// is judged by them; the state and the flood going on stay.
    pub fn set_thresholds(&mut self, thresholds: FloodThresholds) {
        self.machine.set_thresholds(thresholds);
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> FloodThresholds {
        self.machine.thresholds()
    }

    /// Feeds the node counters read at `now` (`Dataplane::counters`) to
    /// the machine and logs a change of state.
    pub fn observe(
        &mut self,
        now: Instant,
        counters: &[(Counter, u64)],
    ) -> Option<FloodTransition> {
        let total = |wanted: Counter| {
            counters
                .iter()
                .find(|(c, _)| *c == wanted)
                .map_or(0, |(_, v)| *v)
        };
        let totals = HalfOpenTotals {
            held: total(Counter::ConntrackHalfOpenNew),
            promoted: total(Counter::ConntrackHalfOpenPromoted),
            evicted: total(Counter::ConntrackHalfOpenEvicted),
        };
        let transition = self.machine.observe(now, totals)?;
        match transition {
            FloodTransition::Entered(rates) => warn!(
                unanswered_syn_per_s = rates.unanswered_per_s.round(),
                half_open_evicted_per_s = rates.evicted_per_s.round(),
                "SYN flood: entering flood mode (half-open flows are held apart; established flows keep their entries)"
            ),
            FloodTransition::Left { lasted, rates } => info!(
                lasted_s = lasted.as_secs(),
                unanswered_syn_per_s = rates.unanswered_per_s.round(),
                half_open_evicted_per_s = rates.evicted_per_s.round(),
                "SYN flood over: leaving flood mode"
            ),
        }
        Some(transition)
    }

    /// Flood mode for the data plane to take, if it differs from what was
    /// last written (`written`): SYNs go to the half-open table alone
    /// while a flood is on.
    pub fn unwritten_mode(&self) -> Option<bool> {
        let flood = self.in_flood();
        (self.written != Some(flood)).then_some(flood)
    }

    /// Records that the data plane took flood mode `flood`.
    pub fn mode_written(&mut self, flood: bool) {
        self.written = Some(flood);
    }

    /// Whether a flood is on.
    pub fn in_flood(&self) -> bool {
        self.machine.state() == FloodState::Flood
    }

    /// How long the current flood lasts, at `now` (None: no flood).
    pub fn flood_for(&self, now: Instant) -> Option<std::time::Duration> {
        self.machine
            .flood_since()
            .map(|since| now.saturating_duration_since(since))
    }

    /// Changes of state since start.
    pub fn transitions(&self) -> u64 {
        self.machine.transitions()
    }

    /// The latest interval's rates.
    pub fn rates(&self) -> machine::FloodRates {
        self.machine.rates()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn counters(held: u64, promoted: u64, evicted: u64) -> Vec<(Counter, u64)> {
        vec![
            (Counter::Forwarded, held),
            (Counter::ConntrackHalfOpenNew, held),
            (Counter::ConntrackHalfOpenPromoted, promoted),
            (Counter::ConntrackHalfOpenEvicted, evicted),
        ]
    }

    #[test]
    fn the_watch_reads_the_half_open_counters() {
        let mut watch = FloodWatch::default();
        let start = Instant::now();
        assert_eq!(watch.observe(start, &counters(0, 0, 0)), None);
        let entered = watch.observe(start + Duration::from_secs(1), &counters(90_000, 100, 0));
        assert!(matches!(entered, Some(FloodTransition::Entered(_))));
        assert!(watch.in_flood());
        assert_eq!(
            watch.flood_for(start + Duration::from_secs(5)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(watch.transitions(), 1);
        assert_eq!(watch.rates().unanswered_per_s, 89_900.0);
    }

    #[test]
    fn the_data_plane_is_given_flood_mode_once_per_change_and_at_start() {
        let mut watch = FloodWatch::default();
        let start = Instant::now();
        // At start: normal mode, still to be written (a flag an lbd
        // stopped in a flood left in the pinned maps is cleared).
        assert_eq!(watch.unwritten_mode(), Some(false));
        watch.mode_written(false);
        assert_eq!(watch.unwritten_mode(), None);
        watch.observe(start, &counters(0, 0, 0));
        watch.observe(start + Duration::from_secs(1), &counters(90_000, 0, 0));
        assert_eq!(watch.unwritten_mode(), Some(true));
        // A failed write is tried again: nothing recorded until it works.
        assert_eq!(watch.unwritten_mode(), Some(true));
        watch.mode_written(true);
        assert_eq!(watch.unwritten_mode(), None);
    }

    #[test]
    fn new_thresholds_judge_the_next_observation_and_keep_the_state() {
        let mut watch = FloodWatch::default();
        let start = Instant::now();
        let second = |n: u64| start + Duration::from_secs(n);
        assert_eq!(watch.observe(start, &counters(0, 0, 0)), None);
        // 1,000 unanswered SYNs a second: no flood by the defaults.
        assert_eq!(watch.observe(second(1), &counters(1_000, 0, 0)), None);
        let strict = FloodThresholds {
            unanswered_per_s: 500,
            evicted_per_s: 500,
            calm: Duration::from_secs(2),
        };
        watch.set_thresholds(strict);
        assert_eq!(watch.thresholds(), strict);
        let entered = watch.observe(second(2), &counters(2_000, 0, 0));
        assert!(matches!(entered, Some(FloodTransition::Entered(_))));
        // Back to the defaults: the flood stays on until calm by them
        // (under half of 5,000 a second), for the new calm period.
        watch.set_thresholds(FloodThresholds::default());
        assert!(watch.in_flood());
        assert_eq!(watch.observe(second(3), &counters(3_000, 0, 0)), None);
        assert_eq!(watch.observe(second(30), &counters(3_000, 0, 0)), None);
        let left = watch.observe(second(34), &counters(3_000, 0, 0));
        assert!(
            matches!(left, Some(FloodTransition::Left { .. })),
            "{left:?}"
        );
    }
}
