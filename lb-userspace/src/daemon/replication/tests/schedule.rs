//! The walks' schedule as a state machine: which walk a tick starts, its
//! window, the periodic and session dumps, and when the NAT table is
//! scanned.

use super::*;
use crate::daemon::replication::ticks::nat_scan_due;

#[test]
fn the_last_tick_scans_the_nat_table_whatever_the_spacing() {
    let now = Instant::now();
    let later = Some(now + Duration::from_secs(3600));
    assert!(!nat_scan_due(later, false, now), "spaced out");
    assert!(nat_scan_due(later, true, now), "a full sync scans");
    assert!(
        nat_scan_due(Some(now), false, now),
        "once the spacing passed"
    );
    // What `scan_nat_now` leaves for the final tick.
    assert!(nat_scan_due(None, false, now));
}

/// Whether some peer is owed a session's dump (the others not), as
/// `Walks::start` asks it; `asked` counts the questions (a question
/// consumes the marks).
fn session(new: bool, asked: &std::cell::Cell<u32>) -> impl FnOnce() -> walks::Due + '_ {
    move || {
        asked.set(asked.get() + 1);
        walks::Due {
            session: new,
            rest: true,
        }
    }
}

#[test]
fn a_tick_while_a_walk_is_in_flight_starts_none_and_the_next_window_covers_it() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    // The first walk dumps everything.
    let first = walks.start(session(false, &asked), 10 * S, t0).unwrap();
    assert_eq!((first.scan, first.full), (Scan::Periodic, true));
    assert!(walks.walking());
    assert_eq!(walks.finish(true), Some(first));
    // A long walk starts at 20 s ...
    let t1 = t0 + Duration::from_secs(1);
    let long = walks.start(session(false, &asked), 20 * S, t1).unwrap();
    assert_eq!(
        long.scan,
        Scan::Recent {
            since: 10 * S - nat::SCAN_MARGIN_NS
        }
    );
    // ... ticks while it runs start nothing, and ask no peer.
    assert_eq!(asked.get(), 2);
    for tick in 1..8u32 {
        let at = t1 + Duration::from_millis(250) * tick;
        let at_ns = 20 * S + u64::from(tick) * 250_000_000;
        assert_eq!(walks.start(session(true, &asked), at_ns, at), None);
    }
    assert_eq!(asked.get(), 2, "no session mark consumed while walking");
    walks.finish(true);
    // The next walk's window starts before the long walk's start (not its
    // end, nor the last tick's): every flow touched while it ran is in.
    let next = walks
        .start(session(false, &asked), 22 * S, t1 + Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        next.scan,
        Scan::Recent {
            since: 20 * S - nat::SCAN_MARGIN_NS
        }
    );
    // A finish with nothing in flight changes nothing.
    walks.finish(true);
    assert_eq!(walks.finish(true), None);
}

