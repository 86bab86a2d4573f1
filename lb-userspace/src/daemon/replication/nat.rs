//! NAT flows across the VRRP pair: the master turns the two NAT flow table
//! entries of each translated flow into one [`NatFlowRecord`] named by
//! addresses and ports; the backup rebuilds both entries with its own VIP
//! and backend ids, its own clock and no next hop (its FIB finds one), and
//! never lets a replicated flow take the place of another flow's entry
//! (but for the master's flow on the backup, over a flow the master ended:
//! [`Over::Replace`]). In a full mesh a copy is merged with this node's
//! entry of the flow ([`Over::Copy`]), and periodic dumps leave the
//! copies out, so flows are not echoed back with stale marks.
//! Pure functions over a [`ReplicaTable`], so the rules are tested without a
//! kernel; [`Replication`](super::Replication) drives them.

use std::collections::{HashMap, HashSet};

use lb_common::{
    consts::{
        FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP, IPPROTO_UDP, NAT_DIR_FORWARD, NAT_DIR_REPLY,
        NAT_F_FIN, NAT_F_RST,
    },
    nat::counterpart_key,
    FlowKey, Mode, NatEntry,
};

use tracing::debug;

use super::{
    flow_table::{is_replica, ECHO_MARGIN_NS},
    records::Scan,
};
use crate::{
    config::Protocol,
    dataplane::DataplaneError,
    nat::maps::NatMaps,
    reconcile::{addr_words, words_addr, Balancer, VipId},
    sync::{NatFlowRecord, NatHalf, NatTuple},
};

/// How far before the previous scan's start a NAT entry's `last_seen_ns`
/// may lie and still count as touched since: the coarse clock the data
/// plane stamps with lags by up to a jiffy (10 ms at HZ=100). Every touch
/// is sent about once, not on every tick of the following touch interval
/// (as the DSR flows' wider window does, which would send each active flow
/// four times a second and the backup install it as often).
pub(crate) const SCAN_MARGIN_NS: u64 = 50_000_000;

/// The NAT flow table as replication uses it (and an upgrade's carrying
/// over of an older release's flows, `nat::legacy`): the real table, or a
/// map in tests.
pub(crate) trait ReplicaTable {
    /// The entry under `key`, if any.
    fn get(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Puts `entry` in only if `key` is free; `false` when taken.
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError>;
    /// Puts `entry` in, replacing what is there.
    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError>;
    /// Takes `key` out.
    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError>;
}

impl ReplicaTable for NatMaps {
    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        self.flow(key)
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError> {
        self.install_flow_if_free(key, entry)
    }

    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
        self.install_flow(key, entry)
    }

    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
        self.remove_flow(key)
    }
}

/// Which entries a scan sends: in a VRRP pair every flow; in a full mesh
/// the copies of peers' flows (installed here, see
/// [`super::flow_table::mark_replica`], and not touched here since) are
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
/// since (as [`super::records::sends`] does for the connection table: each
/// node dumps the flows it forwards, so a copy is not sent back with marks
/// older than its node's; only the dump for a new session carries them).
/// Ages are taken against `now` (the data plane's clock,
/// CLOCK_MONOTONIC).
///
/// `flows` is every entry of the table, read once; `lookup` reads one
/// entry by key (a counterpart). Why both: the scan holds only what it
/// sends, never a copy of the table (the largest holds 16 M entries: a
/// copy took gigabytes, for every dump and every scan between them).
pub(super) fn nat_records_in(
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
pub(super) fn nat_records_with_dump(
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
pub(super) fn nat_records(
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

/// Why the backup leaves a NAT record out: it cannot be this node's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// Not TCP or UDP.
    Protocol,
    /// This node has no such VIP.
    Vip,
    /// This node has the VIP, but not in NAT mode.
    NotNat,
    /// This node's VIP has no backend at that address.
    Backend,
    /// This node's backend listens on another port.
    BackendPort,
    /// The record's tuples do not describe one flow of that VIP and
    /// backend (a peer bug).
    Inconsistent,
    /// Its NAT address is none of this node's NAT sources (the nodes'
    /// `[nat]` or `nat_source` differ): the backend's replies would go to
    /// an address this node does not hold, so the flow would break here.
    NatAddress,
}

impl Unknown {
    /// For the debug log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unknown::Protocol => "protocol",
            Unknown::Vip => "unknown VIP",
            Unknown::NotNat => "VIP not in NAT mode here",
            Unknown::Backend => "unknown backend",
            Unknown::BackendPort => "backend port differs",
            Unknown::Inconsistent => "inconsistent tuples",
            Unknown::NatAddress => "NAT address not this node's",
        }
    }
}

/// The two entries a record becomes on this node (forward, then reply).
pub(crate) type NatPair = [(FlowKey, NatEntry); 2];

