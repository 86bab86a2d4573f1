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
    collections::HashMap as StdHashMap,
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

use super::table::NatFlowTable;
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

    /// The old tables' flows as they are now, both entries of each
    /// (forward, reply), and how many entries had no counterpart (half a
    /// flow: the reaper would have freed it; left behind). See `merge`.
    pub(crate) fn pairs(&self) -> (Vec<Pair>, u64) {
        let mut unpaired = 0;
        let tables: Vec<Vec<Pair>> = self
            .tables
            .iter()
            .map(|(table, _)| {
                let entries: Vec<(FlowKey, NatEntry)> = match table {
                    OldTable::Buckets(table) => table.iter().collect(),
                    OldTable::Hash(map) => crate::map_batch::lookup_all(map.map()).unwrap_or_else(|error| {
                        warn!(%error, "reading the previous lbd's NAT flow table in batches failed: walking it entry by entry");
                        map.iter().filter_map(Result::ok).collect()
                    }),
                };
                let (pairs, half) = pair_up(entries);
                unpaired += half;
                pairs
            })
            .collect();
        (merge(tables), unpaired)
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

/// The flows of several old tables as one list: a flow (its forward key)
/// that two hold as the table that saw it more recently holds it, and
/// the most recently seen flows first (`install_pair` leaves out a flow
/// whose key another flow already holds: where a stale table's flow and
/// a live one's claim one NAT port, the live one, seen since, goes in).
fn merge(tables: Vec<Vec<Pair>>) -> Vec<Pair> {
    let mut flows: StdHashMap<FlowKey, Pair> = StdHashMap::new();
    for pair in tables.into_iter().flatten() {
        flows
            .entry(pair[0].0)
            .and_modify(|held| {
                if last_seen(&pair) > last_seen(held) {
                    *held = pair;
                }
            })
            .or_insert(pair);
    }
    let mut pairs: Vec<Pair> = flows.into_values().collect();
    pairs.sort_by_key(|pair| std::cmp::Reverse(last_seen(pair)));
    pairs
}

/// `entries` as pairs of a flow's forward and reply entries (each the
/// other's counterpart), and the count of entries left without one.
pub(crate) fn pair_up(entries: Vec<(FlowKey, NatEntry)>) -> (Vec<Pair>, u64) {
    let total = entries.len() as u64;
    let table: StdHashMap<FlowKey, NatEntry> = entries.into_iter().collect();
    let pairs: Vec<Pair> = table
        .iter()
        .filter(|(_, entry)| entry.direction == NAT_DIR_FORWARD)
        .filter_map(|(key, forward)| {
            let reply_key = counterpart_key(key, forward);
            let reply = table.get(&reply_key)?;
            (reply.direction != NAT_DIR_FORWARD && counterpart_key(&reply_key, reply) == *key)
                .then_some([(*key, *forward), (reply_key, *reply)])
        })
        .collect();
    let unpaired = total.saturating_sub(2 * pairs.len() as u64);
    (pairs, unpaired)
}

fn remove_pin(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        warn!(path = %path.display(), %error, "could not remove the previous lbd's NAT flow table pin");
    }
}

#[cfg(test)]
mod tests {
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
        let (pairs, unpaired) = legacy.pairs();
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
