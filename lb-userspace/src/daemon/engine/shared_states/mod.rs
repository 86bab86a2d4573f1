//! Backend states shared with the sync peers: an operator's drain,
//! maintenance or enable made on one node of a VRRP pair or a full mesh
//! reaches the others over the sync channel (`sync::wire::backend_states`,
//! protocol version 4), so the node that takes the traffic next (after a
//! failover, or when the routers move flows) treats the backend as the
//! operator asked, and a drain's wait on one node is not undone by new
//! flows another node sends the backend.
//!
//! Each change an operator makes on a node that shares is stamped with
//! the wall clock (`Stamp`), kept in the backend state file, and sent with
//! the node's states every replication tick (a session sends them when
//! they change, and every 10 s). A node takes a peer's state when it is
//! later than its own (`merge`), records it, and passes it on with the
//! same time, so all nodes converge on the latest change wherever it was
//! made. The nodes' clocks must agree (NTP) to better than the time
//! between two conflicting changes made on different nodes. A drain's
//! deadline is wall clock too: each node ends it on its own at the same
//! time. A peer of an earlier release (protocol below 4) neither sends nor
//! takes states: drain there too, as the change's warning says.

mod merge;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Instant, SystemTime},
};

use tracing::{info, warn};

use self::merge::{later_from_peers, own_records, serves, Later, Taken, CLOCK_AHEAD_TOLERANCE_MS};
use super::{
    admin_state::{snapshot_with, unix_ms},
    change::edit_warnings,
    BackendKey, Engine,
};
use crate::{
    config::Config,
    model::{AdminState, Edit, Model},
    sync::{log_limit::LogLimit, wire::BackendStateRecord},
};

/// When a backend's state was made, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Wall clock, milliseconds since the epoch, on the node where an
    /// operator made it.
    pub(crate) unix_ms: u64,
    /// The sync peer this node took it from (the node where it was made,
    /// or one that had taken it; None: made on this node, or restored
    /// from the backend state file).
    pub(crate) from: Option<Arc<str>>,
}

/// The stamps of the backends whose state an operator set (on this node
/// or a peer).
pub(crate) type Stamps = BTreeMap<BackendKey, Stamp>;

/// The warning that a sync peer's clock runs ahead of this node's: once a
/// minute (a peer repeats it at every tick).
#[derive(Debug, Clone)]
pub(crate) struct ClockWarnings(LogLimit);

impl Default for ClockWarnings {
    fn default() -> Self {
        Self(LogLimit::new(std::time::Duration::from_secs(60)))
    }
}

/// Whether `config` makes this node share backend states: it replicates
/// flows to sync peers (`[sync]`, or a VRRP instance's `sync_peer` with
/// its listener and key).
pub(crate) fn shares_backend_states(config: &Config) -> bool {
    config.sync.is_some()
        || config
            .vrrp
            .iter()
            .any(|v| v.sync_peer.is_some() && v.sync_listen.is_some() && v.sync_key_file.is_some())
}

/// `stamps` after the operator's `edit` took `before` to `after` at wall
/// clock `wall`: the backend it names gets the time, whether or not its
/// state changed here (an enable of a backend this node holds enabled
/// still overrides an earlier drain a peer made that has not arrived
/// yet: the operator's latest word wins).
pub(super) fn stamped(stamps: &Stamps, edit: &Edit, after: &Model, wall: SystemTime) -> Stamps {
    let (vip, backend) = match edit {
        Edit::Enable(vip, backend) | Edit::Maintenance(vip, backend) => (*vip, *backend),
        Edit::Drain { vip, backend, .. } => (*vip, *backend),
        _ => return stamps.clone(),
    };
    let mut next = stamps.clone();
    if serves(after, &(vip, backend)) {
        next.insert(
            (vip, backend),
            Stamp {
                unix_ms: unix_ms(wall),
                from: None,
            },
        );
    }
    next
}

impl Engine {
    /// The stamps after the operator's `edit` (the running model becoming
    /// `next`), if this node shares its backend states (else none).
    pub(super) fn stamps_after(&self, edit: &Edit, next: &Model) -> Stamps {
        if !self.admin.shares {
            return Stamps::new();
        }
        stamped(&self.admin.stamps, edit, next, SystemTime::now())
    }

    /// The sync peers (by address) known to take this node's backend
    /// states (none when it shares none).
    pub(super) fn peers_taking_states(&self) -> Vec<std::net::IpAddr> {
        match &self.replication {
            Some(replication) if self.admin.shares => {
                replication.peers_taking_states(Instant::now())
            }
            _ => Vec::new(),
        }
    }

