//! The table's protocol stepped by hand and raced between threads.

extern crate std;
use std::{boxed::Box, sync::Arc, vec::Vec};

use super::*;
use crate::{
    consts::{AF_INET, FLOW_F_ACL_MARK, FLOW_TOUCH_INTERVAL_NS},
    hash::flow_hash,
};

/// An IPv4 TCP key numbered `n` (also the exclusive insert's tests').
pub(super) fn key(n: u32) -> FlowKey {
    FlowKey {
        src: [n.to_be(), 0, 0, 0],
        dst: [0xc612_0064u32.to_be(), 0, 0, 0],
        sport: (n as u16).to_be(),
        dport: 80u16.to_be(),
        proto: 6,
        family: AF_INET,
        _pad: 0,
    }
}

/// An entry of `k` on backend `backend_id`.
pub(super) fn entry(backend_id: u32, k: &FlowKey) -> FlowEntry {
    FlowEntry {
        backend_id,
        hash: flow_hash(k),
        ..FlowEntry::default()
    }
}

/// `find_or_insert` into a one-bucket table.
fn insert(bucket: &mut FlowBucket, k: &FlowKey, backend_id: u32, rank: u32) -> Placed {
    let b: *mut FlowBucket = bucket;
    unsafe { find_or_insert(b, b, k, &entry(backend_id, k), rank, flow_hash(k)) }
}

/// Keys that all hash to bucket 0 of a 64-bucket table.
fn colliding(count: usize) -> Vec<FlowKey> {
    (1..)
        .map(key)
        .filter(|k| bucket_index(flow_hash(k), 63) == 0)
        .take(count)
        .collect()
}

fn occupied(bucket: &mut FlowBucket) -> Vec<FlowKey> {
    (0..FLOW_WAYS)
        .filter_map(|w| unsafe { read_way(bucket, w) }.map(|(k, _)| k))
        .collect()
}

#[test]
fn a_flow_is_found_where_it_was_inserted_and_keeps_its_entry() {
    let mut bucket = Box::<FlowBucket>::default();
    let k = key(7);
    let h = flow_hash(&k);
    let rank = rank_word(5_000_000_000, CLASS_HALF_OPEN);
    let placed = insert(&mut bucket, &k, 3, rank);
    let Placed::Inserted(way) = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(
        unsafe { find(&mut *bucket, &k, h) }.map(|s| (s.way, s.entry)),
        Some((way, entry(3, &k)))
    );
    // A second insert of the same flow finds it; nothing is duplicated.
    assert_eq!(insert(&mut bucket, &k, 9, rank), Placed::Found(way));
    assert_eq!(occupied(&mut bucket), [k]);
    assert!(unsafe { find(&mut *bucket, &key(8), flow_hash(&key(8))) }.is_none());
    assert!(unsafe { remove(&mut *bucket, &k, h) });
    assert!(!unsafe { remove(&mut *bucket, &k, h) });
    assert!(unsafe { find(&mut *bucket, &k, h) }.is_none());
}

#[test]
fn a_half_open_bucket_fills_then_replaces_expired_then_the_oldest_flow() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let keys = colliding(FLOW_WAYS + 2);
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let put = |k: &FlowKey, seen: u64| unsafe {
        insert_half_open(b, k, &entry(1, k), rank_word(seen, CLASS_HALF_OPEN))
    };
    // Eight flows: the third 11 s old (past the timeout), the fifth
    // 9 s, the others 1 s.
    for (i, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let age = match i {
            2 => 11,
            4 => 9,
            _ => 1,
        };
        assert_eq!(put(k, now - age * s), HalfOpenPlaced::Inserted, "{i}");
    }
    assert_eq!(put(&keys[FLOW_WAYS], now), HalfOpenPlaced::Expired);
    assert!(!occupied(&mut bucket).contains(&keys[2]));
    assert_eq!(put(&keys[FLOW_WAYS + 1], now), HalfOpenPlaced::Evicted);
    let held = occupied(&mut bucket);
    assert!(!held.contains(&keys[4]), "the oldest in time goes");
    assert_eq!(held.len(), FLOW_WAYS);
    // A flow taken out with `release` leaves room, taken once.
    let k = keys[FLOW_WAYS];
    let seen = unsafe { find(b, &k, flow_hash(&k)) }.expect("inserted");
    assert!(unsafe { release(b, &seen) });
    assert!(!unsafe { release(b, &seen) }, "released once");
    assert_eq!(put(&keys[4], now), HalfOpenPlaced::Inserted);
    // Every way being written: nothing to claim.
    for way in 0..FLOW_WAYS {
        let tag = unsafe { tag_at(b, way) };
        tag.swap_if(tag.load(), retagged(tag.load(), TAG_BUSY));
    }
    assert_eq!(put(&keys[2], now), HalfOpenPlaced::Contended);
}

#[test]
fn a_full_bucket_evicts_closed_then_half_open_then_idle_open_then_the_oldest_live_flow() {
    let mut bucket = Box::<FlowBucket>::default();
    let keys = colliding(FLOW_WAYS + 4);
    let now = 3_600_000_000_000u64;
    let s = 1_000_000_000u64;
    // Way by way: live flows of different ages, one closed, one
    // half-open, one established but idle past the timeout.
    let ranks = [
        rank_word(now - 50 * s, CLASS_ESTABLISHED),
        rank_word(now - s, CLASS_CLOSED),
        rank_word(now - 90 * s, CLASS_ESTABLISHED),
        rank_word(now - 2 * s, CLASS_HALF_OPEN),
        rank_word(now - 1000 * s, CLASS_ESTABLISHED),
        rank_word(now - 10 * s, CLASS_ESTABLISHED),
        rank_word(now - 20 * s, CLASS_ESTABLISHED),
        rank_word(now - 30 * s, CLASS_ESTABLISHED),
    ];
    for (k, rank) in keys.iter().zip(ranks) {
        let placed = insert(&mut bucket, k, 1, rank);
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
    }
    // The newcomers are established (a half-open one would be the
    // next to go).
    let fresh = rank_word(now, CLASS_ESTABLISHED);
    let mut evicted = Vec::new();
    for k in &keys[FLOW_WAYS..] {
        let before = occupied(&mut bucket);
        let placed = insert(&mut bucket, k, 2, fresh);
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
        let after = occupied(&mut bucket);
        assert_eq!(after.len(), FLOW_WAYS);
        evicted.extend(before.into_iter().filter(|k| !after.contains(k)));
    }
    // Closed (way 1) first, then the half-open one (way 3), then the
    // open connection idle past the TCP horizon (way 4: older, but its
    // next packet still goes by its entry), then the oldest live flow
    // (way 2, 90 s).
    assert_eq!(evicted, [keys[1], keys[3], keys[4], keys[2]]);
}

/// `find_or_insert_at` into a one-bucket table: an entry last seen at
/// `rank`'s tick, inserted at `now` (ns).
fn insert_at(bucket: &mut FlowBucket, k: &FlowKey, rank: u32, now: u64) -> Placed {
    let b: *mut FlowBucket = bucket;
    unsafe { find_or_insert_at(b, b, k, &entry(2, k), (rank, ticks(now)), flow_hash(k)) }
}