/// Backup: both entries of `record` with this node's VIP and backend ids,
/// ages turned into this node's clock (`now`, CLOCK_MONOTONIC), no next
/// hop (`ifindex` 0: the data plane looks it up).
pub(crate) fn entries_for(
    record: &NatFlowRecord,
    balancer: &Balancer,
    now: u64,
) -> Result<NatPair, Unknown> {
    let protocol = match record.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return Err(Unknown::Protocol),
    };
    let vip_id = VipId {
        address: record.vip,
        port: record.vip_port,
        protocol,
    };
    let vip = balancer.vips().get(&vip_id).ok_or(Unknown::Vip)?;
    if vip.mode != Mode::Nat {
        return Err(Unknown::NotNat);
    }
    let backend = vip.backends.get(&record.backend).ok_or(Unknown::Backend)?;
    if backend.port.unwrap_or(record.vip_port) != record.backend_port {
        return Err(Unknown::BackendPort);
    }
    let local_vip = u16::try_from(vip.id).map_err(|_| Unknown::Vip)?;
    let (f, r) = (&record.forward, &record.reply);
    if f.key.dst != record.vip
        || f.key.dport != record.vip_port
        || f.translated.dst != record.backend
        || f.translated.dport != record.backend_port
    {
        return Err(Unknown::Inconsistent);
    }
    // The reply key's address is the same one (checked below: the two
    // entries pair up).
    let own =
        |nat: Option<&crate::config::VipNat>| nat.is_some_and(|n| n.source == f.translated.src);
    if !own(vip.nat.as_ref()) && !balancer.vips().values().any(|v| own(v.nat.as_ref())) {
        return Err(Unknown::NatAddress);
    }
    let entry = |half: &NatHalf, direction: u8| -> Result<(FlowKey, NatEntry), Unknown> {
        let (key_src, family) = addr_words(half.key.src);
        let (key_dst, dst_family) = addr_words(half.key.dst);
        let (src, src_family) = addr_words(half.translated.src);
        let (dst, tdst_family) = addr_words(half.translated.dst);
        if [dst_family, src_family, tdst_family] != [family; 3] {
            return Err(Unknown::Inconsistent);
        }
        let key = FlowKey {
            src: key_src,
            dst: key_dst,
            sport: half.key.sport.to_be(),
            dport: half.key.dport.to_be(),
            proto: record.protocol,
            family,
            _pad: 0,
        };
        let entry = NatEntry {
            src,
            dst,
            sport: half.translated.sport.to_be(),
            dport: half.translated.dport.to_be(),
            backend_id: backend.id,
            last_seen_ns: now.saturating_sub(u64::from(half.age_ms).saturating_mul(1_000_000)),
            ifindex: 0,
            dmac: [0; 6],
            smac: [0; 6],
            flags: half.flags,
            direction,
            vip_id: local_vip,
            mtu: 0,
        };
        Ok((key, entry))
    };
    let forward = entry(f, NAT_DIR_FORWARD)?;
    let reply = entry(r, NAT_DIR_REPLY)?;
    // The two entries must be each other's counterpart, as the data plane
    // pairs them.
    if counterpart_key(&forward.0, &forward.1) != reply.0
        || counterpart_key(&reply.0, &reply.1) != forward.0
    {
        return Err(Unknown::Inconsistent);
    }
    Ok([forward, reply])
}

/// Whether `a` and `b` are the same direction of the same translation.
fn same_flow(a: &NatEntry, b: &NatEntry) -> bool {
    (a.src, a.dst, a.sport, a.dport, a.direction) == (b.src, b.dst, b.sport, b.dport, b.direction)
}

/// Master for the VIP (`Install::UnlessFresher`): whether this node holds
/// something fresher than `pair` at either of its keys: an entry of another
/// flow, or this same flow seen at least as recently. Only then is a record
/// an old master queued left out; otherwise it is merged into this node's
/// copy (a FIN or RST it carries is taken, and this node's own are kept,
/// see [`merged`]).
pub(crate) fn holds_fresher(table: &impl ReplicaTable, pair: &NatPair) -> bool {
    pair.iter().any(|(key, entry)| {
        table.get(key).is_some_and(|existing| {
            !same_flow(&existing, entry) || existing.last_seen_ns >= entry.last_seen_ns
        })
    })
}

/// How [`install_pair_as`] treats what this node holds at a record's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Over {
    /// Another flow's entry keeps its key (the record is left out); this
    /// same flow's entries are merged (see [`merged`]): the fresher one
    /// wins, and a FIN or RST either side marked shortly before is kept.
    /// A pair's master for the VIP, and a previous lbd's flows carried
    /// over at an upgrade ([`carry_pair`]): a copy never clears a close
    /// mark this node's data plane made, nor replaces a fresher entry.
    Merge,
    /// A full mesh's copy: as `Merge`, except that this node's entries of
    /// the same flow also stand against a copy at most
    /// [`ECHO_MARGIN_NS`] fresher
    /// that brings no mark they lack: an echo of this node's own flow
    /// from a peer's dump never turns it into a copy (see
    /// [`merged_copy`]).
    Copy,
    /// A pair's backup for the VIP: the master's record is the truth. This
    /// same flow's entries take the record's marks and the later of both
    /// `last_seen_ns`; another flow
    /// holding a key is one the master has ended and whose port it reused
    /// (this node's reaper has not swept it yet): it is removed, both its
    /// entries, so the master's flow takes its place and a failover sends
    /// the replies to the right client.
    Replace,
    /// A previous lbd's flow its program forwarded after this lbd loaded,
    /// carried over after the swap ([`carry_pair`]): this same flow's
    /// entries are merged as under `Merge`; another flow holding a key is
    /// removed as under `Replace`.
    Supersede,
}

/// `NAT_F_*` marks that end a direction of a connection: only a new SYN,
/// on the node that forwards it, clears them.
const CLOSE_MARKS: u8 = NAT_F_FIN | NAT_F_RST;

/// A record's entry `record` merged with this node's entry `existing` of
/// the same flow (same translation and direction): the fields of the
/// fresher by `last_seen_ns` (ties: this node's), this node's cached next
/// hop, and the close marks of both when they were seen within
/// [`MERGE_WINDOW_NS`] of each other. The data plane marks a FIN or RST at
/// once but stamps `last_seen_ns` at most every touch interval, so an
/// entry up to that much older may carry a close mark the fresher one
/// lacks; a fresher entry past that saw packets after it (a new connection
/// reusing the translation starts afresh with a SYN), and its marks stand.
fn merged(existing: &NatEntry, record: &NatEntry) -> NatEntry {
    let (newer, older) = if record.last_seen_ns > existing.last_seen_ns {
        (record, existing)
    } else {
        (existing, record)
    };
    let flags = if newer.last_seen_ns - older.last_seen_ns <= MERGE_WINDOW_NS {
        newer.flags | (older.flags & CLOSE_MARKS)
    } else {
        newer.flags
    };
    NatEntry {
        flags,
        ifindex: existing.ifindex,
        dmac: existing.dmac,
        smac: existing.smac,
        mtu: existing.mtu,
        ..*newer
    }
}

/// [`merged`] for a full mesh's copy `record`: this node's entry
/// `existing` stands while the copy is an echo of it (see [`is_echo`]),
/// so its own flow, a few ms "fresher" from rounding and transit, stays
/// this node's (unmarked, in its dumps). A copy that brings a mark the
/// entry lacks is the peer's news (a backend's reply, a FIN or RST the
/// peer's data plane saw) and is merged as any other.
fn merged_copy(existing: &NatEntry, record: &NatEntry) -> NatEntry {
    if is_echo(existing, record) {
        *existing
    } else {
        merged(existing, record)
    }
}

