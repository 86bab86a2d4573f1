//! The connection table's census: its flows per backend (live, closing,
//! idle), its live flows and their handshakes, and the half-open table's
//! occupancy, counted off lbd's loop.
//!
//! Why: a walk of the connection table costs about 155 ns a flow
//! (BENCHMARKS.md), seconds for the largest one (`conntrack_size` 16 Mi,
//! twice as many ways). Made in the engine's loop for every status read,
//! scrape and `drain --wait` poll, it held health events, drain deadlines,
//! replication ticks and BIRD's answers behind it. Now a census walks a
//! second mapping of the tables on a blocking thread (the tables'
//! protocol makes reads safe against the data plane's writes), never more
//! than one at a time; the loop answers a read of counts from the latest
//! census if it is recent enough for that read ([`Desk`]), and parks the
//! read until the next census ends otherwise, serving everything else
//! meanwhile. Counts are then at most [`FRESH`] (or two walks) older than
//! the read, never older than a drain: a drained backend's zero is always
//! one counted after its drain began.
//!
//! The census a read is answered from is lent to the engine for that
//! read only (`Engine::lend_census`), so `Engine::status` keeps its
//! signature; called outside such a loan it counts on the spot.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lb_common::{
    consts::{FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS, IPPROTO_UDP},
    FlowEntry, FlowKey,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Engine;
use crate::{
    api::{
        route::{Call, Route},
        Method, Request,
    },
    conntrack::table::FlowTable,
    model::{AdminState, FlowCount, IdleTimeouts},
};

/// How long after its start a census still answers a read (a table
/// whose walk takes longer gets twice its walk): fresh enough that a
/// status read just after flows opened shows them, and at most one walk
/// starts per this much time however often counts are read.
pub(crate) const FRESH: Duration = Duration::from_millis(250);

/// Flows a walk reads between two looks at its cancel flag.
const CANCEL_EVERY: u64 = 4096;

/// What a census counts with, taken from the engine at its start.
#[derive(Debug, Clone)]
pub(crate) struct CensusInput {
    /// When it started (what reads and drains are compared with).
    pub started: Instant,
    /// The monotonic clock at its start (entries' `last_seen_ns`).
    pub now_ns: u64,
    /// Generation of every applied backend, by id: a flow naming an id
    /// with another generation is a removed backend's leftover (counted
    /// in the table's `entries` while live, in no backend's flows).
    pub generations: HashMap<u32, u32>,
    /// Idle timeouts (live against idle flows).
    pub timeouts: IdleTimeouts,
    /// A `[sync]` mesh node: the peers' flows it holds as copies (see
    /// `replication::is_peer_copy`) are no backend's flows here, so the
    /// counts and `drain --wait` are this node's own. Off elsewhere: no
    /// copy is marked there, and an own stamp may look marked.
    pub copies_apart: bool,
}

/// One walk's counts.
#[derive(Debug, Clone)]
pub(crate) struct Census {
    /// When the walk started.
    pub started: Instant,
    /// How long it took.
    pub took: Duration,
    /// Flows per backend, by its id and generation.
    by_backend: HashMap<(u32, u32), FlowCount>,
    /// Live flows of the whole table (what an eviction would cut: closed
    /// and expired entries stay in their ways until a new flow takes
    /// them, so they do not count towards full), those of removed
    /// backends and VIPs too: their ways stay taken, ranked live, until
    /// they idle out.
    pub entries: u64,
    /// Of them, the TCP handshakes (`FLOW_F_HALF_OPEN`).
    pub handshakes: u64,
    /// Half-open flows held in the half-open table (None: not read by
    /// this census).
    pub half_open: Option<u64>,
}

impl Census {
    /// A census of nothing (one cancelled).
    pub(crate) fn empty(started: Instant) -> Self {
        Self {
            started,
            took: Duration::ZERO,
            by_backend: HashMap::new(),
            entries: 0,
            handshakes: 0,
            half_open: None,
        }
    }

    /// The flows of the backend with `id` and `generation` (none for a
    /// backend applied after the census started).
    pub(crate) fn backend(&self, id: u32, generation: u32) -> FlowCount {
        self.by_backend
            .get(&(id, generation))
            .copied()
            .unwrap_or_default()
    }

    /// Whether this census counts a backend in `admin` state as of it: a
    /// draining backend's flows only if the walk began after the drain
    /// did (an earlier one may count flows that ended since, and a zero
    /// from it does not say the drain is over).
    pub(crate) fn counts_since(&self, admin: &AdminState) -> bool {
        match admin {
            AdminState::Draining { since, .. } => self.started >= *since,
            AdminState::Enabled | AdminState::Maintenance => true,
        }
    }
}

/// Where a flow stands, as a census counts it.
#[derive(Debug, Clone, Copy)]
enum Standing {
    /// FIN or RST seen, and no packet since for the closing horizon
    /// (`closed_and_quiet`).
    Closing,
    /// No packet within its idle timeout.
    Idle,
    /// Neither: live.
    Live,
}

