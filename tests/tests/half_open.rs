//! Half-open TCP flows (handshakes), through the compiled packet path
//! under BPF_PROG_TEST_RUN, for both connection-table designs and IPv4
//! and IPv6, held either way (`Held`): in the bucket table (its default:
//! a SYN takes a way no live flow holds, as a handshake its ACK makes
//! established in place) or apart, in the half-open table (the kernel
//! map's way, and the bucket table's in SYN-flood mode or when the SYN's
//! buckets hold only live flows). Either way the client's ACK completes
//! the flow on the backend its SYN went to (even after the backend set
//! changed), and a SYN flood of distinct sources well past the half-open
//! table's capacity leaves every established flow where it was. Both
//! tables are pinned: a restarted lbd adopts them with the rest of the
//! data plane, so a handshake under way across a restart completes on
//! its SYN's backend. A handshake past the half-open timeout (10 s) is
//! over for a SYN (a new connection, on Maglev's pick of now) and still
//! steers the client's ACK to its SYN's backend. Needs root.

use lb_common::{
    consts::{
        names, FLOW_F_HALF_OPEN, HALF_OPEN_BUCKETS, HALF_OPEN_SIZE_DEFAULT, NAT_FLOWS_SIZE_DEFAULT,
    },
    flow_table::{FLOW_WAYS, HALF_OPEN_IDLE_TICKS},
    stats::Counter,
    FlowKey,
};
use lb_tests::{
    oracle::{check_verdict, Service},
    packet::{self, Flow, ACK, SYN},
    testbed::{action, backend, flow_key, vip4_tcp, vip4_udp, vip6_tcp, Hook, TestBed},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    conntrack::kind::ConntrackKind,
    dataplane::{Dataplane, LoadOptions, MapSizes},
    reconcile::{Balancer, VipId},
};

/// Half-open flows the table has room for.
const HALF_OPEN_SLOTS: u32 = HALF_OPEN_BUCKETS * FLOW_WAYS as u32;

/// Where a SYN's handshake is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// In the connection table (the bucket table, outside flood mode).
    InTable,
    /// In the half-open table (a kernel map; the bucket table in flood
    /// mode, `CONFIG_F_SYN_FLOOD`).
    Apart,
}

/// `bed` set up to hold handshakes as `held` says: flood mode for
/// `Apart` (a kernel map holds them apart anyway).
fn holding(mut bed: TestBed, held: Held) -> TestBed {
    bed.set_syn_flood(held == Held::Apart).expect("flood mode");
    bed
}

fn bed(hook: Hook, kind: ConntrackKind, vips: &[VipConfig], held: Held) -> TestBed {
    let options = LoadOptions {
        conntrack_kind: kind,
        ..LoadOptions::default()
    };
    holding(
        TestBed::with_options(vips, hook, 4096, &options).expect("test bed"),
        held,
    )
}

fn flow(src: &str, sport: u16, vip: &VipConfig) -> Flow {
    Flow {
        src: src.parse().expect("addr"),
        dst: vip.address,
        sport,
        dport: vip.port,
    }
}

fn key(flow: &Flow) -> FlowKey {
    flow_key(flow, Protocol::Tcp)
}

fn counter(bed: &TestBed, counter: Counter) -> u64 {
    bed.counter(counter).expect("counter")
}

/// Sends `frame`; asserts it is forwarded to the backend with `mac`, only
/// the MACs rewritten.
fn forwarded_to(bed: &mut TestBed, frame: &[u8], mac: [u8; 6], what: &str) {
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::TX, "{what} is forwarded");
    assert_eq!(out, packet::forwarded(frame, mac), "{what}'s frame");
}

/// `vip` with a fourth backend: Maglev then moves some flows.
/// Sends `flow`'s first ACK (`what`): forwarded to the backend `(id,
/// mac)` and tracked in the connection table on it.
fn completes_on(bed: &mut TestBed, flow: &Flow, (id, mac): (u32, [u8; 6]), what: &str) {
    forwarded_to(bed, &packet::tcp(flow, ACK, None, b"GET /"), mac, what);
    let tracked = bed.dataplane.flow(&key(flow)).expect("lookup");
    assert_eq!(
        tracked.map(|e| e.backend_id),
        Some(id),
        "{flow:?} is tracked on its SYN's backend"
    );
    let flags = tracked.map_or(0, |e| e.flags);
    assert_eq!(flags & FLOW_F_HALF_OPEN, 0, "{flow:?} is established");
}

/// Asserts `flow`'s handshake is held as `held` says, on backend `id`.
fn held_as(bed: &TestBed, flow: &Flow, id: u32, held: Held) {
    assert_eq!(
        bed.handshake(&key(flow)).map(|e| e.backend_id),
        Some(id),
        "{flow:?} is half-open"
    );
    assert_eq!(
        bed.dataplane.half_open_flow(&key(flow)).is_some(),
        held == Held::Apart,
        "{flow:?} held {held:?}"
    );
    assert_eq!(
        bed.dataplane.flow(&key(flow)).expect("lookup").is_some(),
        held == Held::InTable,
        "{flow:?} held {held:?}"
    );
}

