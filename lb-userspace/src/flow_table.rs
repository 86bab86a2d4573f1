//! lbd's side of the connection table (`FLOW_BUCKETS`): the array map
//! mapped into this process (`BPF_F_MMAPABLE`), read and written in place
//! with the protocol the data plane runs (`lb_common::flow_table`), so a
//! flow lbd installs (replication) or removes (`lbctl`, expiry) can never
//! collide with one the program inserts at the same moment, and
//! enumerating a million flows costs memory reads, not a syscall per flow.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::maps::MapData;
use lb_common::{
    flow_table::{
        self, bucket_index, class_of, fingerprint, rank_word, second_bucket_index, tag_fingerprint,
        tag_rank, FlowBucket, Placed, FLOW_WAYS,
    },
    hash::{flow_hash, table_hash},
    FlowEntry, FlowKey,
};

/// Why the table could not be mapped or written.
#[derive(Debug, thiserror::Error)]
pub enum FlowTableError {
    /// `mmap` of the map's memory failed.
    #[error("mapping the connection table ({buckets} buckets) into memory: {source}")]
    Map {
        /// Buckets of the table.
        buckets: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// The table has a size the protocol cannot index.
    #[error("connection table of {0} buckets: not a power of two")]
    Size(u32),
    /// The object's map of this name (`FLOW_BUCKETS`, `HALF_OPEN`) is not
    /// an array map.
    #[error("the object's {0} (a table of flow buckets) is not an array map")]
    NotAnArray(&'static str),
    /// Every way of the flow's bucket was being written (retry later).
    #[error("the connection table's bucket for this flow was busy")]
    Contended,
}

/// The hash a table of this layout places its flows by: the object's two
/// tables differ, and a connection table a release before `table_hash`
/// left behind was placed by `flow_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `hash::table_hash`: the connection table (`FLOW_BUCKETS`).
    ByTableHash,
    /// `hash::flow_hash`: the half-open table (`HALF_OPEN`; a SYN
    /// computes that hash anyway, for its Maglev pick).
    ByFlowHash,
}

/// What `FlowTable::re_place` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Flows found where this release would not look for them.
    pub misplaced: u64,
    /// Of those, copied to their place (the others had a copy there
    /// already, seen at least as recently).
    pub copied: u64,
    /// Copies that could not be written (their buckets stayed busy).
    pub failed: u64,
    /// Misplaced copies taken out (`re_place` with `release`).
    pub released: u64,
}

/// The mapped table. Owns the map (its file descriptor) and the mapping.
pub struct FlowTable {
    map: MapData,
    base: NonNull<FlowBucket>,
    buckets: u32,
    len: usize,
    placement: Placement,
}

// SAFETY: the mapping is shared memory the kernel keeps alive while the
// map's fd is open; every access goes through the table's protocol, which
// is safe against concurrent writers (the data plane's CPUs included).
unsafe impl Send for FlowTable {}
// SAFETY: as above; `&self` methods only read through the protocol.
unsafe impl Sync for FlowTable {}

