//! Stalls, link outages and a lost advert source.

use super::*;

/// A master whose Adver_Timer fires so late that the peer may have
/// gone its Master_Down_Interval without an advert (lbd paused:
/// SIGSTOP, a cgroup freeze, a VM paused for a migration) is in the
/// link-outage case: the peer may hold the addresses and the
/// neighbours, and steps down silently on our advert. So the master
/// re-announces them in full with its advert, once.
#[test]
fn a_master_stalled_past_the_master_down_interval_reclaims() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    // Last advert at `t`: silent for exactly the shortest interval.
    let back = t + us(3_003_906);
    assert_eq!(
        m.on_timer(back),
        [Action::SendAdvert { priority: 100 }, Action::Reclaim]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.next_deadline(), Some(back + ms(1000)));
    assert_eq!(
        m.on_timer(back + ms(1000)),
        [Action::SendAdvert { priority: 100 }]
    );
    // A long pause, and a refresh due meanwhile: the reclaim covers it.
    let s = Settings {
        announce_refresh: Some(ms(2500)),
        ..settings(100)
    };
    let (mut m, t) = master(s, t0);
    let back = t + ms(60_000);
    assert_eq!(
        m.on_timer(back),
        [Action::SendAdvert { priority: 100 }, Action::Reclaim]
    );
    assert_eq!(m.next_deadline(), Some(back + ms(1000)));
    // The peer's advert queued meanwhile, lower: already answered.
    assert_eq!(m.on_advert(&ad(90), LOWER, back + ms(1)), []);
    // A priority change first after the pause carries the reclaim.
    let (mut m, t) = master(settings(100), t0);
    assert_eq!(
        m.set_priority(90, t + ms(5_000)),
        [Action::SendAdvert { priority: 90 }, Action::Reclaim]
    );
}

/// With replication, the stalled master steps back as after a link
/// outage: no advert (the peer keeps the connections it opened), and
/// preemption held for the peer's flows.
#[test]
fn a_replicating_master_stalled_steps_back_for_sync() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    let sent = m.counters().adverts_sent;
    let back = t + ms(5_000);
    assert_eq!(m.on_timer(back), [Action::BecomeBackup]);
    assert_eq!(m.state(), State::Backup);
    assert!(m.holding_for_sync(back));
    assert_eq!(m.counters().adverts_sent, sent);
    assert_eq!(m.next_deadline(), Some(back + m.master_down_interval()));
    // The peer, master at 100 meanwhile, is followed.
    assert_eq!(m.on_advert(&ad(100), LOWER, back + ms(10)), []);
    assert_eq!(m.master_address(), Some(LOWER));
    // Its advert may come first (queued in the socket): the same.
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    let back = t + ms(5_000);
    assert_eq!(m.on_advert(&ad(100), LOWER, back), [Action::BecomeBackup]);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), Some(LOWER));
    assert!(m.holding_for_sync(back));
    assert_eq!(m.counters().adverts_sent, sent);
}

/// After a stall, a queued advert that beats ours comes from a peer
/// that took over and announced the addresses then: the master steps
/// down silently, as ever, and claims nothing on the way.
#[test]
fn a_stalled_master_hearing_a_winner_first_steps_down_silently() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    let sent = m.counters().adverts_sent;
    let back = t + ms(5_000);
    assert_eq!(m.on_advert(&ad(150), HIGHER, back), [Action::BecomeBackup]);
    assert_eq!(m.counters().adverts_sent, sent);
    // A stall while the link is down is the link's to settle.
    let (mut m, t) = master(settings(100), t0);
    m.link_down(t + ms(500));
    assert_eq!(
        m.on_timer(t + ms(5_000)),
        [Action::SendAdvert { priority: 100 }]
    );
}

