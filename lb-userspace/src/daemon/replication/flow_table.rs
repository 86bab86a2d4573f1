//! The connection table as full-mesh replication writes it: a copy from a
//! peer never replaces an entry this node saw more recently, and copies
//! carry a mark in `last_seen_ns` so a node does not stream its peers'
//! flows back to them as if they were its own.
//!
//! Pure functions over a [`FlowTable`] (the real connection table, or a
//! map in tests); [`Replication`](super::Replication) drives them.

use lb_common::{
    consts::{FLOW_F_HALF_OPEN, FLOW_F_STATE},
    FlowEntry, FlowKey,
};

use crate::dataplane::{Dataplane, DataplaneError};

/// The low bits of `last_seen_ns` that carry the replica mark.
const MARK_MASK: u64 = 0xffff;
/// Their value in an entry installed from a peer and not touched here
/// since (the data plane's next touch overwrites it with its clock).
const MARK: u64 = 0xa5a5;

/// `last_seen_ns` marked as a copy from a peer: moved by less than 66 µs,
/// nothing next to idle timeouts of seconds.
///
/// A node sends its *own* active flows on each tick: entries whose
/// `last_seen_ns` is recent and not marked. A copy installed from a peer
/// keeps the mark until this node forwards a packet of the flow (after at
/// most `FLOW_TOUCH_INTERVAL_NS` the data plane stamps its own time), so
/// each flow is streamed by the node that forwards it, not echoed by
/// every node that holds a copy (N² traffic). A locally stamped time that
/// happens to look marked (about 1 in 2^16, 1 in 256 for some kernel tick
/// lengths) is taken for a copy too: that flow is not streamed, neither
/// between dumps nor in the periodic dumps (which leave copies out, see
/// `records::sends`), until the data plane stamps it again (its next
/// packet after `FLOW_TOUCH_INTERVAL_NS`) or a peer's new session asks
/// for a dump of every entry, marked or not. A flow that goes idle right
/// after such a stamp reaches no peer meanwhile: a node that takes it
/// over then sends it to Maglev's pick, as for a flow opened just before
/// the failover.
pub(crate) fn mark_replica(last_seen_ns: u64) -> u64 {
    (last_seen_ns & !MARK_MASK) | MARK
}

/// Whether `last_seen_ns` carries the replica mark (see [`mark_replica`]).
pub(crate) fn is_replica(last_seen_ns: u64) -> bool {
    last_seen_ns & MARK_MASK == MARK
}

/// The connection table as replication uses it.
pub(crate) trait FlowTable {
    /// The entry under `key`, if any.
    fn get(&self, key: &FlowKey) -> Result<Option<FlowEntry>, DataplaneError>;
    /// Puts `entry` in, replacing what is there.
    fn put(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), DataplaneError>;
    /// Puts `entry` in unless `keep` holds of the entry there; the entry
    /// kept, or None once `entry` is in. A table that can judges in the
    /// write, on the entry it would replace (`conntrack::table::
    /// FlowTable::install_unless`), so no refresh or miss between a
    /// lookup and the write lets a stale copy replace a fresher entry;
    /// by default a lookup, then `put`.
    fn put_unless(
        &mut self,
        key: &FlowKey,
        entry: &FlowEntry,
        keep: &mut dyn FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>, DataplaneError> {
        if let Some(held) = self.get(key)? {
            if keep(&held) {
                return Ok(Some(held));
            }
        }
        self.put(key, entry)?;
        Ok(None)
    }
}

impl FlowTable for Dataplane {
    fn get(&self, key: &FlowKey) -> Result<Option<FlowEntry>, DataplaneError> {
        self.flow(key)
    }

    fn put(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), DataplaneError> {
        self.install_flow(key, entry)
    }

