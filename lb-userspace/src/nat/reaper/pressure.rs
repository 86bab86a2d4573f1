//! Pressure on the NAT flow table: when a sweep finds it nearly full,
//! closed flows (after both FINs or an RST) are freed after
//! [`PRESSED_CLOSED_TIMEOUT`] instead of `tcp_time_wait_timeout_s` /
//! `tcp_closed_timeout_s`, so a burst of short connections reclaims the
//! finished ones before new flows would be dropped (`drop_nat_table_full`),
//! and unanswered flows (TCP SYN sent, UDP the backend never answered)
//! after [`PRESSED_UNREPLIED_TIMEOUT`] instead of `tcp_syn_timeout_s` /
//! `udp_timeout_s`, so a SYN flood or half-open flows filling the table
//! or a backend's ports get relief too, as the kernel's conntrack drops
//! unassured entries early when full. Established flows and answered UDP
//! keep their timeouts.
//! The same goes for a NAT address's source ports towards one backend: a
//! closed flow holds its port for the backend's TIME_WAIT
//! (`tcp_time_wait_timeout_s`), and a backend busier than the range
//! allows for that long would otherwise have its new flows dropped
//! (`drop_nat_ports_exhausted`); so the fuller of the two, table or
//! busiest port range, drives the pressure.
//!
//! A pure state machine fed each complete sweep and the time: it comes on
//! at [`ON_PER_MILLE`] of the table (or [`PORTS_ON_PER_MILLE`] of the
//! busiest port range) and goes off only once a sweep finds both below
//! [`OFF_PER_MILLE`] and [`PORTS_OFF_PER_MILLE`] and [`HOLD`] has passed
//! since one found either nearly full. A port range starts failing new
//! flows sooner than the table: the data plane tries 17 ports of it, so
//! in a range kept 70 % used about 0.25 % of new flows find none free,
//! 2.3 % at 80 % and 17 % at 90 % (`lb_common::nat_ports`' model). Freeing closed flows early empties the table, so without
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
/// Share of the busiest source port range (per mille) at which the
/// pressure comes on: where the port search starts to fail new flows.
pub const PORTS_ON_PER_MILLE: u64 = 700;
/// Below this share of the busiest range (and of the table, and after
/// [`HOLD`]) it goes off.
pub const PORTS_OFF_PER_MILLE: u64 = 550;
/// How long the pressure stays on after a sweep last found the table
/// nearly full.
pub const HOLD: Duration = Duration::from_secs(60);
/// The closed-flow timeout under pressure: a late retransmission of the
/// last FIN or ACK of a flow closed longer ago than this finds no
/// translation (the backend's socket then times out or is reset), a
/// cheaper loss than refusing new connections.
pub const PRESSED_CLOSED_TIMEOUT: Duration = Duration::from_secs(1);

/// The timeout under pressure of a flow the backend has not answered
/// (TCP SYN sent, UDP without a reply): a client that is really there
/// sends again (a SYN retransmission, the next datagram) and opens a new
/// translation, so only spoofed or abandoned flows lose anything. Longer
/// than any round trip and than the gaps between a SYN's first
/// retransmissions on Linux (1 s, 2 s, 4 s).
pub const PRESSED_UNREPLIED_TIMEOUT: Duration = Duration::from_secs(5);