/// Whether `record`, a full mesh's copy of the same flow as `existing`,
/// is an echo of it: at most `ECHO_MARGIN_NS` fresher and carrying no
/// mark `existing` lacks (as the connection table's `flow_table::keeps`):
/// an echo carries only marks this node's data plane set.
fn is_echo(existing: &NatEntry, record: &NatEntry) -> bool {
    record.last_seen_ns > existing.last_seen_ns
        && record.last_seen_ns - existing.last_seen_ns <= ECHO_MARGIN_NS
        && record.flags & !existing.flags == 0
}

/// How much older than the fresher entry a close mark is still taken in
/// [`merged`]: the data plane's touch interval, plus the lag of its coarse
/// clock and the rounding of ages to milliseconds on the wire.
const MERGE_WINDOW_NS: u64 = FLOW_TOUCH_INTERVAL_NS + SCAN_MARGIN_NS;

/// What [`carry_pair`] did with a previous lbd's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carried {
    /// Both entries are in (new, or merged with this table's copy).
    Yes,
    /// Both entries are in, after the flow this lbd's program had opened
    /// on one of its keys was removed (`supersede` only).
    Superseded,
    /// Another flow's entry holds one of the keys: it is kept, this flow
    /// is left out.
    Conflict,
}

/// Carries `pair`, a flow of a previous lbd's NAT flow table, into `table`
/// (an upgrade or a `flow_table_size` change, `nat::legacy`). This same
/// flow's entries are merged: the fresher one wins, and a FIN or RST
/// this lbd's program marked since is kept (the old table stops changing
/// at the swap; this one's program goes on). Another flow holding a key
/// keeps it, unless `supersede`: the previous lbd's program forwarded
/// this flow after this lbd loaded, and the other flow is one this lbd's
/// program opened on the same NAT port before the final copy, which it
/// could not see. The flow the old program forwarded wins then, as in
/// the connection table's carry-over (`held_wins`): its backend holds
/// the connection.
pub(crate) fn carry_pair(
    table: &mut impl ReplicaTable,
    pair: &NatPair,
    supersede: bool,
) -> Result<Carried, DataplaneError> {
    let over = if supersede {
        Over::Supersede
    } else {
        Over::Merge
    };
    Ok(match install_pair_as(table, pair, over)? {
        Placed::Installed => Carried::Yes,
        Placed::Replaced => Carried::Superseded,
        Placed::Conflict => Carried::Conflict,
    })
}

/// What [`install_pair_as`] did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    /// Both entries are in (new, or an existing copy refreshed or merged).
    Installed,
    /// Both entries are in, after another flow that held a key was removed
    /// ([`Over::Replace`] and [`Over::Supersede`] only).
    Replaced,
    /// An entry of another flow holds one of the keys: it is kept, the
    /// record is not installed.
    Conflict,
}

/// Installs `pair` into `table`, treating the entries already there as
/// `over` says. A free key is taken only if still free at the write
/// (`BPF_NOEXIST`), and an entry this call put in is taken out again (one
/// it overwrote put back) if the other one conflicts or fails; another
/// flow removed under [`Over::Replace`] stays removed. An entry the merge
/// leaves as it was is not written.
pub(super) fn install_pair_as(
    table: &mut impl ReplicaTable,
    pair: &NatPair,
    over: Over,
) -> Result<Placed, DataplaneError> {
    let mut planned = Vec::with_capacity(2);
    let mut stale: Vec<FlowKey> = Vec::new();
    for (key, entry) in pair {
        match table.get(key) {
            None => planned.push((key, *entry, None)),
            Some(existing) if same_flow(&existing, entry) => {
                let refreshed = match over {
                    Over::Merge | Over::Supersede => merged(&existing, entry),
                    Over::Copy => merged_copy(&existing, entry),
                    Over::Replace => NatEntry {
                        last_seen_ns: entry.last_seen_ns.max(existing.last_seen_ns),
                        ifindex: existing.ifindex,
                        dmac: existing.dmac,
                        smac: existing.smac,
                        mtu: existing.mtu,
                        ..*entry
                    },
                };
                if refreshed != existing {
                    planned.push((key, refreshed, Some(existing)));
                }
            }
            Some(existing) if matches!(over, Over::Replace | Over::Supersede) => {
                // The other flow's second entry goes with it, if it is
                // there and pairs with this one (not a key of the record:
                // that one is judged on its own).
                stale.push(*key);
                let other = counterpart_key(key, &existing);
                if pair.iter().all(|(k, _)| *k != other)
                    && table
                        .get(&other)
                        .is_some_and(|e| counterpart_key(&other, &e) == *key)
                {
                    stale.push(other);
                }
                planned.push((key, *entry, None));
            }
            Some(_) => return Ok(Placed::Conflict),
        }
    }
    for key in &stale {
        table.remove(key)?;
    }
    // What this call changed, to undo if the other half fails: the key
    // and the entry it held (None: it was free).
    let mut done: Vec<(&FlowKey, Option<NatEntry>)> = Vec::with_capacity(2);
    for (key, entry, read) in planned {
        let (step, previous) = match read {
            Some(read) => {
                // Read again right before the write: what the data plane
                // wrote in place since lbd's read stays (see `rebased`).
                let live = table.get(key);
                let entry = live.map_or(entry, |live| rebased(&read, &live, &entry));
                (table.overwrite(key, &entry).map(|()| true), live)
            }
            None => (table.insert_if_free(key, &entry), None),
        };
        match step {
            Ok(true) => done.push((key, previous)),
            // Taken since the look-up (the data plane made a flow):
            // undo this call's half, keep theirs.
            Ok(false) => {
                undo(table, &done)?;
                return Ok(Placed::Conflict);
            }
            // Table full or busy: no half-installed flow is left behind
            // (an orphaned forward entry would translate packets whose
            // replies nothing translates back).
            Err(error) => {
                if let Err(again) = undo(table, &done) {
                    debug!(%again, "undoing half a replicated NAT flow failed");
                }
                return Err(error);
            }
        }
    }
    Ok(if stale.is_empty() {
        Placed::Installed
    } else {
        Placed::Replaced
    })
}

