//! The VIP index (`VIP_INDEX`) under BPF_PROG_TEST_RUN, on both hooks:
//! the packet path finds VIPs there with plain loads, asks the kernel's
//! `VIPS` map when a lookup overlaps a write of the index, and a
//! restarted lbd adopts the index in place or, from a release that pinned
//! none, builds it from `VIPS` before its program runs. Needs root.

use std::path::PathBuf;

use aya::maps::MapData;
use lb_common::{
    consts::{names, HALF_OPEN_SIZE_DEFAULT, NAT_FLOWS_SIZE_DEFAULT},
    vip_index::{vip_buckets, vip_index_buckets_for, VipIndexBucket, VipIndexHeader},
    VipKey,
};
use lb_tests::{
    packet::{self, Flow, ACK},
    testbed::{action, backend, flow_key, vip, vip4_tcp, vip6_tcp, Hook, TestBed},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    dataplane::{Dataplane, LoadOptions, MapSizes},
    reconcile::Balancer,
    shared_mapping::SharedMapping,
};

const MAX_VIPS: u32 = 4;

fn sizes() -> MapSizes {
    MapSizes {
        max_vips: MAX_VIPS,
        conntrack: 4096,
        nat_flows: NAT_FLOWS_SIZE_DEFAULT,
        half_open: HALF_OPEN_SIZE_DEFAULT,
    }
}

/// The first packet of a flow from a client to `vip`.
fn flow_to(vip: &VipConfig, sport: u16) -> Flow {
    let v6 = vip.address.is_ipv6();
    Flow {
        src: if v6 { "2001:2::10" } else { "198.18.0.10" }
            .parse()
            .expect("address"),
        dst: vip.address,
        sport,
        dport: vip.port,
    }
}

/// Asserts an ACK of a flow to `vip` goes to its Maglev pick.
fn forwarded(bed: &mut TestBed, vip: &VipConfig, sport: u16, what: &str) {
    let expected = expected(bed, vip, sport);
    forwarded_as(bed, &expected, what);
}

/// An ACK of a flow to `vip` and the frame its Maglev pick gets, as
/// `bed`'s control plane has it.
fn expected(bed: &TestBed, vip: &VipConfig, sport: u16) -> (Vec<u8>, Vec<u8>) {
    let flow = flow_to(vip, sport);
    let frame = packet::tcp(&flow, ACK, None, b"");
    let (_, mac) = bed.maglev_backend(vip, &flow).expect("backend");
    let out = packet::forwarded(&frame, mac);
    (frame, out)
}

/// Asserts `frame` leaves as `out` (see `expected`).
fn forwarded_as(bed: &mut TestBed, (frame, out): &(Vec<u8>, Vec<u8>), what: &str) {
    let (verdict, got) = bed.run(frame).expect("run");
    assert_eq!(verdict, action::TX, "{what}: verdict");
    assert_eq!(&got, out, "{what}: frame");
}

/// Asserts an ACK of a flow to `vip` passes up untouched (not a VIP).
fn passed(bed: &mut TestBed, vip: &VipConfig, sport: u16, what: &str) {
    let frame = packet::tcp(&flow_to(vip, sport), ACK, None, b"");
    let (verdict, out) = bed.run(&frame).expect("run");
    assert_eq!(verdict, action::PASS, "{what}: verdict");
    assert_eq!(out, frame, "{what}: frame untouched");
}

/// Four VIPs (the beds' `max_vips`): two v4 services on one address, a
/// v4 one on another, a v6 one.
fn four_vips() -> Vec<VipConfig> {
    let backends = || vec![backend("198.18.0.21", 1, 1), backend("198.18.0.22", 2, 1)];
    vec![
        vip4_tcp(),
        vip("198.18.0.100", 8080, Protocol::Tcp, backends()),
        vip("198.18.0.101", 80, Protocol::Tcp, backends()),
        vip6_tcp(),
    ]
}

