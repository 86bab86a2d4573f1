//! The states a previous lbd recorded, given back at start to the
//! backends the config still has (a drain with its start and deadline),
//! and those of backends it no longer has dropped, with a word for each.

use std::{
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use tracing::info;

use super::{
    file_format::{snapshot, unix_ms, Recorded},
    AdminRecord,
};
use crate::{
    daemon::engine::BackendKey,
    model::{is_checked, AdminState, BackendState, Model, MAX_DRAIN_TIMEOUT},
    vip_id::VipId,
};

impl AdminRecord {
    /// Puts the recorded states into `model` (built from the config at
    /// start) at `now`, and logs which were restored and which were
    /// dropped because their backend is no longer configured.
    pub(crate) fn restore(&mut self, model: &mut Model, now: Instant) {
        let found = std::mem::take(&mut self.found);
        let outcome = restore(model, &found, now, SystemTime::now());
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
        self.recorded = outcome.dropped.is_empty().then(|| snapshot(model));
    }
}

/// What [`restore`] did.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Restored {
    /// Backends given their recorded state.
    pub(super) restored: Vec<(BackendKey, BackendState)>,
    /// Recorded states of backends the model does not have.
    pub(super) dropped: Vec<(String, IpAddr, BackendState)>,
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
            out.dropped
                .push((entry.vip.clone(), entry.backend, entry.state));
            continue;
        };
        let admin = match entry.state {
            BackendState::Enabled => continue,
            BackendState::Maintenance => AdminState::Maintenance,
            BackendState::Draining => {
                let ago = entry
                    .drain_started_unix_ms
                    .map_or(0, |at| wall_ms.saturating_sub(at));
                let since = now.checked_sub(Duration::from_millis(ago)).unwrap_or(now);
                // A deadline no later than a week from now (the longest a
                // drain may ask for), so a clock set back cannot push it
                // out of reach.
                let deadline = entry.drain_deadline_unix_ms.map(|at| {
                    let left = Duration::from_millis(at.saturating_sub(wall_ms));
                    now + left.min(MAX_DRAIN_TIMEOUT)
                });
                AdminState::Draining { since, deadline }
            }
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