#[test]
fn a_copy_seen_earlier_evicts_by_the_real_clock_and_never_a_fresher_live_flow() {
    let keys = colliding(FLOW_WAYS + 4);
    let now = 36_000_000_000_000u64;
    let s = 1_000_000_000u64;
    // Way by way: live flows seen 50 s to 0.2 s ago, one closed 1 s ago
    // (way 1), one closed 2 h ago (way 6).
    let ranks = [
        rank_word(now - 50 * s, CLASS_ESTABLISHED),
        rank_word(now - s, CLASS_CLOSED),
        rank_word(now - 90 * s, CLASS_ESTABLISHED),
        rank_word(now - 40 * s, CLASS_ESTABLISHED),
        rank_word(now - 70 * s, CLASS_ESTABLISHED),
        rank_word(now - s / 5, CLASS_ESTABLISHED),
        rank_word(now - 7_200 * s, CLASS_CLOSED),
        rank_word(now - 30 * s, CLASS_ESTABLISHED),
    ];
    let fill = || {
        let mut bucket = Box::<FlowBucket>::default();
        for (k, rank) in keys.iter().zip(ranks) {
            assert!(matches!(
                insert(&mut bucket, k, 1, rank),
                Placed::Inserted(_)
            ));
        }
        bucket
    };
    let evicts = |bucket: &mut FlowBucket, k: &FlowKey, rank: u32| {
        let before = occupied(bucket);
        let placed = insert_at(bucket, k, rank, now);
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
        let after = occupied(bucket);
        let gone: Vec<FlowKey> = before.into_iter().filter(|k| !after.contains(k)).collect();
        assert_eq!(gone.len(), 1);
        gone[0]
    };
    // A copy of a live flow last seen 60 s ago (a peer's replica, a
    // carried-over flow): the closed ways go first, the older one first
    // (the rank's own tick as the clock took the live flow seen 0.2 s
    // ago, every way seen since looking expired).
    let mut bucket = fill();
    let copy = rank_word(now - 60 * s, CLASS_ESTABLISHED);
    assert_eq!(evicts(&mut bucket, &keys[FLOW_WAYS], copy), keys[6]);
    assert_eq!(evicts(&mut bucket, &keys[FLOW_WAYS + 1], copy), keys[1]);
    // Then the live flows seen before it, the oldest first (90 s, 70 s).
    assert_eq!(evicts(&mut bucket, &keys[FLOW_WAYS + 2], copy), keys[2]);
    assert_eq!(evicts(&mut bucket, &keys[FLOW_WAYS + 3], copy), keys[4]);
    // Now every way holds a flow seen more recently (or as recently):
    // the copy is turned away, for good (no room), and nothing moves.
    let full = occupied(&mut bucket);
    let b: *mut FlowBucket = &mut *bucket;
    let late = key(1_000_000);
    assert_eq!(insert_at(&mut bucket, &late, copy, now), Placed::Contended);
    assert!(!unsafe { has_room_at(b, b, copy, ticks(now)) });
    assert_eq!(occupied(&mut bucket), full);
    // A fresher copy has room: one of the copies seen 60 s ago goes.
    let fresher = rank_word(now - 45 * s, CLASS_ESTABLISHED);
    assert!(unsafe { has_room_at(b, b, fresher, ticks(now)) });
    let gone = evicts(&mut bucket, &late, fresher);
    assert!(keys[FLOW_WAYS..].contains(&gone), "{gone:?}");
    // A closed copy takes only a closed or expired way seen before it.
    let mut bucket = fill();
    let b: *mut FlowBucket = &mut *bucket;
    let closed = rank_word(now - 600 * s, CLASS_CLOSED);
    assert_eq!(evicts(&mut bucket, &keys[FLOW_WAYS], closed), keys[6]);
    assert!(!unsafe { has_room_at(b, b, closed, ticks(now)) });
    assert_eq!(
        insert_at(&mut bucket, &keys[FLOW_WAYS + 1], closed, now),
        Placed::Contended
    );
    // A copy stamped a tick after the clock was read counts as seen now,
    // not as aged past the wrap: it evicts as a fresh live flow (the
    // closed copy, seen before the closed way 1), as a way stamped a
    // tick ahead counts as seen now (`lead_age`).
    let ahead = rank_word(now + (1 << TICK_SHIFT), CLASS_ESTABLISHED);
    assert_eq!(
        evicts(&mut bucket, &keys[FLOW_WAYS + 1], ahead),
        keys[FLOW_WAYS]
    );
    // The data plane's insert (rank of now) is unchanged: its order.
    let mut bucket = fill();
    let fresh = rank_word(now, CLASS_ESTABLISHED);
    let mut gone = Vec::new();
    for k in &keys[FLOW_WAYS..] {
        let before = occupied(&mut bucket);
        assert!(matches!(
            insert(&mut bucket, k, 2, fresh),
            Placed::Inserted(_)
        ));
        let after = occupied(&mut bucket);
        gone.extend(before.into_iter().filter(|k| !after.contains(k)));
    }
    assert_eq!(gone, [keys[6], keys[1], keys[2], keys[4]]);
}

/// A copy of a flow idle more than half the tick wrap (104 days; closed
/// and expired flows stay in their ways until evicted, and UDP flows
/// never close, so a node up 200 days holds some) is expired: it evicts
/// no live flow. Taken as stamped ahead of the clock, as seen now, it
/// evicted any of them.
#[test]
fn a_copy_idle_past_half_the_tick_wrap_evicts_no_live_flow() {
    let keys = colliding(FLOW_WAYS + 1);
    let s = 1_000_000_000u64;
    let day = 86_400 * s;
    let now = 200 * day;
    // Live flows seen 1 s to 60 s ago.
    let mut bucket = Box::<FlowBucket>::default();
    for (n, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let ago = 1 + 59 * n as u64 / (FLOW_WAYS as u64 - 1);
        let rank = rank_word(now - ago * s, CLASS_ESTABLISHED);
        assert!(matches!(
            insert(&mut bucket, k, 1, rank),
            Placed::Inserted(_)
        ));
    }
    let full = occupied(&mut bucket);
    let b: *mut FlowBucket = &mut *bucket;
    let late = &keys[FLOW_WAYS];
    for idle in [105, 150, 199] {
        for class in [CLASS_ESTABLISHED, CLASS_CLOSED] {
            let ancient = rank_word(now - idle * day, class);
            assert_eq!(
                insert_at(&mut bucket, late, ancient, now),
                Placed::Contended,
                "idle {idle} days, class {class}"
            );
            assert!(
                !unsafe { has_room_at(b, b, ancient, ticks(now)) },
                "idle {idle} days, class {class}"
            );
            assert_eq!(occupied(&mut bucket), full);
        }
    }
    // A flow stamped a tick after the clock was read still counts as
    // seen now: it takes the live way seen 60 s ago.
    let ahead = rank_word(now + (1 << TICK_SHIFT), CLASS_ESTABLISHED);
    assert!(unsafe { has_room_at(b, b, ahead, ticks(now)) });
    assert!(matches!(
        insert_at(&mut bucket, late, ahead, now),
        Placed::Inserted(_)
    ));
    assert!(!occupied(&mut bucket).contains(&keys[FLOW_WAYS - 1]));
}

/// A packet path reads its clock, then inserts later (after the
/// forward): meanwhile another CPU may stamp a way of the bucket with the
/// next tick. That way is a flow seen now, not one aged by nearly the
/// whole tick wrap: a closed way goes before it, a SYN takes no live way
/// for it, and it is not over. Before, it ranked below every closed way.
#[test]
fn a_way_stamped_a_tick_after_the_inserters_clock_is_a_flow_seen_now() {
    let keys = colliding(FLOW_WAYS + 2);
    let tick = 1u64 << TICK_SHIFT;
    let now = 3_600_000_000_000u64;
    let ahead = rank_word(now + tick, CLASS_ESTABLISHED);
    let mut bucket = Box::<FlowBucket>::default();
    for (n, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let rank = match n {
            3 => ahead,
            5 => rank_word(now - 5 * tick, CLASS_CLOSED),
            _ => rank_word(now - 100 * tick, CLASS_ESTABLISHED),
        };
        assert!(matches!(
            insert(&mut bucket, k, 1, rank),
            Placed::Inserted(_)
        ));
    }
    let tag = unsafe { tag_at(&mut *bucket, 3) }.load();
    assert_eq!(
        victim_order(tag, ticks(now)) >> TIER_SHIFT,
        TIER_LIVE,
        "{tag:#x}"
    );
    assert!(!over_within(tag, ticks(now), DEFAULT_IDLE_HORIZONS));
    assert!(!over_within(
        as_datagram(tag),
        ticks(now),
        DEFAULT_IDLE_HORIZONS
    ));
    // A new flow of the clock read before the stamp takes the closed way.
    let fresh = rank_word(now, CLASS_ESTABLISHED);
    assert!(matches!(
        insert(&mut bucket, &keys[FLOW_WAYS], 2, fresh),
        Placed::Inserted(_)
    ));
    let held = occupied(&mut bucket);
    assert!(!held.contains(&keys[5]), "the closed way goes");
    assert!(held.contains(&keys[3]), "the flow seen now stays");
    // Every way live now: a SYN takes none of them.
    let syn = rank_word(now, CLASS_HALF_OPEN);
    assert_eq!(
        insert(&mut bucket, &keys[FLOW_WAYS + 1], 3, syn),
        Placed::Contended
    );
    assert_eq!(occupied(&mut bucket), held);
    // The half-open table replaces its oldest handshake, never one stamped
    // a tick ahead of the inserter's clock.
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let put = |k: &FlowKey, rank: u32| unsafe { insert_half_open(b, k, &entry(1, k), rank) };
    for (n, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let seen = match n {
            3 => now + tick,
            6 => now - 3 * tick,
            _ => now - tick,
        };
        let placed = put(k, rank_word(seen, CLASS_HALF_OPEN));
        assert_eq!(placed, HalfOpenPlaced::Inserted, "{n}");
    }
    let placed = put(&keys[FLOW_WAYS], rank_word(now, CLASS_HALF_OPEN));
    assert_eq!(placed, HalfOpenPlaced::Evicted);
    let held = occupied(&mut bucket);
    assert!(!held.contains(&keys[6]), "the oldest handshake goes");
    assert!(held.contains(&keys[3]));
}

