use lb_common::{
    consts::FLOW_F_ACL_MARK,
    guard::{acl_scope, Rate, ACL_F_DENY_GLOBAL, ACL_SCOPE_GLOBAL},
};

use super::*;
use crate::guard::{
    maps::fixtures::{rule, vip},
    rules::{Action, Scope},
};

/// The installer's writes kept in memory, checked at each one: an
/// allow list in force (a guard's flag) has one of `allow_sets` whole
/// in the trie, else sources it allows are refused.
#[derive(Default)]
struct Recorder {
    tries: BTreeMap<TrieKey, u32>,
    guards: BTreeMap<u32, VipGuard>,
    allow_sets: Vec<BTreeSet<TrieKey>>,
    /// "guard allow" / "guard no allow" (VIP id 1's), "insert",
    /// "remove", in order.
    log: Vec<&'static str>,
    gaps: usize,
    /// By rule id: the (VIP id, generation) under which the data plane
    /// may have cached a verdict naming it (it was in a trie while
    /// that VIP's entry held lists and that generation).
    cacheable: BTreeMap<u32, BTreeSet<(u32, u32)>>,
    /// (VIP id, generation) written with an allow list in force.
    allowed_under: BTreeSet<(u32, u32)>,
    /// Ids cleared for a new rule while a verdict cached naming them
    /// still stood (its VIP's entry still of that generation).
    reused_cached: usize,
    /// Allow lists switched off with the generation unchanged and
    /// other lists on: a source cached as not allowed stays dropped.
    refusals_kept: usize,
}

impl Recorder {
    fn check(&mut self) {
        let global_allow = acl_scope(ACL_SCOPE_GLOBAL, true);
        let allow_rules: BTreeSet<TrieKey> = self
            .tries
            .keys()
            .filter(|k| matches!(k, TrieKey::V4(_, [scope, _]) if *scope == global_allow))
            .copied()
            .collect();
        let allowing = self
            .guards
            .values()
            .any(|g| g.acl & ACL_F_ALLOW_GLOBAL != 0);
        if allowing
            && !self
                .allow_sets
                .iter()
                .any(|set| allow_rules.is_superset(set))
        {
            self.gaps += 1;
        }
    }
}

impl GuardWrites for Recorder {
    fn clear_hits(&mut self, id: u32) -> Result<()> {
        let guards = &self.guards;
        let standing = self.cacheable.remove(&id).is_some_and(|cached| {
            cached.iter().any(|(n, generation)| {
                guards
                    .get(n)
                    .is_some_and(|g| g.acl != 0 && g.generation == *generation)
            })
        });
        if standing {
            self.reused_cached += 1;
        }
        Ok(())
    }

    fn insert(&mut self, key: &TrieKey, id: u32) -> Result<()> {
        self.tries.insert(*key, id);
        let under = self
            .guards
            .iter()
            .filter(|(_, g)| g.acl != 0)
            .map(|(n, g)| (*n, g.generation));
        self.cacheable.entry(id).or_default().extend(under);
        self.log.push("insert");
        self.check();
        Ok(())
    }

    fn remove(&mut self, key: &TrieKey) -> Result<()> {
        self.tries.remove(key);
        self.log.push("remove");
        self.check();
        Ok(())
    }

    fn set_guard(&mut self, n: u32, guard: VipGuard) -> Result<()> {
        self.guards.insert(n, guard);
        if guard.acl != 0 {
            for id in self.tries.values() {
                let cached = self.cacheable.entry(*id).or_default();
                cached.insert((n, guard.generation));
            }
        }
        let under = (n, guard.generation);
        if guard.acl & (ACL_F_ALLOW_GLOBAL | ACL_F_ALLOW_VIP) != 0 {
            self.allowed_under.insert(under);
        } else if guard.acl != 0 && self.allowed_under.contains(&under) {
            self.refusals_kept += 1;
        }
        if n == 1 {
            // The VIP served (the others' entries hold no lists).
            self.log.push(if guard.acl & ACL_F_ALLOW_GLOBAL != 0 {
                "guard allow"
            } else {
                "guard no allow"
            });
        }
        self.check();
        Ok(())
    }
}

