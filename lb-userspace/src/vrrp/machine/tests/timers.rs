//! Startup, the Adver_Timer and Master_Down_Timer, announcement
//! refreshes, shutdown; two routers electing a master.

use super::*;

#[test]
fn master_refreshes_its_announcements_every_interval_and_stops_as_backup() {
    let t0 = Instant::now();
    let s = Settings {
        announce_refresh: Some(ms(2500)),
        ..settings(100)
    };
    let (mut m, t) = master(s, t0);
    // Adverts every second; a refresh 2.5 s after becoming master,
    // then every 2.5 s, each on its own deadline.
    let mut seen = Vec::new();
    let mut now = t;
    while now < t + ms(6000) {
        now = m.next_deadline().unwrap();
        for action in m.on_timer(now) {
            seen.push((now - t, action));
        }
    }
    let refreshes: Vec<Duration> = seen
        .iter()
        .filter(|(_, a)| *a == Action::Refresh)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(refreshes, [ms(2500), ms(5000)]);
    let adverts = seen
        .iter()
        .filter(|(_, a)| matches!(a, Action::SendAdvert { .. }));
    assert_eq!(adverts.count(), 6, "{seen:?}");
    // A higher master: backup, and no refresh any more.
    m.on_advert(&ad(200), HIGHER, now + ms(10));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(
        m.next_deadline(),
        Some(now + ms(10) + m.master_down_interval())
    );
    // Master again later: the refresh counts from then.
    let again = m.next_deadline().unwrap();
    assert_eq!(
        m.on_timer(again),
        [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
    assert_eq!(m.next_deadline(), Some(again + ms(1000)));
    let mut refreshed = None;
    while refreshed.is_none() {
        let now = m.next_deadline().unwrap();
        if m.on_timer(now).contains(&Action::Refresh) {
            refreshed = Some(now);
        }
    }
    assert_eq!(refreshed, Some(again + ms(2500)));
}

#[test]
fn without_a_refresh_interval_a_master_only_advertises() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    for k in 1..=30 {
        assert_eq!(m.next_deadline(), Some(t + ms(1000 * k)));
        assert_eq!(
            m.on_timer(t + ms(1000 * k)),
            [Action::SendAdvert { priority: 100 }]
        );
    }
}

#[test]
fn startup_as_owner_advertises_and_becomes_master() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(255), ME);
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(m.next_deadline(), None);
    assert_eq!(
        m.startup(t0),
        [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.master_address(), Some(ME));
    assert_eq!(m.next_deadline(), Some(t0 + ms(1000)));
    assert_eq!(m.counters().became_master, 1);
    assert_eq!(m.counters().adverts_sent, 1);
    // A second startup is a no-op.
    assert_eq!(m.startup(t0), []);
}

/// An instance starting without a source (a `unicast_src_ip` not on
/// the interface yet) is a backup that waits, owner or not, and runs
/// its Master_Down_Timer once the source is there.
#[test]
fn startup_without_a_source_waits_as_backup() {
    let t0 = Instant::now();
    for priority in [255, 100] {
        let mut m = Machine::new(settings(priority), ME);
        m.source_gone(t0);
        assert_eq!(m.startup(t0), [Action::BecomeBackup], "{priority}");
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.on_timer(t0 + ms(10_000)), []);
        let back = t0 + ms(10_000);
        assert!(!m.source_back(back));
        assert_eq!(m.next_deadline(), Some(back + m.master_down_interval()));
    }
}

#[test]
fn startup_as_non_owner_becomes_backup() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(254), ME);
    assert_eq!(m.startup(t0), [Action::BecomeBackup]);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), None);
    assert_eq!(m.counters().became_backup, 1);
    assert_eq!(m.counters().adverts_sent, 0);
    assert_eq!(m.next_deadline(), Some(t0 + m.master_down_interval()));
}

#[test]
fn backup_becomes_master_exactly_when_master_down_timer_expires() {
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    let down = t0 + us(3_609_375);
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(m.on_timer(t0), []);
    assert_eq!(m.on_timer(down - us(1)), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.master_address(), Some(ME));
    assert_eq!(m.next_deadline(), Some(down + ms(1000)));
    // Idempotent: nothing more at the same instant.
    assert_eq!(m.on_timer(down), []);
    assert_eq!(m.counters().became_master, 1);
}

#[test]
fn adverts_from_master_keep_backup_down() {
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    let mut t = t0;
    for _ in 0..10 {
        t += ms(1000);
        assert_eq!(m.on_timer(t), []);
        assert_eq!(m.on_advert(&ad(150), HIGHER, t), []);
        assert_eq!(m.next_deadline(), Some(t + us(3_609_375)));
    }
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), Some(HIGHER));
    assert_eq!(m.counters().adverts_received, 10);
}