fn grown(vip: &VipConfig) -> VipConfig {
    let mut grown = vip.clone();
    let address = if vip.address.is_ipv4() {
        "198.18.0.14"
    } else {
        "2001:2::14"
    };
    grown.backends.push(backend(address, 0x14, 100));
    grown
}

/// The client address of each VIP's family.
fn client(vip: &VipConfig) -> &'static str {
    if vip.address.is_ipv4() {
        "198.18.0.10"
    } else {
        "2001:2::10"
    }
}

fn a_syns_handshake_is_held_and_its_ack_completes_it_on_the_syn_backend(
    hook: Hook,
    kind: ConntrackKind,
    held: Held,
) {
    let vips = [vip4_tcp(), vip6_tcp(), vip4_udp()];
    let mut bed = bed(hook, kind, &vips, held);
    let mut flows = Vec::new();
    for vip in &vips[..2] {
        for sport in 41_000..41_064 {
            let flow = flow(client(vip), sport, vip);
            let (_, mac) = bed.maglev_backend(vip, &flow).expect("backend");
            let id = bed.maglev_backend_id(vip, &flow).expect("backend id");
            forwarded_to(&mut bed, &packet::tcp(&flow, SYN, None, b""), mac, "a SYN");
            held_as(&bed, &flow, id, held);
            flows.push((vip.clone(), flow, id, mac));
        }
    }
    let syns = flows.len() as u64;
    assert_eq!(counter(&bed, Counter::ConntrackHalfOpenNew), syns);
    assert_eq!(counter(&bed, Counter::ConntrackNew), 0);
    assert_eq!(bed.handshakes(), syns);
    // A retransmitted SYN goes where the first went and adds nothing.
    let (_, first, _, mac) = flows[0].clone();
    forwarded_to(
        &mut bed,
        &packet::tcp(&first, SYN, None, b""),
        mac,
        "a retransmitted SYN",
    );
    assert_eq!(counter(&bed, Counter::ConntrackHalfOpenNew), syns);

    // The backend set changes before the ACKs: Maglev moves some flows,
    // their ACKs still go to their SYN's backend.
    let changed = [grown(&vips[0]), grown(&vips[1]), vips[2].clone()];
    bed.apply(&changed).expect("apply");
    let mut moved = 0;
    for (vip, flow, id, mac) in &flows {
        let grown = changed
            .iter()
            .find(|v| v.address == vip.address)
            .expect("vip");
        if bed.maglev_backend_id(grown, flow).expect("backend id") != *id {
            moved += 1;
        }
        completes_on(
            &mut bed,
            flow,
            (*id, *mac),
            "the ACK that completes the handshake",
        );
        assert_eq!(bed.dataplane.half_open_flow(&key(flow)), None);
    }
    assert!(moved > 0, "the new backend moves some of {syns} flows");
    assert_eq!(counter(&bed, Counter::ConntrackHalfOpenPromoted), syns);
    assert_eq!(counter(&bed, Counter::ConntrackNew), syns);
    assert_eq!(bed.handshakes(), 0);

    // An ACK neither table knows (a flow from before a restart) takes
    // Maglev's pick into the connection table, as before.
    let late = flow(client(&changed[0]), 42_000, &changed[0]);
    let (_, mac) = bed.maglev_backend(&changed[0], &late).expect("backend");
    forwarded_to(
        &mut bed,
        &packet::tcp(&late, ACK, None, b"x"),
        mac,
        "an unknown ACK",
    );
    assert!(bed.dataplane.flow(&key(&late)).expect("lookup").is_some());
    assert_eq!(counter(&bed, Counter::ConntrackNew), syns + 1);
    assert_eq!(counter(&bed, Counter::ConntrackHalfOpenPromoted), syns);

    // UDP has no handshake: straight into the connection table.
    let udp = flow(client(&vips[2]), 5353, &vips[2]);
    let (_, mac) = bed.maglev_backend(&vips[2], &udp).expect("backend");
    forwarded_to(&mut bed, &packet::udp(&udp, None, b"q"), mac, "a UDP query");
    assert!(bed
        .dataplane
        .flow(&flow_key(&udp, Protocol::Udp))
        .expect("lookup")
        .is_some());
    assert_eq!(counter(&bed, Counter::ConntrackNew), syns + 2);
    assert_eq!(counter(&bed, Counter::ConntrackHalfOpenNew), syns);
}

/// Source `n` of a flood, spoofed from 198.19.0.0/16 or 2001:2:0:f::/64.
fn flood_flow(n: u32, vip: &VipConfig) -> Flow {
    let src = if vip.address.is_ipv4() {
        format!("198.19.{}.{}", (n >> 8) & 0xff, n & 0xff)
    } else {
        format!("2001:2:0:f::{:x}:{:x}", n >> 16, n & 0xffff)
    };
    flow(&src, 1024 + (n % 60_000) as u16, vip)
}

/// Sends SYNs 0..`count` of distinct sources (`flood_flow`), three in
/// four to `vips[0]` (IPv4), the rest to `vips[1]`; each goes to a backend.
fn send_flood(bed: &mut TestBed, vips: &[VipConfig], count: u32) {
    for n in 0..count {
        let vip = &vips[usize::from(n % 4 == 3)];
        let syn = packet::tcp(&flood_flow(n, vip), SYN, None, b"");
        let (verdict, _) = bed.run(&syn).expect("test run");
        assert_eq!(verdict, action::TX, "flood SYN {n} goes to a backend");
    }
}