    fn put_unless(
        &mut self,
        key: &FlowKey,
        entry: &FlowEntry,
        keep: &mut dyn FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>, DataplaneError> {
        self.install_flow_unless(key, entry, keep)
    }
}

/// What installing one peer's record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The entry is in (new, or it replaced an older one).
    Installed,
    /// This node's entry for the same backend was fresher (for a mesh
    /// copy: or at most `ECHO_MARGIN_NS` older): left as is.
    Stale,
    /// This node's entry was fresher and names another backend: this
    /// node forwards the flow there, so it stays (counted: two nodes
    /// picked different backends for one flow).
    KeptLocal,
}

/// How much fresher than this node's entry of a flow a full-mesh copy
/// naming the same backend must look to replace it. Why: a copy of this
/// node's own idle flow comes back from a peer's dump for a new session
/// (an echo) a few ms "fresher" than the entry it was made from (ages are
/// floored to milliseconds at each send and the receiver stamps after
/// transit); replacing the entry would mark this node's own flow as a
/// copy, which no periodic dump of any node then carries. A peer that
/// really forwards the flow now stamps it at least this much later soon
/// (every `FLOW_TOUCH_INTERVAL_NS`), and until then both nodes send it to
/// the same backend.
pub(crate) const ECHO_MARGIN_NS: u64 = 50_000_000;

/// Full mesh: installs `entry` unless the table holds a fresher entry
/// for `key` (its `last_seen_ns` later than the record's): a stale copy
/// from a peer must not move a flow this node is forwarding.
pub(crate) fn install_unless_fresher(
    table: &mut impl FlowTable,
    key: &FlowKey,
    entry: &FlowEntry,
) -> Result<Outcome, DataplaneError> {
    install_unless_within(table, key, entry, 0)
}

/// Full mesh: installs a peer's `copy` as [`install_unless_fresher`]
/// does, except that this node's entry of the same backend also stays
/// when the copy is at most [`ECHO_MARGIN_NS`] fresher and brings no
/// state (FIN, RST, or the end of a handshake) it lacks: an echo of this
/// node's own flow never turns it into a copy.
pub(crate) fn install_copy(
    table: &mut impl FlowTable,
    key: &FlowKey,
    copy: &FlowEntry,
) -> Result<Outcome, DataplaneError> {
    install_unless_within(table, key, copy, ECHO_MARGIN_NS)
}

/// Whether `local` stands against `entry`: fresher, or (`margin` > 0)
/// the same backend, at most `margin` older and holding every state mark
/// `entry` carries.
fn keeps(local: &FlowEntry, entry: &FlowEntry, margin: u64) -> bool {
    if local.last_seen_ns > entry.last_seen_ns {
        return true;
    }
    margin > 0
        && (local.backend_id, local.backend_generation)
            == (entry.backend_id, entry.backend_generation)
        && entry.last_seen_ns - local.last_seen_ns <= margin
        && local.flags & FLOW_F_HALF_OPEN == 0
        && entry.flags & FLOW_F_STATE & !local.flags == 0
}

/// [`install_unless_fresher`] with a `margin` (see [`keeps`]).
fn install_unless_within(
    table: &mut impl FlowTable,
    key: &FlowKey,
    entry: &FlowEntry,
    margin: u64,
) -> Result<Outcome, DataplaneError> {
    // Judged in the write (`FlowTable::put_unless`): a lookup before it
    // could miss the flow (its way held for a moment) or read it before a
    // refresh, and the write would then replace a fresher entry.
    let fresher = &mut |local: &FlowEntry| keeps(local, entry, margin);
    Ok(match table.put_unless(key, entry, fresher)? {
        None => Outcome::Installed,
        Some(local)
            if (local.backend_id, local.backend_generation)
                == (entry.backend_id, entry.backend_generation) =>
        {
            Outcome::Stale
        }
        Some(_) => Outcome::KeptLocal,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A connection table in memory.
    #[derive(Debug, Default)]
    pub(crate) struct Table(pub(crate) HashMap<FlowKey, FlowEntry>);

    impl FlowTable for Table {
        fn get(&self, key: &FlowKey) -> Result<Option<FlowEntry>, DataplaneError> {
            Ok(self.0.get(key).copied())
        }

        fn put(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), DataplaneError> {
            self.0.insert(*key, *entry);
            Ok(())
        }
    }

    /// A table whose lookups miss every flow (as a lookup racing the data
    /// plane's refresh of a flow's way did) while its writes judge the
    /// entry they replace, as the connection table's do.
    #[derive(Debug, Default)]
    struct Missing(Table);

    impl FlowTable for Missing {
        fn get(&self, _: &FlowKey) -> Result<Option<FlowEntry>, DataplaneError> {
            Ok(None)
        }

        fn put(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), DataplaneError> {
            self.0.put(key, entry)
        }

        fn put_unless(
            &mut self,
            key: &FlowKey,
            entry: &FlowEntry,
            keep: &mut dyn FnMut(&FlowEntry) -> bool,
        ) -> Result<Option<FlowEntry>, DataplaneError> {
            self.0.put_unless(key, entry, keep)
        }
    }

    /// A fresher local entry is never replaced by a peer's older copy,
    /// even when a lookup of it misses: the freshness test is made in the
    /// write. (Made on a lookup before the write, a miss there let the
    /// write replace the local entry: a live connection moved to the
    /// peer's backend.)
    #[test]
    fn a_fresher_local_entry_is_kept_even_when_a_lookup_of_it_misses() {
        let key = FlowKey {
            sport: 40_000,
            dport: 80,
            proto: 6,
            ..FlowKey::default()
        };
        let local = FlowEntry {
            backend_id: 1,
            last_seen_ns: 20_000_000_000,
            ..FlowEntry::default()
        };
        let peer = FlowEntry {
            backend_id: 2,
            last_seen_ns: mark_replica(10_000_000_000),
            ..local
        };
        let mut table = Missing::default();
        table.0 .0.insert(key, local);
        let outcome = install_unless_fresher(&mut table, &key, &peer).expect("no error");
        assert_eq!(outcome, Outcome::KeptLocal);
        assert_eq!(table.0 .0.get(&key), Some(&local), "the local entry stays");
        // The same backend: stale, still kept.
        let same = FlowEntry {
            backend_id: 1,
            ..peer
        };
        let outcome = install_unless_fresher(&mut table, &key, &same).expect("no error");
        assert_eq!(outcome, Outcome::Stale);
        assert_eq!(table.0 .0.get(&key), Some(&local));
        // A newer copy goes in.
        let newer = FlowEntry {
            last_seen_ns: mark_replica(30_000_000_000),
            ..peer
        };
        let outcome = install_unless_fresher(&mut table, &key, &newer).expect("no error");
        assert_eq!(outcome, Outcome::Installed);
        assert_eq!(table.0 .0.get(&key), Some(&newer));
    }

    #[test]
    fn the_mark_moves_little_and_is_recognised() {
        for t in [0, 1, 0xffff, 0x1_0000, 123_456_789_012, u64::MAX] {
            let marked = mark_replica(t);
            assert!(is_replica(marked));
            assert!(marked.abs_diff(t) <= MARK_MASK, "{t} -> {marked}");
            assert_eq!(mark_replica(marked), marked);
        }
        assert!(!is_replica(1_000_000_000));
    }
}
