//! Flood detection as a pure state machine: fed the data plane's counter
//! totals with the time they were read (`observe`), it says when the node
//! enters and leaves flood mode. No clock, no I/O: the driver
//! (`flood::FloodWatch`) reads the counters and logs the transitions.
//!
//! Signals, per second between two observations: SYNs held half-open
//! that no ACK took out (new minus promoted: a handshake a client
//! completes is taken out; a spoofed SYN never is) and half-open flows
//! evicted while still in time (the half-open table turning over faster
//! than handshakes complete). Either at or above its threshold enters
//! flood mode; it is left once both stayed below half their thresholds
//! for `calm` (hysteresis, so a flood that pulses does not flap).

use std::time::{Duration, Instant};

/// When the node is in flood mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodThresholds {
    /// Unanswered SYNs per second (held half-open, not promoted) that
    /// enter flood mode.
    pub unanswered_per_s: u64,
    /// Half-open flows evicted per second (displaced while still in
    /// time) that enter flood mode.
    pub evicted_per_s: u64,
    /// How long both rates must stay below half their thresholds before
    /// flood mode ends.
    pub calm: Duration,
}

impl Default for FloodThresholds {
    /// Far above what clients that complete their handshakes cause: a
    /// SYN without its ACK is a lost packet, a client that gave up or a
    /// port scan; thousands a second from them is an attack.
    fn default() -> Self {
        FloodThresholds {
            unanswered_per_s: 5_000,
            evicted_per_s: 500,
            calm: Duration::from_secs(30),
        }
    }
}

/// The counter totals the machine reads (summed over CPUs; they only grow
/// while one data plane runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HalfOpenTotals {
    /// `conntrack_half_open_new`.
    pub held: u64,
    /// `conntrack_half_open_promoted`.
    pub promoted: u64,
    /// `conntrack_half_open_evicted`.
    pub evicted: u64,
}

/// The rates of one observation interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FloodRates {
    /// Unanswered SYNs per second.
    pub unanswered_per_s: f64,
    /// Half-open flows evicted per second.
    pub evicted_per_s: f64,
}

/// Normal or under a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodState {
    /// No flood seen (or it has been calm long enough).
    Normal,
    /// A flood is on.
    Flood,
}

impl FloodState {
    /// The state's name in logs, status and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FloodState::Normal => "normal",
            FloodState::Flood => "flood",
        }
    }
}

/// A change of state, with what caused it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FloodTransition {
    /// Flood mode began: the rates of the interval that crossed a
    /// threshold.
    Entered(FloodRates),
    /// Flood mode ended after `lasted`; the rates of the last calm
    /// interval.
    Left {
        /// How long the flood lasted.
        lasted: Duration,
        /// The last interval's rates.
        rates: FloodRates,
    },
}

/// The machine.
#[derive(Debug, Clone)]
pub struct FloodMachine {
    thresholds: FloodThresholds,
    state: FloodState,
    /// The previous observation.
    last: Option<(Instant, HalfOpenTotals)>,
    /// When flood mode began.
    since: Option<Instant>,
    /// Since when the rates have been calm (in flood mode).
    calm_since: Option<Instant>,
    /// The latest interval's rates.
    rates: FloodRates,
    /// Transitions since start (both ways).
    transitions: u64,
}

impl FloodMachine {
    /// A machine in `Normal` with these thresholds.
    pub fn new(thresholds: FloodThresholds) -> Self {
        FloodMachine {
            thresholds,
            state: FloodState::Normal,
            last: None,
            since: None,
            calm_since: None,
            rates: FloodRates::default(),
            transitions: 0,
        }
    }

