//! One old table as a carry reads it: a bucket table in place, or a
//! copy of a hash map sorted by key, behind the same lookups.

use lb_common::{consts::NAT_DIR_FORWARD, nat::counterpart_key, FlowKey, NatEntry};

use super::Pair;
use crate::nat::table::{HeldAt, NatFlowTable};

/// One old table as a carry reads it.
pub(crate) enum Source<'a> {
    /// A bucket table, read in place: walked once, each counterpart
    /// looked up in the mapping, each flow read back at its install.
    Mapped(&'a NatFlowTable),
    /// A previous release's kernel hash map, copied (read with
    /// `map_batch`: a lookup through the bpf syscall per entry is far
    /// slower), sorted by key for lookups: 112 bytes an entry, the only
    /// copy made of it.
    Copied(Vec<(FlowKey, NatEntry)>),
}

impl Source<'_> {
    /// A hash map's `entries` (as read) as a source: sorted by key, a key
    /// read twice (the map changed under the read) kept once.
    pub(crate) fn copied(mut entries: Vec<(FlowKey, NatEntry)>) -> Self {
        entries.sort_unstable_by_key(|(key, _)| key_order(key));
        entries.dedup_by_key(|(key, _)| *key);
        Self::Copied(entries)
    }

    /// Every entry with where it is held.
    pub(super) fn entries(&self) -> Box<dyn Iterator<Item = (HeldAt, FlowKey, NatEntry)> + '_> {
        match self {
            Self::Mapped(table) => Box::new(table.iter_held()),
            Self::Copied(entries) => Box::new(
                entries
                    .iter()
                    .enumerate()
                    .filter_map(|(index, (key, entry))| Some((copied_at(index)?, *key, *entry))),
            ),
        }
    }

    /// `key`'s entry and where it is held, if held.
    pub(super) fn find(&self, key: &FlowKey) -> Option<(HeldAt, NatEntry)> {
        match self {
            Self::Mapped(table) => table.find_held(key),
            Self::Copied(entries) => {
                let index = entries
                    .binary_search_by_key(&key_order(key), |(key, _)| key_order(key))
                    .ok()?;
                Some((copied_at(index)?, entries[index].1))
            }
        }
    }

    /// The entry held at `at` now, if any.
    pub(super) fn read_at(&self, at: HeldAt) -> Option<(FlowKey, NatEntry)> {
        match self {
            Self::Mapped(table) => table.read_at(at),
            Self::Copied(entries) => entries.get(usize::try_from(at.bucket).ok()?).copied(),
        }
    }

    /// The flow of `forward` (a forward entry at `key`) with its reply
    /// entry looked up by key: None unless the reply names `key` back.
    pub(super) fn with_reply(&self, key: FlowKey, forward: NatEntry) -> Option<Pair> {
        if forward.direction != NAT_DIR_FORWARD {
            return None;
        }
        let reply_key = counterpart_key(&key, &forward);
        let (_, reply) = self.find(&reply_key)?;
        (reply.direction != NAT_DIR_FORWARD && counterpart_key(&reply_key, &reply) == key)
            .then_some([(key, forward), (reply_key, reply)])
    }

    /// The flow whose forward key is `key`, if this table holds it whole.
    pub(super) fn flow(&self, key: &FlowKey) -> Option<Pair> {
        let (_, forward) = self.find(key)?;
        self.with_reply(*key, forward)
    }
}

/// Where a copy holds its `index`th entry (its bucket; way 0).
fn copied_at(index: usize) -> Option<HeldAt> {
    Some(HeldAt {
        bucket: u32::try_from(index).ok()?,
        way: 0,
    })
}

/// `key`'s fields in an order to sort and search a copy by (`FlowKey`
/// has none of its own).
fn key_order(key: &FlowKey) -> ([u32; 4], [u32; 4], u16, u16, u8, u8) {
    (
        key.src, key.dst, key.sport, key.dport, key.proto, key.family,
    )
}
