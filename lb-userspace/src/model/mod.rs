//! What lbd serves: the VIPs and backends from the config file plus the
//! changes made at run time, with each backend's admin state (enabled,
//! draining, maintenance) and health. Pure: it turns into the desired
//! data-plane state (`DesiredVip`) and into plans for `--dry-run`.
//!
//! Runtime changes and the file: a reload makes the file the truth again.
//! VIPs and backends added at run time but absent from the file are
//! removed, and weights changed at run time go back to the file's; what a
//! reload will undo is listed by `lbctl reload --dry-run`, and
//! `lbctl config dump` prints the running config to save into the file.
//! Admin states (drain, maintenance) and health survive reloads: they are
//! operations on running backends, not configuration.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use crate::plan::{AffinityChange, PlanChange, SlowStartPlan, VipPlan};
use crate::{
    config::{AllDown, BackendConfig, Config, VipConfig},
    health::Health,
    mac::Mac,
    maglev::{self, MaglevBackend},
    reconcile::{address_bytes, DesiredBackend, DesiredVip, VipId},
};

#[cfg(test)]
mod backup_tests;
mod changes;
mod digest;
mod edit;
mod slow_start;
#[cfg(test)]
mod slow_start_tests;
#[cfg(test)]
mod tests;
mod vip;

pub(crate) use changes::fits_the_maps;
pub(crate) use edit::MAX_DRAIN_TIMEOUT;
pub use edit::{DrainTimeout, DrainTimeoutSource, Edit};
pub use slow_start::SlowStart;
pub(crate) use vip::is_checked;
pub use vip::plan;

/// An operator's choice for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes new flows (if healthy).
    Enabled,
    /// Takes no new flows; its established flows continue until they end
    /// or the deadline passes (which cuts them, but for a NAT VIP's).
    Draining {
        /// When the drain started.
        since: Instant,
        /// When its remaining flows are cut (None: never).
        deadline: Option<Instant>,
    },
    /// Out at once: no new flows, established flows hashed elsewhere
    /// (a NAT VIP's stay on it until they end: a translation cannot move).
    Maintenance,
}

impl AdminState {
    /// Which of the operator's states it is, without its times: what the
    /// API, the status and the metrics show.
    pub fn state(&self) -> BackendState {
        match self {
            AdminState::Enabled => BackendState::Enabled,
            AdminState::Draining { .. } => BackendState::Draining,
            AdminState::Maintenance => BackendState::Maintenance,
        }
    }
}

/// A backend's admin state by name, as an operator asks for it and the
/// status shows it (`enabled`, `draining`, `maintenance` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new flows (if healthy).
    Enabled,
    /// Takes no new flows; established flows continue.
    Draining,
    /// Out at once.
    Maintenance,
}

impl BackendState {
    /// Every state, for metrics that show one series per state.
    pub const ALL: [BackendState; 3] = [
        BackendState::Enabled,
        BackendState::Draining,
        BackendState::Maintenance,
    ];

    /// The name on the wire and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Enabled => "enabled",
            BackendState::Draining => "draining",
            BackendState::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend as lbd runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendModel {
    /// Its configuration (weight possibly changed at run time).
    pub config: BackendConfig,
    /// Operator's state.
    pub admin: AdminState,
    /// Health from the checks (Unknown until they decide; counts as up).
    pub health: Health,
    /// Added at run time: not in the config file.
    pub runtime: bool,
    /// Its last drain ended because the drain's timeout passed (it is in
    /// maintenance since; its flows were cut, but for a NAT VIP's);
    /// cleared by the next admin change.
    pub drain_timed_out: bool,
    /// Joined while lbd ran (an edit or a reload), or was restored in
    /// maintenance at start, and is checked: while its health is still
    /// unknown it takes no new flows (it has none to keep), so a backend
    /// still starting up, or one the last lbd knew was down, refuses none.
    /// Other backends there at start take flows while unknown, as their
    /// flows would otherwise be cut during the first checks.
    pub awaiting_checks: bool,
    /// Keeps the established flows it carried while its VIP failed open
    /// (`on_all_down = "keep"`), now that the VIP does not: alive with
    /// no weight (a drain) while its checks still fail. None: not held.
    pub fail_open_hold: Option<FailOpenHold>,
    /// Its ramp to full weight since it came back into rotation, for a
    /// VIP with `slow_start_s` (see [`slow_start`]). None: at full weight.
    pub slow_start: Option<SlowStart>,
}

/// Why a backend that fails its checks still keeps its established flows:
/// its VIP failed open (every backend down, `on_all_down = "keep"`) and
/// then stopped (one backend came up, or joined), or may have been
/// failing open when the last lbd stopped (see `seed_health`). Cutting
/// them would punish flows for another backend's recovery: the usual
/// reason to fail open is a check that fails while the service works.
/// The hold ends when the backend passes its checks, when the operator
/// takes it out (maintenance, removal), when the VIP fails open again,
/// or at the end of its grace ([`FailOpenHold::grace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOpenHold {
    /// Held; its grace starts at the next housekeeping tick (the change
    /// that made it, a health event or a reload, carries no clock).
    Pending,
    /// Held until this deadline.
    Until(Instant),
}

