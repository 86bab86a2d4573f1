//! What a walk picks to send: the connection table's flows that go out
//! (its scan's for the peers without a new session, every entry for those
//! with one), read in one pass, after the NAT flow table's scan.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use lb_common::{FlowEntry, FlowKey};

use super::{
    nat_scan::{scan_nat, NatScan, NatScanned},
    schedule::Planned,
    tables::Tables,
    CANCEL_EVERY,
};
use crate::{
    daemon::replication::{record, sends, Roles, Topology},
    reconcile::VipId,
    sync::FlowRecord,
};

/// What a walk needs, taken from the engine on the loop at its start.
pub(in crate::daemon::replication) struct WalkInput {
    pub(in crate::daemon::replication) planned: Planned,
    pub(in crate::daemon::replication) topology: Topology,
    /// See [`backend_names`](crate::daemon::replication::records::backend_names).
    pub(in crate::daemon::replication) names: HashMap<u32, (VipId, IpAddr, u32)>,
    /// A pair's roles (which VIPs' flows this node streams).
    pub(in crate::daemon::replication) roles: Roles,
    /// The NAT flow table's scan, when one is due (see [`NatScan`]).
    pub(in crate::daemon::replication) nat: Option<NatScan>,
}

/// What a walk read: the records it sends, each kind as one allocation
/// that every peer's queue shares (made off the loop, with the walk).
#[derive(Debug)]
pub(in crate::daemon::replication) struct Collected {
    /// The connection table's.
    pub(in crate::daemon::replication) flows: Split<FlowRecord>,
    /// The NAT flow table's, if it was scanned.
    pub(in crate::daemon::replication) nat: Option<NatScanned>,
}

/// One table's records from one walk: those of the walk's scan, for the
/// peers without a new session, and every entry, for those with one.
/// Read in one pass: a peer's new session no longer makes every peer's
/// batch a dump of the whole table, copies included (O(N²) tables per
/// restart in an N-node mesh).
#[derive(Debug)]
pub(in crate::daemon::replication) struct Split<T> {
    /// The records of the walk's [`Planned::scan`] (empty unless
    /// [`Planned::rest`]).
    pub(in crate::daemon::replication) rest: Arc<[T]>,
    /// Every entry's record, copies included, when
    /// [`Planned::session`].
    pub(in crate::daemon::replication) session: Option<Arc<[T]>>,
}

impl<T> Split<T> {
    /// Records for the peers without a new session only (tests: a walk
    /// made by hand).
    #[cfg(test)]
    pub(in crate::daemon::replication) fn rest(records: Vec<T>) -> Self {
        Self {
            rest: records.into(),
            session: None,
        }
    }

    /// The larger set's size (what a full dump from this walk sent a
    /// peer).
    pub(in crate::daemon::replication) fn dump_len(&self) -> usize {
        self.session
            .as_ref()
            .map_or(self.rest.len(), |s| s.len().max(self.rest.len()))
    }
}

/// The walk `input` plans over `tables`: the NAT flow table's scan, if
/// due, then the connection table's walk; None when `cancel` was set
/// meanwhile.
pub(in crate::daemon::replication) fn walk(
    tables: &dyn Tables,
    mut input: WalkInput,
    cancel: &AtomicBool,
) -> Walked {
    let nat = match input.nat.take() {
        Some(scan) => Some(scan_nat(tables, scan, &input, cancel)?),
        None => None,
    };
    let flows = collect(tables.flows(), &input, cancel)?;
    Some(Collected { flows, nat })
}

/// The records a walk of the connection table's `flows` sends as
/// `input` says, in one pass: its scan's for the peers without a new
/// session, every entry's for those with one; None when `cancel` was set
/// meanwhile.
pub(in crate::daemon::replication) fn collect(
    flows: impl IntoIterator<Item = (FlowKey, FlowEntry)>,
    input: &WalkInput,
    cancel: &AtomicBool,
) -> Option<Split<FlowRecord>> {
    let (topology, planned) = (input.topology, input.planned);
    let mut rest = Vec::new();
    let mut all = Vec::new();
    for (read, (key, entry)) in flows.into_iter().enumerate() {
        if (read + 1).is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            return None;
        }
        let to_rest = planned.rest && sends(topology, planned.scan, entry.last_seen_ns);
        if !to_rest && !planned.session {
            continue;
        }
        let Some(record) = record(&key, &entry, &input.names, planned.started_ns) else {
            continue;
        };
        if topology == Topology::VrrpPair && !input.roles.sends(record.vip) {
            continue;
        }
        if to_rest {
            rest.push(record);
        }
        if planned.session {
            all.push(record);
        }
    }
    Some(Split {
        rest: rest.into(),
        session: planned.session.then(|| all.into()),
    })
}

/// A walk's outcome: its records, None if it failed or was cancelled.
pub(in crate::daemon::replication) type Walked = Option<Collected>;