fn a_syn_flood_past_the_half_open_capacity_evicts_no_established_flow(
    kind: ConntrackKind,
    held: Held,
) {
    let vips = [vip4_tcp(), vip6_tcp()];
    let mut bed = bed(Hook::Xdp, kind, &vips, held);
    // Established flows: SYN, then ACK.
    let mut established = Vec::new();
    for vip in &vips {
        for sport in 43_000..43_128 {
            let flow = flow(client(vip), sport, vip);
            let (_, mac) = bed.maglev_backend(vip, &flow).expect("backend");
            forwarded_to(&mut bed, &packet::tcp(&flow, SYN, None, b""), mac, "a SYN");
            forwarded_to(&mut bed, &packet::tcp(&flow, ACK, None, b""), mac, "an ACK");
            let entry = bed.dataplane.flow(&key(&flow)).expect("lookup");
            let entry = entry.unwrap_or_else(|| panic!("{flow:?} is tracked"));
            established.push((flow, entry.backend_id, mac));
        }
    }
    let tracked = established.len() as u64;
    assert_eq!(counter(&bed, Counter::ConntrackNew), tracked);
    assert_eq!(bed.dataplane.flow_count(), tracked);

    // The flood: a quarter past the half-open table's slots, each SYN
    // from a source of its own, three in four IPv4.
    let flood = HALF_OPEN_SLOTS + HALF_OPEN_SLOTS / 4;
    send_flood(&mut bed, &vips, flood);
    assert_eq!(
        counter(&bed, Counter::ConntrackHalfOpenNew),
        u64::from(flood) + tracked
    );
    // Held apart, the flood overflows the half-open table; in the bucket
    // table, it first takes the free ways there (every one a SYN's two
    // buckets offer), then overflows the half-open table.
    let in_table = bed.handshakes() - bed.dataplane.half_open_count();
    match held {
        Held::Apart => assert_eq!(in_table, 0, "flood SYNs in the connection table"),
        Held::InTable => assert!(
            in_table > bed.dataplane.flow_capacity() / 2,
            "{in_table} flood SYNs took free ways of the connection table"
        ),
    }
    let evicted = counter(&bed, Counter::ConntrackHalfOpenEvicted);
    assert!(
        evicted >= u64::from(flood - HALF_OPEN_SLOTS).saturating_sub(in_table),
        "{evicted} half-open flows evicted"
    );
    let held_apart = bed.dataplane.half_open_count();
    assert!(
        held_apart <= u64::from(HALF_OPEN_SLOTS),
        "{held_apart} half-open flows held of {HALF_OPEN_SLOTS}"
    );
    // Not one established flow was touched.
    assert_eq!(counter(&bed, Counter::ConntrackNew), tracked);
    assert_eq!(bed.dataplane.flow_count(), tracked + in_table);
    for (flow, id, mac) in &established {
        let entry = bed.dataplane.flow(&key(flow)).expect("lookup");
        assert_eq!(entry.map(|e| e.backend_id), Some(*id), "{flow:?} kept");
        forwarded_to(
            &mut bed,
            &packet::tcp(flow, ACK, None, b"more"),
            *mac,
            "an established flow's packet after the flood",
        );
    }
    // New connections after the flood find their room: a flow that is
    // not a handshake evicts the flood's handshakes before any live flow.
    let newcomers: Vec<Flow> = (0..256)
        .map(|n| flow(client(&vips[0]), 47_000 + n, &vips[0]))
        .collect();
    for flow in &newcomers {
        let (_, mac) = bed.maglev_backend(&vips[0], flow).expect("backend");
        forwarded_to(
            &mut bed,
            &packet::tcp(flow, ACK, None, b"GET /"),
            mac,
            "a new flow",
        );
    }
    assert_eq!(counter(&bed, Counter::ConntrackInsertFailed), 0);
    for flow in established.iter().map(|(f, _, _)| f).chain(&newcomers) {
        assert!(
            bed.dataplane.flow(&key(flow)).expect("lookup").is_some(),
            "{flow:?} is tracked"
        );
    }
}

/// A pin directory for one test, removed (with what is in it) when the
/// test ends, also when an assertion fails.
struct Pins(lb_tests::lab::TestPins);

impl Pins {
    fn new(name: &str, kind: ConntrackKind) -> Self {
        Pins(lb_tests::lab::TestPins::new("lbtho", &format!("{name}-{kind:?}")).expect("pins"))
    }

    fn options(&self, kind: ConntrackKind) -> LoadOptions {
        LoadOptions {
            conntrack_kind: kind,
            pins: Some(self.0.pins()),
            ..LoadOptions::default()
        }
    }
}

/// The maps of the beds here, with a half-open table of `half_open`
/// flows and a connection table of `conntrack`.
fn sizes(conntrack: u32, half_open: u32) -> MapSizes {
    MapSizes {
        max_vips: 4,
        conntrack,
        nat_flows: NAT_FLOWS_SIZE_DEFAULT,
        half_open,
    }
}

