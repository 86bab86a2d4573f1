use std::collections::BTreeSet;

use super::*;
use crate::guard::rules::{
    fixtures::{rule, vip},
    Action, RateLimit,
};

#[test]
fn a_rule_of_an_unknown_vip_is_refused_and_nothing_changes() {
    let mut guard = GuardConfig::default();
    let r = rule(Scope::Vip(vip()), Action::Deny, "198.18.66.0/24");
    assert_eq!(guard.add_rule(r, &|_| false), Err(GuardError::NoVip(vip())));
    assert!(guard.acl.is_empty());
    assert_eq!(guard.add_rule(r, &|v| *v == vip()), Ok(true));
    assert_eq!(guard.add_rule(r, &|v| *v == vip()), Ok(false));
    assert_eq!(guard.acl.len(), 1);
    let global = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
    assert!(matches!(
        guard.remove_rule(&global),
        Err(GuardError::NoRule(_))
    ));
    guard.remove_rule(&r).unwrap();
    assert!(guard.acl.is_empty());
}

#[test]
fn limits_are_checked_and_the_vips_own_replace_the_default() {
    let mut guard = GuardConfig::default();
    assert!(RateLimit::new(0, None, "source").is_err());
    assert!(RateLimit::new(10, Some(2_000_000), "source")
        .unwrap_err()
        .to_string()
        .contains("source burst: 2000000 is out of range 1..=1000000"));
    let rate = RateLimit::new(10, None, "source").unwrap();
    assert_eq!(rate.burst, 10);
    let source = Some(rate);
    let nothing = Limits::default();
    assert!(guard.set_limits(Scope::Global, nothing, &|_| true).is_err());
    let bad_len = Limits {
        source,
        prefix_v4: 33,
        ..Limits::default()
    };
    assert!(guard.set_limits(Scope::Global, bad_len, &|_| true).is_err());
    let global = Limits {
        source,
        ..Limits::default()
    };
    guard.set_limits(Scope::Global, global, &|_| true).unwrap();
    assert_eq!(guard.limits_of(&vip()), Some(&global));
    let own = Limits {
        prefix: source,
        ..Limits::default()
    };
    assert_eq!(
        guard.set_limits(Scope::Vip(vip()), own, &|_| false),
        Err(GuardError::NoVip(vip()))
    );
    guard.set_limits(Scope::Vip(vip()), own, &|_| true).unwrap();
    assert_eq!(guard.limits_of(&vip()), Some(&own));
    guard.clear_limits(Scope::Vip(vip())).unwrap();
    assert_eq!(
        guard.clear_limits(Scope::Vip(vip())),
        Err(GuardError::NoLimit(Scope::Vip(vip())))
    );
}

/// `count` distinct /24 prefixes.
fn prefixes(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|n| format!("10.{}.{}.0/24", n / 256, n % 256))
}

/// VIPs created and removed at run time, each with rules and limits of
/// its own: their rules are kept (to guard a VIP re-added at once) but
/// never exhaust the cap: a rule that needs their room takes it, and
/// the removed VIPs' rules and limits are forgotten, while rules of
/// VIPs served, and global ones, are never touched.
#[test]
fn rules_kept_for_removed_vips_give_way_to_a_new_rule_at_the_cap() {
    let gone = VipId { port: 81, ..vip() };
    let served = |id: &VipId| *id != gone;
    let mut guard = GuardConfig::default();
    let global = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
    guard.add_rule(global, &|_| true).unwrap();
    let own = rule(Scope::Vip(vip()), Action::Deny, "198.18.1.0/24");
    guard.add_rule(own, &|_| true).unwrap();
    for source in prefixes(ACL_RULES_MAX_USABLE - 2) {
        guard
            .add_rule(rule(Scope::Vip(gone), Action::Allow, &source), &|_| true)
            .unwrap();
    }
    let limits = Limits {
        source: Some(RateLimit::new(5, None, "source").unwrap()),
        ..Limits::default()
    };
    guard
        .set_limits(Scope::Vip(gone), limits, &|_| true)
        .unwrap();
    assert_eq!(guard.acl.len(), ACL_RULES_MAX_USABLE);
    let before = guard.clone();
    // While the VIP is served, its rules are in force: the cap holds.
    let new = rule(Scope::Vip(vip()), Action::Deny, "198.18.2.0/24");
    assert_eq!(guard.add_rule(new, &|_| true), Err(GuardError::TooMany));
    assert_eq!(guard, before, "nothing changed");
    // Removed, its rules give way.
    assert_eq!(guard.add_rule(new, &served), Ok(true));
    assert_eq!(
        guard.acl,
        BTreeSet::from([global, own, new]),
        "the removed VIP's rules are forgotten, no other"
    );
    assert!(guard.limits.is_empty(), "and its limits");
    // Below the cap they stay, to guard the VIP if it is added back.
    guard
        .add_rule(
            rule(Scope::Vip(gone), Action::Deny, "198.18.3.0/24"),
            &|_| true,
        )
        .unwrap();
    guard
        .add_rule(rule(Scope::Global, Action::Deny, "198.18.4.0/24"), &served)
        .unwrap();
    assert_eq!(guard.acl.len(), 5);
}

