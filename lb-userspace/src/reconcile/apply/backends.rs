//! Backends' `BACKENDS` entries: written as applied, or retired with a
//! fresh generation; and the ids and generations handed to them.

use std::net::IpAddr;

use lb_common::{
    consts::{BACKEND_F_ALIVE, MAX_BACKENDS},
    Backend,
};
use tracing::debug;

use super::{
    super::{AppliedBackend, ApplyReport, Balancer, MapWriter, ReconcileError},
    retired_backend,
};
use crate::vip_id::addr_words;

impl Balancer {
    /// Writes one backend's `BACKENDS` entry as applied.
    pub(super) fn write_backend(
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
    pub(in crate::reconcile) fn retire_stale_backends(
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
    pub(super) fn retire_backend(
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

    /// A free backend id, or the maps are full.
    pub(super) fn allocate_backend_id(&mut self) -> Result<u32, ReconcileError> {
        self.free_backend_ids
            .take()
            .ok_or(ReconcileError::TooManyBackends(MAX_BACKENDS - 1))
    }

    /// The generation for a newly written id (never 0: 0 is an empty
    /// entry), so flows of an id's previous owner do not follow it.
    pub(super) fn next_generation(&mut self) -> u32 {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        generation
    }
}
