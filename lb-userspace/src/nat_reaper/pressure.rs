//! Pressure on the NAT flow table: when a sweep finds it nearly full,
//! closed flows are freed after [`PRESSED_CLOSED_TIMEOUT`] instead of
//! `tcp_closed_timeout_s`, so a burst of short connections reclaims the
//! finished ones before new flows would be dropped (`drop_nat_table_full`),
//! as the kernel's conntrack drops unassured entries early when full.
//!
//! A pure state machine fed each complete sweep and the time: it comes on
//! at [`ON_PER_MILLE`] of the table and goes off only once a sweep finds
//! less than [`OFF_PER_MILLE`] and [`HOLD`] has passed since one found it
//! nearly full. Freeing closed flows early empties the table, so without
//! the hold the pressure would go off at once, the table refill, and new
//! flows stall again at every refill.

use std::time::Duration;

use super::SweepStats;
use crate::config::NatTimeouts;

/// Share of the table's entries (per mille, as a sweep counted them) at
/// which the pressure comes on.
pub const ON_PER_MILLE: u64 = 900;
/// Below this share, and [`HOLD`] after the table was last nearly full,
/// it goes off.
pub const OFF_PER_MILLE: u64 = 750;
/// How long the pressure stays on after a sweep last found the table
/// nearly full.
pub const HOLD: Duration = Duration::from_secs(60);
/// The closed-flow timeout under pressure: a late retransmission of the
/// last FIN or ACK of a flow closed longer ago than this finds no
/// translation (the backend's socket then times out or is reset), a
/// cheaper loss than refusing new connections.
pub const PRESSED_CLOSED_TIMEOUT: Duration = Duration::from_secs(1);

/// `timeouts` under pressure: closed flows go after
/// [`PRESSED_CLOSED_TIMEOUT`] (or sooner if so configured); every other
/// state keeps its timeout.
pub fn pressed(timeouts: &NatTimeouts) -> NatTimeouts {
    NatTimeouts {
        tcp_closed: timeouts.tcp_closed.min(PRESSED_CLOSED_TIMEOUT),
        ..*timeouts
    }
}

/// Whether the table is under pressure, and since when it was last nearly
/// full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// When a sweep last found the table nearly full (monotonic ns); None
    /// while the pressure is off.
    last_full_ns: Option<u64>,
}

impl Pressure {
    /// Whether the pressure is on.
    pub fn on(&self) -> bool {
        self.last_full_ns.is_some()
    }

    /// Takes the findings of a complete `sweep` of a table of `capacity`
    /// entries at `now_ns`; returns the new state when it changed.
    pub fn sweep_done(&mut self, sweep: &SweepStats, capacity: u32, now_ns: u64) -> Option<bool> {
        let was = self.on();
        let per_mille = sweep.entries() * 1000 / u64::from(capacity.max(1));
        if per_mille >= ON_PER_MILLE {
            self.last_full_ns = Some(now_ns);
        } else if let Some(full) = self.last_full_ns {
            let held = Duration::from_nanos(now_ns.saturating_sub(full)) >= HOLD;
            if per_mille < OFF_PER_MILLE && held {
                self.last_full_ns = None;
            }
        }
        (self.on() != was).then_some(self.on())
    }

    /// The timeouts to reap with: `configured`, or pressed.
    pub fn timeouts(&self, configured: &NatTimeouts) -> NatTimeouts {
        if self.on() {
            pressed(configured)
        } else {
            *configured
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn sweep(flows: u64) -> SweepStats {
        SweepStats {
            flows: BTreeMap::from([("closed", flows)]),
            ..SweepStats::default()
        }
    }

    #[test]
    fn comes_on_at_nine_tenths_and_goes_below_three_quarters_after_the_hold() {
        let capacity = 1000;
        let mut p = Pressure::default();
        // Two entries a flow: 449 flows = 898 entries, 450 = 900.
        assert_eq!(p.sweep_done(&sweep(449), capacity, S), None);
        assert!(!p.on());
        assert_eq!(p.sweep_done(&sweep(450), capacity, 2 * S), Some(true));
        // Emptied by the early reaping: still on within the hold.
        assert_eq!(p.sweep_done(&sweep(10), capacity, 3 * S), None);
        assert!(p.on());
        // Past the hold but still above three quarters: on.
        let later = 2 * S + HOLD.as_nanos() as u64;
        assert_eq!(p.sweep_done(&sweep(375), capacity, later), None);
        // Past the hold and below three quarters: off.
        assert_eq!(p.sweep_done(&sweep(374), capacity, later + S), Some(false));
        assert!(!p.on());
        // Nearly full again restarts the hold.
        assert_eq!(
            p.sweep_done(&sweep(460), capacity, later + 2 * S),
            Some(true)
        );
        assert_eq!(p.sweep_done(&sweep(0), capacity, later + 3 * S), None);
        assert!(p.on());
        // A zero capacity never divides by zero.
        let mut z = Pressure::default();
        assert_eq!(z.sweep_done(&sweep(1), 0, S), Some(true));
    }

    #[test]
    fn only_the_closed_timeout_shortens_and_never_lengthens() {
        let t = NatTimeouts::default();
        let mut p = Pressure::default();
        assert_eq!(p.timeouts(&t), t);
        p.sweep_done(&sweep(1000), 1000, S);
        let under = p.timeouts(&t);
        assert_eq!(under.tcp_closed, PRESSED_CLOSED_TIMEOUT);
        assert_eq!(
            NatTimeouts {
                tcp_closed: t.tcp_closed,
                ..under
            },
            t
        );
        let short = NatTimeouts {
            tcp_closed: Duration::from_millis(300),
            ..t
        };
        assert_eq!(pressed(&short).tcp_closed, Duration::from_millis(300));
    }
}
