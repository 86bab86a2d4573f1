//! A VIP and rules from text, shared by the tests of the rules' parts.

use super::{AclRule, Action, Scope};
use crate::vip_id::VipId;

pub(super) fn vip() -> VipId {
    "198.18.0.100:80/tcp".parse().unwrap()
}

pub(super) fn rule(scope: Scope, action: Action, source: &str) -> AclRule {
    AclRule {
        scope,
        action,
        source: source.parse().unwrap(),
    }
}