#[test]
fn master_sends_adverts_every_interval() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(255), ME);
    m.startup(t0);
    for i in 1..=5u64 {
        let due = t0 + ms(1000 * i);
        assert_eq!(m.on_timer(due - us(1)), [], "early, tick {i}");
        assert_eq!(m.on_timer(due), [Action::SendAdvert { priority: 255 }]);
        assert_eq!(m.on_timer(due), [], "idempotent, tick {i}");
        assert_eq!(m.next_deadline(), Some(due + ms(1000)));
    }
    assert_eq!(m.counters().adverts_sent, 6);
}

/// A tick late by less than makes the silence since the last advert
/// reach the shortest Master_Down_Interval (3 s + 1/256 s at 1 s) is
/// a plain advert, rescheduled from now: no peer can have taken over.
#[test]
fn late_tick_reschedules_from_now() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(255), ME);
    m.startup(t0);
    let late = t0 + ms(2500);
    assert_eq!(m.on_timer(late), [Action::SendAdvert { priority: 255 }]);
    assert_eq!(m.next_deadline(), Some(late + ms(1000)));
    // Last advert at `late`: silent for 1 µs short of the interval.
    let latest = late + us(3_003_905);
    assert_eq!(m.on_timer(latest), [Action::SendAdvert { priority: 255 }]);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn shutdown_as_master_sends_priority_zero() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    assert_eq!(
        m.shutdown(t),
        [Action::SendAdvert { priority: 0 }, Action::BecomeInitialize]
    );
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(m.next_deadline(), None);
    assert_eq!(m.master_address(), None);
    assert_eq!(m.counters().priority_zero_sent, 1);
    assert_eq!(m.counters().adverts_sent, 2);
    // Effective priority is kept; nothing more to do.
    assert_eq!(m.priority(), 100);
    assert_eq!(m.shutdown(t), []);
    assert_eq!(m.on_timer(t + ms(5000)), []);
    assert_eq!(m.on_advert(&ad(50), LOWER, t), []);
}

#[test]
fn shutdown_as_backup_stops_quietly_and_restarts() {
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    assert_eq!(m.shutdown(t0), [Action::BecomeInitialize]);
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(m.counters().adverts_sent, 0);
    let t1 = t0 + ms(10_000);
    assert_eq!(m.startup(t1), [Action::BecomeBackup]);
    assert_eq!(m.next_deadline(), Some(t1 + us(3_609_375)));
}

#[test]
fn other_vrid_is_ignored() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    let other = Advertisement {
        vrid: 52,
        ..ad(200)
    };
    assert_eq!(m.on_advert(&other, HIGHER, t), []);
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.counters().adverts_received, 0);
}

#[test]
fn initialize_ignores_everything_but_startup() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(100), ME);
    assert_eq!(m.on_timer(t0 + ms(100_000)), []);
    assert_eq!(m.on_advert(&ad(0), HIGHER, t0), []);
    assert_eq!(m.shutdown(t0), []);
    assert_eq!(m.set_priority(120, t0), []);
    assert_eq!(m.state(), State::Initialize);
}

/// A restarted lbd resuming its mastership is no failover: it counts
/// as resumed, not as a transition to master (which a rule on
/// `lbd_vrrp_transitions_total{to="master"}` would read as one).
#[test]
fn a_resumed_mastership_is_not_counted_as_a_transition() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(100), ME);
    let actions = m.resume_master(t0);
    assert!(actions.contains(&Action::BecomeMaster), "{actions:?}");
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.counters().became_master, 0);
    assert_eq!(m.counters().resumed, 1);
    // A later takeover counts as ever.
    m.shutdown(t0 + ms(10));
    m.startup(t0 + ms(20));
    m.on_timer(t0 + ms(20) + m.master_down_interval());
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.counters().became_master, 1);
    assert_eq!(m.counters().resumed, 1);
}

#[test]
fn two_routers_elect_one_master_and_fail_over_on_shutdown() {
    let t0 = Instant::now();
    let mut link = Link {
        routers: [
            Machine::new(settings(150), HIGHER),
            Machine::new(settings(100), ME),
        ],
        now: t0,
        announced: Vec::new(),
    };
    for i in 0..2 {
        let actions = link.routers[i].startup(t0);
        link.deliver(i, actions);
    }
    link.run_until(t0 + ms(30_000));
    assert_eq!(link.states(), [State::Master, State::Backup]);
    assert_eq!(link.routers[1].master_address(), Some(HIGHER));
    assert_eq!(link.routers[1].counters().became_master, 0);

    // The master stops: the backup takes over after its Skew_Time.
    let stop = link.now;
    let actions = link.routers[0].shutdown(stop);
    link.deliver(0, actions);
    assert_eq!(link.routers[1].next_deadline(), Some(stop + us(609_375)));
    link.run_until(stop + ms(700));
    assert_eq!(link.states(), [State::Initialize, State::Master]);

    // It comes back and preempts the lower-priority master.
    let back = link.now;
    let actions = link.routers[0].startup(back);
    link.deliver(0, actions);
    link.run_until(back + ms(10_000));
    assert_eq!(link.states(), [State::Master, State::Backup]);
}
