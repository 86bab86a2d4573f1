//! The NAT flow table in the data plane: `NAT_BUCKETS`, an array of
//! buckets of ways read with plain loads and claimed with compare-and-swap
//! (layout and protocol in `lb_common::flow_table`, the connection
//! table's, shared with lbd, which maps the same memory). A key is placed
//! by its `table_hash` in one of two buckets; a lookup reads the first
//! bucket's header line and the matching way's lines, the second bucket
//! only on a miss. Inserts are exclusive (`flow_table::insert_new`): a key
//! is never held twice, so a reply entry is its source port's
//! reservation, and nothing is evicted (a full pair of buckets refuses).
//!
//! The lookup and the insert are functions of their own, each reached
//! from few places: the program is loaded without BTF, so every call is
//! verified in the state that makes it, and an inlined copy per caller
//! would multiply that.

use lb_common::{
    flow_table::{self, bucket_index, second_bucket_index, Claimed, Probed, NOWHERE},
    nat::NatBucket,
    FlowKey, NatEntry,
};

use super::scratch::NatScratch;
use crate::maps::{NAT_BUCKETS, NAT_SCRATCH};

/// Buckets in `NAT_BUCKETS` minus one (a power of two minus one); set by
/// lbd at load time from the table's size.
#[unsafe(no_mangle)]
static NAT_BUCKET_MASK: u32 = 0;

/// `NAT_BUCKET_MASK`.
#[inline(always)]
fn mask() -> u32 {
    // SAFETY: a read of a global (volatile: the loader's value decides).
    unsafe { core::ptr::read_volatile(&NAT_BUCKET_MASK) }
}

/// The two buckets of a key with table hash `place` (the same bucket
/// twice in a one-bucket table).
#[inline(always)]
fn buckets_of(place: u32) -> Option<(*mut NatBucket, *mut NatBucket)> {
    let mask = mask();
    let first = NAT_BUCKETS.get_ptr_mut(bucket_index(place, mask))?;
    let second = NAT_BUCKETS.get_ptr_mut(second_bucket_index(place, mask))?;
    Some((first, second))
}

/// `lb_nat_find`'s answer when the key is not held.
const NOT_HELD: u64 = u64::MAX;

/// The entry of `key` (table hash `place`), if the table holds it: a
/// pointer into the table, read and written in place (the data plane
/// marks flags, age and next hop there).
#[inline(always)]
pub fn find(key: &FlowKey, place: u32) -> Option<&'static mut NatEntry> {
    let found = lb_nat_find(key, place);
    if found == NOT_HELD {
        return None;
    }
    entry_in((found >> 8) as u32, found as u32)
}

/// The entry of way `way` of bucket `bucket` (an index into the table),
/// in place.
#[inline(always)]
pub fn entry_in(bucket: u32, way: u32) -> Option<&'static mut NatEntry> {
    let bucket = NAT_BUCKETS.get_ptr_mut(bucket)?;
    // SAFETY: a live element of the table; the way index is masked. A
    // map value stays valid for this program run.
    Some(unsafe { &mut (*bucket).slots[way as usize & (flow_table::FLOW_WAYS - 1)].entry })
}

/// Where `key` (table hash `place`) is held: its bucket's index (high
/// bits) and way (low 8), or `NOT_HELD`. A function of its own (see the
/// module's comment); the key is the caller's copy.
#[inline(always)]
fn lb_nat_find(key: &FlowKey, place: u32) -> u64 {
    let mask = mask();
    let first_index = bucket_index(place, mask);
    let Some(first) = NAT_BUCKETS.get_ptr_mut(first_index) else {
        return NOT_HELD;
    };
    // SAFETY: a live element of the table.
    if let Some((way, _)) = unsafe { flow_table::locate(first, key, place) } {
        return (u64::from(first_index) << 8) | way as u64;
    }
    let second_index = second_bucket_index(place, mask);
    if second_index == first_index {
        return NOT_HELD;
    }
    let Some(second) = NAT_BUCKETS.get_ptr_mut(second_index) else {
        return NOT_HELD;
    };
    // SAFETY: as above.
    match unsafe { flow_table::locate(second, key, place) } {
        Some((way, _)) => (u64::from(second_index) << 8) | way as u64,
        None => NOT_HELD,
    }
}

/// What `insert` did.
pub enum Inserted {
    /// The key went in at this position (of its two buckets' ways).
    Yes(u32),
    /// Another copy of the key stands, at this position (`NOWHERE`:
    /// still being settled by the CPU that inserted it).
    Taken(u32),
    /// Both of its buckets are full.
    Full,
    /// The way chosen was taken by another CPU in the same instant.
    Contended,
}

/// `lb_nat_insert`'s answer: the position in the low byte, the outcome
/// above it.
const INSERTED: u32 = 1 << 8;
const TAKEN: u32 = 2 << 8;
const FULL: u32 = 3 << 8;
const CONTENDED: u32 = 4 << 8;

/// Inserts `key` (table hash `place`) with `entry`, never beside another
/// copy of it and never in place of another key (`flow_table::insert_new`;
/// `RETRY` false: `insert_new_once`, for a caller with another key to try
/// when a claim is lost, at half the verifier's cost of its claim).
#[inline(always)]
pub fn insert<const RETRY: bool>(key: &FlowKey, entry: &NatEntry, place: u32) -> Inserted {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Inserted::Contended;
    };
    lb_nat_insert::<RETRY>(key, entry, place, scratch);
    // SAFETY: this CPU's slot, just written by `lb_nat_insert`.
    let answer = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*scratch).inserted)) };
    let pos = answer & 0xff;
    match answer & !0xff {
        INSERTED => Inserted::Yes(pos),
        TAKEN => Inserted::Taken(pos),
        FULL => Inserted::Full,
        _ => Inserted::Contended,
    }
}

