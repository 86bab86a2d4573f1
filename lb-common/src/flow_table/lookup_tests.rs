//! lbd's readers against a refresh landing between their two tag loads:
//! stepped by hand (`hook::set` runs the data plane's refresh exactly
//! there) and raced between threads.

extern crate std;
use std::{boxed::Box, cell::Cell, rc::Rc};

use super::*;
use crate::{
    consts::FLOW_F_ACL_MARK,
    flow_table::tests::{entry, key},
    hash::flow_hash,
};

/// A one-bucket table holding flow `k` (backend 3, established, last
/// seen at `at`), and the way it went to.
fn table_with(k: &FlowKey, at: u64) -> (Box<FlowBucket>, usize) {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let put = FlowEntry {
        last_seen_ns: at,
        ..entry(3, k)
    };
    let rank = rank_word(at, CLASS_ESTABLISHED);
    match unsafe { find_or_insert(b, b, k, &put, rank, flow_hash(k)) } {
        Placed::Inserted(way) => (bucket, way),
        placed => panic!("{placed:?}"),
    }
}

/// The data plane's refresh of `k` in `b` to last-seen `now` with
/// `flags` (its `touch`): a rank CAS alone if the flags are the flow's,
/// else a claim, a write and a publish.
fn touch(b: *mut FlowBucket, k: &FlowKey, now: u64, flags: u32) {
    let seen = unsafe { find(b, k, flow_hash(k)) }.expect("the flow, read outside the step");
    let rank = rank_word(now, CLASS_ESTABLISHED);
    assert!(unsafe { refresh(b, &seen, (now, flags), rank) });
}

/// What a reader answered: the tag it confirmed the flow under (None for
/// `holds_key`, which answers yes or no) and the entry it copied (None
/// for the readers that copy none).
type Answer = Option<(Option<u64>, Option<FlowEntry>)>;

/// Runs every reader lbd runs on the way of `k`, each with `step` run
/// between its copy and its confirming load (given how many times it
/// ran in this reader, from 1), and checks each answer against the flow
/// as it is right after that read: found, under its current tag, with
/// its current entry.
fn read_all_and_check(b: *mut FlowBucket, k: &FlowKey, step: impl Fn(u32) + Clone + 'static) {
    let h = flow_hash(k);
    let way = unsafe { locate(b, k, h) }
        .expect("the flow, before the steps")
        .0;
    let run = |reader: &'static str, read: &mut dyn FnMut() -> Answer| {
        let calls = Rc::new(Cell::new(0u32));
        let counted = Rc::clone(&calls);
        let step = step.clone();
        hook::set(move || {
            counted.set(counted.get() + 1);
            step(counted.get());
        });
        let answer = read();
        hook::clear();
        assert!(calls.get() >= 1, "{reader}: the step ran");
        let (tag, entry) = answer.unwrap_or_else(|| panic!("{reader}: the flow read as absent"));
        let current = unsafe { find(b, k, h) }.expect("the flow");
        if let Some(tag) = tag {
            assert_eq!(
                tag, current.tag,
                "{reader}: confirmed under the current tag"
            );
        }
        if let Some(entry) = entry {
            assert_eq!(entry, current.entry, "{reader}: the current copy");
        }
    };
    run("find", &mut || {
        unsafe { find(b, k, h) }.map(|s| (Some(s.tag), Some(s.entry)))
    });
    run("find_in", &mut || {
        unsafe { find_in(b, b, k, h) }.map(|(_, s)| (Some(s.tag), Some(s.entry)))
    });
    run("read_way", &mut || {
        unsafe { read_way(b, way) }
            .filter(|(held, _)| held == k)
            .map(|(_, s)| (Some(s.tag), Some(s.entry)))
    });
    run("seen_at", &mut || {
        unsafe { seen_at(b, way) }.map(|s| (Some(s.tag), Some(s.entry)))
    });
    run("locate", &mut || {
        unsafe { locate(b, k, h) }.map(|(_, tag)| (Some(tag), None))
    });
    run("holds_key", &mut || {
        unsafe { holds_key(b, way, k, h) }.then_some((None, None))
    });
}

/// The data plane refreshes a flow's age about once a second (a CAS of
/// its rank alone, the way staying published): a refresh landing between
/// a reader's two tag loads is the same flow, read again, never a miss.
/// Before the re-read, every reader answered None here (replication then
/// took a fresher local flow for absent and overwrote it with a peer's
/// older copy).
#[test]
fn a_rank_refresh_between_a_readers_loads_reads_the_flow_again_not_as_absent() {
    let s = 1_000_000_000u64;
    let k = key(7);
    let (mut bucket, _) = table_with(&k, 10 * s);
    let b: *mut FlowBucket = &mut *bucket;
    // Each reader's step refreshes the flow a tick later than the last.
    let clock = Rc::new(Cell::new(10 * s));
    read_all_and_check(b, &k, move |call| {
        if call == 1 {
            clock.set(clock.get() + s);
            touch(b, &k, clock.get(), 0);
        }
    });
}

