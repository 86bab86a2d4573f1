//! lbd's side of the VIP index (`VIP_INDEX`, see `lb_common::vip_index`):
//! the array mapped into this process and kept equal to `VIPS`, which
//! stays the authoritative copy. A VIP is placed in one of its two buckets
//! (`Placer`, pure: moving other VIPs along a short path when both are
//! full); every change of slots is written inside an odd generation, so a
//! lookup that overlapped it asks `VIPS` instead.

use std::{
    collections::VecDeque,
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};

use aya::maps::MapData;
use lb_common::{
    vip_index::{
        pack_meta, slot_tag, vip_buckets, VipIndexBucket, VipIndexHeader, VipSlot, VIP_INDEX_WAYS,
    },
    VipKey, VipMeta,
};

use crate::shared_mapping::SharedMapping;

/// Why the index could not be mapped or written.
#[derive(Debug, thiserror::Error)]
pub enum VipIndexError {
    /// `mmap` of the map's memory failed.
    #[error("mapping the VIP index ({buckets} buckets) into memory: {source}")]
    Map {
        /// Slot buckets of the index.
        buckets: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// The index has a size its hash cannot address.
    #[error("VIP index of {0} buckets: not a power of two")]
    Size(u32),
    /// A VIP's meta does not fit the index's packed form.
    #[error("VIP id {0} is too large for the VIP index (at most 65535)")]
    Meta(u32),
}

/// A slot: its bucket (1-based, as in the map) and way.
type At = (u32, usize);

/// A move of a placement: the VIP, its slot, the bucket it goes to.
type Step = (VipKey, At, u32);

/// A move as made: the VIP, the slot it left (None: it is the VIP being
/// placed), the slot it went to.
pub(crate) type Move = (VipKey, Option<At>, At);

/// Where VIPs go, as a pure function of what the slots hold: lbd's
/// mirror of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placer {
    mask: u32,
    /// Slot bucket `i + 1`'s ways.
    slots: Vec<[Option<VipKey>; VIP_INDEX_WAYS]>,
}

/// Longest path of moves `Placer::place` tries.
const MAX_MOVES: usize = 8;

impl Placer {
    /// An empty index of `buckets` slot buckets (a power of two).
    pub(crate) fn new(buckets: u32) -> Self {
        Self {
            mask: buckets - 1,
            slots: vec![[None; VIP_INDEX_WAYS]; buckets as usize],
        }
    }

    /// What slot `at` holds.
    fn get(&self, (bucket, way): At) -> Option<VipKey> {
        self.slots
            .get(bucket as usize - 1)
            .and_then(|ways| ways[way])
    }

    fn set(&mut self, (bucket, way): At, key: Option<VipKey>) {
        if let Some(ways) = self.slots.get_mut(bucket as usize - 1) {
            ways[way] = key;
        }
    }

    /// Where `key` is, if placed.
    pub(crate) fn find(&self, key: &VipKey) -> Option<At> {
        let (first, second) = vip_buckets(key, self.mask);
        [first, second]
            .into_iter()
            .flat_map(|b| (0..VIP_INDEX_WAYS).map(move |w| (b, w)))
            .find(|at| self.get(*at) == Some(*key))
    }

    /// Places `key` (not placed yet): the moves to make, in order, each
    /// `(key, from, to)` (`from` None for `key` itself, the last); the
    /// mirror is updated. None if no path of at most `MAX_MOVES` moves
    /// frees one of its slots (the index is then left as it was).
    pub(crate) fn place(&mut self, key: &VipKey) -> Option<Vec<Move>> {
        let (first, second) = vip_buckets(key, self.mask);
        // Breadth first over buckets: a bucket's occupants may move to
        // their other bucket; the first bucket reached with an empty way
        // ends the path.
        let mut queue: VecDeque<(u32, Vec<Step>)> =
            VecDeque::from([(first, Vec::new()), (second, Vec::new())]);
        let mut seen = vec![first, second];
        while let Some((bucket, path)) = queue.pop_front() {
            if let Some(way) = (0..VIP_INDEX_WAYS).find(|w| self.get((bucket, *w)).is_none()) {
                return Some(self.apply(key, path, (bucket, way)));
            }
            if path.len() >= MAX_MOVES {
                continue;
            }
            for way in 0..VIP_INDEX_WAYS {
                let Some(occupant) = self.get((bucket, way)) else {
                    continue;
                };
                let (a, b) = vip_buckets(&occupant, self.mask);
                let other = if a == bucket { b } else { a };
                if other == bucket || seen.contains(&other) {
                    continue;
                }
                seen.push(other);
                let mut next = path.clone();
                next.push((occupant, (bucket, way), other));
                queue.push_back((other, next));
            }
        }
        None
    }

