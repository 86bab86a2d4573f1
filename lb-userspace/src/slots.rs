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
mod tests {
    use super::*;

    const G: Duration = Duration::from_millis(100);
    /// The write grace of the tests that are not about it.
    const W: Duration = Duration::from_secs(3600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_free_slot_first_then_no_victim_within_the_grace() {
        let t0 = Instant::now();
        let mut table = Table::new(2, G, W);
        let a = table.insert(1, t0).unwrap();
        let _b = table.insert(1, t0 + ms(10)).unwrap();
        assert!(!table.has_room());
        assert_eq!(table.insert(1, t0), None);
        // Nobody has waited the grace yet.
        assert_eq!(table.victim(t0 + ms(50)), None);
        assert_eq!(table.next_evictable(), Some(t0 + G));
        // The longest waiting goes first.
        assert_eq!(table.victim(t0 + ms(120)), Some(Victim::Now(a)));
        table.remove(a);
        assert!(table.has_room());
    }

    #[test]
    fn a_waiting_connection_goes_before_a_busy_one() {
        let t0 = Instant::now();
        let mut table = Table::new(2, G, W);
        let a = table.insert(1, t0).unwrap();
        let b = table.insert(1, t0).unwrap();
        assert!(table.set_busy(a));
        assert_eq!(table.victim(t0 + ms(500)), Some(Victim::Now(b)));
        // Answered: waiting again, with a new grace; within it, the busy
        // one is the victim (after its answer).
        assert!(table.set_busy(b));
        assert!(!table.finish(a, t0 + ms(600)));
        // Writing its answer: not closed, however long that takes (up to
        // the write grace).
        assert_eq!(table.victim(t0 + ms(5000)), Some(Victim::AfterAnswer(b)));
        table.written(a, t0 + ms(6000));
        assert_eq!(table.victim(t0 + ms(6050)), Some(Victim::AfterAnswer(b)));
        assert_eq!(table.victim(t0 + ms(6100)), Some(Victim::Now(a)));
    }

    #[test]
    fn when_every_slot_is_busy_the_longest_held_closes_after_its_answer() {
        let t0 = Instant::now();
        let mut table = Table::new(3, G, W);
        // Root's connection is the oldest, but 198.18.0.1 holds two.
        let root = table.insert(0, t0).unwrap();
        let old = table.insert(1, t0 + ms(1)).unwrap();
        let new = table.insert(1, t0 + ms(2)).unwrap();
        for id in [root, old, new] {
            assert!(table.set_busy(id));
        }
        assert_eq!(table.next_evictable(), None);
        let now = t0 + ms(5);
        assert_eq!(table.victim(now), Some(Victim::AfterAnswer(old)));
        table.set_closing(old);
        // One at a time: nobody else while that one answers.
        assert_eq!(table.victim(now), None);
        // Its answer is ready, with word to close; it takes no next request.
        assert!(table.finish(old, t0 + ms(10)));
        assert!(!table.set_busy(old));
        // While the answer goes out it is not cut, past the grace too.
        assert_eq!(table.victim(t0 + ms(20)), None);
        assert_eq!(table.victim(t0 + ms(5000)), None);
        assert_eq!(table.next_evictable(), Some(t0 + ms(10) + W));
        // Out: a client that does not close is closed after the grace.
        table.written(old, t0 + ms(5010));
        assert_eq!(table.victim(t0 + ms(5050)), None);
        assert_eq!(table.victim(t0 + ms(5110)), Some(Victim::Now(old)));
        table.remove(old);
        // Another connection's answer carries no such word.
        assert!(!table.finish(new, t0 + ms(120)));
        table.written(new, t0 + ms(120));
        assert!(table.set_busy(new));
        assert_eq!(table.victim(t0 + ms(200)), Some(Victim::AfterAnswer(root)));
    }

    #[test]
    fn an_answer_nobody_reads_is_cut_after_the_write_grace() {
        let t0 = Instant::now();
        let mut table = Table::new(1, G, ms(1000));
        let a = table.insert(1, t0).unwrap();
        assert!(table.set_busy(a));
        assert_eq!(table.victim(t0), Some(Victim::AfterAnswer(a)));
        table.set_closing(a);
        assert!(table.finish(a, t0 + ms(10)));
        assert_eq!(table.victim(t0 + ms(1000)), None);
        assert_eq!(table.next_evictable(), Some(t0 + ms(1010)));
        assert_eq!(table.victim(t0 + ms(1010)), Some(Victim::Now(a)));
    }

    /// While a busy connection is told to close after its answer, no
    /// other is chosen (one at a time), and the time to look again is not
    /// that of another connection whose grace has ended (it would be
    /// past: a wake-up at once, again and again, until the answer is
    /// out); while one is being closed there is none.
    #[test]
    fn while_one_is_closing_the_next_look_waits_for_it() {
        let t0 = Instant::now();
        let mut table = Table::new(2, G, W);
        let a = table.insert(1, t0).unwrap();
        let b = table.insert(1, t0).unwrap();
        assert!(table.set_busy(a));
        assert!(table.set_busy(b));
        assert_eq!(table.victim(t0), Some(Victim::AfterAnswer(a)));
        table.set_closing(a);
        // b answered and waits: its grace ends at 110 ms.
        assert!(!table.finish(b, t0 + ms(5)));
        table.written(b, t0 + ms(10));
        assert_eq!(table.victim(t0 + ms(500)), None, "one at a time");
        assert_eq!(table.next_evictable(), None, "a's answer tells");
        // a's answer goes out: its write grace, then its grace once out.
        assert!(table.finish(a, t0 + ms(600)));
        assert_eq!(table.next_evictable(), Some(t0 + ms(600) + W));
        table.written(a, t0 + ms(700));
        assert_eq!(table.next_evictable(), Some(t0 + ms(700) + G));
        assert_eq!(table.victim(t0 + ms(800)), Some(Victim::Now(a)));
        table.set_evicting(a);
        assert_eq!(table.next_evictable(), None, "its slot freed tells");
        table.remove(a);
        assert_eq!(table.next_evictable(), Some(t0 + ms(10) + G));
    }

    #[test]
    fn the_peer_holding_the_most_slots_loses_one_first() {
        let t0 = Instant::now();
        let mut table = Table::new(4, G, W);
        // Root's connection is the oldest, but uid 1000 holds three.
        let root = table.insert(0, t0).unwrap();
        let first = table.insert(1000, t0 + ms(1)).unwrap();
        table.insert(1000, t0 + ms(2)).unwrap();
        table.insert(1000, t0 + ms(3)).unwrap();
        let now = t0 + ms(200);
        assert_eq!(table.victim(now), Some(Victim::Now(first)));
        // Being closed: one at a time, and it takes no request.
        table.set_evicting(first);
        assert!(table.evicting());
        assert!(!table.set_busy(first), "a connection being closed stays so");
        assert_eq!(table.victim(now), None);
        table.remove(first);
        let Some(Victim::Now(second)) = table.victim(now) else {
            panic!("a waiting victim");
        };
        assert_ne!(second, root);
        table.set_evicting(second);
        table.remove(second);
        // Now one each: the longest waiting.
        assert_eq!(table.victim(now), Some(Victim::Now(root)));
    }

    #[tokio::test]
    async fn a_newcomer_evicts_the_longest_waiting_once_its_grace_is_over() {
        let slots = Slots::new(2, G, W);
        let mut a = slots.admit(7).await;
        let b = slots.admit(7).await;
        let busy = b.handle().try_busy().unwrap();
        // Full; a is within its grace, b busy: a newcomer could be let in
        // (b closing after its answer), but a waiting one goes first once
        // its grace is over.
        let started = Instant::now();
        slots.ready().await;
        tokio::time::sleep_until(started + G).await;
        let admit = slots.admit(8);
        let mut admit = std::pin::pin!(admit);
        // a is told to close; the newcomer waits until it has.
        tokio::select! {
            () = a.evicted() => {}
            _ = &mut admit => panic!("admitted before a slot was freed"),
        }
        drop(a);
        let c = admit.await;
        // b was not told to close: its answer keeps the connection open.
        assert!(!busy.finish());
        assert!(c.handle().try_busy().is_some());
        drop(b);
        let _d = slots.admit(9).await;
    }

    #[tokio::test]
    async fn a_newcomer_gets_in_after_one_answer_when_every_slot_is_busy() {
        let slots = Slots::new(2, G, W);
        let a = slots.admit(7).await;
        let b = slots.admit(7).await;
        let busy_a = a.handle().try_busy().unwrap();
        let busy_b = b.handle().try_busy().unwrap();
        // Every slot busy: a newcomer may be let in at once.
        tokio::time::timeout(Duration::from_secs(5), slots.ready())
            .await
            .expect("ready while every slot is busy");
        let admit = slots.admit(8);
        let mut admit = std::pin::pin!(admit);
        tokio::select! {
            biased;
            _ = &mut admit => panic!("admitted before a slot was freed"),
            () = tokio::task::yield_now() => {}
        }
        // a, the longest held, closes after its answer; b does not.
        assert!(!busy_b.finish());
        assert!(busy_a.finish());
        assert!(
            a.handle().try_busy().is_none(),
            "no request after that answer"
        );
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), admit)
            .await
            .expect("admitted once a's answer was out");
        drop((b, c));
    }

    /// A newcomer waiting for a busy connection's answer (it closes
    /// after it) while another connection has waited past its grace: the
    /// wait sleeps until that answer, it does not look again and again.
    /// (The next look was set at the other connection's grace end, past:
    /// the wait woke at once, taking the lock each time, for as long as
    /// the answer took, up to the render timeout: a core spinning, which
    /// a client of the metrics port could set up.)
    #[tokio::test]
    async fn a_newcomer_waiting_for_an_answer_does_not_spin() {
        let slots = Slots::new(2, G, W);
        let a = slots.admit(7).await;
        let b = slots.admit(7).await;
        let busy_a = a.handle().try_busy().unwrap();
        let busy_b = b.handle().try_busy().unwrap();
        let admit = slots.admit(8);
        let mut admit = std::pin::pin!(admit);
        tokio::select! {
            biased;
            _ = &mut admit => panic!("admitted before a slot was freed"),
            () = tokio::task::yield_now() => {}
        }
        // a is told to close after its answer; b has had its answer (no
        // body to write) and waits.
        drop(busy_b);
        let before = slots.shared.passes.load(Ordering::Relaxed);
        tokio::select! {
            _ = &mut admit => panic!("admitted before a slot was freed"),
            () = tokio::time::sleep(G * 4) => {}
        }
        let passes = slots.shared.passes.load(Ordering::Relaxed) - before;
        assert!(
            passes <= 3,
            "{passes} looks in {:?} while nothing changed",
            G * 4
        );
        // a's answer, with word to close: the newcomer takes its slot.
        assert!(busy_a.finish());
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), admit)
            .await
            .expect("admitted once a was gone");
        drop((b, c));
    }

    #[tokio::test]
    async fn a_connection_told_to_close_is_not_cut_while_its_answer_goes_out() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let slots = Slots::new(1, G, W);
        let mut a = slots.admit(7).await;
        // The connection's stream, read by a client that is slow to read.
        let (server, mut client) = tokio::io::duplex(64);
        let mut stream = a.watch(server);
        let busy = a.handle().try_busy().unwrap();
        let admit = slots.admit(8);
        let mut admit = std::pin::pin!(admit);
        tokio::select! {
            biased;
            _ = &mut admit => panic!("admitted before a slot was freed"),
            () = tokio::task::yield_now() => {}
        }
        // Told to close after its answer; the answer (larger than the
        // pipe) goes out.
        assert!(busy.finish());
        let answer = vec![7u8; 4096];
        let writer = tokio::spawn({
            let answer = answer.clone();
            async move {
                stream.write_all(&answer).await?;
                stream.flush().await?;
                Ok::<_, io::Error>(stream)
            }
        });
        // Many graces pass while the client has not read it: the
        // connection is not cut, and the newcomer waits.
        tokio::select! {
            () = a.evicted() => panic!("cut while its answer was going out"),
            _ = &mut admit => panic!("admitted while the answer was going out"),
            () = tokio::time::sleep(G * 5) => {}
        }
        let mut read = vec![0u8; answer.len()];
        client.read_exact(&mut read).await.unwrap();
        assert_eq!(read, answer);
        let _stream = writer.await.unwrap().unwrap();
        // Out: the connection is closed (its client keeps it open) after
        // the grace, and the newcomer takes its slot.
        tokio::select! {
            () = a.evicted() => {}
            _ = &mut admit => panic!("admitted before a slot was freed"),
            () = tokio::time::sleep(Duration::from_secs(5)) => panic!("not closed once its answer was out"),
        }
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), admit)
            .await
            .expect("admitted once a was closed");
    }
}
