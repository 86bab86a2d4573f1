//! The installer: what it last wrote to the guards' maps, and the ordered
//! write plan that brings them to a `GuardConfig` (only what changed, new
//! rules before the flags that use them, flags cleared before the rules
//! they used go, under generations that outdate cached verdicts).

mod counts;
mod marks;

pub use counts::RuleCount;

use std::collections::{BTreeMap, BTreeSet};

use lb_common::{
    consts::names,
    guard::{next_generation, VipGuard, ACL_F_ALLOW_GLOBAL, ACL_F_ALLOW_VIP, ACL_RULES_MAX},
};

use super::{
    entries::{vip_guard, wanted},
    writes::Unwritten,
    GuardMaps, GuardWrites, Result, TrieKey,
};
use crate::{
    dataplane::{map_error, DataplaneError},
    guard::rules::{AclRule, GuardConfig, ACL_RULES_MAX_USABLE},
    vip_id::VipId,
};

/// What the installer last wrote.
#[derive(Debug, Default, Clone)]
pub struct Installer {
    /// Rules in the tries, with their ids.
    installed: BTreeMap<TrieKey, u32>,
    /// The rule each installed key stands for (rules read back from pinned
    /// maps are not known until the first apply names them).
    rules: BTreeMap<AclRule, u32>,
    /// `VIP_GUARDS` as written, by VIP id (None: never written, e.g.
    /// before the first apply).
    guards: Option<BTreeMap<u32, VipGuard>>,
    /// The tries' generation last written (`VipGuard::generation`):
    /// bumped when rules go in and again when rules go out, so no verdict
    /// the data plane cached while the tries changed outlives the change.
    generation: u32,
    /// Ids of rules taken out of the tries since the generation last
    /// moved on in every entry (`move_on`): verdicts cached under the
    /// generation in force may still name them (the data plane counts a
    /// cached verdict's hits on its rule's id), so none is given to a new
    /// rule before the next `move_on`, or its counter would take the old
    /// rule's hits and the old rule's verdicts would stand meanwhile.
    freed: BTreeSet<u32>,
}

impl Installer {
    /// Reads back what the maps hold (a previous lbd's rules, pinned) and
    /// the generation they were written under (this lbd's go on from it).
    pub fn adopt(maps: &GuardMaps) -> Result<Self> {
        let mut generation = 0;
        for n in 0..maps.guards.len() {
            let guard = maps
                .guards
                .get(&n, 0)
                .map_err(|e| map_error("reading", names::MAP_VIP_GUARDS, e))?;
            generation = generation.max(guard.generation);
        }
        Ok(Self {
            installed: maps.installed()?,
            generation,
            ..Self::default()
        })
    }

    /// Writes `served` (with the current generation) where `VIP_GUARDS`
    /// differs from what was written (everything, the first time).
    fn write_guards(
        &mut self,
        maps: &mut dyn GuardWrites,
        served: &BTreeMap<u32, VipGuard>,
        max_vips: u32,
    ) -> Result<()> {
        let before = self.guards.take();
        let mut written = BTreeMap::new();
        for n in 0..max_vips {
            let mut guard = served.get(&n).copied().unwrap_or_default();
            // In every entry, lists or not: the next lbd adopts the
            // largest, so its generations never repeat one that flow
            // entries' ACL marks may still carry.
            guard.generation = self.generation;
            let old = before
                .as_ref()
                .map(|b| b.get(&n).copied().unwrap_or_default());
            if old != Some(guard) {
                maps.set_guard(n, guard)?;
            }
            if guard != VipGuard::default() {
                written.insert(n, guard);
            }
        }
        self.guards = Some(written);
        Ok(())
    }

    /// Whether `served` changes which lists apply to some VIP id: a flow
    /// admitted under the old flags (none, for a VIP id just taken into
    /// service) must not keep that verdict, so the generation moves on
    /// even when the tries stay as they are.
    fn lists_change(&self, served: &BTreeMap<u32, VipGuard>) -> bool {
        let Some(before) = &self.guards else {
            return true;
        };
        let acl = |map: &BTreeMap<u32, VipGuard>, n: &u32| map.get(n).map_or(0, |g| g.acl);
        before
            .keys()
            .chain(served.keys())
            .any(|n| acl(before, n) != acl(served, n))
    }

    /// The next generation (never 0, an empty cache slot's, nor one whose
    /// ACL mark is 0, an unmarked flow entry's).
    fn bump(&mut self) {
        self.generation = next_generation(self.generation);
    }

    /// Writes `served` under the next generation: no verdict cached before
    /// stands once it is written, so the ids freed before are free to
    /// take.
    fn move_on(
        &mut self,
        maps: &mut dyn GuardWrites,
        served: &BTreeMap<u32, VipGuard>,
        max_vips: u32,
    ) -> Result<()> {
        self.bump();
        self.write_guards(maps, served, max_vips)?;
        self.freed.clear();
        Ok(())
    }

