//! `maps`' tests: the keys' layout, and `sync` on real maps (a full hash
//! map, a full trie, the decap object's maps at their limits, a failed
//! write undone or reported as partly applied). Need root.

use std::{collections::HashSet, net::IpAddr};

use aya::maps::{lpm_trie::LpmTrie, HashMap, Map, MapData};
use lb_common::decap::{DecapConfig, DECAP_F_SOURCES, DECAP_SOURCES_MAX, DECAP_VIPS_MAX};

use super::{
    decap_addr,
    hash_writes::{add_keys, remove_stale_keys},
    ip_of, take,
    trie_writes::{add_prefixes, remove_stale_prefixes},
    vip_key, Maps, PartlyApplied,
};
use crate::{
    config::{Settings, Vip},
    sources::Prefix,
};

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
    let mut map = HashMap::<MapData, u32, u32>::create(MAX, 0).expect("a hash map (runs as root)");
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