/// The next lbd's data plane: loaded on the pins the previous one left,
/// nothing written (what packets read is what was adopted), as lbd runs
/// it between its load and its first apply.
fn restarted(pins: &Pins, kind: ConntrackKind, sizes: MapSizes) -> TestBed {
    let dataplane = Dataplane::load_with(sizes, &pins.options(kind)).expect("restarted data plane");
    TestBed {
        dataplane,
        balancer: Balancer::new(sizes.max_vips),
        hook: Hook::Xdp,
    }
}

/// SYNs of 48 flows per VIP, each to its Maglev pick: the flows, their
/// backend ids and MACs.
fn open_handshakes(bed: &mut TestBed, vips: &[VipConfig]) -> Vec<(VipConfig, Flow, u32, [u8; 6])> {
    let mut flows = Vec::new();
    for vip in vips {
        for sport in 44_000..44_048 {
            let flow = flow(client(vip), sport, vip);
            let (_, mac) = bed.maglev_backend(vip, &flow).expect("backend");
            let id = bed.maglev_backend_id(vip, &flow).expect("backend id");
            forwarded_to(bed, &packet::tcp(&flow, SYN, None, b""), mac, "a SYN");
            flows.push((vip.clone(), flow, id, mac));
        }
    }
    flows
}

fn a_restart_keeps_the_half_open_flows_and_their_acks_reach_the_syn_backend(
    kind: ConntrackKind,
    held: Held,
) {
    let pins = Pins::new(&format!("restart-{held:?}"), kind);
    let vips = [vip4_tcp(), vip6_tcp()];
    let sizes = sizes(4096, HALF_OPEN_SIZE_DEFAULT);
    let old = TestBed::with_sizes(&vips, Hook::Xdp, sizes, &pins.options(kind)).expect("bed");
    let mut old = holding(old, held);
    let flows = open_handshakes(&mut old, &vips);
    let syns = flows.len() as u64;
    assert_eq!(old.handshakes(), syns);
    for (_, flow, id, _) in &flows {
        held_as(&old, flow, *id, held);
    }
    // The backend set changes while the handshakes are under way: Maglev
    // now sends some of these flows elsewhere; their SYN's backend stays.
    let grown: Vec<VipConfig> = vips.iter().map(grown).collect();
    old.apply(&grown).expect("apply");
    let moved: Vec<bool> = flows
        .iter()
        .map(|(vip, flow, id, _)| {
            let vip = grown
                .iter()
                .find(|v| v.address == vip.address)
                .expect("vip");
            old.maglev_backend_id(vip, flow).expect("backend id") != *id
        })
        .collect();
    let moved_count = moved.iter().filter(|m| **m).count();
    assert!(
        moved_count > 0,
        "the new backends move some of {syns} flows"
    );
    let promoted_before = counter(&old, Counter::ConntrackHalfOpenPromoted);
    drop(old);

    // lbd restarts (its pinned program would forward meanwhile).
    let mut new = restarted(&pins, kind, sizes);
    assert!(new.dataplane.adopted(), "the pinned data plane is adopted");
    assert_eq!(
        new.handshakes(),
        syns,
        "the half-open flows are kept across the restart"
    );
    for (_, flow, id, mac) in &flows {
        held_as(&new, flow, *id, held);
        completes_on(
            &mut new,
            flow,
            (*id, *mac),
            "the ACK that completes a handshake begun before the restart",
        );
    }
    assert_eq!(
        counter(&new, Counter::ConntrackHalfOpenPromoted) - promoted_before,
        syns,
        "every ACK found its flow half-open ({moved_count} of them on a backend Maglev no longer picks)"
    );
    assert_eq!(new.handshakes(), 0);
}

