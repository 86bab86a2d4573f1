//! The decap program's maps, typed, from a freshly loaded object or from
//! their pins: written in place (new entries first, stale ones after, so a
//! change never opens a gap; stale ones first where the new would not fit
//! otherwise), put back as they were if a write fails, and read back for
//! `status`.

use std::{collections::HashSet, hash::Hash, net::IpAddr};

use anyhow::{anyhow, bail, Context as _};
use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, Map, MapData, PerCpuArray,
};
use aya::Pod;
use lb_common::{
    consts::{AF_INET, AF_INET6},
    decap::{
        names, DecapAddr, DecapConfig, DecapCounter, DECAP_ADDRS_MAX, DECAP_F_SOURCES,
        DECAP_SOURCES_MAX, DECAP_VIPS_MAX,
    },
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
    /// empty). A map that cannot hold its new entries next to its stale
    /// ones (a change near `DECAP_ADDRS_MAX`/`DECAP_VIPS_MAX`/
    /// `DECAP_SOURCES_MAX`) loses its stale entries first. If a write
    /// fails, the maps are put back as they were (the error says so) or,
    /// if that fails too, the error is a [`PartlyApplied`].
    pub fn sync(&mut self, settings: &Settings) -> anyhow::Result<()> {
        let want = Contents::of(settings);
        let before = self
            .contents()
            .context("reading the maps before changing them (nothing changed)")?;
        let Err(error) = self.write(&want) else {
            return Ok(());
        };
        match self.write(&before) {
            Ok(()) => Err(error.context(
                "updating the maps failed; they were put back as they were (the previous configuration stays in force)",
            )),
            Err(restore) => Err(anyhow::Error::new(PartlyApplied { error, restore })),
        }
    }

    /// What the maps hold now.
    fn contents(&self) -> anyhow::Result<Contents> {
        let keys4 = self.sources4.keys().collect::<Result<Vec<_>, _>>();
        let keys6 = self.sources6.keys().collect::<Result<Vec<_>, _>>();
        Ok(Contents {
            addrs: self
                .addrs
                .keys()
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading {}", names::MAP_DECAP_ADDRS))?,
            vips: self
                .vips
                .keys()
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading {}", names::MAP_DECAP_VIPS))?,
            config: self.config()?,
            sources4: keys4
                .with_context(|| format!("reading {}", names::MAP_DECAP_SOURCES_V4))?
                .iter()
                .map(|k| (k.prefix_len(), k.data()))
                .collect(),
            sources6: keys6
                .with_context(|| format!("reading {}", names::MAP_DECAP_SOURCES_V6))?
                .iter()
                .map(|k| (k.prefix_len(), k.data()))
                .collect(),
        })
    }

    /// Writes `want` in the order `sync` describes.
    fn write(&mut self, want: &Contents) -> anyhow::Result<()> {
        add_keys(
            &mut self.addrs,
            &want.addrs,
            DECAP_ADDRS_MAX,
            names::MAP_DECAP_ADDRS,
        )?;
        add_keys(
            &mut self.vips,
            &want.vips,
            DECAP_VIPS_MAX,
            names::MAP_DECAP_VIPS,
        )?;
        // The tries hold at most DECAP_SOURCES_MAX prefixes each: an entry
        // already there is not added again, and when the new ones would not
        // fit next to the stale ones, the stale ones go first (only while
        // the check stays on: turned off, the flag goes before the tries
        // empty).
        let check_on = want.config.flags & DECAP_F_SOURCES != 0;
        add_prefixes(
            &mut self.sources4,
            &want.sources4,
            check_on,
            names::MAP_DECAP_SOURCES_V4,
        )?;
        add_prefixes(
            &mut self.sources6,
            &want.sources6,
            check_on,
            names::MAP_DECAP_SOURCES_V6,
        )?;
        self.config
            .set(0, want.config, 0)
            .with_context(|| format!("writing {}", names::MAP_DECAP_CONFIG))?;
        remove_stale_prefixes(
            &mut self.sources4,
            &want.sources4,
            names::MAP_DECAP_SOURCES_V4,
        )?;
        remove_stale_prefixes(
            &mut self.sources6,
            &want.sources6,
            names::MAP_DECAP_SOURCES_V6,
        )?;
        remove_stale_keys(&mut self.addrs, &want.addrs, names::MAP_DECAP_ADDRS)?;
        remove_stale_keys(&mut self.vips, &want.vips, names::MAP_DECAP_VIPS)?;
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

/// Everything `sync` writes: what the maps are to hold, or held before.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    addrs: HashSet<DecapAddr>,
    vips: HashSet<VipKey>,
    config: DecapConfig,
    sources4: HashSet<(u32, [u8; 4])>,
    sources6: HashSet<(u32, [u8; 16])>,
}

impl Contents {
    /// What `settings` asks the maps to hold.
    fn of(settings: &Settings) -> Self {
        Self {
            addrs: settings.addresses.iter().map(|a| decap_addr(*a)).collect(),
            vips: settings.vips.iter().map(vip_key).collect(),
            config: settings.config,
            sources4: settings
                .sources
                .iter()
                .filter_map(|p| match p.addr {
                    IpAddr::V4(a) => Some((u32::from(p.len), a.octets())),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            sources6: settings
                .sources
                .iter()
                .filter_map(|p| match p.addr {
                    IpAddr::V6(a) => Some((u32::from(p.len), a.octets())),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        }
    }
}

/// A `sync` that failed half-way and could not put the maps back either:
/// they hold part of the new configuration and part of the old, so the
/// caller must not say the previous one stays in force.
#[derive(Debug)]
pub struct PartlyApplied {
    error: anyhow::Error,
    restore: anyhow::Error,
}

impl std::fmt::Display for PartlyApplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "updating the maps failed ({:#}), and putting them back failed too ({:#}): they hold part of the new configuration and part of the old (`lb-decap status` shows which)",
            self.error, self.restore
        )
    }
}

impl std::error::Error for PartlyApplied {}

/// Adds to the hash map `map` (at most `max` entries, preallocated: a new
/// key does not fit in a full one) the keys of `want` it lacks. When they
/// would not fit next to the stale ones, the stale ones are removed first
/// (nothing wanted is ever missing meanwhile). More than `max` wanted is
/// refused before anything changes.
fn add_keys<T, K>(
    map: &mut HashMap<T, K, u32>,
    want: &HashSet<K>,
    max: u32,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    if want.len() > max as usize {
        bail!(
            "{} entries wanted in {name}, which holds at most {max}",
            want.len()
        );
    }
    let present: HashSet<K> = map
        .keys()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {name}"))?;
    let add: Vec<&K> = want.difference(&present).collect();
    if present.len() + add.len() > max as usize {
        remove_stale_keys(map, want, name)?;
    }
    for key in add {
        map.insert(key, 1, 0).with_context(|| {
            format!(
                "adding an entry to {name} (it holds at most {max}; {} wanted)",
                want.len()
            )
        })?;
    }
    Ok(())
}

/// Removes from the hash map `map` the keys not in `want`.
fn remove_stale_keys<T, K>(
    map: &mut HashMap<T, K, u32>,
    want: &HashSet<K>,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    let stale: Vec<K> = map
        .keys()
        .collect::<Result<Vec<K>, _>>()
        .with_context(|| format!("reading {name}"))?
        .into_iter()
        .filter(|k| !want.contains(k))
        .collect();
    for key in stale {
        map.remove(&key)
            .with_context(|| format!("removing an entry from {name}"))?;
    }
    Ok(())
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
        trie.insert(&Key::new(*len, *data), 1, 0).with_context(|| {
            format!("adding a prefix to {name} (it holds at most {DECAP_SOURCES_MAX})")
        })?;
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

/// An address as the maps key it (family, network-order words); None
/// for a family the maps do not hold.
pub(crate) fn ip_of(family: u8, addr: [u32; 4]) -> Option<IpAddr> {
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

    /// The keys `map` holds.
    fn keys_of(map: &HashMap<MapData, u32, u32>) -> HashSet<u32> {
        map.keys().map(|k| k.expect("key")).collect()
    }

    /// What `sync` does to one hash map.
    fn sync_map(
        map: &mut HashMap<MapData, u32, u32>,
        want: &HashSet<u32>,
        max: u32,
    ) -> anyhow::Result<()> {
        add_keys(map, want, max, "TEST")?;
        remove_stale_keys(map, want, "TEST")
    }

    #[test]
    fn a_full_hash_map_takes_a_set_differing_by_one_and_a_disjoint_one() {
        // Preallocated, as DECAP_ADDRS and DECAP_VIPS: full, it refuses a
        // new key (E2BIG) even while stale ones are about to go.
        const MAX: u32 = 16;
        let mut map =
            HashMap::<MapData, u32, u32>::create(MAX, 0).expect("a hash map (runs as root)");
        let full: HashSet<u32> = (0..MAX).collect();
        sync_map(&mut map, &full, MAX).expect("full");
        assert_eq!(keys_of(&map), full);
        let one_changed: HashSet<u32> = (1..=MAX).collect();
        sync_map(&mut map, &one_changed, MAX).expect("one changed");
        assert_eq!(keys_of(&map), one_changed);
        let disjoint: HashSet<u32> = (100..100 + MAX).collect();
        sync_map(&mut map, &disjoint, MAX).expect("a disjoint set");
        assert_eq!(keys_of(&map), disjoint);
        // More than it holds: refused, the limit named, nothing changed.
        let too_many: HashSet<u32> = (0..=MAX).collect();
        let error = format!("{:#}", sync_map(&mut map, &too_many, MAX).expect_err("17"));
        assert!(
            error.contains("17 entries wanted in TEST, which holds at most 16"),
            "{error}"
        );
        assert_eq!(keys_of(&map), disjoint);
    }

    /// Settings with `vips` (TCP port 80 of 198.18.0.0 + i) and `sources`.
    fn settings(vips: std::ops::Range<u32>, sources: Vec<Prefix>) -> Settings {
        let flags = lb_common::decap::DECAP_F_IPIP
            | if sources.is_empty() {
                0
            } else {
                DECAP_F_SOURCES
            };
        Settings {
            interfaces: vec!["lo".to_owned()],
            attach: crate::config::Attach::Xdp,
            xdp_mode: crate::config::XdpMode::Auto,
            addresses: vec!["198.19.2.11".parse().expect("address")],
            addresses_from_interface: false,
            sources,
            vips: vips
                .map(|i| Vip {
                    addr: IpAddr::from((u32::from_be_bytes([198, 18, 0, 0]) + i).to_be_bytes()),
                    port: 80,
                    proto: lb_common::consts::IPPROTO_TCP,
                })
                .collect(),
            config: DecapConfig { gue_port: 0, flags },
        }
    }

    #[test]
    fn the_decap_maps_take_a_change_at_their_limit_and_a_failed_write_is_undone() {
        let mut ebpf = crate::dataplane::load_object().expect("the decap object (runs as root)");
        let mut taken = take(&mut ebpf).expect("maps");
        let mut maps = Maps::borrowed(&mut taken).expect("views");
        let max = DECAP_VIPS_MAX;
        let source: Prefix = "198.18.200.0/24".parse().expect("prefix");
        let full = settings(0..max, vec![source]);
        maps.sync(&full).expect("full");
        assert_eq!(maps.vips(), full.vips);
        let shifted = settings(1..max + 1, vec![source]);
        maps.sync(&shifted).expect("one VIP changed at the limit");
        assert_eq!(maps.vips(), shifted.vips);
        let disjoint = settings(max..2 * max, vec![source]);
        maps.sync(&disjoint).expect("a disjoint set at the limit");
        assert_eq!(maps.vips(), disjoint.vips);
        let before = maps.contents().expect("contents");
        // A write the kernel refuses half-way (an IPv4 prefix of 33 bits,
        // which no valid file yields), after the VIPs changed: undone.
        let bad = settings(
            0..max,
            vec![Prefix {
                addr: "198.18.201.0".parse().expect("address"),
                len: 33,
            }],
        );
        let error = format!("{:#}", maps.sync(&bad).expect_err("33 bits"));
        assert!(
            error.contains("put back as they were") && error.contains("DECAP_SOURCES_V4"),
            "{error}"
        );
        assert_eq!(maps.contents().expect("contents"), before);
    }

    /// Freezes `map` (`BPF_MAP_FREEZE`): from then on the kernel refuses
    /// every write to it from userspace (the program still reads it), a
    /// write failing each time it is tried.
    fn freeze(map: &Map) {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        /// `BPF_MAP_FREEZE` in the kernel's `enum bpf_cmd`.
        const BPF_MAP_FREEZE: libc::c_long = 22;
        let Map::Array(data) = map else {
            panic!("not an array: {map:?}");
        };
        // `union bpf_attr` as the command reads it: the map's fd, the rest
        // zero (the kernel checks it is).
        let mut attr = [0u32; 32];
        attr[0] = u32::try_from(data.fd().as_fd().as_raw_fd()).expect("fd");
        // SAFETY: `attr` is a valid, zeroed attribute block of that size.
        let done = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_FREEZE,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        assert_eq!(
            done,
            0,
            "BPF_MAP_FREEZE: {}",
            std::io::Error::last_os_error()
        );
    }

    #[test]
    fn a_failed_write_that_cannot_be_undone_is_reported_as_partly_applied() {
        let mut ebpf = crate::dataplane::load_object().expect("the decap object (runs as root)");
        let mut taken = take(&mut ebpf).expect("maps");
        let source: Prefix = "198.18.200.0/24".parse().expect("prefix");
        // In force: VIPs 0..4, any source. Asked for: VIPs 2..6, sources
        // checked (the flag in DECAP_CONFIG, the prefix in the trie).
        let old = settings(0..4, vec![]);
        let new = settings(2..6, vec![source]);
        Maps::borrowed(&mut taken)
            .expect("views")
            .sync(&old)
            .expect("in force");
        // DECAP_CONFIG then refuses every write: the new VIPs and prefix
        // are written before it, and putting them back writes it again.
        freeze(&taken[2]);
        let mut maps = Maps::borrowed(&mut taken).expect("views");
        let error = maps.sync(&new).expect_err("DECAP_CONFIG refuses writes");
        // As `lb-decap apply`/`run` wrap it (`dataplane::apply`, `apply`):
        // still told apart from an update put back (`run`'s log says the
        // maps hold part of the new configuration, not that the previous
        // one stays in force; `reload_failed`).
        let error = error.context("applying /etc/lbd/lb-decap.toml");
        assert!(error.downcast_ref::<PartlyApplied>().is_some(), "{error:#}");
        let text = format!("{error:#}");
        for said in [
            "updating the maps failed (writing DECAP_CONFIG",
            "putting them back failed too (writing DECAP_CONFIG",
            "part of the new configuration and part of the old",
            "`lb-decap status` shows which",
        ] {
            assert!(text.contains(said), "{said:?} not in {text}");
        }
        assert!(!text.contains("put back as they were"), "{text}");
        // What the maps hold, as `lb-decap status` reads it: the VIPs of
        // both, the new prefix, the old DECAP_CONFIG (sources unchecked).
        assert_eq!(maps.vips(), settings(0..6, vec![]).vips);
        assert_eq!(maps.sources(), vec![source]);
        assert_eq!(maps.config().expect("config"), old.config);
        assert_eq!(maps.addresses(), old.addresses);
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
