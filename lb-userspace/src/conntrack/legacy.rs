//! Upgrading across the bucket connection table: a previous lbd (before
//! `FLOW_BUCKETS`) left its flows in a pinned kernel map (`CONNTRACK`, a
//! shared LRU hash). Its flows are carried into the new table so they keep
//! their backends: the new release also hashes IPv4 flows differently
//! (only their informative bytes), so a flow Maglev placed again would
//! often land elsewhere.
//!
//! The old map is opened from its pin, and the pin is moved aside
//! (`CONNTRACK_LRU`: the new object pins a fresh `CONNTRACK` of its own
//! under the old name); the old program keeps running on the old map
//! until the new one is swapped in on the link. The flows are copied twice:
//! once right after the load (the bulk), once after the swap (what the old
//! program added meanwhile; it no longer runs, so the map is final). The
//! moved pin goes only then (`finish`): an lbd that stops or fails between
//! its load and the swap leaves it for the next one, which finds it under
//! the new name and carries the flows over again, including those the old
//! program (still on the link) opened in between.

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData, MapInfo, MapType};
use lb_common::{consts::names, FlowEntry, FlowKey};
use tracing::{info, warn};

use crate::{conntrack::kind::ConntrackKind, pinning::PinDir};

/// The name the old table's pin is moved to while its flows are carried
/// over (in the same pin directory): `CONNTRACK` itself is this release's
/// (one-entry) kernel-map table.
pub const MOVED_PIN: &str = "CONNTRACK_LRU";

/// The old table, open, while flows are carried over.
pub(crate) struct LegacyTable {
    map: HashMap<MapData, FlowKey, FlowEntry>,
    /// Its pin (moved aside), removed by `finish`.
    pin: PathBuf,
    /// Flows copied so far (both passes).
    pub(crate) copied: u64,
}

impl LegacyTable {
    /// Opens the old table if the pins are those of an lbd that ran a
    /// kernel-map table (a release before the bucket table, or one where
    /// the shared LRU was the default: its `CONNTRACK` is full-sized, its
    /// `FLOW_BUCKETS`, if any, one bucket) and this lbd runs the bucket
    /// table, moving its pin aside (`MOVED_PIN`); or the table an earlier
    /// upgrade moved aside and did not finish (it stopped before its swap).
    /// None when there is nothing to carry over (a bucket-table lbd pins a
    /// one-entry `CONNTRACK`).
    pub(crate) fn open(pins: &PinDir, kind: ConntrackKind) -> Option<Self> {
        if kind.is_kernel_map() {
            return None;
        }
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
        Some(Self {
            map,
            pin: moved,
            copied: 0,
        })
    }

    /// Done with the old table (its flows carried over after the swap):
    /// its pin goes, so a later lbd does not carry stale flows over again.
    pub(crate) fn finish(self) {
        remove_pin(&self.pin);
    }

    /// Every flow of the old table (read as it is now).
    pub(crate) fn flows(&self) -> Vec<(FlowKey, FlowEntry)> {
        self.map.iter().filter_map(|r| r.ok()).collect()
    }
}

/// The kernel-map connection table pinned at `path`, if one of a
/// previous lbd's layout is there (not this release's one-entry table).
/// One that cannot be opened is not carried over.
fn open_pinned(path: &Path) -> Option<HashMap<MapData, FlowKey, FlowEntry>> {
    let info = MapInfo::from_pin(path).ok()?;
    let kernel_map = matches!(info.map_type(), Ok(MapType::LruHash | MapType::Hash));
    if !kernel_map
        || info.key_size() as usize != size_of::<FlowKey>()
        || info.value_size() as usize != size_of::<FlowEntry>()
        || info.max_entries() <= 1
    {
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
