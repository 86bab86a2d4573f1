//! Opening the old NAT tables and the carry's order of their flows.

use std::collections::HashMap as StdHashMap;

use std::{mem::size_of, path::Path};

use aya::maps::MapInfo;
use lb_common::{
    consts::{names, NAT_DIR_FORWARD, NAT_DIR_REPLY},
    nat::{counterpart_key, NatBucket},
};

use super::{
    carry::{Carry, Placement, PLACEMENT_BYTES},
    source::Source,
    *,
};
use crate::nat::table::NatFlowTable;

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

/// A NAT flow table set aside (`RESIZED_PIN`) whose buckets are not
/// this release's (an lbd of another release set it aside) is not
/// read at the wrong stride: refused, its pin removed at once, as the
/// connection table's is. One of this release's layout is opened.
#[test]
fn a_nat_table_set_aside_in_another_layout_is_not_carried_over() {
    use crate::pinning::test_support::{pin_map, TestBpffs};
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    const BPF_F_MMAPABLE: u32 = 0x400;
    let Some(bpffs) = TestBpffs::new("nat-aside") else {
        return;
    };
    let pins = bpffs.pins();
    pins.prepare().expect("the pin directory");
    let aside = pins.map_path(RESIZED_PIN);
    let bucket = size_of::<NatBucket>() as u32;
    for (value, carried) in [(bucket + 64, false), (bucket, true)] {
        let map = pin_map(&aside, BPF_MAP_TYPE_ARRAY, (4, value), 64, BPF_F_MMAPABLE);
        let opened = LegacyNat::open(&pins, 128).expect("not refused");
        assert_eq!(opened.is_some(), carried, "value of {value} bytes");
        assert_eq!(aside.exists(), carried, "value of {value} bytes");
        drop(opened);
        drop(map);
        let _ = std::fs::remove_file(&aside);
    }
}

/// A NAT bucket table of `buckets` buckets pinned at `path`, as lbd's
/// program makes it, mapped.
fn nat_table(path: &Path, buckets: u32) -> NatFlowTable {
    use crate::pinning::test_support::pin_map;
    let value = size_of::<NatBucket>() as u32;
    let map = pin_map(path, 2, (4, value), buckets, 0x400);
    NatFlowTable::new(map, buckets).expect("mapped")
}

fn id_at(path: &Path) -> Option<u32> {
    MapInfo::from_pin(path).ok().map(|info| info.id())
}

/// `[nat] flow_table_size` changed twice, the first change's lbd
/// stopped after its swap and before its `finish`: the pinned table
/// (the one its program wrote, flows opened since only there) is set
/// aside too rather than left to the load to remove, and both are
/// carried over; a third table of another size refuses the load and
/// moves nothing.
#[test]
fn a_second_resize_before_the_first_finished_carries_both_nat_tables() {
    use crate::pinning::test_support::TestBpffs;
    let Some(bpffs) = TestBpffs::new("nat-resized-twice") else {
        return;
    };
    let pins = bpffs.pins();
    pins.prepare().expect("the pin directory");
    let aside = pins.map_path(RESIZED_PIN);
    let again = pins.map_path(RESIZED_AGAIN_PIN);
    let pinned = pins.map_path(names::MAP_NAT_BUCKETS);
    let first = nat_table(&aside, 64);
    let second = nat_table(&pinned, 128);
    let (first_id, second_id) = (id_at(&aside), id_at(&pinned));
    for (table, n, port) in [(&first, 1, 2000), (&second, 2, 2001)] {
        for (key, entry) in flow(n, port) {
            table.install(&key, &entry).expect("installed");
        }
    }
    assert!(LegacyNat::pending(&pins, 256));
    let legacy = LegacyNat::open(&pins, 256)
        .expect("not refused")
        .expect("tables to carry over");
    assert!(!pinned.exists(), "the pinned table is set aside");
    assert_eq!(id_at(&aside), first_id);
    assert_eq!(id_at(&again), second_id);
    let (pairs, unpaired) = carried(&legacy.carry());
    let mut clients: Vec<u32> = pairs.iter().map(|pair| pair[0].0.src[0]).collect();
    clients.sort_unstable();
    assert_eq!((clients, unpaired), (vec![1, 2], 0));
    drop(legacy);
    // A third table, of yet another size, pinned by a start that
    // stopped the same way: refused, every pin left as it was.
    let third = nat_table(&pinned, 512);
    let ids = [&aside, &again, &pinned].map(|path| id_at(path));
    let Err(refused) = LegacyNat::open(&pins, 256) else {
        panic!("refused");
    };
    assert!(
        refused.0.contains("flow_table_size = 2048"),
        "the size that adopts the pinned table: {refused}"
    );
    assert_eq!([&aside, &again, &pinned].map(|path| id_at(path)), ids);
    // At the pinned table's size: adopted, both set aside carried,
    // and gone after the swap.
    let legacy = LegacyNat::open(&pins, 512)
        .expect("not refused")
        .expect("tables to carry over");
    assert_eq!(legacy.tables.len(), 2);
    legacy.finish();
    assert!(!aside.exists() && !again.exists());
    assert_eq!(id_at(&pinned), ids[2]);
    drop((first, second, third));
}

