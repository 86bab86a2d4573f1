//! A `GuardConfig` as the data plane reads it: the trie key of each rule
//! in force and each VIP's `VIP_GUARDS` entry. Pure values, apart from
//! the maps that hold them and the installer that orders their writes.

use std::{collections::BTreeMap, net::IpAddr};

use lb_common::guard::{
    acl_scope, prefix_mask, AclData4, AclData6, Rate, VipGuard, ACL_F_ALLOW_GLOBAL,
    ACL_F_ALLOW_VIP, ACL_F_DENY_GLOBAL, ACL_F_DENY_VIP, ACL_SCOPE_GLOBAL,
};

use crate::{
    guard::rules::{AclRule, Action, GuardConfig, RateLimit, Scope},
    vip_id::VipId,
};

/// A rule as the tries key it: family, prefix length, data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::guard) enum TrieKey {
    /// `ACL_V4`.
    V4(u32, AclData4),
    /// `ACL_V6`.
    V6(u32, AclData6),
}

impl TrieKey {
    /// The key of `rule` for the VIP with numeric id `scope_id` (or
    /// `ACL_SCOPE_GLOBAL`).
    fn of(rule: &AclRule, scope_id: u32) -> Self {
        let scope = acl_scope(scope_id, rule.action == Action::Allow);
        let len = u32::from(rule.source.len) + 32;
        match rule.source.address {
            IpAddr::V4(a) => Self::V4(len, [scope, u32::from_ne_bytes(a.octets())]),
            IpAddr::V6(a) => {
                let o = a.octets();
                let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                Self::V6(len, [scope, w(0), w(4), w(8), w(12)])
            }
        }
    }
}

/// The rules of `config` in force for the VIPs served, by trie key.
pub(super) fn wanted(config: &GuardConfig, vips: &[(VipId, u32)]) -> BTreeMap<TrieKey, AclRule> {
    let ids: BTreeMap<VipId, u32> = vips.iter().copied().collect();
    config
        .acl
        .iter()
        .filter_map(|rule| {
            let scope = match rule.scope {
                Scope::Global => ACL_SCOPE_GLOBAL,
                Scope::Vip(id) => *ids.get(&id)?,
            };
            Some((TrieKey::of(rule, scope), *rule))
        })
        .collect()
}

/// What guards VIP `id`, as the data plane reads it.
pub fn vip_guard(config: &GuardConfig, id: &VipId) -> VipGuard {
    let has = |scope: Scope, action: Action| {
        config
            .acl
            .iter()
            .any(|r| r.scope == scope && r.action == action)
    };
    let mut acl = 0;
    if has(Scope::Vip(*id), Action::Deny) {
        acl |= ACL_F_DENY_VIP;
    }
    if has(Scope::Global, Action::Deny) {
        acl |= ACL_F_DENY_GLOBAL;
    }
    if has(Scope::Vip(*id), Action::Allow) {
        acl |= ACL_F_ALLOW_VIP;
    } else if has(Scope::Global, Action::Allow) {
        acl |= ACL_F_ALLOW_GLOBAL;
    }
    let rate = |limit: Option<RateLimit>| {
        limit.map_or(Rate::default(), |l| Rate {
            per_s: u64::from(l.per_s),
            burst: u64::from(l.burst),
        })
    };
    let mut guard = VipGuard {
        acl,
        ..VipGuard::default()
    };
    if let Some(limits) = config.limits_of(id) {
        let (len, words) = if id.address.is_ipv4() {
            (limits.prefix_v4, 1)
        } else {
            (limits.prefix_v6, 4)
        };
        guard.source = rate(limits.source);
        guard.prefix = rate(limits.prefix);
        guard.prefix_mask = prefix_mask(u32::from(len), words);
    }
    guard
}

#[cfg(test)]
mod tests;
