//! A tracked flow whose way is held busy (a rewrite in progress, as lbd's
//! thread preempted between its claim and its publish) through the real
//! program: its packets are neither charged to the source's limit nor
//! inserted a second time.

use lb_common::{
    consts::names,
    flow_table::{
        bucket_index, buckets_for, fingerprint, nearby_bucket_index, FlowBucket, FLOW_WAYS,
        TAG_BUSY, TAG_VALID,
    },
    stats::Counter,
    FlowKey,
};
use lb_tests::{
    packet::{self, Flow, ACK, SYN},
    testbed::{action, flow_key, vip4_tcp, Hook, TestBed},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    conntrack::kind::ConntrackKind,
    dataplane::LoadOptions,
    guard::{GuardConfig, Limits, RateLimit, Scope},
    vip_id::VipId,
};

fn flow(src: &str, sport: u16, vip: &VipConfig) -> Flow {
    Flow {
        src: src.parse().expect("addr"),
        dst: vip.address,
        sport,
        dport: vip.port,
    }
}

fn forwarded(bed: &mut TestBed, vip: &VipConfig, flow: &Flow, frame: &[u8], what: &str) {
    let (_, mac) = bed.maglev_backend(vip, flow).expect("a backend");
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::TX, "{what} is forwarded");
    assert_eq!(out, packet::forwarded(frame, mac), "{what}'s frame");
}

/// The bed's connection table (64 flows) as another writer maps it.
struct Table {
    mapping: lb_userspace::shared_mapping::SharedMapping,
    buckets: u32,
}

impl Table {
    fn of(pins: &lb_userspace::pinning::PinDir) -> Self {
        let map =
            aya::maps::MapData::from_pin(pins.map_path(names::MAP_FLOW_BUCKETS)).expect("pin");
        let buckets = buckets_for(64);
        let len = buckets as usize * std::mem::size_of::<FlowBucket>();
        let mapping = lb_userspace::shared_mapping::SharedMapping::new(map, len).expect("mmap");
        Self { mapping, buckets }
    }

    fn ways_of(&self, key: &FlowKey) -> Vec<(*mut u64, *const FlowKey)> {
        let table = self.mapping.base::<FlowBucket>().as_ptr();
        let place = lb_common::hash::table_hash(key);
        let mut out = Vec::new();
        for b in [
            bucket_index(place, self.buckets - 1),
            nearby_bucket_index(place, self.buckets - 1),
        ] {
            let bucket = unsafe { table.add(b as usize) };
            for w in 0..FLOW_WAYS {
                unsafe {
                    out.push((
                        std::ptr::addr_of_mut!((*bucket).tags[w]),
                        std::ptr::addr_of!((*bucket).slots[w].key),
                    ))
                };
            }
        }
        out
    }

    /// Valid ways holding `key`.
    fn copies(&self, key: &FlowKey) -> usize {
        self.ways_of(key)
            .iter()
            .filter(|&&(t, k)| unsafe {
                (t.read_volatile() & 3) == u64::from(TAG_VALID) && *k == *key
            })
            .count()
    }

    /// Sets `key`'s valid way busy (fingerprint kept); returns its tag
    /// pointer and the tag.
    fn hold(&self, key: &FlowKey) -> (*mut u64, u64) {
        let fp = u64::from(fingerprint(lb_common::hash::table_hash(key)));
        for (t, k) in self.ways_of(key) {
            let tag = unsafe { t.read_volatile() };
            if tag & 3 == u64::from(TAG_VALID)
                && (tag >> 16) & 0xffff == fp
                && unsafe { *k == *key }
            {
                unsafe { t.write_volatile((tag & !3) | u64::from(TAG_BUSY)) };
                return (t, tag);
            }
        }
        panic!("{key:?} not in the table");
    }
}