/// The pairs a carry installs, in its order, each read back from
/// its table, and the halves it counted.
fn carried(carry: &Carry<'_>) -> (Vec<Pair>, u64) {
    let pairs = carry
        .order()
        .iter()
        .map(|placement| carry.pair(placement).expect("still held"))
        .collect();
    (pairs, carry.unpaired())
}

/// A kernel hash map's flows as the carry reads them (a copy).
fn copied(pairs: &[Pair]) -> Source<'static> {
    Source::copied(pairs.iter().flatten().copied().collect())
}

/// The flows of tables given as their pairs, merged.
fn merge(tables: Vec<Vec<Pair>>) -> Vec<Pair> {
    let carry = Carry::new(tables.iter().map(|pairs| copied(pairs)).collect());
    carried(&carry).0
}

/// `entries` (one table's) as pairs, and the count of halves.
fn pair_up(entries: Vec<(FlowKey, NatEntry)>) -> (Vec<Pair>, u64) {
    carried(&Carry::new(vec![Source::copied(entries)]))
}

/// What the carry made before it read the tables in place (each
/// copied into a map, paired, merged through another map): the
/// reference the in-place carry must agree with.
fn copying_carry(tables: Vec<Vec<(FlowKey, NatEntry)>>) -> (Vec<Pair>, u64) {
    let mut unpaired = 0;
    let mut flows: StdHashMap<FlowKey, Pair> = StdHashMap::new();
    for entries in tables {
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
        unpaired += total.saturating_sub(2 * pairs.len() as u64);
        for pair in pairs {
            flows
                .entry(pair[0].0)
                .and_modify(|held| {
                    if last_seen(&pair) > last_seen(held) {
                        *held = pair;
                    }
                })
                .or_insert(pair);
        }
    }
    let mut pairs: Vec<Pair> = flows.into_values().collect();
    pairs.sort_by_key(|pair| std::cmp::Reverse(last_seen(pair)));
    (pairs, unpaired)
}

/// `pair` stamped: its forward entry seen at `at`, its reply at half.
fn seen(mut pair: Pair, at: u64) -> Pair {
    pair[0].1.last_seen_ns = at;
    pair[1].1.last_seen_ns = at / 2;
    pair
}

fn install(table: &NatFlowTable, entries: &[(FlowKey, NatEntry)]) {
    for (key, entry) in entries {
        table.install(key, entry).expect("installed");
    }
}

