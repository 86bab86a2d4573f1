//! The engine's side of the guards (`crate::guard`): runtime changes
//! (`lbctl acl`, `lbctl limit`), their view with counts, and keeping the
//! maps in step with the VIPs served after every commit.

use tracing::{info, warn};

use super::Engine;
use crate::{
    api::{
        code,
        schema::{AclRuleStatus, GuardDrops, GuardStatus, LimitStatus},
        Response,
    },
    dataplane::DataplaneError,
    guard::{GuardConfig, GuardEdit, GuardError, RuleCount, Scope},
    reconcile::Staged,
    vip_id::VipId,
};

impl Engine {
    /// The VIPs served with their numeric ids, as the guards' maps key them.
    fn guarded_vips(&self) -> Vec<(VipId, u32)> {
        self.balancer
            .vips()
            .iter()
            .map(|(id, vip)| (*id, vip.id))
            .collect()
    }

    /// Writes `next` as the guards in force for the VIPs served now.
    pub(super) fn apply_guard(&mut self, next: GuardConfig) -> Result<(), DataplaneError> {
        let vips = self.guarded_vips();
        let max_vips = self.dataplane.sizes().max_vips;
        self.guard
            .apply(self.dataplane.guard_mut(), next, &vips, max_vips)
    }

    /// Before a commit: `guards` (the guards to be in force after it) are
    /// written for the VIPs served now and those it adds, so a new VIP's
    /// first packet meets its rules and limits (a flow admitted before
    /// them would carry a verdict of none). A VIP the commit removes is
    /// still served until it is done: it keeps its own rules and limits
    /// meanwhile (`bridging`), not the fallback to the global ones a file
    /// without it gives. A new VIP that takes the numeric id of one the
    /// same commit removes is guarded right after the commit instead
    /// (`settle_guard`; the generation changes with its flags, so
    /// nothing admitted in between keeps its verdict).
    pub(super) fn guard_staged(&mut self, staged: &Staged, guards: &GuardConfig) {
        let leaving: Vec<VipId> = self
            .balancer
            .vips()
            .keys()
            .filter(|id| !staged.vips().contains_key(id))
            .copied()
            .collect();
        let guards = bridging(guards, self.guard.config(), &leaving);
        let mut vips = self.guarded_vips();
        for (id, vip) in staged.vips() {
            if !vips.iter().any(|(served, n)| served == id || *n == vip.id) {
                vips.push((*id, vip.id));
            }
        }
        let max_vips = self.dataplane.sizes().max_vips;
        // Written for the moment of the commit only: the guards meant to
        // be in force stay as they are until `settle_guard`.
        if let Err(error) = self
            .guard
            .bridge(self.dataplane.guard_mut(), &guards, &vips, max_vips)
        {
            warn!(%error, "writing the deny/allow lists and limits of the VIPs a change adds failed; they are written again after it");
        }
    }

    /// After a commit: `guards` in force for the VIPs served now (a new
    /// VIP gets its rules and limits, a removed one's go). They are the
    /// guards meant to be in force from now on, written or not: a failure
    /// is logged, and `retry_guard` (every housekeeping tick) or the next
    /// commit writes them (never the commit's bridge: it is not kept).
    pub(super) fn settle_guard(&mut self, guards: GuardConfig) {
        let vips = self.guarded_vips();
        let max_vips = self.dataplane.sizes().max_vips;
        if let Err(error) = self
            .guard
            .settle(self.dataplane.guard_mut(), guards, &vips, max_vips)
        {
            warn!(%error, "writing the deny/allow lists and limits for the VIPs served failed; they are written again every second until the maps take them");
        }
    }

