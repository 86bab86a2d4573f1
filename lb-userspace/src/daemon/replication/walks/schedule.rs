//! Which walk a tick starts, if any, and what a finished walk leaves for
//! the next: the walks' bookkeeping as a state machine over time (no
//! clock, no threads), apart from the walks themselves.

use std::time::{Duration, Instant};

use crate::daemon::replication::{nat, records::Scan, DUMP_RATE, FULL_SYNC_INTERVAL};

/// Which records a walk must read, as the peers' sessions say when it
/// starts (see [`Walks::start`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::daemon::replication) struct Due {
    /// Some peer is owed a new session's dump (every entry): its session
    /// is new, or the walk that read its dump failed.
    pub(in crate::daemon::replication) session: bool,
    /// Some peer is not: it gets the walk's [`Planned::scan`] (recent
    /// flows, or the periodic dump).
    pub(in crate::daemon::replication) rest: bool,
}

/// One walk, as the loop decided it at the walk's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::daemon::replication) struct Planned {
    /// What it sends to the peers without a new session: recent flows or
    /// the periodic dump, never [`Scan::Session`].
    pub(in crate::daemon::replication) scan: Scan,
    /// Whether it also reads every entry, for the peers owed a new
    /// session's dump (only those get it: see [`Due`]).
    pub(in crate::daemon::replication) session: bool,
    /// Whether it reads `scan`'s records (some peer is not owed a
    /// session's dump).
    pub(in crate::daemon::replication) rest: bool,
    /// A full sync (periodic, or for a new session).
    pub(in crate::daemon::replication) full: bool,
    /// When it started (the data plane's clock): records' ages are taken
    /// against it, and the next window starts from it.
    pub(in crate::daemon::replication) started_ns: u64,
    /// The same instant on lbd's clock: the sender adds the time since
    /// to the records' ages when they go out.
    pub(in crate::daemon::replication) started: Instant,
}

/// The walks' bookkeeping: which walk a tick starts, if any, and what a
/// finished walk leaves for the next.
#[derive(Debug, Default)]
pub(in crate::daemon::replication) struct Walks {
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
    pub(in crate::daemon::replication) fn walking(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A tick at `now` (`now_ns` on the data plane's clock): the walk it
    /// starts, None while one is in flight. `due` (which peers are owed a
    /// new session's dump, consuming the sessions' marks) is asked only
    /// when a walk starts, so a session that began during a walk gets its
    /// dump from the next one. Only the peers owed one get a session's
    /// dump; the others get this walk's recent flows (or the periodic
    /// dump, when due), read in the same pass.
    pub(in crate::daemon::replication) fn start(
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
    pub(in crate::daemon::replication) fn dumped(&mut self, records: usize) {
        self.last_dump_records = records;
    }

    /// How long after a full sync the next periodic one is due:
    /// [`FULL_SYNC_INTERVAL`], or as long as the last dump's records take
    /// at [`DUMP_RATE`] when that is longer. Why: every periodic dump
    /// sends the whole table to every peer, which installs each record on
    /// its loop; at a fixed 10 s the largest table (16 M flows) would
    /// cost the peers about half a core for records they mostly hold
    /// already. A new session's dump never waits for it.
    pub(in crate::daemon::replication) fn full_sync_interval(&self) -> Duration {
        let records = u64::try_from(self.last_dump_records).unwrap_or(u64::MAX);
        let by_size = Duration::from_millis(records.saturating_mul(1000) / DUMP_RATE);
        FULL_SYNC_INTERVAL.max(by_size)
    }

    /// The walk in flight ended, `done` whether with its records: the walk
    /// it was (None: none was in flight). One that failed leaves its
    /// window to the next walk, and its dump owed.
    pub(in crate::daemon::replication) fn finish(&mut self, done: bool) -> Option<Planned> {
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
    pub(in crate::daemon::replication) fn dumps_all(&self) -> bool {
        self.scan == Scan::Periodic || (self.session && !self.rest)
    }
}
