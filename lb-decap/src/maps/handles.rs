//! Typed handles on the maps: taken out of a freshly loaded object (and
//! pinned from there), or opened from their pins. Apart from what is done
//! with them: this is the one place that names each map's type.

use anyhow::{anyhow, Context as _};
use aya::maps::{lpm_trie::LpmTrie, Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::decap::names;

use super::{Maps, MAP_COUNT};
use crate::pins::{PinDir, PINNED_MAPS};

/// The maps of a loaded object, in `PINNED_MAPS` order, taken out of
/// it (to pin, or to view with `Maps::borrowed`).
pub fn take(ebpf: &mut aya::Ebpf) -> anyhow::Result<[Map; MAP_COUNT]> {
    let mut take = |name: &str| {
        ebpf.take_map(name)
            .ok_or_else(|| anyhow!("the decap object has no map {name}"))
    };
    Ok([
        take(names::MAP_DECAP_ADDRS)?,
        take(names::MAP_DECAP_VIPS)?,
        take(names::MAP_DECAP_CONFIG)?,
        take(names::MAP_DECAP_COUNTERS)?,
        take(names::MAP_DECAP_SOURCES_V4)?,
        take(names::MAP_DECAP_SOURCES_V6)?,
    ])
}

impl<'a> Maps<&'a mut MapData> {
    /// Views of the maps `take` returned.
    pub fn borrowed(maps: &'a mut [Map; MAP_COUNT]) -> anyhow::Result<Self> {
        let [addrs, vips, config, counters, sources4, sources6] = maps;
        Ok(Self {
            addrs: HashMap::try_from(addrs).context(names::MAP_DECAP_ADDRS)?,
            vips: HashMap::try_from(vips).context(names::MAP_DECAP_VIPS)?,
            config: Array::try_from(config).context(names::MAP_DECAP_CONFIG)?,
            counters: PerCpuArray::try_from(counters).context(names::MAP_DECAP_COUNTERS)?,
            sources4: LpmTrie::try_from(sources4).context(names::MAP_DECAP_SOURCES_V4)?,
            sources6: LpmTrie::try_from(sources6).context(names::MAP_DECAP_SOURCES_V6)?,
        })
    }
}

impl Maps<MapData> {
    /// The maps pinned in `pins`.
    pub fn from_pins(pins: &PinDir) -> anyhow::Result<Self> {
        let open = |name: &str| -> anyhow::Result<MapData> {
            let path = pins.map_path(name);
            MapData::from_pin(&path)
                .with_context(|| format!("opening the pinned map {}", path.display()))
        };
        Ok(Self {
            addrs: HashMap::try_from(Map::HashMap(open(names::MAP_DECAP_ADDRS)?))
                .context(names::MAP_DECAP_ADDRS)?,
            vips: HashMap::try_from(Map::HashMap(open(names::MAP_DECAP_VIPS)?))
                .context(names::MAP_DECAP_VIPS)?,
            config: Array::try_from(Map::Array(open(names::MAP_DECAP_CONFIG)?))
                .context(names::MAP_DECAP_CONFIG)?,
            counters: PerCpuArray::try_from(Map::PerCpuArray(open(names::MAP_DECAP_COUNTERS)?))
                .context(names::MAP_DECAP_COUNTERS)?,
            sources4: LpmTrie::try_from(Map::LpmTrie(open(names::MAP_DECAP_SOURCES_V4)?))
                .context(names::MAP_DECAP_SOURCES_V4)?,
            sources6: LpmTrie::try_from(Map::LpmTrie(open(names::MAP_DECAP_SOURCES_V6)?))
                .context(names::MAP_DECAP_SOURCES_V6)?,
        })
    }
}

/// Pins the maps `take` returned in `pins` (replacing what is pinned
/// there).
pub fn pin(maps: &[Map; MAP_COUNT], pins: &PinDir) -> anyhow::Result<()> {
    for (name, map) in PINNED_MAPS.iter().zip(maps) {
        let path = pins.map_path(name);
        crate::pins::remove_pin(&path)?;
        map.pin(&path)
            .with_context(|| format!("pinning {name} at {}", path.display()))?;
    }
    Ok(())
}
