use super::*;
use crate::guard::rules::{
    fixtures::{rule, vip},
    Action, Limits, RateLimit,
};

#[test]
fn a_reload_names_every_runtime_change_it_undoes() {
    let file = GuardConfig {
        acl: [rule(Scope::Global, Action::Deny, "198.18.66.0/24")]
            .into_iter()
            .collect(),
        ..GuardConfig::default()
    };
    let mut running = file.clone();
    assert!(running.undone_by(&file).is_empty());
    running
        .remove_rule(&rule(Scope::Global, Action::Deny, "198.18.66.0/24"))
        .unwrap();
    running
        .add_rule(
            rule(Scope::Vip(vip()), Action::Allow, "198.18.1.0/24"),
            &|_| true,
        )
        .unwrap();
    let limits = Limits {
        source: Some(RateLimit::new(5, None, "source").unwrap()),
        ..Limits::default()
    };
    running
        .set_limits(Scope::Global, limits, &|_| true)
        .unwrap();
    let notes = running.undone_by(&file);
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes
        .iter()
        .any(|n| n.contains("198.18.1.0/24") && n.contains("removed")));
    assert!(notes
        .iter()
        .any(|n| n.contains("198.18.66.0/24") && n.contains("is back")));
    assert!(notes.iter().any(|n| n.contains("limits of global")));
}

#[test]
fn a_removed_vips_guards_are_named_in_the_removals_answer() {
    let mut guard = GuardConfig::default();
    guard
        .add_rule(rule(Scope::Global, Action::Deny, "198.18.66.0/24"), &|_| {
            true
        })
        .unwrap();
    assert_eq!(
        guard.kept_for_removed(&vip()),
        None,
        "a global rule is not the VIP's"
    );
    for source in ["198.18.1.0/24", "198.18.2.0/24"] {
        guard
            .add_rule(rule(Scope::Vip(vip()), Action::Deny, source), &|_| true)
            .unwrap();
    }
    let note = guard.kept_for_removed(&vip()).expect("named");
    assert!(
        note.contains(&format!("VIP {}: its 2 ACL rules stay", vip())),
        "{note}"
    );
    let limits = Limits {
        source: Some(RateLimit::new(5, None, "source").unwrap()),
        ..Limits::default()
    };
    guard
        .set_limits(Scope::Vip(vip()), limits, &|_| true)
        .unwrap();
    let note = guard.kept_for_removed(&vip()).expect("named");
    assert!(note.contains("its 2 ACL rules and limits stay"), "{note}");
}

#[test]
fn a_file_of_the_guards_leaves_out_those_of_vips_not_served() {
    let other = VipId { port: 81, ..vip() };
    let mut guard = GuardConfig::default();
    for r in [
        rule(Scope::Global, Action::Deny, "198.18.66.0/24"),
        rule(Scope::Vip(vip()), Action::Deny, "198.18.1.0/24"),
        rule(Scope::Vip(other), Action::Deny, "198.18.2.0/24"),
    ] {
        guard.add_rule(r, &|_| true).unwrap();
    }
    let limits = Limits {
        source: Some(RateLimit::new(5, None, "source").unwrap()),
        ..Limits::default()
    };
    guard
        .set_limits(Scope::Vip(other), limits, &|_| true)
        .unwrap();
    let (kept, notes) = guard.of_served(&|id| *id == vip());
    assert_eq!(kept.acl.len(), 2);
    assert!(kept.acl.iter().all(|r| r.scope != Scope::Vip(other)));
    assert!(kept.limits.is_empty());
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("198.18.2.0/24"), "{notes:?}");
    assert!(
        notes[1].contains(&format!("limits of {other}")),
        "{notes:?}"
    );
    assert_eq!(guard.of_served(&|_| true), (guard.clone(), Vec::new()));
}
