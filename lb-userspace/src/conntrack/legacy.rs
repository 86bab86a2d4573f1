//! Carrying flows over from a connection table this lbd cannot adopt as
//! it is, so they keep their backends:
//! - a previous release's kernel map (before `FLOW_BUCKETS`: `CONNTRACK`,
//!   a shared LRU hash); that release also hashed IPv4 flows differently
//!   (all their bytes), so a flow Maglev placed again would often land
//!   elsewhere;
//! - a bucket table (`FLOW_BUCKETS`) of another size: `conntrack_size`
//!   changed, which takes effect at a restart.
//!
//! The old map is opened from its pin, and the pin is moved aside
//! (`CONNTRACK_LRU`, `FLOW_BUCKETS_RESIZED`: the new object pins a table
//! of its own under the old name); the old program keeps running on the
//! old map until the new one is swapped in on the link. The flows are
//! copied twice: once right after the load (the bulk), once after the swap
//! (what the old program added meanwhile; it no longer runs, so the map is
//! final, and what it stamped after this lbd's load wins over a copy this
//! lbd's program made of the flow in between). The moved pin goes only
//! then (`finish`): an lbd that stops or fails between its load and the
//! swap leaves it for the next one, which finds it under the new name and
//! carries the flows over again, including those the old program (still
//! on the link) opened in between. Carried
//! only when the state maps are adopted: a flow names its backend by id.
//! The load decides that first (`pending` tells what would be carried
//! without moving anything); without the state adopted nothing is moved,
//! and the old tables' pins stay as they are until the new program runs,
//! then go with the state they belong to (`PinDir::promote_staged`).
//!
//! Both may be there at once: an upgrade from the shared LRU that stopped
//! before its swap left `CONNTRACK_LRU` (the table the old program, still
//! on the link, writes) and its own bucket table, and this lbd's
//! `conntrack_size` differs from that one's. Both are carried over, each
//! flow as the table that saw it more recently holds it (the live one's,
//! whichever that is), and both pins go after the swap: neither is left
//! for a later lbd to replay over live flows.
//!
//! So may two bucket tables: a resize that stopped after its load left
//! the table it set aside (`FLOW_BUCKETS_RESIZED`) and its own, pinned,
//! and this lbd's size is a third one. Which of them a program writes
//! depends on where that lbd stopped: before its swap the old program
//! still runs on the table set aside; after it (before `finish`, or
//! with the set-aside pin failing to go) its own program runs on the
//! pinned table, and every flow opened since is only there. The pinned
//! one is set aside too (`FLOW_BUCKETS_RESIZED_AGAIN`), both are carried
//! over as above, and both pins go after the swap. A third table of
//! another size on top of those two (that lbd stopped the same way too)
//! has no name left to wait under: the load is refused (`Refused`) rather
//! than one of them thrown away with the flows only it holds, and the
//! error tells the size that adopts the pinned table as it is.

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, MapInfo, MapType};
use lb_common::{
    consts::names,
    flow_table::{buckets_for, FlowBucket, FLOW_HEADROOM, FLOW_WAYS, TICK_SHIFT},
    FlowEntry, FlowKey,
};
use tracing::{info, warn};

use crate::{
    conntrack::{
        kind::ConntrackKind,
        table::{FlowTable, Placement},
    },
    pinning::PinDir,
};

/// The name the old table's pin is moved to while its flows are carried
/// over (in the same pin directory): `CONNTRACK` itself is this release's
/// (one-entry) kernel-map table.
pub const MOVED_PIN: &str = "CONNTRACK_LRU";

/// The name a resized bucket table's pin is moved to while its flows are
/// carried over (bpffs refuses names with a dot).
pub const RESIZED_PIN: &str = "FLOW_BUCKETS_RESIZED";

/// The name the pinned bucket table of another size is moved to when a
/// table set aside by an earlier resize still waits under `RESIZED_PIN`
/// (that resize stopped before its `finish`): the later of the two.
pub const RESIZED_AGAIN_PIN: &str = "FLOW_BUCKETS_RESIZED_AGAIN";

