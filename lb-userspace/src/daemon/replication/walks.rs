//! The connection table's walk for replication, off lbd's loop, with the
//! NAT flow table's scan.
//!
//! Why: a sending node's replication tick reads the whole connection
//! table (about 155 ns a flow, BENCHMARKS.md; seconds for the largest
//! `conntrack_size`) to pick the flows to send. Made in lbd's loop every
//! tick, it held health events, API calls, drain deadlines, BIRD's answers
//! and the peers' batches behind it. Now, as the flow censuses do (see
//! `engine::flow_census`), the walk reads a second mapping of the table
//! (`FlowTable::remapped`) on a blocking thread, never more than one at a
//! time; its records come back to the loop, which sends them. The NAT
//! flow table's scan (every entry for a dump: about 1 µs an entry, 0.25 s
//! for the default 262,144) is made by the same walk over a second
//! mapping of that table ([`NatScan`]), so the loop reads neither table.
//!
//! [`Walks`] is the bookkeeping as a state machine over time (no clock,
//! no threads): a tick while a walk runs starts none (the next starts at
//! the first tick after it ended, so walks never pile up), and the window
//! of a walk of recent flows starts at the previous walk's *start* (less
//! [`nat::SCAN_MARGIN_NS`], the stamping clock's lag), so every flow
//! touched while that walk ran is in the next one, and an active flow
//! whose stamp did not move since is not sent again: the data plane
//! re-stamps it at most every
//! [`FLOW_TOUCH_INTERVAL_NS`](lb_common::consts::FLOW_TOUCH_INTERVAL_NS), and on every
//! change of its flags. A new session seen while a walk runs is seen by the
//! next walk (the sessions' marks are read only when one starts), which
//! reads everything for that peer ([`Due`], [`Split`]: the other peers get
//! the walk's own records, read in the same pass); a walk that fails (it
//! panicked) is owed again.
//! [`Walker`] runs the walks: on a blocking thread over the second
//! mapping, or in the loop where there is none (a kernel map, the bench's
//! earlier designs). Dropping it cancels a walk in flight.

use std::sync::atomic::{AtomicBool, Ordering};

use lb_common::NatEntry;
use tokio::sync::Notify;

use super::*;
use crate::{
    conntrack::table::{FlowTable, FlowTableError},
    daemon::engine::flow_census::OffLoop,
    nat::table::NatFlowTable,
};

/// What replication's walks are called in the log.
const WALKS: &str = "replication's walks of the connection table and the NAT flow table";

/// Flows a walk reads between two looks at its cancel flag.
const CANCEL_EVERY: usize = 4096;

/// Which records a walk must read, as the peers' sessions say when it
/// starts (see [`Walks::start`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Due {
    /// Some peer is owed a new session's dump (every entry): its session
    /// is new, or the walk that read its dump failed.
    pub(super) session: bool,
    /// Some peer is not: it gets the walk's [`Planned::scan`] (recent
    /// flows, or the periodic dump).
    pub(super) rest: bool,
}

/// One walk, as the loop decided it at the walk's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Planned {
    /// What it sends to the peers without a new session: recent flows or
    /// the periodic dump, never [`Scan::Session`].
    pub(super) scan: Scan,
    /// Whether it also reads every entry, for the peers owed a new
    /// session's dump (only those get it: see [`Due`]).
    pub(super) session: bool,
    /// Whether it reads `scan`'s records (some peer is not owed a
    /// session's dump).
    pub(super) rest: bool,
    /// A full sync (periodic, or for a new session).
    pub(super) full: bool,
    /// When it started (the data plane's clock): records' ages are taken
    /// against it, and the next window starts from it.
    pub(super) started_ns: u64,
    /// The same instant on lbd's clock: the sender adds the time since
    /// to the records' ages when they go out.
    pub(super) started: Instant,
}