impl FlowTable {
    /// Maps `map` (an mmapable array of `buckets` `FlowBucket`s holding
    /// flows as `placement` places them).
    pub fn new(map: MapData, buckets: u32, placement: Placement) -> Result<Self, FlowTableError> {
        if !buckets.is_power_of_two() {
            return Err(FlowTableError::Size(buckets));
        }
        let len = buckets as usize * size_of::<FlowBucket>();
        // SAFETY: a fresh shared mapping of the map's fd over its whole
        // value area (what BPF_F_MMAPABLE arrays allow); checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(FlowTableError::Map {
                buckets,
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(addr.cast::<FlowBucket>()).ok_or(FlowTableError::Map {
            buckets,
            source: std::io::Error::other("mmap returned a null mapping"),
        })?;
        Ok(Self {
            map,
            base,
            buckets,
            len,
            placement,
        })
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// Flows the table can hold (its slots: `FLOW_HEADROOM` per
    /// configured flow, rounded up).
    pub fn capacity(&self) -> u64 {
        u64::from(self.buckets) * FLOW_WAYS as u64
    }

    /// The map, for pinning.
    pub fn map(&self) -> &MapData {
        &self.map
    }

    fn bucket(&self, index: u32) -> *mut FlowBucket {
        // SAFETY: `index` < buckets (masked by the callers), inside the
        // mapping.
        unsafe {
            self.base
                .as_ptr()
                .add((index & (self.buckets - 1)) as usize)
        }
    }

    /// The hash that places `key` in this table.
    fn place_hash(&self, key: &FlowKey) -> u32 {
        match self.placement {
            Placement::ByTableHash => table_hash(key),
            Placement::ByFlowHash => flow_hash(key),
        }
    }

    /// The flow's two buckets and the hash that placed it there.
    fn buckets_of(&self, key: &FlowKey) -> (*mut FlowBucket, *mut FlowBucket, u32) {
        let hash = self.place_hash(key);
        let mask = self.buckets - 1;
        (
            self.bucket(bucket_index(hash, mask)),
            self.bucket(second_bucket_index(hash, mask)),
            hash,
        )
    }

    /// Whether a flow `key` read in bucket `index` under tag `tag` is
    /// where this release looks for it: in one of its two buckets, under
    /// its fingerprint.
    fn in_place(&self, index: u32, tag: u64, key: &FlowKey) -> bool {
        let hash = self.place_hash(key);
        let mask = self.buckets - 1;
        (index == bucket_index(hash, mask) || index == second_bucket_index(hash, mask))
            && tag_fingerprint(tag) == fingerprint(hash)
    }

    /// Puts the flows a previous release placed elsewhere where this one
    /// looks for them (an upgrade across a change of `table_hash`: the
    /// releases before it placed IPv6 flows by `flow_hash`), so they keep
    /// their backends. Each misplaced flow is copied to its place, unless
    /// a copy there was seen at least as recently; with `release`, its
    /// misplaced copy is then taken out. lbd runs it twice on a table a
    /// previous lbd left: without `release` right after loading (the old
    /// program, still running, keeps finding the old copies), and with it
    /// once this lbd's program runs (what the old one changed meanwhile
    /// is copied again, then the old copies go).
    pub fn re_place(&self, release: bool) -> Replaced {
        let mut done = Replaced::default();
        for index in 0..self.buckets {
            let bucket = self.bucket(index);
            for way in 0..FLOW_WAYS {
                // SAFETY: a live bucket of the mapping.
                let Some((key, seen)) = (unsafe { flow_table::read_way(bucket, way) }) else {
                    continue;
                };
                if self.in_place(index, seen.tag, &key) {
                    continue;
                }
                done.misplaced += 1;
                let newer_in_place = self
                    .get(&key)
                    .is_some_and(|e| e.last_seen_ns >= seen.entry.last_seen_ns);
                if !newer_in_place {
                    match self.put(&key, &seen.entry, tag_rank(seen.tag)) {
                        Ok(()) => done.copied += 1,
                        Err(_) => {
                            done.failed += 1;
                            continue;
                        }
                    }
                }
                // SAFETY: as above; a CAS from the tag read, so a way
                // that changed hands meanwhile is left alone.
                if release && unsafe { flow_table::release(bucket, &seen) } {
                    done.released += 1;
                }
            }
        }
        done
    }

    /// Every tracked flow, read bucket by bucket (each copy consistent;
    /// the table changes while it is read).
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, FlowEntry)> + '_ {
        (0..self.buckets).flat_map(move |b| {
            let bucket = self.bucket(b);
            // SAFETY: a live bucket of the mapping.
            (0..FLOW_WAYS).filter_map(move |way| {
                unsafe { flow_table::read_way(bucket, way) }.map(|(key, seen)| (key, seen.entry))
            })
        })
    }

    /// Flows in the table now (a walk of the headers only).
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

    /// The entry of one flow, if tracked.
    pub fn get(&self, key: &FlowKey) -> Option<FlowEntry> {
        let (first, second, hash) = self.buckets_of(key);
        // SAFETY: live buckets of the mapping.
        unsafe { flow_table::find_in(first, second, key, hash) }.map(|(_, seen)| seen.entry)
    }

    /// Puts a flow into the table (a replica from a peer): its entry
    /// replaced if tracked, else inserted as an established flow last seen
    /// at `entry.last_seen_ns`, evicting as the data plane would.
    pub fn install(&self, key: &FlowKey, entry: &FlowEntry) -> Result<(), FlowTableError> {
        let rank = rank_word(entry.last_seen_ns, class_of(entry.flags, true));
        self.put(key, entry, rank)
    }

    /// `install` with rank word `rank`. The entry keeps the flow's
    /// `flow_hash` (Maglev's), whatever hash places it.
    fn put(&self, key: &FlowKey, entry: &FlowEntry, rank: u32) -> Result<(), FlowTableError> {
        let (first, second, hash) = self.buckets_of(key);
        let entry = FlowEntry {
            hash: flow_hash(key),
            ..*entry
        };
        for _ in 0..4 {
            // SAFETY: live buckets of the mapping.
            if let Some((bucket, seen)) = unsafe { flow_table::find_in(first, second, key, hash) } {
                // SAFETY: as above.
                if unsafe { flow_table::rewrite(bucket, &seen, &entry, rank) } {
                    return Ok(());
                }
                continue;
            }
            // SAFETY: as above.
            match unsafe { flow_table::find_or_insert(first, second, key, &entry, rank, hash) } {
                Placed::Inserted(_) => return Ok(()),
                Placed::Found(_) | Placed::Contended => continue,
            }
        }
        Err(FlowTableError::Contended)
    }

    /// Removes a flow; true if it was there.
    pub fn remove(&self, key: &FlowKey) -> bool {
        let (first, second, hash) = self.buckets_of(key);
        // SAFETY: live buckets of the mapping.
        unsafe {
            flow_table::remove(first, key, hash)
                || (second != first && flow_table::remove(second, key, hash))
        }
    }
}

/// Bytes of kernel memory a map takes, as the kernel accounts it
/// (`memlock` in the map's fdinfo: for the bucket table its preallocated
/// array, for a kernel hash map its elements, buckets and LRU lists).
/// None if the kernel does not say.
pub(crate) fn kernel_memory_bytes(map: &MapData) -> Option<u64> {
    let fd = map.fd().as_fd().as_raw_fd();
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
}

impl Drop for FlowTable {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