/// Why a load does not carry a connection table of another size over:
/// tables of two earlier sizes already wait set aside, and the pinned
/// one is of a third (see the module's notes). The message tells what
/// to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The old tables, open, while flows are carried over.
pub(crate) struct LegacyTable {
    /// Each old table and its pin (moved aside), removed by `finish`.
    tables: Vec<(OldFlows, PathBuf)>,
    /// Flows copied so far (both passes).
    pub(crate) copied: u64,
    /// `CLOCK_MONOTONIC` (ns) when this lbd opened the old tables, before
    /// its first copy, less a tick (the data plane stamps flows by the
    /// coarse clock, up to a tick behind): an entry stamped since was
    /// written by the old program while this lbd loaded, and its copy
    /// after the swap wins over what the new table holds
    /// (`dataplane::adopt`).
    pub(crate) loaded_ns: u64,
}

/// Where the old flows are read from.
enum OldFlows {
    /// A previous release's kernel map.
    KernelMap(HashMap<MapData, FlowKey, FlowEntry>),
    /// A bucket table of another size.
    Buckets(FlowTable),
}

impl LegacyTable {
    /// Opens the old tables this lbd, running the bucket table of
    /// `buckets` buckets, carries flows over from: bucket tables of
    /// other sizes (`open_resized`), and a kernel-map table (`open_lru`),
    /// all that are there. None when there is nothing to carry over;
    /// `Refused`, having moved nothing, when a third bucket table of
    /// another size would have to be set aside.
    pub(crate) fn open(
        pins: &PinDir,
        kind: ConntrackKind,
        buckets: u32,
    ) -> Result<Option<Self>, Refused> {
        if kind.is_kernel_map() {
            return Ok(None);
        }
        let loaded_ns = crate::clock::monotonic_ns().saturating_sub(1 << TICK_SHIFT);
        let mut tables = Self::open_resized(pins, buckets)?;
        tables.extend(Self::open_lru(pins));
        Ok((!tables.is_empty()).then_some(Self {
            tables,
            copied: 0,
            loaded_ns,
        }))
    }

    /// Whether `open` would find a table to carry flows over from, told
    /// without moving or removing anything (a load decides with it which
    /// pins it adopts before it moves any): a bucket table set aside, or
    /// pinned with another size than `buckets`, or a kernel-map table,
    /// pinned or set aside.
    pub(crate) fn pending(pins: &PinDir, kind: ConntrackKind, buckets: u32) -> bool {
        if kind.is_kernel_map() {
            return false;
        }
        let info = |name: &str| MapInfo::from_pin(pins.map_path(name)).ok();
        let resized = info(names::MAP_FLOW_BUCKETS).is_some_and(|info| {
            is_bucket_table(&info) && info.max_entries() > 1 && info.max_entries() != buckets
        });
        let lru = info(names::MAP_CONNTRACK).is_some_and(|info| is_kernel_map_table(&info));
        resized
            || lru
            || pins.map_path(RESIZED_PIN).exists()
            || pins.map_path(RESIZED_AGAIN_PIN).exists()
            || pins.map_path(MOVED_PIN).exists()
    }

    /// The kernel-map table if the pins are those of an lbd that ran one
    /// (a release before the bucket table, or one where the shared LRU was
    /// the default: its `CONNTRACK` is full-sized, its `FLOW_BUCKETS`, if
    /// any, one bucket), its pin moved aside (`MOVED_PIN`); or the table an
    /// earlier upgrade moved aside and did not finish (it stopped before
    /// its swap). None when there is none (a bucket-table lbd pins a
    /// one-entry `CONNTRACK`).
    fn open_lru(pins: &PinDir) -> Option<(OldFlows, PathBuf)> {
        let moved = pins.map_path(MOVED_PIN);
        let path = pins.map_path(names::MAP_CONNTRACK);
        // The previous lbd's own table first: it is the newest (an older
        // release that ran after an unfinished upgrade pinned its own).
        // Moving it aside replaces a table left there by that upgrade.
        let map = if let Some(map) = open_pinned(&path) {
            if let Err(error) = std::fs::rename(&path, &moved) {
                warn!(path = %path.display(), %error, "could not move the previous lbd's connection-table pin aside: its flows are placed by Maglev again");
                return None;
            }
            info!(path = %path.display(), "carrying the previous lbd's connection table (LRU hash) over into the bucket table");
            map
        } else if moved.exists() {
            let Some(map) = open_pinned(&moved) else {
                warn!(path = %moved.display(), "a connection table moved aside by an earlier upgrade cannot be carried over: removed");
                remove_pin(&moved);
                return None;
            };
            info!(path = %moved.display(), "an earlier upgrade stopped before its swap: carrying the connection table it left (LRU hash) over into the bucket table");
            map
        } else {
            return None;
        };
        Some((OldFlows::KernelMap(map), moved))
    }

