//! VIPs and rules from text, shared by the tests of the maps' parts.

use crate::{
    guard::rules::{AclRule, Action, Scope},
    vip_id::VipId,
};

pub(super) fn vip(s: &str) -> VipId {
    s.parse().unwrap()
}

pub(super) fn rule(scope: Scope, action: Action, source: &str) -> AclRule {
    AclRule {
        scope,
        action,
        source: source.parse().unwrap(),
    }
}