#[test]
fn a_syn_takes_only_a_way_no_live_flow_holds() {
    let mut bucket = Box::<FlowBucket>::default();
    let keys = colliding(FLOW_WAYS + 4);
    let now = 3_600_000_000_000u64;
    let s = 1_000_000_000u64;
    let syn = rank_word(now, CLASS_HALF_OPEN);
    // Into an empty way, as any flow.
    assert!(matches!(
        insert(&mut bucket, &keys[0], 1, syn),
        Placed::Inserted(_)
    ));
    // A bucket of live flows (established, and a handshake in time)
    // turns a SYN away: it never evicts them.
    for (i, k) in keys[1..FLOW_WAYS].iter().enumerate() {
        let rank = rank_word(now - (i as u64 + 1) * s, CLASS_ESTABLISHED);
        assert!(matches!(
            insert(&mut bucket, k, 1, rank),
            Placed::Inserted(_)
        ));
    }
    let full = occupied(&mut bucket);
    assert_eq!(
        insert(&mut bucket, &keys[FLOW_WAYS], 2, syn),
        Placed::Contended
    );
    assert_eq!(occupied(&mut bucket), full);
    // An established flow evicts the handshake first.
    let fresh = rank_word(now, CLASS_ESTABLISHED);
    assert!(matches!(
        insert(&mut bucket, &keys[FLOW_WAYS + 1], 2, fresh),
        Placed::Inserted(_)
    ));
    assert!(!occupied(&mut bucket).contains(&keys[0]));
    // A closed flow's way, or an expired handshake's, a SYN may take.
    let mut bucket = Box::<FlowBucket>::default();
    for (i, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let rank = match i {
            2 => rank_word(now - s, CLASS_CLOSED),
            5 => rank_word(now - 11 * s, CLASS_HALF_OPEN),
            _ => rank_word(now - s, CLASS_ESTABLISHED),
        };
        assert!(matches!(
            insert(&mut bucket, k, 1, rank),
            Placed::Inserted(_)
        ));
    }
    for k in &keys[FLOW_WAYS..FLOW_WAYS + 2] {
        assert!(matches!(
            insert(&mut bucket, k, 2, syn),
            Placed::Inserted(_)
        ));
    }
    let left = occupied(&mut bucket);
    assert!(!left.contains(&keys[2]) && !left.contains(&keys[5]));
    assert_eq!(
        insert(&mut bucket, &keys[FLOW_WAYS + 2], 2, syn),
        Placed::Contended
    );
}

/// The two candidate buckets of `k` in `table`.
fn candidates(
    table: *mut FlowBucket,
    buckets: u32,
    k: &FlowKey,
) -> (*mut FlowBucket, *mut FlowBucket) {
    let h = flow_hash(k);
    unsafe {
        (
            table.add(bucket_index(h, buckets - 1) as usize),
            table.add(second_bucket_index(h, buckets - 1) as usize),
        )
    }
}

#[test]
fn a_flow_whose_first_bucket_is_full_goes_to_its_second_and_is_found_there() {
    const BUCKETS: u32 = 64;
    let mut table: Vec<FlowBucket> = (0..BUCKETS).map(|_| FlowBucket::default()).collect();
    let base = table.as_mut_ptr();
    let rank = rank_word(5_000_000_000, CLASS_ESTABLISHED);
    // Nine flows sharing a first bucket (and with another second one).
    let keys: Vec<FlowKey> = (1..)
        .map(key)
        .filter(|k| {
            let h = flow_hash(k);
            bucket_index(h, BUCKETS - 1) == 0 && second_bucket_index(h, BUCKETS - 1) != 0
        })
        .take(FLOW_WAYS + 1)
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let (first, second) = candidates(base, BUCKETS, k);
        let placed = unsafe { find_or_insert(first, second, k, &entry(1, k), rank, flow_hash(k)) };
        // The first bucket takes flows while it holds fewer than
        // PREFER_FIRST_BELOW ways are empty; then the (empty) second.
        let to_second = i as u32 >= PREFER_FIRST_BELOW;
        assert!(
            matches!(placed, Placed::Inserted(p) if (p >= FLOW_WAYS) == to_second),
            "flow {i}: {placed:?}"
        );
    }
    // Nothing was evicted; every flow is found, and found again by an
    // insert (never inserted twice).
    for k in &keys {
        let (first, second) = candidates(base, BUCKETS, k);
        let (bucket, seen) = unsafe { find_in(first, second, k, flow_hash(k)) }.expect("tracked");
        let pos = if bucket == second {
            FLOW_WAYS + seen.way
        } else {
            seen.way
        };
        assert_eq!(
            unsafe { find_or_insert(first, second, k, &entry(2, k), rank, flow_hash(k)) },
            Placed::Found(pos)
        );
    }
    let held: usize = (0..BUCKETS as usize)
        .map(|b| occupied(&mut table[b]).len())
        .sum();
    assert_eq!(held, keys.len());
}

#[test]
fn two_threads_inserting_the_same_flows_leave_exactly_one_entry_each() {
    // Few buckets, so the racers meet in the same buckets often and
    // some flows go to their second bucket.
    const BUCKETS: usize = 64;
    const FLOWS: u32 = 300;
    for round in 0..20u32 {
        let table: Arc<Vec<FlowBucket>> =
            Arc::new((0..BUCKETS).map(|_| FlowBucket::default()).collect());
        let racers: Vec<_> = (0..2u32)
            .map(|cpu| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    let base = table.as_ptr() as *mut FlowBucket;
                    (0..FLOWS)
                        .map(|n| {
                            let k = key(round * FLOWS + n);
                            let (first, second) = candidates(base, BUCKETS as u32, &k);
                            let rank = rank_word(u64::from(n) << TICK_SHIFT, CLASS_ESTABLISHED);
                            unsafe {
                                find_or_insert(
                                    first,
                                    second,
                                    &k,
                                    &entry(cpu + 1, &k),
                                    rank,
                                    flow_hash(&k),
                                )
                            }
                        })
                        .collect::<Vec<Placed>>()
                })
            })
            .collect();
        let results: Vec<Vec<Placed>> = racers
            .into_iter()
            .map(|racer| racer.join().expect("racer"))
            .collect();
        let base = table.as_ptr() as *mut FlowBucket;
        let mut seen = Vec::new();
        let mut full = Vec::new();
        for b in 0..BUCKETS {
            let mut used = 0;
            for w in 0..FLOW_WAYS {
                if let Some((k, _)) = unsafe { read_way(base.add(b), w) } {
                    seen.push(u32::from_be(k.src[0]));
                    used += 1;
                }
            }
            // A flow is evicted only from a full bucket, and after that
            // the bucket loses at most the other racer's one copy in
            // flight (a duplicate `settle_duplicate` takes out): it
            // ends with at least FLOW_WAYS - 1 flows.
            if used >= FLOW_WAYS - 1 {
                full.push(base.wrapping_add(b));
            }
        }
        seen.sort_unstable();
        let len = seen.len();
        seen.dedup();
        assert_eq!(len, seen.len(), "round {round}: a flow was inserted twice");
        // 300 flows in 512 ways: a flow in a bucket that filled may
        // have been evicted; every other flow one of the threads placed
        // (inserted or found; `Contended` forwards a packet untracked,
        // which the contract allows) must be there.
        for n in 0..FLOWS {
            let (first, second) = candidates(base, BUCKETS as u32, &key(round * FLOWS + n));
            if full.contains(&first) || full.contains(&second) {
                continue;
            }
            let placed = results
                .iter()
                .any(|r| !matches!(r[n as usize], Placed::Contended));
            assert!(
                !placed || seen.binary_search(&(round * FLOWS + n)).is_ok(),
                "round {round}: flow {n} lost"
            );
        }
    }
}

#[test]
fn lowest_way_is_the_lowest_set_bit_or_none() {
    for mask in 0u64..256 {
        let want = if mask == 0 {
            FLOW_WAYS
        } else {
            mask.trailing_zeros() as usize
        };
        assert_eq!(lowest_way(mask), want, "{mask:#b}");
    }
}

#[test]
fn an_exclusive_insert_takes_a_key_once_and_never_evicts() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let keys = colliding(FLOW_WAYS + 1);
    let h = |k: &FlowKey| flow_hash(k);
    assert_eq!(unsafe { probe(b, b, h(&keys[0])) }, Probed::Free);
    let Claimed::Inserted { pos, tag } =
        (unsafe { insert_new(b, b, &keys[0], &entry(1, &keys[0]), h(&keys[0])) })
    else {
        panic!("not inserted")
    };
    assert_eq!(tag_state(tag), TAG_VALID);
    assert_eq!(
        unsafe { locate(b, &keys[0], h(&keys[0])) },
        Some((pos, tag))
    );
    assert!(unsafe { holds_key(b, pos, &keys[0], h(&keys[0])) });
    assert_eq!(
        unsafe { find(b, &keys[0], h(&keys[0])) }.map(|s| s.entry.backend_id),
        Some(1)
    );
    // The key is held: a second insert finds it, writes nothing.
    assert_eq!(unsafe { probe(b, b, h(&keys[0])) }, Probed::Maybe);
    assert_eq!(
        unsafe { insert_new(b, b, &keys[0], &entry(2, &keys[0]), h(&keys[0])) },
        Claimed::Taken(pos)
    );
    assert_eq!(occupied(&mut bucket), [keys[0]]);
    for k in &keys[1..FLOW_WAYS] {
        let claimed = unsafe { insert_new(b, b, k, &entry(3, k), h(k)) };
        assert!(matches!(claimed, Claimed::Inserted { .. }), "{claimed:?}");
    }
    // Full: nothing is evicted, nothing written.
    let last = &keys[FLOW_WAYS];
    assert_eq!(
        unsafe { probe(b, b, h(last)) },
        Probed::Free,
        "absent (if full)"
    );
    assert_eq!(
        unsafe { insert_new(b, b, last, &entry(4, last), h(last)) },
        Claimed::Full
    );
    assert_eq!(occupied(&mut bucket).len(), FLOW_WAYS);
    assert!(!occupied(&mut bucket).contains(last));
    // An insert undone frees its way, once.
    assert!(unsafe { release_way(b, pos, tag) });
    assert!(!unsafe { release_way(b, pos, tag) });
    assert!(unsafe { locate(b, &keys[0], h(&keys[0])) }.is_none());
    assert!(matches!(
        unsafe { insert_new(b, b, last, &entry(4, last), h(last)) },
        Claimed::Inserted { .. }
    ));
}

