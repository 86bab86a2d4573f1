//! The control plane's writes to the data plane (`MapWriter`), on the real
//! maps and on an in-memory fake that tests the control plane's logic
//! without a kernel.

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::HashMap as StdHashMap;

#[cfg(test)]
use lb_common::TrafficCounters;

use lb_common::{
    consts::{maglev_index, names, CONFIG_F_NAT, MAX_BACKENDS},
    Backend, LbConfig, NatSource, ServiceAddr, TunnelConfig, VipKey, VipMeta,
};
use tracing::warn;

use super::{clear_traffic, map_error, Dataplane, DataplaneError, Result};

/// Writes the control plane makes to the data plane. Implemented by the
/// real maps and by an in-memory fake in tests.
pub trait MapWriter {
    /// Sets the node settings.
    fn set_config(&mut self, config: &LbConfig) -> Result<()>;
    /// Writes backend `id`.
    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()>;
    /// Writes `(slot, backend id)` pairs into copy `table` of VIP `vip_id`;
    /// returns how many slots were written.
    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize>;
    /// Inserts or replaces a VIP (atomically, as one map update).
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()>;
    /// Removes a VIP: its packets pass up the stack from then on. A VIP
    /// that is not there is not an error.
    fn remove_vip(&mut self, key: &VipKey) -> Result<()>;
    /// Zeroes the traffic counters of VIP id `vip_id`, so a VIP given a
    /// freed id does not inherit what its previous holder counted.
    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<()>;
    /// Zeroes the traffic counters of backend id `id` (as for VIPs).
    fn clear_backend_traffic(&mut self, id: u32) -> Result<()>;
    /// Writes the NAT source of VIP id `vip_id` (NAT mode).
    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()>;
    /// Whether some VIP is in NAT mode: packets to no VIP are then looked
    /// up as possible replies of NAT'd flows (`CONFIG_F_NAT`).
    fn set_nat_enabled(&mut self, enabled: bool) -> Result<()>;
    /// Writes the node's tunnel settings (`TUNNEL_CONFIG[0]`), read by
    /// the tunnelled modes' encapsulation and by `tc_hc_encap`.
    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<()>;
    /// Makes `SERVICE_ADDRS` hold exactly `addrs` (VIP and NAT addresses
    /// with their `SERVICE_ADDR_F_*` flags): fragments to them are
    /// dropped, not passed to the node's stack, which holds them too.
    fn set_service_addrs(&mut self, addrs: &BTreeMap<ServiceAddr, u32>) -> Result<()>;
}