/// Two routers; the master (150) stalls for 10 s and the backup (100)
/// takes over, announcing the addresses. Whichever is master in the
/// end, the last router to announce them is that one: the resumed
/// master reclaims with the advert the peer steps down on; a resumed
/// master of lower priority (the peer, `nopreempt`, had deferred to
/// it) reclaims too, and the peer answers its advert with a
/// re-announcement and stays master.
#[test]
fn after_a_stall_the_master_is_the_last_to_announce() {
    for (priorities, preempt, master_after) in [([150, 100], true, 0), ([100, 150], false, 1)] {
        let t0 = Instant::now();
        let addresses = [HIGHER, ME];
        let mut link = Link {
            routers: [0, 1].map(|i| {
                let s = Settings {
                    preempt,
                    ..settings(priorities[i])
                };
                Machine::new(s, addresses[i])
            }),
            now: t0,
            announced: Vec::new(),
        };
        // Router 0 is master first: it starts alone.
        let actions = link.routers[0].startup(t0);
        link.deliver(0, actions);
        let down = link.routers[0].next_deadline().unwrap();
        link.now = down;
        let actions = link.routers[0].on_timer(down);
        link.deliver(0, actions);
        let actions = link.routers[1].startup(down);
        link.deliver(1, actions);
        link.run_until(down + ms(10_000));
        assert_eq!(link.states(), [State::Master, State::Backup]);
        // Router 0 stalls: router 1 runs alone and takes over.
        let stall = link.now;
        let mut now = stall;
        while now < stall + ms(10_000) {
            now = link.routers[1].next_deadline().unwrap();
            link.now = now;
            let actions = link.routers[1].on_timer(now);
            link.announced.extend(
                actions
                    .iter()
                    .filter(|a| **a == Action::BecomeMaster)
                    .map(|a| (1, *a)),
            );
        }
        assert_eq!(link.states(), [State::Master, State::Master]);
        // Router 0 resumes: its overdue timer fires first.
        let actions = link.routers[0].on_timer(now);
        link.deliver(0, actions);
        link.run_until(now + ms(10_000));
        let mut expected = [State::Backup; 2];
        expected[master_after] = State::Master;
        assert_eq!(link.states(), expected, "{priorities:?}");
        let last = link.announced.last().copied();
        assert!(
            last.is_some_and(|(who, _)| who == master_after),
            "{priorities:?}: {:?}",
            link.announced
        );
    }
}

#[test]
fn link_up_in_master_advertises_and_reclaims_the_addresses() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(150), t0);
    let sent = m.counters().adverts_sent;
    let t1 = t + ms(300);
    assert_eq!(
        m.link_up(t1, 150),
        [Action::SendAdvert { priority: 150 }, Action::Reclaim]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.counters().adverts_sent, sent + 1);
    // The advert timer restarts from the advert just sent.
    assert_eq!(m.next_deadline(), Some(t1 + ms(1000)));
    // A backup (or a stopped instance) has nothing to claim.
    let mut b = backup(settings(100), t0);
    let down = b.next_deadline();
    assert_eq!(b.link_up(t0 + ms(100), 100), []);
    assert_eq!(b.state(), State::Backup);
    assert_eq!(b.next_deadline(), down);
    assert_eq!(Machine::new(settings(100), ME).link_up(t0, 100), []);
}

/// With replication, a master whose link was down long enough for the
/// peer to have taken over (and opened NAT'd connections of its own)
/// does not take the addresses back on link-up: silent through the
/// outage, it steps down to backup without an advert and holds
/// preemption until the peer's dump, as at start.
#[test]
fn after_a_long_outage_a_replicating_master_steps_back_for_the_peer_flows() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    let sent = m.counters().adverts_sent;
    // Last seen up 0.5 s after the last advert.
    let since = t + ms(500);
    m.link_down(since);
    assert!(m.link_is_down());
    // Silent while down: neither the timer nor tracking (the link's
    // weight taken, then given back before link-up) sends anything.
    assert_eq!(m.on_timer(t + ms(1000)), []);
    assert_eq!(m.set_priority(100, t + ms(1500)), []);
    assert_eq!(m.on_timer(t + ms(2000)), []);
    let back = since + ms(4_000);
    assert_eq!(m.set_priority(200, back), []);
    assert_eq!(m.counters().adverts_sent, sent);
    // Back after 4 s (the peer takes over after 3.2 s at most).
    assert_eq!(m.link_up(back, 200), [Action::BecomeBackup]);
    assert!(!m.link_is_down());
    assert_eq!(m.state(), State::Backup);
    assert!(m.holding_for_sync(back));
    assert_eq!(m.counters().adverts_sent, sent);
    // The peer, master now at 100, is followed until its dump arrives.
    let last = hear_lower(&mut m, back + ms(300), back + ms(6_000));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.next_deadline(), Some(last + m.master_down_interval()));
    m.peer_synced();
    assert_eq!(m.on_advert(&ad(100), LOWER, last + ms(1000)), []);
    let down = last + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
    // A peer that is not master after all: taken over from after one
    // Master_Down_Interval, the hold notwithstanding.
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    m.link_down(t);
    let back = t + ms(5_000);
    assert_eq!(m.link_up(back, 200), [Action::BecomeBackup]);
    let down = back + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    assert_eq!(
        m.on_timer(down),
        [Action::SendAdvert { priority: 200 }, Action::BecomeMaster]
    );
}