/// Puts `k` into way `way` of `bucket` as another CPU's insert would
/// leave it between its steps: `state` `TAG_BUSY` (just claimed),
/// `TAG_PENDING`, or `TAG_VALID` (published); also the exclusive
/// insert's tests'.
pub(super) fn in_flight(bucket: *mut FlowBucket, way: usize, k: &FlowKey, state: u32) -> u64 {
    let tag = with_way(tag_with(0, fingerprint(flow_hash(k)), state, 0), way);
    unsafe {
        (*bucket).slots[way].key = *k;
        (*bucket).slots[way].entry = entry(9, k);
        core::ptr::write_volatile(core::ptr::addr_of_mut!((*bucket).tags[way]), tag);
    }
    tag
}

#[test]
fn a_pending_copy_is_invisible_to_lookups_and_settled_by_position() {
    let k = key(7);
    let h = flow_hash(&k);
    // Another CPU's pending copy in way 0, below where ours goes: it
    // stands, ours is emptied; lookups see neither meanwhile.
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let theirs = in_flight(b, 0, &k, TAG_PENDING);
    assert!(unsafe { find(b, &k, h) }.is_none());
    assert!(unsafe { locate(b, &k, h) }.is_none());
    assert!(occupied(&mut bucket).is_empty());
    assert_eq!(
        unsafe { insert_new(b, b, &k, &entry(1, &k), h) },
        Claimed::Taken(0)
    );
    assert_eq!(
        unsafe { tag_at(b, 1) }.load() & STATE_MASK,
        0,
        "ours emptied"
    );
    assert_eq!(unsafe { tag_at(b, 0) }.load(), theirs, "theirs untouched");

    // Their pending copy above ours (ways 0..3 taken by others): ours
    // takes it out, and their publishing CAS then fails.
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let others = colliding(4);
    for (way, other) in others.iter().enumerate().take(3) {
        in_flight(b, way, other, TAG_VALID);
    }
    let theirs = in_flight(b, 5, &k, TAG_PENDING);
    let Claimed::Inserted { pos, .. } = (unsafe { insert_new(b, b, &k, &entry(1, &k), h) }) else {
        panic!("ours stands")
    };
    assert_eq!(pos, 3);
    assert!(!unsafe { tag_at(b, 5) }.swap_if(theirs, retagged(theirs, TAG_VALID)));
    assert_eq!(occupied(&mut bucket).iter().filter(|o| **o == k).count(), 1);

    // Their owner published between our read of their tag and our
    // CAS: theirs stands. Emptied or taken out meanwhile: nothing to do.
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let seen = in_flight(b, 5, &k, TAG_PENDING);
    let published = retagged(seen, TAG_VALID);
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*b).tags[5]), published) };
    assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 1), 1);
    assert_eq!(unsafe { tag_at(b, 5) }.load(), published, "theirs stands");
    let emptied = tag_with(seen, 0, TAG_EMPTY, 0);
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*b).tags[5]), emptied) };
    assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 1), 0);
    let seen = in_flight(b, 5, &k, TAG_PENDING);
    // Not asked to go: left as it is.
    assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 0), 0);
    assert_eq!(unsafe { tag_at(b, 5) }.load(), seen);
    assert_eq!(take_out_if(unsafe { tag_at(b, 5) }, seen, 1), 0);
    assert_eq!(tag_state(unsafe { tag_at(b, 5) }.load()), TAG_EMPTY);

    // A copy another CPU is still writing (busy) is not waited for:
    // that CPU sees ours once it reads (see `insert_new`).
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    in_flight(b, 0, &k, TAG_BUSY);
    assert!(matches!(
        unsafe { insert_new(b, b, &k, &entry(1, &k), h) },
        Claimed::Inserted { pos: 1, .. }
    ));
}

#[test]
fn cpus_racing_to_insert_the_same_keys_exclusively_leave_one_winner_each() {
    // Two buckets, so every race meets in the same header lines and
    // some keys go to their second bucket. The racers start each key
    // together (a barrier), so their claims overlap within the few
    // nanoseconds the protocol's cases differ by; keys are taken out
    // again after each race, so the buckets never fill.
    const BUCKETS: usize = 2;
    const KEYS: u32 = 20_000;
    const RACERS: u32 = 2;
    let table: Arc<Vec<FlowBucket>> =
        Arc::new((0..BUCKETS).map(|_| FlowBucket::default()).collect());
    let start = Arc::new(std::sync::Barrier::new(RACERS as usize));
    let racers: Vec<_> = (0..RACERS)
        .map(|cpu| {
            let table = Arc::clone(&table);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let base = table.as_ptr() as *mut FlowBucket;
                (0..KEYS)
                    .map(|n| {
                        let k = key(n);
                        let (first, second) = candidates(base, BUCKETS as u32, &k);
                        start.wait();
                        let claimed = loop {
                            let claimed = unsafe {
                                insert_new(first, second, &k, &entry(cpu, &k), flow_hash(&k))
                            };
                            if claimed != Claimed::Contended {
                                break claimed;
                            }
                        };
                        // Both done: count the copies, then the
                        // winner takes its key out again.
                        start.wait();
                        let copies = (0..2 * FLOW_WAYS)
                            .filter(|&pos| {
                                let bucket = bucket_at(first, second, pos);
                                (pos < FLOW_WAYS || second != first)
                                    && unsafe { read_way(bucket, pos % FLOW_WAYS) }
                                        .is_some_and(|(held, _)| held == k)
                            })
                            .count();
                        let pending = (0..FLOW_WAYS).any(|w| {
                            [first, second]
                                .iter()
                                .any(|b| tag_state(unsafe { tag_at(*b, w) }.load()) == TAG_PENDING)
                        });
                        start.wait();
                        if let Claimed::Inserted { pos, tag } = claimed {
                            let bucket = bucket_at(first, second, pos);
                            assert!(unsafe { release_way(bucket, pos % FLOW_WAYS, tag) });
                        }
                        (claimed, copies, pending)
                    })
                    .collect::<Vec<(Claimed, usize, bool)>>()
            })
        })
        .collect();
    let results: Vec<Vec<(Claimed, usize, bool)>> = racers
        .into_iter()
        .map(|racer| racer.join().expect("racer"))
        .collect();
    for n in 0..KEYS as usize {
        let winners = results
            .iter()
            .filter(|r| matches!(r[n].0, Claimed::Inserted { .. }))
            .count();
        assert_eq!(winners, 1, "key {n}: {winners} winners");
        assert_eq!(results[0][n].1, 1, "key {n}: copies");
        assert!(!results[0][n].2, "key {n}: a copy left pending");
        for r in &results {
            assert!(
                matches!(r[n].0, Claimed::Inserted { .. } | Claimed::Taken(_)),
                "key {n}: {:?}",
                r[n].0
            );
        }
    }
}

#[test]
fn sizes_are_a_power_of_two_of_buckets_and_a_line_per_way() {
    assert_eq!(core::mem::size_of::<FlowSlot>(), 64);
    assert_eq!(core::mem::size_of::<FlowBucket>(), 64 * (FLOW_WAYS + 1));
    assert_eq!(core::mem::size_of::<[u64; FLOW_WAYS]>(), 64);
    assert_eq!(FLOW_BYTES_PER_ENTRY, 72);
    assert_eq!(buckets_for(262_144), 65_536);
    assert_eq!(buckets_for(1000), 256);
    assert_eq!(buckets_for(16 * 1024 * 1024), 4 * 1024 * 1024);
    assert_eq!(buckets_for(1), 1);
    assert_eq!(
        half_open_buckets_for(crate::consts::HALF_OPEN_SIZE_DEFAULT),
        crate::consts::HALF_OPEN_BUCKETS
    );
    assert_eq!(half_open_buckets_for(1024), 128);
    assert_eq!(half_open_buckets_for(1025), 256);
    assert_eq!(half_open_buckets_for(1), 1);
}

#[test]
fn a_nearby_second_bucket_is_another_of_the_first_buckets_group() {
    for mask in [1u32, 3, 15, 63, 1023, (1 << 21) - 1] {
        let mut offsets = [0u32; BUCKET_GROUP as usize];
        for n in 0..20_000u32 {
            let h = flow_hash(&key(n));
            let (first, second) = (bucket_index(h, mask), nearby_bucket_index(h, mask));
            assert!(second <= mask, "mask {mask}: {second} out of the table");
            assert_ne!(first, second, "mask {mask}: the second is the first");
            assert_eq!(
                first / BUCKET_GROUP,
                second / BUCKET_GROUP,
                "mask {mask}: {second} outside {first}'s group"
            );
            assert_eq!(SecondBucket::Nearby.index(h, mask), second);
            offsets[(first ^ second) as usize] += 1;
        }
        if mask >= BUCKET_GROUP - 1 {
            // Spread over the group's 63 other buckets: each about 1/64
            // (offset 1 also takes a remix ending in six zero bits).
            for (offset, &count) in offsets.iter().enumerate().skip(2) {
                assert!(
                    (200..=450).contains(&count),
                    "mask {mask}: offset {offset} taken {count} times of 20000"
                );
            }
        }
    }
    // A one-bucket table has one bucket for both.
    assert_eq!(nearby_bucket_index(flow_hash(&key(7)), 0), 0);
    assert_eq!(
        SecondBucket::Anywhere.index(12345, 1023),
        second_bucket_index(12345, 1023)
    );
}

