//! Connection slots for lbd's listeners (the admin API and the metrics
//! port): at most a fixed number of connections at once, so no client can
//! take lbd's file descriptors, and room for a newcomer even when every slot
//! is held by clients that send nothing, a byte a second, or one request
//! after another.
//!
//! A connection is *waiting* while lbd waits for its request (the head, and
//! for the admin API the body), *busy* while its request is being
//! answered, and *writing* while its answer goes out (until the stream,
//! wrapped by [`Slot::watch`], is flushed with all of it written). When
//! every slot is taken, a new connection is let in by closing a waiting
//! one — of the peer holding the most slots, the one waiting longest —
//! once that one has waited at least the grace time (so a client that has
//! just connected, or just had its answer, gets to send its request). If
//! none is waiting that long but one is busy, the busy one of the peer
//! holding the most slots that has held its slot longest is told to close
//! after its answer (the answer goes out with `Connection: close`; a
//! request being answered is never cut), so a client sending request after
//! request cannot keep a newcomer out for longer than one answer. An
//! answer being written is not cut either (a large `/metrics` body to a
//! slow scraper): a writing connection counts as waiting, and can be
//! closed, only once its answer is out, or once it has been writing for
//! the write grace (a client that does not read its answer). One
//! connection is closed at a time; until it is gone the newcomer waits,
//! and with no connection at all to close it waits in the listen backlog,
//! which costs lbd no file descriptor.
//!
//! [`Table`] is the pure rule (time passed in); [`Slots`] drives it for an
//! accept loop.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{oneshot, Notify},
    time::Instant,
};

/// How long a connection is safe from being closed for a newcomer after it
/// was let in or answered: enough for a local client to send its request.
pub(crate) const GRACE: Duration = Duration::from_millis(100);
/// How long an answer may take to go out before its connection can be
/// closed for a newcomer: a client that reads nothing of it for that long
/// has given up on it (Prometheus gives a scrape 10 s by default).
pub(crate) const WRITE_GRACE: Duration = Duration::from_secs(10);

/// One connection holding a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry<K> {
    /// Who it is (a uid, an address): the rule closes the connections of
    /// whoever holds the most.
    peer: K,
    /// When it took its slot: of a peer's busy connections, the one that
    /// has held its slot longest is the one told to close.
    admitted: Instant,
    /// Since when it has been waiting; `None` while busy or writing.
    waiting_since: Option<Instant>,
    /// Since when its answer has been going out; `None` unless writing.
    writing_since: Option<Instant>,
    /// Chosen to be closed now; gone from the table once it is.
    evicting: bool,
    /// Chosen, while busy, to be closed after its answer.
    closing: bool,
}

/// The connection to close for a newcomer, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Victim {
    /// A waiting connection: closed now.
    Now(u64),
    /// A busy connection: it answers, then closes (`Connection: close`).
    AfterAnswer(u64),
}

/// Which connections hold the slots, and which one to close for a
/// newcomer. Pure: the time is passed in.
#[derive(Debug)]
pub(crate) struct Table<K> {
    capacity: usize,
    grace: Duration,
    write_grace: Duration,
    next_id: u64,
    entries: BTreeMap<u64, Entry<K>>,
}

impl<K> Table<K> {
    /// A table of `capacity` slots; connections are safe from eviction for
    /// `grace` after they start waiting, and while writing an answer for
    /// up to `write_grace`.
    pub(crate) fn new(capacity: usize, grace: Duration, write_grace: Duration) -> Self {
        Self {
            capacity,
            grace,
            write_grace,
            next_id: 0,
            entries: BTreeMap::new(),
        }
    }

    /// Whether a slot is free.
    pub(crate) fn has_room(&self) -> bool {
        self.entries.len() < self.capacity
    }

