//! The node counters (`Counter`): the head of each CPU's `PACKET_STATE`
//! value, where the data plane counts with the one lookup of that value it
//! makes per packet (see `lb_common::stats::CpuState`).
//!
//! Releases before `PACKET_STATE` counted in a map of their own
//! (`COUNTERS`, one entry per counter), pinned with the rest. An lbd that
//! adopts such a data plane keeps that pin and adds what it holds to what
//! it reads: the old program counts there until the swap and nothing
//! writes it after, so the counts go on from where they were and none is
//! lost or counted twice. (Adding it into `PACKET_STATE` instead would
//! mean writing each CPU's whole value, the state of a packet that CPU is
//! working on included.) `lbd --cleanup` removes it with the other pins.

use aya::maps::{Map, MapData, MapInfo, MapType, PerCpuArray};
use lb_common::{
    consts::names,
    stats::{Counter, CpuState, COUNTER_COUNT},
};
use tracing::{info, warn};

use crate::{
    dataplane::{map_error, take_map, DataplaneError},
    pinning::PinDir,
};

/// The node counters of a loaded object.
pub(crate) struct NodeCounters {
    /// `PACKET_STATE`: the counters this object's programs count.
    state: PerCpuArray<MapData, CpuState>,
    /// The pinned `COUNTERS` of a release before it, if one was left:
    /// final once this lbd's program runs.
    before: Option<PerCpuArray<MapData, u64>>,
}

impl NodeCounters {
    /// Takes `PACKET_STATE` out of the loaded object, and opens the
    /// counters an older release left pinned under `pins`, if any.
    pub(crate) fn take(
        ebpf: &mut aya::Ebpf,
        pins: Option<&PinDir>,
    ) -> Result<Self, DataplaneError> {
        Ok(Self {
            state: take_map(ebpf, names::MAP_PACKET_STATE)?,
            before: pins.and_then(open_before),
        })
    }

    /// Every counter summed over CPUs (and over releases), in
    /// `Counter::ALL` order.
    pub(crate) fn read(&self) -> Result<Vec<(Counter, u64)>, DataplaneError> {
        let values = self
            .state
            .get(&0, 0)
            .map_err(|e| map_error("reading", names::MAP_PACKET_STATE, e))?;
        let mut sums = [0u64; COUNTER_COUNT as usize];
        for cpu in values.iter() {
            for (sum, count) in sums.iter_mut().zip(cpu.counters) {
                *sum = sum.wrapping_add(count);
            }
        }
        if let Some(before) = &self.before {
            // An older release may have had fewer counters: its map ends
            // where they did.
            for (index, sum) in (0..before.len()).zip(sums.iter_mut()) {
                let values = before
                    .get(&index, 0)
                    .map_err(|e| map_error("reading", names::MAP_LEGACY_COUNTERS, e))?;
                *sum = values
                    .iter()
                    .fold(*sum, |sum, count| sum.wrapping_add(*count));
            }
        }
        Ok(Counter::ALL.into_iter().zip(sums).collect())
    }
}

/// The `COUNTERS` map an older release pinned under `pins`, if there is
/// one of its layout (a per-CPU array of u64 per counter); one of another
/// layout is left alone, not read.
fn open_before(pins: &PinDir) -> Option<PerCpuArray<MapData, u64>> {
    let path = pins.map_path(names::MAP_LEGACY_COUNTERS);
    let info = MapInfo::from_pin(&path).ok()?;
    if !matches!(info.map_type(), Ok(MapType::PerCpuArray))
        || info.key_size() != 4
        || info.value_size() != 8
        || info.max_entries() > COUNTER_COUNT
    {
        warn!(path = %path.display(), "a pinned COUNTERS map of another layout: its counts are not added");
        return None;
    }
    let opened = MapData::from_pin(&path)
        .map_err(|e| e.to_string())
        .and_then(|data| PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|e| e.to_string()));
    match opened {
        Ok(map) => {
            info!(path = %path.display(), "counting on from the previous release's node counters (kept pinned, read-only)");
            Some(map)
        }
        Err(error) => {
            warn!(path = %path.display(), %error, "could not open the previous release's node counters: counting from zero");
            None
        }
    }
}