/// A full one-bucket table of established flows seen at `at`: the keys,
/// in way order.
fn full_of_established(bucket: &mut FlowBucket, at: u64) -> Vec<FlowKey> {
    let keys = colliding(FLOW_WAYS + 1);
    for (way, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let placed = insert(bucket, k, 1, rank_word(at, CLASS_ESTABLISHED));
        assert_eq!(placed, Placed::Inserted(way));
    }
    keys
}

#[test]
fn a_refresh_that_closes_a_flow_never_writes_into_a_flow_put_in_its_way() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let keys = full_of_established(&mut bucket, now - s);
    // Flow X's FIN: its refresh (the data plane's `touch`) has done its
    // CAS, closing the flow; its write into the way is still to come.
    let x = keys[3];
    let seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    let fin = seen.entry.flags | FLOW_F_FIN | FLOW_F_ACL_MARK;
    let started = unsafe { begin_refresh(b, &seen, (now, fin), rank_word(now, CLASS_CLOSED)) }
        .expect("this CPU's CAS");
    // Meanwhile another CPU inserts flow Y into the full bucket (a closed
    // flow is the first a full bucket evicts).
    let y = keys[FLOW_WAYS];
    let y_entry = FlowEntry {
        backend_id: 9,
        backend_generation: 4,
        last_seen_ns: now - s / 2,
        flags: 0,
        hash: flow_hash(&y),
    };
    let rank = rank_word(now, CLASS_ESTABLISHED);
    let placed = unsafe { find_or_insert(b, b, &y, &y_entry, rank, flow_hash(&y)) };
    assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
    // Then X's write lands.
    unsafe { finish_refresh(b, started) };
    let y_seen = unsafe { find(b, &y, flow_hash(&y)) }.expect("Y stays");
    assert_eq!(y_seen.entry, y_entry, "Y keeps what it was inserted with");
    assert_eq!(tag_rank(y_seen.tag), rank);
    // X is closed, not lost (Y took another way).
    let x_seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X stays");
    assert_eq!((x_seen.entry.flags, x_seen.entry.last_seen_ns), (fin, now));
    assert_eq!(rank_class(tag_rank(x_seen.tag)), CLASS_CLOSED);
}

#[test]
fn a_reader_during_a_refresh_never_writes_the_old_flags_back() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let keys = full_of_established(&mut bucket, now - s);
    let x = keys[5];
    let seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    // CPU A: X's RST, its CAS done, its write to come.
    let rst = seen.entry.flags | FLOW_F_RST;
    let started = unsafe { begin_refresh(b, &seen, (now, rst), rank_word(now, CLASS_CLOSED)) }
        .expect("A's CAS");
    // CPU B looks X up in between (a lookup finds nothing while A writes).
    let read = unsafe { find(b, &x, flow_hash(&x)) };
    unsafe { finish_refresh(b, started) };
    // B then marks X for its ACL from what it read.
    if let Some(read) = read {
        let marked = read.entry.flags | FLOW_F_ACL_MARK;
        let _ = unsafe { refresh(b, &read, (now, marked), tag_rank(read.tag)) };
    }
    let x_seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X stays");
    assert_ne!(x_seen.entry.flags & FLOW_F_RST, 0, "the RST mark stays");
}

#[test]
fn a_fin_whose_flow_another_cpu_re_ranked_since_its_lookup_still_closes_it() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let keys = full_of_established(&mut bucket, now - 2 * s);
    let x = keys[2];
    // CPU A looks X up for its FIN.
    let seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    // CPU B, with its own lookup of X, refreshes X's age (flags
    // unchanged): a rank CAS, the tag's rank word moving on.
    let other = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    let later = rank_word(now, CLASS_ESTABLISHED);
    assert!(unsafe { refresh(b, &other, (now, other.entry.flags), later) });
    assert_ne!(unsafe { tag_at(b, seen.way) }.load(), seen.tag, "re-ranked");
    // A's FIN still lands: the way holds X as A saw it.
    let fin = seen.entry.flags | FLOW_F_FIN;
    assert!(unsafe { refresh(b, &seen, (now + 1, fin), rank_word(now, CLASS_CLOSED)) });
    let x_seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X stays");
    assert_eq!(
        (x_seen.entry.flags, x_seen.entry.last_seen_ns),
        (fin, now + 1)
    );
    assert_eq!(rank_class(tag_rank(x_seen.tag)), CLASS_CLOSED);
    assert_eq!(x_seen.entry.backend_id, seen.entry.backend_id);
}

#[test]
fn a_fin_whose_flow_was_rewritten_since_its_lookup_is_not_written() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let keys = full_of_established(&mut bucket, now - 2 * s);
    let x = keys[4];
    let seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    // lbd rewrites X's entry (a replica of it, to another backend) under
    // a claim: the way's version moves on.
    let other = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    let moved = FlowEntry {
        backend_id: 7,
        ..other.entry
    };
    assert!(unsafe { rewrite(b, &other, &moved, tag_rank(other.tag)) });
    // A FIN from the lookup before it is not written over the new entry
    // (its flags were judged against the entry it saw).
    let fin = seen.entry.flags | FLOW_F_FIN;
    assert!(!unsafe { refresh(b, &seen, (now, fin), rank_word(now, CLASS_CLOSED)) });
    let x_seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X stays");
    assert_eq!(x_seen.entry, moved);
}

#[test]
fn an_age_refresh_landing_in_a_flow_put_in_its_way_sets_only_its_last_seen() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let keys = full_of_established(&mut bucket, now - 2 * s);
    // Flow X, ACL-marked, refreshed for its age alone (flags unchanged):
    // the rank CAS done, the last-seen store to come.
    let x = keys[0];
    let seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    let marked = FlowEntry {
        flags: FLOW_F_ACL_MARK,
        ..seen.entry
    };
    let rank = tag_rank(seen.tag);
    assert!(unsafe { rewrite(b, &seen, &marked, rank) });
    let seen = unsafe { find(b, &x, flow_hash(&x)) }.expect("X");
    let started = unsafe {
        begin_refresh(
            b,
            &seen,
            (now, seen.entry.flags),
            rank_word(now, CLASS_ESTABLISHED),
        )
    }
    .expect("this CPU's CAS");
    // Meanwhile lbd takes X out and another CPU inserts Y into its way.
    assert!(unsafe { remove(b, &x, flow_hash(&x)) });
    let y = keys[FLOW_WAYS];
    let y_entry = FlowEntry {
        backend_id: 9,
        backend_generation: 4,
        last_seen_ns: now - s / 2,
        flags: FLOW_F_FIN,
        hash: flow_hash(&y),
    };
    let rank = rank_word(now - s / 2, CLASS_CLOSED);
    let placed = unsafe { find_or_insert(b, b, &y, &y_entry, rank, flow_hash(&y)) };
    assert_eq!(placed, Placed::Inserted(0), "X's way");
    // The delayed store lands in Y: its last-seen becomes now, nothing
    // else of it changes.
    unsafe { finish_refresh(b, started) };
    let y_seen = unsafe { find(b, &y, flow_hash(&y)) }.expect("Y stays");
    assert_eq!(
        y_seen.entry,
        FlowEntry {
            last_seen_ns: now,
            ..y_entry
        }
    );
    assert_eq!(tag_rank(y_seen.tag), rank);
}

/// The ways of `bucket` that hold `k` (published).
fn copies(bucket: *mut FlowBucket, k: &FlowKey) -> Vec<FlowEntry> {
    (0..FLOW_WAYS)
        .filter_map(|w| unsafe { read_way(bucket, w) })
        .filter(|(held, _)| held == k)
        .map(|(_, seen)| seen.entry)
        .collect()
}

#[test]
fn a_packet_missing_a_flow_whose_flags_are_being_written_adds_no_second_copy() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let s = 1_000_000_000u64;
    let now = 3_600 * s;
    let x = key(7);
    let h = flow_hash(&x);
    assert_eq!(
        insert(&mut bucket, &x, 3, rank_word(now - s, CLASS_ESTABLISHED)),
        Placed::Inserted(0)
    );
    // CPU A: X's FIN, its claim done (the way `TAG_BUSY`), its write to
    // come.
    let seen = unsafe { find(b, &x, h) }.expect("X");
    let fin = seen.entry.flags | FLOW_F_FIN;
    let started = unsafe { begin_refresh(b, &seen, (now, fin), rank_word(now, CLASS_CLOSED)) }
        .expect("A's claim");
    // CPU B: a packet of X misses it, and its insert (to Maglev's pick,
    // another backend) finds X in its way being written: no copy.
    assert!(unsafe { find(b, &x, h) }.is_none(), "the lookup misses X");
    let placed = insert(&mut bucket, &x, 9, rank_word(now, CLASS_ESTABLISHED));
    unsafe { finish_refresh(b, started) };
    // One copy of X: A's, closed, on its backend.
    let held = copies(b, &x);
    assert_eq!(
        held.len(),
        1,
        "B's insert: {placed:?}; copies of X: {held:?}"
    );
    assert_eq!(placed, Placed::Found(0));
    assert_eq!((held[0].backend_id, held[0].flags), (3, fin));
    assert_eq!(
        insert(&mut bucket, &x, 9, rank_word(now, CLASS_CLOSED)),
        Placed::Found(0)
    );
}

