//! What a change does to each VIP's new flows: the answer to every change
//! and `--dry-run`, read either off the model (`lbctl config check`) or off
//! the balancer's staged tables (lbd). Its own module so both can produce
//! it without depending on each other.

use std::{collections::BTreeMap, fmt, net::IpAddr, time::Duration};

use lb_common::Affinity;
use serde::{Deserialize, Serialize};

use crate::api::wire_name;

/// What a change does to one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanChange {
    /// The VIP is new.
    Added,
    /// The VIP goes away.
    Removed,
    /// The VIP stays; its backends, weights or states change.
    Changed,
}

impl fmt::Display for PlanChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanChange::Added => "added",
            PlanChange::Removed => "removed",
            PlanChange::Changed => "changed",
        })
    }
}

/// What a change does to one VIP's new flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipPlan {
    /// The VIP.
    pub vip: String,
    /// What happens to it.
    pub change: PlanChange,
    /// Share of new flows per backend before.
    pub before: BTreeMap<IpAddr, f64>,
    /// Share of new flows per backend after.
    pub after: BTreeMap<IpAddr, f64>,
    /// Fraction of the table (of new flows' hash space) that changes
    /// backend; absent for a VIP added or removed, where nothing moves
    /// from one backend to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_fraction: Option<f64>,
    /// The VIP's client affinity before and after, when it changes: new
    /// flows are hashed by another key from then on (`moved_fraction` is
    /// then [`moved_by_rehash`]'s). Absent otherwise, and from an lbd
    /// before affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<AffinityChange>,
    /// Backends the change puts back into rotation that ramp up to their
    /// weight (the VIP's `slow_start_s`). Absent when none does, and from
    /// an lbd before slow start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStartPlan>,
}

/// The backends of a change's VIP that begin a slow start: `after` shows
/// their first step's share in a change's answer (what the data plane
/// does now) and their full weight's in a dry run (where the change
/// leads), so the operator is told which, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowStartPlan {
    /// The VIP's `slow_start_s`.
    pub seconds: u64,
    /// The backends that ramp.
    pub backends: Vec<IpAddr>,
}

/// Marks in `plans` the backends that begin a slow start, by VIP
/// (`begun`, with each VIP's `slow_start_s`); a VIP whose shares do not
/// change has no plan, and gets none for it.
pub(crate) fn note_slow_starts(
    plans: &mut [VipPlan],
    begun: &BTreeMap<crate::vip_id::VipId, (Duration, Vec<IpAddr>)>,
) {
    for plan in plans {
        let ramps = plan
            .vip
            .parse::<crate::vip_id::VipId>()
            .ok()
            .and_then(|id| begun.get(&id));
        if let Some((duration, backends)) = ramps {
            plan.slow_start = Some(SlowStartPlan {
                seconds: duration.as_secs(),
                backends: backends.clone(),
            });
        }
    }
}

/// A VIP's client affinity before and after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinityChange {
    /// Before.
    #[serde(with = "wire_name::one")]
    pub before: Affinity,
    /// After.
    #[serde(with = "wire_name::one")]
    pub after: Affinity,
}

impl AffinityChange {
    /// The change from `before` to `after`, if they differ.
    pub fn of(before: Affinity, after: Affinity) -> Option<Self> {
        (before != after).then_some(Self { before, after })
    }
}

/// The share of new flows that go to another backend when a VIP's flows
/// are hashed by another key (its affinity changes) while its backends'
/// shares go from `before` to `after`: the two picks of a flow are then
/// independent, so it stays only where both name the same backend, with
/// probability the sum over backends of the products of their shares.
/// Which flows move is not known, only how many do in expectation.
pub(crate) fn moved_by_rehash(
    before: &BTreeMap<IpAddr, f64>,
    after: &BTreeMap<IpAddr, f64>,
) -> f64 {
    let stays: f64 = before
        .iter()
        .map(|(address, share)| share * after.get(address).copied().unwrap_or(0.0))
        .sum();
    (1.0 - stays).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rehash_moves_what_two_independent_picks_disagree_on() {
        let shares = |list: &[(&str, f64)]| -> BTreeMap<IpAddr, f64> {
            list.iter().map(|(a, s)| (a.parse().unwrap(), *s)).collect()
        };
        let halves = shares(&[("198.18.0.11", 0.5), ("198.18.0.12", 0.5)]);
        assert!((moved_by_rehash(&halves, &halves) - 0.5).abs() < 1e-9);
        let one = shares(&[("198.18.0.11", 1.0)]);
        assert_eq!(
            moved_by_rehash(&one, &one),
            0.0,
            "one backend: nothing moves"
        );
        let other = shares(&[("198.18.0.12", 1.0)]);
        assert_eq!(moved_by_rehash(&one, &other), 1.0);
        assert_eq!(AffinityChange::of(Affinity::Source, Affinity::Source), None);
    }
}