impl MapWriter for Dataplane {
    fn set_config(&mut self, config: &LbConfig) -> Result<()> {
        self.config
            .set(0, config, 0)
            .map_err(|e| map_error("writing", names::MAP_CONFIG, e))
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        if id == 0 || id >= MAX_BACKENDS {
            return Err(DataplaneError::OutOfRange {
                what: "backend id",
                id,
                capacity: MAX_BACKENDS,
            });
        }
        self.backends
            .set(id, backend, 0)
            .map_err(|e| map_error("writing", names::MAP_BACKENDS, e))
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize> {
        if vip_id >= self.sizes.max_vips {
            return Err(DataplaneError::OutOfRange {
                what: "VIP id",
                id: vip_id,
                capacity: self.sizes.max_vips,
            });
        }
        let entries: Vec<(u32, u32)> = slots
            .map(|(slot, backend_id)| (maglev_index(vip_id, table, slot), backend_id))
            .collect();
        self.maglev.write(&entries)?;
        Ok(entries.len())
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()> {
        self.vips
            .insert(key, meta, 0)
            .map_err(|e| map_error("writing", names::MAP_VIPS, e))?;
        self.vip_index.set(key, meta)?;
        if self.vip_index.unplaced() > 0 {
            warn!(
                unplaced = self.vip_index.unplaced(),
                "the VIP index has no room for some VIPs: packets to no VIP are looked up in the VIP map too (slower, still correct)"
            );
        }
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        // Out of the index first: from then on lookups either miss or,
        // overlapping, ask `VIPS`, which still holds it.
        self.vip_index.remove(key)?;
        match self.vips.remove(key) {
            // Not there: a change that failed half-way may or may not have
            // written it (see `Balancer::commit`).
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error("removing from", names::MAP_VIPS, e)),
        }
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<()> {
        clear_traffic(&mut self.vip_stats, vip_id, names::MAP_VIP_STATS)
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<()> {
        clear_traffic(&mut self.backend_stats, id, names::MAP_BACKEND_STATS)
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()> {
        self.nat.set_source(vip_id, source)
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<()> {
        // A previous lbd's program serves this lbd's writes until the swap.
        self.set_previous_tunnel_configs(config)?;
        self.tunnel_config
            .as_mut()
            .ok_or(DataplaneError::MissingMap(names::MAP_TUNNEL_CONFIG))?
            .set(0, config, 0)
            .map_err(|e| map_error("writing", names::MAP_TUNNEL_CONFIG, e))
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<()> {
        self.set_config_flag(CONFIG_F_NAT, enabled)
    }

    /// Stale entries out first (the map holds no more than two per VIP),
    /// then the new and changed ones in; entries that stay are not
    /// touched.
    fn set_service_addrs(&mut self, addrs: &BTreeMap<ServiceAddr, u32>) -> Result<()> {
        let name = names::MAP_SERVICE_ADDRS;
        let held: BTreeMap<ServiceAddr, u32> = self
            .service_addrs
            .iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| map_error("reading", name, e))?;
        for key in held.keys().filter(|k| !addrs.contains_key(k)) {
            match self.service_addrs.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_error("removing from", name, e)),
            }
        }
        for (key, flags) in addrs {
            if held.get(key) != Some(flags) {
                self.service_addrs
                    .insert(key, flags, 0)
                    .map_err(|e| map_error("writing", name, e))?;
            }
        }
        Ok(())
    }
}

/// In-memory `MapWriter` for tests of the control plane's logic.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FakeMaps {
    /// Node settings.
    pub config: LbConfig,
    /// Backends by id.
    pub backends: StdHashMap<u32, Backend>,
    /// Table slots by (vip id, table copy, slot).
    pub tables: StdHashMap<(u32, u32, u32), u32>,
    /// VIPs.
    pub vips: StdHashMap<VipKey, VipMeta>,
    /// Slots written so far (to check that only changes are written).
    pub slot_writes: usize,
    /// Order of writes other than table slots: "backend <id>", "vip <id>".
    pub log: Vec<String>,
    /// Traffic counted per VIP id (tests set it; clearing removes it).
    pub vip_traffic: StdHashMap<u32, TrafficCounters>,
    /// Traffic counted per backend id (as `vip_traffic`).
    pub backend_traffic: StdHashMap<u32, TrafficCounters>,
    /// NAT sources by VIP id.
    pub nat_sources: StdHashMap<u32, NatSource>,
    /// `TUNNEL_CONFIG[0]` (None: never written).
    pub tunnel: Option<TunnelConfig>,
    /// `SERVICE_ADDRS`: VIP and NAT addresses with their flags.
    pub service_addrs: BTreeMap<ServiceAddr, u32>,
    /// Writes left before one fails (None: none fails): a map refusing a
    /// write half-way through a change.
    pub writes_before_failure: Option<usize>,
}

#[cfg(test)]
impl FakeMaps {
    /// What a restarted lbd reads from these maps (`adopted_state`): the
    /// VIPs, and every backend entry that holds a generation.
    pub(crate) fn adopted_state(&self) -> super::AdoptedState {
        super::AdoptedState {
            vips: self.vips.iter().map(|(k, m)| (*k, *m)).collect(),
            backends: self
                .backends
                .iter()
                .filter(|(_, b)| b.generation != 0)
                .map(|(id, b)| (*id, *b))
                .collect(),
        }
    }

    /// Counts a write; fails it when `writes_before_failure` ran out.
    fn write(&mut self) -> Result<()> {
        match &mut self.writes_before_failure {
            Some(0) => Err(DataplaneError::MissingMap("an injected failure")),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The live table of a VIP as packets would read it.
    pub(crate) fn live_table(&self, key: &VipKey) -> Option<Vec<u32>> {
        let meta = self.vips.get(key)?;
        Some(
            (0..meta.table_size)
                .map(|slot| {
                    self.tables
                        .get(&(meta.id, meta.active_table, slot))
                        .copied()
                        .unwrap_or(0)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
impl MapWriter for FakeMaps {
    fn set_config(&mut self, config: &LbConfig) -> Result<()> {
        self.write()?;
        self.config = *config;
        Ok(())
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<()> {
        self.write()?;
        self.backends.insert(id, *backend);
        self.log.push(format!("backend {id}"));
        Ok(())
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize> {
        self.write()?;
        let mut written = 0;
        for (slot, backend_id) in slots {
            self.tables.insert((vip_id, table, slot), backend_id);
            written += 1;
        }
        self.slot_writes += written;
        Ok(written)
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<()> {
        self.write()?;
        self.vips.insert(*key, *meta);
        self.log.push(format!("vip {}", meta.id));
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<()> {
        self.write()?;
        self.vips.remove(key);
        Ok(())
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<()> {
        self.write()?;
        self.vip_traffic.remove(&vip_id);
        Ok(())
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<()> {
        self.write()?;
        self.backend_traffic.remove(&id);
        Ok(())
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()> {
        self.write()?;
        self.nat_sources.insert(vip_id, *source);
        self.log.push(format!("nat source {vip_id}"));
        Ok(())
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<()> {
        self.write()?;
        self.tunnel = Some(*config);
        self.log.push("tunnel config".to_owned());
        Ok(())
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<()> {
        self.write()?;
        if enabled {
            self.config.flags |= CONFIG_F_NAT;
        } else {
            self.config.flags &= !CONFIG_F_NAT;
        }
        Ok(())
    }

    fn set_service_addrs(&mut self, addrs: &BTreeMap<ServiceAddr, u32>) -> Result<()> {
        self.write()?;
        self.service_addrs.clone_from(addrs);
        self.log.push("service addrs".to_owned());
        Ok(())
    }
}
