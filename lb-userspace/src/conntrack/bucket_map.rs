//! An mmapable array map of buckets (`lb_common::flow_table::Bucket`)
//! mapped into lbd's address space, read and written in place with the
//! protocol the data plane runs on the same memory. One mapping for every
//! table of this layout: the connection table (`table`), the
//! half-open table, the NAT flow table (`nat::table`); each adds what it
//! does with its flows.

use std::{
    marker::PhantomData,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;
use lb_common::{
    flow_table::{self, bucket_index, Bucket, SecondBucket, SlotValue, FLOW_WAYS},
    FlowKey,
};

use crate::shared_mapping::SharedMapping;

/// Why a table could not be mapped or written.
#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    /// `mmap` of the map's memory failed.
    #[error("mapping the {table} ({buckets} buckets) into memory: {source}")]
    Map {
        /// Which table.
        table: &'static str,
        /// Buckets of the table.
        buckets: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// The table has a size the protocol cannot index.
    #[error("{table} of {buckets} buckets: not a power of two")]
    Size {
        /// Which table.
        table: &'static str,
        /// Buckets of the table.
        buckets: u32,
    },
    /// Every way of the flow's buckets was being written (retry later).
    #[error("the {0}'s buckets for this flow were busy")]
    Contended(&'static str),
    /// Both of the flow's buckets are full: a table that never evicts, or
    /// no way holds a flow the insert may evict (one seen before it).
    #[error("the {0}'s buckets for this flow are full")]
    Full(&'static str),
}

/// The mapped table. Owns the map (its file descriptor) and the mapping.
pub struct BucketMap<V> {
    mapping: SharedMapping,
    base: NonNull<Bucket<V>>,
    buckets: u32,
    second: SecondBucket,
    table: &'static str,
    _values: PhantomData<V>,
}

// SAFETY: the mapping is shared memory the kernel keeps alive while the
// map's fd is open; every access goes through the table's protocol, which
// is safe against concurrent writers (the data plane's CPUs included).
unsafe impl<V: Send> Send for BucketMap<V> {}
// SAFETY: as above; `&self` methods only go through the protocol.
unsafe impl<V: Sync> Sync for BucketMap<V> {}

impl<V: SlotValue> BucketMap<V> {
    /// Maps `map` (an mmapable array of `buckets` buckets whose flows'
    /// second buckets lie where `second` says); `table` names it in errors
    /// ("connection table", "NAT flow table").
    pub fn new(
        map: MapData,
        buckets: u32,
        second: SecondBucket,
        table: &'static str,
    ) -> Result<Self, FlowTableError> {
        if !buckets.is_power_of_two() {
            return Err(FlowTableError::Size { table, buckets });
        }
        let len = buckets as usize * size_of::<Bucket<V>>();
        let mapping = SharedMapping::new(map, len).map_err(|source| FlowTableError::Map {
            table,
            buckets,
            source,
        })?;
        Ok(Self {
            base: mapping.base(),
            mapping,
            buckets,
            second,
            table,
            _values: PhantomData,
        })
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Slots (ways) in the table.
    pub fn capacity(&self) -> u64 {
        u64::from(self.buckets) * FLOW_WAYS as u64
    }

    /// The map, for pinning and its kernel memory account.
    pub fn map(&self) -> &MapData {
        self.mapping.map()
    }

    /// What the table is, for errors.
    pub(crate) fn name(&self) -> &'static str {
        self.table
    }

    /// Bucket `index` (masked into the table).
    pub(crate) fn bucket(&self, index: u32) -> *mut Bucket<V> {
        // SAFETY: the index is masked below `buckets`, inside the mapping.
        unsafe {
            self.base
                .as_ptr()
                .add((index & (self.buckets - 1)) as usize)
        }
    }

    /// The indices of the two buckets of a key placed by `hash` (the same
    /// one twice in a one-bucket table).
    pub(crate) fn indices_of(&self, hash: u32) -> (u32, u32) {
        let mask = self.buckets - 1;
        (bucket_index(hash, mask), self.second.index(hash, mask))
    }

    /// The two buckets of a key placed by `hash`.
    pub(crate) fn buckets_of(&self, hash: u32) -> (*mut Bucket<V>, *mut Bucket<V>) {
        let (first, second) = self.indices_of(hash);
        (self.bucket(first), self.bucket(second))
    }

    /// Whether a key placed by `hash` may be read in bucket `index` (one of
    /// its two).
    pub(crate) fn is_candidate(&self, index: u32, hash: u32) -> bool {
        let (first, second) = self.indices_of(hash);
        index == first || index == second
    }

    /// Appends bucket `index`'s flows to `out` (each copy consistent).
    pub(crate) fn read_bucket(&self, index: u32, out: &mut Vec<(FlowKey, V)>) {
        let bucket = self.bucket(index);
        for way in 0..FLOW_WAYS {
            // SAFETY: a live bucket of the mapping.
            if let Some((key, seen)) = unsafe { flow_table::read_way(bucket, way) } {
                out.push((key, seen.entry));
            }
        }
    }

    /// Every flow, read bucket by bucket (each copy consistent; the table
    /// changes while it is read).
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, V)> + '_ {
        (0..self.buckets).flat_map(move |b| {
            let bucket = self.bucket(b);
            (0..FLOW_WAYS).filter_map(move |way| {
                // SAFETY: a live bucket of the mapping.
                unsafe { flow_table::read_way(bucket, way) }.map(|(key, seen)| (key, seen.entry))
            })
        })
    }

    /// Flows in the table now.
    pub fn count(&self) -> u64 {
        (0..self.buckets)
            .map(|b| {
                let bucket = self.bucket(b);
                (0..FLOW_WAYS)
                    // SAFETY: a live bucket of the mapping.
                    .filter(|&way| unsafe { flow_table::read_way(bucket, way) }.is_some())
                    .count() as u64
            })
            .sum()
    }

    /// The value of `key` (placed by `hash`), if held.
    pub fn get(&self, key: &FlowKey, hash: u32) -> Option<V> {
        let (first, second) = self.buckets_of(hash);
        // SAFETY: live buckets of the mapping.
        unsafe { flow_table::find_in(first, second, key, hash) }.map(|(_, seen)| seen.entry)
    }

    /// Empties the ways a writer that died left held (BUSY or PENDING:
    /// see `flow_table::reclaim_abandoned`): the ways held now, looked at
    /// again after `grace`, are emptied if their tags did not change
    /// meanwhile (a live writer's claim changes them: it publishes, and a
    /// new claim counts up the version). Only while no other writer of
    /// lbd's own can hold a way that long (lbd at start, holding the data
    /// plane's lock). Returns how many it emptied.
    pub fn reclaim_abandoned(&self, grace: std::time::Duration) -> u64 {
        let mut held = Vec::new();
        for b in 0..self.buckets {
            let bucket = self.bucket(b);
            for way in 0..FLOW_WAYS {
                // SAFETY: a live bucket of the mapping.
                if let Some(tag) = unsafe { flow_table::held_tag(bucket, way) } {
                    held.push((b, way, tag));
                }
            }
        }
        if held.is_empty() {
            return 0;
        }
        std::thread::sleep(grace);
        held.into_iter()
            .filter(|&(b, way, tag)| {
                // SAFETY: a live bucket of the mapping.
                unsafe { flow_table::reclaim_abandoned(self.bucket(b), way, tag) }
            })
            .count() as u64
    }

    /// Removes `key` (placed by `hash`); true if it was there.
    pub fn remove(&self, key: &FlowKey, hash: u32) -> bool {
        let (first, second) = self.buckets_of(hash);
        // SAFETY: live buckets of the mapping.
        unsafe {
            flow_table::remove(first, key, hash)
                || (second != first && flow_table::remove(second, key, hash))
        }
    }
}

/// Bytes of kernel memory a map takes, as the kernel accounts it
/// (`memlock` in the map's fdinfo: for a bucket table its preallocated
/// array, for a kernel hash map its elements, buckets and LRU lists).
/// None if the kernel does not say.
pub(crate) fn kernel_memory_bytes(map: &MapData) -> Option<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
}
