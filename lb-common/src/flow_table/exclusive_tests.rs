//! The exclusive insert's lost races, stepped by hand: a claim lost to
//! another CPU's insert of another key, and a copy taken out by another
//! CPU's insert of the same key. (Threads racing reach the second case
//! too rarely to test it: it needs the loser's read of the headers to
//! fall between the winner's claim and its `PENDING` store.)

extern crate std;
use std::{boxed::Box, vec::Vec};

use super::*;
use crate::{
    flow_table::tests::{entry, in_flight, key},
    hash::flow_hash,
};

fn state_of(bucket: *mut FlowBucket, way: usize) -> u32 {
    tag_state(unsafe { tag_at(bucket, way) }.load())
}

/// Another CPU's inserts of other keys claim the ways this insert read
/// as empty, in the instant between its read of the header and its
/// compare-and-swap: it reads the header again and claims a way still
/// empty, rather than answering `Contended` (which the data plane took
/// for a full table and dropped the SYN as `DropNatTableFull`). Without
/// the second claim (`insert_new_once`) the same step is `Contended`,
/// nothing written.
#[test]
fn a_claim_lost_to_another_insert_claims_a_way_still_empty() {
    let k = key(7);
    let h = flow_hash(&k);
    for (first_way, second_way) in [(0, None), (0, Some(1))] {
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        // Read before the others' claims: every way empty.
        let seen = unsafe { empty_pair(b, b) };
        assert_eq!(seen, (0xff, 0));
        in_flight(b, first_way, &key(100), TAG_BUSY);
        if let Some(way) = second_way {
            in_flight(b, way, &key(101), TAG_VALID);
        }
        let once = unsafe { insert_new_from(b, b, &k, &entry(1, &k), h, Some(seen), false) };
        assert_eq!(once, Claimed::Contended, "one claim: lost");
        assert!(unsafe { locate(b, &k, h) }.is_none(), "nothing written");
        let want = 1 + usize::from(second_way.is_some());
        let claimed = unsafe { insert_new_from(b, b, &k, &entry(1, &k), h, Some(seen), true) };
        let Claimed::Inserted { pos, .. } = claimed else {
            panic!("{claimed:?}: a lost claim is no full table");
        };
        assert_eq!(pos, want, "the next way empty when read again");
        assert_eq!(unsafe { locate(b, &k, h) }.map(|(w, _)| w), Some(want));
        assert_eq!(state_of(b, first_way), TAG_BUSY, "theirs untouched");
    }
}

/// In a table of two buckets the second claim goes where the two-choice
/// rule sends it on the header read again: the second bucket once the
/// first's preferred ways are gone.
#[test]
fn a_claim_lost_in_a_nearly_full_first_bucket_goes_to_the_second() {
    let k = key(8);
    let h = flow_hash(&k);
    let mut buckets = Box::<[FlowBucket; 2]>::default();
    let first: *mut FlowBucket = &mut buckets[0];
    let second: *mut FlowBucket = &mut buckets[1];
    let others: Vec<FlowKey> = (200..).map(key).take(FLOW_WAYS).collect();
    for (way, other) in others
        .iter()
        .enumerate()
        .take(PREFER_FIRST_BELOW as usize - 1)
    {
        in_flight(first, way, other, TAG_VALID);
    }
    let seen = unsafe { empty_pair(first, second) };
    // Another CPU takes the last preferred way of the first bucket.
    let last = PREFER_FIRST_BELOW as usize - 1;
    in_flight(first, last, &others[last], TAG_BUSY);
    let claimed = unsafe { insert_new_from(first, second, &k, &entry(1, &k), h, Some(seen), true) };
    assert!(
        matches!(claimed, Claimed::Inserted { pos: FLOW_WAYS, .. }),
        "{claimed:?}"
    );
    assert_eq!(unsafe { locate(second, &k, h) }.map(|(w, _)| w), Some(0));
}

/// `Taken(NOWHERE)`: another CPU's pending copy of the key at a lower
/// position took this insert's copy out. That copy stands, pending or
/// published, and `standing_copy` finds it from the header lines (the
/// emptied copy no longer carries the fingerprint; another key's way
/// does not count), so the data plane's packet joins the flow the other
/// CPU opened instead of being dropped as a full table.
#[test]
fn the_copy_that_took_an_insert_out_is_found_standing() {
    let k = key(9);
    let h = flow_hash(&k);
    let mut buckets = Box::<[FlowBucket; 2]>::default();
    let first: *mut FlowBucket = &mut buckets[0];
    let second: *mut FlowBucket = &mut buckets[1];
    assert_eq!(unsafe { standing_copy(first, second, h) }, NOWHERE);
    in_flight(first, 0, &key(300), TAG_VALID);
    // Ours at way 2, pending, then taken out as `take_out_if` does.
    let ours = in_flight(first, 2, &k, TAG_PENDING);
    assert_eq!(take_out_if(unsafe { tag_at(first, 2) }, ours, 1), 0);
    assert_eq!(state_of(first, 2), TAG_EMPTY);
    assert_eq!(unsafe { standing_copy(first, second, h) }, NOWHERE);
    // Theirs, below ours: pending, then published.
    let theirs = in_flight(first, 1, &k, TAG_PENDING);
    assert_eq!(unsafe { standing_copy(first, second, h) }, 1);
    assert!(unsafe { holds_key(first, 1, &k, h) });
    assert!(unsafe { tag_at(first, 1) }.swap_if(theirs, retagged(theirs, TAG_VALID)));
    assert_eq!(unsafe { standing_copy(first, second, h) }, 1);
    // In the second bucket: its position counts the first's ways.
    let mut buckets = Box::<[FlowBucket; 2]>::default();
    let first: *mut FlowBucket = &mut buckets[0];
    let second: *mut FlowBucket = &mut buckets[1];
    in_flight(second, 3, &k, TAG_PENDING);
    assert_eq!(unsafe { standing_copy(first, second, h) }, FLOW_WAYS + 3);
    assert_eq!(unsafe { standing_copy(first, first, h) }, NOWHERE);
}

#[test]
fn lowest_position_is_the_lowest_set_bit_of_both_buckets_or_nowhere() {
    for mask in 0u64..1 << (2 * FLOW_WAYS) {
        let want = if mask == 0 {
            NOWHERE
        } else {
            mask.trailing_zeros() as usize
        };
        assert_eq!(lowest_position(mask), want, "{mask:#b}");
    }
}