    /// Frees the slot of connection `id`.
    pub(crate) fn remove(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    /// Marks connection `id` busy, unless it is being closed (`false`):
    /// now, or after the answer it has just had.
    pub(crate) fn set_busy(&mut self, id: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) if !entry.evicting && !entry.closing => {
                entry.waiting_since = None;
                entry.writing_since = None;
                true
            }
            _ => false,
        }
    }

    /// Marks connection `id` writing (its answer is ready and goes out),
    /// from `now`; `true` if it was told to close after this answer.
    pub(crate) fn finish(&mut self, id: u64, now: Instant) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) => {
                entry.waiting_since = None;
                entry.writing_since = Some(now);
                entry.closing
            }
            None => false,
        }
    }

    /// Marks connection `id`, if writing, waiting again from `now`: its
    /// answer is out.
    pub(crate) fn written(&mut self, id: u64, now: Instant) {
        if let Some(entry) = self.entries.get_mut(&id) {
            if entry.writing_since.take().is_some() {
                entry.waiting_since = Some(now);
            }
        }
    }

    /// From when connection `entry` may be closed now for a newcomer: its
    /// grace over while waiting, its write grace while writing; `None`
    /// while busy.
    fn evictable_at(&self, entry: &Entry<K>) -> Option<Instant> {
        match (entry.waiting_since, entry.writing_since) {
            (Some(since), _) => Some(since + self.grace),
            (None, Some(since)) => Some(since + self.write_grace),
            (None, None) => None,
        }
    }

    /// Whether a connection is being closed now and still holds its slot.
    pub(crate) fn evicting(&self) -> bool {
        self.entries.values().any(|e| e.evicting)
    }

    /// Marks connection `id` as being closed now.
    pub(crate) fn set_evicting(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.evicting = true;
        }
    }

    /// Marks busy connection `id` to be closed after its answer.
    pub(crate) fn set_closing(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.closing = true;
        }
    }

    /// When the next waiting connection's grace (or writing one's write
    /// grace) ends: the earliest a victim can appear without anything else
    /// happening. As `victim` chooses, one at a time: while a connection
    /// is being closed none (its slot freed tells), while one is told to
    /// close after its answer when that one may be closed now (none while
    /// it is busy: its answer, written or not, tells). Another connection
    /// that could be closed does not count then, however long ago its
    /// grace ended: a wake-up at a time passed would come at once, again
    /// and again, until the one being closed is gone.
    pub(crate) fn next_evictable(&self) -> Option<Instant> {
        if self.evicting() {
            return None;
        }
        if let Some(closing) = self.entries.values().find(|e| e.closing) {
            return self.evictable_at(closing);
        }
        self.entries
            .values()
            .filter_map(|e| self.evictable_at(e))
            .min()
    }
}

impl<K: Copy + Eq> Table<K> {
    /// Gives a free slot to a connection of `peer`, waiting from `now`;
    /// `None` when every slot is taken.
    pub(crate) fn insert(&mut self, peer: K, now: Instant) -> Option<u64> {
        if !self.has_room() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                peer,
                admitted: now,
                waiting_since: Some(now),
                writing_since: None,
                evicting: false,
                closing: false,
            },
        );
        Some(id)
    }

    /// The connection to close for a newcomer at `now`, one at a time
    /// (`None` while one is being closed): among those waiting for at
    /// least the grace time (or writing an answer for the write grace),
    /// one of the peer holding the most slots, the one that became
    /// closable first, closed now; else, among the busy ones, one of the
    /// peer holding the most slots, the one holding its slot longest,
    /// closed after its answer. One told to close after its answer that
    /// is still there once that answer is out and the grace time has
    /// passed, or after the write grace (its client does not read it), is
    /// closed now. `None` if there is none.
    pub(crate) fn victim(&self, now: Instant) -> Option<Victim> {
        if self.evicting() {
            return None;
        }
        if let Some((id, entry)) = self.entries.iter().find(|(_, e)| e.closing) {
            return (self.evictable_at(entry)? <= now).then_some(Victim::Now(*id));
        }
        let held = |peer: K| self.entries.values().filter(|e| e.peer == peer).count();
        let waiting = self
            .entries
            .iter()
            .filter_map(|(id, e)| {
                let at = self.evictable_at(e)?;
                (at <= now).then_some((*id, e.peer, at))
            })
            // Most slots held first, then the first closable, then the oldest id.
            .min_by_key(|(id, peer, at)| (std::cmp::Reverse(held(*peer)), *at, *id))
            .map(|(id, _, _)| Victim::Now(id));
        waiting.or_else(|| {
            self.entries
                .iter()
                .filter(|(_, e)| e.waiting_since.is_none() && e.writing_since.is_none())
                // Most slots held first, then the longest held, then the oldest id.
                .min_by_key(|(id, e)| (std::cmp::Reverse(held(e.peer)), e.admitted, **id))
                .map(|(id, _)| Victim::AfterAnswer(*id))
        })
    }
}

