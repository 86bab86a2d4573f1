//! What the daemon gives a [`Sender`]: which batch a scan read ([`Dump`],
//! [`Read`]) and the `send` calls that queue it. Apart from the handle
//! because these rules (which full sync goes out, which is dropped) are
//! the queue's side of the sender.

use std::{sync::Arc, time::Instant};

use super::super::queue::{QueuedBatch, Records};
use super::Sender;
use crate::sync::{FlowRecord, NatFlowRecord};

/// Which batch a daemon's scan gives the sender ([`Sender::send_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dump {
    /// Incremental: the flows touched since the last scan.
    Incremental,
    /// A periodic full sync: a full mesh's leaves out the copies of other
    /// nodes' flows, so it never stands in for a session's dump: queued
    /// while one waits, it is dropped (the batches after that dump and
    /// the next periodic one bring what it carried).
    Periodic,
    /// A new session's full sync: everything, copies included (a node
    /// that joins or comes back learns the flows of a node that is gone).
    Session,
}

impl Dump {
    /// A batch given to [`Sender::send`]: its full sync is complete.
    fn given(full_sync: bool) -> Self {
        if full_sync {
            Dump::Session
        } else {
            Dump::Incremental
        }
    }

    /// Whether the batch is a full sync (flagged so on the wire).
    fn full_sync(self) -> bool {
        self != Dump::Incremental
    }

    /// Whether it leaves nothing out (see `QueuedBatch::complete`).
    fn complete(self) -> bool {
        self == Dump::Session
    }
}

/// How the records of a batch given to [`Sender::send_read`] were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// Incremental, or which full sync.
    pub(crate) dump: Dump,
    /// The session during which they were read: the value
    /// [`Sender::sessions`] had when the walk that read them started. A
    /// full sync read before the current session never goes out.
    pub(crate) session: u64,
    /// When the records' ages were taken (the walk's start): the time
    /// since is added to them when they go out.
    pub(crate) at: Instant,
}

impl Sender {
    /// Queues `records` to go out (split into frames of at most
    /// [`MAX_BATCH_RECORDS`](crate::sync::wire::MAX_BATCH_RECORDS)),
    /// without waiting. `full_sync` marks a complete dump of the flows (an
    /// empty one is sent too: "no flows");
    /// an empty incremental batch is ignored. When the queue holds
    /// [`SEND_QUEUE_CAPACITY`](crate::sync::channel::SEND_QUEUE_CAPACITY) batches, the oldest incremental one is
    /// dropped and counted: send a full sync after a drop to repair it.
    ///
    /// Incremental batches wait in the queue while the peer is down; a full
    /// sync queued then is dropped when the next session starts (it would
    /// pass for that session's dump, which the daemon sends on each new
    /// [`Sender::sessions`]). The records' ages are taken as of this call:
    /// the time until their frame is written is added to them. One cut off by a broken connection is sent
    /// again, whole, on the next session (records are state, so a repeat
    /// is harmless); but frames written just before a connection dies may
    /// be lost unnoticed (there are no acks), which is why the daemon
    /// sends a full sync on each new session.
    pub fn send(&self, records: Vec<FlowRecord>, full_sync: bool) {
        self.queue(
            Records::Flows(records.into()),
            Dump::given(full_sync),
            None,
            Instant::now(),
        );
    }

    /// [`Sender::send`] for records read as `read` says: a full sync read
    /// before the current session is dropped (see [`Sender::send`]), also
    /// when it is queued after the session began; a periodic dump never
    /// takes the place of a session's dump still queued (it is dropped
    /// instead: see [`Dump::Periodic`]).
    /// `records` may be shared with other peers' senders: each queue
    /// holds the one allocation.
    pub(crate) fn send_read(&self, records: Arc<[FlowRecord]>, read: Read) {
        self.queue(
            Records::Flows(records),
            read.dump,
            Some(read.session),
            read.at,
        );
    }

    /// Queues NAT'd flows to go out as NatBatch frames, with the same
    /// rules as [`Sender::send`] (a full sync here is a complete dump of
    /// the NAT flows).
    pub fn send_nat(&self, records: Vec<NatFlowRecord>, full_sync: bool) {
        self.queue(
            Records::Nat(records.into()),
            Dump::given(full_sync),
            None,
            Instant::now(),
        );
    }

    /// [`Sender::send_nat`] for records read as `read` says, as
    /// [`Sender::send_read`].
    pub(crate) fn send_nat_read(&self, records: Arc<[NatFlowRecord]>, read: Read) {
        self.queue(
            Records::Nat(records),
            read.dump,
            Some(read.session),
            read.at,
        );
    }

    fn queue(&self, records: Records, dump: Dump, read_in: Option<u64>, aged_at: Instant) {
        if records.is_empty() && dump == Dump::Incremental {
            return;
        }
        self.shared.queue.push(QueuedBatch {
            full_sync: dump.full_sync(),
            complete: dump.complete(),
            records,
            read_in,
            aged_at,
        });
    }
}
