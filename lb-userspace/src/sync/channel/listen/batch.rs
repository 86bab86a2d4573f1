//! What the listener hands the daemon: one frame's worth of records from
//! an authenticated master, and which kind they are.

use crate::sync::{FlowRecord, NatFlowRecord};

/// A batch as the backup receives it: one frame's worth of records (at
/// most [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS)),
/// from an authenticated master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBatch {
    /// The master's node id (as authenticated by the handshake).
    pub peer: String,
    /// The protocol version of the session it came over: below
    /// [`NAT_BATCH_VERSION`](crate::sync::wire::NAT_BATCH_VERSION) (a
    /// master of an earlier release) no NAT'd flows come, so its dump of
    /// the flows is all of its dump.
    pub version: u16,
    /// Which records the frame carried (an empty full sync carries none,
    /// so only this tells which dump it completes).
    pub kind: BatchKind,
    /// Part of a full sync: a complete dump of the master's flows.
    pub full_sync: bool,
    /// The last frame of one batch the master was given (a batch above
    /// [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS) arrives
    /// as several frames); with `full_sync`, the full sync is complete.
    pub last: bool,
    /// The flows, in the master's order (empty in a NAT batch).
    pub records: Vec<FlowRecord>,
    /// The NAT'd flows, in the master's order (empty in a flow batch).
    pub nat: Vec<NatFlowRecord>,
    /// When the frame was decoded (CLOCK_MONOTONIC, the data plane's
    /// clock, in ns). Records' ages count from here, not from their
    /// install: time spent in the receive queue must not make a copy look
    /// fresher than an entry this node touched meanwhile.
    pub received_ns: u64,
}

/// The records a [`ReceivedBatch`] carries, as its frame's type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchKind {
    /// Tracked flows (a Batch frame).
    Flows,
    /// NAT'd flows (a NatBatch frame).
    Nat,
}
