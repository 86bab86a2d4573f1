//! The reaper's pace: how long lbd waits after a tick before the next,
//! as Linux's conntrack `gc_worker` paces its scan. Each tick stays
//! bounded ([`TICK_BUDGET`](super::TICK_BUDGET) entries,
//! [`TICK_TIME`](super::TICK_TIME)); what changes is how often one runs: once a second ([`SLOW`]) while
//! there is little to free, every [`FAST`] while there is much.
//!
//! Why: at one tick a second the reaper frees at most about
//! `TICK_BUDGET / 1.5` flows a second (an expired flow costs one visit,
//! two when its reply entry comes up first), about 11,000; steady churn
//! of new flows above that (a UDP VIP, short connections) fills the table
//! whatever its size, and then new flows are dropped
//! (`drop_nat_table_full`). At the fast pace the budget is spent ten
//! times a second: about 160,000 entries a second, a million entries
//! swept in about 6 s (61 ticks, each followed by a [`FAST`] wait, plus
//! the ticks' own time).
//!
//! The fast pace holds while:
//! - the last tick was busy: of the entries it visited, at least
//!   [`BUSY_PER_MILLE`] per thousand were removed (expired, closed,
//!   orphaned, or their backend gone);
//! - the table is under pressure (`pressure`);
//! - a sweep is owed: a backend or VIP was removed (or a VIP left NAT
//!   mode), and its flows go only as the walk reaches them; fast until a
//!   sweep that started after the removal was seen has completed (which
//!   removes every one of them), so they go within about a sweep at the
//!   fast pace, not `entries / TICK_BUDGET` seconds.
//!
//! The cost to lbd's loop stays bounded: a tick runs for at most
//! `TICK_TIME` (and the batch under way when it ran out), and the wait
//! after it lets the loop serve everything else; at the fast pace the
//! reaper takes at most `TICK_TIME` of every `TICK_TIME + FAST`, 50 ms
//! of 150 ms (about 330 ms a second), and at the slow pace 50 ms a
//! second. A tick of the full budget costs less than its time bound: 23 ms
//! on average (40 ms at most) in a debug build on the lab's VM
//! (tests/tests/nat_runtime.rs prints it), about 190 ms a second at the
//! fast pace, and only while it finds work.
//!
//! A pure state machine: fed each tick's report, the start of the sweep
//! that ended in it, the pressure, and removals as they are seen, with
//! the time passed in.

use std::time::Duration;

use super::TickReport;

/// The wait after a tick while there is little to free: the housekeeping
/// pace.
pub(crate) const SLOW: Duration = Duration::from_secs(1);
/// The wait after a tick while there is much to free (from its end to the
/// next one's start, so the loop serves the rest in between).
pub(crate) const FAST: Duration = Duration::from_millis(100);
/// Entries removed per thousand visited from which a tick is busy: the
/// walk is finding work, so the next tick comes fast. Below it the slow
/// pace keeps up with what expires.
pub(crate) const BUSY_PER_MILLE: usize = 100;

/// The pace's state: whether a sweep is owed, and since when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pace {
    /// When a removal (of a backend or VIP) was last seen, monotonic ns:
    /// a sweep that started then or later must complete. None: no sweep
    /// owed.
    owed_since: Option<u64>,
    /// Whether the last tick was busy.
    busy: bool,
}

impl Pace {
    /// Notes that a backend or VIP was removed, as seen by the tick at
    /// `now_ns` (called before that tick, which already judges by the new
    /// backends): a sweep starting then or later is owed. A removal while
    /// one is owed moves it on (the sweep under way judged part of the
    /// table by the backends before).
    pub(crate) fn owe_sweep(&mut self, now_ns: u64) {
        self.owed_since = Some(now_ns);
    }

    /// Whether a sweep is owed.
    pub(crate) fn owed(&self) -> bool {
        self.owed_since.is_some()
    }

