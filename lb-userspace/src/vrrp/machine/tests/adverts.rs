//! What adverts do in backup and master (§6.4.2, §6.4.3): stepping
//! down, preempting, priority 0, ties, learned intervals.

use super::super::adverts::address_greater;
use super::*;

#[test]
fn higher_priority_advert_makes_master_step_down() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    let t1 = t + ms(200);
    let theirs = Advertisement {
        max_adver_int_cs: 200,
        ..ad(101)
    };
    assert_eq!(m.on_advert(&theirs, LOWER, t1), [Action::BecomeBackup]);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), Some(LOWER));
    // Master_Adver_Interval learned from the advert: 3 * 2 s + skew.
    assert_eq!(m.master_adver_interval(), ms(2000));
    assert_eq!(m.master_down_interval(), us(6_000_000 + 1_218_750));
    assert_eq!(m.next_deadline(), Some(t1 + us(7_218_750)));
    assert_eq!(m.counters().became_backup, 2);
}

#[test]
fn master_keeps_mastership_on_lower_priority_advert() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    let deadline = m.next_deadline();
    // It stays master and re-announces (see the test below).
    assert_eq!(
        m.on_advert(&ad(99), HIGHER, t + ms(10)),
        [Action::SendAdvert { priority: 100 }, Action::Reannounce]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.next_deadline(), deadline);
}

#[test]
fn backup_with_preempt_ignores_lower_priority_and_takes_over_on_down_timer() {
    let t0 = Instant::now();
    let mut m = backup(settings(200), t0);
    let down = m.next_deadline().unwrap();
    // §6.4.2: preempt on and lower priority: discard, so the timer is
    // not reset and the master address not learned.
    let mut t = t0;
    while t + ms(1000) < down {
        t += ms(1000);
        assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
        assert_eq!(m.next_deadline(), Some(down));
    }
    assert_eq!(m.master_address(), None);
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
}

#[test]
fn backup_without_preempt_defers_to_lower_priority_master() {
    let t0 = Instant::now();
    let s = Settings {
        preempt: false,
        ..settings(200)
    };
    let mut m = backup(s, t0);
    let mut t = t0;
    for _ in 0..20 {
        t += ms(1000);
        assert_eq!(m.on_timer(t), []);
        assert_eq!(m.on_advert(&ad(100), LOWER, t), []);
    }
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), Some(LOWER));
    // The master goes silent: take over when the down timer fires.
    let down = t + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(m.on_timer(down - us(1)), []);
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
}

#[test]
fn priority_zero_advert_makes_backup_take_over_after_skew_time_only() {
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    let t1 = t0 + ms(1000);
    m.on_advert(&ad(150), HIGHER, t1);
    let t2 = t1 + ms(500);
    assert_eq!(m.on_advert(&ad(0), HIGHER, t2), []);
    assert_eq!(m.next_deadline(), Some(t2 + us(609_375)));
    assert_eq!(m.on_timer(t2 + us(609_374)), []);
    assert_eq!(
        m.on_timer(t2 + us(609_375)),
        [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
    assert_eq!(m.counters().priority_zero_received, 1);
}

#[test]
fn priority_zero_advert_makes_master_advertise_at_once() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    let t1 = t + ms(300);
    assert_eq!(
        m.on_advert(&ad(0), HIGHER, t1),
        [Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
}

#[test]
fn equal_priority_higher_address_wins() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    assert_eq!(m.on_advert(&ad(100), HIGHER, t), [Action::BecomeBackup]);
    assert_eq!(m.master_address(), Some(HIGHER));
}

#[test]
fn equal_priority_lower_address_loses() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    assert_eq!(
        m.on_advert(&ad(100), LOWER, t),
        [Action::SendAdvert { priority: 100 }, Action::Reannounce]
    );
    assert_eq!(m.state(), State::Master);
    // Our own advert looped back is not "greater" either, nor a claim.
    assert_eq!(m.on_advert(&ad(100), ME, t + ms(5000)), []);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn master_hearing_a_lower_priority_advert_reannounces_at_most_once_per_interval() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(150), t0);
    let deadline = m.next_deadline();
    let again = [Action::SendAdvert { priority: 150 }, Action::Reannounce];
    assert_eq!(m.on_advert(&ad(100), LOWER, t + ms(10)), again);
    assert_eq!(m.state(), State::Master);
    // The extra advert does not move the Adver_Timer.
    assert_eq!(m.next_deadline(), deadline);
    // A peer stuck as master with 10 ms adverts: no storm.
    for n in 2..100 {
        assert_eq!(m.on_advert(&ad(100), LOWER, t + ms(10 * n)), []);
    }
    assert_eq!(m.on_advert(&ad(100), LOWER, t + ms(1010)), again);
    assert_eq!(m.on_advert(&ad(100), HIGHER, t + ms(1020)), []);
    assert_eq!(m.counters().adverts_sent, 3);
    // Lost mastership and won it back: the next claim is answered.
    let t1 = t + ms(1030);
    assert_eq!(m.on_advert(&ad(200), HIGHER, t1), [Action::BecomeBackup]);
    let down = m.next_deadline().unwrap();
    m.on_timer(down);
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.on_advert(&ad(100), LOWER, down + ms(1)), again);
}