    /// The bucket tables of sizes other than `buckets`, the most recently
    /// pinned under `FLOW_BUCKETS` first (a flow two of them saw in the
    /// same tick is taken from it): the pinned one if it has another size
    /// (moved aside now), and those an earlier resize moved aside and did
    /// not get to remove (it stopped before its `finish`; see the module's
    /// notes). The pinned one goes to `RESIZED_PIN`, or to
    /// `RESIZED_AGAIN_PIN` when a table waits there: neither is thrown
    /// away, whichever a program still writes. `Refused`, before anything
    /// is moved, when both names are taken.
    fn open_resized(pins: &PinDir, buckets: u32) -> Result<Vec<(OldFlows, PathBuf)>, Refused> {
        let aside = pins.map_path(RESIZED_PIN);
        let again = pins.map_path(RESIZED_AGAIN_PIN);
        let current = pins.map_path(names::MAP_FLOW_BUCKETS);
        let pinned = MapInfo::from_pin(&current).ok().filter(|info| {
            is_bucket_table(info)
                // One bucket: a kernel-map lbd's placeholder.
                && info.max_entries() > 1
                && info.max_entries() != buckets
        });
        if let Some(info) = pinned {
            let pins = Resized {
                current: &current,
                aside: &aside,
                again: &again,
            };
            pins.set_aside(&CONNTRACK_TABLE, info.max_entries(), buckets)?;
        }
        Ok([again, aside]
            .into_iter()
            .filter(|path| path.exists())
            .filter_map(open_set_aside)
            .collect())
    }

    /// Done with the old tables (their flows carried over after the
    /// swap): their pins go, so a later lbd does not carry stale flows
    /// over again.
    pub(crate) fn finish(self) {
        for (_, pin) in &self.tables {
            remove_pin(pin);
        }
    }

    /// Every flow of the old tables (read as they are now); a flow two
    /// tables hold as the one that saw it more recently holds it.
    pub(crate) fn flows(&self) -> Vec<(FlowKey, FlowEntry)> {
        let mut tables = self.tables.iter().map(|(table, _)| match table {
            // In batches (two syscalls per flow the slow way: seconds for a
            // big table, read twice before VRRP starts).
            OldFlows::KernelMap(map) => crate::map_batch::lookup_all(map.map()).unwrap_or_else(|error| {
                warn!(%error, "reading the previous lbd's connection table in batches failed: walking it entry by entry");
                map.iter().filter_map(Result::ok).collect()
            }),
            OldFlows::Buckets(table) => table.iter().collect::<Vec<_>>(),
        });
        let Some(first) = tables.next() else {
            return Vec::new();
        };
        if self.tables.len() == 1 {
            return first;
        }
        let mut merged: std::collections::HashMap<FlowKey, FlowEntry> = first.into_iter().collect();
        for flows in tables {
            for (key, entry) in flows {
                merged
                    .entry(key)
                    .and_modify(|held| {
                        if entry.last_seen_ns > held.last_seen_ns {
                            *held = entry;
                        }
                    })
                    .or_insert(entry);
            }
        }
        merged.into_iter().collect()
    }
}

/// The bucket table set aside at `path`, opened; one that cannot be
/// opened or is of another layout is not carried over, its pin removed.
fn open_set_aside(path: PathBuf) -> Option<(OldFlows, PathBuf)> {
    let opened = MapInfo::from_pin(&path)
        .map_err(|e| e.to_string())
        .and_then(|info| {
            // Checked as the pinned table is: one of another layout (an
            // lbd of another release set it aside) would be read at the
            // wrong stride.
            if !is_bucket_table(&info) {
                return Err(format!(
                    "not a connection table of this release's layout (type {:?}, key {} bytes, value {} bytes)",
                    info.map_type(),
                    info.key_size(),
                    info.value_size()
                ));
            }
            let data = MapData::from_pin(&path).map_err(|e| e.to_string())?;
            FlowTable::new(data, info.max_entries(), Placement::ByTableHash)
                .map_err(|e| e.to_string())
        });
    match opened {
        Ok(table) => Some((OldFlows::Buckets(table), path)),
        Err(error) => {
            warn!(path = %path.display(), %error, "could not open the previous connection table: its flows are placed by Maglev again");
            remove_pin(&path);
            None
        }
    }
}