    /// Whether the last tick was busy.
    pub(crate) fn busy(&self) -> bool {
        self.busy
    }

    /// Takes the `report` of the tick that just ran (`swept_from_ns`: when
    /// the sweep that ended in it started, None if none ended), with the
    /// table under pressure or not (`pressed`); returns the wait before
    /// the next tick, [`FAST`] or [`SLOW`].
    pub(crate) fn after_tick(
        &mut self,
        report: &TickReport,
        swept_from_ns: Option<u64>,
        pressed: bool,
    ) -> Duration {
        if let (Some(owed), Some(started)) = (self.owed_since, swept_from_ns) {
            if started >= owed {
                self.owed_since = None;
            }
        }
        self.busy = report.removed > 0
            && report.removed.saturating_mul(1000) >= report.visited.saturating_mul(BUSY_PER_MILLE);
        if self.busy || pressed || self.owed() {
            FAST
        } else {
            SLOW
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn report(visited: usize, removed: usize, sweep_done: bool) -> TickReport {
        TickReport {
            visited,
            removed,
            sweep_done,
        }
    }

    #[test]
    fn a_tick_that_finds_much_to_free_brings_the_next_soon() {
        let mut pace = Pace::default();
        // Nothing, or little, removed: a second.
        assert_eq!(
            pace.after_tick(&report(16_384, 0, false), None, false),
            SLOW
        );
        assert_eq!(pace.after_tick(&report(1000, 99, false), None, false), SLOW);
        assert!(!pace.busy());
        // A tenth of the visits removed: fast, until a tick finds less.
        assert_eq!(
            pace.after_tick(&report(1000, 100, false), None, false),
            FAST
        );
        assert!(pace.busy());
        // More removed than visited (a flow's second entry goes unvisited).
        assert_eq!(pace.after_tick(&report(10, 20, true), Some(S), false), FAST);
        assert_eq!(
            pace.after_tick(&report(16_384, 3, false), None, false),
            SLOW
        );
        // An empty table (or a read that failed): a second.
        assert_eq!(pace.after_tick(&report(0, 0, true), Some(S), false), SLOW);
        // Under pressure: fast whatever the tick found.
        assert_eq!(pace.after_tick(&report(16_384, 0, false), None, true), FAST);
        assert_eq!(
            pace.after_tick(&report(16_384, 0, false), None, false),
            SLOW
        );
    }

    /// A removal makes a sweep owed: fast until a sweep that started at or
    /// after the tick that saw it has completed; the sweep under way (it
    /// judged part of the table by the backends before) does not count.
    #[test]
    fn a_removal_keeps_the_pace_fast_until_a_whole_sweep_after_it_ends() {
        let mut pace = Pace::default();
        let quiet = |done| report(16_384, 0, done);
        assert_eq!(pace.after_tick(&quiet(false), None, false), SLOW);
        // The sweep under way started at 5 s; a backend goes at 7 s.
        pace.owe_sweep(7 * S);
        assert!(pace.owed());
        assert_eq!(pace.after_tick(&quiet(false), None, false), FAST);
        // That sweep ends: it started before the removal, still owed.
        assert_eq!(pace.after_tick(&quiet(true), Some(5 * S), false), FAST);
        assert!(pace.owed());
        // The next one started at 8 s: fast through it, whatever it finds.
        for _ in 0..100 {
            assert_eq!(pace.after_tick(&quiet(false), None, false), FAST);
        }
        // Another removal meanwhile, at 9 s: the sweep from 8 s is not
        // enough any more.
        pace.owe_sweep(9 * S);
        assert_eq!(pace.after_tick(&quiet(true), Some(8 * S), false), FAST);
        assert!(pace.owed());
        // A sweep that started at the tick that saw it (9 s) pays it.
        assert_eq!(pace.after_tick(&quiet(true), Some(9 * S), false), SLOW);
        assert!(!pace.owed());
        assert_eq!(pace.after_tick(&quiet(false), None, false), SLOW);
    }
}
