//! The reaper's walk: its state between ticks, and the tick that reads the
//! table in batches from its cursor, judges each entry (`fate`), puts a
//! lone forward entry's reply back, removes what goes and counts what
//! stays.

use std::collections::HashSet;

use lb_common::{
    consts::{NAT_DIR_FORWARD, NAT_DIR_REPLY},
    nat::{counterpart_key, NatFlowState},
    FlowKey, NatEntry,
};

use super::{
    fate::{fate, quiet_past, Fate},
    NatTable, Owners, PortUser, Reaped, SweepStats, TickReport, BATCH,
};
use crate::{config::NatTimeouts, reconcile::words_addr};

/// The reaper's state between ticks, walking a table whose cursor is `C`.
#[derive(Debug)]
pub struct Reaper<C = u32> {
    /// Where the next batch starts (None: start of a sweep).
    pub(super) cursor: Option<C>,
    /// The sweep under way.
    current: SweepStats,
    /// The last complete sweep (None: none yet).
    last: Option<SweepStats>,
    /// Removals since start.
    reaped: Reaped,
    /// Reads of the table that failed since start (the sweep started over).
    pub read_errors: u64,
}

impl<C> Default for Reaper<C> {
    fn default() -> Self {
        Self {
            cursor: None,
            current: SweepStats::default(),
            last: None,
            reaped: Reaped::default(),
            read_errors: 0,
        }
    }
}

impl<C: Copy + std::fmt::Debug> Reaper<C> {
    /// A reaper at the start of its first sweep.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last complete sweep's findings.
    pub fn last_sweep(&self) -> Option<&SweepStats> {
        self.last.as_ref()
    }

    /// Removals since start.
    pub fn reaped(&self) -> Reaped {
        self.reaped
    }

