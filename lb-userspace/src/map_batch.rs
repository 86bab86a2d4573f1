//! Reads a whole BPF hash map a few thousand entries per syscall
//! (`BPF_MAP_LOOKUP_BATCH`) instead of two syscalls per entry (aya's
//! iterator: next key, then lookup): at 120,000 entries the per-entry walk
//! took lbd's loop about two seconds in the lab (debug build, busy
//! machine). Used on the kernel hash maps an older release left (its NAT
//! flow table, `nat::legacy`); the tables lbd maps are read in place.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

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
        match lookup_batch(map, cursor, CHUNK, &mut out)? {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// One `BPF_MAP_LOOKUP_BATCH` call on the hash map `map`, whose key and
/// value types must be `K` and `V` (as a typed aya map checked when it was
/// made): appends up to `max` entries from bucket `cursor` (None: the
/// first) to `out`; returns the bucket to go on from, None when the
/// table's end was reached (Linux 5.6; an older kernel answers `EINVAL`).
fn lookup_batch<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &MapData,
    cursor: Option<u32>,
    max: usize,
    out: &mut Vec<(K, V)>,
) -> std::io::Result<Option<u32>> {
    /// The `bpf_attr` of the batch commands.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    let mut keys = vec![K::default(); max];
    let mut values = vec![V::default(); max];
    let in_batch = cursor.unwrap_or(0);
    let mut out_batch = 0u32;
    let mut attr = BatchAttr {
        in_batch: cursor.map_or(0, |_| std::ptr::from_ref(&in_batch) as u64),
        out_batch: std::ptr::from_mut(&mut out_batch) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: u32::try_from(max).unwrap_or(u32::MAX),
        map_fd: u32::try_from(map.fd().as_fd().as_raw_fd()).unwrap_or(u32::MAX),
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: the attribute points at buffers of `max` keys and values of
    // the map's key and value types (K, V, as the caller promises) and at two u32
    // batch tokens (a hash map's bucket), all alive across the call; the
    // kernel writes back `count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            std::ptr::from_mut(&mut attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    let end = if rc == 0 {
        false
    } else {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOENT) {
            return Err(error);
        }
        true
    };
    // SAFETY: read after the call that wrote it (the pointer escaped).
    let count = unsafe { std::ptr::read_volatile(&raw const attr.count) } as usize;
    let count = count.min(max);
    out.extend(
        keys[..count]
            .iter()
            .copied()
            .zip(values[..count].iter().copied()),
    );
    Ok((!end).then_some(out_batch))
}