/// `planned`, made from lbd's read `read` of an entry, with what the data
/// plane wrote in place since (`live`, read again right before lbd's
/// write) laid over it: the marks it set or cleared (a FIN, RST or reply
/// seen, a SYN starting afresh), a next hop it refreshed, a later touch.
/// lbd rewrites a held entry in place (`NatFlowTable::install`), and the
/// data plane marks it in place at any moment: without this, lbd's write
/// put back what it read, and a lost RST held the flow's port for the
/// established timeout. (What the data plane writes between this re-read
/// and the write itself is still lost: a window of a few stores, not of
/// the whole merge.) Another flow's entry at the key is not touched here
/// (lbd is the only remover: the translation stays the flow's).
fn rebased(read: &NatEntry, live: &NatEntry, planned: &NatEntry) -> NatEntry {
    if live == read || !same_flow(live, planned) {
        return *planned;
    }
    let set = live.flags & !read.flags;
    let cleared = read.flags & !live.flags;
    let mut out = NatEntry {
        flags: (planned.flags & !cleared) | set,
        ..*planned
    };
    if live.last_seen_ns != read.last_seen_ns {
        out.last_seen_ns = out.last_seen_ns.max(live.last_seen_ns);
    }
    if (live.ifindex, live.dmac, live.smac, live.mtu)
        != (read.ifindex, read.dmac, read.smac, read.mtu)
    {
        (out.ifindex, out.dmac, out.smac, out.mtu) = (live.ifindex, live.dmac, live.smac, live.mtu);
    }
    out
}

