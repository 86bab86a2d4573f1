//! Adopting what a previous lbd left pinned: checking the pins against
//! this object, carrying flows over from older table layouts and moving
//! flows a previous release placed elsewhere, so a restart or an upgrade
//! keeps every connection.
//!
//! One concern a file: finishing the adoption once this lbd's program
//! runs, here; whether the pins fit (`pin_check`) and where the loader
//! pins each map (`pin_placement`); the maps staged in place of pins not
//! adopted (`staged_maps`); pins of another layout version
//! (`other_layouts`); carrying a previous layout's connection and NAT
//! flows over (`carry_conntrack`, `carry_nat`); repairing the adopted
//! tables in place (`table_repair`); what the adopted maps hold
//! (`adopted_state`); the previous lbds' `TUNNEL_CONFIG` copies
//! (`previous_tunnel_configs`).

mod adopted_state;
mod carry_conntrack;
mod carry_nat;
mod other_layouts;
mod pin_check;
mod pin_placement;
mod previous_tunnel_configs;
mod staged_maps;
mod table_repair;

pub use carry_conntrack::CarriedFlows;
pub(super) use pin_check::{check_pins, PinPlan};
pub(super) use pin_placement::place_pins;
pub(crate) use staged_maps::{recover_staged, recovered_vip_capacity};

use aya::programs::ProgramError;
use tracing::{info, warn};

use self::other_layouts::releases_of;
use super::{Dataplane, DataplaneError};
use crate::pinning::{error_chain, LAYOUT_VERSION};

impl Dataplane {
    /// The second pass of `carry_legacy_flows`, `carry_legacy_nat` and of
    /// `re_place_flows`, once this lbd's program runs on the interface and
    /// the previous lbd's programs are gone from every hook (`attach` or
    /// `attach_tc`, then `remove_other_hook` and
    /// `remove_other_interfaces`): no old program adds or changes flows
    /// any more. lbd's start calls it then; a caller that runs the program
    /// by other means (a test run) calls it once the old program is gone.
    /// Returns what the final copy of the connection table's flows did
    /// (None: none was carried over).
    pub fn finish_adoption(&mut self) -> Option<CarriedFlows> {
        // Done at the swap by `attach`; here for a caller that runs the
        // program by other means.
        if let Err(error) = self.promote_staged() {
            warn!(%error, "pinning the maps this lbd started afresh under their names failed: the next start does it (they are staged, and this lbd's program uses them)");
        }
        let mut carried = None;
        if self.legacy.is_some() {
            carried = self.carry_legacy_flows(CarryPhase::Swapped);
            if let Some(legacy) = self.legacy.take() {
                legacy.finish();
            }
        }
        if self.legacy_nat.is_some() {
            self.carry_legacy_nat(CarryPhase::Swapped);
            if let Some(legacy) = self.legacy_nat.take() {
                legacy.finish();
            }
        }
        if std::mem::take(&mut self.re_place_pending) {
            self.re_place_flows(true);
        }
        // No previous program runs any more: its tunnel settings are
        // written no more, and its map may go with it.
        self.previous_tunnel_configs = Some(Vec::new());
        if let Some(pins) = &self.pins {
            match pins.remove_other_layouts() {
                Ok(removed) if !removed.is_empty() => info!(
                    maps = removed.len(),
                    this_layout = LAYOUT_VERSION,
                    "the maps {} pinned in another layout are removed (this lbd started its own)",
                    releases_of(&removed)
                ),
                Ok(_) => {}
                Err(error) => {
                    warn!(%error, "removing the maps another release pinned in another layout failed: they hold their memory until the next start removes them (or a reboot)")
                }
            }
        }
        carried
    }

    /// Whether the maps were adopted from a previous lbd (pinned, and
    /// compatible): the connection table and the tables are live.
    pub fn adopted(&self) -> bool {
        self.adopted
    }
}

/// When a previous lbd's flows are carried over (`carry_legacy_flows`,
/// `carry_legacy_nat`): each pass copies what the old tables hold then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CarryPhase {
    /// Right after the load: the old program still runs.
    Loaded,
    /// Just before this lbd's program is attached (NAT flows only): what
    /// the old program opened while lbd filled its maps.
    Attaching,
    /// After the swap (`finish_adoption`): no previous lbd's program runs
    /// any more, so the old tables are final.
    Swapped,
}

impl CarryPhase {
    /// The phase's name in the logs.
    fn name(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::Attaching => "attaching",
            Self::Swapped => "swapped",
        }
    }
}

/// The failure to list the programs for `purpose`.
fn unlisted(purpose: &'static str, e: &ProgramError) -> DataplaneError {
    DataplaneError::ProgramsUnlisted {
        purpose,
        reason: error_chain(e),
    }
}
