//! The Maglev tables (`MAGLEV`) as lbd writes and reads them: in place,
//! through the map mapped into lbd's memory (`BPF_F_MMAPABLE`, every map
//! this release makes), or in batches of the bpf syscall where an older
//! release pinned the map without that flag and this lbd adopted it. A
//! whole table is 65,537 slots: one syscall per slot took about 80 ms per
//! table on the development VM, a batch about a fifth of that, in place a
//! fraction of a millisecond (`cargo xtask bench --only maglev`).

use std::sync::atomic::{AtomicU32, Ordering};

use aya::maps::{Array, IterableMap as _, MapData};
use lb_common::consts::names;
use tracing::info;

use super::{map_error, syscall_error, DataplaneError, Result};
use crate::{
    map_batch::{self, Updated},
    shared_mapping::{second_handle, SharedMapping, BPF_F_MMAPABLE},
};

/// Bytes from one slot to the next in the mapping: the kernel lays an
/// array's values out `round_up(value_size, 8)` apart, so each 4-byte
/// backend id is followed by 4 bytes of padding.
const SLOT_STRIDE: usize = 8;

/// The `MAGLEV` array and, where it is memory-mappable, its mapping.
pub(crate) struct MaglevMap {
    array: Array<MapData, u32>,
    /// The array's slots in lbd's memory (None: an older release's map,
    /// written in batches).
    mapping: Option<SharedMapping>,
    /// The array's entries.
    entries: u32,
}

// SAFETY: the mapping is shared memory the kernel keeps alive while its
// map's fd (held by the mapping) is open; every access to it is atomic
// (`slot`), and writes take `&mut self`.
unsafe impl Send for MaglevMap {}
// SAFETY: as above; `&self` methods only load slots, atomically.
unsafe impl Sync for MaglevMap {}

impl MaglevMap {
    /// Takes `array` (the loaded object's `MAGLEV`, made or adopted) and
    /// maps it if the kernel made it memory-mappable.
    pub(crate) fn new(array: Array<MapData, u32>) -> Result<Self> {
        let info = array
            .map()
            .info()
            .map_err(|e| map_error("reading", names::MAP_MAGLEV, e))?;
        let entries = info.max_entries();
        let mapping = if info.map_flags() & BPF_F_MMAPABLE != 0 {
            let len = entries as usize * SLOT_STRIDE;
            let mapped = second_handle(array.map()).and_then(|map| SharedMapping::new(map, len));
            Some(mapped.map_err(|e| syscall_error("mapping", names::MAP_MAGLEV, "mmap", e))?)
        } else {
            info!(
                "the adopted Maglev tables were pinned by an older release (not memory-mappable): they are written in batches until a start that makes them afresh"
            );
            None
        };
        Ok(Self {
            array,
            mapping,
            entries,
        })
    }

    /// Whether the tables are written in place (false: in batches).
    #[cfg(test)]
    pub(crate) fn mapped(&self) -> bool {
        self.mapping.is_some()
    }

    /// The slot at `index` of the array, in the mapping.
    fn slot(mapping: &SharedMapping, index: u32) -> &AtomicU32 {
        // SAFETY: `index` is below the array's entries (checked by the
        // callers), so its value (the first 4 bytes of its 8) lies inside
        // the mapping, which lives as long as `mapping`, aligned (the
        // values start page-aligned, 8 bytes apart); the data plane reads
        // it concurrently, hence atomic access.
        unsafe {
            let value = mapping
                .base::<u8>()
                .as_ptr()
                .add(index as usize * SLOT_STRIDE);
            AtomicU32::from_ptr(value.cast::<u32>())
        }
    }

    /// An error unless every index of `indexes` is inside the array.
    fn check_range(&self, mut indexes: impl Iterator<Item = u32>) -> Result<()> {
        match indexes.find(|index| *index >= self.entries) {
            Some(index) => Err(DataplaneError::OutOfRange {
                what: "Maglev slot",
                id: index,
                capacity: self.entries,
            }),
            None => Ok(()),
        }
    }

    /// Writes each `(index, backend id)` of `entries`, in order (a packet
    /// reads a slot's old backend or its new one).
    pub(crate) fn write(&mut self, entries: &[(u32, u32)]) -> Result<()> {
        self.check_range(entries.iter().map(|(index, _)| *index))?;
        if let Some(mapping) = &self.mapping {
            for (index, backend_id) in entries {
                Self::slot(mapping, *index).store(*backend_id, Ordering::Relaxed);
            }
            return Ok(());
        }
        match map_batch::update_array(self.array.map(), entries) {
            Ok(Updated::All) => Ok(()),
            Ok(Updated::Unsupported) => {
                for (index, backend_id) in entries {
                    self.array
                        .set(*index, backend_id, 0)
                        .map_err(|e| map_error("writing", names::MAP_MAGLEV, e))?;
                }
                Ok(())
            }
            Err(io_error) => Err(syscall_error(
                "writing",
                names::MAP_MAGLEV,
                "bpf_map_update_batch",
                io_error,
            )),
        }
    }

    /// The `count` slots from index `first` on.
    pub(crate) fn read(&self, first: u32, count: u32) -> Result<Vec<u32>> {
        let end = first.checked_add(count).ok_or(DataplaneError::OutOfRange {
            what: "Maglev slot",
            id: first,
            capacity: self.entries,
        })?;
        if count > 0 {
            self.check_range(std::iter::once(end - 1))?;
        }
        if let Some(mapping) = &self.mapping {
            let slots =
                (first..end).map(|index| Self::slot(mapping, index).load(Ordering::Relaxed));
            return Ok(slots.collect());
        }
        match map_batch::lookup_array(self.array.map(), first, count as usize) {
            Ok(Some(table)) => Ok(table),
            Ok(None) => (first..end)
                .map(|index| {
                    self.array
                        .get(&index, 0)
                        .map_err(|e| map_error("reading", names::MAP_MAGLEV, e))
                })
                .collect(),
            Err(io_error) => Err(syscall_error(
                "reading",
                names::MAP_MAGLEV,
                "bpf_map_lookup_batch",
                io_error,
            )),
        }
    }
}
