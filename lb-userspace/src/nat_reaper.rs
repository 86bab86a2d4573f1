//! The NAT flow reaper: frees the translations (and so the source ports)
//! of NAT-mode flows that went quiet, as the data plane never deletes
//! them itself (`NAT_FLOWS` is a plain hash, see docs/design/nat.md).
//!
//! Pure: the table is reached through [`NatTable`] (the real map in
//! `nat_maps`, a `BTreeMap` in tests) and time is passed in. Each call to
//! [`Reaper::tick`] visits at most a budget of entries from where the last
//! one stopped (a cursor key), so a table of a million entries costs lbd
//! a few milliseconds a second instead of one long stall; a whole pass
//! over the table (a *sweep*) takes `entries / budget` ticks.
//!
//! A flow is two entries (forward: client -> VIP, reply: backend -> NAT
//! address) paired by `lb_common::nat::counterpart_key`. It is judged from
//! its forward entry: its state comes from both entries' flags
//! (`NatFlowState::of`), its idle time from the newer of both
//! `last_seen_ns`; past the state's timeout both entries go. An entry
//! without its counterpart (the other insert failed, or half of a flow
//! replicated) goes once it is older than the SYN timeout.
//!
//! Flows of a backend that is no longer one of its VIP's backends (or of a
//! VIP that is gone or no longer in NAT mode) go at once. Decision: removing
//! a backend is lbd's "cut" (draining is the graceful way out, and a drain
//! that times out puts the backend in maintenance, not out of the VIP);
//! entries carry no backend generation, so backend ids being reused by the
//! next backend added would otherwise count the old flows as the new
//! backend's (status, port usage) until they timed out, and their ports stay
//! taken. The entry's own backend address is compared too, so a reused id
//! never adopts another backend's flows. The client of such a flow sees its
//! next packet dropped (no translation for a non-SYN), as with DSR's rehash
//! onto a backend that does not know the connection.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use lb_common::{
    consts::{NAT_DIR_FORWARD, NAT_DIR_REPLY},
    nat::{counterpart_key, NatFlowState},
    FlowKey, NatEntry,
};

use crate::{config::NatTimeouts, model::FlowCount, reconcile::words_addr};

/// Entries visited per tick: at a few syscalls each, some tens of
/// milliseconds of lbd's loop, and a sweep of a full default table
/// (262,144 entries) in 16 ticks.
pub const TICK_BUDGET: usize = 16_384;