/// The outage that makes a master step back: the peer may have gone
/// its Master_Down_Interval (at least 3 × 1 s + 1/256 s) without an
/// advert, counting the up to one interval between our last advert
/// and the link last seen up. Shorter, the master reclaims as ever;
/// without replication, always, and it advertises through the outage.
#[test]
fn a_short_outage_or_no_replication_keeps_mastership() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    m.link_down(t);
    // 1 s + 2.003 s < 3.004 s.
    let back = t + ms(2_003);
    assert_eq!(
        m.link_up(back, 200),
        [Action::SendAdvert { priority: 200 }, Action::Reclaim]
    );
    assert_eq!(m.state(), State::Master);
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    m.link_down(t);
    assert_eq!(m.link_up(t + us(2_003_906), 200), [Action::BecomeBackup]);
    // A second report of the same outage keeps its start.
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    m.link_down(t);
    m.link_down(t + ms(1_500));
    assert_eq!(m.link_up(t + ms(2_500), 200), [Action::BecomeBackup]);
    // No replication: adverts go on, and the master reclaims.
    let (mut m, t) = master(settings(200), t0);
    m.link_down(t);
    assert_eq!(
        m.on_timer(t + ms(1000)),
        [Action::SendAdvert { priority: 200 }]
    );
    assert_eq!(
        m.link_up(t + ms(10_000), 200),
        [Action::SendAdvert { priority: 200 }, Action::Reclaim]
    );
    // A backup ends the outage quietly.
    let mut b = backup(settings(100), t0);
    b.hold_after_outages(PREEMPT_SYNC_HOLD);
    b.link_down(t0);
    assert_eq!(b.link_up(t0 + ms(10_000), 100), []);
    assert!(!b.link_is_down());
}

/// The priority tracking lowered for the outage (the link's weight,
/// with the defaults 100 − 100 = 1) is never what a master advertises
/// on its link's return: `link_up` takes the restored one first, so
/// the advert that goes with the reclaim carries it, and no second
/// advert is needed. While the link is down a priority change sends
/// nothing at once; the adverts the timer sends meanwhile (no
/// replication) carry it, and reach no one.
#[test]
fn the_link_up_advert_carries_the_priority_the_link_brings_back() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(100), t0);
    m.link_down(t);
    assert_eq!(m.set_priority(1, t + ms(500)), []);
    assert_eq!(m.priority(), 1);
    assert_eq!(
        m.on_timer(t + ms(1000)),
        [Action::SendAdvert { priority: 1 }]
    );
    let sent = m.counters().adverts_sent;
    let back = t + ms(1_700);
    assert_eq!(
        m.link_up(back, 100),
        [Action::SendAdvert { priority: 100 }, Action::Reclaim]
    );
    assert_eq!(m.priority(), 100);
    assert_eq!(m.counters().adverts_sent, sent + 1);
    assert_eq!(m.next_deadline(), Some(back + ms(1000)));
    assert_eq!(
        m.on_timer(back + ms(1000)),
        [Action::SendAdvert { priority: 100 }]
    );
    // With the link up, a change is advertised at once, as ever.
    assert_eq!(
        m.set_priority(90, back + ms(1100)),
        [Action::SendAdvert { priority: 90 }]
    );
    // The owner's 255 is kept; anyone else's is held to 254, 0 to 1.
    let (mut m, t) = master(settings(200), t0);
    m.link_down(t);
    assert_eq!(
        m.link_up(t + ms(500), 255),
        [Action::SendAdvert { priority: 254 }, Action::Reclaim]
    );
    m.link_down(t + ms(600));
    assert_eq!(
        m.link_up(t + ms(700), 0),
        [Action::SendAdvert { priority: 1 }, Action::Reclaim]
    );
    // A replicating master that steps back measures its new
    // Master_Down_Interval with the restored priority too.
    let (mut m, t) = master(settings(200), t0);
    m.hold_after_outages(PREEMPT_SYNC_HOLD);
    m.link_down(t);
    assert_eq!(m.set_priority(100, t + ms(500)), []);
    let back = t + ms(5_000);
    assert_eq!(m.link_up(back, 200), [Action::BecomeBackup]);
    assert_eq!(m.priority(), 200);
    assert_eq!(
        m.next_deadline(),
        Some(back + us(3_000_000 + 56 * 1_000_000 / 256))
    );
}

