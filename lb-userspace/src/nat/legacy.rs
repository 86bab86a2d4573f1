//! Carrying NAT'd flows over from a table this lbd cannot adopt as it is,
//! so established NAT'd connections keep their source ports and backends
//! across the restart; a flow lost here would be dropped (a TCP packet
//! other than a SYN finds no translation). Two such tables:
//! - a kernel hash map (`NAT_FLOWS`) that a previous release (before
//!   `NAT_BUCKETS`) kept its flows in;
//! - a bucket table (`NAT_BUCKETS`) of another size: `[nat]
//!   flow_table_size` changed, which takes effect at a restart. Its pin is
//!   moved aside (`NAT_BUCKETS_RESIZED`) so this lbd pins its own table
//!   of the new size under the name.
//!
//! The old map is opened from its pin; the old program keeps running on
//! it until the new one is swapped in on the link, and the pin is removed
//! only then (`finish`): an lbd that stops or fails between its load and
//! the swap leaves it for the next one, which carries the flows over
//! again (the new object has no map of that name, so the pin can wait).
//! Both entries of each flow are installed
//! together, by the rule a peer's replicated flows follow
//! (`install_pair`: a key another flow holds keeps its entry and the flow
//! is left out, a key holding this same flow is refreshed), twice: right
//! after the load (the bulk, into the empty table) and after the swap
//! (what the old program added or marked meanwhile; it no longer runs, so
//! the map is final). Carried only when the state maps (VIPs, backends,
//! NAT sources) are adopted too: the entries name their VIP and backend by
//! those ids. The load decides that first (`pending`); without the state
//! adopted nothing is moved, and the old tables' pins stay as they are
//! until the new program runs, then go with the state they belong to
//! (`PinDir::promote_staged`). A table set aside of another layout than
//! this release's buckets is refused and its pin removed (it would be
//! read at the wrong stride).
//!
//! Both may be there at once: an upgrade from the hash-map release that
//! stopped before its swap left `NAT_FLOWS` (still written by the old
//! program on the link) and its own bucket table, and this lbd's
//! `flow_table_size` differs from that one's. Both are carried over, a
//! flow both hold as the table that saw it more recently holds it, the
//! most recently seen flows first (a key two flows claim goes to the one
//! installed first: the live one), and both pins go after the swap.
//!
//! So may two bucket tables: a resize that stopped after its load left
//! the table it set aside (`NAT_BUCKETS_RESIZED`) and its own, pinned
//! (which its program writes if it got to its swap), and this lbd's size
//! is a third one. The pinned one is set aside too
//! (`NAT_BUCKETS_RESIZED_AGAIN`), both are carried over as above, and
//! both pins go after the swap; a third table of another size on top of
//! those two refuses the load, as the connection table's does
//! (`conntrack::legacy`).

use std::{
    cmp::Reverse,
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, MapInfo, MapType};
use lb_common::{
    consts::{names, NAT_DIR_FORWARD},
    nat::{counterpart_key, NatBucket},
    FlowKey, NatEntry,
};
use tracing::{info, warn};

use super::table::{HeldAt, NatFlowTable};
use crate::{
    conntrack::legacy::{Refused, Resized, TableNames},
    pinning::PinDir,
};

/// The NAT flow table's names, for its resize's messages.
const NAT_TABLE: TableNames = TableNames {
    what: "NAT flow table",
    setting: "[nat] flow_table_size",
    holds: "the NAT'd connections",
    lost: "its NAT'd connections are lost",
};

/// The name a resized bucket table's pin is moved to while its flows are
/// carried over (bpffs refuses names with a dot).
pub const RESIZED_PIN: &str = "NAT_BUCKETS_RESIZED";

/// The name the pinned bucket table of another size is moved to when a
/// table set aside by an earlier resize still waits under `RESIZED_PIN`:
/// the later of the two.
pub const RESIZED_AGAIN_PIN: &str = "NAT_BUCKETS_RESIZED_AGAIN";