    /// Writes the guards meant to be in force if a commit could not
    /// (`settle_guard`); nothing to do, and nothing written, otherwise.
    /// Called every housekeeping tick; only a success is logged (the
    /// failure was, once, by `settle_guard`).
    pub(crate) fn retry_guard(&mut self) {
        let vips = self.guarded_vips();
        if self.guard.is_settled(&vips) {
            return;
        }
        let max_vips = self.dataplane.sizes().max_vips;
        match self
            .guard
            .retry(self.dataplane.guard_mut(), &vips, max_vips)
        {
            Ok(true) => info!("the deny/allow lists and limits for the VIPs served are written"),
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(%error, "writing the deny/allow lists and limits failed again");
            }
        }
    }

    /// Answers a guard change: carried out (or, with `dry_run`, only
    /// checked), then the guards as they are (or would be).
    pub(crate) fn change_guard(&mut self, edit: &GuardEdit, dry_run: bool) -> Response {
        let mut next = self.guard.config().clone();
        let model = &self.model;
        if let Err(error) = next.apply_edit(edit, &|id| model.vips.contains_key(id)) {
            return guard_error(&error);
        }
        if dry_run {
            // The ids the change would give (a new rule in force is not
            // shown as out of force for want of an id).
            let vips = self.guarded_vips();
            let max_vips = self.dataplane.sizes().max_vips;
            let counts = self
                .guard
                .preview_counts(self.dataplane.guard(), &next, &vips, max_vips);
            let mut status = self.guard_status_of(&next, counts);
            status.dry_run = true;
            return Response::ok(status);
        }
        // Recorded for the next lbd first (see `running_state`): a rule
        // or limit a restart would undo is refused.
        let model = std::mem::take(&mut self.model);
        let recorded = self.record_running(&model, &next);
        self.model = model;
        if let Err(why) = recorded {
            warn!(error = %why, "guard change refused");
            return Response::error(500, code::INTERNAL, why);
        }
        if let Err(error) = self.apply_guard(next) {
            warn!(%error, "the data plane refused a guard change");
            self.follow_running();
            return Response::error(500, code::INTERNAL, error.to_string());
        }
        info!(?edit, "guards changed");
        Response::ok(self.guard_status())
    }

    /// Every rule and limit in force, with counts.
    pub(crate) fn guard_status(&self) -> GuardStatus {
        let counts = self.guard.counts(self.dataplane.guard());
        self.guard_status_of(self.guard.config(), counts)
    }

    /// `config`'s rules and limits, with `counts` (ids and counts of its
    /// rules in force).
    fn guard_status_of(
        &self,
        config: &GuardConfig,
        counts: Result<Vec<RuleCount>, DataplaneError>,
    ) -> GuardStatus {
        let counts_unread = counts.is_err();
        let counts = counts.unwrap_or_else(|error| {
            warn!(%error, "reading the ACL counters failed");
            Vec::new()
        });
        let rules = config
            .acl
            .iter()
            .map(|rule| {
                let count = counts.iter().find(|c| c.rule == *rule);
                AclRuleStatus {
                    scope: rule.scope,
                    action: rule.action,
                    source: rule.source,
                    id: count.and_then(|c| c.id),
                    packets: count.map_or(0, |c| c.packets),
                }
            })
            .collect();
        let limits = config
            .limits
            .iter()
            .map(|(scope, limits)| LimitStatus {
                scope: *scope,
                limits: *limits,
            })
            .collect();
        let counters = self.dataplane.counters().unwrap_or_else(|error| {
            warn!(%error, "reading the node counters failed");
            Vec::new()
        });
        let counter = |wanted: lb_common::stats::Counter| {
            counters
                .iter()
                .find(|(c, _)| *c == wanted)
                .map_or(0, |(_, n)| *n)
        };
        GuardStatus {
            dry_run: false,
            rules,
            limits,
            dropped: GuardDrops {
                denied: counter(lb_common::stats::Counter::DropAclDenied),
                not_allowed: counter(lb_common::stats::Counter::DropAclNotAllowed),
                rate_limited: counter(lb_common::stats::Counter::DropRateLimited),
            },
            counts_unread,
        }
    }
}

