//! The sending side: a scan of the NAT flow table, each flow's two entries
//! paired into one record named by addresses and ports, and which flows a
//! scan leaves out. Apart from the receiving side (`rebuild`, `merge`):
//! nothing here writes a table.

use std::collections::{HashMap, HashSet};

use lb_common::{
    consts::{NAT_DIR_FORWARD, NAT_DIR_REPLY},
    nat::counterpart_key,
    FlowKey, NatEntry,
};

use crate::{
    daemon::replication::{flow_table::is_replica, records::Scan},
    reconcile::words_addr,
    sync::{NatFlowRecord, NatHalf, NatTuple},
};

/// Which entries a scan sends: in a VRRP pair every flow; in a full mesh
/// the copies of peers' flows (installed here, see
/// [`super::flow_table::mark_replica`](crate::daemon::replication::flow_table::mark_replica), and not touched here since) are
/// left out of incremental scans and periodic dumps: each flow is
/// streamed by the node that forwards it.
///
/// Why no memory of what was sent: the data plane stamps an entry's
/// `last_seen_ns` whenever its `NAT_F_*` marks change (a FIN, a RST, the
/// first reply), not only once a touch interval, so a flow whose marks
/// changed counts as touched and the peer learns within a scan that a
/// connection is closing. A map of every entry's key and marks would
/// hold hundreds of megabytes at the largest table (16 M entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendRule {
    skip_replicas: bool,
}

impl SendRule {
    /// A full mesh's: peers' copies left out.
    pub(crate) fn skipping_replicas() -> Self {
        Self {
            skip_replicas: true,
        }
    }

    /// Whether `entry` is a peer's flow not to send but in a session dump.
    fn skipped(self, entry: &NatEntry) -> bool {
        self.skip_replicas && is_replica(entry.last_seen_ns)
    }
}

/// Master: one record per flow whose two entries are both in the table
/// (a half-built or half-reaped flow is left out): for `Scan::Recent`,
/// only those touched (by either direction: a packet, or a change of its
/// marks) at or after its `since`; for a dump, all of them, except that
/// `rule` may leave out the copies of peers' flows not forwarded here
/// since (as [`super::records::sends`](crate::daemon::replication::records::sends) does for the connection table: each
/// node dumps the flows it forwards, so a copy is not sent back with marks
/// older than its node's; only the dump for a new session carries them).
/// Ages are taken against `now` (the data plane's clock,
/// CLOCK_MONOTONIC).
///
/// `flows` is every entry of the table, read once; `lookup` reads one
/// entry by key (a counterpart). Why both: the scan holds only what it
/// sends, never a copy of the table (the largest holds 16 M entries: a
/// copy took gigabytes, for every dump and every scan between them).
pub(in crate::daemon::replication) fn nat_records_in(
    flows: impl Iterator<Item = (FlowKey, NatEntry)>,
    lookup: impl Fn(&FlowKey) -> Option<NatEntry>,
    scan: Scan,
    now: u64,
    rule: SendRule,
) -> Vec<NatFlowRecord> {
    match scan {
        Scan::Recent { since } => recent_records(flows, &lookup, since, now, rule),
        Scan::Periodic | Scan::Session => {
            dump_records(flows, &lookup, scan == Scan::Session, now, rule)
        }
    }
}

/// A walk for peers with a new session: in one pass, every flow (a
/// session's dump, copies included) and, when `rest` is given, the
/// records that scan sends to the peers without one (the same as
/// [`nat_records_in`] gives for it).
pub(in crate::daemon::replication) fn nat_records_with_dump(
    flows: impl Iterator<Item = (FlowKey, NatEntry)>,
    lookup: impl Fn(&FlowKey) -> Option<NatEntry>,
    rest: Option<Scan>,
    now: u64,
    rule: SendRule,
) -> (Vec<NatFlowRecord>, Vec<NatFlowRecord>) {
    let mut scanned = Vec::new();
    let mut all = Vec::new();
    for (key, forward) in flows {
        let Some(pair) = with_reply(key, forward, &lookup) else {
            continue;
        };
        let record = record(&pair, now);
        if rest.is_some_and(|scan| in_scan(&pair, scan, rule)) {
            scanned.push(record);
        }
        all.push(record);
    }
    (scanned, all)
}

/// Whether `scan` sends the flow of `pair`: a dump every flow but (by
/// `rule`) copies neither of whose entries was forwarded here since; a
/// scan of recent flows those with an entry, not such a copy, touched at
/// or after its `since` (as [`recent_records`] picks them).
fn in_scan(pair: &Pair, scan: Scan, rule: SendRule) -> bool {
    let (_, forward, _, reply) = pair;
    match scan {
        Scan::Session => true,
        Scan::Periodic => !(rule.skipped(forward) && rule.skipped(reply)),
        Scan::Recent { since } => [forward, reply]
            .into_iter()
            .any(|e| !rule.skipped(e) && e.last_seen_ns >= since),
    }
}

/// [`nat_records_in`] over `flows` alone, read into memory first (tests:
/// a table given as its entries).
#[cfg(test)]
pub(in crate::daemon::replication) fn nat_records(
    flows: impl Iterator<Item = (FlowKey, NatEntry)>,
    scan: Scan,
    now: u64,
    rule: SendRule,
) -> Vec<NatFlowRecord> {
    let all: Vec<(FlowKey, NatEntry)> = flows.collect();
    let table: HashMap<FlowKey, NatEntry> = all.iter().copied().collect();
    nat_records_in(
        all.into_iter(),
        |key| table.get(key).copied(),
        scan,
        now,
        rule,
    )
}