#[test]
fn a_flow_being_rewritten_is_neither_limited_nor_inserted_again() {
    let dir = lb_tests::lab::TestPins::new("lbtbw", "busy").expect("pin directory");
    let pins = dir.pins();
    let options = LoadOptions {
        conntrack_kind: ConntrackKind::Buckets,
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let v4 = vip4_tcp();
    let mut bed =
        TestBed::with_options(std::slice::from_ref(&v4), Hook::Xdp, 64, &options).expect("bed");
    let mut guard = None;
    bed.set_guard(
        &mut guard,
        GuardConfig {
            limits: [(
                Scope::Vip(VipId::of(&v4)),
                Limits {
                    source: Some(RateLimit::new(1, Some(1), "test").expect("rate")),
                    ..Limits::default()
                },
            )]
            .into_iter()
            .collect(),
            ..GuardConfig::default()
        },
    )
    .expect("guard");
    let table = Table::of(&pins);

    // Flow X opens (its source's one token), established.
    let x = flow("198.18.0.10", 40000, &v4);
    let xk = flow_key(&x, Protocol::Tcp);
    forwarded(
        &mut bed,
        &v4,
        &x,
        &packet::tcp(&x, SYN, None, b""),
        "X's SYN",
    );
    forwarded(
        &mut bed,
        &v4,
        &x,
        &packet::tcp(&x, ACK, None, b"a"),
        "X's ACK",
    );
    assert_eq!(table.copies(&xk), 1);
    let limited = bed.counter(Counter::DropRateLimited).expect("counter");
    // Its way held by a writer: its next packet, no token left.
    let (t, tag) = table.hold(&xk);
    let (verdict, _) = bed.run(&packet::tcp(&x, ACK, None, b"b")).expect("run");
    let dropped = bed.counter(Counter::DropRateLimited).expect("counter") - limited;
    let copies_meanwhile = table.copies(&xk);
    unsafe { t.write_volatile(tag) };
    let copies = table.copies(&xk);
    eprintln!(
        "verdict {verdict}, rate-limited {dropped}, valid copies while busy {copies_meanwhile}, after {copies}"
    );
    let x_ok = dropped == 0 && verdict == action::TX && copies == 1;
    bed.set_guard(&mut guard, GuardConfig::default())
        .expect("no limits");

    // Flow Y of another source (tokens left): no second copy either.
    let y = flow("198.18.0.11", 40000, &v4);
    let yk = flow_key(&y, Protocol::Tcp);
    forwarded(
        &mut bed,
        &v4,
        &y,
        &packet::tcp(&y, SYN, None, b""),
        "Y's SYN",
    );
    forwarded(
        &mut bed,
        &v4,
        &y,
        &packet::tcp(&y, ACK, None, b"a"),
        "Y's ACK",
    );
    let (t, tag) = table.hold(&yk);
    forwarded(
        &mut bed,
        &v4,
        &y,
        &packet::tcp(&y, ACK, None, b"b"),
        "Y's packet, way busy",
    );
    unsafe { t.write_volatile(tag) };
    let y_copies = table.copies(&yk);
    forwarded(
        &mut bed,
        &v4,
        &y,
        &packet::tcp(&y, ACK, None, b"c"),
        "Y's packet",
    );
    let y_after = table.copies(&yk);
    eprintln!("Y: copies after the window {y_copies}, after another packet {y_after}");
    assert!(x_ok, "X: an established flow is never limited, one copy");
    assert_eq!((y_copies, y_after), (1, 1), "one copy of Y");
}

/// A writer killed between its claim and its publish (lbd, rewriting a
/// flow) leaves the way held for good: the flow's packets go untracked
/// (nothing inserts beside a held way carrying its fingerprint). The next
/// lbd's start empties such ways (`FlowTable::reclaim_abandoned`, run at
/// adoption), and the flow is tracked again.
#[test]
fn a_way_left_held_by_a_dead_writer_is_reclaimed() {
    let dir = lb_tests::lab::TestPins::new("lbtbr", "reclaim").expect("pin directory");
    let pins = dir.pins();
    let options = LoadOptions {
        conntrack_kind: ConntrackKind::Buckets,
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let v4 = vip4_tcp();
    let mut bed =
        TestBed::with_options(std::slice::from_ref(&v4), Hook::Xdp, 64, &options).expect("bed");
    let table = Table::of(&pins);
    let x = flow("198.18.0.10", 40000, &v4);
    let xk = flow_key(&x, Protocol::Tcp);
    forwarded(
        &mut bed,
        &v4,
        &x,
        &packet::tcp(&x, SYN, None, b""),
        "X's SYN",
    );
    forwarded(
        &mut bed,
        &v4,
        &x,
        &packet::tcp(&x, ACK, None, b"a"),
        "X's ACK",
    );
    assert_eq!(table.copies(&xk), 1);
    // Held and never published: the writer died.
    let _ = table.hold(&xk);
    forwarded(
        &mut bed,
        &v4,
        &x,
        &packet::tcp(&x, ACK, None, b"b"),
        "X's packet, way held",
    );
    assert_eq!(table.copies(&xk), 0, "untracked while its way is held");

    let lbd_view = lb_userspace::conntrack::table::FlowTable::new(
        aya::maps::MapData::from_pin(pins.map_path(names::MAP_FLOW_BUCKETS)).expect("pin"),
        table.buckets,
        lb_userspace::conntrack::table::Placement::ByTableHash,
    )
    .expect("the table");
    assert_eq!(
        lbd_view.reclaim_abandoned(std::time::Duration::from_millis(20)),
        1
    );
    assert_eq!(
        lbd_view.reclaim_abandoned(std::time::Duration::from_millis(20)),
        0
    );
    forwarded(
        &mut bed,
        &v4,
        &x,
        &packet::tcp(&x, ACK, None, b"c"),
        "X's packet",
    );
    assert_eq!(table.copies(&xk), 1, "tracked again");
}