/// A backup whose link is down hears no master because it hears
/// nothing: its Master_Down_Timer does not make it master (which would
/// put the addresses on a dead interface, run the master notify and
/// then reclaim them from the live master at link-up). It waits; at
/// link-up it is a backup with a fresh Master_Down_Timer, and takes
/// over only if no master speaks within it.
#[test]
fn a_backup_whose_link_is_down_does_not_take_over() {
    let t0 = Instant::now();
    let mut m = backup(settings(100), t0);
    m.on_advert(&ad(150), HIGHER, t0 + ms(500));
    let down = t0 + ms(500) + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    m.link_down(t0 + ms(800));
    assert_eq!(m.next_deadline(), None);
    assert_eq!(m.on_timer(down), []);
    assert_eq!(m.on_timer(down + ms(10_000)), []);
    // Not even a priority-0 advert heard as the link went.
    m.on_advert(&ad(0), HIGHER, down + ms(10_100));
    assert_eq!(m.on_timer(down + ms(11_000)), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.counters().became_master, 0);
    assert_eq!(m.counters().adverts_sent, 0);
    // Back: a backup, nothing to claim, a fresh timer.
    let back = down + ms(20_000);
    assert_eq!(m.link_up(back, 100), []);
    assert_eq!(m.state(), State::Backup);
    let fresh = back + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(fresh));
    // The master speaks within it: followed.
    m.on_advert(&ad(150), HIGHER, back + ms(300));
    assert_eq!(m.on_timer(fresh), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), Some(HIGHER));
    // No master after the link's return: master one interval later,
    // with an advert and the claim of any takeover, no reclaim.
    let mut m = backup(settings(100), t0);
    m.link_down(t0);
    let back = t0 + ms(10_000);
    assert_eq!(m.link_up(back, 100), []);
    let fresh = back + m.master_down_interval();
    assert_eq!(m.on_timer(fresh - us(1)), []);
    assert_eq!(
        m.on_timer(fresh),
        [Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
}

/// Two routers, the backup's link cut for 10 s: it stays backup all
/// along and after, the master never changes, and no one reclaims.
#[test]
fn a_cut_backup_never_competes_with_the_live_master() {
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
    link.run_until(t0 + ms(10_000));
    assert_eq!(link.states(), [State::Master, State::Backup]);
    let before = [*link.routers[0].counters(), *link.routers[1].counters()];
    let cut = link.now;
    link.routers[1].link_down(cut);
    // While cut, the master's adverts do not reach it.
    let mut now = cut;
    while now < cut + ms(10_000) {
        now = link.routers[0].next_deadline().unwrap();
        let master_actions = link.routers[0].on_timer(now);
        assert!(master_actions
            .iter()
            .all(|a| matches!(a, Action::SendAdvert { .. })));
        assert_eq!(link.routers[1].on_timer(now), []);
    }
    link.now = now;
    assert_eq!(link.routers[1].link_up(now, 100), []);
    link.run_until(now + ms(30_000));
    assert_eq!(link.states(), [State::Master, State::Backup]);
    assert_eq!(link.routers[1].counters().became_master, 0);
    for (router, was) in link.routers.iter().zip(before) {
        assert_eq!(router.counters().became_master, was.became_master);
        assert_eq!(router.counters().became_backup, was.became_backup);
    }
}

/// A master whose advert source is removed (networkd, a lapsed DHCP
/// lease) while the lower-priority peer, hearing nothing, took over
/// and advertises: it gives mastership and the addresses up on the
/// peer's advert, claims nothing against it (no re-announcement, which
/// would pull the neighbours back while no advert of ours can leave),
/// and does not take over while the source is gone. Once it is back,
/// a backup first, it preempts the lower master after a full
/// master-down interval, as ever.
#[test]
fn a_master_without_a_source_gives_the_addresses_up_and_claims_nothing() {
    let t0 = Instant::now();
    let s = Settings {
        announce_refresh: Some(ms(500)),
        ..settings(150)
    };
    let (mut m, t) = master(s, t0);
    let gone = t + ms(200);
    m.source_gone(gone);
    assert!(m.source_is_gone());
    assert_eq!(m.source_gone_since(), Some(gone));
    let seen = run_with_peer(&mut m, gone, gone + ms(10_000), Some((ad(100), ms(1000))));
    let claims: Vec<_> = seen
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Reannounce | Action::Reclaim | Action::Refresh | Action::BecomeMaster
            )
        })
        .collect();
    assert_eq!(claims, Vec::<&(Instant, Action)>::new(), "{seen:?}");
    assert_eq!(
        seen.iter()
            .filter(|(_, a)| *a == Action::BecomeBackup)
            .collect::<Vec<_>>(),
        [&(gone + ms(1000), Action::BecomeBackup)],
        "at the peer's first advert"
    );
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master_address(), Some(LOWER));
    assert_eq!(
        m.next_deadline(),
        None,
        "no takeover while the source is gone"
    );
    assert_eq!(m.on_timer(gone + ms(60_000)), []);

    // The source back: a backup, with a fresh Master_Down_Timer, that
    // discards the lower master's adverts and preempts it.
    let back = gone + ms(10_500);
    assert!(!m.source_back(back), "no hold without replication");
    assert!(!m.source_is_gone());
    assert_eq!(m.source_gone_since(), None);
    assert_eq!(m.state(), State::Backup);
    let down = back + m.master_down_interval();
    assert_eq!(m.next_deadline(), Some(down));
    let seen = run_with_peer(&mut m, back, down, Some((ad(100), ms(1000))));
    assert_eq!(
        seen,
        [
            (down, Action::SendAdvert { priority: 150 }),
            (down, Action::BecomeMaster)
        ]
    );
}