fn vips_added_and_removed_are_seen_by_the_next_packet(hook: Hook) {
    let all = four_vips();
    let mut bed =
        TestBed::with_sizes(&all[..1], hook, sizes(), &LoadOptions::default()).expect("test bed");
    forwarded(&mut bed, &all[0], 40_000, "the first VIP");
    passed(&mut bed, &all[1], 40_000, "a VIP not added yet");
    bed.apply(&all).expect("apply");
    for (i, vip) in all.iter().enumerate() {
        forwarded(&mut bed, vip, 40_001, &format!("VIP {i} of a full index"));
    }
    bed.apply(&all[1..3]).expect("apply");
    passed(&mut bed, &all[0], 40_002, "a removed VIP");
    passed(&mut bed, &all[3], 40_002, "a removed v6 VIP");
    forwarded(&mut bed, &all[1], 40_002, "a VIP kept");
    bed.apply(&all).expect("apply");
    forwarded(&mut bed, &all[3], 40_003, "a VIP added again");
}

/// A pin directory for one test, removed with its pins when the test
/// ends (also when an assertion fails).
struct Pins(lb_tests::lab::TestPins);

impl Pins {
    fn new(name: &str, hook: Hook) -> Self {
        Pins(lb_tests::lab::TestPins::new("lbtvi", &format!("{name}-{hook:?}")).expect("pins"))
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            pins: Some(self.0.pins()),
            ..LoadOptions::default()
        }
    }

    fn index_path(&self) -> PathBuf {
        self.0.pins().map_path(names::MAP_VIP_INDEX)
    }
}

/// The pinned index mapped into this test (as another writer would see
/// it), unmapped on drop.
struct Mapped {
    mapping: SharedMapping,
}

impl Mapped {
    fn open(pins: &Pins) -> Self {
        let map = MapData::from_pin(pins.index_path()).expect("pinned index");
        let len = (1 + vip_index_buckets_for(MAX_VIPS) as usize) * size_of::<VipIndexBucket>();
        Mapped {
            mapping: SharedMapping::new(map, len).expect("mmap of the pinned index"),
        }
    }

    fn base(&self) -> *mut VipIndexBucket {
        self.mapping.base::<VipIndexBucket>().as_ptr()
    }

    fn header(&self) -> *mut VipIndexHeader {
        self.base().cast::<VipIndexHeader>()
    }

    fn generation(&self) -> u64 {
        // SAFETY: bucket 0 is the header.
        unsafe { std::ptr::read_volatile(&raw const (*self.header()).generation) }
    }

    /// Writes the header as lbd would (generation, overflow count).
    fn set(&self, generation: u64, overflow: u64) {
        // SAFETY: bucket 0 is the header.
        unsafe {
            std::ptr::write_volatile(&raw mut (*self.header()).generation, generation);
            std::ptr::write_volatile(&raw mut (*self.header()).overflow, overflow);
        }
    }