/// The walks' bookkeeping: which walk a tick starts, if any, and what a
/// finished walk leaves for the next.
#[derive(Debug, Default)]
pub(super) struct Walks {
    /// When the last walk that ended with its records started.
    last_scan_ns: u64,
    /// When the last full sync started (None: one is due).
    last_full: Option<Instant>,
    /// Records (flows and NAT'd flows) the last full sync sent: the next
    /// periodic one waits as long as sending that many takes at
    /// [`DUMP_RATE`] (see [`Walks::full_sync_interval`]).
    last_dump_records: usize,
    /// The walk in flight (at most one).
    in_flight: Option<Planned>,
}

impl Walks {
    /// Whether a walk is in flight.
    pub(super) fn walking(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A tick at `now` (`now_ns` on the data plane's clock): the walk it
    /// starts, None while one is in flight. `due` (which peers are owed a
    /// new session's dump, consuming the sessions' marks) is asked only
    /// when a walk starts, so a session that began during a walk gets its
    /// dump from the next one. Only the peers owed one get a session's
    /// dump; the others get this walk's recent flows (or the periodic
    /// dump, when due), read in the same pass.
    pub(super) fn start(
        &mut self,
        due: impl FnOnce() -> Due,
        now_ns: u64,
        now: Instant,
    ) -> Option<Planned> {
        if self.in_flight.is_some() {
            return None;
        }
        let due = due();
        let interval = self.full_sync_interval();
        // A walk reads at most one full set of the table: one with a
        // session's dump for some peers leaves a periodic dump due for
        // the others to the next walk (both sets would hold nearly the
        // same records, twice).
        let periodic = self
            .last_full
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
            && !(due.session && due.rest);
        // A flow is "recent" if stamped since the last walk's start, less
        // the stamping clock's lag (flows touched while it ran may have
        // been read before their touch). Not a whole touch interval
        // before it: the data plane re-stamps an active flow at most once
        // a second (and on every change of its flags), so that window
        // resent every active flow, unchanged, on each of about four
        // ticks, to every peer.
        let scan = if periodic {
            Scan::Periodic
        } else {
            Scan::Recent {
                since: self.last_scan_ns.saturating_sub(nat::SCAN_MARGIN_NS),
            }
        };
        let planned = Planned {
            scan,
            session: due.session,
            rest: due.rest,
            full: due.session || periodic,
            started_ns: now_ns,
            started: now,
        };
        if planned.dumps_all() {
            self.last_full = Some(now);
        }
        self.in_flight = Some(planned);
        Some(planned)
    }

    /// The last full sync sent `records` (flows and NAT'd flows): spaces
    /// the next periodic one by its size.
    pub(super) fn dumped(&mut self, records: usize) {
        self.last_dump_records = records;
    }

    /// How long after a full sync the next periodic one is due:
    /// [`FULL_SYNC_INTERVAL`], or as long as the last dump's records take
    /// at [`DUMP_RATE`] when that is longer. Why: every periodic dump
    /// sends the whole table to every peer, which installs each record on
    /// its loop; at a fixed 10 s the largest table (16 M flows) would
    /// cost the peers about half a core for records they mostly hold
    /// already. A new session's dump never waits for it.
    pub(super) fn full_sync_interval(&self) -> Duration {
        let records = u64::try_from(self.last_dump_records).unwrap_or(u64::MAX);
        let by_size = Duration::from_millis(records.saturating_mul(1000) / DUMP_RATE);
        FULL_SYNC_INTERVAL.max(by_size)
    }

    /// The walk in flight ended, `done` whether with its records: the walk
    /// it was (None: none was in flight). One that failed leaves its
    /// window to the next walk, and its dump owed.
    pub(super) fn finish(&mut self, done: bool) -> Option<Planned> {
        let planned = self.in_flight.take()?;
        if done {
            self.last_scan_ns = planned.started_ns;
        } else if planned.dumps_all() {
            // A session's dump stays owed by its peers (see `Peer`).
            self.last_full = None;
        }
        Some(planned)
    }
}

impl Planned {
    /// Whether every peer gets a full dump from this walk (the periodic
    /// one, or each its session's): the next periodic dump is spaced from
    /// it.
    pub(super) fn dumps_all(&self) -> bool {
        self.scan == Scan::Periodic || (self.session && !self.rest)
    }
}

/// What a walk needs, taken from the engine on the loop at its start.
pub(super) struct WalkInput {
    pub(super) planned: Planned,
    pub(super) topology: Topology,
    /// See [`backend_names`].
    pub(super) names: HashMap<u32, (VipId, IpAddr, u32)>,
    /// A pair's roles (which VIPs' flows this node streams).
    pub(super) roles: Roles,
    /// The NAT flow table's scan, when one is due (see [`NatScan`]).
    pub(super) nat: Option<NatScan>,
}

/// The NAT flow table's scan a walk makes before the connection table's.
/// Why here: a dump reads the whole table (the default one holds 262,144
/// entries, the largest 16 M), every 10 s and for each new session; read
/// on lbd's loop it held the loop as long as a walk of the connection
/// table did.
pub(super) struct NatScan {
    /// What it sends to the peers without a new session (between dumps,
    /// a window of its own: see [`nat::SCAN_MARGIN_NS`]); as the walk's,
    /// read only when [`Planned::rest`].
    pub(super) scan: Scan,
    /// Whether it also reads every NAT'd flow, for the peers owed a new
    /// session's dump (as the walk's [`Planned::session`]).
    pub(super) session: bool,
    /// Which entries it leaves out (the topology's).
    pub(super) rule: nat::SendRule,
}

/// What a walk read: the records it sends, each kind as one allocation
/// that every peer's queue shares (made off the loop, with the walk).
#[derive(Debug)]
pub(super) struct Collected {
    /// The connection table's.
    pub(super) flows: Split<FlowRecord>,
    /// The NAT flow table's, if it was scanned.
    pub(super) nat: Option<NatScanned>,
}

/// One table's records from one walk: those of the walk's scan, for the
/// peers without a new session, and every entry, for those with one.
/// Read in one pass: a peer's new session no longer makes every peer's
/// batch a dump of the whole table, copies included (O(N²) tables per
/// restart in an N-node mesh).
#[derive(Debug)]
pub(super) struct Split<T> {
    /// The records of the walk's [`Planned::scan`] (empty unless
    /// [`Planned::rest`]).
    pub(super) rest: Arc<[T]>,
    /// Every entry's record, copies included, when
    /// [`Planned::session`].
    pub(super) session: Option<Arc<[T]>>,
}

impl<T> Split<T> {
    /// Records for the peers without a new session only (tests: a walk
    /// made by hand).
    #[cfg(test)]
    pub(super) fn rest(records: Vec<T>) -> Self {
        Self {
            rest: records.into(),
            session: None,
        }
    }

    /// The larger set's size (what a full dump from this walk sent a
    /// peer).
    pub(super) fn dump_len(&self) -> usize {
        self.session
            .as_ref()
            .map_or(self.rest.len(), |s| s.len().max(self.rest.len()))
    }
}

/// A NAT flow table scan's outcome.
#[derive(Debug)]
pub(super) struct NatScanned {
    pub(super) records: Split<NatFlowRecord>,
    /// How long the scan took: the next one between dumps waits
    /// `NAT_SCAN_SPACING` times as long.
    pub(super) took: Duration,
}

/// The walk `input` plans over `tables`: the NAT flow table's scan, if
/// due, then the connection table's walk; None when `cancel` was set
/// meanwhile.
pub(super) fn walk(tables: &dyn Tables, mut input: WalkInput, cancel: &AtomicBool) -> Walked {
    let nat = match input.nat.take() {
        Some(scan) => Some(scan_nat(tables, scan, &input, cancel)?),
        None => None,
    };
    let flows = collect(tables.flows(), &input, cancel)?;
    Some(Collected { flows, nat })
}

/// The NAT'd flows `scan` sends from the NAT flow table of `tables` (see
/// [`nat::nat_records_in`]: its entries streamed, counterparts read by
/// key), a pair's only for the VIPs it holds; None when `cancel` was set
/// meanwhile.
fn scan_nat(
    tables: &dyn Tables,
    scan: NatScan,
    input: &WalkInput,
    cancel: &AtomicBool,
) -> Option<NatScanned> {
    let started = Instant::now();
    let cancelled = std::cell::Cell::new(false);
    let entries = tables.nat_flows().enumerate().map_while(|(read, entry)| {
        if (read + 1).is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            cancelled.set(true);
            return None;
        }
        Some(entry)
    });
    let NatScan {
        scan,
        session,
        rule,
    } = scan;
    let lookup = |key: &FlowKey| tables.nat_flow(key);
    let now = input.planned.started_ns;
    let rest = input.planned.rest.then_some(scan);
    let (mut rest, mut all) = if session {
        let (rest, all) = nat::nat_records_with_dump(entries, lookup, rest, now, rule);
        (rest, Some(all))
    } else if let Some(scan) = rest {
        (nat::nat_records_in(entries, lookup, scan, now, rule), None)
    } else {
        (Vec::new(), None)
    };
    if cancelled.get() {
        return None;
    }
    if input.topology == Topology::VrrpPair {
        rest.retain(|r| input.roles.sends(r.vip));
        if let Some(all) = all.as_mut() {
            all.retain(|r| input.roles.sends(r.vip));
        }
    }
    Some(NatScanned {
        records: Split {
            rest: rest.into(),
            session: all.map(Into::into),
        },
        took: started.elapsed(),
    })
}

/// The records a walk of the connection table's `flows` sends as
/// `input` says, in one pass: its scan's for the peers without a new
/// session, every entry's for those with one; None when `cancel` was set
/// meanwhile.
pub(super) fn collect(
    flows: impl IntoIterator<Item = (FlowKey, FlowEntry)>,
    input: &WalkInput,
    cancel: &AtomicBool,
) -> Option<Split<FlowRecord>> {
    let (topology, planned) = (input.topology, input.planned);
    let mut rest = Vec::new();
    let mut all = Vec::new();
    for (read, (key, entry)) in flows.into_iter().enumerate() {
        if (read + 1).is_multiple_of(CANCEL_EVERY) && cancel.load(Ordering::Relaxed) {
            return None;
        }
        let to_rest = planned.rest && sends(topology, planned.scan, entry.last_seen_ns);
        if !to_rest && !planned.session {
            continue;
        }
        let Some(record) = record(&key, &entry, &input.names, planned.started_ns) else {
            continue;
        };
        if topology == Topology::VrrpPair && !input.roles.sends(record.vip) {
            continue;
        }
        if to_rest {
            rest.push(record);
        }
        if planned.session {
            all.push(record);
        }
    }
    Some(Split {
        rest: rest.into(),
        session: planned.session.then(|| all.into()),
    })
}

/// A walk's outcome: its records, None if it failed or was cancelled.
pub(super) type Walked = Option<Collected>;

/// A walk for a blocking thread, given its cancel flag.
pub(super) type OffWalk = Box<dyn FnOnce(&AtomicBool) -> Walked + Send>;

/// How a walk is made.
pub(super) enum Walk {
    /// On a blocking thread.
    Off(OffWalk),
    /// Made already, in the loop (no second mapping of the table).
    Done(Walked),
}

/// The tables a walk reads: the connection table and the NAT flow table.
pub(super) trait Tables {
    /// Every tracked flow, read one by one.
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_>;
    /// Every NAT flow entry (both directions of each flow), read one by
    /// one.
    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, NatEntry)> + '_>;
    /// One NAT flow entry, read by key (a counterpart of one read by
    /// [`Tables::nat_flows`]): a scan then holds only what it sends.
    fn nat_flow(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Both tables mapped a second time, for walks off lbd's loop; None
    /// where the connection table is no bucket table (a kernel map).
    fn remapped(&self) -> Option<Result<SharedTables, FlowTableError>> {
        None
    }
}

impl Tables for Dataplane {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        Dataplane::flows(self)
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, NatEntry)> + '_> {
        Box::new(self.nat().flows())
    }

    fn nat_flow(&self, key: &FlowKey) -> Option<NatEntry> {
        self.nat().flow(key)
    }

    fn remapped(&self) -> Option<Result<SharedTables, FlowTableError>> {
        let tables = self.remapped_tables()?;
        Some(tables.and_then(|(flows, _half_open)| {
            let remapped: SharedTables = Arc::new(Remapped {
                flows,
                nat: remapped_nat(self.nat().table())?,
            });
            Ok(remapped)
        }))
    }
}

