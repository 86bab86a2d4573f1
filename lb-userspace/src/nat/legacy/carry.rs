//! The order a carry installs the old tables' flows in: one small
//! placement per flow, the freshest first, a flow several tables hold
//! taken from the table that saw it last; each pair read back when
//! installed.

use std::{cmp::Reverse, mem::size_of};

use lb_common::consts::NAT_DIR_FORWARD;
use tracing::warn;

use super::{last_seen, source::Source, Pair};
use crate::nat::table::HeldAt;

/// Bytes a carry holds per flow of a mapped table (`Placement`): its
/// order. At the largest `[nat] flow_table_size` (16 M entries, 8 M
/// flows) that is 128 MiB, where the copies it replaced (maps of every
/// entry, a list of pairs, a map of pairs) took several GiB beside the
/// kernel tables, enough to have lbd killed mid-restart.
pub(crate) const PLACEMENT_BYTES: usize = 16;

/// A flow to carry over, by where its forward entry is held, and its
/// place in the order: the most recently seen first (`install_pair`
/// leaves out a flow whose key another flow already holds: where a stale
/// table's flow and a live one's claim one NAT port, the live one, seen
/// since, goes in). `PLACEMENT_BYTES` bytes: the order is all a carry
/// holds of a mapped table; the pair is read back when installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Placement {
    /// When the flow was last seen (`last_seen`), the latest first.
    newest_first: Reverse<u64>,
    /// Its table's index in `Carry::sources`.
    table: u8,
    /// Its forward entry's bucket (a copy's index).
    bucket: u32,
    /// Its forward entry's way.
    way: u8,
}

/// The order's size per flow is what the carry promises (checked at
/// build time, and in the tests).
const _: () = assert!(size_of::<Placement>() == PLACEMENT_BYTES);

/// The old tables' flows to install, in order, and how many entries had
/// no counterpart (half a flow: the reaper would have freed it; left
/// behind). A flow (its forward key) two tables hold is carried as the
/// table that saw it more recently holds it (the first table's on a tie),
/// found by looking its forward key up in the other tables, not by
/// gathering the tables in a map.
pub(crate) struct Carry<'a> {
    /// The tables, as read.
    sources: Vec<Source<'a>>,
    /// The flows, the most recently seen first.
    order: Vec<Placement>,
    /// Entries left without a counterpart, summed over the tables.
    unpaired: u64,
}

impl<'a> Carry<'a> {
    /// Walks `sources` once each, noting each whole flow once, and sorts
    /// the places. A flow several tables hold is decided by the walk of
    /// the first of them (`freshest_place`): the place of the freshest
    /// copy at that moment, the first table's on a tie, as the merge
    /// through a map kept it. Decided once, it is noted once even while
    /// a table still written (before the swap) changes under the walks.
    pub(crate) fn new(sources: Vec<Source<'a>>) -> Self {
        let mut order = Vec::new();
        let mut unpaired = 0u64;
        for (index, source) in sources.iter().enumerate() {
            let Ok(table) = u8::try_from(index) else {
                warn!(
                    tables = sources.len(),
                    "more previous NAT flow tables than a carry orders: the rest are not carried over"
                );
                break;
            };
            let (mut entries, mut paired) = (0u64, 0u64);
            for (at, key, entry) in source.entries() {
                entries += 1;
                // The reply entries are found from their forward's; a key
                // read twice is taken where a lookup finds it.
                if entry.direction != NAT_DIR_FORWARD
                    || source.find(&key).map(|(found, _)| found) != Some(at)
                {
                    continue;
                }
                let Some(pair) = source.with_reply(key, entry) else {
                    continue;
                };
                paired += 1;
                if let Some(placement) = freshest_place(&sources, (table, at), &pair) {
                    order.push(placement);
                }
            }
            unpaired += entries.saturating_sub(2 * paired);
        }
        order.sort_unstable();
        Self {
            sources,
            order,
            unpaired,
        }
    }

    /// The flows to install, the most recently seen first.
    pub(crate) fn order(&self) -> &[Placement] {
        &self.order
    }

    /// How many flows there are to install.
    pub(crate) fn flows(&self) -> usize {
        self.order.len()
    }

    /// Entries the tables held without a counterpart.
    pub(crate) fn unpaired(&self) -> u64 {
        self.unpaired
    }

    /// `placement`'s flow as its table holds it now, both entries; None
    /// if its forward entry is no longer a whole flow's there (a way
    /// stays its entry's until lbd removes it, and none removes from an
    /// old table: not expected).
    pub(crate) fn pair(&self, placement: &Placement) -> Option<Pair> {
        let source = self.sources.get(usize::from(placement.table))?;
        let (key, forward) = source.read_at(HeldAt {
            bucket: placement.bucket,
            way: placement.way,
        })?;
        source.with_reply(key, forward)
    }
}

/// Where to carry `pair` from, found whole in table `table` at `at`:
/// None when a table before it holds the flow whole (that table's walk
/// decided it); else the place of the freshest whole copy among this
/// table and those after it (this one's on a tie, and a table before
/// another's on theirs).
fn freshest_place(
    sources: &[Source<'_>],
    (table, at): (u8, HeldAt),
    pair: &Pair,
) -> Option<Placement> {
    let key = &pair[0].0;
    let index = usize::from(table);
    if sources[..index]
        .iter()
        .any(|earlier| earlier.flow(key).is_some())
    {
        return None;
    }
    let mut best = (last_seen(pair), table, at);
    for (later, source) in sources.iter().enumerate().skip(index + 1) {
        let Ok(later) = u8::try_from(later) else {
            break;
        };
        let Some((held_at, forward)) = source.find(key) else {
            continue;
        };
        let Some(held) = source.with_reply(*key, forward) else {
            continue;
        };
        if last_seen(&held) > best.0 {
            best = (last_seen(&held), later, held_at);
        }
    }
    let (seen, table, at) = best;
    Some(Placement {
        newest_first: Reverse(seen),
        table,
        bucket: at.bucket,
        way: at.way,
    })
}