/// `timeouts` under pressure: closed flows (time-wait and closed) go
/// after [`PRESSED_CLOSED_TIMEOUT`] (or sooner if so configured): their
/// ports may then meet a backend's TIME_WAIT again, a cheaper loss than
/// refusing new connections; unanswered ones after
/// [`PRESSED_UNREPLIED_TIMEOUT`] (`NatTimeouts::unreplied`, or their own
/// timeout if shorter); every other state keeps its timeout.
pub fn pressed(timeouts: &NatTimeouts) -> NatTimeouts {
    NatTimeouts {
        tcp_time_wait: timeouts.tcp_time_wait.min(PRESSED_CLOSED_TIMEOUT),
        tcp_closed: timeouts.tcp_closed.min(PRESSED_CLOSED_TIMEOUT),
        unreplied: Some(PRESSED_UNREPLIED_TIMEOUT),
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
    /// entries, source port ranges of `ports` ports each, at `now_ns`;
    /// returns the new state when it changed.
    pub fn sweep_done(
        &mut self,
        sweep: &SweepStats,
        capacity: u32,
        ports: u32,
        now_ns: u64,
    ) -> Option<bool> {
        let was = self.on();
        let table = sweep.entries() * 1000 / u64::from(capacity.max(1));
        let busiest = sweep.busiest_of_all() * 1000 / u64::from(ports.max(1));
        if table >= ON_PER_MILLE || busiest >= PORTS_ON_PER_MILLE {
            self.last_full_ns = Some(now_ns);
        } else if let Some(full) = self.last_full_ns {
            let held = Duration::from_nanos(now_ns.saturating_sub(full)) >= HOLD;
            if table < OFF_PER_MILLE && busiest < PORTS_OFF_PER_MILLE && held {
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
    /// A source port range no test here fills.
    const PORTS: u32 = 64_512;

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
        assert_eq!(p.sweep_done(&sweep(449), capacity, PORTS, S), None);
        assert!(!p.on());
        assert_eq!(
            p.sweep_done(&sweep(450), capacity, PORTS, 2 * S),
            Some(true)
        );
        // Emptied by the early reaping: still on within the hold.
        assert_eq!(p.sweep_done(&sweep(10), capacity, PORTS, 3 * S), None);
        assert!(p.on());
        // Past the hold but still above three quarters: on.
        let later = 2 * S + HOLD.as_nanos() as u64;
        assert_eq!(p.sweep_done(&sweep(375), capacity, PORTS, later), None);
        // Past the hold and below three quarters: off.
        assert_eq!(
            p.sweep_done(&sweep(374), capacity, PORTS, later + S),
            Some(false)
        );
        assert!(!p.on());
        // Nearly full again restarts the hold.
        assert_eq!(
            p.sweep_done(&sweep(460), capacity, PORTS, later + 2 * S),
            Some(true)
        );
        assert_eq!(
            p.sweep_done(&sweep(0), capacity, PORTS, later + 3 * S),
            None
        );
        assert!(p.on());
        // A zero capacity never divides by zero.
        let mut z = Pressure::default();
        assert_eq!(z.sweep_done(&sweep(1), 0, 0, S), Some(true));
    }

    #[test]
    fn a_backend_short_of_source_ports_turns_it_on_too() {
        let user = |last: u8| super::super::PortUser {
            nat_address: "198.18.0.50".parse().unwrap(),
            backend: std::net::IpAddr::from([198, 19, 2, last]),
            backend_port: 8080,
            proto: 6,
        };
        // A roomy table, one backend's range 70 % used (another's idle):
        // where the port search starts failing new flows.
        let ports = |used: u64| SweepStats {
            flows: BTreeMap::from([("time-wait", used)]),
            ports: BTreeMap::from([(user(11), used), (user(12), 1)]),
            ..SweepStats::default()
        };
        let mut p = Pressure::default();
        assert_eq!(p.sweep_done(&ports(699), 1_000_000, 1000, S), None);
        assert_eq!(
            p.sweep_done(&ports(700), 1_000_000, 1000, 2 * S),
            Some(true)
        );
        let later = 2 * S + HOLD.as_nanos() as u64;
        // Below the table's off share but not the ports': still on.
        assert_eq!(p.sweep_done(&ports(550), 1_000_000, 1000, later), None);
        assert_eq!(
            p.sweep_done(&ports(549), 1_000_000, 1000, later + S),
            Some(false)
        );
    }

    #[test]
    fn only_the_closed_and_unanswered_timeouts_shorten_and_never_lengthen() {
        let t = NatTimeouts::default();
        let mut p = Pressure::default();
        assert_eq!(p.timeouts(&t), t);
        p.sweep_done(&sweep(1000), 1000, PORTS, S);
        let under = p.timeouts(&t);
        assert_eq!(under.tcp_closed, PRESSED_CLOSED_TIMEOUT);
        assert_eq!(under.tcp_time_wait, PRESSED_CLOSED_TIMEOUT);
        assert_eq!(under.unreplied, Some(PRESSED_UNREPLIED_TIMEOUT));
        assert_eq!(
            NatTimeouts {
                tcp_time_wait: t.tcp_time_wait,
                tcp_closed: t.tcp_closed,
                unreplied: None,
                ..under
            },
            t
        );
        let short = NatTimeouts {
            tcp_time_wait: Duration::from_millis(200),
            tcp_closed: Duration::from_millis(300),
            ..t
        };
        assert_eq!(pressed(&short).tcp_closed, Duration::from_millis(300));
        assert_eq!(pressed(&short).tcp_time_wait, Duration::from_millis(200));
    }
}