    /// Each replication tick: takes the peers' states that are later than
    /// this node's, then gives the senders this node's states to send.
    pub(super) fn share_backend_states(&mut self) {
        if !self.admin.shares {
            return;
        }
        let now = Instant::now();
        let wall = SystemTime::now();
        let Some(replication) = &self.replication else {
            return;
        };
        let peers = replication.peer_backend_states(now);
        let Later {
            taken,
            clocks_ahead,
        } = later_from_peers(&self.model, &self.admin.stamps, &peers, now, wall);
        for (peer, ahead_ms) in clocks_ahead {
            if let Some(left_out) = self.admin.clock_warnings.0.allow(now) {
                warn!(peer, ahead_s = ahead_ms / 1000, tolerance_s = CLOCK_AHEAD_TOLERANCE_MS / 1000, left_out, "a sync peer's backend states are stamped ahead of this node's clock by more than the tolerance: none of them is taken (they would override every change made here until then); set both clocks right (NTP)");
            }
        }
        if !taken.is_empty() {
            self.take_peer_states(&taken);
        }
        let model = &self.model;
        self.admin.stamps.retain(|key, _| serves(model, key));
        // The same states give the same records: a drain's times are
        // turned into wall clock once, not again at every tick (the
        // clocks' readings would move them by a millisecond now and then,
        // and each such change would be sent).
        let held = snapshot_with(&self.model, &self.admin.stamps);
        let own = match &self.admin.shared {
            Some((sent, records)) if *sent == held => Arc::clone(records),
            _ => {
                let records: Arc<[BackendStateRecord]> =
                    own_records(&self.model, &self.admin.stamps, now, wall).into();
                self.admin.shared = Some((held, Arc::clone(&records)));
                records
            }
        };
        if let Some(replication) = &self.replication {
            replication.share_backend_states(own);
        }
    }

    /// Makes the peers' `taken` states this node's: recorded in the
    /// backend state file first (a state that cannot be recorded is not
    /// taken; the next tick tries again), then served.
    fn take_peer_states(&mut self, taken: &[Taken]) {
        let mut next = self.model.clone();
        let mut stamps = self.admin.stamps.clone();
        for t in taken {
            let (vip, address) = t.key;
            if next.set_admin(&vip, address, t.admin).is_err() {
                continue;
            }
            if let Some(backend) = next
                .vips
                .get_mut(&vip)
                .and_then(|v| v.backends.get_mut(&address))
            {
                backend.drain_timed_out = t.drain_timed_out;
            }
            stamps.insert(t.key, t.stamp.clone());
        }
        // What the same change made here would warn of (a VIP left with
        // no backend for new flows), logged: there is no answer to put
        // it in.
        let warnings = taken_warnings(&self.model, &next, &self.config, taken);
        if let Err(error) = self.record_admin_states(&next, &stamps) {
            warn!(%error, "backend states from the sync peers not taken: they cannot be recorded (tried again at the next tick)");
            return;
        }
        if next != self.model {
            if let Err(error) = self.commit(next) {
                warn!(%error, "backend states from the sync peers not taken: the data plane refused them (tried again at the next tick)");
                self.follow_admin_states();
                return;
            }
        }
        self.admin.stamps = stamps;
        for warning in warnings {
            warn!(%warning, "backend state taken from a sync peer applied with a warning");
        }
        let wall_ms = unix_ms(SystemTime::now());
        for t in taken {
            let peer = t.stamp.from.as_deref().unwrap_or("?");
            let ago_s = wall_ms.saturating_sub(t.stamp.unix_ms) / 1000;
            info!(vip = %t.key.0, backend = %t.key.1, state = %t.admin.state(), peer, made_s_ago = ago_s, "backend state taken from a sync peer (an operator's change there, later than this node's)");
        }
    }
}

/// What the same changes made here would warn of, `current` becoming
/// `next` by taking `taken` (see `change::edit_warnings`), each once.
fn taken_warnings(current: &Model, next: &Model, running: &Config, taken: &[Taken]) -> Vec<String> {
    let mut warnings: Vec<String> = Vec::new();
    for t in taken {
        for warning in edit_warnings(current, next, running, &edit_of(t)) {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    warnings
}

/// The operator's edit that makes a backend what `taken` says (for the
/// warnings the same change made here would bring).
fn edit_of(taken: &Taken) -> Edit {
    let (vip, backend) = taken.key;
    match taken.admin {
        AdminState::Enabled => Edit::Enable(vip, backend),
        AdminState::Maintenance => Edit::Maintenance(vip, backend),
        AdminState::Draining { .. } => Edit::Drain {
            vip,
            backend,
            timeout_s: None,
        },
    }
}