/// A refresh that changes the flow's flags (an ACL mark: claim, write,
/// publish, the version moved, fingerprint and key kept) between the
/// loads: the flow again, with its new flags.
#[test]
fn a_flag_refresh_between_a_readers_loads_reads_the_new_flags() {
    let s = 1_000_000_000u64;
    let k = key(8);
    let (mut bucket, _) = table_with(&k, 10 * s);
    let b: *mut FlowBucket = &mut *bucket;
    // Each reader's step toggles the flow's ACL mark.
    let flags = Rc::new(Cell::new(0));
    read_all_and_check(b, &k, move |call| {
        if call == 1 {
            flags.set(flags.get() ^ FLOW_F_ACL_MARK);
            touch(b, &k, 11 * s, flags.get());
        }
    });
}

/// Another flow under the same fingerprint put in the way between the
/// loads (the flow evicted, or removed, and that one inserted): the
/// re-read compares the key again, so a lookup of the first flow misses
/// and never returns the other's entry; an enumeration reads the other.
#[test]
fn another_flow_put_in_the_way_between_the_loads_is_never_taken_for_the_one_read() {
    let s = 1_000_000_000u64;
    let x = key(7);
    let fp = fingerprint(flow_hash(&x));
    let y = (8..)
        .map(key)
        .find(|y| fingerprint(flow_hash(y)) == fp)
        .expect("a key under the same fingerprint");
    let (mut bucket, way) = table_with(&x, 10 * s);
    let b: *mut FlowBucket = &mut *bucket;
    let y_entry = entry(9, &y);
    hook::set(move || {
        assert!(unsafe { remove(b, &x, flow_hash(&x)) });
        let rank = rank_word(11 * s, CLASS_ESTABLISHED);
        let placed = unsafe { find_or_insert(b, b, &y, &y_entry, rank, flow_hash(&y)) };
        assert_eq!(placed, Placed::Inserted(way), "X's way");
    });
    let found = unsafe { find(b, &x, flow_hash(&x)) };
    hook::clear();
    assert!(found.is_none(), "X is gone: {found:?}");
    let tag = unsafe { tag_at(b, way) }.load();
    assert_eq!((tag_state(tag), tag_fingerprint(tag)), (TAG_VALID, fp));
    // Y back to X under the same fingerprint, between read_way's loads.
    let x_entry = entry(3, &x);
    let once = Cell::new(false);
    hook::set(move || {
        if once.replace(true) {
            return;
        }
        assert!(unsafe { remove(b, &y, flow_hash(&y)) });
        let rank = rank_word(12 * s, CLASS_ESTABLISHED);
        let placed = unsafe { find_or_insert(b, b, &x, &x_entry, rank, flow_hash(&x)) };
        assert_eq!(placed, Placed::Inserted(way));
    });
    let read = unsafe { read_way(b, way) };
    hook::clear();
    let (held, seen) = read.expect("the way holds a flow throughout");
    assert_eq!(
        (held, seen.entry),
        (x, x_entry),
        "key and entry of one flow"
    );
}

/// A way that keeps moving (refreshed at every re-read) or stays held by
/// a writer (a flag refresh whose write has not landed) is given up after
/// `REREADS` re-reads: a reader never spins on it.
#[test]
fn a_way_that_keeps_moving_or_stays_held_is_given_up_after_bounded_rereads() {
    let s = 1_000_000_000u64;
    let k = key(9);
    let h = flow_hash(&k);
    let (mut bucket, way) = table_with(&k, 10 * s);
    let b: *mut FlowBucket = &mut *bucket;
    let calls = Rc::new(Cell::new(0usize));
    let counted = Rc::clone(&calls);
    hook::set(move || {
        counted.set(counted.get() + 1);
        touch(b, &k, (10 + counted.get() as u64) * s, 0);
    });
    let found = unsafe { find(b, &k, h) };
    hook::clear();
    assert!(found.is_none());
    assert_eq!(calls.get(), 1 + REREADS, "one read and REREADS re-reads");
    // Held: a flag refresh's claim lands between the loads, its write
    // never does here.
    let held = Rc::new(Cell::new(None));
    let claimed = Rc::clone(&held);
    hook::set(move || {
        if claimed.get().is_none() {
            let seen = unsafe { find(b, &k, h) }.expect("the flow");
            let rank = rank_word(20 * s, CLASS_CLOSED);
            claimed.set(unsafe { begin_refresh(b, &seen, (20 * s, FLOW_F_FIN), rank) });
        }
    });
    assert!(unsafe { find(b, &k, h) }.is_none(), "a way being written");
    assert!(unsafe { read_way(b, way) }.is_none());
    hook::clear();
    unsafe { finish_refresh(b, held.get().expect("the claim")) };
    let seen = unsafe { find(b, &k, h) }.expect("the flow, published");
    assert_eq!(seen.entry.flags, FLOW_F_FIN);
}