/// With no peer heard, a master without a source keeps advertising
/// (a send may find a new source) but announces nothing, and gives
/// mastership up as the peer may have gone its master-down interval
/// without an advert: its last one left up to an interval before the
/// source was seen gone. A source back sooner changes nothing.
#[test]
fn a_master_without_a_source_gives_up_once_the_peer_may_have_taken_over() {
    let t0 = Instant::now();
    let s = Settings {
        announce_refresh: Some(ms(500)),
        ..settings(150)
    };
    let (mut m, t) = master(s, t0);
    let gone = t + ms(200);
    m.source_gone(gone);
    m.source_gone(gone + ms(500));
    assert_eq!(m.source_gone_since(), Some(gone), "keeps its start");
    let seen = run_with_peer(&mut m, gone, gone + ms(10_000), None);
    let give_up = gone + s.shortest_master_down_interval() - ms(1000);
    assert_eq!(
        seen,
        [
            (t + ms(1000), Action::SendAdvert { priority: 150 }),
            (t + ms(2000), Action::SendAdvert { priority: 150 }),
            (give_up, Action::BecomeBackup),
        ]
    );
    assert_eq!(m.counters().became_backup, 2);

    // A blip: back before then, still master, announcing as before.
    let (mut m, t) = master(s, t0);
    m.source_gone(t + ms(200));
    assert!(!m.source_back(t + ms(1500)));
    let seen = run_with_peer(&mut m, t + ms(1500), t + ms(10_000), None);
    assert!(
        seen.iter().all(|(_, a)| *a != Action::BecomeBackup),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(_, a)| *a == Action::Refresh), "{seen:?}");
    assert_eq!(m.state(), State::Master);
    // A lower claim heard with the source back is re-announced again.
    assert_eq!(
        m.on_advert(&ad(100), LOWER, t + ms(10_100)),
        [Action::SendAdvert { priority: 150 }, Action::Reannounce]
    );
    // A link back without a source: an advert, no announcements.
    m.source_gone(t + ms(10_200));
    m.link_down(t + ms(10_200));
    assert_eq!(
        m.link_up(t + ms(10_300), 150),
        [Action::SendAdvert { priority: 150 }]
    );
}

/// With replication, a master that gave mastership up for want of a
/// source holds preemption when it is back, as after a long link
/// outage: the peer opened connections meanwhile. One that was a
/// backup all along holds nothing new.
#[test]
fn with_replication_a_master_that_gave_up_for_its_source_holds_preemption() {
    let t0 = Instant::now();
    let (mut m, t) = master(settings(150), t0);
    m.hold_after_outages(ms(10_000));
    m.source_gone(t + ms(200));
    assert_eq!(
        m.on_advert(&ad(100), LOWER, t + ms(900)),
        [Action::BecomeBackup]
    );
    let back = t + ms(5_000);
    assert!(m.source_back(back));
    assert!(m.holding_for_sync(back + ms(9_000)));
    assert!(!m.holding_for_sync(back + ms(10_000)));

    let mut b = backup(settings(100), t0);
    b.hold_after_outages(ms(10_000));
    b.source_gone(t0 + ms(100));
    assert_eq!(b.next_deadline(), None);
    assert!(!b.source_back(t0 + ms(5_000)));
    assert!(!b.holding_for_sync(t0 + ms(5_000)));
    assert_eq!(
        b.next_deadline(),
        Some(t0 + ms(5_000) + b.master_down_interval())
    );
}
