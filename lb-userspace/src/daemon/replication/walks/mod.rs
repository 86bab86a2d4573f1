//! The connection table's walk for replication, off lbd's loop, with the
//! NAT flow table's scan.
//!
//! Why: a sending node's replication tick reads the whole connection
//! table (about 155 ns a flow, BENCHMARKS.md; seconds for the largest
//! `conntrack_size`) to pick the flows to send. Made in lbd's loop every
//! tick, it held health events, API calls, drain deadlines, BIRD's answers
//! and the peers' batches behind it. Now, as the flow censuses do (see
//! `engine::flow_census`), the walk reads a second mapping of the table
//! (`FlowTable::remapped`) on a blocking thread, never more than one at a
//! time; its records come back to the loop, which sends them. The NAT
//! flow table's scan (every entry for a dump: about 1 µs an entry, 0.25 s
//! for the default 262,144) is made by the same walk over a second
//! mapping of that table ([`NatScan`]), so the loop reads neither table.
//!
//! [`Walks`] is the bookkeeping as a state machine over time (no clock,
//! no threads): a tick while a walk runs starts none (the next starts at
//! the first tick after it ended, so walks never pile up), and the window
//! of a walk of recent flows starts at the previous walk's *start* (less
//! [`nat::SCAN_MARGIN_NS`](super::nat::SCAN_MARGIN_NS), the stamping clock's lag), so every flow
//! touched while that walk ran is in the next one, and an active flow
//! whose stamp did not move since is not sent again: the data plane
//! re-stamps it at most every
//! [`FLOW_TOUCH_INTERVAL_NS`](lb_common::consts::FLOW_TOUCH_INTERVAL_NS), and on every
//! change of its flags. A new session seen while a walk runs is seen by the
//! next walk (the sessions' marks are read only when one starts), which
//! reads everything for that peer ([`Due`], [`Split`]: the other peers get
//! the walk's own records, read in the same pass); a walk that fails (it
//! panicked) is owed again.
//! [`Walker`] runs the walks: on a blocking thread over the second
//! mapping, or in the loop where there is none (a kernel map, the bench's
//! earlier designs). Dropping it cancels a walk in flight.

mod collect;
mod nat_scan;
mod schedule;
mod tables;
mod walker;

#[cfg(test)]
pub(super) use collect::{collect, Collected};
pub(super) use collect::{walk, Split, WalkInput, Walked};
pub(super) use nat_scan::NatScan;
pub(super) use schedule::{Due, Planned, Walks};
#[cfg(test)]
pub(super) use tables::SharedTables;
pub(super) use tables::Tables;
pub(crate) use walker::walk_ended;
#[cfg(test)]
pub(super) use walker::OffWalk;
pub(super) use walker::{Walk, Walker};

/// Flows a walk reads between two looks at its cancel flag.
const CANCEL_EVERY: usize = 4096;