fn a_half_open_table_of_another_size_starts_afresh_and_the_rest_is_adopted(kind: ConntrackKind) {
    let pins = Pins::new("resize", kind);
    let vips = [vip4_tcp(), vip6_tcp()];
    let before = sizes(4096, HALF_OPEN_SIZE_DEFAULT);
    let old = TestBed::with_sizes(&vips, Hook::Xdp, before, &pins.options(kind)).expect("bed");
    // Handshakes held apart, in the table that is resized.
    let mut old = holding(old, Held::Apart);
    // Established flows, and handshakes under way.
    let established: Vec<(Flow, u32)> = (45_000..45_032)
        .map(|sport| {
            let flow = flow(client(&vips[0]), sport, &vips[0]);
            let (_, mac) = old.maglev_backend(&vips[0], &flow).expect("backend");
            forwarded_to(&mut old, &packet::tcp(&flow, SYN, None, b""), mac, "a SYN");
            forwarded_to(&mut old, &packet::tcp(&flow, ACK, None, b""), mac, "an ACK");
            let id = old.maglev_backend_id(&vips[0], &flow).expect("id");
            (flow, id)
        })
        .collect();
    let flows = open_handshakes(&mut old, &vips);
    assert_eq!(old.dataplane.half_open_count(), flows.len() as u64);
    drop(old);

    // `half_open_size` doubled: that table starts afresh, the rest stays.
    let resized = sizes(4096, 2 * HALF_OPEN_SIZE_DEFAULT);
    let mut new = holding(restarted(&pins, kind, resized), Held::Apart);
    assert!(
        new.dataplane.adopted(),
        "the rest of the data plane is adopted"
    );
    assert_eq!(
        new.dataplane.half_open_capacity(),
        2 * u64::from(HALF_OPEN_SIZE_DEFAULT),
        "the half-open table has the new size"
    );
    assert_eq!(new.dataplane.half_open_count(), 0, "and starts empty");
    for (flow, id) in &established {
        let entry = new.dataplane.flow(&key(flow)).expect("lookup");
        assert_eq!(entry.map(|e| e.backend_id), Some(*id), "{flow:?} kept");
    }
    // A handshake it lost costs nothing: the backend set did not change,
    // its ACK takes Maglev's pick, the SYN's backend.
    for (_, flow, id, mac) in &flows {
        forwarded_to(
            &mut new,
            &packet::tcp(flow, ACK, None, b"GET /"),
            *mac,
            "the ACK of a handshake whose half-open entry was dropped",
        );
        let tracked = new.dataplane.flow(&key(flow)).expect("lookup");
        assert_eq!(tracked.map(|e| e.backend_id), Some(*id));
    }
    let (_, flow, _, _) = &flows[0];
    let syn = packet::tcp(&flow_with_port(flow, 46_000), SYN, None, b"");
    let (verdict, _) = new.run(&syn).expect("run");
    assert_eq!(verdict, action::TX);
    assert_eq!(
        new.dataplane.half_open_count(),
        1,
        "the new table takes SYNs"
    );
    drop(new);

    // `conntrack_size` changed too: a bucket table's flows are carried
    // into the new size and the rest is adopted (the half-open table, of
    // the size it has, included); a kernel map of another size cannot be
    // carried, so nothing is adopted, and the half-open table (whose
    // backend ids point into the old state) goes with it.
    let newer = restarted(&pins, kind, sizes(8192, 2 * HALF_OPEN_SIZE_DEFAULT));
    if kind.is_kernel_map() {
        assert!(!newer.dataplane.adopted(), "the state maps start afresh");
        assert_eq!(newer.dataplane.half_open_count(), 0);
    } else {
        assert!(newer.dataplane.adopted(), "the state is adopted");
        assert_eq!(newer.dataplane.half_open_count(), 1, "the SYN held");
        for (flow, id) in &established {
            let entry = newer.dataplane.flow(&key(flow)).expect("lookup");
            assert_eq!(entry.map(|e| e.backend_id), Some(*id), "{flow:?} carried");
        }
    }
}

/// A table of the smallest `half_open_size` (1,024 flows, 128 buckets):
/// the packet path indexes it with the mask lbd set at load, so every
/// bucket takes SYNs (with the default table's mask most SYNs would find
/// no bucket) and a flood past its slots keeps it nearly full.
fn a_small_half_open_table_fills_every_bucket(kind: ConntrackKind) {
    const SLOTS: u32 = 1024;
    let vips = [vip4_tcp(), vip6_tcp()];
    let options = LoadOptions {
        conntrack_kind: kind,
        ..LoadOptions::default()
    };
    let bed =
        TestBed::with_sizes(&vips, Hook::Xdp, sizes(4096, SLOTS), &options).expect("test bed");
    let mut bed = holding(bed, Held::Apart);
    assert_eq!(bed.dataplane.half_open_capacity(), u64::from(SLOTS));
    let flood = SLOTS + SLOTS / 4;
    send_flood(&mut bed, &vips, flood);
    assert_eq!(
        counter(&bed, Counter::ConntrackHalfOpenNew),
        u64::from(flood),
        "every SYN found its bucket"
    );
    let held = bed.dataplane.half_open_count();
    assert!(
        held <= u64::from(SLOTS) && held > u64::from(SLOTS) * 9 / 10,
        "{held} half-open flows held of {SLOTS}"
    );
    assert!(counter(&bed, Counter::ConntrackHalfOpenEvicted) >= u64::from(flood - SLOTS));
    // The last SYN's flow is held, and its ACK finds it.
    let last = flood_flow(flood - 1, &vips[usize::from((flood - 1) % 4 == 3)]);
    assert!(bed.dataplane.half_open_flow(&key(&last)).is_some());
    let (verdict, _) = bed.run(&packet::tcp(&last, ACK, None, b"")).expect("run");
    assert_eq!(verdict, action::TX);
    assert_eq!(counter(&bed, Counter::ConntrackHalfOpenPromoted), 1);
}