/// The old tables, open, while their flows are carried over.
pub(crate) struct LegacyNat {
    /// Each old table and its pin, removed by `finish`.
    tables: Vec<(OldTable, PathBuf)>,
    /// CLOCK_MONOTONIC ns when this lbd opened the old tables, less the
    /// lag of the data plane's coarse clock: a flow last seen since was
    /// forwarded by the old program while this lbd loaded, and after the
    /// swap its copy wins over a flow the new program opened on its NAT
    /// port (`dataplane::adopt`).
    pub(crate) loaded_ns: u64,
}

/// Where the old flows are read from.
enum OldTable {
    /// A previous release's kernel hash map (`NAT_FLOWS`).
    Hash(HashMap<MapData, FlowKey, NatEntry>),
    /// A bucket table of another size.
    Buckets(NatFlowTable),
}

/// Both entries of a flow (forward, then reply), as `install_pair` takes
/// them.
pub(crate) type Pair = [(FlowKey, NatEntry); 2];

impl LegacyNat {
    /// Opens the NAT flow tables a previous lbd pinned under `pins` that
    /// this one, whose bucket table has `buckets` buckets, cannot adopt as
    /// they are: bucket tables moved aside by an lbd that did not get to
    /// its `finish`, or of another size (moved aside now,
    /// `open_resized`), and a kernel hash map (`open_hash`), all that are
    /// there. Their pins stay until `finish`. None when there is none (a
    /// fresh start, or a table this lbd adopts); a pin that cannot be
    /// carried over (another layout, or unreadable) is removed. `Refused`,
    /// having moved nothing, when a third bucket table of another size
    /// would have to be set aside.
    pub(crate) fn open(pins: &PinDir, buckets: u32) -> Result<Option<Self>, Refused> {
        let loaded_ns = crate::clock::monotonic_ns()
            .saturating_sub(crate::daemon::replication::nat::SCAN_MARGIN_NS);
        let mut tables = Self::open_resized(pins, buckets)?;
        tables.extend(Self::open_hash(pins));
        Ok((!tables.is_empty()).then_some(Self { tables, loaded_ns }))
    }

    /// Whether `open` would find a table to carry flows over from, told
    /// without moving or removing anything (a load decides with it which
    /// pins it adopts before it moves any): a bucket table set aside, or
    /// pinned with another size than `buckets`, or a hash map.
    pub(crate) fn pending(pins: &PinDir, buckets: u32) -> bool {
        let resized = MapInfo::from_pin(pins.map_path(names::MAP_NAT_BUCKETS))
            .is_ok_and(|info| is_bucket_table(&info) && info.max_entries() != buckets);
        resized
            || pins.map_path(RESIZED_PIN).exists()
            || pins.map_path(RESIZED_AGAIN_PIN).exists()
            || pins.map_path(names::MAP_NAT_FLOWS).exists()
    }

    /// The bucket tables of sizes other than `buckets`, the most recently
    /// pinned under `NAT_BUCKETS` first: the pinned one if it has another
    /// size (moved aside now), and those an earlier resize moved aside and
    /// did not get to remove (see the module's notes). The pinned one goes
    /// to `RESIZED_PIN`, or to `RESIZED_AGAIN_PIN` when a table waits
    /// there: neither is thrown away, whichever a program still writes.
    /// `Refused`, before anything is moved, when both names are taken.
    fn open_resized(pins: &PinDir, buckets: u32) -> Result<Vec<(OldTable, PathBuf)>, Refused> {
        let aside = pins.map_path(RESIZED_PIN);
        let again = pins.map_path(RESIZED_AGAIN_PIN);
        let current = pins.map_path(names::MAP_NAT_BUCKETS);
        let pinned = MapInfo::from_pin(&current)
            .ok()
            .filter(|info| is_bucket_table(info) && info.max_entries() != buckets);
        if let Some(info) = pinned {
            let pins = Resized {
                current: &current,
                aside: &aside,
                again: &again,
            };
            pins.set_aside(&NAT_TABLE, info.max_entries(), buckets)?;
        }
        Ok([again, aside]
            .into_iter()
            .filter(|path| path.exists())
            .filter_map(Self::open_buckets)
            .collect())
    }

