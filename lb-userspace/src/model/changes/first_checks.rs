//! Backends waiting for their first health checks: assumed to pass in a
//! dry run, and named in the answer to the change that brought them.

use super::super::{AdminState, BackendModel, Model};

impl Model {
    /// This model with every backend still waiting for its first checks
    /// taken as up: what a dry run plans (it assumes the checks pass, as
    /// it assumes new backends' MACs resolve).
    pub(crate) fn assuming_checks_pass(&self) -> Model {
        let mut next = self.clone();
        for backend in next.vips.values_mut().flat_map(|v| v.backends.values_mut()) {
            backend.awaiting_checks = false;
        }
        next
    }

    /// Enabled backends of `self` that wait for their first checks and
    /// did not so in `before` (new, or enabled since): for the answer to
    /// the change that brought them.
    pub(crate) fn newly_awaiting_checks(&self, before: &Model) -> Vec<String> {
        let waits = |b: &BackendModel| b.awaits_first_check() && b.admin == AdminState::Enabled;
        let mut notes = Vec::new();
        for (id, vip) in &self.vips {
            for (address, backend) in &vip.backends {
                let waited = before
                    .vips
                    .get(id)
                    .and_then(|v| v.backends.get(address))
                    .is_some_and(waits);
                if waits(backend) && !waited {
                    let rise = backend
                        .config
                        .health
                        .as_ref()
                        .map_or(vip.config.health.rise, |h| h.rise);
                    notes.push(format!(
                        "{id} backend {address}: takes new flows once its checks pass ({rise} in a row)"
                    ));
                }
            }
        }
        notes
    }
}