#[test]
fn a_session_during_a_walk_gets_a_full_dump_from_the_next() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    walks.start(session(false, &asked), S, t0).unwrap();
    walks.finish(true);
    let recent = walks.start(session(false, &asked), 2 * S, t0).unwrap();
    assert!(!recent.full);
    // A peer's session starts while the walk runs: its mark stays (the
    // tick does not ask), and the next walk is the session's dump.
    assert!(walks.start(session(true, &asked), 3 * S, t0).is_none());
    walks.finish(true);
    let dump = walks.start(session(true, &asked), 4 * S, t0).unwrap();
    assert_eq!((dump.session, dump.full), (true, true));
    // The other peers get the recent flows only.
    assert_eq!(
        (dump.scan, dump.rest),
        (
            Scan::Recent {
                since: 2 * S - nat::SCAN_MARGIN_NS
            },
            true
        )
    );
    // The dump's walk fails: its peer still owes it (see
    // `Peer::owed_dump`), and the failed walk's window is kept.
    walks.finish(false);
    let again = walks.start(session(true, &asked), 5 * S, t0).unwrap();
    assert_eq!((again.session, again.full), (true, true));
    assert_eq!(again.scan, dump.scan);
    walks.finish(true);
    // A failed periodic dump is owed too; a failed recent walk leaves its
    // window to the next.
    let periodic = walks
        .start(session(false, &asked), 6 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(periodic.scan, Scan::Periodic);
    walks.finish(false);
    let owed = walks
        .start(session(false, &asked), 7 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(owed.scan, Scan::Periodic);
    walks.finish(true);
    let recent = walks
        .start(session(false, &asked), 8 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    walks.finish(false);
    let kept = walks
        .start(session(false, &asked), 9 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(recent.scan, kept.scan, "the failed walk's window is kept");
    assert_eq!(
        kept.scan,
        Scan::Recent {
            since: 7 * S - nat::SCAN_MARGIN_NS
        }
    );
}

/// A session's dump for some peers is not the others' periodic dump:
/// that stays due on its schedule; a walk whose every peer is owed a
/// session's dump counts as one (each got everything).
#[test]
fn a_session_dump_for_some_peers_leaves_the_periodic_dump_due() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    let first = walks.start(session(false, &asked), S, t0).unwrap();
    assert_eq!(first.scan, Scan::Periodic);
    walks.finish(true);
    let dump = walks
        .start(session(true, &asked), 2 * S, t0 + Duration::from_secs(5))
        .unwrap();
    assert!(dump.session && !dump.dumps_all());
    walks.finish(true);
    let t1 = t0 + FULL_SYNC_INTERVAL;
    // Due now, but a walk with a session's dump reads one full set only:
    // the others' periodic dump waits for the next walk.
    let both = walks.start(session(true, &asked), 3 * S, t1).unwrap();
    assert!(both.session && both.rest);
    assert!(matches!(both.scan, Scan::Recent { .. }));
    walks.finish(true);
    let periodic = walks.start(session(false, &asked), 3 * S, t1).unwrap();
    assert_eq!(periodic.scan, Scan::Periodic, "the periodic dump is due");
    walks.finish(true);
    // Every peer owed a session's dump: that is everyone's full dump.
    let all = walks
        .start(
            || walks::Due {
                session: true,
                rest: false,
            },
            4 * S,
            t1 + FULL_SYNC_INTERVAL,
        )
        .unwrap();
    assert!(all.session && !all.rest && all.dumps_all());
    walks.finish(true);
    let next = walks
        .start(
            session(false, &asked),
            5 * S,
            t1 + FULL_SYNC_INTERVAL + Duration::from_secs(1),
        )
        .unwrap();
    assert!(!next.full, "no periodic dump right after everyone's dump");
}

/// A periodic dump is spaced by the last dump's size (see `DUMP_RATE`):
/// after one of the largest table (16 M flows) the next is not due 10 s
/// later, but when that many records take at the rate; a small table
/// still dumps every 10 s, and a new session gets its dump at once.
#[test]
fn periodic_dumps_are_spaced_by_the_last_dumps_size() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    let first = walks.start(session(false, &asked), S, t0).unwrap();
    assert!(first.full);
    walks.finish(true);
    let largest = 16_777_216usize;
    walks.dumped(largest);
    let spacing = Duration::from_millis(u64::try_from(largest).unwrap() * 1000 / DUMP_RATE);
    assert_eq!(walks.full_sync_interval(), spacing);
    assert!(spacing > FULL_SYNC_INTERVAL * 10, "{spacing:?}");
    let later = walks
        .start(session(false, &asked), 2 * S, t0 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert!(!later.full, "no dump of 16 M flows 10 s after the last");
    walks.finish(true);
    let before = walks
        .start(
            session(false, &asked),
            3 * S,
            t0 + spacing - Duration::from_secs(1),
        )
        .unwrap();
    assert!(!before.full);
    walks.finish(true);
    let due = walks
        .start(session(false, &asked), 4 * S, t0 + spacing)
        .unwrap();
    assert_eq!((due.scan, due.full), (Scan::Periodic, true));
    walks.finish(true);
    walks.dumped(largest);
    // A new session's dump never waits.
    let session_dump = walks
        .start(
            session(true, &asked),
            5 * S,
            t0 + spacing + Duration::from_secs(1),
        )
        .unwrap();
    assert!(session_dump.session && session_dump.full);
    walks.finish(true);
    // A table of 100,000 flows (and as many NAT'd) still dumps every 10 s.
    walks.dumped(200_000);
    let t1 = t0 + spacing + Duration::from_secs(1);
    let small = walks
        .start(session(false, &asked), 6 * S, t1 + FULL_SYNC_INTERVAL)
        .unwrap();
    assert_eq!(small.scan, Scan::Periodic);
}

/// An active flow whose stamp has not moved is sent once, not on every
/// 250 ms tick of the touch interval (the data plane re-stamps at most
/// once a second, and the peer takes the unchanged resends as stale);
/// a flow touched while a walk ran is still in the next walk.
#[test]
fn an_unchanged_active_flow_is_sent_once_not_on_every_tick() {
    let t0 = Instant::now();
    let asked = std::cell::Cell::new(0);
    let mut walks = walks::Walks::default();
    let tick = 250_000_000u64;
    // The first walk dumps everything, before the flow's stamp.
    let stamp = 10 * S;
    walks
        .start(session(false, &asked), stamp - tick, t0)
        .unwrap();
    walks.finish(true);
    let mut sent = 0;
    for n in 1..=5u64 {
        let planned = walks
            .start(session(false, &asked), stamp + n * tick, t0)
            .unwrap();
        assert!(!planned.full);
        if sends(Topology::FullMesh, planned.scan, stamp) {
            sent += 1;
        }
        walks.finish(true);
    }
    assert_eq!(sent, 1, "sent once, on the first tick after its stamp");
    // A walk starts at W and reads the flow before a packet re-stamps it
    // at W + 0.1 s: the next walk sends it.
    let w = stamp + 6 * tick;
    let during = walks.start(session(false, &asked), w, t0).unwrap();
    let touched = w + 100_000_000;
    assert!(!sends(Topology::FullMesh, during.scan, stamp));
    walks.finish(true);
    let next = walks.start(session(false, &asked), w + tick, t0).unwrap();
    assert!(sends(Topology::FullMesh, next.scan, touched));
    // The coarse clock that stamps lags a jiffy: a stamp a little before
    // the walk's start is still in the next window.
    assert!(sends(Topology::FullMesh, next.scan, w - 10_000_000));
}