    /// A bucket table pinned at `path` (moved aside); one that cannot be
    /// opened, or of another layout, is refused and its pin removed.
    fn open_buckets(path: PathBuf) -> Option<(OldTable, PathBuf)> {
        let opened = MapInfo::from_pin(&path)
            .map_err(|e| e.to_string())
            .and_then(|info| {
                // Checked as the pinned table is: one of another layout
                // (an lbd of another release set it aside) would be read
                // at the wrong stride.
                if !is_bucket_table(&info) {
                    return Err(format!(
                        "not a NAT flow table of this release's layout (type {:?}, key {} bytes, value {} bytes)",
                        info.map_type(),
                        info.key_size(),
                        info.value_size()
                    ));
                }
                let data = MapData::from_pin(&path).map_err(|e| e.to_string())?;
                NatFlowTable::new(data, info.max_entries()).map_err(|e| e.to_string())
            });
        match opened {
            Ok(table) => Some((OldTable::Buckets(table), path)),
            Err(error) => {
                warn!(path = %path.display(), %error, "could not open the previous NAT flow table: its NAT'd connections are lost");
                remove_pin(&path);
                None
            }
        }
    }

    /// A previous release's hash map (`NAT_FLOWS`), if pinned.
    fn open_hash(pins: &PinDir) -> Option<(OldTable, PathBuf)> {
        let path = pins.map_path(names::MAP_NAT_FLOWS);
        let info = MapInfo::from_pin(&path).ok()?;
        if !matches!(info.map_type(), Ok(MapType::Hash))
            || info.key_size() as usize != size_of::<FlowKey>()
            || info.value_size() as usize != size_of::<NatEntry>()
        {
            warn!(path = %path.display(), "a pinned NAT flow table of another layout: not carried over");
            remove_pin(&path);
            return None;
        }
        let opened = MapData::from_pin(&path)
            .map_err(|e| e.to_string())
            .and_then(|data| HashMap::try_from(Map::HashMap(data)).map_err(|e| e.to_string()));
        match opened {
            Ok(map) => {
                info!(path = %path.display(), "carrying the previous lbd's NAT flow table (hash map) over into the bucket table");
                Some((OldTable::Hash(map), path))
            }
            Err(error) => {
                warn!(path = %path.display(), %error, "could not open the previous lbd's NAT flow table: its NAT'd connections are lost");
                remove_pin(&path);
                None
            }
        }
    }

    /// Done with the old table (its flows carried over after the swap, or
    /// not to be carried at all): its pin goes, so a later lbd does not
    /// carry stale flows over again.
    pub(crate) fn finish(self) {
        for (_, pin) in &self.tables {
            remove_pin(pin);
        }
    }

    /// The old tables' flows as they are now, to install the freshest
    /// first (see `Carry`): each bucket table read in place, a hash map
    /// read into a copy (`Source`).
    pub(crate) fn carry(&self) -> Carry<'_> {
        let sources = self
            .tables
            .iter()
            .map(|(table, _)| match table {
                OldTable::Buckets(table) => Source::Mapped(table),
                OldTable::Hash(map) => Source::copied(crate::map_batch::lookup_all(map.map()).unwrap_or_else(|error| {
                    warn!(%error, "reading the previous lbd's NAT flow table in batches failed: walking it entry by entry");
                    map.iter().filter_map(Result::ok).collect()
                })),
            })
            .collect();
        Carry::new(sources)
    }
}

/// Whether `info` is a NAT bucket table of this release's layout (an
/// array of `NatBucket`s keyed by `u32`).
fn is_bucket_table(info: &MapInfo) -> bool {
    matches!(info.map_type(), Ok(MapType::Array))
        && info.key_size() as usize == size_of::<u32>()
        && info.value_size() as usize == size_of::<NatBucket>()
}

