//! The decap program's maps, typed, from a freshly loaded object or from
//! their pins: written in place (new entries first, stale ones after, so a
//! change never opens a gap) and read back for `status`.

use std::{collections::HashSet, hash::Hash, net::IpAddr};

use anyhow::{anyhow, Context as _};
use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, Map, MapData, PerCpuArray,
};
use aya::Pod;
use lb_common::{
    consts::{AF_INET, AF_INET6},
    decap::{names, DecapAddr, DecapConfig, DecapCounter, DECAP_F_SOURCES, DECAP_SOURCES_MAX},
    VipKey,
};

use crate::{
    config::{Settings, Vip},
    pins::{PinDir, PINNED_MAPS},
    sources::Prefix,
};

/// How many maps the program has (all pinned).
pub const MAP_COUNT: usize = PINNED_MAPS.len();

/// Typed handles on the maps: owned (`MapData`, from pins) or
/// borrowed from a freshly loaded object (`&mut MapData`).
pub struct Maps<T> {
    addrs: HashMap<T, DecapAddr, u32>,
    vips: HashMap<T, VipKey, u32>,
    config: Array<T, DecapConfig>,
    counters: PerCpuArray<T, u64>,
    sources4: LpmTrie<T, [u8; 4], u32>,
    sources6: LpmTrie<T, [u8; 16], u32>,
}

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

impl<T: std::borrow::BorrowMut<MapData>> Maps<T> {
    /// Makes the maps say what `settings` says: entries added first, then
    /// the config, then stale entries removed (so sources turned on are in
    /// their tries before the flag, and the flag is off before the tries
    /// empty).
    pub fn sync(&mut self, settings: &Settings) -> anyhow::Result<()> {
        let want_addrs: HashSet<DecapAddr> =
            settings.addresses.iter().map(|a| decap_addr(*a)).collect();
        let want_vips: HashSet<VipKey> = settings.vips.iter().map(vip_key).collect();
        for addr in &want_addrs {
            self.addrs
                .insert(addr, 1, 0)
                .with_context(|| format!("adding an address to {}", names::MAP_DECAP_ADDRS))?;
        }
        for vip in &want_vips {
            self.vips
                .insert(vip, 1, 0)
                .with_context(|| format!("adding a VIP to {}", names::MAP_DECAP_VIPS))?;
        }
        let want4: HashSet<(u32, [u8; 4])> = settings
            .sources
            .iter()
            .filter_map(|p| match p.addr {
                IpAddr::V4(a) => Some((u32::from(p.len), a.octets())),
                IpAddr::V6(_) => None,
            })
            .collect();
        let want6: HashSet<(u32, [u8; 16])> = settings
            .sources
            .iter()
            .filter_map(|p| match p.addr {
                IpAddr::V6(a) => Some((u32::from(p.len), a.octets())),
                IpAddr::V4(_) => None,
            })
            .collect();
        // The tries hold at most DECAP_SOURCES_MAX prefixes each: an entry
        // already there is not added again, and when the new ones would not
        // fit next to the stale ones, the stale ones go first (only while
        // the check stays on: turned off, the flag goes before the tries
        // empty).
        let check_on = settings.config.flags & DECAP_F_SOURCES != 0;
        add_prefixes(
            &mut self.sources4,
            &want4,
            check_on,
            names::MAP_DECAP_SOURCES_V4,
        )?;
        add_prefixes(
            &mut self.sources6,
            &want6,
            check_on,
            names::MAP_DECAP_SOURCES_V6,
        )?;
        self.config
            .set(0, settings.config, 0)
            .with_context(|| format!("writing {}", names::MAP_DECAP_CONFIG))?;
        remove_stale_prefixes(&mut self.sources4, &want4, names::MAP_DECAP_SOURCES_V4)?;
        remove_stale_prefixes(&mut self.sources6, &want6, names::MAP_DECAP_SOURCES_V6)?;
        let stale_addrs: Vec<DecapAddr> = self
            .addrs
            .keys()
            .filter_map(Result::ok)
            .filter(|a| !want_addrs.contains(a))
            .collect();
        for addr in stale_addrs {
            self.addrs
                .remove(&addr)
                .with_context(|| format!("removing an address from {}", names::MAP_DECAP_ADDRS))?;
        }
        let stale_vips: Vec<VipKey> = self
            .vips
            .keys()
            .filter_map(Result::ok)
            .filter(|v| !want_vips.contains(v))
            .collect();
        for vip in stale_vips {
            self.vips
                .remove(&vip)
                .with_context(|| format!("removing a VIP from {}", names::MAP_DECAP_VIPS))?;
        }
        Ok(())
    }

    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Vec<(DecapCounter, u64)>> {
        DecapCounter::ALL
            .iter()
            .map(|c| {
                let values = self
                    .counters
                    .get(&(*c as u32), 0)
                    .with_context(|| format!("reading counter {}", c.name()))?;
                Ok((*c, values.iter().sum()))
            })
            .collect()
    }

