//! Connection slots for lbd's listeners (the admin API and the metrics
//! port): at most a fixed number of connections at once, so no client can
//! take lbd's file descriptors, and room for a newcomer even when every slot
//! is held by clients that send nothing, or a byte a second.
//!
//! A connection is *waiting* while lbd waits for its request (the head, and
//! for the admin API the body) or for it to read an answer, and *busy* while
//! its request is being answered. When every slot is taken, a new
//! connection is let in by closing a waiting one — of the peer holding the
//! most slots, the one waiting longest — once that one has waited at least
//! the grace time (so a client that has just connected, or just had its
//! answer, gets to send its request). If no connection can be closed, the
//! newcomer waits in the listen backlog, which costs lbd no file descriptor.
//! A busy connection is never closed.
//!
//! [`Table`] is the pure rule (time passed in); [`Slots`] drives it for an
//! accept loop.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};

/// How long a connection is safe from being closed for a newcomer after it
/// was let in or answered: enough for a local client to send its request.
pub(crate) const GRACE: Duration = Duration::from_millis(100);

/// One connection holding a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry<K> {
    /// Who it is (a uid, an address): the rule closes the connections of
    /// whoever holds the most.
    peer: K,
    /// Since when it has been waiting; `None` while busy.
    waiting_since: Option<Instant>,
    /// Chosen to be closed; gone from the table once it is.
    evicting: bool,
}

/// Which connections hold the slots, and which one to close for a
/// newcomer. Pure: the time is passed in.
#[derive(Debug)]
pub(crate) struct Table<K> {
    capacity: usize,
    grace: Duration,
    next_id: u64,
    entries: BTreeMap<u64, Entry<K>>,
}

impl<K> Table<K> {
    /// A table of `capacity` slots; connections are safe from eviction for
    /// `grace` after they start waiting.
    pub(crate) fn new(capacity: usize, grace: Duration) -> Self {
        Self {
            capacity,
            grace,
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

    /// Marks connection `id` busy, unless it is being closed (`false`).
    pub(crate) fn set_busy(&mut self, id: u64) -> bool {
        match self.entries.get_mut(&id) {
            Some(entry) if !entry.evicting => {
                entry.waiting_since = None;
                true
            }
            _ => false,
        }
    }

    /// Marks connection `id` waiting again (its answer is on its way), from `now`.
    pub(crate) fn set_waiting(&mut self, id: u64, now: Instant) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.waiting_since = Some(now);
        }
    }

    /// Whether a connection is being closed and still holds its slot.
    pub(crate) fn evicting(&self) -> bool {
        self.entries.values().any(|e| e.evicting)
    }

    /// Marks connection `id` as being closed.
    pub(crate) fn set_evicting(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.evicting = true;
        }
    }

    /// When the next waiting connection's grace ends (the earliest a victim
    /// can appear without anything else happening).
    pub(crate) fn next_evictable(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.evicting)
            .filter_map(|e| e.waiting_since)
            .min()
            .map(|since| since + self.grace)
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
                waiting_since: Some(now),
                evicting: false,
            },
        );
        Some(id)
    }

    /// The connection to close for a newcomer at `now`: among those waiting
    /// for at least the grace time, one of the peer holding the most slots,
    /// the one waiting longest. `None` if there is none.
    pub(crate) fn victim(&self, now: Instant) -> Option<u64> {
        let held = |peer: K| {
            self.entries
                .values()
                .filter(|e| !e.evicting && e.peer == peer)
                .count()
        };
        self.entries
            .iter()
            .filter(|(_, e)| !e.evicting)
            .filter_map(|(id, e)| {
                let since = e.waiting_since?;
                (now.saturating_duration_since(since) >= self.grace).then_some((*id, e.peer, since))
            })
            // Most slots held first, then the longest waiting, then the oldest id.
            .min_by_key(|(id, peer, since)| (std::cmp::Reverse(held(*peer)), *since, *id))
            .map(|(id, _, _)| id)
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
    /// after it starts waiting.
    pub(crate) fn new(capacity: usize, grace: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    table: Table::new(capacity, grace),
                    evictions: HashMap::new(),
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Completes once a newcomer could be let in: a slot is free, or a
    /// waiting connection has had its grace. Until then, new connections
    /// stay in the listen backlog.
    pub(crate) async fn ready(&self) {
        self.wait(|state, now| {
            (state.table.has_room() || state.table.victim(now).is_some()).then_some(())
        })
        .await;
    }

    /// A slot for a new connection of `peer`: a free one, or, when every
    /// slot is taken, the one of the connection closed for it (see the
    /// module's rule; this waits until that one is gone).
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
                    },
                    evicted: rx,
                });
            }
            // One at a time: the next only once that one is gone.
            if !state.table.evicting() {
                if let Some(id) = state.table.victim(now) {
                    state.table.set_evicting(id);
                    if let Some(tx) = state.evictions.remove(&id) {
                        // Gone already if its task ended: its slot is freed anyway.
                        let _ = tx.send(());
                    }
                }
            }
            None
        })
        .await
    }

    /// Waits until `check` gives an answer; it is asked again whenever a
    /// slot is freed, a connection starts waiting, or a grace ends.
    async fn wait<T>(&self, mut check: impl FnMut(&mut State<K>, Instant) -> Option<T>) -> T {
        loop {
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
}

impl<K> Clone for SlotHandle<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            id: self.id,
        }
    }
}