/// When a pair's entries were last seen (the later of the two).
pub(crate) fn last_seen(pair: &Pair) -> u64 {
    pair[0].1.last_seen_ns.max(pair[1].1.last_seen_ns)
}

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
    fn entries(&self) -> Box<dyn Iterator<Item = (HeldAt, FlowKey, NatEntry)> + '_> {
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
    fn find(&self, key: &FlowKey) -> Option<(HeldAt, NatEntry)> {
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
    fn read_at(&self, at: HeldAt) -> Option<(FlowKey, NatEntry)> {
        match self {
            Self::Mapped(table) => table.read_at(at),
            Self::Copied(entries) => entries.get(usize::try_from(at.bucket).ok()?).copied(),
        }
    }

    /// The flow of `forward` (a forward entry at `key`) with its reply
    /// entry looked up by key: None unless the reply names `key` back.
    fn with_reply(&self, key: FlowKey, forward: NatEntry) -> Option<Pair> {
        if forward.direction != NAT_DIR_FORWARD {
            return None;
        }
        let reply_key = counterpart_key(&key, &forward);
        let (_, reply) = self.find(&reply_key)?;
        (reply.direction != NAT_DIR_FORWARD && counterpart_key(&reply_key, &reply) == key)
            .then_some([(key, forward), (reply_key, reply)])
    }

    /// The flow whose forward key is `key`, if this table holds it whole.
    fn flow(&self, key: &FlowKey) -> Option<Pair> {
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

fn remove_pin(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        warn!(path = %path.display(), %error, "could not remove the previous lbd's NAT flow table pin");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as StdHashMap;

    use lb_common::consts::NAT_DIR_REPLY;

    use super::*;

    fn key(n: u32) -> FlowKey {
        FlowKey {
            src: [n, 0, 0, 0],
            dst: [100, 0, 0, 0],
            sport: 1000,
            dport: 80,
            proto: 6,
            family: 4,
            _pad: 0,
        }
    }

    /// Both entries of client `n`'s flow through NAT port `port`.
    fn flow(n: u32, port: u16) -> Pair {
        let fk = key(n);
        let fe = NatEntry {
            src: [50, 0, 0, 0],
            dst: [11, 0, 0, 0],
            sport: port,
            dport: 8080,
            direction: NAT_DIR_FORWARD,
            ..NatEntry::default()
        };
        let rk = counterpart_key(&fk, &fe);
        let re = NatEntry {
            src: fk.dst,
            dst: fk.src,
            sport: fk.dport,
            dport: fk.sport,
            direction: NAT_DIR_REPLY,
            ..NatEntry::default()
        };
        [(fk, fe), (rk, re)]
    }

    /// A NAT flow table set aside (`RESIZED_PIN`) whose buckets are not
    /// this release's (an lbd of another release set it aside) is not
    /// read at the wrong stride: refused, its pin removed at once, as the
    /// connection table's is. One of this release's layout is opened.
    #[test]
    fn a_nat_table_set_aside_in_another_layout_is_not_carried_over() {
        use crate::pinning::test_support::{pin_map, TestBpffs};
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        const BPF_F_MMAPABLE: u32 = 0x400;
        let Some(bpffs) = TestBpffs::new("nat-aside") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let aside = pins.map_path(RESIZED_PIN);
        let bucket = size_of::<NatBucket>() as u32;
        for (value, carried) in [(bucket + 64, false), (bucket, true)] {
            let map = pin_map(&aside, BPF_MAP_TYPE_ARRAY, (4, value), 64, BPF_F_MMAPABLE);
            let opened = LegacyNat::open(&pins, 128).expect("not refused");
            assert_eq!(opened.is_some(), carried, "value of {value} bytes");
            assert_eq!(aside.exists(), carried, "value of {value} bytes");
            drop(opened);
            drop(map);
            let _ = std::fs::remove_file(&aside);
        }
    }

    /// A NAT bucket table of `buckets` buckets pinned at `path`, as lbd's
    /// program makes it, mapped.
    fn nat_table(path: &Path, buckets: u32) -> NatFlowTable {
        use crate::pinning::test_support::pin_map;
        let value = size_of::<NatBucket>() as u32;
        let map = pin_map(path, 2, (4, value), buckets, 0x400);
        NatFlowTable::new(map, buckets).expect("mapped")
    }

    fn id_at(path: &Path) -> Option<u32> {
        MapInfo::from_pin(path).ok().map(|info| info.id())
    }

    /// `[nat] flow_table_size` changed twice, the first change's lbd
    /// stopped after its swap and before its `finish`: the pinned table
    /// (the one its program wrote, flows opened since only there) is set
    /// aside too rather than left to the load to remove, and both are
    /// carried over; a third table of another size refuses the load and
    /// moves nothing.
    #[test]
    fn a_second_resize_before_the_first_finished_carries_both_nat_tables() {
        use crate::pinning::test_support::TestBpffs;
        let Some(bpffs) = TestBpffs::new("nat-resized-twice") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let aside = pins.map_path(RESIZED_PIN);
        let again = pins.map_path(RESIZED_AGAIN_PIN);
        let pinned = pins.map_path(names::MAP_NAT_BUCKETS);
        let first = nat_table(&aside, 64);
        let second = nat_table(&pinned, 128);
        let (first_id, second_id) = (id_at(&aside), id_at(&pinned));
        for (table, n, port) in [(&first, 1, 2000), (&second, 2, 2001)] {
            for (key, entry) in flow(n, port) {
                table.install(&key, &entry).expect("installed");
            }
        }
        assert!(LegacyNat::pending(&pins, 256));
        let legacy = LegacyNat::open(&pins, 256)
            .expect("not refused")
            .expect("tables to carry over");
        assert!(!pinned.exists(), "the pinned table is set aside");
        assert_eq!(id_at(&aside), first_id);
        assert_eq!(id_at(&again), second_id);
        let (pairs, unpaired) = carried(&legacy.carry());
        let mut clients: Vec<u32> = pairs.iter().map(|pair| pair[0].0.src[0]).collect();
        clients.sort_unstable();
        assert_eq!((clients, unpaired), (vec![1, 2], 0));
        drop(legacy);
        // A third table, of yet another size, pinned by a start that
        // stopped the same way: refused, every pin left as it was.
        let third = nat_table(&pinned, 512);
        let ids = [&aside, &again, &pinned].map(|path| id_at(path));
        let Err(refused) = LegacyNat::open(&pins, 256) else {
            panic!("refused");
        };
        assert!(
            refused.0.contains("flow_table_size = 2048"),
            "the size that adopts the pinned table: {refused}"
        );
        assert_eq!([&aside, &again, &pinned].map(|path| id_at(path)), ids);
        // At the pinned table's size: adopted, both set aside carried,
        // and gone after the swap.
        let legacy = LegacyNat::open(&pins, 512)
            .expect("not refused")
            .expect("tables to carry over");
        assert_eq!(legacy.tables.len(), 2);
        legacy.finish();
        assert!(!aside.exists() && !again.exists());
        assert_eq!(id_at(&pinned), ids[2]);
        drop((first, second, third));
    }

    /// The pairs a carry installs, in its order, each read back from
    /// its table, and the halves it counted.
    fn carried(carry: &Carry<'_>) -> (Vec<Pair>, u64) {
        let pairs = carry
            .order()
            .iter()
            .map(|placement| carry.pair(placement).expect("still held"))
            .collect();
        (pairs, carry.unpaired())
    }

    /// A kernel hash map's flows as the carry reads them (a copy).
    fn copied(pairs: &[Pair]) -> Source<'static> {
        Source::copied(pairs.iter().flatten().copied().collect())
    }

    /// The flows of tables given as their pairs, merged.
    fn merge(tables: Vec<Vec<Pair>>) -> Vec<Pair> {
        let carry = Carry::new(tables.iter().map(|pairs| copied(pairs)).collect());
        carried(&carry).0
    }

    /// `entries` (one table's) as pairs, and the count of halves.
    fn pair_up(entries: Vec<(FlowKey, NatEntry)>) -> (Vec<Pair>, u64) {
        carried(&Carry::new(vec![Source::copied(entries)]))
    }

    /// What the carry made before it read the tables in place (each
    /// copied into a map, paired, merged through another map): the
    /// reference the in-place carry must agree with.
    fn copying_carry(tables: Vec<Vec<(FlowKey, NatEntry)>>) -> (Vec<Pair>, u64) {
        let mut unpaired = 0;
        let mut flows: StdHashMap<FlowKey, Pair> = StdHashMap::new();
        for entries in tables {
            let total = entries.len() as u64;
            let table: StdHashMap<FlowKey, NatEntry> = entries.into_iter().collect();
            let pairs: Vec<Pair> = table
                .iter()
                .filter(|(_, entry)| entry.direction == NAT_DIR_FORWARD)
                .filter_map(|(key, forward)| {
                    let reply_key = counterpart_key(key, forward);
                    let reply = table.get(&reply_key)?;
                    (reply.direction != NAT_DIR_FORWARD
                        && counterpart_key(&reply_key, reply) == *key)
                        .then_some([(*key, *forward), (reply_key, *reply)])
                })
                .collect();
            unpaired += total.saturating_sub(2 * pairs.len() as u64);
            for pair in pairs {
                flows
                    .entry(pair[0].0)
                    .and_modify(|held| {
                        if last_seen(&pair) > last_seen(held) {
                            *held = pair;
                        }
                    })
                    .or_insert(pair);
            }
        }
        let mut pairs: Vec<Pair> = flows.into_values().collect();
        pairs.sort_by_key(|pair| std::cmp::Reverse(last_seen(pair)));
        (pairs, unpaired)
    }

    /// `pair` stamped: its forward entry seen at `at`, its reply at half.
    fn seen(mut pair: Pair, at: u64) -> Pair {
        pair[0].1.last_seen_ns = at;
        pair[1].1.last_seen_ns = at / 2;
        pair
    }

    fn install(table: &NatFlowTable, entries: &[(FlowKey, NatEntry)]) {
        for (key, entry) in entries {
            table.install(key, entry).expect("installed");
        }
    }

    /// Two mapped bucket tables (a resize's, as `open_resized` finds
    /// them), read in place: the same flows, the same halves counted, and
    /// the same table's copy of a flow both hold, as the carry that copied
    /// both into maps gave; the freshest first.
    #[test]
    fn carrying_mapped_tables_in_place_gives_the_pairs_the_copying_carry_gave() {
        use crate::pinning::test_support::TestBpffs;
        let Some(bpffs) = TestBpffs::new("nat-carry-in-place") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let first = nat_table(&pins.map_path("nat_carry_first"), 64);
        let second = nat_table(&pins.map_path("nat_carry_second"), 128);
        for n in 1..=40 {
            install(
                &first,
                &seen(flow(n, 2000 + n as u16), 1_000 + u64::from(n)),
            );
            install(
                &second,
                &seen(flow(n + 40, 3000 + n as u16), 2_000 + u64::from(n)),
            );
        }
        // In both, on other ports: the first table saw the odd ones
        // later, the second the even ones; 99 both at once (the first
        // table's copy stays, as the copying merge kept it).
        for n in 81..=99 {
            let (a, b) = if n % 2 == 1 {
                (5_000, 4_000)
            } else {
                (4_000, 5_000)
            };
            let (a, b) = if n == 99 {
                (6_000, 6_000)
            } else {
                (a + n, b + n)
            };
            install(&first, &seen(flow(n, 4000 + n as u16), u64::from(a)));
            install(&second, &seen(flow(n, 5000 + n as u16), u64::from(b)));
        }
        // Halves: a forward entry alone, a reply alone, and a pair whose
        // reply names another key.
        install(&first, &seen(flow(200, 6000), 7_000)[..1]);
        install(&second, &seen(flow(201, 6001), 7_000)[1..]);
        let mut wrong = seen(flow(202, 6002), 7_000);
        wrong[1].1.dport = 999;
        install(&first, &wrong);
        let carry = Carry::new(vec![Source::Mapped(&first), Source::Mapped(&second)]);
        let (pairs, unpaired) = carried(&carry);
        let (expected, expected_unpaired) =
            copying_carry(vec![first.iter().collect(), second.iter().collect()]);
        assert_eq!(unpaired, expected_unpaired);
        assert_eq!(unpaired, 4);
        assert!(
            pairs
                .windows(2)
                .all(|w| last_seen(&w[0]) >= last_seen(&w[1])),
            "the freshest first"
        );
        let by_client = |mut pairs: Vec<Pair>| {
            pairs.sort_by_key(|pair| pair[0].0.src[0]);
            pairs
        };
        let (pairs, expected) = (by_client(pairs), by_client(expected));
        assert_eq!(pairs.len(), 99);
        assert_eq!(pairs, expected);
        let tie = pairs.iter().find(|pair| pair[0].0.src[0] == 99);
        assert_eq!(tie.map(|pair| pair[0].1.sport), Some(4099));
    }

    /// A carry holds one small placement per flow, never a copy of a
    /// mapped table: the pairs it installs are read from the table when
    /// installed (a mark the old program made after the walk is carried).
    #[test]
    fn a_carry_reads_each_flow_from_the_mapped_table_when_installing_it() {
        use crate::pinning::test_support::TestBpffs;
        assert_eq!(size_of::<Placement>(), PLACEMENT_BYTES);
        assert_eq!(PLACEMENT_BYTES, 16);
        let Some(bpffs) = TestBpffs::new("nat-carry-lazy") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let table = nat_table(&pins.map_path("nat_carry_lazy"), 64);
        install(&table, &seen(flow(1, 2000), 100));
        install(&table, &seen(flow(2, 2001), 200));
        let carry = Carry::new(vec![Source::Mapped(&table)]);
        assert_eq!(carry.flows(), 2);
        let [mut forward, _] = seen(flow(1, 2000), 300);
        forward.1.flags = lb_common::consts::NAT_F_FIN;
        table.install(&forward.0, &forward.1).expect("marked");
        let (pairs, _) = carried(&carry);
        let marked = pairs.iter().find(|pair| pair[0].0 == forward.0);
        assert_eq!(marked.map(|pair| pair[0].1), Some(forward.1));
    }

    #[test]
    fn two_tables_merge_each_flow_as_last_seen_the_freshest_first() {
        let seen = |mut pair: Pair, at: u64| {
            pair[0].1.last_seen_ns = at;
            pair[1].1.last_seen_ns = at / 2;
            pair
        };
        // A table moved aside earlier (a snapshot) and the live one: flow
        // 1 in both (the live one saw it later, on another port), flow 2
        // only in the snapshot, flow 3 only in the live one.
        let snapshot = vec![seen(flow(1, 2000), 100), seen(flow(2, 2001), 50)];
        let live = vec![seen(flow(1, 2005), 300), seen(flow(3, 2002), 200)];
        let merged = merge(vec![snapshot.clone(), live.clone()]);
        assert_eq!(merged, vec![live[0], live[1], snapshot[1]]);
        // Whichever table comes first.
        assert_eq!(merge(vec![live.clone(), snapshot.clone()]), merged);
        assert!(merge(Vec::new()).is_empty());
    }

    #[test]
    fn entries_pair_up_by_counterpart_and_halves_are_counted() {
        let a = flow(1, 2000);
        let b = flow(2, 2001);
        let half = flow(3, 2002);
        let mut entries: Vec<(FlowKey, NatEntry)> = a.into_iter().chain(b).collect();
        entries.push(half[1]);
        let (mut pairs, unpaired) = pair_up(entries);
        pairs.sort_by_key(|p| p[0].0.src[0]);
        assert_eq!(pairs, vec![a, b]);
        assert_eq!(unpaired, 1);
        // A reply whose counterpart names another key is no pair.
        let mut wrong = flow(4, 2003);
        wrong[1].1.dport = 999;
        let (pairs, unpaired) = pair_up(wrong.to_vec());
        assert!(pairs.is_empty());
        assert_eq!(unpaired, 2);
    }
}