/// Moves the handshake of `key` back in time by `ticks` rank ticks
/// (`flow_table::TICK_SHIFT`, 16.8 ms), wherever the data plane holds it
/// (`held`: the connection table or the half-open table), as if its SYN
/// had come that much earlier: the data plane judges a handshake's age
/// by its tag's rank alone (`conntrack::lapsed_at`). Written through
/// lbd's memory mapping of the table, with the tables' own CAS
/// (`flow_table::rerank`); nothing else writes it meanwhile (the program
/// runs only when the test runs it).
fn age_handshake(pins: &Pins, held: Held, key: &FlowKey, ticks: u32) {
    use lb_common::flow_table::{
        rank_class, read_way, rerank, tag_rank, FlowBucket, CLASS_HALF_OPEN,
    };
    use std::os::fd::{AsFd as _, AsRawFd as _};

    let name = match held {
        Held::InTable => names::MAP_FLOW_BUCKETS,
        Held::Apart => names::MAP_HALF_OPEN,
    };
    let map = aya::maps::MapData::from_pin(pins.0.pins().map_path(name)).expect("pinned table");
    let buckets = map.info().expect("map info").max_entries() as usize;
    let len = buckets * std::mem::size_of::<FlowBucket>();
    // SAFETY: a shared mapping of the (mmapable) array's fd, `len` bytes.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            map.fd().as_fd().as_raw_fd(),
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap {name}");
    let table = base.cast::<FlowBucket>();
    let mut aged = 0;
    for index in 0..buckets {
        // SAFETY: the index is within the mapped buckets.
        let bucket = unsafe { table.add(index) };
        for way in 0..FLOW_WAYS {
            // SAFETY: a live bucket of the mapping.
            let Some((found, seen)) = (unsafe { read_way(bucket, way) }) else {
                continue;
            };
            if found != *key {
                continue;
            }
            let rank = tag_rank(seen.tag);
            assert_eq!(rank_class(rank), CLASS_HALF_OPEN, "{key:?} is a handshake");
            let tick = ((rank >> 2).wrapping_sub(ticks)) & 0x3fff_ffff;
            // SAFETY: as above.
            assert!(
                unsafe { rerank(bucket, &seen, (tick << 2) | CLASS_HALF_OPEN) },
                "{key:?} reranked"
            );
            aged += 1;
        }
    }
    // SAFETY: the mapping made above, unmapped once.
    unsafe { libc::munmap(base, len) };
    assert_eq!(aged, 1, "{key:?} held once in {name}");
}

/// A test bed on pins (so `age_handshake` can reach its tables) holding
/// 48 handshakes per VIP (IPv4 and IPv6), after which a fourth backend
/// joins each VIP: the VIPs as they are now, the pins, and the flows
/// whose SYN's backend (id, MAC) is no longer Maglev's pick.
struct Lapsing {
    bed: TestBed,
    vips: Vec<VipConfig>,
    moved: Vec<(VipConfig, Flow, u32, [u8; 6])>,
    pins: Pins,
}

fn lapsing(hook: Hook, kind: ConntrackKind, held: Held, name: &str) -> Lapsing {
    let pins = Pins::new(&format!("{name}-{hook:?}-{held:?}"), kind);
    let vips = [vip4_tcp(), vip6_tcp()];
    let bed = TestBed::with_options(&vips, hook, 4096, &pins.options(kind)).expect("test bed");
    let mut bed = holding(bed, held);
    let flows = open_handshakes(&mut bed, &vips);
    for (_, flow, id, _) in &flows {
        held_as(&bed, flow, *id, held);
    }
    let grown: Vec<VipConfig> = vips.iter().map(grown).collect();
    bed.apply(&grown).expect("apply");
    let moved: Vec<_> = flows
        .into_iter()
        .filter_map(|(vip, flow, id, mac)| {
            let vip = grown.iter().find(|v| v.address == vip.address)?.clone();
            (bed.maglev_backend_id(&vip, &flow).expect("backend id") != id)
                .then_some((vip, flow, id, mac))
        })
        .collect();
    for vip in &grown {
        let of_vip = moved.iter().filter(|m| m.0.address == vip.address).count();
        assert!(
            of_vip >= 2,
            "the new backend moves {of_vip} flows of {vip:?}"
        );
    }
    Lapsing {
        bed,
        vips: grown,
        moved,
        pins,
    }
}

/// Handshakes older than the half-open timeout: `HALF_OPEN_IDLE_TICKS`
/// (10 s) and about a second.
const LAPSED: u32 = HALF_OPEN_IDLE_TICKS + 64;
/// Handshakes about a second short of the timeout.
const IN_TIME: u32 = HALF_OPEN_IDLE_TICKS - 64;

/// New flows counted for VIP `vip` and backend `backend`.
fn new_flows(bed: &TestBed, vip: &VipConfig, backend: u32) -> (u64, u64) {
    let id = bed.balancer.vips()[&VipId::of(vip)].id;
    let vip = bed.dataplane.vip_traffic(id).expect("VIP stats").new_flows;
    let backend = bed
        .dataplane
        .backend_traffic(backend)
        .expect("backend stats")
        .new_flows;
    (vip, backend)
}

/// Sends `frame` of a flow of `vip`; asserts it goes out to the backend
/// with `mac`, only the MACs rewritten (exactly, and as the etherparse
/// oracle judges it).
fn sent_to(bed: &mut TestBed, vip: &VipConfig, frame: &[u8], mac: [u8; 6], what: &str) {
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::TX, "{what} is forwarded");
    assert_eq!(out, packet::forwarded(frame, mac), "{what}'s frame");
    let services = [Service::of(vip)];
    let judged = check_verdict(frame, verdict, &out, &services, packet::LB_MAC, &[mac]);
    assert_eq!(judged, Ok(()), "{what}");
}

