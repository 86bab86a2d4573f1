//! The balancer's writes: one VIP's backends and table copies in the
//! order packets can take, removals, the tunnel config, and the ids and
//! generations they use.

use std::collections::BTreeSet;

use lb_common::{
    consts::{BACKEND_F_ALIVE, MAX_BACKENDS, SERVICE_ADDR_F_NAT, SERVICE_ADDR_F_VIP},
    Backend, NatSource, VipMeta,
};
use tracing::{debug, info};

use super::*;

impl Balancer {
    /// Takes VIP `id` out of the maps and retires its backends.
    pub(super) fn remove_vip(
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

    /// Refuses tunnelled backends without an outer source, then writes
    /// `TUNNEL_CONFIG` when it changed, before any VIP names a tunnelled
    /// mode (an object without the map serves the other modes untouched).
    pub(super) fn apply_tunnel(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<(), ReconcileError> {
        let tunnelled: Vec<&DesiredVip> = desired.iter().filter(|v| v.mode.is_tunnel()).collect();
        for vip in &tunnelled {
            for backend in &vip.backends {
                if let Err(key) = self.tunnel.source_for(vip.id.address, backend.address) {
                    return Err(ReconcileError::NoTunnelSource {
                        vip: vip.id.to_string(),
                        backend: backend.address,
                        key,
                    });
                }
            }
        }
        let wanted = self.tunnel.config;
        if (self.tunnel_written.is_some() || !tunnelled.is_empty())
            && self.tunnel_written != Some(wanted)
        {
            maps.set_tunnel_config(&wanted)?;
            self.tunnel_written = Some(wanted);
        }
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
    pub(super) fn apply_vip(
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
        let mode_changed = is_new || vip.mode != desired.mode;
        if desired.nat != vip.nat {
            if let Some(nat) = &desired.nat {
                maps.set_nat_source(vip.id, &nat_source(nat))?;
            }
            vip.nat = desired.nat;
        }
        vip.mode = desired.mode;

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
        } else if mode_changed {
            // Same table, other mode: one VIP update switches it.
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

    /// Writes one backend's `BACKENDS` entry as applied.
    fn write_backend(
        &self,
        maps: &mut dyn MapWriter,
        vip_id: u32,
        address: IpAddr,
        applied: &AppliedBackend,
    ) -> Result<(), ReconcileError> {
        let (addr, family) = addr_words(address);
        let backend = Backend {
            addr,
            generation: applied.generation,
            // VIP ids stay far below u16::MAX (config::MAX_VIPS).
            vip_id: u16::try_from(vip_id).map_err(|_| ReconcileError::TooManyVips(vip_id))?,
            port: applied.port.unwrap_or(0).to_be(),
            mac: applied.mac.unwrap_or_default(),
            family,
            flags: if applied.alive { BACKEND_F_ALIVE } else { 0 },
        };
        maps.set_backend(applied.id, &backend)?;
        Ok(())
    }

    /// Retires the entries a failed commit may have left alive on ids the
    /// record does not hold (`Balancer::stale_backend_ids`), each with a
    /// fresh generation as `retire_backend` does: no later apply would,
    /// and flows pinned to one would keep going to its backend. No live
    /// table names them (the `VIPS` entries a failed commit left unsure
    /// and its strays are seen to first). An id stays counted until its
    /// write is made, so a failed write leaves it to the next apply.
    pub(super) fn retire_stale_backends(
        &mut self,
        maps: &mut dyn MapWriter,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        let stale: Vec<u32> = self.stale_backend_ids.iter().copied().collect();
        for id in stale {
            let retired = retired_backend(self.next_generation());
            maps.set_backend(id, &retired)?;
            self.stale_backend_ids.remove(&id);
            report.backends_written += 1;
            debug!(backend = id, "left by a failed commit: retired");
        }
        Ok(())
    }

    /// Retires a removed backend's entry (`retired_backend`) and frees its
    /// id (its flows then find no backend of their generation and are
    /// hashed again).
    fn retire_backend(
        &mut self,
        maps: &mut dyn MapWriter,
        backend: &AppliedBackend,
        report: &mut ApplyReport,
    ) -> Result<(), ReconcileError> {
        let retired = retired_backend(self.next_generation());
        maps.set_backend(backend.id, &retired)?;
        self.free_backend_ids.give_back(backend.id);
        report.backends_written += 1;
        Ok(())
    }

    /// `SERVICE_ADDRS` for the VIPs served: every VIP's address and every
    /// NAT VIP's NAT address, flagged by what it is (an address can be
    /// both only by mistake; the flags add up).
    pub(super) fn service_addrs(&self) -> BTreeMap<ServiceAddr, u32> {
        let mut addrs = BTreeMap::new();
        for (id, vip) in &self.vips {
            add_service_addrs(&mut addrs, id.address, vip.mode, vip.nat.as_ref());
        }
        addrs
    }

    /// The node-wide entries `desired` needs, written before any of its
    /// VIPs is (`apply` writes the exact ones once they all are): a NAT
    /// VIP's backend replies come to its NAT address, which the data plane
    /// looks up only while `CONFIG_F_NAT` is set (else the kernel answers
    /// them with a reset), and fragments to a VIP or NAT address missing
    /// from `SERVICE_ADDRS` are passed up. So the flag is set if a desired
    /// VIP needs it, and `SERVICE_ADDRS` gets the union of what it holds,
    /// what the served VIPs need and what the desired ones do: nothing a
    /// VIP still served needs is taken away here, only after the VIPs.
    pub(super) fn open_node_entries(
        &mut self,
        maps: &mut dyn MapWriter,
        desired: &[DesiredVip],
    ) -> Result<(), ReconcileError> {
        if desired.iter().any(|v| v.mode == Mode::Nat) && self.nat_enabled != Some(true) {
            maps.set_nat_enabled(true)?;
            self.nat_enabled = Some(true);
        }
        // With no record of the map (None: a first apply, or after a
        // failed commit), what neither the served VIPs nor the desired
        // ones name goes now: it is for VIPs this apply removes, if any.
        let mut addrs = self.service_addrs.clone().unwrap_or_default();
        for (key, flags) in self.service_addrs() {
            *addrs.entry(key).or_insert(0) |= flags;
        }
        for vip in desired {
            add_service_addrs(&mut addrs, vip.id.address, vip.mode, vip.nat.as_ref());
        }
        if self.service_addrs.as_ref() != Some(&addrs) {
            maps.set_service_addrs(&addrs)?;
            self.service_addrs = Some(addrs);
        }
        Ok(())
    }

    /// The node-wide entries once every VIP is written: the NAT flag off
    /// when no NAT VIP remains (only now, so no NAT VIP is served without
    /// it), and `SERVICE_ADDRS` exactly what the served VIPs need.
    pub(super) fn close_node_entries(
        &mut self,
        maps: &mut dyn MapWriter,
    ) -> Result<(), ReconcileError> {
        let nat = self.vips.values().any(|v| v.mode == Mode::Nat);
        if self.nat_enabled != Some(nat) {
            maps.set_nat_enabled(nat)?;
            self.nat_enabled = Some(nat);
        }
        let addrs = self.service_addrs();
        if self.service_addrs.as_ref() != Some(&addrs) {
            maps.set_service_addrs(&addrs)?;
            self.service_addrs = Some(addrs);
        }
        Ok(())
    }

    /// A free backend id, or the maps are full.
    fn allocate_backend_id(&mut self) -> Result<u32, ReconcileError> {
        self.free_backend_ids
            .take()
            .ok_or(ReconcileError::TooManyBackends(MAX_BACKENDS - 1))
    }

    /// The generation for a newly written id (never 0: 0 is an empty
    /// entry), so flows of an id's previous owner do not follow it.
    fn next_generation(&mut self) -> u32 {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        generation
    }
}

/// The VIP id a retired backend's entry names: none (VIP ids are below
/// `MAX_VIPS`), so no VIP adopts it and nothing looks it up for a VIP.
pub(crate) const RETIRED_VIP_ID: u16 = u16::MAX;

/// A removed backend's entry: no address, no VIP (`RETIRED_VIP_ID`), and a
/// generation of its own, never given to a backend. The pinned map keeps
/// it, so an lbd started later (which adopts the maps) numbers its
/// generations above it: otherwise, with the removed backend's entry
/// cleared, it could hand the removed backend's id and generation to a
/// backend of another VIP, and the flows still pinned to the removed one
/// (idle since, within their timeout) would follow it there.
pub(crate) fn retired_backend(generation: u32) -> Backend {
    Backend {
        generation,
        vip_id: RETIRED_VIP_ID,
        ..Backend::default()
    }
}

/// Adds a VIP's `SERVICE_ADDRS` entries to `addrs`: its address, and in
/// NAT mode its NAT address (shared by `service_addrs` for the VIPs served
/// and `open_node_entries` for the desired ones, so both agree).
fn add_service_addrs(
    addrs: &mut BTreeMap<ServiceAddr, u32>,
    address: IpAddr,
    mode: Mode,
    nat: Option<&VipNat>,
) {
    let mut add = |address: IpAddr, flag: u32| {
        let (addr, family) = addr_words(address);
        let key = ServiceAddr {
            addr,
            family,
            _pad: [0; 3],
        };
        *addrs.entry(key).or_insert(0) |= flag;
    };
    add(address, SERVICE_ADDR_F_VIP);
    if let (Mode::Nat, Some(nat)) = (mode, nat) {
        add(nat.source, SERVICE_ADDR_F_NAT);
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

/// Writes into copy `copy` of VIP `vip_id` the slots where `new` differs
/// from `old` (every slot when `old` is unknown); returns the count.
fn write_changes(
    maps: &mut dyn MapWriter,
    vip_id: u32,
    copy: u32,
    old: Option<&[u32]>,
    new: &[u32],
) -> Result<usize, ReconcileError> {
    let written = match old {
        Some(old) => maps.write_table(vip_id, copy, &mut maglev::changed_slots(old, new))?,
        None => maps.write_table(
            vip_id,
            copy,
            &mut new.iter().enumerate().map(|(slot, b)| (slot as u32, *b)),
        )?,
    };
    Ok(written)
}

/// The Maglev table of a VIP: backends with a weight and a known MAC. In
/// minimal mode, an update of the table packets read now, if known.
fn build_table(id: &VipId, vip: &AppliedVip, mode: MaglevMode) -> Result<Vec<u32>, ReconcileError> {
    let keys: Vec<(Vec<u8>, &AppliedBackend)> = vip
        .backends
        .iter()
        .filter(|(_, b)| b.alive && b.weight > 0)
        .map(|(address, b)| (address_bytes(*address), b))
        .collect();
    let members: Vec<MaglevBackend<'_>> = keys
        .iter()
        .map(|(key, b)| MaglevBackend {
            key,
            weight: b.weight,
            id: b.id,
        })
        .collect();
    let previous = vip.table.as_deref().or(vip.basis.as_deref());
    let built = match (mode, previous) {
        (MaglevMode::Minimal, Some(previous)) => {
            crate::maglev::update::update_table(previous, &members, vip.table_size)
        }
        _ => maglev::build_table(&members, vip.table_size),
    };
    built.map_err(|source| ReconcileError::Maglev {
        vip: id.to_string(),
        source,
    })
}