/// A held backend's grace when its VIP has no `drain_timeout_s`: its
/// checks fail, so unlike an operator's drain it is not kept forever.
/// Five minutes lets requests and most sessions in flight finish (the
/// README's example `drain_timeout_s` too), yet moves the flows of a
/// backend that is really dead (its clients retransmitting into it)
/// within minutes rather than at TCP's give-up, about 15 minutes.
pub(crate) const FAIL_OPEN_GRACE: Duration = Duration::from_secs(300);

impl FailOpenHold {
    /// How long a backend of `vip` is held: the VIP's `drain_timeout_s`
    /// (the operator's word for how long established flows may outlive
    /// a backend's removal from the table), else [`FAIL_OPEN_GRACE`].
    pub(crate) fn grace(vip: &VipConfig) -> Duration {
        vip.drain_timeout.unwrap_or(FAIL_OPEN_GRACE)
    }
}

impl BackendModel {
    /// Whether its new flows go to it as far as health goes: up, or not
    /// decided yet for a backend that was in service before.
    pub(crate) fn counts_as_up(&self) -> bool {
        match self.health {
            Health::Up => true,
            Health::Down | Health::Full => false,
            Health::Unknown => !self.awaiting_checks,
        }
    }

    /// Whether it keeps established flows only for a [`FailOpenHold`]
    /// (its checks fail, or have not decided for one that joined at run
    /// time): alive with no weight.
    pub(crate) fn held_after_fail_open(&self) -> bool {
        self.fail_open_hold.is_some() && !self.counts_as_up()
    }

    /// How much longer it is held after its VIP (`vip`) stopped failing
    /// open ([`Self::held_after_fail_open`]); a hold whose grace has not
    /// started yet has all of it. None: not held. For the status, so an
    /// operator sees why a backend that is down still carries flows.
    pub(crate) fn hold_left(&self, vip: &VipConfig, now: Instant) -> Option<Duration> {
        if !self.held_after_fail_open() {
            return None;
        }
        match self.fail_open_hold? {
            FailOpenHold::Pending => Some(FailOpenHold::grace(vip)),
            FailOpenHold::Until(deadline) => Some(deadline.saturating_duration_since(now)),
        }
    }

    /// Whether it joined at run time and its checks have not decided yet.
    pub(crate) fn awaits_first_check(&self) -> bool {
        self.awaiting_checks && self.health == Health::Unknown
    }
}

/// A VIP as lbd runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct VipModel {
    /// Its configuration; `config.backends` is kept in `backends`.
    pub config: VipConfig,
    /// Backends by address.
    pub backends: BTreeMap<IpAddr, BackendModel>,
    /// Added at run time: not in the config file.
    pub runtime: bool,
}

/// Everything lbd serves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// VIPs by identity.
    pub vips: BTreeMap<VipId, VipModel>,
}

/// Why an operation was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No such VIP.
    #[error("no VIP {0}")]
    NoVip(VipId),
    /// No such backend.
    #[error("VIP {vip} has no backend {backend}")]
    NoBackend {
        /// The VIP.
        vip: VipId,
        /// The backend.
        backend: IpAddr,
    },
    /// The VIP exists already.
    #[error("VIP {0} exists already")]
    VipExists(VipId),
    /// The backend exists already.
    #[error("VIP {vip} already has backend {backend}")]
    BackendExists {
        /// The VIP.
        vip: VipId,
        /// The backend.
        backend: IpAddr,
    },
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The change would go past a limit (VIPs, backends per VIP or in all).
    #[error("{0}")]
    Limit(String),
}

/// Live flows as the connection table shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCount {
    /// Flows with recent packets and no FIN/RST seen.
    pub live: u64,
    /// Flows that saw a FIN or RST (ending).
    pub closing: u64,
    /// Flows silent for longer than the idle timeout.
    pub idle: u64,
}

/// Idle timeouts per protocol, for telling live flows from idle ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleTimeouts {
    /// TCP.
    pub tcp: Duration,
    /// UDP.
    pub udp: Duration,
}