    /// Makes the moves of `path` (each occupant to its other bucket),
    /// from its end (where `free` is empty) back, then puts `key` in the
    /// slot the first move freed (or `free` itself).
    fn apply(&mut self, key: &VipKey, path: Vec<Step>, mut free: At) -> Vec<Move> {
        let mut moves = Vec::with_capacity(path.len() + 1);
        for (occupant, from, _) in path.into_iter().rev() {
            self.set(free, Some(occupant));
            self.set(from, None);
            moves.push((occupant, Some(from), free));
            free = from;
        }
        self.set(free, Some(*key));
        moves.push((*key, None, free));
        moves
    }

    /// Takes `key` out; where it was.
    pub(crate) fn remove(&mut self, key: &VipKey) -> Option<At> {
        let at = self.find(key)?;
        self.set(at, None);
        Some(at)
    }
}

/// The mapped index. Owns the map and the mapping.
pub struct VipIndex {
    mapping: SharedMapping,
    slots: Slots,
}

/// The index's memory as lbd writes it, with its mirror.
struct Slots {
    base: NonNull<VipIndexBucket>,
    placer: Placer,
    /// VIPs the index could not place (in `VIPS` only), with their meta.
    unplaced: Vec<(VipKey, VipMeta)>,
}

// SAFETY: the mapping is shared memory the kernel keeps alive while the
// map's fd is open; lbd writes it from one place (`&mut self`), the data
// plane only reads it, through the generation protocol.
unsafe impl Send for VipIndex {}
// SAFETY: as above; `&self` methods do not touch the mapping.
unsafe impl Sync for VipIndex {}

impl VipIndex {
    /// Maps `map` (an mmapable array of a header and `buckets` slot
    /// buckets) and reads what it holds; `vips` (what `VIPS` holds) is
    /// then made the index's content: VIPs missing are placed, slots of
    /// others are emptied, metas are brought up to date.
    pub(crate) fn adopt(
        map: MapData,
        buckets: u32,
        vips: &[(VipKey, VipMeta)],
    ) -> Result<Self, VipIndexError> {
        if !buckets.is_power_of_two() {
            return Err(VipIndexError::Size(buckets));
        }
        let len = (buckets as usize + 1) * size_of::<VipIndexBucket>();
        let mapping = SharedMapping::new(map, len)
            .map_err(|source| VipIndexError::Map { buckets, source })?;
        let mut index = Self {
            slots: Slots {
                base: mapping.base(),
                placer: Placer::new(buckets),
                unplaced: Vec::new(),
            },
            mapping,
        };
        index.slots.sync(vips)?;
        Ok(index)
    }

    /// The map, for pinning.
    pub fn map(&self) -> &MapData {
        self.mapping.map()
    }

    /// Inserts VIP `key` or changes its meta.
    pub(crate) fn set(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), VipIndexError> {
        self.slots.set(key, meta)
    }

    /// Takes VIP `key` out.
    pub(crate) fn remove(&mut self, key: &VipKey) -> Result<(), VipIndexError> {
        self.slots.remove(key)
    }

    /// VIPs in `VIPS` only (the index had no room for them).
    pub fn unplaced(&self) -> usize {
        self.slots.unplaced.len()
    }
}

