//! The `[flood]` table: when lbd says a SYN flood is on (`flood::machine`).
//! Every key is optional; the defaults are far above what clients that
//! complete their handshakes cause. A reload applies new thresholds at
//! once (the state stays: a flood going on stays on until calm).
//!
//! ```toml
//! [flood]
//! unanswered_syn_per_s = 5000      # SYNs held half-open that no ACK took out, per second
//! half_open_evicted_per_s = 500    # half-open flows displaced while still in time, per second
//! calm_s = 30                      # both below half their threshold this long: flood over
//! ```

use std::time::Duration;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Checker, ConfigError};
use crate::flood::machine::FloodThresholds;

/// Largest rate threshold accepted (per second): past any packet rate one
/// node sees.
pub(crate) const MAX_FLOOD_RATE: u32 = 1_000_000_000;

/// Longest `calm_s` accepted: an hour.
pub(crate) const MAX_FLOOD_CALM_S: u32 = 3_600;

/// The `[flood]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [flood] table")]
pub(super) struct RawFlood {
    unanswered_syn_per_s: Option<Spanned<Value>>,
    half_open_evicted_per_s: Option<Spanned<Value>>,
    calm_s: Option<Spanned<Value>>,
}

impl super::TableName for RawFlood {
    const NAME: &'static str = "flood";
}

impl Checker<'_> {
    /// The `[flood]` table (the defaults when absent).
    pub(super) fn flood(
        &self,
        raw: Option<&Spanned<super::raw::OneTable<RawFlood>>>,
    ) -> Result<FloodThresholds, ConfigError> {
        let mut thresholds = FloodThresholds::default();
        let Some(raw) = raw else {
            return Ok(thresholds);
        };
        let raw = raw.get_ref().get();
        if let Some(v) = &raw.unanswered_syn_per_s {
            let rate: u32 = self.integer(v, "flood.unanswered_syn_per_s", 1..=MAX_FLOOD_RATE)?;
            thresholds.unanswered_per_s = rate.into();
        }
        if let Some(v) = &raw.half_open_evicted_per_s {
            let rate: u32 = self.integer(v, "flood.half_open_evicted_per_s", 1..=MAX_FLOOD_RATE)?;
            thresholds.evicted_per_s = rate.into();
        }
        if let Some(v) = &raw.calm_s {
            let seconds: u32 = self.integer(v, "flood.calm_s", 1..=MAX_FLOOD_CALM_S)?;
            thresholds.calm = Duration::from_secs(seconds.into());
        }
        Ok(thresholds)
    }
}