/// Counts `flows` (a walk of the connection table) as of `input`; None
/// when `cancel` was set meanwhile. The half-open table is left to the
/// caller (`half_open` None).
pub(crate) fn tally(
    flows: impl IntoIterator<Item = (FlowKey, FlowEntry)>,
    input: &CensusInput,
    cancel: &AtomicBool,
) -> Option<Census> {
    let mut by_backend: HashMap<(u32, u32), FlowCount> = HashMap::new();
    let mut entries = 0u64;
    let mut handshakes = 0u64;
    let mut read = 0u64;
    for (key, entry) in flows {
        read += 1;
        if read.is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            return None;
        }
        // A handshake (its SYN in the table, no ACK yet) is live for the
        // half-open timeout, then idle: an abandoned SYN does not hold a
        // drain for the connection's idle timeout.
        let handshake = entry.flags & FLOW_F_HALF_OPEN != 0;
        let idle_limit = if handshake {
            crate::daemon::flow::HALF_OPEN_TIMEOUT
        } else if key.proto == IPPROTO_UDP {
            input.timeouts.udp
        } else {
            input.timeouts.tcp
        };
        let silent = Duration::from_nanos(input.now_ns.saturating_sub(entry.last_seen_ns));
        let state = if closed_and_quiet(&entry, silent) {
            Standing::Closing
        } else if silent > idle_limit + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS) {
            Standing::Idle
        } else {
            // Live in the table whatever its backend: a removed backend's
            // or VIP's flow holds its way, ranked live by eviction, until
            // it idles out or its next packet re-pins it.
            entries += 1;
            handshakes += u64::from(handshake);
            Standing::Live
        };
        let generation = entry.backend_generation;
        if input.generations.get(&entry.backend_id) != Some(&generation) {
            // A removed backend's (or VIP's) leftover: no backend's flow,
            // nothing a drain waits for.
            continue;
        }
        if input.copies_apart && crate::daemon::replication::is_peer_copy(entry.last_seen_ns) {
            // A peer's flow, not forwarded here since it was copied: it
            // takes its way (counted above), but no drain here waits for
            // it, and per-node counts do not add up the whole mesh.
            continue;
        }
        let count = by_backend
            .entry((entry.backend_id, generation))
            .or_default();
        match state {
            Standing::Closing => count.closing += 1,
            Standing::Idle => count.idle += 1,
            Standing::Live => count.live += 1,
        }
    }
    Some(Census {
        started: input.started,
        took: input.started.elapsed(),
        by_backend,
        entries,
        handshakes,
        half_open: None,
    })
}

/// How long a flow marked closed (FIN or RST seen) must go without a
/// packet before the census counts it closing rather than live. A FIN
/// says only that one side is done: in DSR and the tunnel modes the
/// balancer sees the client's side alone, and a client that half-closes
/// after its request (`shutdown(SHUT_WR)`) keeps ACKing the response
/// through it for as long as it streams; an RST may be spoofed or out of
/// window (the backend ignores it, RFC 5961). Five touch intervals: a
/// flow whose packets still come is stamped every
/// `FLOW_TOUCH_INTERVAL_NS`, and the rest is slack for a pause in the
/// response or a retransmission's backoff; short enough that a drain
/// ends a few seconds after its last connection's final ACK.
const CLOSING_QUIET_NS: u64 = 5 * FLOW_TOUCH_INTERVAL_NS;

/// Whether a flow (`entry`, silent for `silent`) is closing: FIN or RST
/// seen, and quiet past [`CLOSING_QUIET_NS`] since, plus the touch
/// interval its last-seen time may lag its last packet by. One still
/// seen within it is live: a drain must not end under a half-closed
/// connection still streaming.
fn closed_and_quiet(entry: &FlowEntry, silent: Duration) -> bool {
    let horizon = Duration::from_nanos(CLOSING_QUIET_NS + FLOW_TOUCH_INTERVAL_NS);
    entry.flags & (FLOW_F_FIN | FLOW_F_RST) != 0 && silent > horizon
}

/// Adds the handshakes the half-open table holds in time (`half_open`, a
/// walk of it) to their backends' live flows: the client's ACK still
/// takes such a handshake to its SYN's backend while that backend is
/// alive (a draining one is), so a drain must wait for it. The table's
/// totals (`entries`, `handshakes`: the connection table's) stay as
/// they are. False when `cancel` was set meanwhile.
pub(crate) fn tally_half_open(
    census: &mut Census,
    half_open: impl IntoIterator<Item = (FlowKey, FlowEntry)>,
    input: &CensusInput,
    cancel: &AtomicBool,
) -> bool {
    let limit =
        crate::daemon::flow::HALF_OPEN_TIMEOUT + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS);
    for (read, (_, entry)) in half_open.into_iter().enumerate() {
        if (read as u64 + 1).is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            return false;
        }
        let generation = entry.backend_generation;
        if input.generations.get(&entry.backend_id) != Some(&generation) {
            continue;
        }
        let silent = Duration::from_nanos(input.now_ns.saturating_sub(entry.last_seen_ns));
        if entry.flags & (FLOW_F_FIN | FLOW_F_RST) == 0 && silent <= limit {
            census
                .by_backend
                .entry((entry.backend_id, generation))
                .or_default()
                .live += 1;
        }
    }
    true
}