/// Two mapped bucket tables (a resize's, as `open_resized` finds
/// them), read in place: the same flows, the same halves counted, and
/// the same table's copy of a flow both hold, as the carry that copied
/// both into maps gave; the freshest first.
#[test]
fn carrying_mapped_tables_in_place_gives_the_pairs_the_copying_carry_gave() {
    use crate::pinning::test_support::TestBpffs;
    let Some(bpffs) = TestBpffs::new("nat-carry-in-place") else {
        return;
    };
    let pins = bpffs.pins();
    pins.prepare().expect("the pin directory");
    let first = nat_table(&pins.map_path("nat_carry_first"), 64);
    let second = nat_table(&pins.map_path("nat_carry_second"), 128);
    for n in 1..=40 {
        install(
            &first,
            &seen(flow(n, 2000 + n as u16), 1_000 + u64::from(n)),
        );
        install(
            &second,
            &seen(flow(n + 40, 3000 + n as u16), 2_000 + u64::from(n)),
        );
    }
    // In both, on other ports: the first table saw the odd ones
    // later, the second the even ones; 99 both at once (the first
    // table's copy stays, as the copying merge kept it).
    for n in 81..=99 {
        let (a, b) = if n % 2 == 1 {
            (5_000, 4_000)
        } else {
            (4_000, 5_000)
        };
        let (a, b) = if n == 99 {
            (6_000, 6_000)
        } else {
            (a + n, b + n)
        };
        install(&first, &seen(flow(n, 4000 + n as u16), u64::from(a)));
        install(&second, &seen(flow(n, 5000 + n as u16), u64::from(b)));
    }
    // Halves: a forward entry alone, a reply alone, and a pair whose
    // reply names another key.
    install(&first, &seen(flow(200, 6000), 7_000)[..1]);
    install(&second, &seen(flow(201, 6001), 7_000)[1..]);
    let mut wrong = seen(flow(202, 6002), 7_000);
    wrong[1].1.dport = 999;
    install(&first, &wrong);
    let carry = Carry::new(vec![Source::Mapped(&first), Source::Mapped(&second)]);
    let (pairs, unpaired) = carried(&carry);
    let (expected, expected_unpaired) =
        copying_carry(vec![first.iter().collect(), second.iter().collect()]);
    assert_eq!(unpaired, expected_unpaired);
    assert_eq!(unpaired, 4);
    assert!(
        pairs
            .windows(2)
            .all(|w| last_seen(&w[0]) >= last_seen(&w[1])),
        "the freshest first"
    );
    let by_client = |mut pairs: Vec<Pair>| {
        pairs.sort_by_key(|pair| pair[0].0.src[0]);
        pairs
    };
    let (pairs, expected) = (by_client(pairs), by_client(expected));
    assert_eq!(pairs.len(), 99);
    assert_eq!(pairs, expected);
    let tie = pairs.iter().find(|pair| pair[0].0.src[0] == 99);
    assert_eq!(tie.map(|pair| pair[0].1.sport), Some(4099));
}

/// A carry holds one small placement per flow, never a copy of a
/// mapped table: the pairs it installs are read from the table when
/// installed (a mark the old program made after the walk is carried).
#[test]
fn a_carry_reads_each_flow_from_the_mapped_table_when_installing_it() {
    use crate::pinning::test_support::TestBpffs;
    assert_eq!(size_of::<Placement>(), PLACEMENT_BYTES);
    assert_eq!(PLACEMENT_BYTES, 16);
    let Some(bpffs) = TestBpffs::new("nat-carry-lazy") else {
        return;
    };
    let pins = bpffs.pins();
    pins.prepare().expect("the pin directory");
    let table = nat_table(&pins.map_path("nat_carry_lazy"), 64);
    install(&table, &seen(flow(1, 2000), 100));
    install(&table, &seen(flow(2, 2001), 200));
    let carry = Carry::new(vec![Source::Mapped(&table)]);
    assert_eq!(carry.flows(), 2);
    let [mut forward, _] = seen(flow(1, 2000), 300);
    forward.1.flags = lb_common::consts::NAT_F_FIN;
    table.install(&forward.0, &forward.1).expect("marked");
    let (pairs, _) = carried(&carry);
    let marked = pairs.iter().find(|pair| pair[0].0 == forward.0);
    assert_eq!(marked.map(|pair| pair[0].1), Some(forward.1));
}

#[test]
fn two_tables_merge_each_flow_as_last_seen_the_freshest_first() {
    // A table moved aside earlier (a snapshot) and the live one: flow
    // 1 in both (the live one saw it later, on another port), flow 2
    // only in the snapshot, flow 3 only in the live one.
    let snapshot = vec![seen(flow(1, 2000), 100), seen(flow(2, 2001), 50)];
    let live = vec![seen(flow(1, 2005), 300), seen(flow(3, 2002), 200)];
    let merged = merge(vec![snapshot.clone(), live.clone()]);
    assert_eq!(merged, vec![live[0], live[1], snapshot[1]]);
    // Whichever table comes first.
    assert_eq!(merge(vec![live.clone(), snapshot.clone()]), merged);
    assert!(merge(Vec::new()).is_empty());
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