impl Slots {
    /// Reads what the slots hold into the mirror, then makes them hold
    /// exactly `vips` (one write section).
    fn sync(&mut self, vips: &[(VipKey, VipMeta)]) -> Result<(), VipIndexError> {
        for (_, meta) in vips {
            pack(meta)?;
        }
        self.begin();
        let buckets = self.placer.slots.len() as u32;
        for bucket in 1..=buckets {
            for way in 0..VIP_INDEX_WAYS {
                let slot = self.slot((bucket, way));
                // SAFETY: a slot of the mapping (only lbd writes it).
                let (tag, addr) = unsafe {
                    (
                        atomic32(&raw mut (*slot).tag).load(Ordering::Acquire),
                        (*slot).addr,
                    )
                };
                if tag == 0 {
                    continue;
                }
                let key = VipKey {
                    addr,
                    port: tag as u16,
                    proto: (tag >> 16) as u8,
                    family: (tag >> 24) as u8,
                };
                let wanted = vips.iter().any(|(k, _)| *k == key);
                let placed_already = self.placer.find(&key).is_some();
                let (first, second) = vip_buckets(&key, self.placer.mask);
                let its_bucket = bucket == first || bucket == second;
                if wanted && !placed_already && its_bucket {
                    self.placer.set((bucket, way), Some(key));
                } else {
                    self.clear((bucket, way));
                }
            }
        }
        self.unplaced.clear();
        let mut result = Ok(());
        for (key, meta) in vips {
            let done = match self.placer.find(key) {
                Some(at) => self.write_meta(at, meta),
                None => self.place(key, meta),
            };
            if done.is_err() {
                result = done;
            }
        }
        self.write_overflow();
        self.end();
        result
    }

    /// Inserts VIP `key` or changes its meta (a VIP already placed: one
    /// 64-bit store, no write section).
    fn set(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), VipIndexError> {
        if let Some(at) = self.placer.find(key) {
            return self.write_meta(at, meta);
        }
        if let Some(entry) = self.unplaced.iter_mut().find(|(k, _)| k == key) {
            entry.1 = *meta;
            return Ok(());
        }
        pack(meta)?;
        self.begin();
        let placed = self.place(key, meta);
        self.write_overflow();
        self.end();
        placed
    }

    /// Takes VIP `key` out (nothing if it is not in), then places VIPs
    /// that found no room before, if any.
    fn remove(&mut self, key: &VipKey) -> Result<(), VipIndexError> {
        let before = self.unplaced.len();
        self.unplaced.retain(|(k, _)| k != key);
        let at = self.placer.remove(key);
        if at.is_none() && self.unplaced.len() == before {
            return Ok(());
        }
        self.begin();
        if let Some(at) = at {
            self.empty(at);
        }
        let waiting = std::mem::take(&mut self.unplaced);
        let mut result = Ok(());
        for (key, meta) in &waiting {
            let placed = self.place(key, meta);
            if placed.is_err() {
                result = placed;
            }
        }
        self.write_overflow();
        self.end();
        result
    }

    /// Places `key` with `meta` inside a write section, or notes it as
    /// unplaced.
    fn place(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), VipIndexError> {
        let word = pack(meta)?;
        let Some(moves) = self.placer.place(key) else {
            self.unplaced.push((*key, *meta));
            return Ok(());
        };
        for (moved, from, to) in moves {
            let meta_word = match from {
                // SAFETY: a slot of the mapping.
                Some(from) => unsafe {
                    atomic64(&raw mut (*self.slot(from)).meta).load(Ordering::Acquire)
                },
                None => word,
            };
            self.write_slot(to, &moved, meta_word);
            if let Some(from) = from {
                // The mirror moved it already; the memory follows.
                self.empty(from);
            }
        }
        Ok(())
    }

    fn slot(&self, (bucket, way): At) -> *mut VipSlot {
        let bucket = (bucket as usize).min(self.placer.slots.len());
        // SAFETY: within the mapping (bucket at most the slot buckets'
        // count; the header is bucket 0).
        unsafe { &raw mut (*self.base.as_ptr().add(bucket)).slots[way % VIP_INDEX_WAYS] }
    }

