//! The guards' maps as lbd sees them (`VIP_GUARDS`, the two ACL tries,
//! the per-rule hit counters) and the installer that brings them to a
//! `GuardConfig`: only what changed is written, in an order that never
//! opens a gap (new rules before the flags that use them, flags cleared
//! before the rules they used go). A rule keeps its id (and its counter)
//! while it stays, also across a hitless restart (the maps are pinned and
//! read back at start).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use lb_common::{
    consts::{names, FLOW_F_ACL_MARK},
    guard::{
        acl_scope, next_generation, prefix_mask, AclData4, AclData6, Rate, VipGuard,
        ACL_F_ALLOW_GLOBAL, ACL_F_ALLOW_VIP, ACL_F_DENY_GLOBAL, ACL_F_DENY_VIP, ACL_RULES_MAX,
        ACL_SCOPE_GLOBAL,
    },
};

use super::rules::{AclRule, Action, GuardConfig, RateLimit, Scope};
use crate::{
    dataplane::{map_error, take_map, DataplaneError},
    vip_id::VipId,
};

type Result<T> = std::result::Result<T, DataplaneError>;

/// A rule as the tries key it: family, prefix length, data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TrieKey {
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

/// Typed handles on the guards' maps.
pub struct GuardMaps {
    guards: Array<MapData, VipGuard>,
    v4: LpmTrie<MapData, AclData4, u32>,
    v6: LpmTrie<MapData, AclData6, u32>,
    hits: PerCpuArray<MapData, u64>,
}

impl GuardMaps {
    /// The guards' maps of a freshly loaded object.
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            guards: take_map(ebpf, names::MAP_VIP_GUARDS)?,
            v4: take_map(ebpf, names::MAP_ACL_V4)?,
            v6: take_map(ebpf, names::MAP_ACL_V6)?,
            hits: take_map(ebpf, names::MAP_ACL_HITS)?,
        })
    }

    /// Packets rule `id` matched, summed over the CPUs.
    fn hits(&self, id: u32) -> Result<u64> {
        let values = self
            .hits
            .get(&id, 0)
            .map_err(|e| map_error("reading", names::MAP_ACL_HITS, e))?;
        Ok(values.iter().sum())
    }

    fn zero_hits(&mut self, id: u32) -> Result<()> {
        let zero = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .and_then(|cpus| PerCpuValues::try_from(vec![0u64; cpus]))
            .map_err(|e| map_error("zeroing", names::MAP_ACL_HITS, MapError::IoError(e)))?;
        self.hits
            .set(id, zero, 0)
            .map_err(|e| map_error("zeroing", names::MAP_ACL_HITS, e))
    }

    fn insert_rule(&mut self, key: &TrieKey, id: u32) -> Result<()> {
        match key {
            TrieKey::V4(len, data) => self.v4.insert(&Key::new(*len, *data), id, 0),
            TrieKey::V6(len, data) => self.v6.insert(&Key::new(*len, *data), id, 0),
        }
        .map_err(|e| map_error("writing", acl_map(key), e))
    }

    fn remove_rule(&mut self, key: &TrieKey) -> Result<()> {
        match key {
            TrieKey::V4(len, data) => self.v4.remove(&Key::new(*len, *data)),
            TrieKey::V6(len, data) => self.v6.remove(&Key::new(*len, *data)),
        }
        .map_err(|e| map_error("removing from", acl_map(key), e))
    }

    /// Every rule the tries hold (a previous lbd's, when pinned).
    fn installed(&self) -> Result<BTreeMap<TrieKey, u32>> {
        let mut out = BTreeMap::new();
        for entry in self.v4.iter() {
            let (key, id) = entry.map_err(|e| map_error("reading", names::MAP_ACL_V4, e))?;
            out.insert(TrieKey::V4(key.prefix_len(), key.data()), id);
        }
        for entry in self.v6.iter() {
            let (key, id) = entry.map_err(|e| map_error("reading", names::MAP_ACL_V6, e))?;
            out.insert(TrieKey::V6(key.prefix_len(), key.data()), id);
        }
        Ok(out)
    }
}