/// The table and how to tell each connection it is to close.
#[derive(Debug)]
struct State<K> {
    table: Table<K>,
    evictions: HashMap<u64, oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Shared<K> {
    state: Mutex<State<K>>,
    /// A slot freed, or a connection started waiting: the accept loop looks again.
    changed: Notify,
    /// How many times `wait` has looked (the tests' count of wake-ups).
    #[cfg(test)]
    passes: std::sync::atomic::AtomicU64,
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // The state stays consistent at every step: a panic elsewhere
        // leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The slots of one listener, for its accept loop.
#[derive(Debug)]
pub(crate) struct Slots<K> {
    shared: Arc<Shared<K>>,
}

impl<K: Copy + Eq + Send + 'static> Slots<K> {
    /// `capacity` slots, each connection safe from eviction for `grace`
    /// after it starts waiting, and for up to `write_grace` while its
    /// answer goes out.
    pub(crate) fn new(capacity: usize, grace: Duration, write_grace: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    table: Table::new(capacity, grace, write_grace),
                    evictions: HashMap::new(),
                }),
                changed: Notify::new(),
                #[cfg(test)]
                passes: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Completes once a newcomer could be let in: a slot is free, or a
    /// connection can be closed for it (a waiting one that has had its
    /// grace, or a busy one after its answer). Until then, new connections
    /// stay in the listen backlog.
    pub(crate) async fn ready(&self) {
        self.wait(|state, now| {
            (state.table.has_room() || state.table.victim(now).is_some()).then_some(())
        })
        .await;
    }

    /// A slot for a new connection of `peer`: a free one, or, when every
    /// slot is taken, the one of the connection closed for it (see the
    /// module's rule; this waits until that one is gone, at most one
    /// answer when it was busy).
    pub(crate) async fn admit(&self, peer: K) -> Slot<K> {
        let shared = Arc::clone(&self.shared);
        self.wait(move |state, now| {
            if let Some(id) = state.table.insert(peer, now) {
                let (tx, rx) = oneshot::channel();
                state.evictions.insert(id, tx);
                return Some(Slot {
                    handle: SlotHandle {
                        shared: Arc::clone(&shared),
                        id,
                        answered: Arc::new(AtomicBool::new(false)),
                    },
                    evicted: rx,
                });
            }
            // One at a time: the next only once that one is gone.
            match state.table.victim(now) {
                Some(Victim::Now(id)) => {
                    state.table.set_evicting(id);
                    if let Some(tx) = state.evictions.remove(&id) {
                        // Gone already if its task ended: its slot is freed anyway.
                        let _ = tx.send(());
                    }
                }
                // Its request handling sees it when the answer is ready.
                Some(Victim::AfterAnswer(id)) => state.table.set_closing(id),
                None => {}
            }
            None
        })
        .await
    }

