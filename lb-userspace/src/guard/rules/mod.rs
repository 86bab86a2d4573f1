//! The guards lbd should have in force, as a plain value: deny and allow
//! rules (global or per VIP) and limits of new flows (a default for every
//! VIP, or per VIP). Pure rules for changing it (`add_rule`,
//! `remove_rule`, `set_limits`, `clear_limits`), each refusing bad input
//! with a message naming what is wrong and leaving the value unchanged.
//! Semantics: `lb_common::guard`.

mod acl_rule;
mod changes;
mod cidr;
mod error;
#[cfg(test)]
mod fixtures;
mod limits;
mod notes;

pub use acl_rule::{AclRule, Action, Scope};
pub use changes::{GuardEdit, ACL_RULES_MAX_USABLE};
pub use cidr::{network, Cidr};
pub use error::GuardError;
pub use limits::{Limits, RateLimit, DEFAULT_PREFIX_V4, DEFAULT_PREFIX_V6};

use std::collections::{BTreeMap, BTreeSet};

use crate::vip_id::VipId;

/// Every guard lbd should have in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Deny and allow rules.
    pub acl: BTreeSet<AclRule>,
    /// Limits by scope (`Global`: every VIP without its own).
    pub limits: BTreeMap<Scope, Limits>,
}

impl GuardConfig {
    /// The limits in force for VIP `id`: its own, else the global ones.
    pub fn limits_of(&self, id: &VipId) -> Option<&Limits> {
        self.limits
            .get(&Scope::Vip(*id))
            .or_else(|| self.limits.get(&Scope::Global))
    }
}
