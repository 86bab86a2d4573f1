//! Tracked priority changes, `preempt_delay`, and preemption held for the peer's dump.

use super::*;

#[test]
fn set_priority_in_master_advertises_at_once() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(150), t0);
    let t1 = t + ms(250);
    assert_eq!(
        m.set_priority(50, t1),
        [Action::SendAdvert { priority: 50 }]
    );
    assert_eq!(m.priority(), 50);
    assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
    assert_eq!(
        m.on_timer(t1 + ms(1000)),
        [Action::SendAdvert { priority: 50 }]
    );
    // Unchanged: nothing to do.
    assert_eq!(m.set_priority(50, t1), []);
    // Now a backup of priority 100 preempts us.
    assert_eq!(m.on_advert(&ad(100), LOWER, t1), [Action::BecomeBackup]);
}

#[test]
fn set_priority_is_clamped() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(100), ME);
    assert_eq!(m.set_priority(0, t0), []);
    assert_eq!(m.priority(), 1);
    m.set_priority(255, t0);
    assert_eq!(m.priority(), 254, "255 is for a configured owner only");
    let mut owner = Machine::new(settings(255), ME);
    owner.set_priority(200, t0);
    assert_eq!(owner.priority(), 200);
    owner.set_priority(255, t0);
    assert_eq!(owner.priority(), 255);
    // A lowered owner starts as a backup.
    owner.set_priority(200, t0);
    assert_eq!(owner.startup(t0), [Action::BecomeBackup]);
}

#[test]
fn raised_priority_in_backup_preempts_at_next_down_check() {
    let t0 = Instant::now();
    let mut m = backup(settings(90), t0);
    let mut t = t0 + ms(500);
    m.on_advert(&ad(100), HIGHER, t);
    assert_eq!(m.set_priority(110, t), []);
    assert_eq!(m.state(), State::Backup);
    // The master's adverts are now lower than us: discarded.
    let down = m.next_deadline().unwrap();
    assert_eq!(down, t + us(3_000_000 + 166 * 1_000_000 / 256));
    while t + ms(1000) < down {
        t += ms(1000);
        m.on_advert(&ad(100), HIGHER, t);
        assert_eq!(m.next_deadline(), Some(down));
    }
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 110 }, Action::BecomeMaster]
    );
}

#[test]
fn preempt_delay_defers_to_lower_master_after_startup() {
    let t0 = Instant::now();
    let s = Settings {
        preempt_delay: Duration::from_secs(10),
        ..settings(200)
    };
    let mut m = backup(s, t0);
    // Within the delay, the lower master's adverts reset the timer.
    let mut t = t0 + ms(500);
    while t < t0 + ms(10_000) {
        assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
        assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
        t += ms(1000);
    }
    // t = t0 + 10.5 s: the delay is over, adverts are discarded and the
    // timer last reset at t0 + 9.5 s fires.
    let down = t0 + ms(9500) + us(3_000_000 + 56 * 1_000_000 / 256);
    while t < down {
        assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
        assert_eq!(m.next_deadline(), Some(down));
        assert_eq!(m.on_timer(t), []);
        t += ms(1000);
    }
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
}

#[test]
fn without_preempt_delay_the_lower_master_is_preempted_at_once() {
    let t0 = Instant::now();
    let mut m = backup(settings(200), t0);
    let down = t0 + us(3_000_000 + 56 * 1_000_000 / 256);
    m.on_advert(&ad(100), LOWER, t0 + ms(500));
    assert_eq!(m.next_deadline(), Some(down));
}

#[test]
fn preempt_delay_restarts_when_a_lower_master_is_first_heard() {
    let t0 = Instant::now();
    let s = Settings {
        preempt_delay: Duration::from_secs(10),
        ..settings(200)
    };
    let mut m = backup(s, t0);
    // A higher master stops the startup delay ...
    m.on_advert(&ad(250), HIGHER, t0 + ms(100));
    // ... then, long after startup, the master drops below us: the
    // delay starts now, so we keep deferring for 10 s.
    let t1 = t0 + ms(60_000);
    m.on_advert(&ad(150), HIGHER, t1);
    assert_eq!(m.next_deadline(), Some(t1 + m.master_down_interval()));
    let t2 = t1 + ms(9_999);
    m.on_advert(&ad(150), HIGHER, t2);
    assert_eq!(m.next_deadline(), Some(t2 + m.master_down_interval()));
    // At the end of the delay, discarded.
    let t3 = t1 + ms(10_000);
    m.on_advert(&ad(150), HIGHER, t3);
    assert_eq!(m.next_deadline(), Some(t2 + m.master_down_interval()));
}

