//! What one virtual router is configured with ([`Settings`]), why a
//! setting is refused ([`SettingsError`]), and RFC 5798's timer formulas
//! the machine computes from them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::OWNER_PRIORITY;
use crate::vrrp::packet::MAX_ADVER_INT_CS;

/// The longest preempt delay (keepalived's limit for `preempt_delay`), so
/// that a deadline can always be computed.
pub(crate) const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);

const MICROS_PER_CS: u64 = 10_000;

/// How one virtual router runs: the fields of a keepalived `vrrp_instance`
/// that the protocol itself reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Settings {
    /// Virtual router ID, 1..=255, the same on every router of the group.
    pub vrid: u8,
    /// Configured priority, 1..=255; 255 means we own the addresses.
    pub priority: u8,
    /// Our Advertisement_Interval in centiseconds, 1..=4095.
    pub adver_interval_cs: u16,
    /// Preempt_Mode: whether a backup takes over from a live master of
    /// lower priority (keepalived's default; `nopreempt` turns it off).
    pub preempt: bool,
    /// keepalived's `preempt_delay`: how long after startup, or after first
    /// hearing a lower-priority master, a backup keeps deferring to it
    /// before preempting. Zero preempts at once. At most 1000 s.
    pub preempt_delay: Duration,
    /// Accept_Mode (RFC 5798 §6.1): whether the master accepts packets
    /// addressed to the virtual addresses it does not own. Not read by
    /// the machine, and not configurable: lbd's master adds the addresses
    /// to the interface as its own, so its kernel accepts what is sent to
    /// them (ping, and any service listening on all addresses, on the
    /// ports the data plane passes to the stack). lbd's driver says so,
    /// `true`; lbd has no Accept_Mode = False.
    pub accept_mode: bool,
    /// keepalived's `garp_master_refresh`: while master, announce the
    /// addresses again this often ([`Action::Refresh`](super::Action::Refresh)), so neighbours
    /// that followed another router (a split brain that healed without a
    /// word, a switch that lost its tables) come back within a bound.
    /// `None`: only on becoming master and on the events that call for it.
    pub announce_refresh: Option<Duration>,
}

/// Why [`Settings`] cannot be used as written. The machine still runs with
/// them (priority 0 as 1, the interval clamped to 1..=4095, the delay to
/// [`MAX_PREEMPT_DELAY`]), so this is for the config layer to refuse them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// VRID 0 cannot be sent.
    #[error("VRRP vrid must be 1..=255, got 0")]
    ZeroVrid,
    /// Priority 0 is reserved for a master that stops.
    #[error("VRRP priority must be 1..=255, got 0")]
    ZeroPriority,
    /// The interval does not fit the advert's 12 bits, or is 0.
    #[error("VRRP advertisement interval must be 1..=4095 cs, got {0}")]
    Interval(u16),
    /// Longer than [`MAX_PREEMPT_DELAY`].
    #[error("VRRP preempt delay must be at most 1000 s, got {0:?}")]
    PreemptDelay(Duration),
}

impl Settings {
    /// Checks the ranges, so a bad config is refused with a clear message
    /// instead of silently fixed.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.vrid == 0 {
            return Err(SettingsError::ZeroVrid);
        }
        if self.priority == 0 {
            return Err(SettingsError::ZeroPriority);
        }
        if self.adver_interval_cs == 0 || self.adver_interval_cs > MAX_ADVER_INT_CS {
            return Err(SettingsError::Interval(self.adver_interval_cs));
        }
        if self.preempt_delay > MAX_PREEMPT_DELAY {
            return Err(SettingsError::PreemptDelay(self.preempt_delay));
        }
        Ok(())
    }

    /// The shortest Master_Down_Interval any peer can run after our last
    /// advert as master: 3 × our advert interval (which a backup learns
    /// from us) + the Skew_Time of priority 255. A peer's timer uses the
    /// peer's own priority, which may be higher than ours (a backup of
    /// higher priority with `nopreempt`), so measuring a restart against
    /// our own interval could resume as master after the peer took over.
    pub(crate) fn shortest_master_down_interval(&self) -> Duration {
        let settings = self.normalized();
        master_down_interval(settings.adver_interval_cs, OWNER_PRIORITY)
    }

    /// The settings the machine runs with: every range forced.
    pub(super) fn normalized(self) -> Self {
        Self {
            priority: self.priority.max(1),
            adver_interval_cs: clamp_interval(self.adver_interval_cs),
            preempt_delay: self.preempt_delay.min(MAX_PREEMPT_DELAY),
            ..self
        }
    }
}

pub(super) fn master_down_interval(adver_interval_cs: u16, priority: u8) -> Duration {
    cs_to_duration(adver_interval_cs)
        .saturating_mul(3)
        .saturating_add(skew_time(adver_interval_cs, priority))
}

pub(super) fn skew_time(adver_interval_cs: u16, priority: u8) -> Duration {
    let weight = 256 - u64::from(priority);
    let interval_us = u64::from(adver_interval_cs) * MICROS_PER_CS;
    Duration::from_micros(weight * interval_us / 256)
}

pub(super) fn cs_to_duration(cs: u16) -> Duration {
    Duration::from_micros(u64::from(cs) * MICROS_PER_CS)
}

pub(super) fn clamp_interval(cs: u16) -> u16 {
    cs.clamp(1, MAX_ADVER_INT_CS)
}
