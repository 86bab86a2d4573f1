//! The NAT flow table's part of the status: per NAT VIP its address and
//! port usage, the table's fill, and whether a backend's flows are
//! counted as of its drain; all from the NAT reaper's last sweep.

use std::time::Instant;

use crate::{
    api::schema::{NatStatus, VipNatStatus},
    config::VipNat,
    daemon::engine::Engine,
    model::{AdminState, VipModel},
    nat::reaper::SweepStats,
    vip_id::VipId,
};

/// Whether `sweep` (the NAT reaper's last complete one) counts a
/// backend's flows as of its admin state: it exists, and for a draining
/// backend it started after the drain did (a flow that ended before the
/// drain is not in an earlier sweep's count, but one opened just before
/// may be missing from it).
pub(super) fn counted_since(sweep: Option<&SweepStats>, admin: &AdminState, now: Instant) -> bool {
    let Some(sweep) = sweep else {
        return false;
    };
    match admin {
        AdminState::Draining { since, .. } => {
            let ago = now.saturating_duration_since(*since).as_nanos();
            let since_ns = u128::from(crate::clock::monotonic_ns()).saturating_sub(ago);
            u128::from(sweep.started_ns) >= since_ns
        }
        _ => true,
    }
}

impl Engine {
    /// A NAT VIP's NAT address and port usage, from the reaper's last
    /// complete sweep.
    pub(super) fn vip_nat_status(&self, id: &VipId, vip: &VipModel, nat: VipNat) -> VipNatStatus {
        let applied = self.balancer.vips().get(id);
        let ids: Vec<u32> = applied
            .map(|a| a.backends.values().map(|b| b.id).collect())
            .unwrap_or_default();
        let sweep = self.nat.reaper.last_sweep();
        let ports_in_use = sweep.map_or(0, |s| {
            // A NAT backend listens on its own port, if it has one.
            let backends = vip
                .backends
                .iter()
                .map(|(address, b)| (*address, b.config.port.unwrap_or(id.port)));
            s.busiest_towards(nat.source, id.protocol.number(), backends)
        });
        let flows = sweep.map_or(0, |s| {
            ids.iter()
                .filter_map(|b| s.by_backend.get(b))
                .map(|c| c.live + c.closing + c.idle)
                .sum()
        });
        VipNatStatus {
            source: nat.source,
            port_min: nat.port_min,
            port_max: nat.port_max,
            ports_in_use,
            flows,
        }
    }

    /// The NAT flow table in the status (None while no VIP is in NAT
    /// mode and the table is empty).
    pub(super) fn nat_status(&self) -> Option<NatStatus> {
        let sweep = self.nat.reaper.last_sweep();
        let in_use = self
            .model
            .vips
            .values()
            .any(|v| v.config.forwarding == lb_common::Mode::Nat);
        if !in_use && sweep.is_none_or(|s| s.flows.is_empty()) {
            return None;
        }
        let reaped = self.nat.reaper.reaped();
        Some(NatStatus {
            flows: sweep
                .map(|s| {
                    s.flows
                        .iter()
                        .map(|(state, n)| ((*state).to_owned(), *n))
                        .collect()
                })
                .unwrap_or_default(),
            capacity: u64::from(self.dataplane.sizes().nat_flows),
            memory_bytes: self.dataplane.nat_memory_bytes(),
            swept: sweep.is_some(),
            expired: reaped.expired,
            orphans: reaped.orphans,
            backend_gone: reaped.backend_gone,
            reap_failed: reaped.failed,
            read_errors: self.nat.reaper.read_errors,
            pressure: self.nat.pressure.on(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sweep_started(ago: Duration) -> SweepStats {
        let now = crate::clock::monotonic_ns();
        SweepStats {
            started_ns: now - ago.as_nanos() as u64,
            ..SweepStats::default()
        }
    }

    #[test]
    fn a_drained_nat_backend_is_counted_only_by_a_sweep_that_began_after_its_drain() {
        let now = Instant::now();
        let draining = AdminState::Draining {
            since: now - Duration::from_secs(5),
            deadline: None,
        };
        // No sweep finished yet (a restart): nothing is counted.
        assert!(!counted_since(None, &AdminState::Enabled, now));
        assert!(!counted_since(None, &draining, now));
        // A sweep that began before the drain: no answer for the drain.
        let before = sweep_started(Duration::from_secs(8));
        assert!(!counted_since(Some(&before), &draining, now));
        assert!(counted_since(Some(&before), &AdminState::Enabled, now));
        // One that began after it.
        let after = sweep_started(Duration::from_secs(2));
        assert!(counted_since(Some(&after), &draining, now));
    }
}
