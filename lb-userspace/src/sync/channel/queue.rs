//! The master's bounded send queue: batches wait here for the session's
//! writer; a full sync supersedes older batches of its kind (a periodic
//! dump never a new session's dump, which it gives way to), and the oldest
//! incremental batches go first when the queue is full (counted). A full
//! sync read before the current session began never goes out (see
//! [`SendQueue::begin_session`]).

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Instant,
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
        self.queue.writing.store(false, Ordering::Relaxed);
    }
}

/// One `send` or `send_nat` call's records, waiting to go out.
#[derive(Debug)]
pub(super) struct QueuedBatch {
    pub(super) full_sync: bool,
    /// A full sync that leaves nothing out: a new session's dump (in a
    /// full mesh the only one with the copies of other nodes' flows), or
    /// any full sync given to [`super::Sender::send`]. False for a
    /// periodic dump, which may leave those copies out.
    pub(super) complete: bool,
    pub(super) records: Records,
    /// The session (its number, as [`SendQueue::begin_session`] counts
    /// them) during which the records were read; None: when queued. A
    /// full sync read before the current session is stale: see
    /// [`SendQueue::begin_session`].
    pub(super) read_in: Option<u64>,
    /// When the records' ages were taken (a walk's start): the time
    /// since is added to them when their frames are made, however long
    /// they waited (in the walk, in this queue, for a peer down).
    pub(super) aged_at: Instant,
}

impl QueuedBatch {
    /// Whether this batch, queued after `older`, takes its place: a full
    /// sync supersedes every older batch of its kind, except that only a
    /// complete dump supersedes a complete one (a periodic dump never
    /// stands in for a session's dump, see [`QueuedBatch::complete`]).
    pub(super) fn supersedes(&self, older: &QueuedBatch) -> bool {
        self.full_sync
            && self.records.same_kind(&older.records)
            && (self.complete || !older.complete)
    }

    /// Whether `older` is superseded by this batch, or, both incremental
    /// batches of one kind, followed by it (the newest of a kind is
    /// exempt from the queue's record bound, see `SendQueue::exempt`).
    fn supersedes_or_follows(&self, older: &QueuedBatch) -> bool {
        if self.full_sync || older.full_sync {
            self.supersedes(older)
        } else {
            self.records.same_kind(&older.records)
        }
    }

    /// Whether this queued batch keeps `newer`, a full sync of its kind,
    /// out of the queue: a session's dump still waiting when a periodic
    /// one comes.
    fn outranks(&self, newer: &QueuedBatch) -> bool {
        self.complete && !newer.complete && self.records.same_kind(&newer.records)
    }
}

