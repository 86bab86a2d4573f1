//! The NAT flow reaper: frees the translations (and so the source ports)
//! of NAT-mode flows that went quiet, as the data plane never deletes
//! them itself (the NAT flow table never evicts, see docs/design/nat.md).
//!
//! Pure: the table is reached through [`NatTable`] (the real table in
//! `nat::maps`, a `BTreeMap` in tests) and time is passed in. Each call to
//! [`Reaper::tick`] visits at most a budget of entries from where the last
//! one stopped (a cursor: the table's bucket, which removals do not move),
//! read in batches, so a table of a million entries costs lbd tens
//! of milliseconds a tick instead of one long stall; a whole pass over
//! the table (a *sweep*) takes `entries / budget` ticks. How often a tick
//! runs is `pace`'s: once a second while there is little to free, ten
//! times a second while the walk finds much to free, the table is under
//! [`pressure`], or a backend was removed (a sweep is owed), so steady
//! churn above what one tick a second frees does not fill the table.
//!
//! A flow is two entries (forward: client -> VIP, reply: backend -> NAT
//! address) paired by `lb_common::nat::counterpart_key`. It is judged from
//! its forward entry: its state comes from both entries' flags
//! (`NatFlowState::of`), its idle time from the newer of both
//! `last_seen_ns`; past the state's timeout both entries go, the forward
//! entry first. An entry counts as the other's counterpart only if it
//! points back (after an lbd killed between a flow's two removals, the
//! key may hold another flow's entry). An entry without its counterpart
//! (the other insert failed, half of a flow replicated, or an lbd killed
//! between the removals) goes once it is older than the SYN timeout; a
//! younger forward entry gets its reply back (its port reserved again)
//! when that key is free, and goes at once when another flow holds it.
//!
//! Flows of a backend that is no longer one of its VIP's backends (or of a
//! VIP that is gone, replaced or no longer in NAT mode) go as soon as the
//! walk reaches them, within a sweep at the fast pace (see `pace`).
//! Decision: removing
//! a backend is lbd's "cut" (draining is the graceful way out, and a drain
//! that times out puts the backend in maintenance, not out of the VIP);
//! entries carry no backend generation, so backend ids being reused by the
//! next backend added would otherwise count the old flows as the new
//! backend's (status, port usage) until they timed out, and their ports stay
//! taken. The entry's own backend address and its VIP's address, port and
//! protocol are compared too, so a reused id (of a backend, or of a VIP
//! replaced by another in one change) never adopts another's flows. The
//! client of a cut flow is not told: its next packet (not a SYN) finds no
//! translation and is dropped (`drop_nat_no_flow`), so its TCP retransmits
//! until it gives up (`tcp_retries2`, about 15 minutes on Linux), unlike
//! DSR's rehash, where the new backend answers with an RST. The data plane
//! sends none: an RST would also end flows a planned switchover's final
//! flush is about to install.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use lb_common::{
    consts::{FLOW_TOUCH_INTERVAL_NS, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_REPLIED},
    nat::{counterpart_key, NatFlowState},
    FlowKey, NatEntry, VipKey,
};

use crate::{config::NatTimeouts, model::FlowCount, reconcile::words_addr};

/// Entries visited per tick at most; lbd also stops a tick after
/// [`TICK_TIME`]. Each entry costs a few microseconds (a forward entry one
/// lookup of its counterpart), so a tick of a full budget stays within
/// tens of milliseconds; tests/tests/nat_runtime.rs measures a sweep of a
/// million entries. Ticks come once a second, or every `pace::FAST`
/// while there is much to free (`pace`).
pub const TICK_BUDGET: usize = 16_384;
/// How long lbd lets one tick run (checked between batches): the bound of
/// the stall a tick can cause, whatever the machine.
pub const TICK_TIME: std::time::Duration = std::time::Duration::from_millis(50);
/// Entries read per batch (one system call).
pub const BATCH: usize = 1024;

