//! The old NAT flow tables this lbd carries flows over from: finding
//! them under the pins (setting a resized one aside), opening them,
//! refusing those of another layout, and removing their pins once done.

use std::{
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, IterableMap as _, Map, MapData, MapInfo, MapType};
use lb_common::{consts::names, nat::NatBucket, FlowKey, NatEntry};
use tracing::{info, warn};

use super::{carry::Carry, source::Source, RESIZED_AGAIN_PIN, RESIZED_PIN};
use crate::{
    conntrack::legacy::{Refused, Resized, TableNames},
    nat::table::NatFlowTable,
    pinning::PinDir,
};

/// The NAT flow table's names, for its resize's messages.
const NAT_TABLE: TableNames = TableNames {
    what: "NAT flow table",
    setting: "[nat] flow_table_size",
    holds: "the NAT'd connections",
    lost: "its NAT'd connections are lost",
};

/// The old tables, open, while their flows are carried over.
pub(crate) struct LegacyNat {
    /// Each old table and its pin, removed by `finish`.
    pub(super) tables: Vec<(OldTable, PathBuf)>,
    /// CLOCK_MONOTONIC ns when this lbd opened the old tables, less the
    /// lag of the data plane's coarse clock: a flow last seen since was
    /// forwarded by the old program while this lbd loaded, and after the
    /// swap its copy wins over a flow the new program opened on its NAT
    /// port (`dataplane::adopt`).
    pub(crate) loaded_ns: u64,
}

/// Where the old flows are read from.
pub(super) enum OldTable {
    /// A previous release's kernel hash map (`NAT_FLOWS`).
    Hash(HashMap<MapData, FlowKey, NatEntry>),
    /// A bucket table of another size.
    Buckets(NatFlowTable),
}

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

fn remove_pin(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        warn!(path = %path.display(), %error, "could not remove the previous lbd's NAT flow table pin");
    }
}