    /// Takes `stale` out of the tries; their ids are `freed`.
    fn take_out(&mut self, maps: &mut dyn GuardWrites, stale: &[TrieKey]) -> Result<()> {
        for key in stale {
            maps.remove(key)?;
            if let Some(id) = self.installed.remove(key) {
                self.freed.insert(id);
            }
        }
        Ok(())
    }

    /// Brings the maps to `config` for the VIPs served (`vips`: identity
    /// and numeric id; `max_vips`: entries of `VIP_GUARDS`).
    pub fn apply(
        &mut self,
        maps: &mut GuardMaps,
        config: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<()> {
        self.apply_to(maps, config, vips, max_vips)
    }

    /// [`Self::apply`], through `maps`' writes.
    pub(in crate::guard) fn apply_to(
        &mut self,
        maps: &mut dyn GuardWrites,
        config: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<()> {
        let wanted = wanted(config, vips);
        let served: BTreeMap<u32, VipGuard> = vips
            .iter()
            .map(|(id, n)| (*n, vip_guard(config, id)))
            .collect();
        let new = wanted
            .keys()
            .filter(|k| !self.installed.contains_key(k))
            .count();
        let room = ACL_RULES_MAX_USABLE;
        if self.installed.len() + self.freed.len() + new > room {
            // The old and the new rules do not fit side by side: the old
            // go first, so for a moment neither those nor the new ones
            // are in force (rather than a change that can never succeed).
            // An allow list in force with its rules going out would refuse
            // every source it has not cached a verdict for: the allow
            // lists are switched off first (the new guards without them),
            // and on again with the new rules below. Under a new
            // generation, and another once the old rules are out (before
            // their ids go to new ones): a verdict cached before would
            // otherwise stand (a source refused by the allow list, or
            // denied by an old rule, still dropped) and count its hits on
            // the new rule that takes its id.
            let stale: Vec<TrieKey> = self
                .installed
                .keys()
                .filter(|k| !wanted.contains_key(k))
                .copied()
                .collect();
            if maps.written() {
                tracing::info!(
                    old = stale.len(),
                    new,
                    "the deny/allow lists cannot hold the old and the new rules at once: the old rules go first, the allow lists off meanwhile"
                );
            }
            let open: BTreeMap<u32, VipGuard> = served
                .iter()
                .map(|(n, guard)| {
                    let acl = guard.acl & !(ACL_F_ALLOW_GLOBAL | ACL_F_ALLOW_VIP);
                    (*n, VipGuard { acl, ..*guard })
                })
                .collect();
            self.move_on(maps, &open, max_vips)?;
            self.take_out(maps, &stale)?;
            if !self.freed.is_empty() {
                self.move_on(maps, &open, max_vips)?;
            }
        }
        // Ids freed under the generation in force are not taken (`freed`).
        let mut used: BTreeSet<u32> = self
            .installed
            .values()
            .chain(&self.freed)
            .copied()
            .collect();
        let mut next_free = 1u32;
        let mut rules = BTreeMap::new();
        let mut added = false;
        for (key, rule) in &wanted {
            let id = match self.installed.get(key) {
                Some(id) => *id,
                None => {
                    while used.contains(&next_free) {
                        next_free += 1;
                    }
                    if next_free >= ACL_RULES_MAX {
                        return Err(DataplaneError::OutOfRange {
                            what: "ACL rule id",
                            id: next_free,
                            capacity: ACL_RULES_MAX,
                        });
                    }
                    used.insert(next_free);
                    maps.clear_hits(next_free)?;
                    maps.insert(key, next_free)?;
                    // Recorded at once: if a later write fails, the next
                    // apply knows to take this one out again.
                    self.installed.insert(*key, next_free);
                    added = true;
                    next_free
                }
            };
            rules.insert(*rule, id);
        }
        let stale: Vec<TrieKey> = self
            .installed
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        if added || self.generation == 0 || self.lists_change(&served) {
            self.move_on(maps, &served, max_vips)?;
        } else {
            self.write_guards(maps, &served, max_vips)?;
        }
        self.take_out(maps, &stale)?;
        if !self.freed.is_empty() {
            // Verdicts cached while the rules went out are stale too.
            self.move_on(maps, &served, max_vips)?;
        }
        self.rules = rules;
        Ok(())
    }

    /// The id each rule of `config` would have if `apply` put it in force
    /// for `vips` now, computed on a copy and written nowhere: a dry run's
    /// view (a new rule in force shows the id it would get, not "not in
    /// force"). Rules of VIPs not served have none.
    pub fn preview(
        &self,
        config: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<BTreeMap<AclRule, u32>> {
        let mut copy = self.clone();
        copy.apply_to(&mut Unwritten, config, vips, max_vips)?;
        Ok(copy.rules)
    }

    /// Rule `rule`'s id in the maps (None: not in force).
    pub(in crate::guard) fn id_of(&self, rule: &AclRule) -> Option<u32> {
        self.rules.get(rule).copied()
    }
}

#[cfg(test)]
mod tests;