/// Takes back what [`install_pair_as`] did so far: removes the entries it
/// inserted, puts back those it overwrote.
fn undo(
    table: &mut impl ReplicaTable,
    done: &[(&FlowKey, Option<NatEntry>)],
) -> Result<(), DataplaneError> {
    for (key, previous) in done.iter().rev() {
        match previous {
            None => table.remove(key)?,
            Some(entry) => table.overwrite(key, entry)?,
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::IpAddr;

    use lb_common::consts::{NAT_F_FIN, NAT_F_REPLIED, NAT_F_RST, NAT_F_SYN};

    use super::*;
    use crate::{
        config::{BackendConfig, VipConfig},
        dataplane::FakeMaps,
        reconcile::DesiredVip,
    };

    /// A table in memory (for `nat_install`'s tests too); its inserts
    /// counted, the `n`-th failing with the error of `fail_at` if listed.
    #[derive(Default)]
    pub(in crate::daemon::replication) struct Table {
        pub(in crate::daemon::replication) entries: HashMap<FlowKey, NatEntry>,
        pub(in crate::daemon::replication) inserts: usize,
        pub(in crate::daemon::replication) fail_at: Vec<(usize, fn() -> DataplaneError)>,
    }

    impl ReplicaTable for Table {
        fn get(&self, key: &FlowKey) -> Option<NatEntry> {
            self.entries.get(key).copied()
        }
        fn insert_if_free(
            &mut self,
            key: &FlowKey,
            entry: &NatEntry,
        ) -> Result<bool, DataplaneError> {
            self.inserts += 1;
            if let Some((_, error)) = self.fail_at.iter().find(|(n, _)| *n == self.inserts) {
                return Err(error());
            }
            if self.entries.contains_key(key) {
                return Ok(false);
            }
            self.entries.insert(*key, *entry);
            Ok(true)
        }
        fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
            self.entries.insert(*key, *entry);
            Ok(())
        }
        fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
            self.entries.remove(key);
            Ok(())
        }
    }

    const VIP: &str = "198.18.0.100";
    const NAT: &str = "198.18.0.50";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// This node's NAT source for a NAT VIP (`NAT`, the records' address).
    pub(in crate::daemon::replication) fn nat_source() -> crate::config::VipNat {
        crate::config::VipNat {
            source: ip(NAT),
            own_source: false,
            port_min: 1024,
            port_max: 65_535,
        }
    }

    /// A balancer with one NAT VIP (port 80, TCP) and `backends` on 8080.
    fn balancer(backends: &[&str], mode: Mode) -> Balancer {
        let mut v = VipConfig::new(ip(VIP), 80, Protocol::Tcp);
        v.forwarding = mode;
        v.nat = (mode == Mode::Nat).then(nat_source);
        v.backends = backends
            .iter()
            .map(|a| BackendConfig {
                port: Some(8080),
                ..BackendConfig::new(ip(a))
            })
            .collect();
        let mut b = Balancer::new(4);
        b.apply(
            &mut FakeMaps::default(),
            &[DesiredVip::from_config(&v, &|_| None)],
        )
        .unwrap();
        b
    }

    fn key(src: &str, dst: &str, sport: u16, dport: u16) -> FlowKey {
        let (s, family) = addr_words(ip(src));
        let (d, _) = addr_words(ip(dst));
        FlowKey {
            src: s,
            dst: d,
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto: IPPROTO_TCP,
            family,
            _pad: 0,
        }
    }

    /// Both entries of client:cport -> VIP:80 NAT'd from NAT:nport to
    /// backend:8080, as the master's data plane writes them.
    pub(in crate::daemon::replication) fn flow(
        client: &str,
        cport: u16,
        nport: u16,
        backend: &str,
        backend_id: u32,
    ) -> NatPair {
        let fk = key(client, VIP, cport, 80);
        let rk = key(backend, NAT, 8080, nport);
        let fe = NatEntry {
            src: rk.dst,
            dst: rk.src,
            sport: rk.dport,
            dport: rk.sport,
            backend_id,
            last_seen_ns: 9_000_000_000,
            ifindex: 7,
            dmac: [2, 0, 0, 0, 0, 9],
            smac: [2, 0, 0, 0, 0, 1],
            flags: NAT_F_SYN,
            direction: NAT_DIR_FORWARD,
            vip_id: 3,
            mtu: 0,
        };
        let re = NatEntry {
            src: fk.dst,
            dst: fk.src,
            sport: fk.dport,
            dport: fk.sport,
            last_seen_ns: 9_500_000_000,
            flags: NAT_F_SYN | NAT_F_REPLIED,
            direction: NAT_DIR_REPLY,
            ..fe
        };
        [(fk, fe), (rk, re)]
    }

    /// `flows` NAT'd flows of distinct clients and NAT ports (two entries
    /// each), touched last at 9 s and 9.5 s.
    fn many(flows: u32) -> Vec<(FlowKey, NatEntry)> {
        (0..flows)
            .flat_map(|i| {
                let client = format!("198.18.{}.{}", i / 250 % 250, 1 + i % 250);
                let nport = u16::try_from(1024 + i).unwrap();
                flow(&client, 40000, nport, "198.19.2.11", 1)
            })
            .collect()
    }

    /// A walk that dumps for a new session reads, in the same pass, what
    /// the peers without one get: the very records a scan of theirs alone
    /// gives (recent flows, touched by either entry; a periodic dump
    /// without the copies), and every flow for the session.
    #[test]
    fn a_session_dump_and_the_others_records_come_from_one_pass() {
        use super::super::flow_table::mark_replica;
        let (now, since) = (10_000_000_000, 9_600_000_000);
        let mut entries = many(40);
        // Flow 0 touched forward, flow 1 in reply, flow 2 a copy (both
        // entries marked), flow 3 a copy touched since (its mark stays).
        entries[0].1.last_seen_ns = 9_900_000_000;
        entries[3].1.last_seen_ns = 9_800_000_000;
        for at in [4, 5, 6, 7] {
            entries[at].1.last_seen_ns = mark_replica(entries[at].1.last_seen_ns);
        }
        entries[7].1.last_seen_ns = mark_replica(9_900_000_000);
        let table: HashMap<FlowKey, NatEntry> = entries.iter().copied().collect();
        let lookup = |key: &FlowKey| table.get(key).copied();
        let rule = SendRule::skipping_replicas();
        let sorted = |mut r: Vec<NatFlowRecord>| {
            r.sort_by_key(|r| (r.forward.key.src, r.forward.translated.sport));
            r
        };
        for scan in [Scan::Recent { since }, Scan::Periodic] {
            let alone = nat_records_in(entries.iter().copied(), lookup, scan, now, rule);
            let (rest, all) =
                nat_records_with_dump(entries.iter().copied(), lookup, Some(scan), now, rule);
            assert_eq!(sorted(rest), sorted(alone), "{scan:?}");
            assert_eq!(all.len(), 40, "every flow, copies too");
        }
        let recent = nat_records_in(
            entries.iter().copied(),
            lookup,
            Scan::Recent { since },
            now,
            rule,
        );
        assert_eq!(recent.len(), 2, "the two own flows touched");
        let (none, all) = nat_records_with_dump(entries.iter().copied(), lookup, None, now, rule);
        assert!(none.is_empty());
        assert_eq!(all.len(), 40);
    }

    /// A NAT scan holds only what it sends, never a copy of the table
    /// (which, at the largest table, took gigabytes): over 100,000
    /// entries, a scan between dumps that finds 10 flows touched reads
    /// their 10 counterparts by key and holds a few KiB at its peak, and
    /// so does a full mesh's periodic dump that sends 10 flows (the rest
    /// are copies of peers' flows), reading each reply entry by key as
    /// its forward entry streams by. A copy of the table is 15 MB.
    #[test]
    fn a_nat_scan_holds_only_the_flows_it_sends() {
        use super::super::{flow_table::mark_replica, heap_peak::peak_during};
        const HELD_AT_MOST: usize = 64 * 1024;
        let (now, since) = (10_000_000_000, 9_600_000_000);
        let mut entries = many(50_000);
        let mut table: HashMap<FlowKey, NatEntry> = entries.iter().copied().collect();
        let lookups = std::cell::Cell::new(0);
        let rule = SendRule::default();
        let dumped = nat_records_in(
            entries.iter().copied(),
            |key| table.get(key).copied(),
            Scan::Periodic,
            now,
            rule,
        );
        assert_eq!(dumped.len(), 50_000);
        // Five flows touched forward, five in reply.
        for i in 0..10 {
            let at = i * 10_000 + i % 2;
            entries[at].1.last_seen_ns = 9_900_000_000;
            table.insert(entries[at].0, entries[at].1);
        }
        let lookup = |key: &FlowKey| {
            lookups.set(lookups.get() + 1);
            table.get(key).copied()
        };
        let (records, held) = peak_during(|| {
            nat_records_in(
                entries.iter().copied(),
                lookup,
                Scan::Recent { since },
                now,
                rule,
            )
        });
        assert_eq!(records.len(), 10);
        assert!(
            held < HELD_AT_MOST,
            "a scan between dumps held {held} bytes"
        );
        assert_eq!(lookups.get(), 10, "one counterpart read by key a flow");

        // A full mesh: all but 10 flows are peers' copies.
        let mut entries = many(50_000);
        for (at, (_, entry)) in entries.iter_mut().enumerate() {
            if at % 10_000 > 1 {
                entry.last_seen_ns = mark_replica(entry.last_seen_ns);
            }
        }
        let table: HashMap<FlowKey, NatEntry> = entries.iter().copied().collect();
        lookups.set(0);
        let lookup = |key: &FlowKey| {
            lookups.set(lookups.get() + 1);
            table.get(key).copied()
        };
        let rule = SendRule::skipping_replicas();
        let (records, held) = peak_during(|| {
            nat_records_in(entries.iter().copied(), lookup, Scan::Periodic, now, rule)
        });
        assert_eq!(records.len(), 10, "the flows forwarded here");
        assert!(held < HELD_AT_MOST, "a periodic dump held {held} bytes");
        assert_eq!(lookups.get(), 50_000, "each reply entry read by key");
    }

    #[test]
    fn a_flow_becomes_one_record_by_addresses_and_ages() {
        let [f, r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
        let records = nat_records(
            [f, r].into_iter(),
            Scan::Session,
            10_000_000_000,
            SendRule::default(),
        );
        assert_eq!(records.len(), 1);
        let rec = records[0];
        assert_eq!(
            (rec.vip, rec.vip_port, rec.protocol),
            (ip(VIP), 80, IPPROTO_TCP)
        );
        assert_eq!((rec.backend, rec.backend_port), (ip("198.19.2.11"), 8080));
        assert_eq!(rec.forward.key.src, ip("198.18.1.10"));
        assert_eq!(rec.forward.key.sport, 40000);
        assert_eq!(
            (rec.forward.translated.src, rec.forward.translated.sport),
            (ip(NAT), 20001)
        );
        assert_eq!((rec.reply.key.dst, rec.reply.key.dport), (ip(NAT), 20001));
        assert_eq!(rec.reply.translated.dst, ip("198.18.1.10"));
        assert_eq!((rec.forward.age_ms, rec.reply.age_ms), (1000, 500));
        assert_eq!(
            (rec.forward.flags, rec.reply.flags),
            (NAT_F_SYN, NAT_F_SYN | NAT_F_REPLIED)
        );
    }

    #[test]
    fn unpaired_and_idle_entries_are_not_sent_incrementally() {
        let [f1, r1] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
        let [f2, _] = flow("198.18.1.11", 40000, 20002, "198.19.2.11", 5);
        let all = [f1, r1, f2];
        let rule = SendRule::default();
        let now = 10_000_000_000;
        assert_eq!(
            nat_records(all.into_iter(), Scan::Session, now, rule).len(),
            1
        );
        // Touched (by the reply) at 9.5 s: recent since 9.4 s, not 9.6 s.
        assert_eq!(
            nat_records(
                all.into_iter(),
                Scan::Recent {
                    since: 9_400_000_000
                },
                now,
                rule
            )
            .len(),
            1
        );
        assert!(nat_records(
            all.into_iter(),
            Scan::Recent {
                since: 9_600_000_000
            },
            now,
            rule
        )
        .is_empty());
    }

    #[test]
    fn a_full_mesh_sends_a_peers_copy_only_in_session_dumps_until_touched_here() {
        use super::super::flow_table::mark_replica;
        let [mut f, mut r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
        // Installed from a peer: both halves marked, never sent from here.
        f.1.last_seen_ns = mark_replica(f.1.last_seen_ns);
        r.1.last_seen_ns = mark_replica(r.1.last_seen_ns);
        let (since, now) = (8_000_000_000, 10_000_000_000);
        let mesh = SendRule::skipping_replicas();
        assert!(nat_records([f, r].into_iter(), Scan::Recent { since }, now, mesh).is_empty());
        assert_eq!(
            nat_records([f, r].into_iter(), Scan::Session, now, mesh).len(),
            1,
            "a new session's dump carries every flow"
        );
        // A VRRP pair's periodic dump sends it (a pair's backup sends no
        // VIP it is not master for: see `walks::scan_nat`).
        assert_eq!(
            nat_records([f, r].into_iter(), Scan::Periodic, now, SendRule::default()).len(),
            1
        );
        // The routers moved the flow here: the data plane stamps its time.
        r.1.last_seen_ns = 9_900_000_001;
        assert_eq!(
            nat_records([f, r].into_iter(), Scan::Recent { since }, now, mesh).len(),
            1
        );
        assert_eq!(
            nat_records([f, r].into_iter(), Scan::Periodic, now, mesh).len(),
            1,
            "forwarded here: its periodic dump carries it"
        );
    }

    #[test]
    fn a_full_meshs_periodic_dump_leaves_its_peers_copies_out() {
        use super::super::flow_table::mark_replica;
        // A peer's flow installed here (both halves marked) and closed on
        // the peer since (this node's copy lags, as when the RST's record
        // is still on its way), and a flow this node forwards.
        let [mut f, mut r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
        f.1.last_seen_ns = mark_replica(f.1.last_seen_ns);
        r.1.last_seen_ns = mark_replica(r.1.last_seen_ns);
        let own = flow("198.18.1.11", 40000, 20002, "198.19.2.11", 5);
        let table = [f, r, own[0], own[1]];
        let now = 10_000_000_000;
        let mesh = SendRule::skipping_replicas();
        let periodic = nat_records(table.into_iter(), Scan::Periodic, now, mesh);
        assert_eq!(periodic.len(), 1, "only its own flow: {periodic:?}");
        assert_eq!(periodic[0].forward.key.src, ip("198.18.1.11"));
        // A copy that is closing is left out as well: what goes back to
        // its node is never an older state of its own flow.
        let mut closing = [f, r];
        closing[0].1.flags |= NAT_F_FIN;
        assert_eq!(
            nat_records(closing.into_iter(), Scan::Periodic, now, mesh).len(),
            0
        );
        // A new session's dump carries both; a pair dumps everything.
        assert_eq!(
            nat_records(table.into_iter(), Scan::Session, now, mesh).len(),
            2
        );
        assert_eq!(
            nat_records(table.into_iter(), Scan::Periodic, now, SendRule::default()).len(),
            2
        );
    }

    #[test]
    fn a_change_of_marks_is_sent_by_the_data_planes_stamp_alone() {
        let [f, r] = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 5);
        let rule = SendRule::default();
        let now = 10_000_000_000;
        // Touched at 9 s (forward) and 9.5 s (reply): recent since 9.4 s.
        let since = 9_400_000_000;
        assert_eq!(
            nat_records([f, r].into_iter(), Scan::Recent { since }, now, rule).len(),
            1
        );
        // Nothing touched since the next scan's start: nothing sent.
        let since = 9_600_000_000;
        assert!(nat_records([f, r].into_iter(), Scan::Recent { since }, now, rule).is_empty());
        // The client's FIN: the data plane stamps the entry as it marks
        // it (`flags::touch`), within the touch interval: sent at once,
        // with its marks.
        let mut closing = f;
        closing.1.flags |= NAT_F_FIN;
        closing.1.last_seen_ns = 9_700_000_000;
        let records = nat_records([closing, r].into_iter(), Scan::Recent { since }, now, rule);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].forward.flags, NAT_F_SYN | NAT_F_FIN);
        assert_eq!(records[0].forward.age_ms, 300);
        // Not again once the scans move past it.
        let since = 9_800_000_000;
        assert!(
            nat_records([closing, r].into_iter(), Scan::Recent { since }, now, rule).is_empty()
        );
    }

    #[test]
    fn the_backup_rebuilds_both_entries_with_its_own_ids_and_clock() {
        let sender = balancer(&["198.19.2.11"], Mode::Nat);
        // The receiver has another backend and VIP first: other ids.
        let mut receiver = Balancer::new(4);
        let mut other = VipConfig::new(ip("198.18.0.99"), 80, Protocol::Tcp);
        other.forwarding = Mode::Nat;
        let both = [
            DesiredVip::from_config(&other, &|_| None),
            DesiredVip::from_config(
                &{
                    let mut v = VipConfig::new(ip(VIP), 80, Protocol::Tcp);
                    v.forwarding = Mode::Nat;
                    v.nat = Some(nat_source());
                    v.backends = ["198.19.2.10", "198.19.2.11"]
                        .iter()
                        .map(|a| BackendConfig {
                            port: Some(8080),
                            ..BackendConfig::new(ip(a))
                        })
                        .collect();
                    v
                },
                &|_| None,
            ),
        ];
        receiver.apply(&mut FakeMaps::default(), &both).unwrap();
        let sender_vip = &sender.vips()[&VipId {
            address: ip(VIP),
            port: 80,
            protocol: Protocol::Tcp,
        }];
        let sender_backend = sender_vip.backends[&ip("198.19.2.11")].id;
        let master = flow("198.18.1.10", 40000, 20001, "198.19.2.11", sender_backend);
        let record = nat_records(
            master.into_iter(),
            Scan::Session,
            10_000_000_000,
            SendRule::default(),
        )[0];

        let local_vip = &receiver.vips()[&VipId {
            address: ip(VIP),
            port: 80,
            protocol: Protocol::Tcp,
        }];
        let local_backend = local_vip.backends[&ip("198.19.2.11")].id;
        assert_ne!(
            local_backend, sender_backend,
            "ids differ between the nodes"
        );
        // The backup's clock reads 50 s where the master's read 10 s.
        let [(fk, fe), (rk, re)] = entries_for(&record, &receiver, 50_000_000_000).unwrap();
        let [(mfk, mfe), (mrk, mre)] = master;
        assert_eq!((fk, rk), (mfk, mrk));
        for (got, want) in [(fe, mfe), (re, mre)] {
            assert_eq!(
                (got.src, got.dst, got.sport, got.dport),
                (want.src, want.dst, want.sport, want.dport)
            );
            assert_eq!((got.flags, got.direction), (want.flags, want.direction));
            assert_eq!(got.backend_id, local_backend);
            assert_eq!(u32::from(got.vip_id), local_vip.id);
            assert_eq!((got.ifindex, got.dmac, got.smac), (0, [0; 6], [0; 6]));
        }
        assert_ne!(u32::from(fe.vip_id), sender_vip.id);
        // Same age as on the master: 1 s and 0.5 s before "now".
        assert_eq!(
            (fe.last_seen_ns, re.last_seen_ns),
            (49_000_000_000, 49_500_000_000)
        );
    }

    #[test]
    fn records_the_backup_cannot_place_are_refused_by_reason() {
        let b = balancer(&["198.19.2.11"], Mode::Nat);
        let record = nat_records(
            flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1).into_iter(),
            Scan::Session,
            1,
            SendRule::default(),
        )[0];
        assert!(entries_for(&record, &b, 1).is_ok());
        let with = |f: &dyn Fn(&mut NatFlowRecord)| {
            let mut r = record;
            f(&mut r);
            entries_for(&r, &b, 1).unwrap_err()
        };
        assert_eq!(with(&|r| r.protocol = 1), Unknown::Protocol);
        assert_eq!(with(&|r| r.vip_port = 81), Unknown::Vip);
        assert_eq!(with(&|r| r.backend = ip("198.19.2.12")), Unknown::Backend);
        assert_eq!(with(&|r| r.backend_port = 8081), Unknown::BackendPort);
        assert_eq!(with(&|r| r.reply.key.dport = 1), Unknown::Inconsistent);
        assert_eq!(
            with(&|r| r.forward.key.dst = ip("198.18.0.101")),
            Unknown::Inconsistent
        );
        let dsr = balancer(&["198.19.2.11"], Mode::DsrL2);
        assert_eq!(entries_for(&record, &dsr, 1), Err(Unknown::NotNat));
    }

    #[test]
    fn a_carried_flow_leaves_another_flows_entry_and_merges_with_its_own() {
        let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
        // This lbd's program opened another flow on the same NAT port
        // towards the same backend: the same reply key.
        let theirs = flow("198.18.1.77", 51000, 20001, "198.19.2.11", 1);
        assert_eq!(ours[1].0, theirs[1].0);

        let mut table = Table::default();
        for (k, e) in theirs {
            table.entries.insert(k, e);
        }
        assert_eq!(
            carry_pair(&mut table, &ours, false).unwrap(),
            Carried::Conflict
        );
        assert_eq!(table.entries.len(), 2, "nothing of ours went in");
        assert_eq!(table.entries[&theirs[1].0], theirs[1].1, "theirs kept");

        // An empty table takes both; a second copy merges with them,
        // keeping the next hop this node found and the fresher entry.
        let mut table = Table::default();
        assert_eq!(carry_pair(&mut table, &ours, false).unwrap(), Carried::Yes);
        let mut looked_up = table.entries[&ours[0].0];
        looked_up.ifindex = 4;
        looked_up.mtu = 1400;
        looked_up.last_seen_ns = 99_000_000_000;
        table.entries.insert(ours[0].0, looked_up);
        let mut newer = ours;
        newer[0].1.flags |= NAT_F_REPLIED;
        newer[1].1.last_seen_ns = 100_000_000_000;
        newer[1].1.flags |= NAT_F_REPLIED;
        assert_eq!(carry_pair(&mut table, &newer, false).unwrap(), Carried::Yes);
        let fwd = table.entries[&ours[0].0];
        assert_eq!(
            (fwd.ifindex, fwd.mtu, fwd.last_seen_ns, fwd.flags),
            (4, 1400, 99_000_000_000, NAT_F_SYN),
            "this table's forward entry is the fresher one"
        );
        let reply = table.entries[&ours[1].0];
        assert_eq!(
            (reply.last_seen_ns, reply.flags & NAT_F_REPLIED),
            (100_000_000_000, NAT_F_REPLIED),
            "the carried reply entry is the fresher one"
        );
    }

    /// After the swap this lbd's program goes on marking the flows it
    /// carried; the old table does not. A FIN it marked survives the
    /// final copy, so the reaper frees the flow on the closed timeout
    /// (not the established one).
    #[test]
    fn a_carried_flow_keeps_the_close_marks_this_program_made_since() {
        let old = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
        let mut table = Table::default();
        for (key, entry) in old {
            let mut closed = entry;
            closed.flags |= NAT_F_FIN;
            closed.last_seen_ns = entry.last_seen_ns + 1_000_000;
            table.entries.insert(key, closed);
        }
        assert_eq!(carry_pair(&mut table, &old, false).unwrap(), Carried::Yes);
        for (key, _) in old {
            assert_ne!(table.entries[&key].flags & NAT_F_FIN, 0, "FIN kept");
        }
    }

    /// A flow the previous lbd's program forwarded after this lbd loaded
    /// wins, after the swap, over the flow this lbd's program opened on
    /// its NAT port meanwhile; both of that flow's entries go.
    #[test]
    fn a_carried_flow_forwarded_since_the_load_supersedes_this_programs_flow() {
        let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
        let theirs = flow("198.18.1.77", 51000, 20001, "198.19.2.11", 1);
        let mut table = Table::default();
        for (k, e) in theirs {
            table.entries.insert(k, e);
        }
        assert_eq!(
            carry_pair(&mut table, &ours, true).unwrap(),
            Carried::Superseded
        );
        assert_eq!(table.entries.len(), 2);
        for (key, entry) in ours {
            assert_eq!(table.entries[&key], entry);
        }
        assert!(!table.entries.contains_key(&theirs[0].0), "theirs gone");
    }

    #[test]
    fn a_merge_keeps_this_nodes_next_hop_and_route_mtu() {
        let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
        let existing = NatEntry {
            ifindex: 4,
            dmac: [2, 0, 0, 0, 0, 4],
            smac: [2, 0, 0, 0, 0, 5],
            mtu: 1400,
            last_seen_ns: 1_000,
            ..ours[0].1
        };
        // A fresher record (its next hop and MTU unset, as records carry).
        let record = NatEntry {
            last_seen_ns: 2_000,
            flags: ours[0].1.flags | NAT_F_REPLIED,
            ..ours[0].1
        };
        let got = merged(&existing, &record);
        assert_eq!(
            (got.ifindex, got.dmac, got.smac, got.mtu),
            (4, existing.dmac, existing.smac, 1400)
        );
        assert_eq!((got.last_seen_ns, got.flags), (2_000, record.flags));
    }

    /// A table whose data plane marks `key` RST and refreshes its next
    /// hop right after lbd's first read of it (between lbd's read and its
    /// write, as another CPU does).
    struct MarkedAfterRead {
        table: std::cell::RefCell<Table>,
        key: FlowKey,
        reads: std::cell::Cell<usize>,
    }

    impl ReplicaTable for MarkedAfterRead {
        fn get(&self, key: &FlowKey) -> Option<NatEntry> {
            let mut table = self.table.borrow_mut();
            let got = table.get(key);
            if *key == self.key {
                self.reads.set(self.reads.get() + 1);
                if self.reads.get() == 1 {
                    if let Some(live) = table.entries.get_mut(key) {
                        live.flags |= NAT_F_RST;
                        live.ifindex = 9;
                        live.mtu = 1400;
                    }
                }
            }
            got
        }
        fn insert_if_free(
            &mut self,
            key: &FlowKey,
            entry: &NatEntry,
        ) -> Result<bool, DataplaneError> {
            self.table.get_mut().insert_if_free(key, entry)
        }
        fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
            self.table.get_mut().overwrite(key, entry)
        }
        fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
            self.table.get_mut().remove(key)
        }
    }

    /// lbd merges a fresher copy into a flow this node forwards while the
    /// data plane marks it: the RST and the next hop the data plane wrote
    /// after lbd's read survive lbd's write.
    #[test]
    fn a_merge_keeps_what_the_data_plane_wrote_after_lbds_read() {
        let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
        let mut table = Table::default();
        table.entries.extend(ours);
        let mut fresher = ours;
        fresher[0].1.last_seen_ns = 10_000_000_000;
        fresher[0].1.flags |= NAT_F_REPLIED;
        let mut racing = MarkedAfterRead {
            table: std::cell::RefCell::new(table),
            key: ours[0].0,
            reads: std::cell::Cell::new(0),
        };
        assert_eq!(
            carry_pair(&mut racing, &fresher, false).unwrap(),
            Carried::Yes
        );
        let forward = racing.table.get_mut().entries[&ours[0].0];
        assert_eq!(
            forward.flags,
            NAT_F_SYN | NAT_F_REPLIED | NAT_F_RST,
            "the RST the data plane marked meanwhile is kept"
        );
        assert_eq!(
            (forward.ifindex, forward.mtu),
            (9, 1400),
            "its next hop too"
        );
        assert_eq!(forward.last_seen_ns, 10_000_000_000, "the merge's time");
    }

    /// A table whose `which`-th insert finds `taken` put in just before it
    /// (the data plane made a flow between look-up and write).
    struct Racing {
        table: Table,
        taken: Option<(FlowKey, NatEntry)>,
        which: usize,
        inserts: usize,
    }

    impl ReplicaTable for Racing {
        fn get(&self, key: &FlowKey) -> Option<NatEntry> {
            self.table.get(key)
        }
        fn insert_if_free(
            &mut self,
            key: &FlowKey,
            entry: &NatEntry,
        ) -> Result<bool, DataplaneError> {
            self.inserts += 1;
            if self.inserts == self.which {
                if let Some((k, e)) = self.taken.take() {
                    self.table.entries.insert(k, e);
                }
            }
            self.table.insert_if_free(key, entry)
        }
        fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
            self.table.overwrite(key, entry)
        }
        fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
            self.table.remove(key)
        }
    }

    #[test]
    fn a_key_taken_during_the_install_is_left_to_its_flow() {
        let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
        let theirs = flow("198.18.1.77", 51000, 20001, "198.19.2.11", 1);
        // The forward entry goes in, then the reply key turns out taken:
        // ours is taken out again, theirs stays.
        let mut racing = Racing {
            table: Table::default(),
            taken: Some(theirs[1]),
            which: 2,
            inserts: 0,
        };
        assert_eq!(
            carry_pair(&mut racing, &ours, false).unwrap(),
            Carried::Conflict
        );
        let entries = &racing.table.entries;
        assert!(!entries.contains_key(&ours[0].0), "our half taken out");
        assert_eq!(entries.get(&theirs[1].0), Some(&theirs[1].1));
        assert_eq!(entries.len(), 1);
    }
}