    /// The addresses in `DECAP_ADDRS`.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut list: Vec<IpAddr> = self
            .addrs
            .keys()
            .filter_map(Result::ok)
            .filter_map(|a| ip_of(a.family, a.addr))
            .collect();
        list.sort();
        list
    }

    /// The VIPs in `DECAP_VIPS`.
    pub fn vips(&self) -> Vec<Vip> {
        let mut list: Vec<Vip> = self
            .vips
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| {
                Some(Vip {
                    addr: ip_of(k.family, k.addr)?,
                    port: u16::from_be(k.port),
                    proto: k.proto,
                })
            })
            .collect();
        list.sort();
        list
    }

    /// The prefixes in `DECAP_SOURCES_V4` and `DECAP_SOURCES_V6`.
    pub fn sources(&self) -> Vec<Prefix> {
        let v4 = self.sources4.keys().filter_map(Result::ok).map(|k| Prefix {
            addr: IpAddr::from(k.data()),
            len: k.prefix_len() as u8,
        });
        let v6 = self.sources6.keys().filter_map(Result::ok).map(|k| Prefix {
            addr: IpAddr::from(k.data()),
            len: k.prefix_len() as u8,
        });
        let mut list: Vec<Prefix> = v4.chain(v6).collect();
        list.sort();
        list
    }

    /// `DECAP_CONFIG`'s entry.
    pub fn config(&self) -> anyhow::Result<DecapConfig> {
        self.config
            .get(&0, 0)
            .with_context(|| format!("reading {}", names::MAP_DECAP_CONFIG))
    }
}

/// Adds to `trie` the prefixes of `want` it lacks. When they would not fit
/// next to the stale ones (more than `DECAP_SOURCES_MAX` at once) and
/// `check_on`, the stale ones are removed first.
fn add_prefixes<T, K>(
    trie: &mut LpmTrie<T, K, u32>,
    want: &HashSet<(u32, K)>,
    check_on: bool,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    let present: HashSet<(u32, K)> = trie
        .keys()
        .filter_map(Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .collect();
    let add: Vec<&(u32, K)> = want.difference(&present).collect();
    if check_on && present.len() + add.len() > DECAP_SOURCES_MAX as usize {
        remove_stale_prefixes(trie, want, name)?;
    }
    for (len, data) in add {
        trie.insert(&Key::new(*len, *data), 1, 0)
            .with_context(|| format!("adding a prefix to {name}"))?;
    }
    Ok(())
}

/// Removes from `trie` the prefixes not in `want`.
fn remove_stale_prefixes<T, K>(
    trie: &mut LpmTrie<T, K, u32>,
    want: &HashSet<(u32, K)>,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains(&(k.prefix_len(), k.data())))
        .collect();
    for key in stale {
        trie.remove(&key)
            .with_context(|| format!("removing a prefix from {name}"))?;
    }
    Ok(())
}

/// An address as `DECAP_ADDRS` keys it.
pub fn decap_addr(address: IpAddr) -> DecapAddr {
    let (addr, family) = words(address);
    DecapAddr {
        addr,
        family,
        _pad: [0; 3],
    }
}

/// A VIP as `DECAP_VIPS` keys it.
pub fn vip_key(vip: &Vip) -> VipKey {
    let (addr, family) = words(vip.addr);
    VipKey {
        addr,
        port: vip.port.to_be(),
        proto: vip.proto,
        family,
    }
}

/// Network-order words and the family of an address.
fn words(address: IpAddr) -> ([u32; 4], u8) {
    match address {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], AF_INET),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([word(0), word(4), word(8), word(12)], AF_INET6)
        }
    }
}

fn ip_of(family: u8, addr: [u32; 4]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::from(addr[0].to_ne_bytes())),
        AF_INET6 => {
            let mut o = [0u8; 16];
            for (i, w) in addr.iter().enumerate() {
                o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some(IpAddr::from(o))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for text in ["198.19.2.11", "2001:2:0:2::11"] {
            let ip: IpAddr = text.parse().expect("address");
            let key = decap_addr(ip);
            assert_eq!(ip_of(key.family, key.addr), Some(ip));
        }
        let vip: Vip = "198.18.0.100:80/tcp".parse().expect("vip");
        let key = vip_key(&vip);
        assert_eq!(key.port, 80u16.to_be());
        assert_eq!(key.addr[0], u32::from_ne_bytes([198, 18, 0, 100]));
    }

    /// The prefixes `trie` holds.
    fn held(trie: &LpmTrie<MapData, [u8; 4], u32>) -> HashSet<(u32, [u8; 4])> {
        trie.keys()
            .map(|k| k.expect("key"))
            .map(|k| (k.prefix_len(), k.data()))
            .collect()
    }

    /// What `sync` does to one trie.
    fn sync_trie(
        trie: &mut LpmTrie<MapData, [u8; 4], u32>,
        want: &HashSet<(u32, [u8; 4])>,
        check_on: bool,
    ) -> anyhow::Result<()> {
        add_prefixes(trie, want, check_on, "test")?;
        remove_stale_prefixes(trie, want, "test")
    }

    #[test]
    fn a_full_trie_is_replaced_by_a_disjoint_full_set() {
        // BPF_F_NO_PREALLOC: an LPM trie requires it.
        let mut trie = LpmTrie::<MapData, [u8; 4], u32>::create(DECAP_SOURCES_MAX, 1)
            .expect("an LPM trie (runs as root)");
        let set = |first: u8| -> HashSet<(u32, [u8; 4])> {
            (0..DECAP_SOURCES_MAX as u8)
                .map(|i| (24, [10, first, i, 0]))
                .collect()
        };
        let (a, b) = (set(1), set(2));
        sync_trie(&mut trie, &a, true).expect("first");
        assert_eq!(held(&trie), a);
        sync_trie(&mut trie, &a, true).expect("the same again");
        assert_eq!(held(&trie), a);
        sync_trie(&mut trie, &b, true).expect("a disjoint set");
        assert_eq!(held(&trie), b);
        // Turning the check off: emptied after the flag.
        sync_trie(&mut trie, &HashSet::new(), false).expect("off");
        assert!(held(&trie).is_empty());
    }
}
