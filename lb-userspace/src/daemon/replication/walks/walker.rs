//! Runs the walks: on a blocking thread over the tables' second mapping,
//! or in the loop where there is none, one at a time, with the way each
//! walk's records come back to lbd's loop.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use tokio::sync::{mpsc, Notify};

use super::{
    collect::{walk, WalkInput, Walked},
    tables::{SharedTables, Tables},
};
use crate::daemon::engine::flow_census::OffLoop;

/// What replication's walks are called in the log.
const WALKS: &str = "replication's walks of the connection table and the NAT flow table";

/// A walk for a blocking thread, given its cancel flag.
pub(in crate::daemon::replication) type OffWalk = Box<dyn FnOnce(&AtomicBool) -> Walked + Send>;

/// How a walk is made.
pub(in crate::daemon::replication) enum Walk {
    /// On a blocking thread.
    Off(OffWalk),
    /// Made already, in the loop (no second mapping of the table).
    Done(Walked),
}

/// Runs the walks: the tables they read, the walk in flight's way back
/// (a channel, and a [`Notify`] lbd's loop waits on), its cancel flag.
pub(in crate::daemon::replication) struct Walker {
    /// Second mappings of the tables, walked on a blocking thread; or, if
    /// none can be made (or for a back-off after a walk there failed),
    /// the loop's own.
    source: OffLoop<SharedTables>,
    cancel: Arc<AtomicBool>,
    done_tx: mpsc::Sender<Walked>,
    done_rx: mpsc::Receiver<Walked>,
    ended: Arc<Notify>,
}

impl Walker {
    pub(in crate::daemon::replication) fn new() -> Self {
        Self::with_source(OffLoop::new(WALKS))
    }

    /// A walker whose walks read `tables` off the loop (tests: tables in
    /// memory).
    #[cfg(test)]
    pub(in crate::daemon::replication) fn over(tables: SharedTables) -> Self {
        Self::with_source(OffLoop::mapped(tables, WALKS))
    }

    fn with_source(source: OffLoop<SharedTables>) -> Self {
        // One walk in flight at most: one slot.
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            source,
            cancel: Arc::new(AtomicBool::new(false)),
            done_tx,
            done_rx,
            ended: Arc::new(Notify::new()),
        }
    }

    /// What lbd's loop waits on: a walk ended (see [`walk_ended`]).
    pub(in crate::daemon::replication) fn ended(&self) -> Arc<Notify> {
        Arc::clone(&self.ended)
    }

    /// The walk for `input` over `tables`: off the loop over second
    /// mappings of them (the NAT flow table's scan too), else (a kernel
    /// map, or mapping failed) made here.
    pub(in crate::daemon::replication) fn walk_for(
        &mut self,
        tables: &dyn Tables,
        input: WalkInput,
    ) -> Walk {
        self.walk_for_at(tables, input, Instant::now())
    }

    /// [`Walker::walk_for`] at `now` (apart so tests can pass the back-off
    /// after a failed walk).
    pub(in crate::daemon::replication) fn walk_for_at(
        &mut self,
        tables: &dyn Tables,
        input: WalkInput,
        now: Instant,
    ) -> Walk {
        match self.source.get(now, || tables.remapped()) {
            Some(table) => Walk::Off(Box::new(move |cancel| walk(&*table, input, cancel))),
            None => Walk::Done(walk(tables, input, &self.cancel)),
        }
    }

    /// Runs `walk` on a blocking thread; its outcome comes back through
    /// [`Walker::try_ended`] / [`Walker::wait`], and [`Walker::ended`] is
    /// notified.
    pub(in crate::daemon::replication) fn launch(&self, walk: OffWalk) {
        let report = Report {
            done: Some(self.done_tx.clone()),
            ended: Arc::clone(&self.ended),
        };
        let cancel = Arc::clone(&self.cancel);
        tokio::task::spawn_blocking(move || report.send(walk(&cancel)));
    }

    /// The outcome of the walk in flight if it ended.
    pub(in crate::daemon::replication) fn try_ended(&mut self) -> Option<Walked> {
        self.done_rx.try_recv().ok()
    }

    /// Waits for the walk in flight's outcome (the caller knows one is in
    /// flight: every launched walk reports).
    pub(in crate::daemon::replication) async fn wait(&mut self) -> Walked {
        self.done_rx.recv().await.flatten()
    }

    /// A walk off the loop failed (it panicked) at `now`: the next ones
    /// walk in the loop until the back-off passes, then the tables are
    /// mapped again (see [`OffLoop`]), as censuses do after a failure.
    pub(in crate::daemon::replication) fn failed(&mut self, now: Instant) {
        self.source.failed(now);
    }

    /// A walk ended with its records: a later failure backs off from the
    /// shortest back-off again.
    pub(in crate::daemon::replication) fn succeeded(&mut self) {
        self.source.succeeded();
    }
}

impl Drop for Walker {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// A walk's way back to the loop: reports None if the walk ends without
/// records (cancelled, or it panicked), so the loop never waits for a
/// walk that will not come back.
struct Report {
    done: Option<mpsc::Sender<Walked>>,
    ended: Arc<Notify>,
}

impl Report {
    fn send(mut self, walked: Walked) {
        if let Some(done) = self.done.take() {
            let _ = done.try_send(walked);
            self.ended.notify_one();
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.try_send(None);
            self.ended.notify_one();
        }
    }
}

/// Waits until a replication walk ends (`ended`: see
/// [`Replication::walk_ends`](crate::daemon::replication::Replication::walk_ends); None, no replication: forever). For lbd's
/// loop, which then calls `Engine::replication_walk_ended`.
pub(crate) async fn walk_ended(ended: &Option<Arc<Notify>>) {
    match ended {
        Some(ended) => ended.notified().await,
        None => std::future::pending().await,
    }
}
