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
    guard::{GuardConfig, GuardEdit, GuardError},
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

    /// Before a commit: the guards of the VIPs it adds are written while
    /// the VIPs served now keep theirs, so a new VIP's first packet meets
    /// its rules and limits (a flow admitted before them would carry a
    /// verdict of none). A new VIP that takes the numeric id of one the
    /// same commit removes is guarded right after the commit instead
    /// (`refresh_guard`; the generation changes with its flags, so
    /// nothing admitted in between keeps its verdict).
    pub(super) fn guard_staged(&mut self, staged: &Staged, guards: GuardConfig) {
        let mut vips = self.guarded_vips();
        for (id, vip) in staged.vips() {
            if !vips.iter().any(|(served, n)| served == id || *n == vip.id) {
                vips.push((*id, vip.id));
            }
        }
        let max_vips = self.dataplane.sizes().max_vips;
        if let Err(error) = self
            .guard
            .apply(self.dataplane.guard_mut(), guards, &vips, max_vips)
        {
            warn!(%error, "writing the deny/allow lists and limits of the VIPs a change adds failed; they are written again after it");
        }
    }

    /// After a commit: the guards follow the VIPs (a new VIP gets its
    /// rules and limits, a removed one's go). A failure is logged; the
    /// next commit tries again.
    pub(super) fn refresh_guard(&mut self) {
        let config = self.guard.config().clone();
        if let Err(error) = self.apply_guard(config) {
            warn!(%error, "writing the deny/allow lists and limits for the VIPs served failed");
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
            let mut status = self.guard_status_of(&next);
            status.dry_run = true;
            return Response::ok(status);
        }
        if let Err(error) = self.apply_guard(next) {
            warn!(%error, "the data plane refused a guard change");
            return Response::error(500, code::INTERNAL, error.to_string());
        }
        info!(?edit, "guards changed");
        Response::ok(self.guard_status_of(self.guard.config()))
    }

    /// Every rule and limit in force, with counts.
    pub(crate) fn guard_status(&self) -> GuardStatus {
        self.guard_status_of(self.guard.config())
    }

    /// `config`'s rules and limits, with the counts of the rules in force.
    fn guard_status_of(&self, config: &GuardConfig) -> GuardStatus {
        let counts = self
            .guard
            .counts(self.dataplane.guard())
            .unwrap_or_else(|error| {
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
        }
    }
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
