//! The states a previous lbd recorded, given back at start to the
//! backends the config still has (a drain with its start and deadline),
//! and those of backends it no longer has dropped, with a word for each.

use std::{
    net::IpAddr,
    time::{Instant, SystemTime},
};

use tracing::info;

use super::{
    file_format::{drain_deadline_at, drain_start_at, snapshot_with, unix_ms, Recorded},
    AdminRecord,
};
use crate::{
    daemon::engine::{
        shared_states::{Stamp, Stamps},
        BackendKey,
    },
    model::{is_checked, AdminState, BackendState, Model},
    vip_id::VipId,
};

impl AdminRecord {
    /// Puts the recorded states into `model` (built from the config at
    /// start) at `now`, and logs which were restored and which were
    /// dropped because their backend is no longer configured.
    pub(crate) fn restore(&mut self, model: &mut Model, now: Instant) {
        let found = std::mem::take(&mut self.found);
        let outcome = restore(model, &found, now, SystemTime::now());
        self.stamps = outcome.stamps.clone();
        for (key, state) in &outcome.restored {
            info!(vip = %key.0, backend = %key.1, %state, "backend state restored from before this start");
        }
        for (vip, backend, state) in &outcome.dropped {
            info!(%vip, %backend, %state, "backend state recorded before this start dropped: the config has no such backend");
        }
        if let (Some(path), false) = (&self.path, found.is_empty()) {
            info!(path = %path.display(), restored = outcome.restored.len(), dropped = outcome.dropped.len(), "backend states read");
        }
        // Dropped ones are written out by the first commit.
        self.recorded = outcome
            .dropped
            .is_empty()
            .then(|| snapshot_with(model, &self.stamps));
    }
}

/// What [`restore`] did.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Restored {
    /// Backends given their recorded state.
    pub(super) restored: Vec<(BackendKey, BackendState)>,
    /// Recorded states of backends the model does not have.
    pub(super) dropped: Vec<(String, IpAddr, BackendState)>,
    /// When the restored states (enabled ones included) were made, where
    /// the file says (a node that shares them with sync peers).
    pub(super) stamps: Stamps,
}

/// Gives the backends of `model` the states `found` records, with the
/// wall clock at `wall` taken as `now`: a drain keeps its start and its
/// deadline (one that passed while lbd was down ends at the next tick,
/// as the drain's timeout does); a checked backend in maintenance awaits
/// its first check before it takes new flows again.
pub(super) fn restore(
    model: &mut Model,
    found: &[Recorded],
    now: Instant,
    wall: SystemTime,
) -> Restored {
    let mut out = Restored::default();
    let wall_ms = unix_ms(wall);
    for entry in found {
        let key = entry
            .vip
            .parse::<VipId>()
            .ok()
            .map(|id| (id, entry.backend));
        let Some((vip, backend)) = key.and_then(|(id, address)| {
            let vip = model.vips.get_mut(&id)?;
            let backend = vip.backends.get_mut(&address)?;
            Some((&vip.config, backend))
        }) else {
            // An enabled entry is only a time (see `shared_states`): a
            // backend no longer configured has nothing to lose with it.
            if entry.state != BackendState::Enabled {
                out.dropped
                    .push((entry.vip.clone(), entry.backend, entry.state));
            }
            continue;
        };
        if let (Some(key), Some(unix_ms)) = (key, entry.changed_unix_ms) {
            out.stamps.insert(
                key,
                Stamp {
                    unix_ms,
                    from: None,
                },
            );
        }
        let admin = match entry.state {
            BackendState::Enabled => continue,
            BackendState::Maintenance => AdminState::Maintenance,
            BackendState::Draining => AdminState::Draining {
                since: entry
                    .drain_started_unix_ms
                    .map_or(now, |at| drain_start_at(at, now, wall_ms)),
                deadline: entry
                    .drain_deadline_unix_ms
                    .map(|at| drain_deadline_at(at, now, wall_ms)),
            },
        };
        backend.admin = admin;
        backend.drain_timed_out = entry.drain_timed_out && admin == AdminState::Maintenance;
        if admin == AdminState::Maintenance {
            // Its health is not known (the maps hold it dead for its
            // maintenance, and it may be down): an enable before its first
            // check gives it no new flows, as for a backend that joins.
            backend.awaiting_checks = is_checked(vip, &backend.config);
        }
        if let Some(key) = key {
            out.restored.push((key, entry.state));
        }
    }
    out
}