/// A resizable bucket table as its resize's messages name it.
pub(crate) struct TableNames {
    /// The table (`"connection table"`).
    pub(crate) what: &'static str,
    /// Its size setting (`"conntrack_size"`).
    pub(crate) setting: &'static str,
    /// What a table thrown away holds (`"the flows"`).
    pub(crate) holds: &'static str,
    /// What is lost when its pin cannot be moved aside.
    pub(crate) lost: &'static str,
}

/// The connection table's names.
const CONNTRACK_TABLE: TableNames = TableNames {
    what: "connection table",
    setting: "conntrack_size",
    holds: "the flows",
    lost: "its flows are placed by Maglev again",
};

/// The pins of a resize: the pinned table (`current`), where a resize
/// sets a table aside (`aside`), and where a later one goes while an
/// earlier one still waits there (`again`).
pub(crate) struct Resized<'a> {
    pub(crate) current: &'a Path,
    pub(crate) aside: &'a Path,
    pub(crate) again: &'a Path,
}

impl Resized<'_> {
    /// Moves the pinned table, of `pinned` buckets where this lbd's has
    /// `buckets`, aside: to `aside`, or to `again` when a table waits
    /// there (an earlier resize stopped before its `finish`), so that
    /// neither is thrown away, whichever a program still writes; `again`
    /// always holds the later of the two. `Refused`, before anything is
    /// moved, when both names are taken, naming the size that adopts the
    /// pinned table as it is. A rename that fails is warned about.
    pub(crate) fn set_aside(
        &self,
        table: &TableNames,
        pinned: u32,
        buckets: u32,
    ) -> Result<(), Refused> {
        let to = match (self.aside.exists(), self.again.exists()) {
            (false, false) => self.aside,
            (true, false) => self.again,
            // The later name keeps meaning the later table.
            (false, true) => {
                if std::fs::rename(self.again, self.aside).is_ok() {
                    self.again
                } else {
                    self.aside
                }
            }
            (true, true) => {
                let (what, setting, holds) = (table.what, table.setting, table.holds);
                let name = |path: &Path| {
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                };
                return Err(Refused(format!(
                    "the pinned {what} ({pinned} buckets) is of another size than this lbd's ({buckets} buckets), \
                     and the tables of two earlier sizes still wait to be carried over ({} and {}: \
                     lbd stopped twice between its load and the end of its start while {setting} changed); \
                     setting a third table aside would throw away {holds} one of them holds. \
                     {}, which adopts the pinned table and carries the other two over, then change it",
                    name(self.aside),
                    name(self.again),
                    size_hint(setting, pinned)
                )));
            }
        };
        if to == self.again {
            warn!(
                from = pinned,
                to = buckets,
                set_aside = %self.aside.display(),
                "the {} changed size again before an earlier change finished (an lbd stopped between its load and the end of its start): the pinned table and the one that change set aside are both carried over into the new one",
                table.what
            );
        } else {
            info!(
                from = pinned,
                to = buckets,
                "the {} changed size ({}): carrying its flows over into the new one",
                table.what,
                table.setting
            );
        }
        if let Err(error) = std::fs::rename(self.current, to) {
            warn!(path = %self.current.display(), %error, "could not move the resized {}'s pin aside: {}", table.what, table.lost);
        }
        Ok(())
    }
}

/// What to set `setting` to for a bucket table of `buckets` buckets
/// (`flow_table::buckets_for` gives that many for it), as advice.
pub(crate) fn size_hint(setting: &str, buckets: u32) -> String {
    let size = u64::from(buckets) * FLOW_WAYS as u64 / u64::from(FLOW_HEADROOM);
    match u32::try_from(size) {
        Ok(size) if buckets_for(size) == buckets => {
            format!("Start lbd once with {setting} = {size} (the pinned table's size)")
        }
        _ => format!(
            "Start lbd once with the {setting} the pinned table was made for ({buckets} buckets)"
        ),
    }
}

/// Whether `info` is a bucket connection table of this release's layout
/// (an array of `FlowBucket`s keyed by `u32`).
fn is_bucket_table(info: &MapInfo) -> bool {
    matches!(info.map_type(), Ok(MapType::Array))
        && info.key_size() as usize == size_of::<u32>()
        && info.value_size() as usize == size_of::<FlowBucket>()
}

