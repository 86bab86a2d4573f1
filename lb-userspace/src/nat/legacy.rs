//! Upgrading across the NAT flow table's bucket layout: a previous lbd
//! (before `NAT_BUCKETS`) left its NAT'd flows in a pinned kernel hash map
//! (`NAT_FLOWS`). Their translations are carried into the bucket table, so
//! established NAT'd connections keep their source ports and backends
//! across the upgrade; a flow lost here would be dropped (a TCP packet
//! other than a SYN finds no translation).
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
//! those ids.

use std::collections::HashMap as StdHashMap;

use aya::maps::{HashMap, IterableMap as _, Map, MapData, MapInfo, MapType};
use lb_common::{
    consts::{names, NAT_DIR_FORWARD},
    nat::counterpart_key,
    FlowKey, NatEntry,
};
use tracing::{info, warn};

use crate::pinning::PinDir;

/// The old table, open, while its flows are carried over.
pub(crate) struct LegacyNat {
    map: HashMap<MapData, FlowKey, NatEntry>,
    /// Its pin, removed by `finish`.
    pin: std::path::PathBuf,
}

/// Both entries of a flow (forward, then reply), as `install_pair` takes
/// them.
pub(crate) type Pair = [(FlowKey, NatEntry); 2];

impl LegacyNat {
    /// Opens the NAT flow table a previous lbd pinned under `pins`, if it
    /// is one of the kernel hash map layout (its pin stays until `finish`).
    /// None when there is none (a fresh start, or an lbd of this layout);
    /// a pin that cannot be carried over (another layout, or unreadable)
    /// is removed.
    pub(crate) fn open(pins: &PinDir) -> Option<Self> {
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
                Some(Self { map, pin: path })
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
        remove_pin(&self.pin);
    }

    /// The old table's flows as they are now, both entries of each
    /// (forward, reply), and how many entries had no counterpart (half a
    /// flow: the reaper would have freed it; left behind).
    pub(crate) fn pairs(&self) -> (Vec<Pair>, u64) {
        let entries: Vec<(FlowKey, NatEntry)> =
            crate::map_batch::lookup_all(self.map.map()).unwrap_or_else(|error| {
                warn!(%error, "reading the previous lbd's NAT flow table in batches failed: walking it entry by entry");
                self.map.iter().filter_map(Result::ok).collect()
            });
        pair_up(entries)
    }
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

fn remove_pin(path: &std::path::Path) {
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