/// Another thread refreshes a flow's rank over and over (the data plane
/// on every CPU, far more often than its once a second) while this one
/// looks the flow up and reads its way: not one read misses it. Before
/// the re-read, thousands did.
#[test]
fn reads_never_miss_a_flow_whose_rank_another_thread_keeps_refreshing() {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    const READS: u32 = 100_000;
    let s = 1_000_000_000u64;
    let k = key(11);
    let h = flow_hash(&k);
    let (bucket, way) = table_with(&k, 10 * s);
    let addr = Box::into_raw(bucket) as usize;
    let done = AtomicBool::new(false);
    let refreshes = AtomicU64::new(0);
    let misses = std::thread::scope(|scope| {
        scope.spawn(|| {
            let b = addr as *mut FlowBucket;
            let mut now = 10 * s;
            while !done.load(Relaxed) {
                now += 1 << TICK_SHIFT;
                let tag = unsafe { tag_at(b, way) };
                let seen = tag.load();
                if tag.swap_if(seen, reranked(seen, rank_word(now, CLASS_ESTABLISHED))) {
                    refreshes.fetch_add(1, Relaxed);
                }
                // About a microsecond between refreshes: a reader's two
                // loads see one now and then, never a run of them.
                for _ in 0..64 {
                    core::hint::spin_loop();
                }
            }
        });
        let b = addr as *mut FlowBucket;
        let mut misses = 0u32;
        for n in 0..READS {
            let found = if n % 2 == 0 {
                unsafe { find(b, &k, h) }.is_some()
            } else {
                unsafe { read_way(b, way) }.is_some()
            };
            misses += u32::from(!found);
        }
        done.store(true, Relaxed);
        misses
    });
    // The thread is joined: the box is this one's again.
    drop(unsafe { Box::from_raw(addr as *mut FlowBucket) });
    assert!(refreshes.load(Relaxed) > 0, "the other thread refreshed");
    assert_eq!(misses, 0, "reads that missed the flow out of {READS}");
}

/// The data plane's lookup (`find_as::<_, false>`, what the BPF build's
/// `find` runs; it has no re-read) against another CPU's refresh of the
/// flow's age landing between its two tag loads: a CAS of the rank
/// alone, state, version and fingerprint kept, the slot's key and entry
/// untouched (but for the last-seen store that follows it). The flow is
/// found, under the tag it has now, read once (no re-read). Before, the
/// packet took it for a new flow: Maglev's pick of now, charged to its
/// source's new-flow limit. A refresh that claims the way (new flags:
/// the version moves) is still a miss for it, as before.
#[test]
fn a_rank_refresh_between_the_data_planes_loads_is_the_flow_found() {
    let s = 1_000_000_000u64;
    let k = key(11);
    let h = flow_hash(&k);
    let (mut bucket, way) = table_with(&k, 10 * s);
    let b: *mut FlowBucket = &mut *bucket;
    let calls = Rc::new(Cell::new(0u32));
    let counted = Rc::clone(&calls);
    hook::set(move || {
        counted.set(counted.get() + 1);
        touch(b, &k, 12 * s, 0);
    });
    let found = unsafe { find_as::<_, false>(b, &k, h) };
    hook::clear();
    assert_eq!(calls.get(), 1, "read once, not re-read");
    let seen = found.expect("the flow, re-ranked between the loads");
    let current = unsafe { find(b, &k, h) }.expect("the flow");
    assert_eq!(seen.tag, current.tag, "confirmed under its tag of now");
    assert_eq!(seen.way, way);
    assert_eq!(
        (seen.entry.backend_id, seen.entry.flags, seen.entry.hash),
        (3, 0, h)
    );
    // A flag refresh (claim, write, publish: the version moves) between
    // the loads: not taken.
    hook::set(move || touch(b, &k, 13 * s, FLOW_F_ACL_MARK));
    let found = unsafe { find_as::<_, false>(b, &k, h) };
    hook::clear();
    assert!(found.is_none(), "{found:?}");
}