#[test]
fn a_flow_lbd_is_rewriting_is_not_inserted_again_by_a_packet_of_it() {
    // Two buckets, X in its second: its first bucket has room, where the
    // packet's insert would go.
    const BUCKETS: u32 = 64;
    let mut table: Vec<FlowBucket> = (0..BUCKETS).map(|_| FlowBucket::default()).collect();
    let base = table.as_mut_ptr();
    let now = 3_600_000_000_000u64;
    let rank = rank_word(now, CLASS_ESTABLISHED);
    let x = (1..)
        .map(key)
        .find(|k| {
            let h = flow_hash(k);
            bucket_index(h, BUCKETS - 1) != second_bucket_index(h, BUCKETS - 1)
        })
        .expect("a flow with two buckets");
    let h = flow_hash(&x);
    let (first, second) = candidates(base, BUCKETS, &x);
    // X in its second bucket (as a flow whose first filled up once).
    let placed = unsafe { find_or_insert(second, second, &x, &entry(3, &x), rank, h) };
    assert_eq!(placed, Placed::Inserted(0));
    // lbd rewrites X (a replica's install, `FlowTable::put`): its claim
    // done, then its thread preempted before the write.
    let (bucket, seen) = unsafe { find_in(first, second, &x, h) }.expect("X");
    assert_eq!(bucket, second);
    let replica = FlowEntry {
        last_seen_ns: now,
        ..entry(3, &x)
    };
    let claimed = unsafe { claim_for_rewrite(bucket, &seen, rank) }.expect("lbd's claim");
    // A packet of X on a CPU: its lookup misses, its insert (Maglev's
    // pick now another backend) finds X, being written.
    assert!(unsafe { find_in(first, second, &x, h) }.is_none());
    let placed = unsafe { find_or_insert(first, second, &x, &entry(9, &x), rank, h) };
    // lbd's thread runs again and publishes.
    assert!(unsafe { publish_rewrite(bucket, seen.way, claimed, &replica) });
    let beside = copies(first, &x);
    assert!(
        beside.is_empty(),
        "insert {placed:?}, a copy beside: {beside:?}"
    );
    assert_eq!(placed, Placed::Found(FLOW_WAYS));
    assert_eq!(copies(second, &x), [replica]);
    // The whole rewrite, as lbd calls it, leaves the one copy.
    let seen = unsafe { find(second, &x, h) }.expect("X");
    let later = FlowEntry {
        last_seen_ns: now + 1,
        ..replica
    };
    assert!(unsafe { rewrite(second, &seen, &later, rank) });
    assert_eq!(copies(second, &x), [later]);
    let placed = unsafe { find_or_insert(first, second, &x, &entry(9, &x), rank, h) };
    assert_eq!(placed, Placed::Found(FLOW_WAYS));
}

#[test]
fn an_insert_of_a_flow_another_cpu_is_inserting_adds_no_second_copy() {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let x = key(7);
    let h = flow_hash(&x);
    let rank = rank_word(5_000_000_000, CLASS_ESTABLISHED);
    // CPU A has claimed way 0 for X and written its key (`claim_way`),
    // not yet published it.
    let tag = unsafe { tag_at(b, 0) };
    let claimed = with_way(tag_with(tag.load(), fingerprint(h), TAG_BUSY, rank), 0);
    assert!(tag.swap_if(tag.load(), claimed));
    bucket.slots[0] = Slot {
        key: x,
        entry: entry(1, &x),
    };
    // CPU B inserts X too: it finds A's copy and adds none.
    assert_eq!(insert(&mut bucket, &x, 2, rank), Placed::Found(0));
    // A different flow of the same bucket goes in as ever.
    assert_eq!(insert(&mut bucket, &key(8), 2, rank), Placed::Inserted(1));
    // A publishes: one copy of X, A's.
    let tag = unsafe { tag_at(b, 0) };
    assert!(tag.swap_if(claimed, retagged(claimed, TAG_VALID)));
    assert_eq!(copies(b, &x), [entry(1, &x)]);
    assert_eq!(insert(&mut bucket, &x, 2, rank), Placed::Found(0));
}

#[test]
fn a_way_being_written_under_a_flows_fingerprint_is_seen_from_the_headers() {
    const BUCKETS: u32 = 64;
    let mut table: Vec<FlowBucket> = (0..BUCKETS).map(|_| FlowBucket::default()).collect();
    let base = table.as_mut_ptr();
    let rank = rank_word(5_000_000_000, CLASS_ESTABLISHED);
    let x = (1..)
        .map(key)
        .find(|k| {
            let h = flow_hash(k);
            fingerprint(h) != 0
                && bucket_index(h, BUCKETS - 1) != second_bucket_index(h, BUCKETS - 1)
        })
        .expect("a flow with two buckets");
    let h = flow_hash(&x);
    let (first, second) = candidates(base, BUCKETS, &x);
    let written = || unsafe { written_under(first, second, h) };
    assert!(!written(), "empty buckets");
    // X published in its second bucket: not being written.
    let placed = unsafe { find_or_insert(second, second, &x, &entry(3, &x), rank, h) };
    assert_eq!(placed, Placed::Inserted(0));
    assert!(!written());
    // Its way claimed by a rewrite: seen.
    let seen = unsafe { find(second, &x, h) }.expect("X");
    let claimed = unsafe { claim_for_rewrite(second, &seen, rank) }.expect("claim");
    assert!(written());
    assert!(unsafe { publish_rewrite(second, seen.way, claimed, &entry(3, &x)) });
    assert!(!written());
    // A way of the first bucket held under another fingerprint: not X's.
    let tag = unsafe { tag_at(first, 2) };
    let other = with_way(tag_with(tag.load(), fingerprint(h) ^ 1, TAG_BUSY, rank), 2);
    assert!(tag.swap_if(tag.load(), other));
    assert!(!written());
    // Under X's fingerprint (another CPU inserting X, its key not read).
    let mine = with_way(tag_with(other, fingerprint(h), TAG_BUSY, rank), 2);
    assert!(tag.swap_if(other, mine));
    assert!(written());
}

/// The data plane's eviction order, for lbd's horizons: with both at the
/// default it orders every way as `victim_order` does (lbd's inserts and
/// the half-open table keep that one), and each established class
/// expires past its own horizon only.
#[test]
fn the_order_within_horizons_is_the_default_order_at_the_defaults_and_per_class_otherwise() {
    let s = 1u64 << TICK_SHIFT;
    let now = 1_000_000u32;
    let tags = |class: u32, age: u32| {
        let rank = (now.wrapping_sub(age) & TICK_MASK) << 2 | class;
        [TAG_EMPTY, TAG_BUSY, TAG_VALID, TAG_PENDING]
            .map(|state| (u64::from(rank) << RANK_SHIFT) | u64::from(state))
    };
    let ages = [
        0,
        1,
        HALF_OPEN_IDLE_TICKS,
        HALF_OPEN_IDLE_TICKS + 1,
        ESTABLISHED_IDLE_TICKS,
        ESTABLISHED_IDLE_TICKS + 1,
        0x0fff_ffff,
        0x1000_0000,
        TICK_MASK,
    ];
    for class in [
        CLASS_CLOSED,
        CLASS_HALF_OPEN,
        CLASS_ESTABLISHED,
        CLASS_DATAGRAM,
    ] {
        for age in ages {
            for tag in tags(class, age) {
                assert_eq!(
                    victim_order_within(tag, now, DEFAULT_IDLE_HORIZONS),
                    victim_order(tag, now),
                    "class {class}, age {age}, tag {tag:#x}"
                );
            }
        }
    }
    // TCP 15 minutes, UDP 30 s.
    let horizons = idle_horizons_of(idle_horizons_word(
        horizon_ticks(900_000_000_000),
        horizon_ticks(30_000_000_000),
    ));
    let valid = |class: u32, secs: u64| tags(class, (secs * 1_000_000_000 / s) as u32)[2];
    let tier = |tag: u64| victim_order_within(tag, now, horizons) >> 28;
    assert_eq!(tier(valid(CLASS_DATAGRAM, 29)), TIER_LIVE);
    assert_eq!(tier(valid(CLASS_DATAGRAM, 31)), TIER_OVER);
    assert!(over_within(valid(CLASS_DATAGRAM, 31), now, horizons));
    assert!(!over_within(valid(CLASS_DATAGRAM, 29), now, horizons));
    assert_eq!(tier(valid(CLASS_ESTABLISHED, 31)), TIER_LIVE);
    // An open connection idle past the TCP horizon: over for a SYN on
    // its tuple (a new connection), evicted only before live flows.
    assert_eq!(tier(valid(CLASS_ESTABLISHED, 901)), TIER_IDLE_OPEN);
    assert!(over_within(valid(CLASS_ESTABLISHED, 901), now, horizons));
    assert!(!over_within(valid(CLASS_ESTABLISHED, 899), now, horizons));
    assert_eq!(tier(as_datagram(valid(CLASS_ESTABLISHED, 31))), 1);
    assert_eq!(tier(valid(CLASS_HALF_OPEN, 9)), 2);
    assert_eq!(tier(valid(CLASS_HALF_OPEN, 11)), 1);
    assert_eq!(tier(valid(CLASS_CLOSED, 0)), 1);
    // An expired UDP flow goes before a live connection seen longer ago.
    assert!(
        victim_order_within(valid(CLASS_DATAGRAM, 31), now, horizons)
            < victim_order_within(valid(CLASS_ESTABLISHED, 60), now, horizons)
    );
}