/// The flow table as the reaper needs it.
pub trait NatTable {
    /// Where a walk stands between batches; removals do not move it.
    type Cursor: Copy + std::fmt::Debug;
    /// Appends to `out` up to `max` entries from `cursor` (None: the
    /// start); returns the cursor of the next batch, None at the end.
    fn batch(
        &self,
        cursor: Option<Self::Cursor>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<Self::Cursor>>;
    /// The entry at `key`, if present.
    fn get(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Removes `key`; returns false when that failed (an absent key is
    /// not a failure).
    fn remove(&mut self, key: &FlowKey) -> bool;
    /// Puts `entry` in under `key` only if no entry holds the key (as the
    /// data plane inserts); false when another entry holds it. The reaper
    /// puts a lone forward entry's reply back with it, which reserves its
    /// port again. An error leaves the entry to wait out the SYN timeout
    /// as an orphan.
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool>;
}

/// A backend as NAT entries name it: its VIP (id, and the service
/// itself) and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// VIP id of the NAT VIP it serves.
    pub vip_id: u32,
    /// That VIP's address, port and protocol, as a forward key's
    /// destination (and a reply entry's source) hold them. A VIP replaced
    /// by another in one change (moved to another address, same
    /// backends) gets the lowest free ids, often the old one's: ids and
    /// backend addresses alone would count the old VIP's flows as the new
    /// one's and keep them until they time out.
    pub vip: VipKey,
    /// Its address, as in entries (network-order words).
    pub address: [u32; 4],
}

/// What the reaper checks entries against, taken from the applied state
/// just before a tick.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Backend id -> its VIP and address, for backends of NAT VIPs only.
    pub backends: HashMap<u32, Owner>,
}

impl Owners {
    /// Whether a backend of `before` is not one of these (removed, its VIP
    /// gone or no longer in NAT mode, or its id now another backend's):
    /// its flows are to go, and a sweep is owed (`pace`).
    pub(crate) fn lost_since(&self, before: &Owners) -> bool {
        before
            .backends
            .iter()
            .any(|(id, owner)| self.backends.get(id) != Some(owner))
    }

    /// Whether the entry `(key, entry)` still names a backend of a NAT VIP
    /// by its ids, the backend's address and the VIP's service.
    fn owns(&self, key: &FlowKey, entry: &NatEntry) -> bool {
        let address = backend_address(key, entry);
        let vip = vip_of(key, entry);
        self.backends.get(&entry.backend_id).is_some_and(|o| {
            o.vip_id == u32::from(entry.vip_id) && o.address == address && o.vip == vip
        })
    }
}

/// What becomes of an entry (and, when it goes, of its counterpart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Kept; a forward entry says its flow's state.
    Keep(Option<NatFlowState>),
    /// The flow was idle past its state's timeout.
    Expired(NatFlowState),
    /// The counterpart is missing and the entry is older than the SYN
    /// timeout.
    Orphan,
    /// Its backend is no longer one of its VIP's (or the VIP is gone or no
    /// longer NAT).
    BackendGone,
}

/// The idle timeout of a flow in `state`.
pub fn timeout_of(state: NatFlowState, timeouts: &NatTimeouts) -> Duration {
    match state {
        NatFlowState::TcpSynSent => timeouts.tcp_syn,
        NatFlowState::TcpEstablished => timeouts.tcp_established,
        NatFlowState::TcpClosing => timeouts.tcp_closing,
        NatFlowState::TcpTimeWait => timeouts.tcp_time_wait,
        NatFlowState::TcpClosed => timeouts.tcp_closed,
        NatFlowState::Udp => timeouts.udp,
    }
}

/// The address of the backend an entry belongs to: the translated
/// destination of a forward entry, the source of a reply.
fn backend_address(key: &FlowKey, entry: &NatEntry) -> [u32; 4] {
    if entry.direction == NAT_DIR_REPLY {
        key.src
    } else {
        entry.dst
    }
}

