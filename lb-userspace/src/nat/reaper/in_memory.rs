//! The flow table in memory that the reaper's tests walk: a `BTreeMap`
//! standing in for the kernel map, its cursor a key that removals do not
//! move.

use std::collections::BTreeMap;

use lb_common::{FlowKey, NatEntry};

use super::NatTable;

/// A flow table in memory, ordered by key (tests; a stand-in for the map:
/// the cursor is the first key of the next batch, and a removal of that
/// key does not move it, like a bucket's).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKeyOrd(pub FlowKey);

impl Ord for FlowKeyOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let k = |f: &FlowKey| (f.src, f.dst, f.sport, f.dport, f.proto, f.family);
        k(&self.0).cmp(&k(&other.0))
    }
}

impl PartialOrd for FlowKeyOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