/// Whether `info` is a kernel-map connection table of a previous lbd's
/// layout (a hash of `FlowEntry`s keyed by `FlowKey`), not this release's
/// one-entry placeholder.
fn is_kernel_map_table(info: &MapInfo) -> bool {
    matches!(info.map_type(), Ok(MapType::LruHash | MapType::Hash))
        && info.key_size() as usize == size_of::<FlowKey>()
        && info.value_size() as usize == size_of::<FlowEntry>()
        && info.max_entries() > 1
}

/// The kernel-map connection table pinned at `path`, if one of a
/// previous lbd's layout is there (not this release's one-entry table).
/// One that cannot be opened is not carried over.
fn open_pinned(path: &Path) -> Option<HashMap<MapData, FlowKey, FlowEntry>> {
    let info = MapInfo::from_pin(path).ok()?;
    if !is_kernel_map_table(&info) {
        return None;
    }
    let opened = MapData::from_pin(path)
        .map_err(|e| e.to_string())
        .and_then(|data| HashMap::try_from(Map::LruHashMap(data)).map_err(|e| e.to_string()));
    match opened {
        Ok(map) => Some(map),
        Err(error) => {
            warn!(path = %path.display(), %error, "could not open the previous lbd's connection table: its flows are placed by Maglev again");
            None
        }
    }
}

fn remove_pin(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        warn!(path = %path.display(), %error, "could not remove the previous lbd's connection-table pin");
    }
}

#[cfg(test)]
mod tests {
    use aya::maps::MapInfo;
    use lb_common::{FlowEntry, FlowKey};

    use super::*;
    use crate::pinning::test_support::{pin_map, TestBpffs};

    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    const BPF_F_MMAPABLE: u32 = 0x400;

    /// A bucket table of `buckets` buckets pinned at `path`, as lbd's
    /// program makes it, mapped.
    fn bucket_table(path: &Path, buckets: u32) -> FlowTable {
        let value = size_of::<FlowBucket>() as u32;
        let map = pin_map(
            path,
            BPF_MAP_TYPE_ARRAY,
            (4, value),
            buckets,
            BPF_F_MMAPABLE,
        );
        FlowTable::new(map, buckets, Placement::ByTableHash).expect("mapped")
    }

    /// The id of the map pinned at `path`, if any.
    fn id_at(path: &Path) -> Option<u32> {
        MapInfo::from_pin(path).ok().map(|info| info.id())
    }

    fn key(n: u32) -> FlowKey {
        FlowKey {
            src: [0x0a00_0000 + n, 0, 0, 0],
            dst: [0x6400_0001, 0, 0, 0],
            sport: 1000,
            dport: 80,
            proto: 6,
            family: 4,
            _pad: 0,
        }
    }

    fn seen(backend_id: u32, at_s: u64) -> FlowEntry {
        FlowEntry {
            backend_id,
            backend_generation: 1,
            last_seen_ns: at_s * 1_000_000_000,
            ..FlowEntry::default()
        }
    }

    /// lbd A ran a table of 64 buckets; B, resized to 128, set it aside,
    /// pinned its own and swapped (its program opened flows there only),
    /// then stopped before its `finish`. C, resized to 256, carries both:
    /// the pinned table is set aside too, not left to the load to remove
    /// (the load removes what is pinned under `FLOW_BUCKETS` then), each
    /// flow as the table that saw it last holds it. Both pins stay until
    /// the swap, under names that say which came later; both go after it.
    #[test]
    fn a_second_resize_before_the_first_finished_carries_both_tables() {
        let Some(bpffs) = TestBpffs::new("resized-twice") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let aside = pins.map_path(RESIZED_PIN);
        let again = pins.map_path(RESIZED_AGAIN_PIN);
        let pinned = pins.map_path(names::MAP_FLOW_BUCKETS);
        let a = bucket_table(&aside, 64);
        let b = bucket_table(&pinned, 128);
        let (a_id, b_id) = (id_at(&aside), id_at(&pinned));
        // Flow 1 opened under A and met since by B's program, on another
        // backend; flow 2 A's alone (idle since B's swap); flow 3 opened
        // on B's table after B's load.
        a.install(&key(1), &seen(1, 10)).expect("installed");
        a.install(&key(2), &seen(2, 20)).expect("installed");
        b.install(&key(1), &seen(3, 30)).expect("installed");
        b.install(&key(3), &seen(4, 40)).expect("installed");
        assert!(LegacyTable::pending(&pins, ConntrackKind::Buckets, 256));

        let legacy = LegacyTable::open(&pins, ConntrackKind::Buckets, 256)
            .expect("not refused")
            .expect("tables to carry over");
        assert!(!pinned.exists(), "the pinned table is set aside");
        assert_eq!(id_at(&aside), a_id, "A's stays where it was");
        assert_eq!(id_at(&again), b_id, "B's, the later, is set aside again");
        let mut flows: Vec<(u32, u32)> = legacy
            .flows()
            .into_iter()
            .map(|(k, e)| (k.src[0] - 0x0a00_0000, e.backend_id))
            .collect();
        flows.sort_unstable();
        assert_eq!(flows, [(1, 3), (2, 2), (3, 4)]);
        // C stops before its swap: the next start finds both set aside
        // (its own table, of the size that start runs, is adopted).
        drop(legacy);
        let legacy = LegacyTable::open(&pins, ConntrackKind::Buckets, 256)
            .expect("not refused")
            .expect("tables to carry over");
        assert_eq!(legacy.flows().len(), 3);
        legacy.finish();
        assert!(!aside.exists() && !again.exists(), "both go after the swap");
        drop((a, b));
    }

