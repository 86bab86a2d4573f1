//! The pure rules for changing the guards: adding and removing rules,
//! setting and clearing limits, within the maps' caps (room kept for
//! removed VIPs' guards gives way first). Refused, nothing changes.

use lb_common::guard::ACL_RULES_MAX;

use super::{AclRule, GuardConfig, GuardError, Limits, Scope};
use crate::vip_id::VipId;

/// Rules the maps hold (rule id 0 is never used).
pub const ACL_RULES_MAX_USABLE: usize = ACL_RULES_MAX as usize - 1;

/// How many VIPs' limits are kept for VIPs removed (to guard them again if
/// they are added back) before a new scope's limits take their room
/// (`GuardConfig::set_limits`): as many as there can be rules.
pub(super) const KEPT_FOR_REMOVED_MAX: usize = ACL_RULES_MAX_USABLE;

/// One change of the guards (what `lbctl acl` and `lbctl limit` ask for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEdit {
    /// Adds a rule (no change if it is there).
    AddRule(AclRule),
    /// Removes a rule.
    RemoveRule(AclRule),
    /// Sets the limits of a scope.
    SetLimits(Scope, Limits),
    /// Removes the limits of a scope.
    ClearLimits(Scope),
}

impl GuardConfig {
    /// Carries out `edit` (`is_vip` says which VIPs exist); refused, it
    /// changes nothing.
    pub fn apply_edit(
        &mut self,
        edit: &GuardEdit,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<(), GuardError> {
        match edit {
            GuardEdit::AddRule(rule) => self.add_rule(*rule, is_vip).map(|_| ()),
            GuardEdit::RemoveRule(rule) => self.remove_rule(rule),
            GuardEdit::SetLimits(scope, limits) => self.set_limits(*scope, *limits, is_vip),
            GuardEdit::ClearLimits(scope) => self.clear_limits(*scope),
        }
    }

    /// Adds `rule` (`is_vip` says which VIPs exist). False if it was
    /// already there (nothing changes).
    ///
    /// At most `ACL_RULES_MAX_USABLE` rules are held, those kept for
    /// removed VIPs included, so a VIP added back always fits the maps
    /// with its rules. But kept rules never refuse a new one: at the cap,
    /// the rules and limits kept for VIPs not served are forgotten first
    /// (every removed VIP's, whole: a VIP coming back with part of its
    /// allow list would refuse sources it let by), and only rules in force
    /// can make the cap refuse. Dropping a VIP's guards at its removal
    /// instead would lose them for the remove-and-add-back that changes a
    /// VIP's mode; counting only rules in force would let a VIP added back
    /// bring more rules than the maps hold.
    pub fn add_rule(
        &mut self,
        rule: AclRule,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<bool, GuardError> {
        rule.check()?;
        check_scope(rule.scope, is_vip)?;
        if self.acl.contains(&rule) {
            return Ok(false);
        }
        if self.acl.len() >= ACL_RULES_MAX_USABLE {
            let in_force = self
                .acl
                .iter()
                .filter(|kept| in_force(&kept.scope, is_vip))
                .count();
            if in_force >= ACL_RULES_MAX_USABLE {
                return Err(GuardError::TooMany);
            }
            self.forget_removed(is_vip, "a new ACL rule needs the room of");
        }
        self.acl.insert(rule);
        Ok(true)
    }

    /// Forgets the rules and limits kept for VIPs not served (`is_vip`
    /// says which are), logging how many and why (`needs`), so that what
    /// is kept for removed VIPs never refuses a change to those served.
    fn forget_removed(&mut self, is_vip: &dyn Fn(&VipId) -> bool, needs: &str) {
        let (rules, limits) = (self.acl.len(), self.limits.len());
        self.acl.retain(|rule| in_force(&rule.scope, is_vip));
        self.limits.retain(|scope, _| in_force(scope, is_vip));
        tracing::info!(
            rules = rules - self.acl.len(),
            limits = limits - self.limits.len(),
            "{needs} the ACL rules and limits kept for removed VIPs: they are forgotten (they would have guarded those VIPs again if added back)"
        );
    }

    /// Removes `rule`.
    pub fn remove_rule(&mut self, rule: &AclRule) -> Result<(), GuardError> {
        if self.acl.remove(rule) {
            Ok(())
        } else {
            Err(GuardError::NoRule(rule.to_string()))
        }
    }

    /// Sets the limits of `scope`, replacing what it had.
    pub fn set_limits(
        &mut self,
        scope: Scope,
        limits: Limits,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<(), GuardError> {
        check_scope(scope, is_vip)?;
        limits.check()?;
        if let Some((key, why)) = limits.unused_prefix_length(&scope) {
            return Err(GuardError::Invalid(format!("{key}: {why}")));
        }
        if !self.limits.contains_key(&scope) {
            let kept = self
                .limits
                .keys()
                .filter(|kept| !in_force(kept, is_vip))
                .count();
            if kept >= KEPT_FOR_REMOVED_MAX {
                self.forget_removed(is_vip, "new limits need the room of");
            }
        }
        self.limits.insert(scope, limits);
        Ok(())
    }

    /// Removes the limits of `scope`.
    pub fn clear_limits(&mut self, scope: Scope) -> Result<(), GuardError> {
        self.limits
            .remove(&scope)
            .map(|_| ())
            .ok_or(GuardError::NoLimit(scope))
    }
}

/// Whether guards of `scope` are in force: global, or of a VIP served
/// (`is_vip`); those of a removed VIP are kept out of force.
pub(super) fn in_force(scope: &Scope, is_vip: &dyn Fn(&VipId) -> bool) -> bool {
    match scope {
        Scope::Global => true,
        Scope::Vip(id) => is_vip(id),
    }
}

/// A VIP scope must name a served VIP.
fn check_scope(scope: Scope, is_vip: &dyn Fn(&VipId) -> bool) -> Result<(), GuardError> {
    match scope {
        Scope::Vip(id) if !is_vip(&id) => Err(GuardError::NoVip(id)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