/// The guards for the moment of a commit: `next` (the guards after it),
/// but each VIP of `leaving` (served until the commit removes it) keeps
/// the rules and limits of its own it has in `running`, and the limits it
/// is held to now (the global ones of `running` if it has none of its
/// own; none if neither). Global rules are shared by every VIP: those of
/// `next` apply to it already.
fn bridging(next: &GuardConfig, running: &GuardConfig, leaving: &[VipId]) -> GuardConfig {
    let mut out = next.clone();
    for id in leaving {
        let scope = Scope::Vip(*id);
        out.acl.retain(|rule| rule.scope != scope);
        out.acl
            .extend(running.acl.iter().filter(|rule| rule.scope == scope));
        // `Limits::default()` limits nothing.
        let held = running.limits_of(id).copied().unwrap_or_default();
        out.limits.insert(scope, held);
    }
    out
}

/// The answer to a refused guard change.
fn guard_error(error: &GuardError) -> Response {
    let (status, code) = match error {
        GuardError::NoVip(_) | GuardError::NoRule(_) | GuardError::NoLimit(_) => {
            (404, code::NOT_FOUND)
        }
        GuardError::Invalid(_) => (400, code::BAD_REQUEST),
        GuardError::TooMany => (400, code::LIMIT_EXCEEDED),
    };
    Response::error(status, code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{maps::vip_guard, AclRule, Action, Limits, RateLimit};

    fn rule(scope: Scope, action: Action, source: &str) -> AclRule {
        AclRule {
            scope,
            action,
            source: source.parse().unwrap(),
        }
    }

    fn limits(per_s: u32) -> Limits {
        Limits {
            source: Some(RateLimit::new(per_s, None, "source").unwrap()),
            ..Limits::default()
        }
    }

    /// A reload removing VIP X: until the commit has removed it, X keeps
    /// its own allow list and limits (before, it was guarded by the
    /// file's global rules alone meanwhile); the other VIPs get the
    /// file's guards, and X's go with the commit (`settle_guard`).
    #[test]
    fn a_vip_being_removed_keeps_its_own_guards_until_the_commit() {
        let x: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let y: VipId = "198.18.0.101:80/tcp".parse().unwrap();
        let z: VipId = "198.18.0.102:80/tcp".parse().unwrap();
        let own_allow = rule(Scope::Vip(x), Action::Allow, "198.18.1.0/24");
        let mut running = GuardConfig::default();
        running.acl.insert(own_allow);
        running
            .acl
            .insert(rule(Scope::Global, Action::Deny, "198.18.66.0/24"));
        running.limits.insert(Scope::Vip(x), limits(5));
        running.limits.insert(Scope::Global, limits(50));
        let mut file = GuardConfig::default();
        file.acl
            .insert(rule(Scope::Global, Action::Deny, "198.18.67.0/24"));
        file.acl
            .insert(rule(Scope::Vip(y), Action::Deny, "198.18.68.0/24"));
        file.limits.insert(Scope::Global, limits(100));
        let bridged = bridging(&file, &running, &[x, z]);
        let before = vip_guard(&running, &x);
        let during = vip_guard(&bridged, &x);
        assert_eq!(during.acl, before.acl, "X's own allow list stays");
        assert_eq!(during.source, before.source, "X's own limits stay");
        assert!(bridged.acl.contains(&own_allow));
        // Z had no limits of its own: it stays held to the global ones
        // in force, not the file's.
        assert_eq!(
            vip_guard(&bridged, &z).source,
            vip_guard(&running, &z).source
        );
        // Every other VIP: the file's guards.
        assert_eq!(vip_guard(&bridged, &y), vip_guard(&file, &y));
        let mut rest = bridged.clone();
        rest.acl.remove(&own_allow);
        rest.limits.remove(&Scope::Vip(x));
        rest.limits.remove(&Scope::Vip(z));
        assert_eq!(rest, file, "nothing else of the running guards");
        // No VIP leaving: the file's guards as they are.
        assert_eq!(bridging(&file, &running, &[]), file);
    }
}
