//! Why a guard change is refused: every pure rule of change answers with
//! one of these, naming what is wrong, and leaves the guards unchanged.

use super::{Scope, ACL_RULES_MAX_USABLE};
use crate::vip_id::VipId;

/// Why a guard change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A value is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The rule names a VIP lbd does not serve.
    #[error("no VIP {0}: a rule or limit of a VIP needs the VIP")]
    NoVip(VipId),
    /// The rule to remove is not there.
    #[error("no such rule: {0}")]
    NoRule(String),
    /// The limit to remove is not there.
    #[error("no limit is set for {0}")]
    NoLimit(Scope),
    /// Too many rules for the maps.
    #[error("at most {ACL_RULES_MAX_USABLE} ACL rules")]
    TooMany,
}
