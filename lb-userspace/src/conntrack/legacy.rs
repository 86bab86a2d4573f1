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

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, MapInfo, MapType};
use lb_common::{
    consts::names,
    flow_table::{FlowBucket, TICK_SHIFT},
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
    /// `buckets` buckets, carries flows over from: a bucket table of
    /// another size (`open_resized`), and a kernel-map table (`open_lru`),
    /// both if both are there. None when there is nothing to carry over.
    pub(crate) fn open(pins: &PinDir, kind: ConntrackKind, buckets: u32) -> Option<Self> {
        if kind.is_kernel_map() {
            return None;
        }
        let loaded_ns = crate::clock::monotonic_ns().saturating_sub(1 << TICK_SHIFT);
        let tables: Vec<(OldFlows, PathBuf)> =
            [Self::open_resized(pins, buckets), Self::open_lru(pins)]
                .into_iter()
                .flatten()
                .collect();
        (!tables.is_empty()).then_some(Self {
            tables,
            copied: 0,
            loaded_ns,
        })
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
        resized || lru || pins.map_path(RESIZED_PIN).exists() || pins.map_path(MOVED_PIN).exists()
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

    /// A bucket table of a size other than `buckets`: one moved aside by
    /// an lbd that did not get to its swap, or the pinned one (moved aside
    /// now).
    fn open_resized(pins: &PinDir, buckets: u32) -> Option<(OldFlows, PathBuf)> {
        let aside = pins.map_path(RESIZED_PIN);
        if !aside.exists() {
            let current = pins.map_path(names::MAP_FLOW_BUCKETS);
            let info = MapInfo::from_pin(&current).ok()?;
            let resized = is_bucket_table(&info)
                // One bucket: a kernel-map lbd's placeholder.
                && info.max_entries() > 1
                && info.max_entries() != buckets;
            if !resized {
                return None;
            }
            if let Err(error) = std::fs::rename(&current, &aside) {
                warn!(path = %current.display(), %error, "could not move the resized connection table's pin aside: its flows are placed by Maglev again");
                return None;
            }
            info!(
                from = info.max_entries(),
                to = buckets,
                "the connection table changed size (conntrack_size): carrying its flows over into the new one"
            );
        }
        let opened = MapInfo::from_pin(&aside)
            .map_err(|e| e.to_string())
            .and_then(|info| {
                // Checked as the pinned table is: one of another layout
                // (an lbd of another release set it aside) would be read
                // at the wrong stride.
                if !is_bucket_table(&info) {
                    return Err(format!(
                        "not a connection table of this release's layout (type {:?}, key {} bytes, value {} bytes)",
                        info.map_type(),
                        info.key_size(),
                        info.value_size()
                    ));
                }
                let data = MapData::from_pin(&aside).map_err(|e| e.to_string())?;
                FlowTable::new(data, info.max_entries(), Placement::ByTableHash)
                    .map_err(|e| e.to_string())
            });
        match opened {
            Ok(table) => Some((OldFlows::Buckets(table), aside)),
            Err(error) => {
                warn!(path = %aside.display(), %error, "could not open the previous connection table: its flows are placed by Maglev again");
                remove_pin(&aside);
                None
            }
        }
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
