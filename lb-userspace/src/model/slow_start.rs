//! Slow start (`slow_start_s`): a backend that starts taking new flows
//! again (back up after being down, out of a drain or maintenance, added
//! at run time, its weight raised from 0) reaches its full weight in
//! steps rather than at once, so a cold cache, connection pool or JIT is
//! not handed its whole share in one second (HAProxy's `slowstart`,
//! nginx's `slow_start`). Established flows are untouched: each step
//! changes only where new flows go, as any weight change does.
//!
//! Pure: a ramp begins when a change puts a backend in rotation
//! ([`Model::start_slow_starts`], given the model before the change and
//! `now`), and the housekeeping tick moves it on
//! ([`Model::advance_slow_starts`]); [`super::VipModel::desired`] reads
//! the step. Not at lbd's start (nothing to compare with, and a restart
//! must not shift every flow's backend), nor for the backends of a VIP
//! that the change brings (they start together, so a ramp would change
//! no share).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use super::{AdminState, BackendModel, Model, VipModel};
use crate::{api::schema::SlowStartStatus, config::VipConfig, health::Health, reconcile::VipId};

/// Most steps a ramp takes: 5 % of the weight each.
pub(crate) const MAX_STEPS: u32 = 20;

/// Where a backend's ramp to its full weight stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowStart {
    /// When it began taking new flows again.
    pub since: Instant,
    /// The step reached, 1..steps: its weight is `step / steps` of the
    /// configured one (all of it once the ramp is over).
    pub step: u32,
}

/// How many steps a ramp of `duration` takes: one a second (the
/// housekeeping tick that moves it), at most [`MAX_STEPS`], at least 2.
pub(crate) fn steps(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs())
        .unwrap_or(u32::MAX)
        .clamp(2, MAX_STEPS)
}

impl SlowStart {
    /// A ramp beginning at `now`, at its first step.
    fn begin(now: Instant) -> Self {
        Self {
            since: now,
            step: 1,
        }
    }

    /// The step at `now` of a ramp lasting `duration`: step k of n from
    /// k/n of the duration on (step 1 from the start), so the weight is
    /// never ahead of the time passed and is whole exactly when the
    /// duration has: None then, the ramp is over.
    fn step_at(&self, duration: Duration, now: Instant) -> Option<u32> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= duration {
            return None;
        }
        let n = steps(duration);
        let reached = elapsed.as_nanos() * u128::from(n) / duration.as_nanos().max(1);
        Some(u32::try_from(reached).unwrap_or(n).clamp(1, n - 1))
    }
}

impl BackendModel {
    /// Its ramp as the status shows it, for VIP `vip` at `now`: the
    /// percent of its weight it has (whole steps) and the seconds left,
    /// rounded up. None at full weight.
    pub(crate) fn ramp_left(&self, vip: &VipConfig, now: Instant) -> Option<SlowStartStatus> {
        let (ramp, duration) = (self.slow_start?, vip.slow_start?);
        let n = steps(duration);
        if ramp.step >= n {
            return None;
        }
        let left = (ramp.since + duration).saturating_duration_since(now);
        Some(SlowStartStatus {
            percent: ramp.step.clamp(1, n) * 100 / n,
            left_s: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        })
    }

    /// Whether it is in rotation as far as its own state goes: enabled,
    /// weighted and up (or not decided yet for one in service before),
    /// or full (it still serves, warm). Whether the VIP fails open or
    /// stands its backups by does not count: those move every new flow
    /// at once, which no ramp can soften.
    pub(crate) fn in_rotation(&self) -> bool {
        self.admin == AdminState::Enabled
            && self.config.weight > 0
            && (self.counts_as_up() || self.health == Health::Full)
    }
}

impl VipModel {
    /// The steps of its ramps while one of its backends ramps: the
    /// weights [`Self::desired`] scales by. None: nothing ramps (or slow
    /// start is off).
    pub(crate) fn ramp_steps(&self) -> Option<u32> {
        let duration = self.config.slow_start?;
        let n = steps(duration);
        self.backends
            .values()
            .filter_map(|b| b.slow_start)
            .any(|r| r.step < n)
            .then_some(n)
    }

    /// A backend's weight for the data plane: its configured weight,
    /// times the steps while any backend ramps (`ramp_steps`), so that a
    /// ramping backend's `step / steps` of it stays a whole number.
    pub(crate) fn ramped_weight(&self, backend: &BackendModel, ramp_steps: Option<u32>) -> u32 {
        let weight = backend.config.weight;
        match (ramp_steps, backend.slow_start) {
            (None, _) => weight,
            (Some(n), None) => weight.saturating_mul(n),
            (Some(n), Some(ramp)) => weight.saturating_mul(ramp.step.clamp(1, n)),
        }
    }
}

impl Model {
    /// Begins the ramps a change from `before` to this model calls for,
    /// at `now`: each backend of a VIP with `slow_start_s` that is in
    /// rotation now ([`BackendModel::in_rotation`]) and was not before
    /// (or was not there) ramps; one in rotation in both keeps the ramp
    /// it has (a reload carries it over). A backend out of rotation, or
    /// of a VIP without slow start, has none. VIPs the change brings ramp
    /// nothing (see the module's doc).
    pub(crate) fn start_slow_starts(&mut self, before: &Model, now: Instant) {
        for (id, vip) in &mut self.vips {
            let was = before.vips.get(id);
            let on = vip.config.slow_start.is_some() && was.is_some();
            for (address, backend) in &mut vip.backends {
                let was_in = was
                    .and_then(|v| v.backends.get(address))
                    .is_some_and(BackendModel::in_rotation);
                if !on || !backend.in_rotation() {
                    backend.slow_start = None;
                } else if !was_in {
                    backend.slow_start = Some(SlowStart::begin(now));
                }
            }
        }
    }

    /// The ramps this model has that `before` has not (begun by the
    /// change from it, see [`Self::start_slow_starts`]), by VIP with its
    /// `slow_start_s`: for the change's plan.
    pub(crate) fn ramps_begun(&self, before: &Model) -> BTreeMap<VipId, (Duration, Vec<IpAddr>)> {
        let mut begun = BTreeMap::new();
        for (id, vip) in &self.vips {
            let Some(duration) = vip.config.slow_start else {
                continue;
            };
            let new: Vec<IpAddr> = vip
                .backends
                .iter()
                .filter(|(address, b)| {
                    b.slow_start.is_some()
                        && before
                            .vips
                            .get(id)
                            .and_then(|v| v.backends.get(*address))
                            .is_none_or(|e| e.slow_start != b.slow_start)
                })
                .map(|(address, _)| *address)
                .collect();
            if !new.is_empty() {
                begun.insert(*id, (duration, new));
            }
        }
        begun
    }

    /// Moves every ramp on to its step at `now` and ends those whose
    /// duration passed; returns the backends whose ramp ended (at their
    /// full weight now). Unchanged when no step is due, so a tick with
    /// nothing to do writes nothing.
    pub(crate) fn advance_slow_starts(&mut self, now: Instant) -> Vec<(VipId, IpAddr)> {
        let mut ended = Vec::new();
        for (id, vip) in &mut self.vips {
            let duration = vip.config.slow_start;
            for (address, backend) in &mut vip.backends {
                let Some(ramp) = backend.slow_start.as_mut() else {
                    continue;
                };
                match duration.and_then(|d| ramp.step_at(d, now)) {
                    Some(step) => ramp.step = step,
                    None => {
                        backend.slow_start = None;
                        ended.push((*id, *address));
                    }
                }
            }
        }
        ended
    }
}
