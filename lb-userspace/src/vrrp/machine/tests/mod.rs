//! The machine's unit tests, by concern, and the helpers they share.

mod adverts;
mod outages;
mod preemption;
mod settings;
mod timers;

use std::net::Ipv4Addr;

use super::*;
use crate::vrrp::packet::Advertisement;

const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

const LOWER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

const HIGHER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));

fn settings(priority: u8) -> Settings {
    Settings {
        vrid: 51,
        priority,
        adver_interval_cs: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept_mode: false,
        announce_refresh: None,
    }
}

fn ad(priority: u8) -> Advertisement {
    Advertisement {
        vrid: 51,
        priority,
        max_adver_int_cs: 100,
        addresses: vec![VIP],
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// A backup started at `t0` with `s`.
fn backup(s: Settings, t0: Instant) -> Machine {
    let mut m = Machine::new(s, ME);
    assert_eq!(m.startup(t0), [Action::BecomeBackup]);
    m
}

/// A master: a backup whose down timer has fired; returns the time.
fn master(s: Settings, t0: Instant) -> (Machine, Instant) {
    let mut m = backup(s, t0);
    let t = m.next_deadline().unwrap();
    assert_eq!(
        m.on_timer(t),
        [
            Action::SendAdvert {
                priority: m.priority()
            },
            Action::BecomeMaster
        ]
    );
    (m, t)
}

/// A backup started with the sync hold, hearing a lower master every
/// second from `from` until (not including) `until`; returns the time
/// of the last advert.
fn hear_lower(m: &mut Machine, from: Instant, until: Instant) -> Instant {
    let mut t = from;
    let mut last = from;
    while t < until {
        assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
        last = t;
        t += ms(1000);
    }
    last
}

/// Two routers on one simulated link: every advert one sends reaches the
/// other at once; time jumps to the next deadline.
struct Link {
    routers: [Machine; 2],
    now: Instant,
    /// Who announced the addresses, in order: each takeover, reclaim
    /// and re-announcement.
    announced: Vec<(usize, Action)>,
}

impl Link {
    /// Carries out `actions` of router `from`, then lets the other
    /// router hear its adverts: a router's announcements (the first
    /// round leaves at once) go before the other's answer, which has
    /// to cross the link.
    fn deliver(&mut self, from: usize, actions: Vec<Action>) {
        let announcements = actions.iter().filter(|action| {
            matches!(
                action,
                Action::BecomeMaster | Action::Reclaim | Action::Reannounce
            )
        });
        self.announced
            .extend(announcements.map(|action| (from, *action)));
        for action in actions {
            if let Action::SendAdvert { priority } = action {
                let src = self.routers[from].primary_address();
                let adv = ad(priority);
                let to = 1 - from;
                let replies = self.routers[to].on_advert(&adv, src, self.now);
                self.deliver(to, replies);
            }
        }
    }

    fn run_until(&mut self, end: Instant) {
        // Bounded, so a timer that never fires fails instead of hanging.
        for _ in 0..10_000 {
            let next = self
                .routers
                .iter()
                .filter_map(Machine::next_deadline)
                .min()
                .unwrap();
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            for i in 0..2 {
                let actions = self.routers[i].on_timer(self.now);
                self.deliver(i, actions);
            }
        }
        panic!("timers did not advance past {next:?}", next = self.now);
    }

    fn states(&self) -> [State; 2] {
        [self.routers[0].state(), self.routers[1].state()]
    }
}

/// Runs `m` from `from` to `until`: its timers, and an advert of `peer`
/// from LOWER every `every` if given; every action, with its time.
fn run_with_peer(
    m: &mut Machine,
    from: Instant,
    until: Instant,
    peer: Option<(Advertisement, Duration)>,
) -> Vec<(Instant, Action)> {
    let mut seen = Vec::new();
    let mut next_ad = peer.as_ref().map(|(_, every)| from + *every);
    loop {
        let now = match (m.next_deadline(), next_ad) {
            (Some(timer), Some(ad)) => timer.min(ad),
            (timer, ad) => match timer.or(ad) {
                Some(now) => now,
                None => break,
            },
        };
        if now > until {
            break;
        }
        if next_ad == Some(now) {
            if let Some((advert, every)) = &peer {
                seen.extend(
                    m.on_advert(advert, LOWER, now)
                        .into_iter()
                        .map(|a| (now, a)),
                );
                next_ad = Some(now + *every);
            }
        }
        seen.extend(m.on_timer(now).into_iter().map(|a| (now, a)));
    }
    seen
}