/// The connection table and the half-open table mapped a second time,
/// for walks on a thread of their own (the engine's mappings stay its
/// own). Holding the maps' fds, they outlive a data plane torn down
/// while a walk runs.
pub(crate) struct CensusTables {
    flows: FlowTable,
    half_open: FlowTable,
}

impl CensusTables {
    /// Walks `flows` (the connection table) and counts `half_open`, both
    /// mappings of their own (`Dataplane::remapped_tables`).
    pub(crate) fn new(flows: FlowTable, half_open: FlowTable) -> Self {
        Self { flows, half_open }
    }

    /// One census as of `input` (None: cancelled).
    fn walk(&self, input: &CensusInput, cancel: &AtomicBool) -> Option<Census> {
        let mut census = tally(self.flows.iter(), input, cancel)?;
        if !tally_half_open(&mut census, self.half_open.iter(), input, cancel) {
            return None;
        }
        census.half_open = Some(self.half_open.count());
        census.took = input.started.elapsed();
        Some(census)
    }
}

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

/// The reads of counts and the censuses that answer them, as a state
/// machine over time (no clock, no threads: [`Censuses`] drives it).
/// `R` is a parked read (its answer's channel).
pub(crate) struct Desk<R> {
    /// The latest finished census.
    latest: Option<Arc<Census>>,
    /// When the census in flight started (at most one).
    in_flight: Option<Instant>,
    /// Reads waiting for a census, with when they came.
    waiting: Vec<(Instant, R)>,
}

impl<R> Default for Desk<R> {
    fn default() -> Self {
        Self {
            latest: None,
            in_flight: None,
            waiting: Vec::new(),
        }
    }
}

impl<R> Desk<R> {
    /// How long after its start a census answers a read: [`FRESH`], or
    /// twice the latest walk when that is longer.
    fn tolerance(&self) -> Duration {
        self.latest
            .as_ref()
            .map_or(FRESH, |latest| FRESH.max(latest.took.saturating_mul(2)))
    }

    /// Whether `census` answers a read that came at `came` while the
    /// newest drain (of a backend whose flows it counts) began at
    /// `drain`: it started at most the tolerance before the read, and
    /// after the drain.
    fn answers(&self, census: &Census, came: Instant, drain: Option<Instant>) -> bool {
        census.started + self.tolerance() >= came && drain.is_none_or(|d| census.started >= d)
    }

    /// A read at `now` (`drain`: see [`Desk::answers`]): answered from the
    /// latest census if that answers it, else parked.
    pub(crate) fn read(
        &mut self,
        now: Instant,
        drain: Option<Instant>,
        read: R,
    ) -> Option<(Arc<Census>, R)> {
        match &self.latest {
            Some(latest) if self.answers(latest, now, drain) => Some((Arc::clone(latest), read)),
            _ => {
                self.waiting.push((now, read));
                None
            }
        }
    }

    /// Whether a census is to start: a read waits and none is in flight.
    pub(crate) fn wants_census(&self) -> bool {
        !self.waiting.is_empty() && self.in_flight.is_none()
    }

    /// A census started at `at`.
    pub(crate) fn started(&mut self, at: Instant) {
        self.in_flight = Some(at);
    }

    /// Whether a census is in flight.
    #[cfg(test)]
    fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The census in flight ended with `census` (None: it failed): the
    /// waiting reads it answers (`drain` as of now), with it.
    pub(crate) fn finished(
        &mut self,
        census: Option<Census>,
        drain: Option<Instant>,
    ) -> Vec<(Arc<Census>, R)> {
        self.in_flight = None;
        let Some(census) = census else {
            return Vec::new();
        };
        let census = Arc::new(census);
        self.latest = Some(Arc::clone(&census));
        let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(came, _)| self.answers(&census, *came, drain));
        self.waiting = waiting;
        answered
            .into_iter()
            .map(|(_, read)| (Arc::clone(&census), read))
            .collect()
    }
}

