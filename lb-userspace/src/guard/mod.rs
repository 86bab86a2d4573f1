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

/// The guards in force and what the maps hold.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    installer: Installer,
}

impl Guard {
    /// Starts from what the maps hold (a previous lbd's rules, pinned),
    /// with `config` to be applied by the first `apply`.
    pub fn adopt(maps: &GuardMaps, config: GuardConfig) -> Result<Self, DataplaneError> {
        Ok(Self {
            config,
            installer: Installer::adopt(maps)?,
        })
    }

    /// The guards in force.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Makes `next` the guards in force for the VIPs served (identity,
    /// numeric id). If the maps refuse, the previous guards are written
    /// back (as far as the maps take them) and stay in force.
    pub fn apply(
        &mut self,
        maps: &mut GuardMaps,
        next: GuardConfig,
        vips: &[(VipId, u32)],
        max_vips: u32,
    ) -> Result<(), DataplaneError> {
        match self.installer.apply(maps, &next, vips, max_vips) {
            Ok(()) => {
                self.config = next;
                Ok(())
            }
            Err(error) => {
                if let Err(again) = self.installer.apply(maps, &self.config, vips, max_vips) {
                    tracing::warn!(%again, "restoring the previous guards failed too");
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