/// The VIP an entry belongs to: the destination of a forward key (the
/// client's packet as it arrived), the translated source of a reply.
fn vip_of(key: &FlowKey, entry: &NatEntry) -> VipKey {
    let (addr, port) = if entry.direction == NAT_DIR_REPLY {
        (entry.src, entry.sport)
    } else {
        (key.dst, key.dport)
    };
    VipKey {
        addr,
        port,
        proto: key.proto,
        family: key.family,
    }
}

/// Idle time at `now_ns` of something last seen at `last_seen_ns` (zero
/// for a time in the future: a clock the reaper must not trust more).
fn idle(now_ns: u64, last_seen_ns: u64) -> Duration {
    Duration::from_nanos(now_ns.saturating_sub(last_seen_ns))
}

/// Whether an entry last seen at `last_seen_ns` has been quiet for longer
/// than `timeout` at `now_ns`. The data plane refreshes `last_seen_ns` at
/// most every `FLOW_TOUCH_INTERVAL_NS`, so an active flow's can be that
/// much old: the allowance is added (as the connection table's judgement
/// does), or a timeout as short as the configuration allows (1 s) would
/// free flows in use.
fn quiet_past(now_ns: u64, last_seen_ns: u64, timeout: Duration) -> bool {
    idle(now_ns, last_seen_ns) > timeout + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS)
}

/// The fate of the entry `(key, entry)` whose counterpart is
/// `counterpart` (None: missing), at `now_ns` (CLOCK_MONOTONIC, the
/// data plane's clock). A reply entry with its counterpart is always
/// kept: its flow is judged from the forward entry.
pub fn fate(
    key: &FlowKey,
    entry: &NatEntry,
    counterpart: Option<&NatEntry>,
    now_ns: u64,
    timeouts: &NatTimeouts,
    owners: &Owners,
) -> Fate {
    if !owners.owns(key, entry) {
        return Fate::BackendGone;
    }
    let Some(other) = counterpart else {
        return if quiet_past(now_ns, entry.last_seen_ns, timeouts.tcp_syn) {
            Fate::Orphan
        } else {
            Fate::Keep(None)
        };
    };
    if entry.direction != NAT_DIR_FORWARD {
        return Fate::Keep(None);
    }
    let state = NatFlowState::of(key.proto, entry.flags, other.flags);
    let newest = entry.last_seen_ns.max(other.last_seen_ns);
    let mut timeout = timeout_of(state, timeouts);
    // Under pressure an unanswered flow goes sooner (`pressure`).
    let unanswered = other.flags & NAT_F_REPLIED == 0
        && matches!(state, NatFlowState::TcpSynSent | NatFlowState::Udp);
    if let Some(short) = timeouts.unreplied.filter(|_| unanswered) {
        timeout = timeout.min(short);
    }
    if quiet_past(now_ns, newest, timeout) {
        Fate::Expired(state)
    } else {
        Fate::Keep(Some(state))
    }
}

/// Source ports in use towards one backend port from one NAT address:
/// the unit the data plane allocates in (a reply key must be unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortUser {
    /// The NAT address.
    pub nat_address: IpAddr,
    /// The backend.
    pub backend: IpAddr,
    /// The backend's port (host order).
    pub backend_port: u16,
    /// IP protocol.
    pub proto: u8,
}

/// What a complete sweep found: the live flows by state, and source ports
/// in use per (NAT address, backend, port, protocol).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Flows kept, by state.
    pub flows: BTreeMap<&'static str, u64>,
    /// Forward entries kept per allocation unit (= ports in use).
    pub ports: BTreeMap<PortUser, u64>,
    /// Flows kept per backend id: live (SYN sent, established, UDP) or
    /// closing (a FIN or RST seen), as `lbctl status` and `drain --wait`
    /// count them.
    pub by_backend: BTreeMap<u32, FlowCount>,
    /// Ticks the sweep took.
    pub ticks: u64,
    /// When its first tick ran (`CLOCK_MONOTONIC` ns): a flow that ended
    /// before then is not in it, one that started after may be missing.
    pub started_ns: u64,
}