/// How long walks stay in lbd's loop after a walk off the loop failed,
/// before the tables are mapped a second time again; doubled after each
/// further failure up to [`REMAP_BACKOFF_MAX`]. Why: one failed walk (a
/// panic) must not put seconds-long walks of a huge table into the loop
/// for the rest of the process's life, nor a walk that keeps failing be
/// retried at every tick.
pub(crate) const REMAP_BACKOFF: Duration = Duration::from_secs(30);
/// The longest back-off between two tries of the second mapping.
pub(crate) const REMAP_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Where walks of the tables are made (censuses here, replication's walks
/// too): on a second mapping off lbd's loop, or in the loop where none
/// can be made, or for a while after a walk off the loop failed.
enum Mapping<T> {
    /// Not looked up yet (or looked up again: the back-off passed).
    Unopened,
    /// A second mapping, walked on a blocking thread.
    Mapped(T),
    /// Walked in the loop: for good (`retry_at` None: no second mapping
    /// can be made), or until `retry_at`.
    Inline { retry_at: Option<Instant> },
}

/// The second mapping walks off lbd's loop read, with its fallback to the
/// loop and the back-off after which that fallback is left again (see
/// [`REMAP_BACKOFF`]). `T` is the mapping (cheap to clone: an `Arc`).
pub(crate) struct OffLoop<T> {
    mapping: Mapping<T>,
    /// Walks off the loop failed in a row (reset by one that succeeds):
    /// each doubles the back-off.
    failures: u32,
    /// What walks (for the log).
    what: &'static str,
}

impl<T: Clone> OffLoop<T> {
    /// Nothing mapped yet: the first walk maps the tables.
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            mapping: Mapping::Unopened,
            failures: 0,
            what,
        }
    }

    /// Already mapped as `mapped` (tests: tables in memory).
    #[cfg(test)]
    pub(crate) fn mapped(mapped: T, what: &'static str) -> Self {
        Self {
            mapping: Mapping::Mapped(mapped),
            failures: 0,
            what,
        }
    }

    /// The mapping a walk starting at `now` reads off the loop; None: walk
    /// in the loop. Maps the tables with `open` (None: they cannot be
    /// mapped at all, a kernel map) the first time, and again once the
    /// back-off after a failed walk passed. A first mapping that fails
    /// leaves the walks in the loop for good, as before; one that fails
    /// on a retry waits for the next back-off.
    pub(crate) fn get<E: std::fmt::Display>(
        &mut self,
        now: Instant,
        open: impl FnOnce() -> Option<Result<T, E>>,
    ) -> Option<T> {
        if let Mapping::Inline { retry_at: Some(at) } = self.mapping {
            if now >= at {
                self.mapping = Mapping::Unopened;
            }
        }
        if matches!(self.mapping, Mapping::Unopened) {
            let what = self.what;
            self.mapping = match open() {
                Some(Ok(mapped)) => {
                    if self.failures > 0 {
                        info!(
                            walks = what,
                            "the tables are mapped again: walked apart from lbd's loop"
                        );
                    }
                    Mapping::Mapped(mapped)
                }
                Some(Err(error)) if self.failures > 0 => {
                    let backoff = self.back_off();
                    warn!(walks = what, %error, retry_in_s = backoff.as_secs(), "the tables cannot be mapped again apart from lbd's loop; walked in the loop until the next try");
                    Mapping::Inline {
                        retry_at: Some(now + backoff),
                    }
                }
                Some(Err(error)) => {
                    warn!(walks = what, %error, "the tables cannot be mapped apart from lbd's loop; walked in the loop");
                    Mapping::Inline { retry_at: None }
                }
                None => Mapping::Inline { retry_at: None },
            };
        }
        match &self.mapping {
            Mapping::Mapped(mapped) => Some(mapped.clone()),
            Mapping::Unopened | Mapping::Inline { .. } => None,
        }
    }

    /// A walk off the loop failed at `now` (it panicked): walks are made
    /// in the loop until the back-off passes, then mapped again.
    pub(crate) fn failed(&mut self, now: Instant) {
        if matches!(self.mapping, Mapping::Mapped(_)) {
            let backoff = self.back_off();
            warn!(
                walks = self.what,
                retry_in_s = backoff.as_secs(),
                "a walk of the tables apart from lbd's loop failed; they are walked in the loop until mapped again"
            );
            self.mapping = Mapping::Inline {
                retry_at: Some(now + backoff),
            };
        }
    }

    /// A walk off the loop succeeded: the next failure backs off from
    /// [`REMAP_BACKOFF`] again.
    pub(crate) fn succeeded(&mut self) {
        if matches!(self.mapping, Mapping::Mapped(_)) {
            self.failures = 0;
        }
    }

    /// The back-off after one more failure.
    fn back_off(&mut self) -> Duration {
        let backoff = REMAP_BACKOFF
            .saturating_mul(1 << self.failures.min(5))
            .min(REMAP_BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        backoff
    }
}

