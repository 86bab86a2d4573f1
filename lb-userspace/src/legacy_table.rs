//! Upgrading across the bucket connection table: a previous lbd (before
//! `FLOW_BUCKETS`) left its flows in a pinned kernel map (`CONNTRACK`, a
//! shared LRU hash). Its flows are carried into the new table so they keep
//! their backends: the new release also hashes IPv4 flows differently
//! (only their informative bytes), so a flow Maglev placed again would
//! often land elsewhere.
//!
//! The old map is opened from its pin and the pin removed (the new object
//! pins a fresh `CONNTRACK`); the old program keeps running on the old map
//! until the new one is swapped in on the link. The flows are copied twice:
//! once right after the load (the bulk), once after the swap (what the old
//! program added meanwhile; it no longer runs, so the map is final).

use aya::maps::{HashMap, Map, MapData, MapInfo, MapType};
use lb_common::{consts::names, FlowEntry, FlowKey};
use tracing::{info, warn};

use crate::{conntrack_kind::ConntrackKind, pinning::PinDir};

/// The old table, open, while flows are carried over.
pub(crate) struct LegacyTable {
    map: HashMap<MapData, FlowKey, FlowEntry>,
    /// Flows copied so far (both passes).
    pub(crate) copied: u64,
}

impl LegacyTable {
    /// Opens the old table if the pins are those of an lbd that ran a
    /// kernel-map table (a release before the bucket table, or one where
    /// the shared LRU was the default: its `CONNTRACK` is full-sized, its
    /// `FLOW_BUCKETS`, if any, one bucket) and this lbd runs the bucket
    /// table; removes its pin. None when there is nothing to carry over (a
    /// bucket-table lbd pins a one-entry `CONNTRACK`).
    pub(crate) fn open(pins: &PinDir, kind: ConntrackKind) -> Option<Self> {
        if kind.is_kernel_map() {
            return None;
        }
        let path = pins.map_path(names::MAP_CONNTRACK);
        let info = MapInfo::from_pin(&path).ok()?;
        let kernel_map = matches!(info.map_type(), Ok(MapType::LruHash | MapType::Hash));
        if !kernel_map
            || info.key_size() as usize != size_of::<FlowKey>()
            || info.value_size() as usize != size_of::<FlowEntry>()
            || info.max_entries() <= 1
        {
            return None;
        }
        let opened = MapData::from_pin(&path)
            .map_err(|e| e.to_string())
            .and_then(|data| HashMap::try_from(Map::LruHashMap(data)).map_err(|e| e.to_string()));
        let map = match opened {
            Ok(map) => map,
            Err(error) => {
                warn!(path = %path.display(), %error, "could not open the previous lbd's connection table: its flows are placed by Maglev again");
                return None;
            }
        };
        if let Err(error) = std::fs::remove_file(&path) {
            warn!(path = %path.display(), %error, "could not remove the previous lbd's connection-table pin");
            return None;
        }
        info!(path = %path.display(), "carrying the previous lbd's connection table (LRU hash) over into the bucket table");
        Some(Self { map, copied: 0 })
    }

    /// Every flow of the old table (read as it is now).
    pub(crate) fn flows(&self) -> Vec<(FlowKey, FlowEntry)> {
        self.map.iter().filter_map(|r| r.ok()).collect()
    }
}
