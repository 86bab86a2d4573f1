//! The census runner the engine's loop owns: it starts a census when the
//! desk asks for one, off the loop or in it, and brings its result back on
//! a channel, even when the walk panics or is cancelled.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use tokio::sync::mpsc;
use tracing::debug;

use super::{desk::Desk, off_loop::OffLoop, Census, CensusTables};
use crate::daemon::engine::Engine;

/// A walk for a blocking thread: its census, None if the flag it is
/// given was set (cancelled) before it ended.
pub(crate) type OffWalk = Box<dyn FnOnce(&AtomicBool) -> Option<Census> + Send>;

/// How a census is made.
pub(crate) enum Walk {
    /// On a blocking thread.
    Off(OffWalk),
    /// Made already, in the loop (no second mapping of the tables).
    Done(Census),
}

/// The census runner the engine's loop owns: the [`Desk`], the tables,
/// and the census in flight, whose result comes back on the channel
/// [`Censuses::new`] returns. Dropping it cancels a walk in flight.
pub(crate) struct Censuses<R> {
    pub(super) desk: Desk<R>,
    source: OffLoop<Arc<CensusTables>>,
    done: mpsc::Sender<Option<Census>>,
    cancel: Arc<AtomicBool>,
}

impl<R> Censuses<R> {
    /// A runner, and where its censuses end.
    pub(crate) fn new() -> (Self, mpsc::Receiver<Option<Census>>) {
        let (done, finished) = mpsc::channel(1);
        (
            Self {
                desk: Desk::default(),
                source: OffLoop::new("censuses of the connection table"),
                done,
                cancel: Arc::new(AtomicBool::new(false)),
            },
            finished,
        )
    }

    /// A read of counts: the census answering it now, or None (parked,
    /// a census started if none is in flight).
    pub(crate) fn read(&mut self, engine: &mut Engine, read: R) -> Option<(Arc<Census>, R)> {
        let answer = self.desk.read(Instant::now(), engine.newest_drain(), read);
        if self.desk.wants_census() {
            self.start(engine);
        }
        answer
    }

    /// A census ended (`census` from the channel): the reads it answers;
    /// the next census starts if reads still wait.
    pub(crate) fn finished(
        &mut self,
        engine: &mut Engine,
        census: Option<Census>,
    ) -> Vec<(Arc<Census>, R)> {
        match &census {
            None => self.source.failed(Instant::now()),
            Some(_) => self.source.succeeded(),
        }
        if let Some(census) = &census {
            debug!(
                took_ms = census.took.as_millis(),
                "census of the connection table"
            );
        }
        let answered = self.desk.finished(census, engine.newest_drain());
        if self.desk.wants_census() {
            self.start(engine);
        }
        answered
    }

    /// Starts a census of `engine`'s tables.
    fn start(&mut self, engine: &mut Engine) {
        let mapped = self.source.get(Instant::now(), || {
            Some(engine.census_tables().map(Arc::new))
        });
        let input = engine.census_input();
        let started = input.started;
        let walk = match mapped {
            Some(tables) => Walk::Off(Box::new(move |cancel| tables.walk(&input, cancel))),
            None => Walk::Done(engine.census_inline(&input, &self.cancel)),
        };
        self.launch(started, walk);
    }

    /// Runs `walk`, started at `at`; its census comes back on the channel.
    pub(crate) fn launch(&mut self, at: Instant, walk: Walk) {
        self.desk.started(at);
        match walk {
            Walk::Done(census) => {
                // One census in flight at most: the channel has room.
                let _ = self.done.try_send(Some(census));
            }
            Walk::Off(walk) => {
                let report = Report(Some(self.done.clone()));
                let cancel = Arc::clone(&self.cancel);
                tokio::task::spawn_blocking(move || report.send(walk(&cancel)));
            }
        }
    }
}

impl<R> Drop for Censuses<R> {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// A walk's way back to the loop: reports None if the walk ends without
/// a census (cancelled, or it panicked), so the desk never waits for a
/// census that will not come.
struct Report(Option<mpsc::Sender<Option<Census>>>);

impl Report {
    fn send(mut self, census: Option<Census>) {
        if let Some(done) = self.0.take() {
            let _ = done.try_send(census);
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let _ = done.try_send(None);
        }
    }
}