    /// Only the later table set aside is left (the first's pin went,
    /// the second's did not): the pinned table of another size takes the
    /// first name and the waiting one keeps the later, so the names still
    /// tell their order.
    #[test]
    fn a_table_set_aside_later_keeps_the_later_name() {
        let Some(bpffs) = TestBpffs::new("aside-again-only") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let aside = pins.map_path(RESIZED_PIN);
        let again = pins.map_path(RESIZED_AGAIN_PIN);
        let pinned = pins.map_path(names::MAP_FLOW_BUCKETS);
        let waiting = bucket_table(&again, 64);
        let current = bucket_table(&pinned, 128);
        let (waiting_id, current_id) = (id_at(&again), id_at(&pinned));
        assert!(LegacyTable::pending(&pins, ConntrackKind::Buckets, 256));
        let legacy = LegacyTable::open(&pins, ConntrackKind::Buckets, 256)
            .expect("not refused")
            .expect("tables to carry over");
        assert_eq!(legacy.tables.len(), 2);
        assert_eq!(id_at(&aside), waiting_id);
        assert_eq!(id_at(&again), current_id);
        assert!(!pinned.exists());
        drop((legacy, waiting, current));
    }

    /// Tables of two earlier sizes set aside, and the pinned one of a
    /// third: no name is left for it, and none of the three is thrown
    /// away; the load is refused with the size that adopts the pinned
    /// table, and nothing is moved. A table of this lbd's size pinned
    /// there is adopted as it is, both set aside carried over.
    #[test]
    fn a_third_table_of_another_size_is_refused_and_nothing_moves() {
        let Some(bpffs) = TestBpffs::new("resized-thrice") else {
            return;
        };
        let pins = bpffs.pins();
        pins.prepare().expect("the pin directory");
        let aside = pins.map_path(RESIZED_PIN);
        let again = pins.map_path(RESIZED_AGAIN_PIN);
        let pinned = pins.map_path(names::MAP_FLOW_BUCKETS);
        let tables = [
            bucket_table(&aside, 64),
            bucket_table(&again, 128),
            bucket_table(&pinned, 256),
        ];
        let ids = [&aside, &again, &pinned].map(|path| id_at(path));
        let Err(refused) = LegacyTable::open(&pins, ConntrackKind::Buckets, 512) else {
            panic!("refused");
        };
        assert!(
            refused.0.contains("conntrack_size = 1024"),
            "the size that adopts the pinned table: {refused}"
        );
        assert_eq!([&aside, &again, &pinned].map(|path| id_at(path)), ids);
        assert!(!pins.map_path(MOVED_PIN).exists());
        let legacy = LegacyTable::open(&pins, ConntrackKind::Buckets, 256)
            .expect("not refused")
            .expect("tables to carry over");
        assert_eq!(legacy.tables.len(), 2);
        assert_eq!(id_at(&pinned), ids[2], "adopted as it is");
        drop((legacy, tables));
    }

    #[test]
    fn the_size_hint_gives_the_buckets_asked_for() {
        for size in [1024u32, 4096, 262_144, 1 << 24] {
            let buckets = buckets_for(size);
            assert!(
                size_hint("conntrack_size", buckets).contains(&format!("conntrack_size = {size}")),
                "{size}"
            );
        }
    }
}