impl SweepStats {
    /// Entries the kept flows hold (two per flow).
    pub fn entries(&self) -> u64 {
        2 * self.flows.values().sum::<u64>()
    }

    /// Ports in use at the busiest (NAT address, backend) of all, the
    /// range closest to running out.
    pub fn busiest_of_all(&self) -> u64 {
        self.ports.values().max().copied().unwrap_or(0)
    }

    /// Ports in use from `nat_address`, at the busiest backend (the one
    /// closest to running out).
    pub fn busiest(&self, nat_address: IpAddr) -> u64 {
        self.ports
            .iter()
            .filter(|(u, _)| u.nat_address == nat_address)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    /// Ports in use from `nat_address` towards one VIP's backends, at the
    /// busiest of them. Each backend is named with the port the VIP sends
    /// it to: another VIP on the same NAT address and backend host but
    /// another backend port draws on a range of its own, and its use says
    /// nothing about this VIP's.
    pub fn busiest_towards(
        &self,
        nat_address: IpAddr,
        proto: u8,
        backends: impl IntoIterator<Item = (IpAddr, u16)>,
    ) -> u64 {
        backends
            .into_iter()
            .filter_map(|(backend, backend_port)| {
                self.ports.get(&PortUser {
                    nat_address,
                    backend,
                    backend_port,
                    proto,
                })
            })
            .max()
            .copied()
            .unwrap_or(0)
    }
}

/// Entries removed since start, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Flows idle past their timeout (both entries).
    pub expired: u64,
    /// Entries without a counterpart.
    pub orphans: u64,
    /// Flows of removed backends (both entries).
    pub backend_gone: u64,
    /// Removals the table refused (retried next sweep).
    pub failed: u64,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Entries visited (judged; not the second entry of a flow removed
    /// earlier in the same batch).
    pub visited: usize,
    /// Entries removed.
    pub removed: usize,
    /// Whether a sweep ended in this tick.
    pub sweep_done: bool,
}

/// The reaper's state between ticks, walking a table whose cursor is `C`.
#[derive(Debug)]
pub struct Reaper<C = u32> {
    /// Where the next batch starts (None: start of a sweep).
    cursor: Option<C>,
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

/// A flow table in memory, ordered by key (tests; a stand-in for the map:
/// the cursor is the first key of the next batch, and a removal of that
/// key does not move it, like a bucket's).
#[cfg(test)]
impl NatTable for BTreeMap<FlowKeyOrd, NatEntry> {
    type Cursor = FlowKeyOrd;

    fn batch(
        &self,
        cursor: Option<FlowKeyOrd>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<FlowKeyOrd>> {
        use std::ops::Bound;
        let from = cursor.map_or(Bound::Unbounded, Bound::Included);
        let mut range = self.range((from, Bound::Unbounded));
        out.extend(range.by_ref().take(max).map(|(k, v)| (k.0, *v)));
        Ok(range.next().map(|(k, _)| *k))
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        BTreeMap::get(self, &FlowKeyOrd(*key)).copied()
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        BTreeMap::remove(self, &FlowKeyOrd(*key));
        true
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool> {
        match self.entry(FlowKeyOrd(*key)) {
            std::collections::btree_map::Entry::Occupied(_) => Ok(false),
            std::collections::btree_map::Entry::Vacant(free) => {
                free.insert(*entry);
                Ok(true)
            }
        }
    }
}

/// A `FlowKey` with an order, for the in-memory table.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKeyOrd(pub FlowKey);

#[cfg(test)]
impl Ord for FlowKeyOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let k = |f: &FlowKey| (f.src, f.dst, f.sport, f.dport, f.proto, f.family);
        k(&self.0).cmp(&k(&other.0))
    }
}

#[cfg(test)]
impl PartialOrd for FlowKeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

pub(crate) mod pace;
pub mod pressure;
#[cfg(test)]
mod tests;