/// One flow's two entries: forward key and entry, reply key and entry.
type Pair = (FlowKey, NatEntry, FlowKey, NatEntry);

/// A dump: each forward entry of `flows` with its reply entry read by
/// key, as it streams by.
fn dump_records(
    flows: impl Iterator<Item = (FlowKey, NatEntry)>,
    lookup: &impl Fn(&FlowKey) -> Option<NatEntry>,
    copies: bool,
    now: u64,
    rule: SendRule,
) -> Vec<NatFlowRecord> {
    let mut records = Vec::new();
    for (key, forward) in flows {
        let Some(pair) = with_reply(key, forward, lookup) else {
            continue;
        };
        if !copies && rule.skipped(&pair.1) && rule.skipped(&pair.3) {
            continue;
        }
        records.push(record(&pair, now));
    }
    records
}

/// Between dumps: one pass over `flows` keeping only the touched entries
/// (see [`nat_records_in`]), then each one's counterpart, from those kept
/// or read by key. A flow both of whose entries were touched is sent once.
fn recent_records(
    flows: impl Iterator<Item = (FlowKey, NatEntry)>,
    lookup: &impl Fn(&FlowKey) -> Option<NatEntry>,
    since: u64,
    now: u64,
    rule: SendRule,
) -> Vec<NatFlowRecord> {
    let touched: Vec<(FlowKey, NatEntry)> = flows
        .filter(|(_, entry)| !rule.skipped(entry) && entry.last_seen_ns >= since)
        .collect();
    if touched.is_empty() {
        return Vec::new();
    }
    // Counterparts touched too are taken as read in the pass, as the
    // entries themselves.
    let held: HashMap<FlowKey, NatEntry> = touched.iter().copied().collect();
    let read = |key: &FlowKey| held.get(key).copied().or_else(|| lookup(key));
    let mut paired: HashSet<FlowKey> = HashSet::with_capacity(touched.len());
    let mut records = Vec::new();
    for (key, entry) in touched {
        let pair = with_reply(key, entry, &read).or_else(|| with_forward(key, entry, &read));
        if let Some(pair) = pair.filter(|pair| paired.insert(pair.0)) {
            records.push(record(&pair, now));
        }
    }
    records
}

/// The flow of `forward` (a forward entry at `key`), its reply entry read
/// by key: None unless both entries name each other.
fn with_reply(
    key: FlowKey,
    forward: NatEntry,
    lookup: &impl Fn(&FlowKey) -> Option<NatEntry>,
) -> Option<Pair> {
    if forward.direction != NAT_DIR_FORWARD {
        return None;
    }
    let reply_key = counterpart_key(&key, &forward);
    let reply = lookup(&reply_key)?;
    paired((key, forward, reply_key, reply))
}

/// The flow of `reply` (a reply entry at `key`), its forward entry read
/// by key: None unless both entries name each other.
fn with_forward(
    key: FlowKey,
    reply: NatEntry,
    lookup: &impl Fn(&FlowKey) -> Option<NatEntry>,
) -> Option<Pair> {
    if reply.direction != NAT_DIR_REPLY {
        return None;
    }
    let forward_key = counterpart_key(&key, &reply);
    let forward = lookup(&forward_key)?;
    paired((forward_key, forward, key, reply))
}

/// `pair` if it is one flow's: a forward and a reply entry, each at the
/// other's counterpart key (as the data plane pairs them).
fn paired(pair: Pair) -> Option<Pair> {
    let (key, forward, reply_key, reply) = &pair;
    (forward.direction == NAT_DIR_FORWARD
        && reply.direction == NAT_DIR_REPLY
        && counterpart_key(key, forward) == *reply_key
        && counterpart_key(reply_key, reply) == *key)
        .then_some(pair)
}

/// `pair`'s record.
fn record(pair: &Pair, now: u64) -> NatFlowRecord {
    let (key, forward, reply_key, reply) = pair;
    NatFlowRecord {
        vip: words_addr(key.dst, key.family),
        vip_port: u16::from_be(key.dport),
        protocol: key.proto,
        backend: words_addr(forward.dst, key.family),
        backend_port: u16::from_be(forward.dport),
        forward: half(key, forward, now),
        reply: half(reply_key, reply, now),
    }
}

fn half(key: &FlowKey, entry: &NatEntry, now: u64) -> NatHalf {
    let age_ms = now.saturating_sub(entry.last_seen_ns) / 1_000_000;
    NatHalf {
        key: NatTuple {
            src: words_addr(key.src, key.family),
            dst: words_addr(key.dst, key.family),
            sport: u16::from_be(key.sport),
            dport: u16::from_be(key.dport),
        },
        translated: NatTuple {
            src: words_addr(entry.src, key.family),
            dst: words_addr(entry.dst, key.family),
            sport: u16::from_be(entry.sport),
            dport: u16::from_be(entry.dport),
        },
        flags: entry.flags,
        age_ms: u32::try_from(age_ms).unwrap_or(u32::MAX),
    }
}