/// An allow list replaced by another too large to sit beside it: the
/// old rules go before the new ones are in, so the allow list is
/// switched off meanwhile (every source passes, as with neither list
/// in force) rather than left on over a trie losing its rules (every
/// source refused). A small replacement never needs that.
#[test]
fn a_large_allow_list_is_replaced_with_the_allow_list_off_meanwhile() {
    let vips = [(vip("198.18.0.100:80/tcp"), 1)];
    let allow_set = |second: u8, count: u32| -> GuardConfig {
        GuardConfig {
            acl: (0..count)
                .map(|n| {
                    let net = format!("198.{second}.{}.{}/32", n / 256, n % 256);
                    rule(Scope::Global, Action::Allow, &net)
                })
                .collect(),
            ..GuardConfig::default()
        }
    };
    for count in [3000, 10] {
        let (old, new) = (allow_set(18, count), allow_set(19, count));
        let mut maps = Recorder {
            allow_sets: [&old, &new]
                .iter()
                .map(|c| wanted(c, &vips).into_keys().collect())
                .collect(),
            ..Recorder::default()
        };
        let mut installer = Installer::default();
        installer.apply_to(&mut maps, &old, &vips, 4).unwrap();
        maps.log.clear();
        installer.apply_to(&mut maps, &new, &vips, 4).unwrap();
        assert_eq!(
            maps.gaps, 0,
            "{count} rules: an allow list in force without its rules"
        );
        assert_eq!(
            maps.tries.keys().copied().collect::<BTreeSet<_>>(),
            maps.allow_sets[1],
            "{count} rules: exactly the new set in force"
        );
        assert_eq!(maps.guards[&1].acl, ACL_F_ALLOW_GLOBAL, "{count} rules");
        let first = |what: &str| maps.log.iter().position(|w| *w == what);
        if count == 3000 {
            let off = first("guard no allow").expect("the allow list switched off");
            let out = first("remove").expect("old rules out");
            let on = first("insert").expect("new rules in");
            assert!(off < out && out < on, "{:?}", &maps.log[..5]);
        } else {
            assert_eq!(first("guard no allow"), None);
        }
    }
}

/// A swap too large to make side by side (the old rules out first)
/// moves the generation on with the allow lists off, and again once
/// the old rules are out, before a new rule takes a freed id. Before,
/// the allow lists went off under the generation in force (a source
/// cached as not allowed stayed dropped while the deny lists kept the
/// cache in use) and new rules took the old ones' ids under it: a
/// verdict cached naming an old rule (a source it denied) still stood,
/// its hits counted on the new rule, for good.
#[test]
fn a_swap_takes_no_id_a_standing_cached_verdict_names() {
    let vips = [(vip("198.18.0.100:80/tcp"), 1)];
    let set = |action: Action, second: u8| -> BTreeSet<AclRule> {
        (0..3000u32)
            .map(|n| {
                let net = format!("198.{second}.{}.{}/32", n / 256, n % 256);
                rule(Scope::Global, action, &net)
            })
            .collect()
    };
    // A deny list that stays (the cache in use with the allow list
    // off) and an allow list swapped; a deny list swapped.
    let kept = rule(Scope::Global, Action::Deny, "198.20.0.0/24");
    let allow = |second| GuardConfig {
        acl: set(Action::Allow, second)
            .into_iter()
            .chain([kept])
            .collect(),
        ..GuardConfig::default()
    };
    let deny = |second| GuardConfig {
        acl: set(Action::Deny, second),
        ..GuardConfig::default()
    };
    for (what, old, new) in [
        ("allow", allow(18), allow(19)),
        ("deny", deny(18), deny(19)),
    ] {
        let mut maps = Recorder::default();
        let mut installer = Installer::default();
        installer.apply_to(&mut maps, &old, &vips, 4).unwrap();
        let before = installer.installed.clone();
        let old_ids: BTreeSet<u32> = before.values().copied().collect();
        installer.apply_to(&mut maps, &new, &vips, 4).unwrap();
        assert_eq!(
            maps.reused_cached, 0,
            "{what}: an id reused under its verdicts"
        );
        assert_eq!(maps.refusals_kept, 0, "{what}: cached refusals kept");
        let reused = installer
            .installed
            .iter()
            .filter(|(key, id)| !before.contains_key(key) && old_ids.contains(id))
            .count();
        assert!(
            reused > 0,
            "{what}: the swap reuses ids (or it tests nothing)"
        );
        assert_eq!(installer.installed.len(), new.acl.len(), "{what}");
    }
}

/// A dry run of a change that swaps the whole rule set logs nothing
/// (before, it logged that the old rules go first and the allow lists
/// are off meanwhile, as if it were happening); the change itself does.
#[test]
fn a_preview_logs_nothing_of_the_swap_it_would_make() {
    let vips = [(vip("198.18.0.100:80/tcp"), 1)];
    let allow_set = |second: u8| -> GuardConfig {
        GuardConfig {
            acl: (0..3000u32)
                .map(|n| {
                    let net = format!("198.{second}.{}.{}/32", n / 256, n % 256);
                    rule(Scope::Global, Action::Allow, &net)
                })
                .collect(),
            ..GuardConfig::default()
        }
    };
    let (old, new) = (allow_set(18), allow_set(19));
    let mut maps = Recorder::default();
    let mut installer = Installer::default();
    installer.apply_to(&mut maps, &old, &vips, 4).unwrap();
    let previewed = crate::test_logs::logs_of(|| {
        installer.preview(&new, &vips, 4).unwrap();
    });
    assert!(!previewed.contains("old rules go first"), "{previewed}");
    let applied =
        crate::test_logs::logs_of(|| installer.apply_to(&mut maps, &new, &vips, 4).unwrap());
    assert!(applied.contains("old rules go first"), "{applied}");
}