impl<K> SlotHandle<K> {
    /// Marks the connection busy until the guard is dropped; `None` if it
    /// is already being closed for a newcomer (its request is then not to
    /// be handled: the connection goes without an answer).
    pub(crate) fn try_busy(&self) -> Option<Busy<K>> {
        self.shared.lock().table.set_busy(self.id).then(|| Busy {
            handle: self.clone(),
        })
    }
}

/// A busy connection: waiting again (from then on) once dropped.
#[derive(Debug)]
pub(crate) struct Busy<K> {
    handle: SlotHandle<K>,
}

impl<K> Drop for Busy<K> {
    fn drop(&mut self) {
        self.handle
            .shared
            .lock()
            .table
            .set_waiting(self.handle.id, Instant::now());
        self.handle.shared.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_free_slot_first_then_no_victim_within_the_grace() {
        let t0 = Instant::now();
        let mut table = Table::new(2, G);
        let a = table.insert(1, t0).unwrap();
        let _b = table.insert(1, t0 + ms(10)).unwrap();
        assert!(!table.has_room());
        assert_eq!(table.insert(1, t0), None);
        // Nobody has waited the grace yet.
        assert_eq!(table.victim(t0 + ms(50)), None);
        assert_eq!(table.next_evictable(), Some(t0 + G));
        // The longest waiting goes first.
        assert_eq!(table.victim(t0 + ms(120)), Some(a));
        table.remove(a);
        assert!(table.has_room());
    }

    #[test]
    fn busy_connections_are_never_victims() {
        let t0 = Instant::now();
        let mut table = Table::new(2, G);
        let a = table.insert(1, t0).unwrap();
        let b = table.insert(1, t0).unwrap();
        assert!(table.set_busy(a));
        assert_eq!(table.victim(t0 + ms(500)), Some(b));
        assert!(table.set_busy(b));
        assert_eq!(table.victim(t0 + ms(500)), None);
        assert_eq!(table.next_evictable(), None);
        // Answered: waiting again, with a new grace.
        table.set_waiting(a, t0 + ms(600));
        assert_eq!(table.victim(t0 + ms(650)), None);
        assert_eq!(table.victim(t0 + ms(700)), Some(a));
    }

    #[test]
    fn the_peer_holding_the_most_slots_loses_one_first() {
        let t0 = Instant::now();
        let mut table = Table::new(4, G);
        // Root's connection is the oldest, but uid 1000 holds three.
        let root = table.insert(0, t0).unwrap();
        let first = table.insert(1000, t0 + ms(1)).unwrap();
        table.insert(1000, t0 + ms(2)).unwrap();
        table.insert(1000, t0 + ms(3)).unwrap();
        let now = t0 + ms(200);
        assert_eq!(table.victim(now), Some(first));
        // Being closed: not chosen twice, and not counted.
        table.set_evicting(first);
        assert!(table.evicting());
        assert!(!table.set_busy(first), "a connection being closed stays so");
        let second = table.victim(now).unwrap();
        assert_ne!(second, root);
        table.remove(first);
        table.set_evicting(second);
        table.remove(second);
        // Now one each: the longest waiting.
        assert_eq!(table.victim(now), Some(root));
    }

    #[tokio::test]
    async fn a_newcomer_evicts_the_longest_waiting_once_its_grace_is_over() {
        let slots = Slots::new(2, G);
        let mut a = slots.admit(7).await;
        let b = slots.admit(7).await;
        let busy = b.handle().try_busy().unwrap();
        // Full; a is within its grace: not ready yet, then ready.
        let started = Instant::now();
        slots.ready().await;
        assert!(started.elapsed() >= G);
        let admit = slots.admit(8);
        let mut admit = std::pin::pin!(admit);
        // a is told to close; the newcomer waits until it has.
        tokio::select! {
            () = a.evicted() => {}
            _ = &mut admit => panic!("admitted before a slot was freed"),
        }
        drop(a);
        let c = admit.await;
        // The busy one stays busy; the newcomer is waiting.
        drop(busy);
        assert!(c.handle().try_busy().is_some());
        drop(b);
        let _d = slots.admit(9).await;
    }
}