/// The records of a queued batch: tracked flows or NAT'd flows. Shared,
/// not owned: one walk's records are queued for every peer as one
/// allocation (a full dump of the largest table is about 1 GiB of flows,
/// more of NAT'd flows; a copy per peer, made on lbd's loop, cost as much
/// again for each).
#[derive(Debug)]
pub(super) enum Records {
    /// Sent as Batch frames.
    Flows(Arc<[FlowRecord]>),
    /// Sent as NatBatch frames.
    Nat(Arc<[NatFlowRecord]>),
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

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
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
    /// A popped batch is being written (until its [`InFlight`] ends):
    /// with an empty queue, whether everything given went out.
    pub(super) writing: AtomicBool,
    /// Sessions established so far (the current one's number); changed
    /// and compared only under the queue's lock.
    pub(super) sessions: AtomicU64,
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
            if self.stale(&batch) {
                // Read before the current session began: the session's
                // own dump follows, and this one must not pass for it.
                self.count_drop(true, batch.records.len());
                return;
            }
            if batch.full_sync {
                if queue.iter().any(|queued| queued.outranks(&batch)) {
                    // A periodic dump while a session's dump of its kind
                    // waits: the session's dump goes first (it carries
                    // what the periodic one may leave out, and the peer's
                    // gates open on the first full sync a session
                    // delivers); the batches behind it and the next
                    // periodic dump bring what this one would have.
                    self.count_drop(true, batch.records.len());
                    debug!(
                        "sync queue: a periodic dump gives way to the session's dump still queued"
                    );
                    return;
                }
                // A dump supersedes every older batch of its kind.
                let mut dropped = Vec::new();
                queue.retain(|b| {
                    let keep = !batch.supersedes(b);
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
    /// newer full sync of its kind that supersedes it is queued; a
    /// session's dump stays ahead of a periodic one queued meanwhile).
    pub(super) fn requeue(&self, batch: QueuedBatch) {
        let mut queue = self.lock();
        if self.stale(&batch) || queue.iter().any(|b| b.supersedes(&batch)) {
            self.count_drop(batch.full_sync, batch.records.len());
            return;
        }
        queue.push_front(batch);
        self.shed(&mut queue);
    }

    /// A session is established: returns its number, after dropping (and
    /// counting) every queued full sync, of flows and of NAT'd flows. Why:
    /// all of them were read before the session, e.g. a full mesh's
    /// periodic dump, made while the peer was down, which leaves out the
    /// copies of other nodes' flows (the peer's own among them); delivered
    /// first, the peer would take it for this session's dump, which its
    /// gates (BGP announcement, a pair's preemption hold) wait for. The
    /// session's own dump follows: the daemon dumps on each new
    /// [`Sender::sessions`](super::Sender::sessions), read when a walk
    /// starts. Incremental batches stay (records are state: still
    /// useful). Called before the session's writer starts and before the
    /// new number is published, so a full sync read before it can only
    /// be queued already (dropped here) or come later with an older
    /// `read_in` (dropped by [`SendQueue::push`]).
    pub(super) fn begin_session(&self) -> u64 {
        let mut queue = self.lock();
        let session = self.sessions.load(Ordering::Relaxed).saturating_add(1);
        self.sessions.store(session, Ordering::Relaxed);
        let mut dropped = Vec::new();
        queue.retain(|b| {
            if b.full_sync {
                dropped.push(b.records.len());
            }
            !b.full_sync
        });
        for records in dropped {
            self.count_drop(true, records);
        }
        session
    }

    /// Whether `batch` is a full sync read before the current session
    /// (see [`SendQueue::begin_session`]). Under the queue's lock.
    fn stale(&self, batch: &QueuedBatch) -> bool {
        batch.full_sync
            && batch
                .read_in
                .is_some_and(|s| s < self.sessions.load(Ordering::Relaxed))
    }

    /// Counts (and logs) one dropped batch.
    pub(super) fn count_drop(&self, full_sync: bool, records: usize) {
        self.stats.add(Counter::DroppedBatches, 1);
        self.stats.add(Counter::DroppedRecords, count_of(records));
        debug!(full_sync, records, "sync queue: batch dropped");
    }

    /// Whether the batch at `i` is exempt from the record bound: the
    /// newest full sync or the newest incremental batch of its kind. The
    /// newest incremental holds the latest scan: dropping it would leave
    /// the peer nothing but the next full sync when one tick's scan is
    /// larger than the bound (e.g. 70,000 active flows), while the older
    /// ones it mostly repeats can go.
    fn exempt(queue: &VecDeque<QueuedBatch>, i: usize) -> bool {
        let Some(batch) = queue.get(i) else {
            return false;
        };
        !queue
            .iter()
            .skip(i + 1)
            .any(|later| later.full_sync == batch.full_sync && later.supersedes_or_follows(batch))
    }

    /// Records queued beyond the newest full sync and the newest
    /// incremental batch of each kind.
    pub(super) fn excess_records(queue: &VecDeque<QueuedBatch>) -> usize {
        (0..queue.len())
            .filter(|&i| !Self::exempt(queue, i))
            .filter_map(|i| queue.get(i))
            .map(|b| b.records.len())
            .sum()
    }

    pub(super) fn pop(&self) -> Option<QueuedBatch> {
        let mut queue = self.lock();
        let batch = queue.pop_front();
        if batch.is_some() {
            self.writing.store(true, Ordering::Relaxed);
        }
        batch
    }

    /// Whether every batch pushed has been written (none queued, none
    /// being written).
    pub(super) fn is_idle(&self) -> bool {
        let queue = self.lock();
        queue.is_empty() && !self.writing.load(Ordering::Relaxed)
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Brings an over-full queue back to its bounds (batches, and records
    /// beyond the newest full sync and newest incremental batch of each
    /// kind): drops the oldest incremental batch that is not its kind's
    /// newest (a later full sync repairs what it carried), then the oldest
    /// incremental one at all or, when every batch is a full sync, the
    /// oldest one superseded by a newer full sync of the same records
    /// (flows or NAT flows) behind it.
    pub(super) fn shed(&self, queue: &mut VecDeque<QueuedBatch>) {
        while queue.len() > self.capacity || Self::excess_records(queue) > self.max_records {
            let superseded = |(i, b): (usize, &QueuedBatch)| {
                queue.iter().skip(i + 1).any(|later| later.supersedes(b))
            };
            let older_incremental = (0..queue.len())
                .find(|&i| queue.get(i).is_some_and(|b| !b.full_sync) && !Self::exempt(queue, i));
            let at = older_incremental
                .or_else(|| queue.iter().position(|b| !b.full_sync))
                .or_else(|| queue.iter().enumerate().position(superseded))
                .unwrap_or(0);
            let Some(dropped) = queue.remove(at) else {
                return;
            };
            self.count_drop(dropped.full_sync, dropped.records.len());
        }
    }
}