/// A handshake abandoned past the half-open timeout (10 s), then a new
/// SYN on its tuple (a client reusing its port): a new connection. It
/// takes Maglev's pick of now (the backend set changed since the first
/// SYN, so that is another backend), is counted as a new flow of its VIP
/// and of that backend, is held as a handshake on it, and its ACK
/// completes it there. A SYN a second short of the timeout is a
/// retransmission: its SYN's backend, nothing new counted.
fn a_syn_after_a_lapsed_handshake_takes_the_current_pick_as_a_new_flow(
    hook: Hook,
    kind: ConntrackKind,
    held: Held,
) {
    let mut setup = lapsing(hook, kind, held, "lapsed-syn");
    let bed = &mut setup.bed;
    for vip in setup.vips.clone() {
        let mut moved = setup.moved.iter().filter(|m| m.0.address == vip.address);
        let (_, lapsed, old_id, _) = moved.next().expect("a moved flow").clone();
        let (_, in_time, in_time_id, in_time_mac) = moved.next().expect("a moved flow").clone();

        // A second short of the timeout: still the SYN's handshake.
        age_handshake(&setup.pins, held, &key(&in_time), IN_TIME);
        let half_open_new = counter(bed, Counter::ConntrackHalfOpenNew);
        let (vip_new, _) = new_flows(bed, &vip, in_time_id);
        let syn = packet::tcp(&in_time, SYN, None, b"");
        sent_to(bed, &vip, &syn, in_time_mac, "a SYN 9 s into its handshake");
        held_as(bed, &in_time, in_time_id, held);
        assert_eq!(new_flows(bed, &vip, in_time_id).0, vip_new, "no new flow");
        assert_eq!(counter(bed, Counter::ConntrackHalfOpenNew), half_open_new);

        // Past it: a new connection, on the current pick.
        age_handshake(&setup.pins, held, &key(&lapsed), LAPSED);
        let (_, mac) = bed.maglev_backend(&vip, &lapsed).expect("backend");
        let now_id = bed.maglev_backend_id(&vip, &lapsed).expect("backend id");
        assert_ne!(now_id, old_id, "the backend set change moved {lapsed:?}");
        let half_open_new = counter(bed, Counter::ConntrackHalfOpenNew);
        let conntrack_new = counter(bed, Counter::ConntrackNew);
        let handshakes = bed.handshakes();
        let (vip_new, now_new) = new_flows(bed, &vip, now_id);
        let (_, old_new) = new_flows(bed, &vip, old_id);
        let syn = packet::tcp(&lapsed, SYN, None, b"");
        sent_to(bed, &vip, &syn, mac, "a SYN after a lapsed handshake");
        assert_eq!(
            new_flows(bed, &vip, now_id),
            (vip_new + 1, now_new + 1),
            "counted as a new flow of the VIP and of the current pick"
        );
        assert_eq!(new_flows(bed, &vip, old_id).1, old_new, "not the old one's");
        assert_eq!(
            counter(bed, Counter::ConntrackHalfOpenNew),
            half_open_new + 1,
            "a new handshake"
        );
        assert_eq!(counter(bed, Counter::ConntrackNew), conntrack_new);
        assert_eq!(
            bed.handshakes(),
            handshakes,
            "it took the lapsed one's place"
        );
        held_as(bed, &lapsed, now_id, held);
        completes_on(bed, &lapsed, (now_id, mac), "the new handshake's ACK");
        assert_eq!(counter(bed, Counter::ConntrackNew), conntrack_new + 1);
    }
}

/// A handshake abandoned past the half-open timeout (10 s), then the
/// client's ACK (not a SYN): only a SYN treats a lapsed handshake as
/// over (docs/design/conntrack.md, "Handshakes"; `lbctl flow`: "past
/// the half-open timeout: a new SYN may take its place"), so the entry
/// still steers. The ACK goes to its SYN's backend, though Maglev now
/// picks another, and completes the handshake there: promoted,
/// established, counted as a connection (`ConntrackNew`), not as a new
/// flow of the VIP (its SYN was).
fn an_ack_after_a_lapsed_handshake_completes_it_on_the_syn_backend(
    hook: Hook,
    kind: ConntrackKind,
    held: Held,
) {
    let mut setup = lapsing(hook, kind, held, "lapsed-ack");
    let bed = &mut setup.bed;
    for vip in setup.vips.clone() {
        let (_, flow, id, mac) = setup
            .moved
            .iter()
            .find(|m| m.0.address == vip.address)
            .expect("a moved flow")
            .clone();
        age_handshake(&setup.pins, held, &key(&flow), LAPSED);
        assert_ne!(
            bed.maglev_backend_id(&vip, &flow).expect("backend id"),
            id,
            "Maglev picks another backend now"
        );
        let promoted = counter(bed, Counter::ConntrackHalfOpenPromoted);
        let conntrack_new = counter(bed, Counter::ConntrackNew);
        let half_open_new = counter(bed, Counter::ConntrackHalfOpenNew);
        let handshakes = bed.handshakes();
        let (vip_new, _) = new_flows(bed, &vip, id);
        let ack = packet::tcp(&flow, ACK, None, b"GET /");
        sent_to(bed, &vip, &ack, mac, "an ACK after a lapsed handshake");
        completes_on(bed, &flow, (id, mac), "an ACK after a lapsed handshake");
        assert_eq!(bed.dataplane.half_open_flow(&key(&flow)), None);
        assert_eq!(bed.handshakes(), handshakes - 1);
        assert_eq!(
            counter(bed, Counter::ConntrackHalfOpenPromoted),
            promoted + 1
        );
        assert_eq!(counter(bed, Counter::ConntrackNew), conntrack_new + 1);
        assert_eq!(counter(bed, Counter::ConntrackHalfOpenNew), half_open_new);
        assert_eq!(
            new_flows(bed, &vip, id).0,
            vip_new,
            "no new flow of the VIP"
        );
    }
}