/// Tables a walk off the loop reads: a second mapping ([`Remapped`]), or
/// tables in memory in tests.
pub(super) type SharedTables = Arc<dyn Tables + Send + Sync>;

/// The connection table and the NAT flow table mapped a second time:
/// what walks off lbd's loop read.
pub(super) struct Remapped {
    flows: FlowTable,
    nat: NatFlowTable,
}

impl Tables for Remapped {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        Box::new(self.flows.iter())
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, NatEntry)> + '_> {
        Box::new(self.nat.iter())
    }

    fn nat_flow(&self, key: &FlowKey) -> Option<NatEntry> {
        self.nat.get(key)
    }
}

/// `table` mapped a second time (its map's fd duplicated), as
/// `FlowTable::remapped` maps the connection table: a walk off the loop
/// reads it while lbd's loop goes on with its own mapping.
fn remapped_nat(table: &NatFlowTable) -> Result<NatFlowTable, FlowTableError> {
    let buckets = table.buckets();
    let failed = |source: std::io::Error| FlowTableError::Map {
        table: "NAT flow table (second mapping, for replication's walks)",
        buckets,
        source,
    };
    let map = crate::shared_mapping::second_handle(table.map()).map_err(failed)?;
    NatFlowTable::new(map, buckets)
}

/// Runs the walks: the tables they read, the walk in flight's way back
/// (a channel, and a [`Notify`] lbd's loop waits on), its cancel flag.
pub(super) struct Walker {
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
    pub(super) fn new() -> Self {
        Self::with_source(OffLoop::new(WALKS))
    }

