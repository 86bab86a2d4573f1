//! Guards in front of the VIPs: deny and allow lists of source prefixes
//! (global or per VIP) and limits of new flows per source address and
//! prefix (a default for every VIP, or per VIP). `rules` is the desired
//! state as a plain value with its pure change rules; `maps` writes it to
//! the data plane (`lb-ebpf`'s `guard`, semantics in `lb_common::guard`).
//!
//! Where the rules come from: the config file (`[[acl]]`, `[[limit]]`)
//! and `lbctl acl` / `lbctl limit` at run time. The file is the source of
//! truth: a reload puts its rules in force and undoes runtime changes (the
//! reload's answer lists them), as it does for VIPs and backends. The maps
//! are pinned with the rest of the data plane, so across a hitless restart
//! the rules in force keep filtering until the new lbd has written its own
//! (it reads them back and keeps the ids, and counters, of rules that stay).

pub mod maps;
pub mod rules;

pub use maps::{GuardMaps, Installer, RuleCount};
pub use rules::{
    AclRule, Action, Cidr, GuardConfig, GuardEdit, GuardError, Limits, RateLimit, Scope,
};

use crate::{dataplane::DataplaneError, vip_id::VipId};
use maps::GuardWrites;

/// The guards meant to be in force and what the maps hold.
#[derive(Debug)]
pub struct Guard {
    /// The guards meant to be in force (what status, counts and dumps
    /// show): the last ones applied or settled.
    config: GuardConfig,
    /// The guards last written whole and the VIPs they were written for:
    /// `config`, or a commit's bridge, or the previous guards while a
    /// settle waits for the maps. None: not known (nothing written yet,
    /// the maps holding a previous lbd's rules, or a refused write whose
    /// undoing was refused too).
    written: Option<Written>,
    installer: Installer,
}

/// What the maps were last brought to: guards for a set of VIPs. Both
/// count: a commit removing a VIP with rules and limits of its own writes
/// a bridge equal to the guards meant (it keeps them), for the VIPs with
/// the leaving one; the settle after it must still write, for the VIPs
/// without it, or the removed VIP's rules stay in the tries, with ids,
/// shown and counted as in force.
#[derive(Debug, PartialEq)]
struct Written {
    config: GuardConfig,
    /// Sorted (identity, numeric id).
    vips: Vec<(VipId, u32)>,
}

impl Written {
    fn new(config: GuardConfig, vips: &[(VipId, u32)]) -> Self {
        Self {
            config,
            vips: sorted(vips),
        }
    }

    /// Whether these are `config` written for `vips`.
    fn holds(&self, config: &GuardConfig, vips: &[(VipId, u32)]) -> bool {
        self.config == *config && self.vips == sorted(vips)
    }
}

fn sorted(vips: &[(VipId, u32)]) -> Vec<(VipId, u32)> {
    let mut vips = vips.to_vec();
    vips.sort_unstable();
    vips.dedup();
    vips
}

impl Guard {
    /// Starts from what the maps hold (a previous lbd's rules, pinned),
    /// with `config` to be applied by the first `apply` or `settle`.
    pub fn adopt(maps: &GuardMaps, config: GuardConfig) -> Result<Self, DataplaneError> {
        Ok(Self {
            config,
            written: None,
            installer: Installer::adopt(maps)?,
        })
    }

    /// After `adopt`, with the connection table adopted: if the maps held
    /// no generation (`VIP_GUARDS` made afresh under adopted flows), the
    /// generations go on from one whose next ones no adopted flow's ACL
    /// mark matches (`flags`: the flows' entry flags, walked only then),
    /// so no flow skips the lists this lbd writes. See
    /// [`Installer::clear_of_marks`].
    pub fn clear_of_marks(&mut self, flags: impl IntoIterator<Item = u32>) {
        if let Some(generation) = self.installer.clear_of_marks(flags) {
            tracing::info!(
                generation,
                "the deny/allow lists' generation starts afresh under adopted flows: it goes on past their ACL marks"
            );
        }
    }

    /// The guards meant to be in force.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Whether the maps hold `config` for `vips` (the VIPs served; false
    /// while a commit's bridge is in force, or a settle the maps refused
    /// waits for `retry`).
    pub fn is_settled(&self, vips: &[(VipId, u32)]) -> bool {
        self.written
            .as_ref()
            .is_some_and(|w| w.holds(&self.config, vips))
    }

    /// Makes `next` the guards in force for the VIPs served (identity,
    /// numeric id). If the maps refuse, the guards last written are
    /// written back (as far as the maps take them) and stay in force, and
    /// the guards meant to be in force stay as they were.
    pub fn apply(
        &mut self,
        maps: &mut GuardMaps,
        next: GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        self.apply_with(maps, next, vips, max_vips)
    }