/// The flow table as the reaper needs it.
pub trait NatTable {
    /// The key after `after` in the table's order (the first key for
    /// None; the first key too when `after` is no longer in the table).
    fn next_key(&self, after: Option<&FlowKey>) -> Option<FlowKey>;
    /// The entry at `key`, if present.
    fn get(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Removes `key`; returns false when that failed (an absent key is
    /// not a failure).
    fn remove(&mut self, key: &FlowKey) -> bool;
}

/// A backend as NAT entries name it: its VIP id and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// VIP id of the NAT VIP it serves.
    pub vip_id: u32,
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
    /// Whether `(vip_id, backend_id)` of an entry whose backend address is
    /// `address` still names that backend of a NAT VIP.
    fn owns(&self, vip_id: u16, backend_id: u32, address: [u32; 4]) -> bool {
        self.backends
            .get(&backend_id)
            .is_some_and(|o| o.vip_id == u32::from(vip_id) && o.address == address)
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

/// Idle time at `now_ns` of something last seen at `last_seen_ns` (zero
/// for a time in the future: a clock the reaper must not trust more).
fn idle(now_ns: u64, last_seen_ns: u64) -> Duration {
    Duration::from_nanos(now_ns.saturating_sub(last_seen_ns))
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
    if !owners.owns(entry.vip_id, entry.backend_id, backend_address(key, entry)) {
        return Fate::BackendGone;
    }
    let Some(other) = counterpart else {
        return if idle(now_ns, entry.last_seen_ns) > timeouts.tcp_syn {
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
    if idle(now_ns, newest) > timeout_of(state, timeouts) {
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
}

impl SweepStats {
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
    /// Entries visited.
    pub visited: usize,
    /// Entries removed.
    pub removed: usize,
    /// Whether a sweep ended in this tick.
    pub sweep_done: bool,
}

/// The reaper's state between ticks.
#[derive(Debug, Default)]
pub struct Reaper {
    /// The last key visited that is still in the table (None: start of a
    /// sweep).
    cursor: Option<FlowKey>,
    /// The sweep under way.
    current: SweepStats,
    /// The last complete sweep (None: none yet).
    last: Option<SweepStats>,
    /// Removals since start.
    reaped: Reaped,
}

impl Reaper {
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

    /// Visits up to `budget` entries from where the last tick stopped,
    /// removing what has expired (both entries of a flow together).
    pub fn tick(
        &mut self,
        table: &mut impl NatTable,
        now_ns: u64,
        timeouts: &NatTimeouts,
        owners: &Owners,
        budget: usize,
    ) -> TickReport {
        let mut report = TickReport::default();
        // The cursor vanished (a flow ended by someone else, e.g. its
        // counterpart's removal): the table restarts from its first key,
        // and so does the sweep, so nothing is counted twice.
        if let Some(cursor) = &self.cursor {
            if table.get(cursor).is_none() {
                self.cursor = None;
                self.current = SweepStats::default();
            }
        }
        self.current.ticks += 1;
        let mut key = table.next_key(self.cursor.as_ref());
        // Removals wait for the end of the tick: removing a key the walk
        // stands on would send the next lookup back to the first key.
        let mut doomed: Vec<FlowKey> = Vec::new();
        let mut doomed_set: HashSet<FlowKey> = HashSet::new();
        // Keys kept in this tick, in walk order: the next cursor is the
        // last of them that is not doomed by a later flow.
        let mut kept: Vec<FlowKey> = Vec::new();
        let start = self.cursor;
        while let Some(k) = key {
            if report.visited == budget {
                break;
            }
            report.visited += 1;
            let next = table.next_key(Some(&k));
            let entry = if doomed_set.contains(&k) {
                None // the counterpart of a flow already judged
            } else {
                table.get(&k)
            };
            if let Some(entry) = entry {
                let other_key = counterpart_key(&k, &entry);
                // A young reply needs no look at its counterpart: it can be
                // neither an orphan yet nor judged (forward entries judge).
                let skip_lookup = entry.direction == NAT_DIR_REPLY
                    && idle(now_ns, entry.last_seen_ns) <= timeouts.tcp_syn;
                let other = if skip_lookup {
                    Some(entry)
                } else {
                    table.get(&other_key)
                };
                let (gone, n): ([FlowKey; 2], usize) =
                    match fate(&k, &entry, other.as_ref(), now_ns, timeouts, owners) {
                        Fate::Keep(state) => {
                            if let Some(state) = state {
                                self.count(&k, &entry, state);
                            }
                            kept.push(k);
                            ([k, k], 0)
                        }
                        Fate::Expired(_) => {
                            self.reaped.expired += 1;
                            ([k, other_key], 2)
                        }
                        Fate::BackendGone => {
                            self.reaped.backend_gone += 1;
                            ([k, other_key], 2)
                        }
                        Fate::Orphan => {
                            self.reaped.orphans += 1;
                            ([k, k], 1)
                        }
                    };
                for g in &gone[..n] {
                    if doomed_set.insert(*g) {
                        doomed.push(*g);
                    }
                }
            }
            key = next;
        }
        if key.is_none() {
            report.sweep_done = true;
            self.last = Some(std::mem::take(&mut self.current));
            self.cursor = None;
        } else {
            let survivor = kept
                .iter()
                .rev()
                .chain(start.as_ref())
                .find(|k| !doomed_set.contains(k));
            match survivor {
                Some(k) => self.cursor = Some(*k),
                None if start.is_none() && kept.is_empty() => {
                    // Everything visited goes: the table's first key
                    // after the removals is where the walk goes on.
                }
                None => {
                    // Every key the walk could stand on goes: start over
                    // next tick rather than count anything twice.
                    self.cursor = None;
                    self.current = SweepStats::default();
                }
            }
        }
        for k in &doomed {
            if table.remove(k) {
                report.removed += 1;
            } else {
                self.reaped.failed += 1;
            }
        }
        report
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
            NatFlowState::TcpClosing | NatFlowState::TcpClosed => count.closing += 1,
            _ => count.live += 1,
        }
    }
}

/// A flow table in memory, ordered by key (tests; a stand-in for the map).
#[cfg(test)]
impl NatTable for BTreeMap<FlowKeyOrd, NatEntry> {
    fn next_key(&self, after: Option<&FlowKey>) -> Option<FlowKey> {
        use std::ops::Bound;
        match after {
            None => self.keys().next().map(|k| k.0),
            Some(after) if !self.contains_key(&FlowKeyOrd(*after)) => {
                self.keys().next().map(|k| k.0)
            }
            Some(after) => self
                .range((Bound::Excluded(FlowKeyOrd(*after)), Bound::Unbounded))
                .next()
                .map(|(k, _)| k.0),
        }
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        BTreeMap::get(self, &FlowKeyOrd(*key)).copied()
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        BTreeMap::remove(self, &FlowKeyOrd(*key));
        true
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

#[cfg(test)]
mod tests;
