//! What a change does to each VIP's new flows: the answer to every change
//! and `--dry-run`, read either off the model (`lbctl config check`) or off
//! the balancer's staged tables (lbd). Its own module so both can produce
//! it without depending on each other.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

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
}
