//! Reading back what the adopted maps hold (the VIPs, the backends, the
//! Maglev tables), so ids and generations carry over and tracked flows
//! keep their backends.

use aya::maps::IterableMap as _;
use lb_common::{
    consts::{maglev_index, names, MAGLEV_SIZE_MAX, MAX_BACKENDS},
    Backend,
};

use super::super::{map_error, syscall_error, AdoptedState, Dataplane, DataplaneError, Result};
use crate::map_batch;

impl Dataplane {
    /// Copy `copy` of VIP `vip_id`'s table as the map holds it (`size`
    /// slots), e.g. the live table a previous lbd left. Public for the
    /// bench, which times it.
    pub fn read_table(&self, vip_id: u32, copy: u32, size: u32) -> Result<Vec<u32>> {
        if vip_id >= self.sizes.max_vips {
            return Err(DataplaneError::OutOfRange {
                what: "VIP id",
                id: vip_id,
                capacity: self.sizes.max_vips,
            });
        }
        self.maglev
            .read(maglev_index(vip_id, copy, 0), size.min(MAGLEV_SIZE_MAX))
    }

    /// The VIPs and backends the adopted maps hold (empty unless adopted),
    /// so ids and generations carry over and tracked flows keep their
    /// backends.
    pub(crate) fn adopted_state(&self) -> Result<AdoptedState> {
        let mut state = AdoptedState::default();
        if !self.adopted {
            return Ok(state);
        }
        for entry in self.vips.iter() {
            let (key, meta) = entry.map_err(|e| map_error("reading", names::MAP_VIPS, e))?;
            state.vips.push((key, meta));
        }
        for (id, backend) in (1..MAX_BACKENDS).zip(self.adopted_backends()?) {
            if backend.generation != 0 {
                state.backends.push((id, backend));
            }
        }
        Ok(state)
    }

    /// Every backend slot but 0 (none) as the adopted `BACKENDS` holds
    /// it: in batches (a few syscalls for the 4,095 slots), one by one on
    /// a kernel without batch lookups.
    fn adopted_backends(&self) -> Result<Vec<Backend>> {
        let count = (MAX_BACKENDS - 1) as usize;
        match map_batch::lookup_array(self.backends.map(), 1, count) {
            Ok(Some(backends)) => Ok(backends),
            Ok(None) => (1..MAX_BACKENDS)
                .map(|id| {
                    self.backends
                        .get(&id, 0)
                        .map_err(|e| map_error("reading", names::MAP_BACKENDS, e))
                })
                .collect(),
            Err(io_error) => Err(syscall_error(
                "reading",
                names::MAP_BACKENDS,
                "bpf_map_lookup_batch",
                io_error,
            )),
        }
    }
}
