//! Commits: how a next model becomes the served state (forwarding
//! switched on, the maps written, then the model adopted), and how the
//! maps go back when a write fails half-way. Apart because every change,
//! whatever asked for it, ends here.

use tracing::{info, warn};

use super::{nat, Engine};
use crate::{
    guard::GuardConfig,
    model::Model,
    reconcile::{ApplyReport, ReconcileError, Staged},
};

impl Engine {
    /// Makes `next` the served state: stages it on the balancer, writes
    /// the maps, then adopts it and points the health checks at its
    /// backends.
    pub fn commit(&mut self, next: Model) -> Result<ApplyReport, ReconcileError> {
        let next = self.with_slow_starts(next);
        let macs = &self.macs;
        let desired = next.desired(&|a| macs.get(&a).copied());
        let staged = self.balancer.stage(&desired)?;
        let guards = self.guard.config().clone();
        self.commit_staged(next, staged, guards)
    }

    /// `next` with the ramps its change from the running model begins
    /// (see [`crate::model::SlowStart`]): every change to be committed
    /// passes here before its desired state is computed.
    pub(crate) fn with_slow_starts(&self, mut next: Model) -> Model {
        next.start_slow_starts(&self.model, std::time::Instant::now());
        next
    }

    /// Makes `next`, already staged as `staged`, the served state, with
    /// `guards` in force from its first packet (a reload's are the
    /// file's).
    pub(crate) fn commit_staged(
        &mut self,
        next: Model,
        staged: Staged,
        guards: GuardConfig,
    ) -> Result<ApplyReport, ReconcileError> {
        let before = self.guard.config().clone();
        self.guard_staged(&staged, &guards);
        let report = match forwarding_then_maps(self, staged) {
            Ok(report) => report,
            Err(error) => {
                // A write failed half-way: the maps go back to the running
                // state (the balancer now rewrites all it serves), then
                // the guards, for the VIPs still served.
                self.restore_after_failed_commit();
                if let Err(again) = self.apply_guard(before) {
                    warn!(%again, "restoring the deny/allow lists and limits after a refused change failed");
                }
                return Err(error);
            }
        };
        // Again for the committed state: a switch that failed before is
        // retried.
        self.ensure_forwarding();
        self.tables_rebuilt += report.tables_flipped as u64;
        for took in &report.table_builds {
            self.metrics.observe_table_build(*took);
        }
        self.model = next;
        self.forget_unwanted_macs();
        self.follow_admin_states();
        self.settle_guard(guards);
        self.sync_checks();
        self.track();
        Ok(report)
    }

    /// Writes the running model back after a commit failed half-way. If
    /// this fails too, the balancer still counts every entry as unknown,
    /// so the next change or health event writes them all. Before this
    /// lbd's first fill succeeded nothing is written back: the maps are a
    /// previous lbd's, its program may still serve them, and the running
    /// model is empty (see `Balancer::restore`).
    pub(super) fn restore_after_failed_commit(&mut self) {
        let macs = &self.macs;
        let desired = self.model.desired(&|a| macs.get(&a).copied());
        match self.balancer.restore(&mut self.dataplane, &desired) {
            Ok(true) => info!(
                "a map write failed half-way through a change; the running state is written back"
            ),
            Ok(false) => warn!(
                "a map write failed half-way through filling the adopted data plane; its maps keep the previous lbd's VIPs and backends (with the part of this lbd's config written), so the program still attached goes on serving them"
            ),
            Err(error) => {
                warn!(%error, "a map write failed half-way through a change, and writing the running state back failed too: the maps may hold part of the change until the next change rewrites them")
            }
        }
    }
}

/// The two steps of a commit whose order a routed VIP's first packets
/// depend on: forwarding switched on for the staged change's families,
/// then the maps written. Why a trait: the order is tested with fake
/// steps (the engine's switch writes sysctls).
trait CommitSteps {
    /// Switches forwarding on for `families` (true: IPv6).
    fn switch_forwarding_on(&mut self, families: &std::collections::BTreeSet<bool>);
    /// Writes `staged` to the maps.
    fn write_maps(&mut self, staged: Staged) -> Result<ApplyReport, ReconcileError>;
}

impl CommitSteps for Engine {
    fn switch_forwarding_on(&mut self, families: &std::collections::BTreeSet<bool>) {
        self.ensure_forwarding_for(families);
    }

    fn write_maps(&mut self, staged: Staged) -> Result<ApplyReport, ReconcileError> {
        self.balancer.commit(&mut self.dataplane, staged)
    }
}

/// Commits `staged` with forwarding switched on first for the families
/// its routed VIPs are looked up in (see `nat::routed_families_of`):
/// the commit's writes make them live, and a packet that meets a FIB
/// lookup with forwarding off is dropped (`DropNoRoute`).
fn forwarding_then_maps(
    steps: &mut impl CommitSteps,
    staged: Staged,
) -> Result<ApplyReport, ReconcileError> {
    let families = nat::routed_families_of(staged.vips());
    steps.switch_forwarding_on(&families);
    steps.write_maps(staged)
}

#[cfg(test)]
mod tests;