    /// Takes new thresholds; the state, the baseline and a flood going on
    /// stay (the next observation is judged by the new ones).
    pub fn set_thresholds(&mut self, thresholds: FloodThresholds) {
        self.thresholds = thresholds;
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> FloodThresholds {
        self.thresholds
    }

    /// The current state.
    pub fn state(&self) -> FloodState {
        self.state
    }

    /// The latest interval's rates.
    pub fn rates(&self) -> FloodRates {
        self.rates
    }

    /// Transitions since start.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Since when the current flood lasts (None: no flood).
    pub fn flood_since(&self) -> Option<Instant> {
        self.since
    }

    /// Takes the counter totals read at `now`; returns the transition
    /// they cause, if any. The first observation only sets the baseline;
    /// a total that went down (a new data plane's counters) starts a new
    /// baseline too.
    pub fn observe(&mut self, now: Instant, totals: HalfOpenTotals) -> Option<FloodTransition> {
        let previous = self.last.replace((now, totals));
        let (then, before) = previous?;
        let seconds = now.checked_duration_since(then)?.as_secs_f64();
        if seconds <= 0.0
            || totals.held < before.held
            || totals.promoted < before.promoted
            || totals.evicted < before.evicted
        {
            return None;
        }
        let held = totals.held - before.held;
        let promoted = totals.promoted - before.promoted;
        // An ACK may take out a flow held in the interval before: more
        // promotions than holds count as none unanswered.
        let unanswered = held.saturating_sub(promoted);
        let evicted = totals.evicted - before.evicted;
        self.rates = FloodRates {
            unanswered_per_s: unanswered as f64 / seconds,
            evicted_per_s: evicted as f64 / seconds,
        };
        let t = &self.thresholds;
        let over = self.rates.unanswered_per_s >= t.unanswered_per_s as f64
            || self.rates.evicted_per_s >= t.evicted_per_s as f64;
        let calm = self.rates.unanswered_per_s < t.unanswered_per_s as f64 / 2.0
            && self.rates.evicted_per_s < t.evicted_per_s as f64 / 2.0;
        match self.state {
            FloodState::Normal if over => {
                self.state = FloodState::Flood;
                self.since = Some(now);
                self.calm_since = None;
                self.transitions += 1;
                Some(FloodTransition::Entered(self.rates))
            }
            FloodState::Normal => None,
            FloodState::Flood if !calm => {
                self.calm_since = None;
                None
            }
            FloodState::Flood => {
                let calm_since = *self.calm_since.get_or_insert(then);
                if now.duration_since(calm_since) < t.calm {
                    return None;
                }
                let lasted = self.since.map_or(Duration::ZERO, |s| now.duration_since(s));
                self.state = FloodState::Normal;
                self.since = None;
                self.calm_since = None;
                self.transitions += 1;
                Some(FloodTransition::Left {
                    lasted,
                    rates: self.rates,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Feeds one observation a second: `held`, `promoted` and `evicted`
    /// per second; returns the transitions with the second they came at.
    struct Run {
        machine: FloodMachine,
        start: Instant,
        second: u32,
        totals: HalfOpenTotals,
    }

    impl Run {
        fn new() -> Self {
            let start = Instant::now();
            let mut machine = FloodMachine::new(FloodThresholds::default());
            assert_eq!(machine.observe(start, HalfOpenTotals::default()), None);
            Run {
                machine,
                start,
                second: 0,
                totals: HalfOpenTotals::default(),
            }
        }

        fn second(&mut self, held: u64, promoted: u64, evicted: u64) -> Option<FloodTransition> {
            self.second += 1;
            self.totals.held += held;
            self.totals.promoted += promoted;
            self.totals.evicted += evicted;
            self.machine
                .observe(self.start + S * self.second, self.totals)
        }
    }

    #[test]
    fn busy_clients_that_complete_their_handshakes_are_no_flood() {
        let mut run = Run::new();
        for _ in 0..120 {
            // 50,000 connections a second, 1 % of SYNs unanswered.
            assert_eq!(run.second(50_000, 49_500, 0), None);
        }
        assert_eq!(run.machine.state(), FloodState::Normal);
        assert_eq!(run.machine.transitions(), 0);
    }

    #[test]
    fn unanswered_syns_enter_flood_mode_and_calm_leaves_it_after_the_calm_period() {
        let mut run = Run::new();
        assert_eq!(run.second(1_000, 990, 0), None);
        let entered = run.second(80_000, 1_000, 0);
        assert!(
            matches!(entered, Some(FloodTransition::Entered(r)) if r.unanswered_per_s == 79_000.0),
            "{entered:?}"
        );
        assert_eq!(run.machine.state(), FloodState::Flood);
        // The flood goes on, then stops: 29 calm seconds are not enough.
        for _ in 0..10 {
            assert_eq!(run.second(80_000, 1_000, 20_000), None);
        }
        for _ in 0..29 {
            assert_eq!(run.second(1_000, 990, 0), None);
        }
        let left = run.second(1_000, 990, 0);
        assert!(
            matches!(left, Some(FloodTransition::Left { lasted, .. }) if lasted == 40 * S),
            "{left:?}"
        );
        assert_eq!(run.machine.state(), FloodState::Normal);
        assert_eq!(run.machine.transitions(), 2);
    }

    #[test]
    fn evictions_alone_enter_flood_mode() {
        let mut run = Run::new();
        // Handshakes complete, but the table turns over: flows displaced
        // in time.
        let entered = run.second(40_000, 40_000, 600);
        assert!(matches!(entered, Some(FloodTransition::Entered(_))));
    }

    #[test]
    fn a_flood_that_pulses_within_the_calm_period_does_not_flap() {
        let mut run = Run::new();
        assert!(run.second(100_000, 0, 0).is_some());
        for _ in 0..5 {
            for _ in 0..20 {
                assert_eq!(run.second(0, 0, 0), None);
            }
            // Between half the threshold and the threshold: not calm.
            assert_eq!(run.second(3_000, 0, 0), None);
        }
        assert_eq!(run.machine.state(), FloodState::Flood);
        assert_eq!(run.machine.transitions(), 1);
    }

    #[test]
    fn counters_that_go_down_start_a_new_baseline() {
        let mut run = Run::new();
        assert_eq!(run.second(1_000_000, 0, 0).map(|_| ()), Some(()));
        // A new data plane: its counters start again from zero.
        run.totals = HalfOpenTotals::default();
        assert_eq!(run.second(0, 0, 0), None);
        assert_eq!(run.machine.rates().unanswered_per_s, 1_000_000.0);
        assert_eq!(run.second(10, 10, 0), None);
        assert_eq!(run.machine.rates().unanswered_per_s, 0.0);
    }
}
