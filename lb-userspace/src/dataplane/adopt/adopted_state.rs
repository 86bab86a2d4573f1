//! Reading back what the adopted maps hold (the VIPs, the backends, the
//! Maglev tables), so ids and generations carry over and tracked flows
//! keep their backends.

use lb_common::consts::{maglev_index, names, MAGLEV_SIZE_MAX, MAX_BACKENDS};

use super::super::{map_error, AdoptedState, Dataplane, DataplaneError, Result};

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
        for id in 1..MAX_BACKENDS {
            let backend = self
                .backends
                .get(&id, 0)
                .map_err(|e| map_error("reading", names::MAP_BACKENDS, e))?;
            if backend.generation != 0 {
                state.backends.push((id, backend));
            }
        }
        Ok(state)
    }
}
