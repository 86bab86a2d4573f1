//! The NAT flow table's scan a walk makes before the connection table's:
//! apart because it reads another table, with a window and a cadence of
//! its own.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use lb_common::FlowKey;

use super::{
    collect::{Split, WalkInput},
    tables::Tables,
    CANCEL_EVERY,
};
use crate::{
    daemon::replication::{nat, records::Scan, Topology},
    sync::NatFlowRecord,
};

/// The NAT flow table's scan a walk makes before the connection table's.
/// Why here: a dump reads the whole table (the default one holds 262,144
/// entries, the largest 16 M), every 10 s and for each new session; read
/// on lbd's loop it held the loop as long as a walk of the connection
/// table did.
pub(in crate::daemon::replication) struct NatScan {
    /// What it sends to the peers without a new session (between dumps,
    /// a window of its own: see [`nat::SCAN_MARGIN_NS`]); as the walk's,
    /// read only when [`Planned::rest`](super::Planned::rest).
    pub(in crate::daemon::replication) scan: Scan,
    /// Whether it also reads every NAT'd flow, for the peers owed a new
    /// session's dump (as the walk's [`Planned::session`](super::Planned::session)).
    pub(in crate::daemon::replication) session: bool,
    /// Which entries it leaves out (the topology's).
    pub(in crate::daemon::replication) rule: nat::SendRule,
}

/// A NAT flow table scan's outcome.
#[derive(Debug)]
pub(in crate::daemon::replication) struct NatScanned {
    pub(in crate::daemon::replication) records: Split<NatFlowRecord>,
    /// How long the scan took: the next one between dumps waits
    /// `NAT_SCAN_SPACING` times as long.
    pub(in crate::daemon::replication) took: Duration,
}

/// The NAT'd flows `scan` sends from the NAT flow table of `tables` (see
/// [`nat::nat_records_in`]: its entries streamed, counterparts read by
/// key), a pair's only for the VIPs it holds; None when `cancel` was set
/// meanwhile.
pub(super) fn scan_nat(
    tables: &dyn Tables,
    scan: NatScan,
    input: &WalkInput,
    cancel: &AtomicBool,
) -> Option<NatScanned> {
    let started = Instant::now();
    let cancelled = std::cell::Cell::new(false);
    let entries = tables.nat_flows().enumerate().map_while(|(read, entry)| {
        if (read + 1).is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            cancelled.set(true);
            return None;
        }
        Some(entry)
    });
    let NatScan {
        scan,
        session,
        rule,
    } = scan;
    let lookup = |key: &FlowKey| tables.nat_flow(key);
    let now = input.planned.started_ns;
    let rest = input.planned.rest.then_some(scan);
    let (mut rest, mut all) = if session {
        let (rest, all) = nat::nat_records_with_dump(entries, lookup, rest, now, rule);
        (rest, Some(all))
    } else if let Some(scan) = rest {
        (nat::nat_records_in(entries, lookup, scan, now, rule), None)
    } else {
        (Vec::new(), None)
    };
    if cancelled.get() {
        return None;
    }
    if input.topology == Topology::VrrpPair {
        rest.retain(|r| input.roles.sends(r.vip));
        if let Some(all) = all.as_mut() {
            all.retain(|r| input.roles.sends(r.vip));
        }
    }
    Some(NatScanned {
        records: Split {
            rest: rest.into(),
            session: all.map(Into::into),
        },
        took: started.elapsed(),
    })
}