#[test]
fn equal_priority_in_backup_resets_the_timer_whatever_the_address() {
    // §6.4.2 compares priority only: equal priority is a valid master.
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    let t1 = t0 + ms(3000);
    m.on_advert(&ad(100), LOWER, t1);
    assert_eq!(m.next_deadline(), Some(t1 + us(3_609_375)));
    assert_eq!(m.master_address(), Some(LOWER));
}

#[test]
fn backup_learns_master_adver_interval() {
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    assert_eq!(m.master_adver_interval(), ms(1000));
    let fast = Advertisement {
        max_adver_int_cs: 50,
        ..ad(150)
    };
    let t1 = t0 + ms(100);
    m.on_advert(&fast, HIGHER, t1);
    assert_eq!(m.master_adver_interval(), ms(500));
    // 3 * 0.5 s + 156 * 0.5 s / 256 (304 687.5 µs, truncated)
    assert_eq!(m.master_down_interval(), us(1_500_000 + 304_687));
    assert_eq!(m.next_deadline(), Some(t1 + us(1_804_687)));
    // A priority-0 advert does not teach an interval.
    let stop = Advertisement {
        max_adver_int_cs: 4000,
        ..ad(0)
    };
    m.on_advert(&stop, HIGHER, t1 + ms(100));
    assert_eq!(m.master_adver_interval(), ms(500));
    // Once master, we advertise at our own interval.
    let t2 = m.next_deadline().unwrap();
    m.on_timer(t2);
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.next_deadline(), Some(t2 + ms(1000)));
}

#[test]
fn learned_interval_is_not_learned_from_discarded_adverts() {
    let t0 = Instant::now();
    let mut m = backup(settings(200), t0);
    let slow = Advertisement {
        max_adver_int_cs: 1000,
        ..ad(100)
    };
    m.on_advert(&slow, LOWER, t0 + ms(10));
    assert_eq!(m.master_adver_interval(), ms(1000));
}

/// A new source address takes over the tie-break and, in master, the
/// master's address: an equal-priority advert from an address between
/// the old and the new one now loses.
#[test]
fn a_new_primary_address_breaks_ties_and_names_the_master() {
    let t0 = Instant::now();
    let mut m = Machine::new(settings(100), ME);
    m.resume_master(t0);
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.master_address(), Some(ME));
    let newer = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200));
    m.set_primary_address(newer);
    assert_eq!(m.primary_address(), newer);
    assert_eq!(m.master_address(), Some(newer));
    // HIGHER (198.18.0.3) beat ME (.2); it loses to .200.
    let actions = m.on_advert(&ad(100), HIGHER, t0 + ms(10));
    assert_eq!(m.state(), State::Master, "{actions:?}");
    // In backup the master heard from stays the master reported.
    let mut b = Machine::new(settings(100), ME);
    b.startup(t0);
    b.on_advert(&ad(150), HIGHER, t0);
    assert_eq!(b.state(), State::Backup);
    b.set_primary_address(newer);
    assert_eq!(b.master_address(), Some(HIGHER));
}

#[test]
fn addresses_compare_as_unsigned_big_endian() {
    let a: IpAddr = "10.0.0.255".parse().unwrap();
    let b: IpAddr = "10.0.1.0".parse().unwrap();
    assert!(address_greater(b, a));
    assert!(!address_greater(a, b));
    let hi: IpAddr = "200.0.0.1".parse().unwrap();
    let lo: IpAddr = "100.255.255.255".parse().unwrap();
    assert!(address_greater(hi, lo), "no signed overflow");
    let v6a: IpAddr = "fe80::1:0".parse().unwrap();
    let v6b: IpAddr = "fe80::ffff".parse().unwrap();
    assert!(address_greater(v6a, v6b));
    assert!(!address_greater(v6a, a) && !address_greater(a, v6a));
}