    /// Every slot's tag, in order (what the index holds, by place).
    fn tags(&self) -> Vec<u32> {
        let buckets = 1 + vip_index_buckets_for(MAX_VIPS) as usize;
        (1..buckets)
            .flat_map(|b| {
                // SAFETY: within the mapping.
                let bucket = unsafe { &*self.base().add(b) };
                bucket.slots.iter().map(|s| s.tag).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Empties the slots that hold `key`.
    fn forget(&self, key: &VipKey) {
        let (a, b) = vip_buckets(key, vip_index_buckets_for(MAX_VIPS) - 1);
        for bucket in [a, b] {
            for way in 0..2 {
                // SAFETY: a slot within the mapping.
                unsafe {
                    let slot = &raw mut (*self.base().add(bucket as usize)).slots[way];
                    if (*slot).addr == key.addr {
                        std::ptr::write_volatile(&raw mut (*slot).tag, 0);
                    }
                }
            }
        }
    }
}

fn vip_key(vip: &VipConfig) -> VipKey {
    let key = flow_key(&flow_to(vip, 1), vip.protocol);
    VipKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    }
}

/// While lbd writes the index (odd generation) a lookup asks `VIPS`: a
/// VIP is still found even if its slot is empty; with the generation
/// even again, the index alone answers (an emptied slot then reads as
/// no VIP, which is how the test tells the two answers apart).
fn a_lookup_during_a_write_of_the_index_asks_the_vip_map(hook: Hook) {
    let pins = Pins::new("write", hook);
    let vips = [vip4_tcp(), vip6_tcp()];
    let mut bed = TestBed::with_sizes(&vips, hook, sizes(), &pins.options()).expect("bed");
    let index = Mapped::open(&pins);
    let generation = index.generation();
    assert_eq!(generation & 1, 0, "no write under way");
    index.forget(&vip_key(&vips[0]));
    passed(&mut bed, &vips[0], 41_000, "a VIP missing from the index");
    index.set(generation + 1, 0);
    forwarded(&mut bed, &vips[0], 41_001, "the same VIP during a write");
    forwarded(
        &mut bed,
        &vips[1],
        41_001,
        "a VIP still in the index during a write",
    );
    passed(&mut bed, &four_vips()[2], 41_001, "no VIP, during a write");
    // An index that could not hold every VIP (overflow) sends misses to
    // `VIPS` too.
    index.set(generation + 2, 1);
    forwarded(
        &mut bed,
        &vips[0],
        41_002,
        "a VIP the index lacks, overflow noted",
    );
    // lbd's next write puts things right.
    index.set(generation + 2, 0);
    bed.apply(&vips[1..]).expect("apply");
    bed.apply(&vips).expect("apply");
    forwarded(&mut bed, &vips[0], 41_003, "the VIP placed again");
}

/// A restarted lbd (same release) adopts the index as it is: nothing
/// moves, packets find their VIPs before anything is written.
fn a_restart_adopts_the_index_in_place(hook: Hook) {
    let pins = Pins::new("adopt", hook);
    let vips = four_vips();
    let old = TestBed::with_sizes(&vips, hook, sizes(), &pins.options()).expect("bed");
    let before = Mapped::open(&pins).tags();
    let wanted: Vec<_> = vips.iter().map(|v| expected(&old, v, 42_000)).collect();
    drop(old);
    let mut new = restarted(&pins, hook);
    assert!(new.dataplane.adopted());
    assert_eq!(Mapped::open(&pins).tags(), before, "no slot changed");
    for want in &wanted {
        forwarded_as(&mut new, want, "a VIP after the restart");
    }
}

/// A restarted lbd on pins of a release that had no index (its pin
/// missing) builds the index from the adopted `VIPS` before its program
/// runs: packets find their VIPs before anything is applied.
fn an_upgrade_from_a_release_without_the_index_builds_it_from_the_vips(hook: Hook) {
    let pins = Pins::new("upgrade", hook);
    let vips = four_vips();
    let old = TestBed::with_sizes(&vips, hook, sizes(), &pins.options()).expect("bed");
    let wanted: Vec<_> = vips.iter().map(|v| expected(&old, v, 43_000)).collect();
    drop(old);
    std::fs::remove_file(pins.index_path()).expect("unpin the index");
    let mut new = restarted(&pins, hook);
    assert!(
        new.dataplane.adopted(),
        "the rest of the data plane is adopted"
    );
    for want in &wanted {
        forwarded_as(&mut new, want, "a VIP after the upgrade");
    }
    passed(
        &mut new,
        &vip("198.18.0.102", 80, Protocol::Tcp, vec![]),
        43_000,
        "no VIP",
    );
}

/// The next lbd's data plane on the pins the previous one left, nothing
/// applied yet.
fn restarted(pins: &Pins, hook: Hook) -> TestBed {
    let dataplane = Dataplane::load_with(sizes(), &pins.options()).expect("restarted");
    TestBed {
        dataplane,
        balancer: Balancer::new(MAX_VIPS),
        hook,
    }
}

lb_tests::on_both_hooks!(
    vips_added_and_removed_are_seen_by_the_next_packet,
    a_lookup_during_a_write_of_the_index_asks_the_vip_map,
    a_restart_adopts_the_index_in_place,
    an_upgrade_from_a_release_without_the_index_builds_it_from_the_vips,
);
