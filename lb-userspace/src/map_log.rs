//! The map writes of a staged change, recorded instead of made: a change is
//! applied to a copy of the balancer against a [`MapLog`], which gives the
//! exact tables it will produce (for plans and `--dry-run`, in either
//! Maglev mode), and committing replays the same writes, in the same order,
//! to the real maps. Each table is built once.

use std::collections::BTreeMap;

use lb_common::{Backend, LbConfig, NatSource, ServiceAddr, TunnelConfig, VipKey, VipMeta};

use crate::dataplane::{DataplaneError, MapWriter};

/// One recorded write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MapOp {
    Config(LbConfig),
    Backend(u32, Backend),
    Table {
        vip_id: u32,
        copy: u32,
        slots: Vec<(u32, u32)>,
    },
    SetVip(VipKey, VipMeta),
    RemoveVip(VipKey),
    ClearVipTraffic(u32),
    ClearBackendTraffic(u32),
    NatSource(u32, NatSource),
    NatEnabled(bool),
    Tunnel(TunnelConfig),
    ServiceAddrs(BTreeMap<ServiceAddr, u32>),
}

/// Writes recorded in order, to be replayed by [`MapLog::replay`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MapLog {
    ops: Vec<MapOp>,
}

impl MapLog {
    /// Makes the recorded writes on `maps`, in order; stops at the first
    /// that fails, saying which (the writes before it were made, those
    /// after it were not, it may have been in part), so that a failed
    /// commit knows what each VIP serves (see `Balancer::commit`).
    pub(crate) fn replay(&self, maps: &mut dyn MapWriter) -> Result<(), ReplayError> {
        for (at, op) in self.ops.iter().enumerate() {
            op.make(maps)
                .map_err(|error| ReplayError { failed: at, error })?;
        }
        Ok(())
    }

    /// The index of the last recorded write of VIP `key`'s entry (its flip
    /// or its removal): whether it was made tells which table copy the
    /// VIP serves, or whether it is still served.
    pub(crate) fn last_vip_write(&self, key: &VipKey) -> Option<usize> {
        self.ops.iter().rposition(|op| match op {
            MapOp::SetVip(k, _) | MapOp::RemoveVip(k) => k == key,
            _ => false,
        })
    }
}

impl MapOp {
    /// Makes this write on `maps`.
    fn make(&self, maps: &mut dyn MapWriter) -> Result<(), DataplaneError> {
        match self {
            MapOp::Config(config) => maps.set_config(config),
            MapOp::Backend(id, backend) => maps.set_backend(*id, backend),
            MapOp::Table {
                vip_id,
                copy,
                slots,
            } => maps
                .write_table(*vip_id, *copy, &mut slots.iter().copied())
                .map(drop),
            MapOp::SetVip(key, meta) => maps.set_vip(key, meta),
            MapOp::RemoveVip(key) => maps.remove_vip(key),
            MapOp::ClearVipTraffic(id) => maps.clear_vip_traffic(*id),
            MapOp::ClearBackendTraffic(id) => maps.clear_backend_traffic(*id),
            MapOp::NatSource(id, source) => maps.set_nat_source(*id, source),
            MapOp::NatEnabled(enabled) => maps.set_nat_enabled(*enabled),
            MapOp::Tunnel(config) => maps.set_tunnel_config(config),
            MapOp::ServiceAddrs(addrs) => maps.set_service_addrs(addrs),
        }
    }
}

/// A replay that stopped: the index of the write that failed, and why.
/// Writes are recorded per VIP in an order whose every prefix serves, so
/// the index tells what the maps hold.
#[derive(Debug)]
pub(crate) struct ReplayError {
    /// The failed write's index: those before it were made.
    pub(crate) failed: usize,
    /// Why it failed.
    pub(crate) error: DataplaneError,
}

impl MapWriter for MapLog {
    fn set_config(&mut self, config: &LbConfig) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::Config(*config));
        Ok(())
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::Backend(id, *backend));
        Ok(())
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        let slots: Vec<(u32, u32)> = slots.collect();
        let written = slots.len();
        self.ops.push(MapOp::Table {
            vip_id,
            copy: table,
            slots,
        });
        Ok(written)
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::SetVip(*key, *meta));
        Ok(())
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::RemoveVip(*key));
        Ok(())
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::ClearVipTraffic(vip_id));
        Ok(())
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::ClearBackendTraffic(id));
        Ok(())
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::NatSource(vip_id, *source));
        Ok(())
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::NatEnabled(enabled));
        Ok(())
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::Tunnel(*config));
        Ok(())
    }

    fn set_service_addrs(
        &mut self,
        addrs: &BTreeMap<ServiceAddr, u32>,
    ) -> Result<(), DataplaneError> {
        self.ops.push(MapOp::ServiceAddrs(addrs.clone()));
        Ok(())
    }
}
