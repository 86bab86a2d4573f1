//! The connection table as full-mesh replication writes it: a copy from a
//! peer never replaces an entry this node saw more recently, and copies
//! carry a mark in `last_seen_ns` so a node does not stream its peers'
//! flows back to them as if they were its own.
//!
//! Pure functions over a [`FlowTable`] (the real connection table, or a
//! map in tests); [`Replication`](super::Replication) drives them.

use lb_common::{FlowEntry, FlowKey};

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
}

impl FlowTable for Dataplane {
    fn get(&self, key: &FlowKey) -> Result<Option<FlowEntry>, DataplaneError> {
        self.flow(key)
    }

    fn put(&mut self, key: &FlowKey, entry: &FlowEntry) -> Result<(), DataplaneError> {
        self.install_flow(key, entry)
    }
}

/// What installing one peer's record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The entry is in (new, or it replaced an older one).
    Installed,
    /// This node's entry for the same backend was fresher: left as is.
    Stale,
    /// This node's entry was fresher and names another backend: this
    /// node forwards the flow there, so it stays (counted: two nodes
    /// picked different backends for one flow).
    KeptLocal,
}

/// Full mesh: installs `entry` unless the table holds a fresher entry
/// for `key` (its `last_seen_ns` later than the record's): a stale copy
/// from a peer must not move a flow this node is forwarding.
pub(crate) fn install_unless_fresher(
    table: &mut impl FlowTable,
    key: &FlowKey,
    entry: &FlowEntry,
) -> Result<Outcome, DataplaneError> {
    if let Some(local) = table.get(key)? {
        if local.last_seen_ns > entry.last_seen_ns {
            let same = (local.backend_id, local.backend_generation)
                == (entry.backend_id, entry.backend_generation);
            return Ok(if same {
                Outcome::Stale
            } else {
                Outcome::KeptLocal
            });
        }
    }
    table.put(key, entry)?;
    Ok(Outcome::Installed)
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
