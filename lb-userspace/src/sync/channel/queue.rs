//! The master's bounded send queue: batches wait here for the session's
//! writer; a full sync supersedes older batches of its kind, and the oldest
//! incremental batches go first when the queue is full (counted).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::Notify;
use tracing::debug;

use crate::sync::{count_of, Counter, FlowRecord, NatFlowRecord, SyncStats};

/// A batch being written: put back first in line if dropped before the
/// write finished, so a session cut mid-batch loses nothing of it.
pub(super) struct InFlight<'a> {
    pub(super) queue: &'a SendQueue,
    pub(super) batch: Option<QueuedBatch>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.queue.requeue(batch);
        }
    }
}

/// One `send` or `send_nat` call's records, waiting to go out.
#[derive(Debug)]
pub(super) struct QueuedBatch {
    pub(super) full_sync: bool,
    pub(super) records: Records,
}

/// The records of a queued batch: tracked flows or NAT'd flows.
#[derive(Debug)]
pub(super) enum Records {
    /// Sent as Batch frames.
    Flows(Vec<FlowRecord>),
    /// Sent as NatBatch frames.
    Nat(Vec<NatFlowRecord>),
}

impl Records {
    /// Whether both are flows or both NAT flows.
    pub(super) fn same_kind(&self, other: &Records) -> bool {
        matches!(
            (self, other),
            (Records::Flows(_), Records::Flows(_)) | (Records::Nat(_), Records::Nat(_))
        )
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Records::Flows(r) => r.len(),
            Records::Nat(r) => r.len(),
        }
    }
}

/// The master's bounded queue of batches, shared by [`super::Sender`] (which
/// pushes) and its task (which pops).
pub(super) struct SendQueue {
    pub(super) batches: Mutex<VecDeque<QueuedBatch>>,
    pub(super) notify: Notify,
    pub(super) capacity: usize,
    /// Most records queued beyond the newest full sync of each kind.
    pub(super) max_records: usize,
    pub(super) stats: Arc<SyncStats>,
}

impl SendQueue {
    /// Locks the queue. Nothing panics under this lock, and each change
    /// is one push or pop, so poisoning is ignored.
    pub(super) fn lock(&self) -> MutexGuard<'_, VecDeque<QueuedBatch>> {
        self.batches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn push(&self, batch: QueuedBatch) {
        {
            let mut queue = self.lock();
            if batch.full_sync {
                // A complete dump supersedes every older batch of its kind.
                let mut dropped = Vec::new();
                queue.retain(|b| {
                    let keep = !b.records.same_kind(&batch.records);
                    if !keep {
                        dropped.push(b.records.len());
                    }
                    keep
                });
                for records in dropped {
                    self.count_drop(true, records);
                }
            }
            queue.push_back(batch);
            self.shed(&mut queue);
        }
        self.notify.notify_one();
    }

    /// Puts back, first in line, a batch whose sending failed (unless a
    /// newer full sync of its kind is queued: that one supersedes it).
    pub(super) fn requeue(&self, batch: QueuedBatch) {
        let mut queue = self.lock();
        if queue
            .iter()
            .any(|b| b.full_sync && b.records.same_kind(&batch.records))
        {
            self.count_drop(batch.full_sync, batch.records.len());
            return;
        }
        queue.push_front(batch);
        self.shed(&mut queue);
    }

    /// Counts (and logs) one dropped batch.
    pub(super) fn count_drop(&self, full_sync: bool, records: usize) {
        self.stats.add(Counter::DroppedBatches, 1);
        self.stats.add(Counter::DroppedRecords, count_of(records));
        debug!(full_sync, records, "sync queue: batch dropped");
    }

    /// Records queued beyond the newest full sync of each kind.
    pub(super) fn excess_records(queue: &VecDeque<QueuedBatch>) -> usize {
        let newest_full = |flows: bool| {
            queue
                .iter()
                .rev()
                .find(|b| b.full_sync && matches!(b.records, Records::Flows(_)) == flows)
                .map_or(0, |b| b.records.len())
        };
        let total: usize = queue.iter().map(|b| b.records.len()).sum();
        total
            .saturating_sub(newest_full(true))
            .saturating_sub(newest_full(false))
    }

    pub(super) fn pop(&self) -> Option<QueuedBatch> {
        self.lock().pop_front()
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Brings an over-full queue back to its bounds (batches, and records
    /// beyond the newest full syncs): drops the oldest
    /// incremental batch (a later full sync repairs what it carried) or,
    /// when every batch is a full sync, the oldest one superseded by a
    /// newer full sync of the same records (flows or NAT flows) behind it.
    pub(super) fn shed(&self, queue: &mut VecDeque<QueuedBatch>) {
        while queue.len() > self.capacity || Self::excess_records(queue) > self.max_records {
            let superseded = |(i, b): (usize, &QueuedBatch)| {
                queue
                    .iter()
                    .skip(i + 1)
                    .any(|later| later.records.same_kind(&b.records))
            };
            let at = queue
                .iter()
                .position(|b| !b.full_sync)
                .or_else(|| queue.iter().enumerate().position(superseded))
                .unwrap_or(0);
            let Some(dropped) = queue.remove(at) else {
                return;
            };
            self.count_drop(dropped.full_sync, dropped.records.len());
        }
    }
}
