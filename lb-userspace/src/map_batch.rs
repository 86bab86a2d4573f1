//! Reads a whole BPF hash map a few thousand entries per syscall
//! (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6) instead of two syscalls per entry
//! (aya's iterator: next key, then lookup). Replication scans the NAT flow
//! table every tick: at 120,000 entries the per-entry walk took lbd's loop
//! about two seconds in the lab (debug build, busy machine), long enough
//! for the VRRP peer to take over; in batches it is a few dozen syscalls.

use std::{
    io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{maps::MapData, Pod};

/// `BPF_MAP_LOOKUP_BATCH` (linux/bpf.h, enum bpf_cmd).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries asked for per call (a hash bucket holding more would be
/// `ENOSPC`; buckets hold a handful).
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
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

/// Every `(key, value)` of the hash map `map`, whose key and value types
/// must be `K` and `V` (as a typed aya map checked when it was made). Like
/// any walk of a changing table, entries added or removed meanwhile may or
/// may not be in it. Errors (a kernel without batch operations: `EINVAL`)
/// leave the caller to walk the map the slow way.
pub fn lookup_all<K: Pod + Default, V: Pod + Default>(map: &MapData) -> io::Result<Vec<(K, V)>> {
    let map_fd = u32::try_from(map.fd().as_fd().as_raw_fd())
        .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    let mut out = Vec::new();
    // The kernel's position token: a bucket index for hash maps (u32).
    let mut token: u32 = 0;
    let mut next: u32 = 0;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_ref(&token) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(CHUNK).unwrap_or(u32::MAX),
            map_fd,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the attribute points at a token and a next-token word
        // (u32, as hash maps use), and at CHUNK keys and values of the
        // map's key and value sizes; all outlive the call, which writes at
        // most `count` of each and the count back into `attr`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut attr),
                size_of::<BatchAttr>(),
            )
        };
        let error = (rc != 0).then(io::Error::last_os_error);
        let got = usize::try_from(attr.count).unwrap_or(0).min(CHUNK);
        if let Some(error) = error {
            if error.raw_os_error() != Some(libc::ENOENT) {
                return Err(error);
            }
        }
        out.extend(
            keys.iter()
                .zip(values.iter())
                .take(got)
                .map(|(k, v)| (*k, *v)),
        );
        if rc != 0 {
            // ENOENT: the walk reached the end.
            return Ok(out);
        }
        token = next;
        first = false;
    }
}