    /// Visits batches of entries from where the last tick stopped while
    /// fewer than `budget` were visited and `go_on()` says so (checked
    /// between batches), removing what has expired (both entries of a flow
    /// together).
    pub fn tick<T: NatTable<Cursor = C>>(
        &mut self,
        table: &mut T,
        now_ns: u64,
        timeouts: &NatTimeouts,
        owners: &Owners,
        budget: usize,
        mut go_on: impl FnMut() -> bool,
    ) -> TickReport {
        let mut report = TickReport::default();
        if self.current.ticks == 0 {
            self.current.started_ns = now_ns;
        }
        self.current.ticks += 1;
        // Keys removed in this tick: a batch holds copies, so the second
        // entry of a flow just removed may still come up in it.
        let mut removed: HashSet<FlowKey> = HashSet::new();
        let mut entries = Vec::with_capacity(BATCH);
        let mut first = true;
        while report.visited < budget && (first || go_on()) {
            first = false;
            entries.clear();
            // Whole batches: a hash map's batch holds whole buckets, which
            // a smaller one might not fit.
            let max = BATCH.min(budget);
            let next = match table.batch(self.cursor, max, &mut entries) {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(%error, "reading the NAT flow table failed; the sweep starts over");
                    self.read_errors += 1;
                    self.cursor = None;
                    self.current = SweepStats::default();
                    return report;
                }
            };
            for (key, entry) in &entries {
                // Gone with its counterpart earlier in this batch: no
                // visit, or a tick of expired flows would spend its budget
                // on entries already freed.
                if removed.contains(key) {
                    continue;
                }
                report.visited += 1;
                let gone = self.judge(table, key, entry, now_ns, timeouts, owners);
                // Forward entry first; once a removal fails, the rest of
                // the flow stays for the next sweep: a reply removed under
                // a forward entry still held would free the port it still
                // translates with.
                for k in gone.iter().flatten() {
                    if !table.remove(k) {
                        self.reaped.failed += 1;
                        break;
                    }
                    report.removed += 1;
                    removed.insert(*k);
                }
            }
            self.cursor = next;
            if next.is_none() {
                report.sweep_done = true;
                self.last = Some(std::mem::take(&mut self.current));
                break;
            }
        }
        report
    }

    /// Decides about one entry; returns the keys to remove, the forward
    /// entry first: an lbd killed between the two removals then leaves a
    /// reply behind, which only holds a port, never a forward entry, which
    /// would go on translating with a port no longer reserved.
    fn judge<T: NatTable<Cursor = C>>(
        &mut self,
        table: &mut T,
        key: &FlowKey,
        entry: &NatEntry,
        now_ns: u64,
        timeouts: &NatTimeouts,
        owners: &Owners,
    ) -> [Option<FlowKey>; 2] {
        let other_key = counterpart_key(key, entry);
        // A young reply needs no look at its counterpart: it can be
        // neither an orphan yet nor judged (forward entries judge).
        let young_reply = entry.direction == NAT_DIR_REPLY
            && !quiet_past(now_ns, entry.last_seen_ns, timeouts.tcp_syn);
        let mut judged = if young_reply {
            (
                fate(key, entry, Some(entry), now_ns, timeouts, owners),
                false,
            )
        } else {
            self.judge_now(table, key, entry, &other_key, now_ns, timeouts, owners)
        };
        let mut entry = *entry;
        if !matches!(judged.0, Fate::Keep(_)) {
            // The batch holds copies, read up to a batch ago: a packet may
            // have refreshed the flow since. Judged again on what the
            // table holds now, so a flow in use is never taken out.
            let Some(fresh) = table.get(key) else {
                return [None, None];
            };
            entry = fresh;
            judged = self.judge_now(table, key, &entry, &other_key, now_ns, timeouts, owners);
        }
        let (judged, paired) = judged;
        // Both entries go only when the other one is this flow's (it
        // points back); the forward entry first.
        let both = || {
            if !paired {
                [Some(*key), None]
            } else if entry.direction == NAT_DIR_REPLY {
                [Some(other_key), Some(*key)]
            } else {
                [Some(*key), Some(other_key)]
            }
        };
        match judged {
            Fate::Keep(state) => {
                if let Some(state) = state {
                    self.count(key, &entry, state);
                }
                [None, None]
            }
            Fate::Expired(_) => {
                self.reaped.expired += 1;
                both()
            }
            Fate::BackendGone => {
                self.reaped.backend_gone += 1;
                both()
            }
            Fate::Orphan => {
                self.reaped.orphans += 1;
                // Young and alone: its reply key is another flow's.
                if entry.direction == NAT_DIR_FORWARD
                    && !quiet_past(now_ns, entry.last_seen_ns, timeouts.tcp_syn)
                {
                    tracing::info!(
                        ?key,
                        taken = ?other_key,
                        "a NAT forward entry whose port another flow holds is removed"
                    );
                }
                [Some(*key), None]
            }
        }
    }

    /// The fate of `(key, entry)` on what the table holds now at its
    /// counterpart key `other_key`, and whether that is its counterpart.
    /// An entry there counts only if it points back and is the other
    /// direction: after an lbd killed between a flow's two removals, the
    /// key may hold another flow's entry (its port given out again), and
    /// pairing with it would keep a stale entry alive on the other flow's
    /// traffic and later remove the other flow's entry with it. A forward
    /// entry without its counterpart gets its reply back (the port
    /// reserved again) when the key is free, or goes at once when another
    /// flow holds it (it translates with that flow's port).
    #[allow(clippy::too_many_arguments)]
    fn judge_now<T: NatTable<Cursor = C>>(
        &mut self,
        table: &mut T,
        key: &FlowKey,
        entry: &NatEntry,
        other_key: &FlowKey,
        now_ns: u64,
        timeouts: &NatTimeouts,
        owners: &Owners,
    ) -> (Fate, bool) {
        let held = table.get(other_key);
        let other = held.filter(|other| {
            counterpart_key(other_key, other) == *key && other.direction != entry.direction
        });
        if other.is_some() || entry.direction != NAT_DIR_FORWARD || !owners.owns(key, entry) {
            let judged = fate(key, entry, other.as_ref(), now_ns, timeouts, owners);
            return (judged, other.is_some());
        }
        let lone = fate(key, entry, None, now_ns, timeouts, owners);
        if lone == Fate::Orphan {
            // Past the SYN timeout anyway: no port to reserve again.
            return (lone, false);
        }
        if held.is_some() {
            return (Fate::Orphan, false);
        }
        let reply = reply_of(key, entry);
        match table.insert_if_free(other_key, &reply) {
            Ok(true) => {
                tracing::info!(?key, reply = ?other_key, "a NAT forward entry without its reply got it back (its port reserved again)");
                let judged = fate(key, entry, Some(&reply), now_ns, timeouts, owners);
                (judged, true)
            }
            Ok(false) => (Fate::Orphan, false),
            // Full, busy, or a table that cannot insert: it waits out the
            // SYN timeout as any orphan (retried each visit until then).
            Err(error) => {
                tracing::debug!(%error, ?key, "putting back a NAT forward entry's reply failed");
                (lone, false)
            }
        }
    }

    /// Counts a kept flow (from its forward entry) in the current sweep.
    fn count(&mut self, key: &FlowKey, forward: &NatEntry, state: NatFlowState) {
        *self.current.flows.entry(state.name()).or_default() += 1;
        let user = PortUser {
            nat_address: words_addr(forward.src, key.family),
            backend: words_addr(forward.dst, key.family),
            backend_port: u16::from_be(forward.dport),
            proto: key.proto,
        };
        *self.current.ports.entry(user).or_default() += 1;
        let count = self
            .current
            .by_backend
            .entry(forward.backend_id)
            .or_default();
        match state {
            NatFlowState::TcpClosing | NatFlowState::TcpTimeWait | NatFlowState::TcpClosed => {
                count.closing += 1
            }
            _ => count.live += 1,
        }
    }
}

/// The reply entry of the forward entry `(key, forward)` as the data plane
/// opens one (`lb-ebpf` `nat/open.rs`): back to the client from the VIP,
/// nothing seen yet in its direction, no next hop looked up yet.
fn reply_of(key: &FlowKey, forward: &NatEntry) -> NatEntry {
    NatEntry {
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        backend_id: forward.backend_id,
        vip_id: forward.vip_id,
        last_seen_ns: forward.last_seen_ns,
        direction: NAT_DIR_REPLY,
        ..NatEntry::default()
    }
}
