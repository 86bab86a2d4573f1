//! The rules' hit counters as `lbctl acl list` shows them: every rule with
//! its id and the packets it matched, as in force or as a dry run of a
//! change would leave them.

use super::Installer;
use crate::{
    guard::{
        maps::{GuardMaps, Result},
        rules::{AclRule, GuardConfig},
    },
    vip_id::VipId,
};

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

impl Installer {
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
