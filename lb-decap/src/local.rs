//! Whether the VIPs are local on this backend. The program counts a
//! packet unwrapped (`decap_ipip`, `decap_gue`) before the stack sees the
//! inner packet; if no interface holds its VIP (the `ip addr add VIP/32
//! dev lo` step forgotten, or undone), the kernel drops it, or with
//! `ip_forward=1` routes client -> VIP back out, while every counter says
//! all is well. `check`, each apply and `status` say so for each such
//! VIP, and `run` checks again every [`VIP_INTERVAL`], saying only what
//! changed.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::debug;

use crate::{config::Vip, interface};

/// How often `run` checks the VIPs again (one getifaddrs, and a route
/// lookup per VIP no interface holds): a VIP taken off `lo` is noticed
/// within about this long, without a check at every 2 s look.
pub const VIP_INTERVAL: Duration = Duration::from_secs(30);

/// The VIP addresses (each once, sorted) the kernel would not deliver
/// here: no interface holds them and no local route (AnyIP) covers them.
pub fn not_local(vips: &[Vip]) -> anyhow::Result<BTreeSet<IpAddr>> {
    let held: BTreeSet<IpAddr> = interface::every_address()?
        .into_iter()
        .map(|(_, address)| address)
        .collect();
    let mut missing = BTreeSet::new();
    for address in vips.iter().map(|v| v.addr).collect::<BTreeSet<_>>() {
        if held.contains(&address) {
            continue;
        }
        match interface::is_local(address) {
            Ok(true) => {}
            Ok(false) => {
                missing.insert(address);
            }
            Err(error) => {
                // No interface holds it: that is what the warning says.
                debug!(%address, error = format!("{error:#}"), "route lookup failed");
                missing.insert(address);
            }
        }
    }
    Ok(missing)
}

/// The warning for a VIP that is not local, with the way out.
pub fn warning(address: IpAddr) -> String {
    let add = match address {
        IpAddr::V4(_) => format!("ip addr add {address}/32 dev lo"),
        IpAddr::V6(_) => format!("ip -6 addr add {address}/128 dev lo"),
    };
    format!(
        "VIP {address} is not local: no interface holds it, so the kernel drops its unwrapped packets (or, with ip_forward=1, routes them back out) although they count as unwrapped; add it: {add}"
    )
}

/// The warnings for `vips` now (one per VIP address not local, or one
/// saying the check failed).
pub fn warnings(vips: &[Vip]) -> Vec<String> {
    match not_local(vips) {
        Ok(missing) => missing.into_iter().map(warning).collect(),
        Err(error) => vec![format!(
            "could not check whether the VIPs are local: {error:#}"
        )],
    }
}

/// What a periodic check found changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A VIP no longer local (warned about).
    Lost(IpAddr),
    /// A VIP local again.
    Back(IpAddr),
}

/// `run`'s periodic check of its VIPs: at most every [`VIP_INTERVAL`],
/// and only changes are reported (an apply has already warned about the
/// VIPs missing then).
#[derive(Debug, Clone)]
pub struct VipWatch {
    missing: BTreeSet<IpAddr>,
    next: Instant,
}

impl VipWatch {
    /// After an apply at `now` that found `missing` not local.
    pub fn new(missing: BTreeSet<IpAddr>, now: Instant) -> Self {
        Self {
            missing,
            next: now + VIP_INTERVAL,
        }
    }

    /// The VIPs last found not local.
    pub fn missing(&self) -> &BTreeSet<IpAddr> {
        &self.missing
    }

    /// Whether a check is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Takes a check's result at `now`: what changed since the last.
    pub fn update(&mut self, missing: BTreeSet<IpAddr>, now: Instant) -> Vec<Change> {
        let mut changes: Vec<Change> = missing
            .difference(&self.missing)
            .map(|a| Change::Lost(*a))
            .collect();
        changes.extend(self.missing.difference(&missing).map(|a| Change::Back(*a)));
        self.missing = missing;
        self.next = now + VIP_INTERVAL;
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|a| a.parse().expect("ip")).collect()
    }

    /// Checks come at most every VIP_INTERVAL, and only changes are
    /// reported: a VIP gone is said once, not at every look.
    #[test]
    fn the_periodic_check_is_rate_limited_and_reports_changes_once() {
        let start = Instant::now();
        let mut watch = VipWatch::new(set(&[]), start);
        assert!(!watch.due(start));
        assert!(!watch.due(start + Duration::from_secs(2)));
        assert!(watch.due(start + VIP_INTERVAL));
        let at = start + VIP_INTERVAL;
        assert_eq!(
            watch.update(set(&["198.18.0.100"]), at),
            [Change::Lost("198.18.0.100".parse().expect("ip"))]
        );
        assert!(!watch.due(at + Duration::from_secs(2)));
        let later = at + VIP_INTERVAL;
        assert!(watch.update(set(&["198.18.0.100"]), later).is_empty());
        assert_eq!(
            watch.update(set(&[]), later + VIP_INTERVAL),
            [Change::Back("198.18.0.100".parse().expect("ip"))]
        );
    }

    #[test]
    fn the_warning_names_the_vip_and_the_command() {
        let v4 = warning("198.18.0.100".parse().expect("ip"));
        assert!(v4.starts_with("VIP 198.18.0.100 is not local"), "{v4}");
        assert!(v4.ends_with("ip addr add 198.18.0.100/32 dev lo"), "{v4}");
        let v6 = warning("2001:2::100".parse().expect("ip"));
        assert!(
            v6.ends_with("ip -6 addr add 2001:2::100/128 dev lo"),
            "{v6}"
        );
    }
}
