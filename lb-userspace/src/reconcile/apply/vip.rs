//! One VIP's writes: added or changed in the order packets can take
//! (backends, the inactive table copy, the flip, the other copy, then
//! retirements), or removed.

use std::collections::{BTreeMap, BTreeSet};

use lb_common::{NatSource, VipMeta};
use tracing::{debug, info};

use super::{
    super::{
        AppliedBackend, AppliedVip, ApplyReport, Balancer, DesiredVip, MapWriter, ReconcileError,
        VipId,
    },
    maglev_table::{build_table, write_changes},
};
use crate::{config::VipNat, vip_id::addr_words};

impl Balancer {
    /// Takes VIP `id` out of the maps and retires its backends.
    pub(in crate::reconcile) fn remove_vip(
        &mut self,
        maps: &mut dyn MapWriter,
        id: VipId,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        let Some(vip) = self.vips.get(&id) else {
            return Ok(());
        };
        maps.remove_vip(&id.key())?;
        let backends: Vec<AppliedBackend> =
            vip.backends.values().chain(&vip.dropped).cloned().collect();
        for backend in backends {
            self.retire_backend(maps, &backend, report)?;
        }
        self.vips.remove(&id);
        report.vips_removed += 1;
        info!(vip = %id, "VIP removed");
        Ok(())
    }

    /// The lowest VIP index no served VIP holds.
    fn free_vip_id(&self) -> Option<u32> {
        let used: BTreeSet<u32> = self.vips.values().map(|v| v.id).collect();
        (0..self.max_vips).find(|id| !used.contains(id))
    }

    /// Brings one VIP's maps to `desired`: backends first, then the
    /// inactive table copy, the flip, and the other copy; an unchanged VIP
    /// is skipped.
    pub(in crate::reconcile) fn apply_vip(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &DesiredVip,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        let id = desired.id;
        let is_new = !self.vips.contains_key(&id);
        if let Some(stored) = self.vips.get_mut(&id) {
            if stored.applied.as_ref() == Some(desired) {
                return Ok(());
            }
            // Until this apply succeeds, the VIP must not count as applied.
            stored.applied = None;
        }
        let mut vip = match self.vips.get(&id) {
            Some(vip) => vip.clone(),
            None => AppliedVip {
                id: self
                    .free_vip_id()
                    .ok_or(ReconcileError::TooManyVips(self.max_vips))?,
                table_size: desired.table_size,
                active: 0,
                mode: desired.mode,
                affinity: desired.affinity,
                nat: None,
                table: None,
                backends: BTreeMap::new(),
                applied: None,
                basis: None,
                meta_unsure: false,
                dropped: Vec::new(),
            },
        };
        if is_new {
            // A freed id: the counters must not carry its last VIP's traffic.
            maps.clear_vip_traffic(vip.id)?;
        }
        if vip.table_size != desired.table_size {
            // Different size: neither copy's content can be diffed against.
            vip.table_size = desired.table_size;
            vip.table = None;
        }

        // 1. New backends, and backends that can take packets now, exist in
        //    the data plane before any table can name them. Backends that
        //    can no longer take packets are written after the flip (step 3),
        //    so no packet is hashed to a slot whose backend is already dead.
        let mut kept = BTreeMap::new();
        let mut weakened = Vec::new();
        for backend in &desired.backends {
            let target = AppliedBackend {
                id: 0,
                generation: 0,
                mac: backend.mac,
                port: backend.port,
                weight: backend.weight,
                alive: backend.can_take_packets(desired.mode),
            };
            let applied = match vip.backends.remove(&backend.address) {
                Some(current) => {
                    let next = AppliedBackend {
                        id: current.id,
                        generation: current.generation,
                        ..target
                    };
                    if self.rewrite_all
                        || next.mac != current.mac
                        || next.alive != current.alive
                        || next.port != current.port
                    {
                        if next.alive || !current.alive {
                            self.write_backend(maps, vip.id, backend.address, &next)?;
                            report.backends_written += 1;
                        } else {
                            weakened.push((backend.address, next.clone()));
                        }
                    }
                    next
                }
                None => {
                    let next = AppliedBackend {
                        id: self.allocate_backend_id()?,
                        generation: self.next_generation(),
                        ..target
                    };
                    // As for VIP ids: a new backend counts from zero.
                    maps.clear_backend_traffic(next.id)?;
                    self.write_backend(maps, vip.id, backend.address, &next)?;
                    report.backends_written += 1;
                    next
                }
            };
            kept.insert(backend.address, applied);
        }
        let mut retired: Vec<AppliedBackend> =
            std::mem::take(&mut vip.backends).into_values().collect();
        retired.append(&mut vip.dropped);
        vip.backends = kept;

        // The NAT source is in place before the VIP's mode names it.
        let meta_changed = is_new || vip.mode != desired.mode || vip.affinity != desired.affinity;
        if desired.nat != vip.nat {
            if let Some(nat) = &desired.nat {
                maps.set_nat_source(vip.id, &nat_source(nat))?;
            }
            vip.nat = desired.nat;
        }
        vip.mode = desired.mode;
        vip.affinity = desired.affinity;

        // 2. The new table goes into the copy packets do not read, one VIP
        //    update flips them to it, then the other copy catches up, so both
        //    copies hold the live table and the next change writes only the
        //    slots it changes.
        let started = std::time::Instant::now();
        let table = build_table(&id, &vip, self.mode)?;
        report.table_builds.push(started.elapsed());
        if is_new || vip.table.as_deref() != Some(table.as_slice()) {
            if let Some(stored) = self.vips.get_mut(&id) {
                // If a write below fails, the copies' content is unknown.
                stored.table = None;
            }
            let inactive = 1 - vip.active;
            let mut written = write_changes(maps, vip.id, inactive, vip.table.as_deref(), &table)?;
            let meta = VipMeta {
                active_table: inactive,
                ..vip.meta()
            };
            maps.set_vip(&id.key(), &meta)?;
            written += write_changes(maps, vip.id, vip.active, vip.table.as_deref(), &table)?;
            vip.active = inactive;
            vip.table = Some(table);
            vip.basis = None;
            report.slots_written += written;
            report.tables_flipped += 1;
            debug!(vip = %id, slots = written, table = inactive, "Maglev table flipped");
        } else if meta_changed {
            // Same table, other mode or affinity: one VIP update switches
            // it.
            maps.set_vip(&id.key(), &vip.meta())?;
        }

        // 3. Only now, with no table naming them, retire removed backends and
        //    mark dead ones: their tracked flows are hashed again.
        for (address, backend) in &weakened {
            self.write_backend(maps, vip.id, *address, backend)?;
            report.backends_written += 1;
        }
        for backend in &retired {
            self.retire_backend(maps, backend, report)?;
        }
        if is_new {
            report.vips_added += 1;
            info!(vip = %id, backends = vip.backends.len(), "VIP added");
        }
        vip.applied = Some(desired.clone());
        self.vips.insert(id, vip);
        Ok(())
    }
}

/// The data plane's form of a VIP's NAT side.
fn nat_source(nat: &VipNat) -> NatSource {
    let (addr, family) = addr_words(nat.source);
    NatSource {
        addr,
        port_min: nat.port_min,
        port_max: nat.port_max,
        family,
        _pad: [0; 3],
    }
}
