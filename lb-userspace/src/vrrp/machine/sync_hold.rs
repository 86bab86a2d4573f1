//! Preemption held back until the peer's connection-table dump arrives:
//! a node that (re)started with replication must not take the VIPs (and
//! their connections) before it holds the flows.

use std::time::{Duration, Instant};

use super::{after, Machine};

impl Machine {
    /// Holds back preemption (not a takeover from a silent master, nor
    /// after a priority-0 advert) until [`Self::peer_synced`] or `limit`
    /// after `now`: a node that (re)started with replication has an empty
    /// connection table, and taking over a live master's VIPs before its
    /// full dump arrived would drop the master's NAT'd connections.
    pub(crate) fn hold_preemption(&mut self, now: Instant, limit: Duration) {
        self.sync_hold_until = Some(after(now, limit));
    }

    /// With replication: a master whose link comes back after an outage
    /// long enough for the peer to have taken over steps down to backup
    /// and holds preemption again, for `limit`, as at start (see
    /// [`Self::link_up`]); and while the link is down it sends no adverts,
    /// so none leaves between the link's return and [`Self::link_up`].
    /// Without it (this not called), a master keeps mastership through an
    /// outage and reclaims the addresses.
    pub(crate) fn hold_after_outages(&mut self, limit: Duration) {
        self.outage_hold = Some(limit);
    }

    /// The peer's full connection-table dump arrived: preemption no
    /// longer waits (see [`Self::hold_preemption`]).
    pub(crate) fn peer_synced(&mut self) {
        self.sync_hold_until = None;
    }

    /// Whether preemption is still held back for the peer's dump at `now`.
    pub(crate) fn holding_for_sync(&self, now: Instant) -> bool {
        self.sync_hold_until.is_some_and(|until| until > now)
    }
}
