//! A rebuilt pair written into a table that may already hold entries at its
//! keys: merged with this node's entries of the same flow, kept off (or
//! over) another flow's, undone when half of it fails. The same rules
//! carry an older lbd's flows over on an upgrade (`carry_pair`).

use lb_common::{
    consts::{FLOW_TOUCH_INTERVAL_NS, NAT_F_FIN, NAT_F_RST},
    nat::counterpart_key,
    FlowKey, NatEntry,
};
use tracing::debug;

use super::{NatPair, ReplicaTable, SCAN_MARGIN_NS};
use crate::{daemon::replication::flow_table::ECHO_MARGIN_NS, dataplane::DataplaneError};

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
pub(in crate::daemon::replication) enum Over {
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
pub(super) fn merged(existing: &NatEntry, record: &NatEntry) -> NatEntry {
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
pub(in crate::daemon::replication) enum Placed {
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
pub(in crate::daemon::replication) fn install_pair_as(
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