    fn generation(&self) -> &AtomicU64 {
        // SAFETY: the header of the mapping.
        unsafe { atomic64(&raw mut (*self.base.as_ptr().cast::<VipIndexHeader>()).generation) }
    }

    /// Makes the generation odd (a new value even if a writer that died
    /// left it odd): lookups from now on are unsure.
    fn begin(&self) {
        let now = self.generation().load(Ordering::Acquire);
        let odd = if now & 1 == 0 { now + 1 } else { now + 2 };
        self.generation().store(odd, Ordering::Release);
    }

    /// Makes the generation even again (and new).
    fn end(&self) {
        let now = self.generation().load(Ordering::Acquire);
        self.generation().store((now | 1) + 1, Ordering::Release);
    }

    fn write_overflow(&self) {
        // SAFETY: the header of the mapping.
        unsafe { atomic64(&raw mut (*self.base.as_ptr().cast::<VipIndexHeader>()).overflow) }
            .store(self.unplaced.len() as u64, Ordering::Release);
    }

    /// Writes a slot (inside a write section): meta and address first,
    /// the tag last.
    fn write_slot(&self, at: At, key: &VipKey, meta: u64) {
        let slot = self.slot(at);
        // SAFETY: a slot of the mapping; atomics keep the order.
        unsafe {
            atomic64(&raw mut (*slot).meta).store(meta, Ordering::Release);
            for (i, word) in key.addr.iter().enumerate() {
                atomic32(&raw mut (*slot).addr[i]).store(*word, Ordering::Release);
            }
            atomic32(&raw mut (*slot).tag).store(slot_tag(key), Ordering::Release);
        }
    }

    /// Empties a slot, in the mirror too (inside a write section).
    fn clear(&mut self, at: At) {
        self.placer.set(at, None);
        self.empty(at);
    }

    /// Empties a slot in memory (inside a write section).
    fn empty(&self, at: At) {
        // SAFETY: a slot of the mapping.
        unsafe { atomic32(&raw mut (*self.slot(at)).tag) }.store(0, Ordering::Release);
    }

    /// A placed VIP's meta, in one store.
    fn write_meta(&self, at: At, meta: &VipMeta) -> Result<(), VipIndexError> {
        let word = pack(meta)?;
        // SAFETY: a slot of the mapping.
        unsafe { atomic64(&raw mut (*self.slot(at)).meta) }.store(word, Ordering::Release);
        Ok(())
    }
}

fn pack(meta: &VipMeta) -> Result<u64, VipIndexError> {
    pack_meta(meta).ok_or(VipIndexError::Meta(meta.id))
}

/// # Safety
/// `p` must be valid and 8-aligned.
unsafe fn atomic64<'a>(p: *mut u64) -> &'a AtomicU64 {
    // SAFETY: per the contract.
    unsafe { AtomicU64::from_ptr(p) }
}

/// # Safety
/// `p` must be valid and 4-aligned.
unsafe fn atomic32<'a>(p: *mut u32) -> &'a AtomicU32 {
    // SAFETY: per the contract.
    unsafe { AtomicU32::from_ptr(p) }
}

#[cfg(test)]
mod tests {
    use lb_common::vip_index::{find, Found};

    use super::*;

    fn key(i: u32) -> VipKey {
        VipKey {
            addr: [
                u32::from_be_bytes([198, 18, (i >> 8) as u8, i as u8]),
                0,
                0,
                0,
            ],
            port: 80u16.to_be(),
            proto: 6,
            family: 2,
        }
    }

