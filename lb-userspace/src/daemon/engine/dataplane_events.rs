//! Events the data plane reports on its ring (no live backend, a flow
//! the connection table refused, the routed modes' own): named by VIP,
//! handed to the routed modes, and logged at a bounded rate. Apart
//! because they arrive on their own, outside any change.

use tracing::warn;

use super::Engine;
use crate::nat::events::NatEvents;

impl Engine {
    /// Logs an event the data plane reported, naming the VIP, and acts on
    /// the routed ones (see `nat`).
    pub(crate) fn on_dataplane_event(&mut self, event: &lb_common::DataplaneEvent) {
        let vip = self
            .balancer
            .vips()
            .iter()
            .find(|(_, v)| v.id == event.vip_id)
            .map_or_else(
                || format!("VIP id {}", event.vip_id),
                |(id, _)| id.to_string(),
            );
        if self.on_nat_event(event, &vip) {
            return;
        }
        let now = std::time::Duration::from_nanos(crate::clock::monotonic_ns());
        log_dataplane_event(&mut self.nat.events, event, &vip, now);
    }
}

/// Logs a data-plane event that is not a routed one (no live backend, the
/// connection table refused a flow, an unknown kind) about VIP `vip` at
/// `now`: once a minute per VIP and kind, with how many were left out
/// since. The program already sends at most one a second per CPU and
/// kind, which on a many-core node during an outage or a flood is still
/// a line a second per CPU; the counters carry the volume.
fn log_dataplane_event(
    limits: &mut NatEvents,
    event: &lb_common::DataplaneEvent,
    vip: &str,
    now: std::time::Duration,
) {
    let Some(suppressed) = limits.log_for_vip_counting(event.kind, event.vip_id, now) else {
        return;
    };
    let client = crate::reconcile::words_addr(event.flow.src, event.flow.family);
    let port = u16::from_be(event.flow.sport);
    match event.kind {
        lb_common::consts::EVENT_NO_BACKEND => warn!(
            %vip, %client, port, suppressed, "data plane: packet for a VIP with no live backend dropped (logged once a minute per VIP, with the number left out since; see lbd_packets_total{{reason=\"no_backend\"}})"
        ),
        lb_common::consts::EVENT_CONNTRACK_INSERT_FAILED => warn!(
            %vip, %client, port, suppressed, "data plane: the connection table refused a flow, forwarded by hash only (logged once a minute per VIP, with the number left out since; see lbd_conntrack_events_total{{event=\"insert_failed\"}})"
        ),
        other => {
            warn!(kind = other, %vip, suppressed, "data plane: unknown event (logged once a minute per VIP and kind)")
        }
    }
}

#[cfg(test)]
mod tests;
