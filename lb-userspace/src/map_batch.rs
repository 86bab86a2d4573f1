//! The bpf syscall's batch commands: many entries per syscall instead of
//! one or two per entry (each a kernel entry and exit: dear where the
//! kernel's mitigations make every syscall cost microseconds).
//! - Reads a whole BPF hash map (`BPF_MAP_LOOKUP_BATCH`) instead of two
//!   syscalls per entry (aya's iterator: next key, then lookup): at 120,000
//!   entries the per-entry walk took lbd's loop about two seconds in the lab
//!   (debug build, busy machine). Used on the kernel hash maps an older
//!   release left (its NAT flow table, `nat::legacy`); the tables lbd maps
//!   are read in place.
//! - Writes and reads many slots of an array map (`BPF_MAP_UPDATE_BATCH`,
//!   `BPF_MAP_LOOKUP_BATCH`): a VIP's Maglev table is 65,537 slots, written
//!   whole when the VIP comes and in part (about 1/N of it) whenever one
//!   of its N backends leaves or joins. lbd writes its own `MAGLEV` in
//!   place (it is memory-mappable); one an older release pinned is not,
//!   and is written and read in batches (`dataplane::maglev_map`).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{maps::MapData, Pod};

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

/// `BPF_MAP_LOOKUP_BATCH` of the bpf syscall's commands.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// `BPF_MAP_UPDATE_BATCH` of the bpf syscall's commands.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// The kernel's `ENOTSUPP` (not `EOPNOTSUPP`): a map type without the
/// batch command.
const ENOTSUPP: i32 = 524;

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

/// One `BPF_MAP_LOOKUP_BATCH` call on the hash or array map `map`, whose
/// key and value types must be `K` and `V` (as a typed aya map checked
/// when it was made): appends up to `max` entries after `cursor` (a hash
/// map's bucket, an array's index last read; None: from the start) to
/// `out`; returns the cursor to go on from, None when the map's end was
/// reached (Linux 5.6; an older kernel answers `EINVAL`).
fn lookup_batch<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &MapData,
    cursor: Option<u32>,
    max: usize,
    out: &mut Vec<(K, V)>,
) -> std::io::Result<Option<u32>> {
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

/// What [`update_array`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// Every entry was written.
    All,
    /// The kernel has no batch update for this map (before Linux 5.6:
    /// `EINVAL`; a map type without it: `ENOTSUPP`) and wrote nothing:
    /// the caller writes the entries one by one.
    Unsupported,
}

/// Writes each `(index, value)` of `entries` into the array map `map`,
/// whose value type must be `V` (as a typed aya map checked when it was
/// made), in one `BPF_MAP_UPDATE_BATCH` call: the entries are written in
/// order, each as a single-entry update would write it (so a packet reads
/// a slot's old value or its new one). An error (an index out of the map's
/// range: `E2BIG`) leaves the entries before the failing one written.
pub fn update_array<V: Pod>(map: &MapData, entries: &[(u32, V)]) -> io::Result<Updated> {
    if entries.is_empty() {
        return Ok(Updated::All);
    }
    let count = u32::try_from(entries.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "more than 2^32 entries"))?;
    let keys: Vec<u32> = entries.iter().map(|(index, _)| *index).collect();
    let values: Vec<V> = entries.iter().map(|(_, value)| *value).collect();
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: u32::try_from(map.fd().as_fd().as_raw_fd()).unwrap_or(u32::MAX),
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: the attribute points at `count` keys (u32, an array map's
    // key) and `count` values of the map's value type (V, as the caller
    // promises), alive across the call; the kernel only reads them and
    // writes back `count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            std::ptr::from_mut(&mut attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc == 0 {
        return Ok(Updated::All);
    }
    let error = io::Error::last_os_error();
    // SAFETY: read after the call that may have written it (the pointer
    // escaped). A batch the kernel ran writes back how many entries it
    // wrote, fewer than asked when it failed; a command it does not know
    // (or a map without it) leaves the count as it was.
    let written = unsafe { std::ptr::read_volatile(&raw const attr.count) };
    match error.raw_os_error() {
        Some(libc::EINVAL | ENOTSUPP) if written == count => Ok(Updated::Unsupported),
        _ => Err(error),
    }
}

