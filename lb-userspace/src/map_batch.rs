//! Reads a whole BPF hash map a few thousand entries per syscall
//! (`BPF_MAP_LOOKUP_BATCH`, through [`crate::nat_maps::lookup_batch`])
//! instead of two syscalls per entry (aya's iterator: next key, then
//! lookup). Replication scans the NAT flow table every tick or few: at
//! 120,000 entries the per-entry walk took lbd's loop about two seconds in
//! the lab (debug build, busy machine), long enough for the VRRP peer to
//! take over; in batches it is a few dozen syscalls.

use std::io;

use aya::{maps::MapData, Pod};

/// Entries asked for per call (a hash bucket holding more would be
/// `ENOSPC`; buckets hold a handful).
const CHUNK: usize = 4096;

/// Every `(key, value)` of the hash map `map`, whose key and value types
/// must be `K` and `V` (as a typed aya map checked when it was made). Like
/// any walk of a changing table, entries added or removed meanwhile may or
/// may not be in it. Errors (a kernel without batch operations: `EINVAL`)
/// leave the caller to walk the map the slow way.
pub fn lookup_all<K: Pod + Default, V: Pod + Default>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        match crate::nat_maps::lookup_batch(map, cursor, CHUNK, &mut out)? {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}