/// The writes the installer makes: to the maps in lbd, to a record in
/// the tests of their order (or of a failure, for `Guard`'s tests).
pub(super) trait GuardWrites {
    /// Whether the writes go anywhere (false: a dry run's, which logs
    /// nothing of what it would do).
    fn written(&self) -> bool {
        true
    }
    /// Zeroes rule `id`'s hit counter.
    fn clear_hits(&mut self, id: u32) -> Result<()>;
    /// Puts a rule in a trie.
    fn insert(&mut self, key: &TrieKey, id: u32) -> Result<()>;
    /// Takes a rule out of its trie.
    fn remove(&mut self, key: &TrieKey) -> Result<()>;
    /// Writes `VIP_GUARDS[n]`.
    fn set_guard(&mut self, n: u32, guard: VipGuard) -> Result<()>;
}

impl GuardWrites for GuardMaps {
    fn clear_hits(&mut self, id: u32) -> Result<()> {
        self.zero_hits(id)
    }

    fn insert(&mut self, key: &TrieKey, id: u32) -> Result<()> {
        self.insert_rule(key, id)
    }

    fn remove(&mut self, key: &TrieKey) -> Result<()> {
        self.remove_rule(key)
    }

    fn set_guard(&mut self, n: u32, guard: VipGuard) -> Result<()> {
        self.guards
            .set(n, guard, 0)
            .map_err(|e| map_error("writing", names::MAP_VIP_GUARDS, e))
    }
}

/// Writes that go nowhere: [`Installer::preview`]'s.
struct Unwritten;

impl GuardWrites for Unwritten {
    fn written(&self) -> bool {
        false
    }

    fn clear_hits(&mut self, _: u32) -> Result<()> {
        Ok(())
    }

    fn insert(&mut self, _: &TrieKey, _: u32) -> Result<()> {
        Ok(())
    }

    fn remove(&mut self, _: &TrieKey) -> Result<()> {
        Ok(())
    }

    fn set_guard(&mut self, _: u32, _: VipGuard) -> Result<()> {
        Ok(())
    }
}

fn acl_map(key: &TrieKey) -> &'static str {
    match key {
        TrieKey::V4(..) => names::MAP_ACL_V4,
        TrieKey::V6(..) => names::MAP_ACL_V6,
    }
}