/// `count` values of the array map `map`, whose value type must be `V`
/// (as a typed aya map checked when it was made), from index `first` on,
/// in `BPF_MAP_LOOKUP_BATCH` calls (an array's batch cursor is the index
/// the last call ended at; each value is copied as a single lookup would
/// copy it). None when the kernel has no batch lookup (before Linux 5.6):
/// the caller reads the values one by one.
pub fn lookup_array<V: Pod + Default>(
    map: &MapData,
    first: u32,
    count: usize,
) -> io::Result<Option<Vec<V>>> {
    let mut out: Vec<(u32, V)> = Vec::with_capacity(count);
    // The cursor names the entry before the first one wanted (none: the
    // array's start).
    let mut cursor = first.checked_sub(1);
    while out.len() < count {
        let max = (count - out.len()).min(CHUNK);
        match lookup_batch(map, cursor, max, &mut out) {
            Ok(Some(next)) => cursor = Some(next),
            Ok(None) => break,
            Err(error)
                if out.is_empty()
                    && matches!(error.raw_os_error(), Some(libc::EINVAL | ENOTSUPP)) =>
            {
                return Ok(None)
            }
            Err(error) => return Err(error),
        }
    }
    // The walk goes index by index; an array has every index, so a short
    // read means the range ran past the map's end.
    let read = out.len();
    let expected = (first..).take(read);
    if read < count || !out.iter().map(|(index, _)| *index).eq(expected) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {read} of {count} entries from index {first}"),
        ));
    }
    Ok(Some(out.into_iter().map(|(_, value)| value).collect()))
}

#[cfg(test)]
mod tests {
    use aya::maps::{Array, IterableMap as _, MapData};

    use super::*;

    fn array(entries: u32) -> Array<MapData, u32> {
        Array::create(entries, 0).expect("an array map (root)")
    }

    #[test]
    fn a_batch_writes_each_entry_at_its_index_in_order() {
        let map = array(70_000);
        // A whole Maglev copy's worth, scattered, with one index written
        // twice: the later value stands, as after two single writes.
        let mut entries: Vec<(u32, u32)> =
            (0..65_537u32).map(|i| ((i * 7) % 70_000, i + 1)).collect();
        entries.push((14, 99));
        assert_eq!(
            update_array(map.map(), &entries).expect("the batch"),
            Updated::All
        );
        let mut expected = vec![0u32; 70_000];
        for (index, value) in &entries {
            expected[*index as usize] = *value;
        }
        for (index, want) in expected.iter().enumerate() {
            let got = map.get(&(index as u32), 0).expect("a slot");
            assert_eq!(got, *want, "slot {index}");
        }
        assert_eq!(expected[14], 99);
        assert_eq!(
            update_array::<u32>(map.map(), &[]).expect("nothing"),
            Updated::All
        );
    }

    #[test]
    fn an_index_out_of_range_fails_the_batch_after_the_entries_before_it() {
        let map = array(16);
        let error = update_array(map.map(), &[(1, 11), (2, 12), (16, 13), (3, 14)])
            .expect_err("index 16 of a 16-entry array");
        assert_eq!(error.raw_os_error(), Some(libc::E2BIG), "{error}");
        let slots: Vec<u32> = (0..4).map(|i| map.get(&i, 0).expect("a slot")).collect();
        assert_eq!(slots, [0, 11, 12, 0]);
    }

    #[test]
    fn a_map_without_batch_updates_is_told_apart_from_a_failure() {
        // A queue has no batch commands: the kernel answers ENOTSUPP before
        // reading an entry, as a kernel without the command answers EINVAL.
        const BPF_MAP_TYPE_QUEUE: u32 = 22;
        let params = aya_obj::Map::new_from_params(BPF_MAP_TYPE_QUEUE, 0, 4, 16, 0);
        let queue = MapData::create(params, "batch_test_q", None).expect("a queue map (root)");
        assert_eq!(
            update_array(&queue, &[(0, 1u32)]).expect("told apart"),
            Updated::Unsupported
        );
    }

    #[test]
    fn a_range_of_an_array_reads_back_in_index_order() {
        let map = array(20_000);
        let entries: Vec<(u32, u32)> = (0..20_000u32).map(|i| (i, i * 3 + 1)).collect();
        update_array(map.map(), &entries).expect("filled");
        // From the start, across more than one batch of CHUNK, and from an
        // index in the middle.
        let all: Vec<u32> = lookup_array(map.map(), 0, 20_000)
            .expect("read")
            .expect("batches");
        assert_eq!(all, entries.iter().map(|(_, v)| *v).collect::<Vec<_>>());
        let some: Vec<u32> = lookup_array(map.map(), 12_345, 5)
            .expect("read")
            .expect("batches");
        assert_eq!(some, [37_036, 37_039, 37_042, 37_045, 37_048]);
        let none: Vec<u32> = lookup_array(map.map(), 7, 0)
            .expect("read")
            .expect("batches");
        assert!(none.is_empty());
        // Past the end: an error, not a short table.
        let error = lookup_array::<u32>(map.map(), 19_998, 5).expect_err("3 past the end");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        assert!(lookup_array::<u32>(map.map(), 20_000, 1).is_err());
    }
}
