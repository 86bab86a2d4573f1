//! What lbd does about the routed (NAT) data plane's events, decided
//! purely from the event and the time: a next hop without a neighbour
//! entry is probed (so the kernel resolves it) at most once a second per
//! address, and logged once a minute per address; a missing route and an
//! exhausted port range are logged once a minute per VIP, saying what the
//! operator should do. The program already sends at most one event per
//! second per CPU and kind; these limits keep a steady problem at one log
//! line a minute.

use std::{collections::HashMap, hash::Hash, net::IpAddr, time::Duration};

/// How often the same next hop is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the same problem is logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Keys remembered at most per limiter (older ones are forgotten first):
/// events name addresses from the network, which must not grow lbd's
/// memory without bound.
const MAX_KEYS: usize = 4096;

/// Allows something once per interval per key, counting per key what it
/// left out since.
#[derive(Debug)]
pub struct Limiter<K> {
    interval: Duration,
    /// Per key: when it last went, and how many were left out since.
    last: HashMap<K, (Duration, u64)>,
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    /// At most once per `interval` per key.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: HashMap::new(),
        }
    }

    /// Whether `key` may go at `now` (any monotonic time); records it if so.
    pub fn allow(&mut self, key: &K, now: Duration) -> bool {
        self.allow_counting(key, now).is_some()
    }

    /// Whether `key` may go at `now`, as [`Limiter::allow`]: if so, how
    /// many were left out since it last went (for the log line saying
    /// so); None, counted, if not.
    pub fn allow_counting(&mut self, key: &K, now: Duration) -> Option<u64> {
        let mut suppressed = 0;
        if let Some((last, left_out)) = self.last.get_mut(key) {
            if now.saturating_sub(*last) < self.interval {
                *left_out += 1;
                return None;
            }
            suppressed = *left_out;
        }
        if self.last.len() >= MAX_KEYS {
            let interval = self.interval;
            self.last
                .retain(|_, (t, _)| now.saturating_sub(*t) < interval);
            if self.last.len() >= MAX_KEYS {
                self.last.clear();
            }
        }
        self.last.insert(key.clone(), (now, 0));
        Some(suppressed)
    }
}

/// What to do about one `EVENT_NO_NEIGHBOUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourAction {
    /// Probe the next hop (the kernel then resolves it).
    pub probe: bool,
    /// Log it.
    pub log: bool,
}

/// The limits of every NAT event lbd acts on.
#[derive(Debug)]
pub struct NatEvents {
    probes: Limiter<IpAddr>,
    neighbour_logs: Limiter<IpAddr>,
    vip_logs: Limiter<(u32, u32)>,
}

impl Default for NatEvents {
    fn default() -> Self {
        Self {
            probes: Limiter::new(PROBE_INTERVAL),
            neighbour_logs: Limiter::new(LOG_INTERVAL),
            vip_logs: Limiter::new(LOG_INTERVAL),
        }
    }
}

impl NatEvents {
    /// The next hop `gateway` had no neighbour entry at `now`.
    pub fn no_neighbour(&mut self, gateway: IpAddr, now: Duration) -> NeighbourAction {
        NeighbourAction {
            probe: self.probes.allow(&gateway, now),
            log: self.neighbour_logs.allow(&gateway, now),
        }
    }

    /// Whether an event of `kind` about VIP id `vip_id` is logged at `now`.
    pub fn log_for_vip(&mut self, kind: u32, vip_id: u32, now: Duration) -> bool {
        self.vip_logs.allow(&(kind, vip_id), now)
    }

    /// [`NatEvents::log_for_vip`], telling how many events of `kind` about
    /// VIP id `vip_id` were left out since the last one logged (None: this
    /// one is left out).
    pub fn log_for_vip_counting(&mut self, kind: u32, vip_id: u32, now: Duration) -> Option<u64> {
        self.vip_logs.allow_counting(&(kind, vip_id), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_next_hop_is_probed_each_second_and_logged_each_minute() {
        let mut events = NatEvents::default();
        let gateway: IpAddr = "198.18.2.1".parse().unwrap();
        let other: IpAddr = "2001:2::1".parse().unwrap();
        let at = |s: u64| Duration::from_millis(s);
        assert_eq!(
            events.no_neighbour(gateway, at(0)),
            NeighbourAction {
                probe: true,
                log: true
            }
        );
        assert_eq!(
            events.no_neighbour(gateway, at(500)),
            NeighbourAction {
                probe: false,
                log: false
            }
        );
        assert_eq!(
            events.no_neighbour(gateway, at(1000)),
            NeighbourAction {
                probe: true,
                log: false
            }
        );
        assert_eq!(
            events.no_neighbour(other, at(1000)),
            NeighbourAction {
                probe: true,
                log: true
            }
        );
        assert!(events.no_neighbour(gateway, at(60_000)).log);
    }

    #[test]
    fn vip_problems_are_logged_once_a_minute_per_vip_and_kind() {
        let mut events = NatEvents::default();
        assert!(events.log_for_vip(4, 1, S));
        assert!(!events.log_for_vip(4, 1, 59 * S));
        assert!(events.log_for_vip(5, 1, 59 * S));
        assert!(events.log_for_vip(4, 2, 59 * S));
        assert!(events.log_for_vip(4, 1, 61 * S));
    }

    #[test]
    fn what_was_left_out_is_counted_until_the_next_allowed() {
        let mut limiter = Limiter::new(LOG_INTERVAL);
        assert_eq!(limiter.allow_counting(&1, S), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.allow_counting(&1, 2 * S), None);
        }
        assert_eq!(limiter.allow_counting(&2, 2 * S), Some(0));
        assert_eq!(limiter.allow_counting(&1, 61 * S), Some(5));
        assert_eq!(limiter.allow_counting(&1, 62 * S), None);
    }

    #[test]
    fn the_memory_of_keys_stays_bounded() {
        let mut limiter = Limiter::new(LOG_INTERVAL);
        for n in 0..3 * MAX_KEYS as u32 {
            assert!(limiter.allow(&n, S));
        }
        assert!(limiter.last.len() <= MAX_KEYS);
    }
}