/// Limits kept for removed VIPs are bounded too: past as many as there
/// can be rules, a new scope's limits take their room.
#[test]
fn limits_kept_for_removed_vips_are_bounded() {
    let limits = Limits {
        source: Some(RateLimit::new(5, None, "source").unwrap()),
        ..Limits::default()
    };
    let vip_n = |n: usize| VipId {
        port: u16::try_from(n + 1).unwrap(),
        ..vip()
    };
    let mut guard = GuardConfig::default();
    for n in 0..KEPT_FOR_REMOVED_MAX {
        guard
            .set_limits(Scope::Vip(vip_n(n)), limits, &|_| true)
            .unwrap();
    }
    let last = vip_n(KEPT_FOR_REMOVED_MAX);
    // Only `last` is served now; the others were removed.
    guard
        .set_limits(Scope::Vip(last), limits, &|id| *id == last)
        .unwrap();
    assert_eq!(guard.limits.keys().collect::<Vec<_>>(), [&Scope::Vip(last)]);
}

#[test]
fn a_rule_matching_no_client_is_refused_at_run_time_as_in_the_file() {
    let mut guard = GuardConfig::default();
    for (scope, source, says) in [
        (
            Scope::Vip(vip()),
            "2001:2::/48",
            "no client of the VIP comes from it",
        ),
        (
            Scope::Global,
            "::ffff:198.18.0.0/120",
            "write the IPv4 prefix 198.18.0.0/24",
        ),
    ] {
        let error = guard
            .add_rule(rule(scope, Action::Allow, source), &|_| true)
            .unwrap_err();
        assert!(error.to_string().contains(says), "{error}");
    }
    assert_eq!(guard, GuardConfig::default(), "nothing changed");
    guard
        .add_rule(rule(Scope::Global, Action::Allow, "2001:2::/48"), &|_| true)
        .unwrap();
}

#[test]
fn a_prefix_length_that_does_nothing_is_refused_at_run_time_as_in_the_file() {
    let mut guard = GuardConfig::default();
    let source = Some(RateLimit::new(5, None, "source").unwrap());
    let prefix = Some(RateLimit::new(50, None, "prefix").unwrap());
    let without_rate = Limits {
        source,
        prefix_v4: 16,
        ..Limits::default()
    };
    let error = guard
        .set_limits(Scope::Global, without_rate, &|_| true)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("prefix_v4: needs prefix_rate"),
        "{error}"
    );
    let other_family = Limits {
        prefix,
        prefix_v6: 56,
        ..Limits::default()
    };
    let error = guard
        .set_limits(Scope::Vip(vip()), other_family, &|_| true)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("whose clients have no IPv6 prefix"),
        "{error}"
    );
    assert_eq!(guard, GuardConfig::default(), "nothing changed");
    // Globally both families' lengths apply; defaults are always let by.
    guard
        .set_limits(Scope::Global, other_family, &|_| true)
        .unwrap();
    let defaults = Limits {
        source,
        ..Limits::default()
    };
    guard
        .set_limits(Scope::Vip(vip()), defaults, &|_| true)
        .unwrap();
}