#[test]
fn sync_hold_defers_preemption_until_the_peer_dump_arrives() {
    let t0 = Instant::now();
    let mut m = backup(settings(200), t0);
    m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
    // Held: the lower master's adverts keep resetting the timer, so
    // the machine never preempts however long it waits.
    let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(4_500));
    assert_eq!(m.next_deadline(), Some(last + m.master_down_interval()));
    assert_eq!(m.on_timer(last + ms(999)), []);
    assert_eq!(m.state(), State::Backup);
    // The dump arrives: the next lower advert is discarded and the
    // timer last reset fires.
    m.peer_synced();
    assert!(!m.holding_for_sync(last + ms(500)));
    let t = last + ms(1000);
    assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
    let down = last + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
}

#[test]
fn sync_hold_times_out_and_preempts_without_the_dump() {
    let t0 = Instant::now();
    let mut m = backup(settings(200), t0);
    m.hold_preemption(t0, ms(5_000));
    let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(5_000));
    assert!(m.holding_for_sync(last));
    assert!(!m.holding_for_sync(t0 + ms(5_000)));
    // t0 + 5.5 s: past the hold, the advert is discarded.
    assert_eq!(m.on_advert(&ad(100), LOWER, last + ms(1000)), []);
    let down = last + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
}

#[test]
fn sync_hold_never_delays_taking_over_from_a_silent_or_leaving_master() {
    let t0 = Instant::now();
    // A master that goes silent: the down timer fires on time.
    let mut m = backup(settings(200), t0);
    m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
    let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(2_000));
    let down = last + m.master_down_interval();
    assert!(m.holding_for_sync(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
    // A master that steps down (priority 0): skew time only.
    let mut m = backup(settings(200), t0);
    m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
    hear_lower(&mut m, t0 + ms(500), t0 + ms(2_000));
    let t = t0 + ms(2_100);
    assert_eq!(m.on_advert(&ad(0), LOWER, t), []);
    assert_eq!(m.next_deadline(), Some(t + m.skew_time()));
    // A higher master is followed as ever, and with no hold the lower
    // master is preempted at once.
    let mut m = backup(settings(200), t0);
    assert!(!m.holding_for_sync(t0));
    m.on_advert(&ad(100), LOWER, t0 + ms(500));
    assert_eq!(
        m.next_deadline(),
        Some(t0 + us(3_000_000 + 56 * 1_000_000 / 256))
    );
}

#[test]
fn an_owner_holding_for_the_peer_dump_starts_as_backup_then_preempts() {
    let t0 = Instant::now();
    // Without the hold, master at once (RFC 5798 §6.4.1).
    let mut m = Machine::new(settings(255), ME);
    assert_eq!(
        m.startup(t0),
        [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
    );
    // With it, a backup that follows the live (lower) master until
    // the peer's dump arrives, then takes over: an owner preempts even
    // with `nopreempt`.
    let s = Settings {
        preempt: false,
        ..settings(255)
    };
    let mut m = Machine::new(s, ME);
    m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
    assert_eq!(m.startup(t0), [Action::BecomeBackup]);
    let last = hear_lower(&mut m, t0 + ms(500), t0 + ms(4_500));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.next_deadline(), Some(last + m.master_down_interval()));
    m.peer_synced();
    assert_eq!(m.on_advert(&ad(100), LOWER, last + ms(1000)), []);
    let down = last + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
    );
    // With no master on the link: master after one master-down
    // interval (3 s + 1 s / 256).
    let mut m = Machine::new(settings(255), ME);
    m.hold_preemption(t0, PREEMPT_SYNC_HOLD);
    assert_eq!(m.startup(t0), [Action::BecomeBackup]);
    let down = t0 + us(3_003_906);
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
    );
}