    /// A walker whose walks read `tables` off the loop (tests: tables in
    /// memory).
    #[cfg(test)]
    pub(super) fn over(tables: SharedTables) -> Self {
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
    pub(super) fn ended(&self) -> Arc<Notify> {
        Arc::clone(&self.ended)
    }

    /// The walk for `input` over `tables`: off the loop over second
    /// mappings of them (the NAT flow table's scan too), else (a kernel
    /// map, or mapping failed) made here.
    pub(super) fn walk_for(&mut self, tables: &dyn Tables, input: WalkInput) -> Walk {
        self.walk_for_at(tables, input, Instant::now())
    }

    /// [`Walker::walk_for`] at `now` (tests: the back-off after a failed
    /// walk passing).
    pub(super) fn walk_for_at(
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
    pub(super) fn launch(&self, walk: OffWalk) {
        let report = Report {
            done: Some(self.done_tx.clone()),
            ended: Arc::clone(&self.ended),
        };
        let cancel = Arc::clone(&self.cancel);
        tokio::task::spawn_blocking(move || report.send(walk(&cancel)));
    }

    /// The outcome of the walk in flight if it ended.
    pub(super) fn try_ended(&mut self) -> Option<Walked> {
        self.done_rx.try_recv().ok()
    }

    /// Waits for the walk in flight's outcome (the caller knows one is in
    /// flight: every launched walk reports).
    pub(super) async fn wait(&mut self) -> Walked {
        self.done_rx.recv().await.flatten()
    }

    /// A walk off the loop failed (it panicked) at `now`: the next ones
    /// walk in the loop until the back-off passes, then the tables are
    /// mapped again (see [`OffLoop`]), as censuses do after a failure.
    pub(super) fn failed(&mut self, now: Instant) {
        self.source.failed(now);
    }

    /// A walk ended with its records: a later failure backs off from the
    /// shortest back-off again.
    pub(super) fn succeeded(&mut self) {
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
/// [`Replication::walk_ends`]; None, no replication: forever). For lbd's
/// loop, which then calls `Engine::replication_walk_ended`.
pub(crate) async fn walk_ended(ended: &Option<Arc<Notify>>) {
    match ended {
        Some(ended) => ended.notified().await,
        None => std::future::pending().await,
    }
}