/// `flow` from another source port.
fn flow_with_port(flow: &Flow, sport: u16) -> Flow {
    Flow { sport, ..*flow }
}

fn the_program_passes_the_verifier_well_under_the_bound(kind: ConntrackKind) {
    let mut bed = bed(Hook::Xdp, kind, &[vip4_tcp()], Held::InTable);
    let (xdp, tc) = bed.verified_instructions();
    eprintln!("{kind:?}: verified instructions: xdp {xdp}, tc {tc}");
    // The bound of tests/tests/nat_dataplane/main.rs, for each design.
    assert!(xdp < 340_000 && tc < 340_000, "xdp {xdp}, tc {tc}");
}

macro_rules! on_both_designs {
    ($($name:ident),+ $(,)?) => {
        mod buckets {
            $(#[test] fn $name() { super::$name(super::ConntrackKind::Buckets) })+
        }
        mod lru {
            $(#[test] fn $name() { super::$name(super::ConntrackKind::Lru) })+
        }
    };
}

on_both_designs!(
    the_program_passes_the_verifier_well_under_the_bound,
    a_half_open_table_of_another_size_starts_afresh_and_the_rest_is_adopted,
    a_small_half_open_table_fills_every_bucket,
);

/// Tests of handshakes held either way: in the bucket table, apart in
/// the bucket design's flood mode, apart with the LRU.
macro_rules! held_either_way {
    ($($name:ident),+ $(,)?) => {
        mod in_table {
            $(#[test] fn $name() {
                super::$name(super::ConntrackKind::Buckets, super::Held::InTable)
            })+
        }
        mod apart_in_flood_mode {
            $(#[test] fn $name() {
                super::$name(super::ConntrackKind::Buckets, super::Held::Apart)
            })+
        }
        mod apart_with_the_lru {
            $(#[test] fn $name() {
                super::$name(super::ConntrackKind::Lru, super::Held::Apart)
            })+
        }
    };
}

held_either_way!(
    a_syn_flood_past_the_half_open_capacity_evicts_no_established_flow,
    a_restart_keeps_the_half_open_flows_and_their_acks_reach_the_syn_backend,
);

mod handshake {
    use super::{
        a_syns_handshake_is_held_and_its_ack_completes_it_on_the_syn_backend as handshake,
        ConntrackKind, Held, Hook,
    };

    #[test]
    fn buckets_xdp() {
        handshake(Hook::Xdp, ConntrackKind::Buckets, Held::InTable);
    }

    #[test]
    fn buckets_tc() {
        handshake(Hook::Tc, ConntrackKind::Buckets, Held::InTable);
    }

    #[test]
    fn buckets_in_flood_mode_xdp() {
        handshake(Hook::Xdp, ConntrackKind::Buckets, Held::Apart);
    }

    #[test]
    fn buckets_in_flood_mode_tc() {
        handshake(Hook::Tc, ConntrackKind::Buckets, Held::Apart);
    }

    #[test]
    fn lru_xdp() {
        handshake(Hook::Xdp, ConntrackKind::Lru, Held::Apart);
    }

    #[test]
    fn lru_tc() {
        handshake(Hook::Tc, ConntrackKind::Lru, Held::Apart);
    }
}

/// A handshake past the half-open timeout, then a SYN or the client's
/// ACK on its tuple: at both hooks, with the handshake held either way.
macro_rules! lapsed_handshake {
    ($($name:ident),+ $(,)?) => {
        $(mod $name {
            use super::{ConntrackKind, Held, Hook};

            #[test]
            fn in_table_xdp() {
                super::$name(Hook::Xdp, ConntrackKind::Buckets, Held::InTable);
            }

            #[test]
            fn in_table_tc() {
                super::$name(Hook::Tc, ConntrackKind::Buckets, Held::InTable);
            }

            #[test]
            fn apart_in_flood_mode_xdp() {
                super::$name(Hook::Xdp, ConntrackKind::Buckets, Held::Apart);
            }

            #[test]
            fn apart_in_flood_mode_tc() {
                super::$name(Hook::Tc, ConntrackKind::Buckets, Held::Apart);
            }

            #[test]
            fn apart_with_the_lru_xdp() {
                super::$name(Hook::Xdp, ConntrackKind::Lru, Held::Apart);
            }

            #[test]
            fn apart_with_the_lru_tc() {
                super::$name(Hook::Tc, ConntrackKind::Lru, Held::Apart);
            }
        })+
    };
}

lapsed_handshake!(
    a_syn_after_a_lapsed_handshake_takes_the_current_pick_as_a_new_flow,
    an_ack_after_a_lapsed_handshake_completes_it_on_the_syn_backend,
);