/// The horizons lbd writes: zero (a map no lbd wrote) reads as the
/// defaults, and no horizon is shorter than two touch intervals (a flow
/// refreshed once per interval never looks idle) or longer than the ages
/// the order tells apart.
#[test]
fn horizons_are_written_so_that_none_reads_as_the_defaults_and_each_is_bounded() {
    assert_eq!(idle_horizons_of(0), DEFAULT_IDLE_HORIZONS);
    let word = idle_horizons_word(7, 9);
    assert_eq!(idle_horizons_of(word), (7 << 32) | 9);
    assert_eq!(horizon_ticks(900_000_000_000), ESTABLISHED_IDLE_TICKS);
    assert_eq!(
        horizon_ticks(1_000_000_000),
        horizon_ticks(MIN_IDLE_HORIZON_NS)
    );
    assert_eq!(horizon_ticks(0), MIN_IDLE_HORIZON_TICKS);
    assert_eq!(horizon_ticks(u64::MAX), 0x0fff_ffff);
}

/// The shortest horizon holds a flow whose packets come about every
/// second: the data plane refreshes its rank once more than a touch
/// interval has passed, so a packet can find it up to two intervals (and
/// a little jitter) after its refresh. Refreshed anywhere in a tick and
/// read then, it is never over, of either protocol. (With the minimum
/// rounded down to whole ticks, 1.997 s, a refresh late in its tick read
/// 2 s later was over: a UDP flow in use re-picked.)
#[test]
fn the_shortest_horizon_never_expires_a_flow_refreshed_two_touch_intervals_ago() {
    let shortest = horizon_ticks(1_000_000_000);
    let horizons = idle_horizons_of(idle_horizons_word(shortest, shortest));
    let tick = 1u64 << TICK_SHIFT;
    let base = 1_000 * tick;
    for phase in [0, 1, tick / 2, tick - 1_000_000, tick - 1] {
        let refreshed = base + phase;
        for since in [
            2 * FLOW_TOUCH_INTERVAL_NS - 1,
            2 * FLOW_TOUCH_INTERVAL_NS,
            2 * FLOW_TOUCH_INTERVAL_NS + 10_000_000,
        ] {
            for class in [CLASS_ESTABLISHED, CLASS_DATAGRAM] {
                let tag =
                    (u64::from(rank_word(refreshed, class)) << RANK_SHIFT) | u64::from(TAG_VALID);
                assert!(
                    !over_within(tag, ticks(refreshed + since), horizons),
                    "class {class}, refreshed at {phase} ns into its tick, read {since} ns later"
                );
            }
        }
    }
    // And the horizon still ends: a flow idle a tick past it is over.
    let tag = (u64::from(rank_word(base, CLASS_DATAGRAM)) << RANK_SHIFT) | u64::from(TAG_VALID);
    let past = base + (u64::from(shortest) + 1) * tick;
    assert!(over_within(tag, ticks(past), horizons));
}

/// An insert into a full bucket with lbd's horizons (the data plane's,
/// `find_or_insert_within`): a UDP flow idle past the UDP horizon goes
/// before every live connection, though seen after them; the horizons
/// are asked only for a full bucket.
#[test]
fn a_full_bucket_evicts_an_expired_udp_flow_before_live_connections() {
    let s = 1_000_000_000u64;
    let now = 10_000 * s;
    let mut bucket = Box::<FlowBucket>::default();
    let keys = colliding(FLOW_WAYS + 1);
    let asked = core::cell::Cell::new(0);
    let horizons = || {
        asked.set(asked.get() + 1);
        idle_horizons_of(idle_horizons_word(
            horizon_ticks(900 * s),
            horizon_ticks(30 * s),
        ))
    };
    let taken = core::cell::RefCell::new(Vec::new());
    let took = |tier: u32| taken.borrow_mut().push(tier);
    let b: *mut FlowBucket = &mut *bucket;
    for (n, k) in keys[..FLOW_WAYS].iter().enumerate() {
        // Seven connections seen 60 s ago, then one UDP flow seen 31 s ago.
        let rank = if n == FLOW_WAYS - 1 {
            rank_word(now - 31 * s, CLASS_DATAGRAM)
        } else {
            rank_word(now - 60 * s, CLASS_ESTABLISHED)
        };
        let placed = unsafe {
            find_or_insert_within(
                b,
                b,
                k,
                &entry(1, k),
                (rank, flow_hash(k)),
                (horizons, took),
            )
        };
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
    }
    assert_eq!(asked.get(), 0, "no horizon read while there was room");
    let newcomer = &keys[FLOW_WAYS];
    let rank = rank_word(now, CLASS_ESTABLISHED);
    let placed = unsafe {
        find_or_insert_within(
            b,
            b,
            newcomer,
            &entry(2, newcomer),
            (rank, flow_hash(newcomer)),
            (horizons, took),
        )
    };
    assert_eq!(
        placed,
        Placed::Inserted(FLOW_WAYS - 1),
        "the UDP flow's way"
    );
    assert_eq!(taken.take(), [TIER_OVER], "told the evicted flow's tier");
    assert_eq!(asked.get(), 1);
    let held = occupied(&mut bucket);
    assert!(!held.contains(&keys[FLOW_WAYS - 1]), "the UDP flow stayed");
    for k in &keys[..FLOW_WAYS - 1] {
        assert!(held.contains(k), "{k:?} was evicted");
    }
}

/// `evict_limit` is `evict_limit_within` of the default horizons: lbd's
/// inserts judged by the defaults (`find_or_insert_at`) are what they were
/// before the horizons were a parameter.
#[test]
fn the_evict_limit_within_the_defaults_is_the_evict_limit() {
    let s = 1_000_000_000u64;
    let now = 40_000_000 * s;
    for class in [
        CLASS_CLOSED,
        CLASS_HALF_OPEN,
        CLASS_ESTABLISHED,
        CLASS_DATAGRAM,
    ] {
        for ago in [0, 1, 9, 11, 60, 899, 901, 7_200, 200 * 86_400] {
            let rank = rank_word(now - ago * s, class);
            assert_eq!(
                evict_limit_within(rank, ticks(now), DEFAULT_IDLE_HORIZONS),
                evict_limit(rank, ticks(now)),
                "class {class}, {ago} s ago"
            );
        }
        // Stamped a little ahead of the clock.
        let ahead = rank_word(now + 2 * s, class);
        assert_eq!(
            evict_limit_within(ahead, ticks(now), DEFAULT_IDLE_HORIZONS),
            evict_limit(ahead, ticks(now))
        );
    }
}

