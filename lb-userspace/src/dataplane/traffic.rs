//! The per-VIP and per-backend traffic counters (`VIP_STATS`,
//! `BACKEND_STATS`): summed over CPUs, shown so that new flows never step
//! back, and zeroed for a new VIP or backend.

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
};

use aya::maps::{MapData, PerCpuArray, PerCpuValues};
use lb_common::{consts::names, TrafficCounters};

use super::{map_error, Dataplane, Result};

impl Dataplane {
    /// Traffic of one VIP id, summed over CPUs, as the maps hold it (its
    /// new flows may step back by one for a moment: see
    /// [`Self::shown_vip_traffic`]).
    pub fn vip_traffic(&self, vip_id: u32) -> Result<TrafficCounters> {
        sum_traffic(&self.vip_stats, vip_id, names::MAP_VIP_STATS)
    }

    /// Traffic of one backend id, summed over CPUs, as the maps hold it
    /// (as `vip_traffic`).
    pub fn backend_traffic(&self, backend_id: u32) -> Result<TrafficCounters> {
        sum_traffic(&self.backend_stats, backend_id, names::MAP_BACKEND_STATS)
    }

    /// `vip_traffic` as lbd shows it (status, metrics): its new flows
    /// never fewer than shown before of the same counter (see
    /// [`NewFlowsShown`]).
    pub fn shown_vip_traffic(&self, vip_id: u32) -> Result<TrafficCounters> {
        let read = self.vip_traffic(vip_id)?;
        Ok(self.vip_stats.shown.show(vip_id, read))
    }

    /// `backend_traffic` as lbd shows it (as `shown_vip_traffic`).
    pub fn shown_backend_traffic(&self, backend_id: u32) -> Result<TrafficCounters> {
        let read = self.backend_traffic(backend_id)?;
        Ok(self.backend_stats.shown.show(backend_id, read))
    }
}

/// A per-CPU traffic array (`VIP_STATS` or `BACKEND_STATS`, indexed by
/// VIP or backend id) with what lbd has shown of its slots' new flows.
pub(super) struct TrafficStats {
    map: PerCpuArray<MapData, TrafficCounters>,
    shown: NewFlowsShown,
}

impl TrafficStats {
    pub(super) fn new(map: PerCpuArray<MapData, TrafficCounters>) -> Self {
        Self {
            map,
            shown: NewFlowsShown::default(),
        }
    }
}

/// The most new flows lbd has shown (status, metrics) of each slot of a
/// traffic array since the slot was last zeroed, so what it shows of a
/// counter never steps back. The data plane counts a packet's flow new
/// and takes it back (`uncount_new_flow`) when another CPU turned out to
/// have inserted the flow first: a read between the two sees one more
/// flow than the next one, which Prometheus takes for a counter reset
/// (a `rate` spike of the whole count).
///
/// A slot is a new counter, starting from its own value, only when lbd
/// zeroes it, which it does when it gives the slot to a new VIP or
/// backend (`MapWriter::clear_vip_traffic`, `clear_backend_traffic`: a
/// VIP removed and added again, a backend id reused with a new
/// generation): `clear_traffic` forgets the slot then, so no real reset
/// is masked. A fresh data plane (a new `Dataplane`) remembers nothing.
/// At most one entry per slot (the array's size), replaced when the slot
/// is reused: nothing piles up as VIPs and backends come and go.
#[derive(Debug, Default)]
pub(crate) struct NewFlowsShown(Mutex<BTreeMap<u32, u64>>);

impl NewFlowsShown {
    /// Slot `id`'s counters `read` (summed now) as shown: new flows never
    /// fewer than shown of it before; packets and bytes as read.
    pub(crate) fn show(&self, id: u32, mut read: TrafficCounters) -> TrafficCounters {
        let mut shown = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let most = shown.entry(id).or_insert(0);
        *most = (*most).max(read.new_flows);
        read.new_flows = *most;
        read
    }

    /// Slot `id` was zeroed for a new VIP or backend: a new counter.
    pub(crate) fn forget(&mut self, id: u32) {
        self.0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

fn sum_traffic(stats: &TrafficStats, id: u32, name: &'static str) -> Result<TrafficCounters> {
    let values = stats
        .map
        .get(&id, 0)
        .map_err(|e| map_error("reading", name, e))?;
    Ok(values
        .iter()
        .fold(TrafficCounters::default(), |acc, c| acc.plus(*c)))
}

/// Zeroes slot `id` of `stats` for a new VIP or backend. Its new flows
/// shown so far are forgotten whether or not the write took: forgetting
/// never hides a reset, it only lets the next read show what it reads.
pub(super) fn clear_traffic(stats: &mut TrafficStats, id: u32, name: &'static str) -> Result<()> {
    stats.shown.forget(id);
    let zero = aya::util::nr_cpus()
        .map_err(|(_, e)| e)
        .and_then(|cpus| PerCpuValues::try_from(vec![TrafficCounters::default(); cpus]))
        .map_err(|e| map_error("zeroing", name, aya::maps::MapError::IoError(e)))?;
    stats
        .map
        .set(id, zero, 0)
        .map_err(|e| map_error("zeroing", name, e))
}

#[cfg(test)]
mod tests {
    use lb_common::TrafficCounters;

    use super::NewFlowsShown;

    fn counted(packets: u64, new_flows: u64) -> TrafficCounters {
        TrafficCounters {
            packets,
            bytes: packets * 100,
            new_flows,
        }
    }

    /// A read between a CPU's count of a new flow and its take-back sees
    /// one flow more than the next: what lbd shows does not step back
    /// (a counter reset to Prometheus). A slot zeroed for a new backend
    /// (`clear_traffic`) is a new counter: shown from its own value.
    #[test]
    fn new_flows_shown_never_step_back_until_the_slot_is_zeroed() {
        let mut shown = NewFlowsShown::default();
        assert_eq!(shown.show(3, counted(10, 5)), counted(10, 5));
        // The take-back: 4 read, 5 shown; packets and bytes as read.
        assert_eq!(shown.show(3, counted(11, 4)), counted(11, 5));
        assert_eq!(shown.show(3, counted(12, 5)), counted(12, 5));
        assert_eq!(shown.show(3, counted(13, 6)), counted(13, 6));
        // Another slot is a counter of its own.
        assert_eq!(shown.show(4, counted(1, 1)), counted(1, 1));
        // Slot 3 given to a new backend (or VIP): zeroed, forgotten.
        shown.forget(3);
        assert_eq!(shown.show(3, counted(0, 0)), counted(0, 0));
        assert_eq!(shown.show(3, counted(2, 1)), counted(2, 1));
        assert_eq!(shown.show(4, counted(2, 0)), counted(2, 1));
        // Nothing is kept of a slot beyond its one entry.
        assert_eq!(shown.0.lock().map(|m| m.len()).unwrap_or(0), 2);
    }
}