/// One rule as `lbctl acl list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCount {
    /// The rule.
    pub rule: AclRule,
    /// Its id in the maps (None: not in force, its VIP is not served).
    pub id: Option<u32>,
    /// Packets it matched since it was installed.
    pub packets: u64,
}

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

    /// When the maps held no generation (`VIP_GUARDS` made afresh, e.g.
    /// its layout changed) but the connection table was adopted, goes on
    /// from a generation chosen by the ACL marks of the adopted flows
    /// (`flags`: their entries' flags; read only then): counting from 0,
    /// the first apply's generation would carry the mark a previous lbd's
    /// generation 1 left on its flows, and those would skip a new deny
    /// list. Returns the generation taken (None: none needed).
    pub fn clear_of_marks(&mut self, flags: impl IntoIterator<Item = u32>) -> Option<u32> {
        if self.generation != 0 {
            return None;
        }
        let generation = clear_of_marks(flags)?;
        self.generation = generation;
        Some(generation)
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
    pub(super) fn apply_to(
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
        let room = ACL_RULES_MAX as usize - 1;
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

    /// [`Self::counts`] for `config` as [`Self::preview`] sees it: a rule
    /// that keeps its id keeps its count, a new one counts nothing yet.
    pub fn preview_counts(
        &self,
        maps: &GuardMaps,
        config: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<Vec<RuleCount>> {
        let ids = self.preview(config, vips, max_vips)?;
        config
            .acl
            .iter()
            .map(|rule| {
                let id = ids.get(rule).copied();
                let kept = id.is_some() && self.rules.get(rule).copied() == id;
                let packets = match id {
                    Some(id) if kept => maps.hits(id)?,
                    _ => 0,
                };
                Ok(RuleCount {
                    rule: *rule,
                    id,
                    packets,
                })
            })
            .collect()
    }

    /// Rule `rule`'s id in the maps (None: not in force).
    pub(super) fn id_of(&self, rule: &AclRule) -> Option<u32> {
        self.rules.get(rule).copied()
    }

    /// Every rule of `config` with its id and count.
    pub fn counts(&self, maps: &GuardMaps, config: &GuardConfig) -> Result<Vec<RuleCount>> {
        config
            .acl
            .iter()
            .map(|rule| {
                let id = self.id_of(rule);
                let packets = match id {
                    Some(id) => maps.hits(id)?,
                    None => 0,
                };
                Ok(RuleCount {
                    rule: *rule,
                    id,
                    packets,
                })
            })
            .collect()
    }
}

/// A generation the next ones after which (`next_generation`) carry no
/// ACL mark that `flags` (flow entries' flags) carry, for as many rule
/// changes as the marks allow: the marked one just before the longest run
/// of marks no flow carries, wrapping (a mark is the generation's low 24
/// bits, see `acl_mark`; 0 is none). None when no flow is marked.
fn clear_of_marks(flags: impl IntoIterator<Item = u32>) -> Option<u32> {
    const WORD: u32 = u64::BITS;
    let shift = FLOW_F_ACL_MARK.trailing_zeros();
    // The largest mark, as a generation; 1 is the smallest.
    let last = FLOW_F_ACL_MARK >> shift;
    let mut used = vec![0u64; (last / WORD + 1) as usize];
    for f in flags {
        let mark = (f & FLOW_F_ACL_MARK) >> shift;
        if mark != 0 {
            used[(mark / WORD) as usize] |= 1 << (mark % WORD);
        }
    }
    // (run of free marks after it, the marked generation it follows)
    let mut best: Option<(u32, u32)> = None;
    let (mut first, mut previous) = (None, 0);
    for (w, word) in (0u32..).zip(&used) {
        let mut bits = *word;
        while bits != 0 {
            let mark = w * WORD + bits.trailing_zeros();
            bits &= bits - 1;
            if first.is_none() {
                first = Some(mark);
            } else if best.is_none_or(|(run, _)| mark - previous - 1 > run) {
                best = Some((mark - previous - 1, previous));
            }
            previous = mark;
        }
    }
    let first = first?;
    // The run from the largest mark round to the smallest.
    let wrapped = (last - previous) + (first - 1);
    match best {
        Some((run, _)) if run > wrapped => best.map(|(_, after)| after),
        _ => Some(previous),
    }
}

/// The rules of `config` in force for the VIPs served, by trie key.
fn wanted(config: &GuardConfig, vips: &[(VipId, u32)]) -> BTreeMap<TrieKey, AclRule> {
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
mod tests {
    use super::*;
    use crate::guard::rules::Limits;

    fn vip(s: &str) -> VipId {
        s.parse().unwrap()
    }

    fn rule(scope: Scope, action: Action, source: &str) -> AclRule {
        AclRule {
            scope,
            action,
            source: source.parse().unwrap(),
        }
    }

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

    /// The generation chosen is the marked one before the longest run of
    /// marks no flow carries (wrapping past the largest mark), so the
    /// next ones stay clear of the flows' marks the longest; none without
    /// marked flows, and one already adopted from the maps is kept.
    #[test]
    fn the_generation_clear_of_marks_follows_the_longest_free_run() {
        use lb_common::guard::acl_mark;
        let marks = |generations: &[u32]| -> Vec<u32> {
            generations.iter().map(|g| acl_mark(*g)).collect()
        };
        assert_eq!(clear_of_marks([0u32, 3]), None, "no flow marked");
        assert_eq!(clear_of_marks(marks(&[1])), Some(1));
        assert_eq!(clear_of_marks(marks(&[7, 2, 7])), Some(7));
        // Marks of generations past 2^24 are their low 24 bits.
        assert_eq!(clear_of_marks(marks(&[0x0100_0005])), Some(5));
        // A previous lbd whose generations wrapped: past the newest.
        let wrapped = marks(&[0x00ff_fffe, 0x00ff_ffff, 0x0100_0001, 0x0100_0002]);
        assert_eq!(clear_of_marks(wrapped), Some(2));
        // The largest mark's run goes round to the smallest.
        assert_eq!(clear_of_marks(marks(&[0x00ff_ffff, 9])), Some(9));
        assert_eq!(
            clear_of_marks(marks(&[0x0080_0010, 0x0080_0000])),
            Some(0x0080_0010)
        );
        // A run between two marks longer than the one round past the largest.
        assert_eq!(clear_of_marks(marks(&[0x00ff_fff0, 2])), Some(2));
        assert_eq!(next_generation(0x00ff_ffff) & 0x00ff_ffff, 1);
        // The maps' own generation stands.
        let mut installer = Installer {
            generation: 4,
            ..Installer::default()
        };
        assert_eq!(installer.clear_of_marks(marks(&[4, 5])), None);
        assert_eq!(installer.generation, 4);
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
}
