use lb_common::guard::ACL_F_DENY_VIP;

use super::*;
use crate::guard::{
    maps::fixtures::{rule, vip},
    rules::Limits,
};

#[test]
fn flags_follow_deny_wins_and_the_vips_allow_list_replaces_the_global_one() {
    let a = vip("198.18.0.100:80/tcp");
    let b = vip("198.18.0.101:80/tcp");
    let mut config = GuardConfig::default();
    assert_eq!(vip_guard(&config, &a), VipGuard::default());
    config
        .acl
        .insert(rule(Scope::Global, Action::Deny, "198.18.66.0/24"));
    config
        .acl
        .insert(rule(Scope::Global, Action::Allow, "198.18.0.0/15"));
    config
        .acl
        .insert(rule(Scope::Vip(a), Action::Allow, "198.18.1.0/24"));
    config
        .acl
        .insert(rule(Scope::Vip(b), Action::Deny, "198.18.1.9"));
    assert_eq!(
        vip_guard(&config, &a).acl,
        ACL_F_DENY_GLOBAL | ACL_F_ALLOW_VIP
    );
    assert_eq!(
        vip_guard(&config, &b).acl,
        ACL_F_DENY_VIP | ACL_F_DENY_GLOBAL | ACL_F_ALLOW_GLOBAL
    );
}

#[test]
fn limits_fill_rates_and_the_prefix_mask_of_the_vips_family() {
    let v6 = vip("[2001:2::100]:443/tcp");
    let mut config = GuardConfig::default();
    let limits = Limits {
        source: Some(RateLimit::new(5, Some(7), "source").unwrap()),
        prefix: Some(RateLimit::new(50, None, "prefix").unwrap()),
        prefix_v4: 24,
        prefix_v6: 48,
    };
    config.limits.insert(Scope::Global, limits);
    let guard = vip_guard(&config, &v6);
    assert_eq!((guard.source.per_s, guard.source.burst), (5, 7));
    assert_eq!((guard.prefix.per_s, guard.prefix.burst), (50, 50));
    assert_eq!(guard.prefix_mask, [u32::MAX, 0xffff_0000_u32.to_be(), 0, 0]);
    assert!(guard.limits());
}

#[test]
fn rule_keys_keep_scope_action_and_address_in_network_order() {
    let r = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
    assert_eq!(
        TrieKey::of(&r, ACL_SCOPE_GLOBAL),
        TrieKey::V4(
            56,
            [
                acl_scope(ACL_SCOPE_GLOBAL, false),
                u32::from_ne_bytes([198, 18, 66, 0])
            ]
        )
    );
    let r = rule(Scope::Global, Action::Allow, "2001:2::/32");
    let TrieKey::V6(len, data) = TrieKey::of(&r, 7) else {
        panic!("an IPv6 rule goes to the IPv6 trie");
    };
    assert_eq!(len, 64);
    assert_eq!(data[0], acl_scope(7, true));
    assert_eq!(data[1].to_ne_bytes(), [0x20, 0x01, 0, 2]);
    // Rules of VIPs not served are not in force.
    let a = vip("198.18.0.100:80/tcp");
    let mut config = GuardConfig::default();
    config
        .acl
        .insert(rule(Scope::Vip(a), Action::Deny, "198.18.66.0/24"));
    assert!(wanted(&config, &[]).is_empty());
    assert_eq!(wanted(&config, &[(a, 4)]).len(), 1);
}