/// The census runner the engine's loop owns: the [`Desk`], the tables,
/// and the census in flight, whose result comes back on the channel
/// [`Censuses::new`] returns. Dropping it cancels a walk in flight.
pub(crate) struct Censuses<R> {
    desk: Desk<R>,
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

/// Whether `request` reads flow counts (status, the VIPs, one VIP, a
/// backend's flows): it is answered from a census.
pub(crate) fn reads_counts(request: &Request) -> bool {
    request.method == Method::Get
        && matches!(
            Call::decode(request),
            Ok(Call {
                route: Route::Status | Route::ListVips | Route::GetVip(_) | Route::Flows(..),
                ..
            })
        )
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use lb_common::consts::IPPROTO_TCP;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn census_at(started: Instant, took: Duration) -> Census {
        Census {
            took,
            ..Census::empty(started)
        }
    }

    #[test]
    fn a_read_is_answered_from_a_fresh_census_and_parked_otherwise() {
        let t0 = Instant::now();
        let mut desk: Desk<&str> = Desk::default();
        // No census yet: the read waits, and one is asked for.
        assert!(desk.read(t0, None, "first").is_none());
        assert!(desk.wants_census());
        desk.started(t0);
        assert!(!desk.wants_census(), "one census at a time");
        let answered = desk.finished(Some(census_at(t0, 10 * MS)), None);
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].1, "first");
        // Within FRESH of its start: answered at once, nothing walked.
        let (census, read) = desk.read(t0 + 200 * MS, None, "soon").expect("answered");
        assert_eq!((census.started, read), (t0, "soon"));
        assert!(!desk.wants_census());
        // Past it: parked, and a census is asked for.
        assert!(desk.read(t0 + 300 * MS, None, "later").is_none());
        assert!(desk.wants_census());
    }

    #[test]
    fn one_census_in_flight_answers_the_reads_it_can_and_the_rest_wait_for_the_next() {
        let t0 = Instant::now();
        let mut desk: Desk<u32> = Desk::default();
        assert!(desk.read(t0, None, 1).is_none());
        desk.started(t0);
        // Reads while it walks: none starts another.
        assert!(desk.read(t0 + 100 * MS, None, 2).is_none());
        assert!(desk.read(t0 + 900 * MS, None, 3).is_none());
        assert!(!desk.wants_census());
        assert!(desk.in_flight());
        // It took 1 s: it answers reads up to 2 s after its start.
        let answered: Vec<u32> = desk
            .finished(Some(census_at(t0, 1000 * MS)), None)
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(answered, [1, 2, 3]);
        assert!(!desk.wants_census());
        // The tolerance follows the walk: 2 s now, not FRESH.
        assert!(desk.read(t0 + 1900 * MS, None, 4).is_some());
        assert!(desk.read(t0 + 2100 * MS, None, 5).is_none());
        assert!(desk.wants_census());
    }

    #[test]
    fn a_census_from_before_a_drain_never_answers_for_it() {
        let t0 = Instant::now();
        let drain = t0 + 100 * MS;
        let mut desk: Desk<&str> = Desk::default();
        assert!(desk.read(t0, None, "before").is_none());
        desk.started(t0);
        // The drain began while the census walked; a poll of it came.
        assert!(desk.read(drain + 10 * MS, Some(drain), "poll").is_none());
        let census = census_at(t0, 20 * MS);
        let answered = desk.finished(Some(census), Some(drain));
        assert!(
            answered.is_empty(),
            "the census began before the drain: it answers none"
        );
        assert!(desk.wants_census(), "a census after the drain is asked for");
        let draining = AdminState::Draining {
            since: drain,
            deadline: None,
        };
        // Were it shown, it would be marked as counting (lbctl's drain
        // --wait does not take its zero).
        assert!(!census_at(t0, MS).counts_since(&draining));
        assert!(census_at(t0, MS).counts_since(&AdminState::Enabled));
        // A census that began after the drain answers both.
        desk.started(drain + 20 * MS);
        let after = census_at(drain + 20 * MS, 20 * MS);
        assert!(after.counts_since(&draining));
        let answered: Vec<&str> = desk
            .finished(Some(after), Some(drain))
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(answered, ["before", "poll"]);
        // A fresh census from before the drain is no answer either.
        assert!(desk.read(drain + 30 * MS, None, "any").is_some());
        assert!(desk
            .read(drain + 30 * MS, Some(drain + 25 * MS), "newer drain")
            .is_none());
    }

    #[test]
    fn a_failed_census_frees_the_desk_for_the_next() {
        let t0 = Instant::now();
        let mut desk: Desk<u8> = Desk::default();
        assert!(desk.read(t0, None, 1).is_none());
        desk.started(t0);
        assert!(desk.finished(None, None).is_empty());
        assert!(desk.wants_census(), "the read still waits");
    }

    fn flow(sport: u16, proto: u8) -> FlowKey {
        FlowKey {
            sport,
            proto,
            ..FlowKey::default()
        }
    }

    /// A census at `now_ns` of backends at these `(id, generation)`s,
    /// with TCP and UDP idle timeouts of 300 s and 30 s.
    fn input_at(now_ns: u64, generations: &[(u32, u32)]) -> CensusInput {
        CensusInput {
            started: Instant::now(),
            now_ns,
            generations: generations.iter().copied().collect(),
            timeouts: IdleTimeouts {
                tcp: Duration::from_secs(300),
                udp: Duration::from_secs(30),
            },
            copies_apart: false,
        }
    }

    fn entry(backend_id: u32, generation: u32, last_seen_ns: u64, flags: u32) -> FlowEntry {
        FlowEntry {
            backend_id,
            backend_generation: generation,
            last_seen_ns,
            flags,
            ..FlowEntry::default()
        }
    }

    #[test]
    fn the_tally_tells_live_closing_idle_and_leftover_flows() {
        let now_ns = 1_000_000_000_000;
        let input = input_at(now_ns, &[(1, 7), (2, 1)]);
        let secs = |s: u64| now_ns - s * 1_000_000_000;
        let flows = [
            (flow(1, IPPROTO_TCP), entry(1, 7, secs(1), 0)),
            (flow(2, IPPROTO_TCP), entry(1, 7, secs(1), FLOW_F_HALF_OPEN)),
            // Closed and quiet past the closing horizon.
            (flow(3, IPPROTO_TCP), entry(1, 7, secs(10), FLOW_F_FIN)),
            (flow(4, IPPROTO_TCP), entry(1, 7, secs(400), 0)),
            // A handshake past the half-open timeout is idle.
            (
                flow(5, IPPROTO_TCP),
                entry(1, 7, secs(200), FLOW_F_HALF_OPEN),
            ),
            (flow(6, IPPROTO_UDP), entry(2, 1, secs(60), 0)),
            (flow(7, IPPROTO_UDP), entry(2, 1, secs(2), 0)),
            // Backend 1 of an earlier generation: a removed one's leftover.
            (flow(8, IPPROTO_TCP), entry(1, 6, secs(1), 0)),
            (flow(9, IPPROTO_TCP), entry(3, 1, secs(1), 0)),
        ];
        let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
        assert_eq!(
            census.backend(1, 7),
            FlowCount {
                live: 2,
                closing: 1,
                idle: 2
            }
        );
        assert_eq!(
            census.backend(2, 1),
            FlowCount {
                live: 1,
                closing: 0,
                idle: 1
            }
        );
        assert_eq!(census.backend(1, 6), FlowCount::default());
        // The leftovers (8 and 9) still take their ways: the table counts them.
        assert_eq!((census.entries, census.handshakes), (5, 1));
        assert_eq!(census.started, input.started);
    }

    /// In a `[sync]` mesh the table also holds the peers' flows, as
    /// copies (marked, see `replication::is_peer_copy`): a backend's
    /// counts (`lbctl status`, `lbd_backend_flows`, `drain --wait`) are
    /// this node's own flows, so a drain on this node waits for no flow
    /// another node forwards. The copies still take their ways (the
    /// table's live entries count them). A node outside a mesh counts
    /// every entry (its own stamps may look marked).
    #[test]
    fn a_mesh_node_counts_its_own_flows_not_its_peers_copies() {
        let now_ns = 1_000_000_000_000;
        let mut input = input_at(now_ns, &[(1, 7)]);
        let copy = crate::daemon::replication::mark_replica(now_ns - 2_000_000_000);
        let flows = [
            (flow(1, IPPROTO_TCP), entry(1, 7, now_ns - 1_000_000_000, 0)),
            (flow(2, IPPROTO_TCP), entry(1, 7, copy, 0)),
            (flow(3, IPPROTO_TCP), entry(1, 7, copy, 0)),
        ];
        input.copies_apart = true;
        let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
        assert_eq!(
            census.backend(1, 7).live,
            1,
            "the peers' copies are not this node's"
        );
        assert_eq!(census.entries, 3, "copies take their ways");
        input.copies_apart = false;
        let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
        assert_eq!(census.backend(1, 7).live, 3);
    }

    /// A flow marked closed (FIN or RST seen) whose packets still come (a
    /// client that half-closed, ACKing a long response through the
    /// balancer in DSR or a tunnel mode) is live for a drain until it has
    /// been quiet past the closing horizon (`CLOSING_QUIET_NS`, plus the touch
    /// interval its last-seen time may lag by); then it is closing.
    /// Before, the mark alone made it closing, and `drain --wait` ended
    /// while it streamed.
    #[test]
    fn a_closed_flow_still_seen_is_live_until_quiet_past_the_closing_horizon() {
        let now_ns = 1_000_000_000_000;
        let input = input_at(now_ns, &[(1, 7)]);
        let quiet = CLOSING_QUIET_NS + FLOW_TOUCH_INTERVAL_NS;
        let flows = [
            // Half-closed, its ACKs still coming (seen 0.5 s ago).
            (
                flow(1, IPPROTO_TCP),
                entry(1, 7, now_ns - 500_000_000, FLOW_F_FIN),
            ),
            // Reset a moment ago, or seen just within the horizon.
            (
                flow(2, IPPROTO_TCP),
                entry(1, 7, now_ns - quiet, FLOW_F_RST),
            ),
            // Quiet past it: closing.
            (
                flow(3, IPPROTO_TCP),
                entry(1, 7, now_ns - quiet - 1, FLOW_F_FIN),
            ),
            (
                flow(4, IPPROTO_TCP),
                entry(1, 7, now_ns - 60_000_000_000, FLOW_F_FIN | FLOW_F_RST),
            ),
        ];
        let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
        assert_eq!(
            census.backend(1, 7),
            FlowCount {
                live: 2,
                closing: 2,
                idle: 0
            }
        );
        assert_eq!((census.entries, census.handshakes), (2, 0));
    }

    /// After `lbctl vip remove` (or a backend's removal) its flows stay in
    /// their ways, ranked live, until they idle out: the table's live
    /// entries (what `lbd_conntrack_entries` and the capacity alert read)
    /// count them; no backend's flows and no drain do.
    #[test]
    fn a_removed_backends_live_flows_still_fill_the_table() {
        let now_ns = 1_000_000_000_000;
        // Backend 1 is now generation 2; backend 4 is gone.
        let input = input_at(now_ns, &[(1, 2)]);
        let secs = |s: u64| now_ns - s * 1_000_000_000;
        let flows = [
            (flow(1, IPPROTO_TCP), entry(1, 2, secs(1), 0)),
            // Generation 1 of id 1, and id 4: removed backends' flows.
            (flow(2, IPPROTO_TCP), entry(1, 1, secs(1), 0)),
            (flow(3, IPPROTO_UDP), entry(4, 9, secs(5), 0)),
            (flow(4, IPPROTO_TCP), entry(4, 9, secs(2), FLOW_F_HALF_OPEN)),
            // Over (closed and quiet, idle): they do not count towards full.
            (flow(5, IPPROTO_TCP), entry(4, 9, secs(10), FLOW_F_RST)),
            (flow(6, IPPROTO_UDP), entry(4, 9, secs(60), 0)),
        ];
        let census = tally(flows, &input, &AtomicBool::new(false)).expect("not cancelled");
        assert_eq!((census.entries, census.handshakes), (4, 1));
        assert_eq!(
            census.backend(1, 2),
            FlowCount {
                live: 1,
                closing: 0,
                idle: 0
            }
        );
        assert_eq!(census.backend(1, 1), FlowCount::default());
        assert_eq!(census.backend(4, 9), FlowCount::default());
        assert_eq!(census.by_backend.len(), 1, "{:?}", census.by_backend);
    }

    /// A SYN the half-open table holds goes to its backend on the
    /// client's ACK even while that backend drains: in time, it is one of
    /// the backend's live flows (not one of the connection table's).
    #[test]
    fn handshakes_held_in_the_half_open_table_count_while_in_time() {
        let now_ns = 1_000_000_000_000;
        let input = input_at(now_ns, &[(1, 7)]);
        let secs = |s: u64| now_ns - s * 1_000_000_000;
        let mut census = tally([], &input, &AtomicBool::new(false)).expect("not cancelled");
        let held = [
            (flow(1, IPPROTO_TCP), entry(1, 7, secs(1), FLOW_F_HALF_OPEN)),
            // Past the half-open timeout: the ACK no longer finds it.
            (
                flow(2, IPPROTO_TCP),
                entry(1, 7, secs(60), FLOW_F_HALF_OPEN),
            ),
            // A removed backend's leftover.
            (flow(3, IPPROTO_TCP), entry(1, 6, secs(1), FLOW_F_HALF_OPEN)),
        ];
        assert!(tally_half_open(
            &mut census,
            held,
            &input,
            &AtomicBool::new(false)
        ));
        assert_eq!(
            census.backend(1, 7),
            FlowCount {
                live: 1,
                closing: 0,
                idle: 0
            }
        );
        assert_eq!((census.entries, census.handshakes), (0, 0));
    }

    #[test]
    fn only_reads_of_counts_wait_for_a_census() {
        let get = |path: &[&str]| Request {
            method: Method::Get,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            query: Default::default(),
            body: serde_json::Value::Null,
        };
        let vip = "198.18.0.100:80/tcp";
        assert!(reads_counts(&get(&["status"])));
        assert!(reads_counts(&get(&["vips"])));
        assert!(reads_counts(&get(&["vips", vip])));
        assert!(reads_counts(&get(&[
            "vips",
            vip,
            "backends",
            "198.18.0.11",
            "flows"
        ])));
        assert!(!reads_counts(&get(&["config"])));
        assert!(!reads_counts(&get(&["no-such-thing"])));
        let mut drain = get(&["vips", vip, "backends", "198.18.0.11", "state"]);
        drain.method = Method::Put;
        assert!(!reads_counts(&drain));
    }

    /// A walk that blocks until `release` says so (5 s at most), as the
    /// walk of a large table does.
    fn held_walk(started: Instant, release: std_mpsc::Receiver<()>) -> Walk {
        Walk::Off(Box::new(move |_| {
            let _ = release.recv_timeout(Duration::from_secs(5));
            Some(census_at(started, started.elapsed()))
        }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_walk_does_not_hold_the_loop_and_answers_the_reads_it_parked() {
        let (mut censuses, mut done) = Censuses::<u32>::new();
        let t0 = Instant::now();
        assert!(censuses.desk.read(t0, None, 1).is_none());
        let (release, held) = std_mpsc::channel();
        let before = Instant::now();
        censuses.launch(t0, held_walk(t0, held));
        // The loop goes on at once: the walk runs elsewhere.
        assert!(
            before.elapsed() < Duration::from_secs(1),
            "launching the census waited for its walk"
        );
        assert!(censuses.desk.in_flight());
        // Another read meanwhile: parked, no second census.
        assert!(censuses.desk.read(Instant::now(), None, 2).is_none());
        assert!(!censuses.desk.wants_census());
        release.send(()).expect("the walk waits");
        let census = tokio::time::timeout(Duration::from_secs(5), done.recv())
            .await
            .expect("the census ends")
            .expect("the channel is open");
        let answered: Vec<u32> = censuses
            .desk
            .finished(census, None)
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(answered, [1, 2]);
    }

    /// A failed walk off the loop sends walks into the loop for a
    /// back-off only: then the tables are mapped again (the back-off
    /// doubling while walks keep failing, reset by one that succeeds); a
    /// table that cannot be mapped at all stays in the loop.
    #[test]
    fn a_failed_walk_falls_back_to_the_loop_until_the_back_off_passes() {
        let opened = std::cell::Cell::new(0u32);
        let open = || {
            opened.set(opened.get() + 1);
            Some(Ok::<_, String>(Arc::new(opened.get())))
        };
        let mut source = OffLoop::new("test walks");
        let t0 = Instant::now();
        assert_eq!(source.get(t0, open), Some(Arc::new(1)));
        source.failed(t0);
        assert_eq!(source.get(t0 + MS, open), None, "in the loop meanwhile");
        assert_eq!(source.get(t0 + REMAP_BACKOFF - MS, open), None);
        assert_eq!(opened.get(), 1);
        let t1 = t0 + REMAP_BACKOFF;
        assert_eq!(source.get(t1, open), Some(Arc::new(2)), "mapped again");
        // Failing again: twice as long.
        source.failed(t1);
        assert_eq!(source.get(t1 + REMAP_BACKOFF, open), None);
        let t2 = t1 + REMAP_BACKOFF * 2;
        assert_eq!(source.get(t2, open), Some(Arc::new(3)));
        // A walk that succeeds resets the back-off.
        source.succeeded();
        source.failed(t2);
        assert_eq!(
            source.get(t2 + REMAP_BACKOFF, open),
            Some(Arc::new(4)),
            "back-off reset"
        );
        // Never longer than the maximum.
        let mut t = t2 + REMAP_BACKOFF;
        for _ in 0..20 {
            source.failed(t);
            t += REMAP_BACKOFF_MAX;
            assert!(source.get(t, open).is_some(), "retried within the maximum");
        }
        // No second mapping possible (a kernel map): in the loop for good.
        let mut kernel = OffLoop::<Arc<u32>>::new("test walks");
        let none = || None::<Result<Arc<u32>, String>>;
        assert_eq!(kernel.get(t0, none), None);
        assert_eq!(kernel.get(t0 + REMAP_BACKOFF_MAX * 2, none), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_walk_that_ends_without_a_census_reports_it() {
        let (mut censuses, mut done) = Censuses::<u32>::new();
        let t0 = Instant::now();
        // A walk that panics.
        censuses.launch(t0, Walk::Off(Box::new(|_| panic!("a walk gone wrong"))));
        let report = tokio::time::timeout(Duration::from_secs(5), done.recv())
            .await
            .expect("reported");
        assert!(matches!(report, Some(None)), "{report:?}");
        // A walk cancelled when the loop ends (the runner dropped).
        let (mut censuses, mut done) = Censuses::<u32>::new();
        let (started_tx, started_rx) = std_mpsc::channel();
        censuses.launch(
            t0,
            Walk::Off(Box::new(move |cancel| {
                let _ = started_tx.send(());
                let deadline = Instant::now() + Duration::from_secs(5);
                while !cancel.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(MS);
                }
                (!cancel.load(Ordering::Relaxed)).then(|| census_at(t0, MS))
            })),
        );
        started_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the walk started");
        drop(censuses);
        let report = tokio::time::timeout(Duration::from_secs(5), done.recv())
            .await
            .expect("reported");
        assert!(matches!(report, Some(None)), "cancelled: {report:?}");
    }
}