    /// Waits until `check` gives an answer; it is asked again whenever a
    /// slot is freed, a connection starts waiting, or a grace ends.
    async fn wait<T>(&self, mut check: impl FnMut(&mut State<K>, Instant) -> Option<T>) -> T {
        loop {
            #[cfg(test)]
            self.shared.passes.fetch_add(1, Ordering::Relaxed);
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut state = self.shared.lock();
                if let Some(answer) = check(&mut state, Instant::now()) {
                    return answer;
                }
                state.table.next_evictable()
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// A connection's slot: freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot<K> {
    handle: SlotHandle<K>,
    evicted: oneshot::Receiver<()>,
}

impl<K> Slot<K> {
    /// What the connection's request handling uses to mark it busy.
    pub(crate) fn handle(&self) -> SlotHandle<K> {
        self.handle.clone()
    }

    /// The connection's `stream`, telling the slot when an answer is out:
    /// hyper flushes the stream once it has written all it had, so the
    /// first flush after an answer was ready marks the connection waiting
    /// again. A connection whose stream is not watched stays writing after
    /// each answer until the write grace ends.
    pub(crate) fn watch<S>(&self, stream: S) -> Watched<S, K> {
        Watched {
            stream,
            handle: self.handle.clone(),
        }
    }

    /// Completes when the connection is to be closed for a newcomer.
    pub(crate) async fn evicted(&mut self) {
        if (&mut self.evicted).await.is_err() {
            // The sender went without a word: never evicted.
            std::future::pending::<()>().await;
        }
    }
}

impl<K> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut state = self.handle.shared.lock();
        state.table.remove(self.handle.id);
        state.evictions.remove(&self.handle.id);
        drop(state);
        self.handle.shared.changed.notify_one();
    }
}

/// Marks a connection busy while its request is answered.
#[derive(Debug)]
pub(crate) struct SlotHandle<K> {
    shared: Arc<Shared<K>>,
    id: u64,
    /// An answer is ready and not yet known to be out: the watched
    /// stream's next flush marks it written (without a lock per flush).
    answered: Arc<AtomicBool>,
}

impl<K> Clone for SlotHandle<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            id: self.id,
            answered: Arc::clone(&self.answered),
        }
    }
}

impl<K> SlotHandle<K> {
    /// Marks the connection busy until the guard is finished or dropped;
    /// `None` if it is being closed for a newcomer (its request is then
    /// not to be handled: the connection goes without an answer, or with
    /// a refusal and `Connection: close`).
    pub(crate) fn try_busy(&self) -> Option<Busy<K>> {
        self.shared.lock().table.set_busy(self.id).then(|| Busy {
            handle: self.clone(),
            finished: false,
        })
    }

    /// Marks the connection writing its answer; `true` if it is to close
    /// after it.
    fn finish(&self) -> bool {
        let closing = self.shared.lock().table.finish(self.id, Instant::now());
        self.answered.store(true, Ordering::SeqCst);
        self.shared.changed.notify_one();
        closing
    }

    /// Marks the connection waiting again: its answer is out, or there is
    /// none to write.
    fn written(&self) {
        self.answered.store(false, Ordering::SeqCst);
        self.shared.lock().table.written(self.id, Instant::now());
        self.shared.changed.notify_one();
    }
}

/// A connection's stream that tells its slot when an answer is out (see
/// [`Slot::watch`]).
#[derive(Debug)]
pub(crate) struct Watched<S, K> {
    stream: S,
    handle: SlotHandle<K>,
}

impl<S: AsyncRead + Unpin, K> AsyncRead for Watched<S, K> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, K> AsyncWrite for Watched<S, K> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        // Flushed after an answer was ready: hyper had written all of it.
        if matches!(flushed, Poll::Ready(Ok(()))) && self.handle.answered.load(Ordering::SeqCst) {
            self.handle.written();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A busy connection: waiting again (from then on) once finished or dropped.
#[derive(Debug)]
pub(crate) struct Busy<K> {
    handle: SlotHandle<K>,
    finished: bool,
}

impl<K> Busy<K> {
    /// Its answer is ready: the connection writes it, then waits again
    /// (see [`Slot::watch`]). `true` if it was told to close for a
    /// newcomer meanwhile: the answer goes out with `Connection: close`,
    /// and the connection ends with it.
    pub(crate) fn finish(mut self) -> bool {
        self.finished = true;
        self.handle.finish()
    }
}

impl<K> Drop for Busy<K> {
    fn drop(&mut self) {
        if !self.finished {
            // No answer to write (its request handling was dropped).
            self.handle.finish();
            self.handle.written();
        }
    }
}

#[cfg(test)]
mod tests;