    #[test]
    fn a_full_load_of_vips_is_placed_and_found_where_the_data_plane_looks() {
        // Every size lbd uses: VIPs up to the index's half of its slots.
        for buckets in [2u32, 16, 32, 512] {
            let mut placer = Placer::new(buckets);
            for i in 0..buckets {
                let moves = placer.place(&key(i)).expect("placed");
                assert_eq!(moves.last().map(|m| m.0), Some(key(i)));
            }
            for i in 0..buckets {
                let at = placer.find(&key(i)).expect("found");
                let (a, b) = vip_buckets(&key(i), buckets - 1);
                assert!(at.0 == a || at.0 == b);
            }
        }
    }

    #[test]
    fn moves_keep_every_vip_in_one_of_its_buckets_and_removal_frees_the_slot() {
        let mut placer = Placer::new(2);
        for i in 0..4 {
            placer
                .place(&key(i))
                .expect("room for four in two buckets of two");
        }
        assert_eq!(placer.place(&key(4)), None, "full");
        let before = placer.clone();
        assert_eq!(placer, before, "a failed place changes nothing");
        let at = placer.remove(&key(2)).expect("was placed");
        assert_eq!(placer.get(at), None);
        placer.place(&key(4)).expect("room again");
        for i in [0, 1, 3, 4] {
            assert!(placer.find(&key(i)).is_some(), "{i}");
        }
    }

    /// What the data plane finds in `memory` (an index's buckets, header
    /// first).
    fn lookup(memory: &[VipIndexBucket], k: &VipKey) -> Found {
        let buckets = memory.len() as u32 - 1;
        // SAFETY: elements of `memory`.
        unsafe {
            find(
                |i| memory.get(i as usize).map(|b| b as *const VipIndexBucket),
                buckets - 1,
                k,
            )
        }
    }

    #[test]
    fn what_lbd_writes_the_data_plane_finds_and_overflow_makes_misses_unsure() {
        let buckets = 2u32;
        let mut memory = vec![VipIndexBucket::default(); buckets as usize + 1];
        let base = NonNull::new(memory.as_mut_ptr()).expect("non-null");
        let mut slots = Slots {
            base,
            placer: Placer::new(buckets),
            unplaced: Vec::new(),
        };
        let meta = |id| VipMeta::new(id, 65_537, 0, lb_common::Mode::DsrL2);
        let vips: Vec<_> = (0..4).map(|i| (key(i), meta(i))).collect();
        slots.sync(&vips).expect("synced");
        let view = |slots: &Slots| {
            // SAFETY: `memory`, which `slots` writes, outlives this view.
            unsafe { std::slice::from_raw_parts(slots.base.as_ptr(), buckets as usize + 1) }
        };
        for (k, m) in &vips {
            assert_eq!(lookup(view(&slots), k), Found::Vip(*m));
        }
        assert_eq!(lookup(view(&slots), &key(9)), Found::NotAVip);
        slots.set(&key(4), &meta(4)).expect("noted");
        assert_eq!(slots.unplaced.len(), 1);
        assert_eq!(lookup(view(&slots), &key(9)), Found::Unsure);
        let flipped = VipMeta {
            active_table: 1,
            ..meta(1)
        };
        slots.set(&key(1), &flipped).expect("meta");
        assert_eq!(lookup(view(&slots), &key(1)), Found::Vip(flipped));
        slots.remove(&key(0)).expect("removed");
        assert!(slots.unplaced.is_empty());
        assert_eq!(lookup(view(&slots), &key(0)), Found::NotAVip);
        assert_eq!(lookup(view(&slots), &key(4)), Found::Vip(meta(4)));
        // A restarted lbd reads the slots back: nothing moves, slots of
        // VIPs gone are emptied.
        let kept: Vec<_> = [1, 2, 4].iter().map(|i| (key(*i), meta(*i))).collect();
        let before = slots.placer.clone();
        slots.placer = Placer::new(buckets);
        slots.sync(&kept).expect("adopted");
        assert_eq!(lookup(view(&slots), &key(3)), Found::NotAVip);
        for (k, m) in &kept {
            assert_eq!(slots.placer.find(k), before.find(k), "{k:?} stayed");
            assert_eq!(lookup(view(&slots), k), Found::Vip(*m));
        }
        drop(slots);
        drop(memory);
    }
}