/// lbd's insert with the configured horizons (`find_or_insert_at_within`):
/// under a 2 h TCP horizon a TCP flow idle 20 minutes is live, so a copy
/// of a closed flow does not evict it (nor with the defaults: an open
/// connection idle past the horizon still outranks every closed flow),
/// and `has_room_at_within` says the bucket is full; with the defaults a
/// live copy takes it (it is idle-open there, below every live flow);
/// a copy of a live flow takes a handshake's way before it. A UDP flow
/// idle past a 30 s UDP horizon goes first.
#[test]
fn an_insert_within_the_configured_horizons_orders_ways_as_the_data_plane() {
    let keys = colliding(FLOW_WAYS + 1);
    let now = 36_000_000_000_000u64;
    let s = 1_000_000_000u64;
    let fill = |ranks: &[u32]| {
        let mut bucket = Box::<FlowBucket>::default();
        for (k, rank) in keys.iter().zip(ranks) {
            assert!(matches!(
                insert(&mut bucket, k, 1, *rank),
                Placed::Inserted(_)
            ));
        }
        bucket
    };
    let hours = idle_horizons_of(idle_horizons_word(
        horizon_ticks(7_200 * s),
        horizon_ticks(30 * s),
    ));
    let k = &keys[FLOW_WAYS];
    let insert_within = |bucket: &mut FlowBucket, rank: u32, horizons: u64| {
        let b: *mut FlowBucket = bucket;
        unsafe {
            find_or_insert_at_within(
                b,
                b,
                k,
                &entry(2, k),
                (rank, ticks(now)),
                flow_hash(k),
                horizons,
            )
        }
    };
    let idle = |ago: u64, class: u32| rank_word(now - ago * s, class);
    let long_idle = [idle(1_200, CLASS_ESTABLISHED); FLOW_WAYS];
    let closed = idle(1, CLASS_CLOSED);
    // Closed copy, TCP flows idle 20 min: full within 2 h.
    let mut bucket = fill(&long_idle);
    let b: *mut FlowBucket = &mut *bucket;
    assert_eq!(insert_within(&mut bucket, closed, hours), Placed::Contended);
    assert!(!unsafe { has_room_at_within(b, b, closed, ticks(now), hours) });
    assert_eq!(occupied(&mut bucket), keys[..FLOW_WAYS]);
    // The defaults take them for idle-open: a closed copy takes none of
    // them, a live one does.
    assert!(!unsafe { has_room_at(b, b, closed, ticks(now)) });
    assert_eq!(
        insert_within(&mut bucket, closed, DEFAULT_IDLE_HORIZONS),
        Placed::Contended
    );
    let live = idle(0, CLASS_ESTABLISHED);
    assert!(unsafe { has_room_at(b, b, live, ticks(now)) });
    assert!(matches!(
        insert_within(&mut bucket, live, DEFAULT_IDLE_HORIZONS),
        Placed::Inserted(_)
    ));
    assert_eq!(occupied(&mut bucket).len(), FLOW_WAYS);
    assert!(occupied(&mut bucket).contains(k));
    // A live copy: the handshake (way 3) goes before a live flow.
    let mut ranks = long_idle;
    ranks[3] = idle(5, CLASS_HALF_OPEN);
    let mut bucket = fill(&ranks);
    let copy = idle(0, CLASS_ESTABLISHED);
    assert!(matches!(
        insert_within(&mut bucket, copy, hours),
        Placed::Inserted(_)
    ));
    assert!(!occupied(&mut bucket).contains(&keys[3]));
    // A UDP flow idle 60 s (way 5) among TCP flows idle 100 to 170 s:
    // past its 30 s horizon, it goes first, even for a closed copy.
    let mut ranks: Vec<u32> = (0..FLOW_WAYS as u64)
        .map(|w| idle(100 + 10 * w, CLASS_ESTABLISHED))
        .collect();
    ranks[5] = idle(60, CLASS_DATAGRAM);
    let mut bucket = fill(&ranks);
    assert!(matches!(
        insert_within(&mut bucket, closed, hours),
        Placed::Inserted(_)
    ));
    assert!(!occupied(&mut bucket).contains(&keys[5]));
    // With the defaults the closed copy finds no room.
    let mut bucket = fill(&ranks);
    assert_eq!(
        insert_within(&mut bucket, closed, DEFAULT_IDLE_HORIZONS),
        Placed::Contended
    );
}

/// An open TCP connection idle past the TCP horizon (a pooled database
/// session) is still steered by its entry: a SYN, which anyone may send,
/// never takes its way, only a closed flow's; with none, the SYN is
/// turned away (to the half-open table) and the bucket is left as it was.
/// Before, an idle-open connection ranked with the closed flows, and was
/// the first a SYN evicted when older than them.
#[test]
fn a_syn_never_takes_the_way_of_an_idle_open_connection() {
    let s = 1_000_000_000u64;
    let now = 36_000 * s;
    let keys = colliding(FLOW_WAYS + 4);
    let horizons = || DEFAULT_IDLE_HORIZONS;
    // The tiers of the flows the inserts evict, as they are told.
    let taken = core::cell::RefCell::new(Vec::new());
    let took = |tier: u32| taken.borrow_mut().push(tier);
    // Ways 0-3: connections idle 20 minutes (no FIN or RST); ways 4-7
    // live, seen 1 s ago.
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    for (n, k) in keys[..FLOW_WAYS].iter().enumerate() {
        let ago = if n < 4 { 1_200 } else { 1 };
        let rank = rank_word(now - ago * s, CLASS_ESTABLISHED);
        assert!(matches!(
            insert(&mut bucket, k, 1, rank),
            Placed::Inserted(_)
        ));
    }
    let full = occupied(&mut bucket);
    let syn = rank_word(now, CLASS_HALF_OPEN);
    let put = |k: &FlowKey, rank: u32| unsafe {
        find_or_insert_within(
            b,
            b,
            k,
            &entry(2, k),
            (rank, flow_hash(k)),
            (horizons, took),
        )
    };
    assert_eq!(put(&keys[FLOW_WAYS], syn), Placed::Contended);
    assert_eq!(occupied(&mut bucket), full, "nothing evicted");
    // lbd's insert of a handshake (a replica) neither.
    let at = |k: &FlowKey, rank: u32| unsafe {
        find_or_insert_at_within(
            b,
            b,
            k,
            &entry(2, k),
            (rank, ticks(now)),
            flow_hash(k),
            DEFAULT_IDLE_HORIZONS,
        )
    };
    assert_eq!(at(&keys[FLOW_WAYS], syn), Placed::Contended);
    assert_eq!(occupied(&mut bucket), full, "nothing evicted");
    // Closed a minute ago, younger than the idle connections: the SYN
    // takes the closed way, not theirs.
    let seen = unsafe { find(b, &keys[5], flow_hash(&keys[5])) }.expect("held");
    let closed = FlowEntry {
        flags: FLOW_F_FIN,
        ..seen.entry
    };
    assert!(unsafe { rewrite(b, &seen, &closed, rank_word(now - 60 * s, CLASS_CLOSED)) });
    assert!(taken.borrow().is_empty());
    assert!(matches!(put(&keys[FLOW_WAYS], syn), Placed::Inserted(_)));
    assert_eq!(taken.take(), [TIER_OVER]);
    let held = occupied(&mut bucket);
    assert!(!held.contains(&keys[5]), "the closed flow's way");
    for k in &keys[..4] {
        assert!(held.contains(k), "an idle connection was evicted");
    }
    assert_eq!(put(&keys[FLOW_WAYS + 1], syn), Placed::Contended);
    // An established flow's insert takes the handshake, then an idle
    // connection.
    let fresh = rank_word(now, CLASS_ESTABLISHED);
    assert!(matches!(
        put(&keys[FLOW_WAYS + 2], fresh),
        Placed::Inserted(_)
    ));
    assert!(matches!(
        put(&keys[FLOW_WAYS + 3], fresh),
        Placed::Inserted(_)
    ));
    assert_eq!(taken.take(), [TIER_HANDSHAKE, TIER_IDLE_OPEN]);
    let held = occupied(&mut bucket);
    assert_eq!(
        keys[..4].iter().filter(|k| held.contains(k)).count(),
        3,
        "one idle connection taken"
    );
}

/// An established flow's insert into a full bucket takes, in turn, a
/// closed flow, a handshake, the open connections idle past the TCP
/// horizon (the oldest first), then the least recently seen live flow:
/// and tells the tier it took (`find_or_insert_within`'s `evicted`, the
/// data plane's eviction counters).
#[test]
fn an_established_insert_takes_closed_then_handshake_then_idle_open_oldest_first_then_live() {
    let s = 1_000_000_000u64;
    let now = 36_000 * s;
    let keys = colliding(2 * FLOW_WAYS);
    // TCP 15 minutes, UDP 30 s.
    let horizons = || {
        idle_horizons_of(idle_horizons_word(
            horizon_ticks(900 * s),
            horizon_ticks(30 * s),
        ))
    };
    let ranks = [
        rank_word(now - 50 * s, CLASS_ESTABLISHED),
        rank_word(now - 1_000 * s, CLASS_ESTABLISHED),
        rank_word(now - 5 * s, CLASS_CLOSED),
        rank_word(now - 3_000 * s, CLASS_ESTABLISHED),
        rank_word(now - 2 * s, CLASS_HALF_OPEN),
        rank_word(now - 60 * s, CLASS_DATAGRAM),
        rank_word(now - 90 * s, CLASS_ESTABLISHED),
        rank_word(now - 10 * s, CLASS_ESTABLISHED),
    ];
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    for (k, rank) in keys.iter().zip(ranks) {
        assert!(matches!(
            insert(&mut bucket, k, 1, rank),
            Placed::Inserted(_)
        ));
    }
    let fresh = rank_word(now, CLASS_ESTABLISHED);
    let mut taken = Vec::new();
    for k in &keys[FLOW_WAYS..FLOW_WAYS + 7] {
        let before = occupied(&mut bucket);
        let told = core::cell::Cell::new(None);
        let took = |tier: u32| assert_eq!(told.replace(Some(tier)), None, "told once");
        let placed = unsafe {
            find_or_insert_within(
                b,
                b,
                k,
                &entry(2, k),
                (fresh, flow_hash(k)),
                (horizons, took),
            )
        };
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
        let tier = told.get().expect("told the evicted flow's tier");
        let after = occupied(&mut bucket);
        let gone: Vec<FlowKey> = before.into_iter().filter(|k| !after.contains(k)).collect();
        assert_eq!(gone.len(), 1);
        let way = keys
            .iter()
            .position(|k| *k == gone[0])
            .expect("one of the first");
        taken.push((way, tier));
    }
    assert_eq!(
        taken,
        [
            // The UDP flow idle past its 30 s and the closed flow (the
            // older first).
            (5, TIER_OVER),
            (2, TIER_OVER),
            (4, TIER_HANDSHAKE),
            // Idle 50 minutes, then 16 minutes.
            (3, TIER_IDLE_OPEN),
            (1, TIER_IDLE_OPEN),
            // Then live flows, the least recently seen first.
            (6, TIER_LIVE),
            (0, TIER_LIVE),
        ]
    );
}