/// `insert` as a function of its own, its answer left in `scratch`
/// (`inserted`), not returned: every way out of it then returns the
/// caller the same state, so the caller's code after the call is verified
/// once, not once per outcome. Key and entry are in this CPU's scratch
/// slot.
#[inline(never)]
fn lb_nat_insert<const RETRY: bool>(
    key: &FlowKey,
    entry: &NatEntry,
    place: u32,
    scratch: *mut NatScratch,
) -> u32 {
    let answer = match buckets_of(place) {
        // SAFETY: both are live elements of the table.
        Some((first, second)) => {
            let claimed = if RETRY {
                // SAFETY: as above.
                unsafe { flow_table::insert_new(first, second, key, entry, place) }
            } else {
                // SAFETY: as above.
                unsafe { flow_table::insert_new_once(first, second, key, entry, place) }
            };
            match claimed {
                Claimed::Inserted { pos, .. } => INSERTED | (pos as u32 & 0x1f),
                Claimed::Taken(pos) => TAKEN | (pos as u32 & 0x1f),
                Claimed::Full => FULL,
                Claimed::Contended => CONTENDED,
            }
        }
        None => FULL,
    };
    // SAFETY: this CPU's slot (the caller's lookup).
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*scratch).inserted), answer) };
    0
}

/// Starts loading the header lines of both buckets of a key (table hash
/// `place`; see `flow_table::warm`) together: a packet that may open a
/// flow (a TCP SYN) almost always misses the key in both, and the two
/// misses then overlap instead of following one another.
#[inline(always)]
pub fn warm(place: u32) {
    if let Some((first, second)) = buckets_of(place) {
        // SAFETY: both are live elements of the table.
        unsafe {
            flow_table::warm(first);
            flow_table::warm(second);
        }
    }
}

/// Starts loading the way an insert of a key (table hash `place`) into
/// its first bucket would most likely write (`flow_table::warm_empty_way`):
/// the forward entry's, while the port search runs.
#[inline(always)]
pub fn warm_slot(place: u32) {
    if let Some(first) = NAT_BUCKETS.get_ptr_mut(bucket_index(place, mask())) {
        // SAFETY: a live element of the table.
        unsafe { flow_table::warm_empty_way(first) };
    }
}

/// Whether a key about to be inserted (table hash `place`) is surely
/// absent and has room, from its buckets' header lines alone
/// (`flow_table::probe`): the source-port search's test of a candidate.
#[inline(always)]
pub fn probe(place: u32) -> Probed {
    match buckets_of(place) {
        // SAFETY: both are live elements of the table.
        Some((first, second)) => unsafe { flow_table::probe(first, second, place) },
        None => Probed::Maybe,
    }
}

/// The bucket of position `pos` of a key with table hash `place`.
#[inline(always)]
fn bucket_at(place: u32, pos: u32) -> Option<*mut NatBucket> {
    let (first, second) = buckets_of(place)?;
    Some(flow_table::bucket_at(first, second, pos as usize))
}

/// The index in the table of the bucket of position `pos` of a key with
/// table hash `place` (None: no position).
#[inline(always)]
pub fn bucket_index_at(place: u32, pos: u32) -> Option<u32> {
    let mask = mask();
    match pos {
        0..=7 => Some(bucket_index(place, mask)),
        8..=15 => Some(second_bucket_index(place, mask)),
        _ => None,
    }
}

/// Whether position `pos` of the buckets of `key` (table hash `place`)
/// holds it, published or about to be (another CPU's insert: its key and
/// value are written before it is visible to any insert): the flow that
/// insert opened, for a packet of the same flow that lost the race to
/// open it.
#[inline(always)]
pub fn holds_at(key: &FlowKey, place: u32, pos: u32) -> bool {
    if pos as usize >= NOWHERE {
        return false;
    }
    let Some(bucket) = bucket_at(place, pos) else {
        return false;
    };
    // SAFETY: a live element of the table; the index is masked.
    unsafe {
        flow_table::holds_key(
            bucket,
            pos as usize & (flow_table::FLOW_WAYS - 1),
            key,
            place,
        )
    }
}

/// Where the copy of a key (table hash `place`) that took out this
/// program run's (`Inserted::Taken(NOWHERE)`) most likely stands
/// (`flow_table::standing_copy`; `holds_at` confirms it): `NOWHERE` if
/// nowhere.
#[inline(always)]
pub fn standing_copy(place: u32) -> u32 {
    match buckets_of(place) {
        // SAFETY: both are live elements of the table.
        Some((first, second)) => unsafe { flow_table::standing_copy(first, second, place) as u32 },
        None => NOWHERE as u32,
    }
}

/// Takes out the entry of `key` this program run inserted at position
/// `pos` of its buckets (table hash `place`): a new flow's reply entry,
/// its source port's reservation, when the flow's forward entry could not
/// go in.
#[inline(always)]
pub fn release(key: &FlowKey, place: u32, pos: u32) {
    let Some(bucket) = bucket_at(place, pos) else {
        return;
    };
    // SAFETY: a live element of the table.
    unsafe {
        if let Some((way, tag)) = flow_table::locate(bucket, key, place) {
            flow_table::release_way(bucket, way, tag);
        }
    }
}