/// A dry run shows the ids a change would give: a new rule in force
/// (global, or of a VIP served) gets one, rules that stay keep theirs,
/// a rule of a VIP not served has none; nothing is written.
#[test]
fn a_preview_gives_new_rules_in_force_the_id_they_would_get() {
    let a = vip("198.18.0.100:80/tcp");
    let gone = vip("198.18.0.101:80/tcp");
    let vips = [(a, 1)];
    let old = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
    let mut config = GuardConfig::default();
    config.acl.insert(old);
    let mut maps = Recorder::default();
    let mut installer = Installer::default();
    installer.apply_to(&mut maps, &config, &vips, 4).unwrap();
    let old_id = installer.rules[&old];
    let global = rule(Scope::Global, Action::Deny, "198.18.67.0/24");
    let own = rule(Scope::Vip(a), Action::Allow, "198.18.1.0/24");
    let idle = rule(Scope::Vip(gone), Action::Deny, "198.18.68.0/24");
    let mut next = config.clone();
    next.acl.extend([global, own, idle]);
    let (installed, log) = (installer.installed.clone(), maps.log.len());
    let ids = installer.preview(&next, &vips, 4).unwrap();
    assert_eq!(ids.get(&old), Some(&old_id), "a rule that stays");
    let new_ids: BTreeSet<u32> = [global, own].iter().map(|r| ids[r]).collect();
    assert_eq!(new_ids.len(), 2, "{ids:?}");
    assert!(!new_ids.contains(&old_id), "{ids:?}");
    assert_eq!(ids.get(&idle), None, "its VIP is not served");
    assert_eq!(installer.installed, installed, "the installer unchanged");
    assert_eq!(maps.log.len(), log, "nothing written");
    // What apply then gives is what the preview showed.
    installer.apply_to(&mut maps, &next, &vips, 4).unwrap();
    assert_eq!(installer.rules, ids);
}

/// `VIP_GUARDS` made afresh (a layout change) under an adopted
/// connection table whose flows a previous lbd marked: the first
/// install's generation carries none of their marks. Before, it
/// counted from 0: its first generation, 1, was the mark of every flow
/// a previous lbd at generation 1 admitted, and those flows skipped the
/// new deny list until the next rule change.
#[test]
fn fresh_guards_over_adopted_flows_take_a_generation_no_flow_is_marked_with() {
    use lb_common::{consts::FLOW_F_FIN, guard::acl_mark};
    let vips = [(vip("198.18.0.100:80/tcp"), 1)];
    let mut config = GuardConfig::default();
    config
        .acl
        .insert(rule(Scope::Global, Action::Deny, "198.18.66.0/24"));
    for marked in [vec![1], vec![7], vec![1, 7], vec![3, 0x00ff_ffff, 1, 2]] {
        let flags: Vec<u32> = marked
            .iter()
            .flat_map(|g| [acl_mark(*g), acl_mark(*g) | FLOW_F_FIN])
            .chain([0, FLOW_F_FIN])
            .collect();
        // What `adopt` reads from fresh maps.
        let mut installer = Installer::default();
        installer.clear_of_marks(flags.iter().copied());
        let mut maps = Recorder::default();
        // The first install, then rule changes (a previous lbd at a
        // later generation is caught up with later, not at once).
        let mut more = config.clone();
        more.acl
            .insert(rule(Scope::Global, Action::Deny, "198.18.67.0/24"));
        for (change, next) in [&config, &more].into_iter().cycle().take(8).enumerate() {
            installer.apply_to(&mut maps, next, &vips, 4).unwrap();
            for (n, guard) in &maps.guards {
                let mark = acl_mark(guard.generation) & FLOW_F_ACL_MARK;
                assert_ne!(mark, 0, "{marked:?}: VIP id {n}");
                assert!(
                    flags.iter().all(|f| f & FLOW_F_ACL_MARK != mark),
                    "{marked:?}, change {change}: VIP id {n} under generation {}, an adopted flow's mark",
                    guard.generation
                );
            }
        }
    }
}

#[test]
fn a_vip_whose_lists_change_moves_the_generation_on() {
    let guard = |acl| VipGuard {
        acl,
        generation: 7,
        ..VipGuard::default()
    };
    let mut installer = Installer {
        generation: 7,
        ..Installer::default()
    };
    // Nothing written yet: whatever the maps hold is not known.
    let served: BTreeMap<u32, VipGuard> = [(1, guard(ACL_F_DENY_GLOBAL))].into();
    assert!(installer.lists_change(&served));
    installer.guards = Some(served.clone());
    assert!(!installer.lists_change(&served), "the same flags");
    // A new VIP id under the global deny list: its flows admitted
    // before it had flags must be looked at again.
    let mut more = served.clone();
    more.insert(2, guard(ACL_F_DENY_GLOBAL));
    assert!(installer.lists_change(&more));
    // Limits alone change no verdict.
    let mut limited = served.clone();
    limited.insert(
        1,
        VipGuard {
            source: Rate { per_s: 5, burst: 5 },
            ..guard(ACL_F_DENY_GLOBAL)
        },
    );
    assert!(!installer.lists_change(&limited));
    // A VIP gone takes its flags with it.
    assert!(installer.lists_change(&BTreeMap::new()));
}