    /// Writes `bridge` for the moment of a commit (a VIP it removes keeps
    /// its own guards until it is gone), the guards meant to be in force
    /// staying as they are: `settle` puts those back after the commit. If
    /// the maps refuse, as `apply`.
    pub fn bridge(
        &mut self,
        maps: &mut GuardMaps,
        bridge: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        self.write(maps, bridge, vips, max_vips)
    }

    /// After a commit: makes `next` the guards meant to be in force,
    /// whether or not the maps take them now. If they refuse, the guards
    /// last written are written back and `retry` writes `next` later (a
    /// commit's bridge never becomes the guards meant to be in force).
    pub fn settle(
        &mut self,
        maps: &mut GuardMaps,
        next: GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        self.settle_with(maps, next, vips, max_vips)
    }

    /// Writes the guards meant to be in force if the maps do not hold
    /// them (`is_settled`); Ok(true) if it wrote them, Ok(false) if there
    /// was nothing to do. Refused, as `apply`.
    pub fn retry(
        &mut self,
        maps: &mut GuardMaps,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<bool, DataplaneError> {
        self.retry_with(maps, vips, max_vips)
    }

    /// `apply` through `maps`' writes.
    fn apply_with(
        &mut self,
        maps: &mut dyn GuardWrites,
        next: GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        self.write(maps, &next, vips, max_vips)?;
        self.config = next;
        Ok(())
    }

    /// `settle` through `maps`' writes.
    fn settle_with(
        &mut self,
        maps: &mut dyn GuardWrites,
        next: GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        self.config = next;
        self.retry_with(maps, vips, max_vips).map(|_| ())
    }

    /// `retry` through `maps`' writes.
    fn retry_with(
        &mut self,
        maps: &mut dyn GuardWrites,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<bool, DataplaneError> {
        if self.is_settled(vips) {
            return Ok(false);
        }
        let config = self.config.clone();
        self.write(maps, &config, vips, max_vips)?;
        Ok(true)
    }

    /// Writes `next` for `vips` and records it as written; refused, writes
    /// back the guards last written (none before the first write: the
    /// maps then keep what they hold).
    fn write(
        &mut self,
        maps: &mut dyn GuardWrites,
        next: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        match self.installer.apply_to(maps, next, vips, max_vips) {
            Ok(()) => {
                self.written = Some(Written::new(next.clone(), vips));
                Ok(())
            }
            Err(error) => {
                if let Some(previous) = self.written.take() {
                    match self
                        .installer
                        .apply_to(maps, &previous.config, vips, max_vips)
                    {
                        // Written back for the VIPs served now.
                        Ok(()) => self.written = Some(Written::new(previous.config, vips)),
                        // What the maps hold is not known (None): `retry`
                        // writes the guards meant to be in force.
                        Err(again) => {
                            tracing::warn!(%again, "restoring the previous guards failed too")
                        }
                    }
                }
                Err(error)
            }
        }
    }

    /// Every rule with its id and count.
    pub fn counts(&self, maps: &GuardMaps) -> Result<Vec<RuleCount>, DataplaneError> {
        self.installer.counts(maps, &self.config)
    }

    /// Every rule of `next` with the id and count it would have if `next`
    /// were put in force for `vips` (a dry run's answer; nothing written).
    pub fn preview_counts(
        &self,
        maps: &GuardMaps,
        next: &GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<Vec<RuleCount>, DataplaneError> {
        self.installer.preview_counts(maps, next, vips, max_vips)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lb_common::guard::VipGuard;

    use super::{maps::TrieKey, *};

    /// Maps that refuse the next `refusals` writes of a VIP's guard and
    /// keep the others.
    #[derive(Default)]
    struct Maps {
        refusals: usize,
        guards: BTreeMap<u32, VipGuard>,
        tries: BTreeMap<TrieKey, u32>,
    }

    impl GuardWrites for Maps {
        fn clear_hits(&mut self, _: u32) -> Result<(), DataplaneError> {
            Ok(())
        }

        fn insert(&mut self, key: &TrieKey, id: u32) -> Result<(), DataplaneError> {
            self.tries.insert(*key, id);
            Ok(())
        }

        fn remove(&mut self, key: &TrieKey) -> Result<(), DataplaneError> {
            self.tries.remove(key);
            Ok(())
        }

        fn set_guard(&mut self, n: u32, guard: VipGuard) -> Result<(), DataplaneError> {
            if self.refusals > 0 {
                self.refusals -= 1;
                return Err(DataplaneError::OutOfRange {
                    what: "test VIP guard",
                    id: n,
                    capacity: 0,
                });
            }
            self.guards.insert(n, guard);
            Ok(())
        }
    }

    fn limited(scope: Scope, per_s: u32) -> GuardConfig {
        GuardConfig {
            limits: [(
                scope,
                Limits {
                    source: Some(RateLimit::new(per_s, None, "source").unwrap()),
                    ..Limits::default()
                },
            )]
            .into(),
            ..GuardConfig::default()
        }
    }

    /// A settle the maps refuse leaves the guards it was given as the
    /// ones meant to be in force (not the commit's bridge written before
    /// it, which before stayed for good: shown by `lbctl limit`, dumped,
    /// cloned by every later change), and `retry` writes them once the
    /// maps take writes again. Whether or not the bridge could be written
    /// back meanwhile.
    #[test]
    fn a_refused_settle_keeps_the_files_guards_meant_and_retries_them() {
        let leaving: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let staying: VipId = "198.18.0.101:80/tcp".parse().unwrap();
        let before = [(leaving, 1), (staying, 2)];
        let after = [(staying, 2)];
        let running = limited(Scope::Global, 50);
        let file = limited(Scope::Global, 100);
        // The bridge: the leaving VIP keeps its limits until it is gone.
        let mut bridge = file.clone();
        bridge
            .limits
            .insert(Scope::Vip(leaving), running.limits[&Scope::Global]);
        for refusals in [1, 2] {
            let mut maps = Maps::default();
            let mut guard = Guard {
                config: GuardConfig::default(),
                written: None,
                installer: Installer::default(),
            };
            guard
                .apply_with(&mut maps, running.clone(), &before, 4)
                .unwrap();
            guard.write(&mut maps, &bridge, &before, 4).unwrap();
            assert_eq!(guard.config(), &running, "a bridge is not meant");
            assert!(!guard.is_settled(&before));
            // The settle refused (and, with 2, the bridge's restoring too).
            maps.refusals = refusals;
            assert!(guard
                .settle_with(&mut maps, file.clone(), &after, 4)
                .is_err());
            assert_eq!(
                guard.config(),
                &file,
                "{refusals}: the file's guards are meant"
            );
            assert!(!guard.is_settled(&after), "{refusals}");
            // The next tick.
            assert!(
                guard.retry_with(&mut maps, &after, 4).unwrap(),
                "{refusals}"
            );
            assert!(guard.is_settled(&after), "{refusals}");
            assert_eq!(guard.config(), &file, "{refusals}");
            let written = maps::vip_guard(&file, &staying);
            assert_eq!(
                (maps.guards[&2].source, maps.guards[&2].acl),
                (written.source, written.acl),
                "{refusals}"
            );
            assert!(
                !guard.retry_with(&mut maps, &after, 4).unwrap(),
                "nothing left"
            );
            // A refused change (`apply`) is not meant: the guards stay.
            maps.refusals = 1;
            let change = limited(Scope::Global, 7);
            assert!(guard.apply_with(&mut maps, change, &after, 4).is_err());
            assert_eq!(guard.config(), &file, "{refusals}");
            assert!(
                guard.is_settled(&after),
                "{refusals}: the file's written back"
            );
        }
    }

    /// A VIP removed at run time with a rule and limits of its own: the
    /// commit's bridge is the guards meant (the VIP keeps its own), written
    /// for the VIPs with it; the settle, for the VIPs without it, must
    /// still write. Before, `is_settled` compared the guards alone, found
    /// them equal, and wrote nothing: the removed VIP's rule kept its id
    /// and trie entry (shown and counted as in force) and its VIP id its
    /// flags and limits.
    #[test]
    fn a_vip_removed_with_guards_of_its_own_loses_them_at_the_settle() {
        let leaving: VipId = "198.18.0.100:80/tcp".parse().unwrap();
        let staying: VipId = "198.18.0.101:80/tcp".parse().unwrap();
        let before = [(leaving, 1), (staying, 2)];
        let after = [(staying, 2)];
        let mut config = limited(Scope::Vip(leaving), 5);
        let own = AclRule {
            scope: Scope::Vip(leaving),
            action: Action::Deny,
            source: "198.18.66.0/24".parse().unwrap(),
        };
        config.acl.insert(own);
        let mut maps = Maps::default();
        let mut guard = Guard {
            config: GuardConfig::default(),
            written: None,
            installer: Installer::default(),
        };
        guard
            .apply_with(&mut maps, config.clone(), &before, 4)
            .unwrap();
        assert!(guard.installer.id_of(&own).is_some());
        // The commit: the bridge is the guards meant, for both VIPs.
        guard.write(&mut maps, &config, &before, 4).unwrap();
        guard.settle_with(&mut maps, config, &after, 4).unwrap();
        assert_eq!(guard.installer.id_of(&own), None, "out of force");
        assert!(guard.is_settled(&after));
        assert!(!guard.is_settled(&before));
        assert!(maps.tries.is_empty(), "{:?}", maps.tries);
        for n in [1, 2] {
            let written = maps.guards[&n];
            assert!(written.acl == 0 && !written.limits(), "{n}: {written:?}");
        }
    }
}
