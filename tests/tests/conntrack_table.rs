//! The bucket connection table (`FLOW_BUCKETS`) through the real program
//! under BPF_PROG_TEST_RUN: two CPUs inserting the same flows at once
//! leave each exactly once; a full bucket evicts closed flows before any
//! established flow, and a SYN (held in the half-open table) evicts
//! nothing; lbd's own view of the
//! table (the memory-mapped `FlowTable`) agrees with what the program
//! inserted; an upgrade from the shared-LRU table carries its flows over;
//! a table holding its configured number of flows keeps every one (two
//! candidate buckets per flow, twice the slots); an upgrade from a release
//! that placed IPv6 flows by `flow_hash`, or second buckets anywhere in
//! the table, moves them where this one looks; a SYN on a tuple whose
//! connection is over re-pins it to the current pick (a drained backend
//! gets no new connection), in both table designs, while a SYN into a
//! live flow keeps its backend; a promotion that finds every way busy
//! keeps its handshake held; a smaller table carries every live flow
//! over before closed ones; an upgrade stopped before its swap leaves
//! its tables for the next lbd, resized or not; a resize stopped after
//! its swap, then resized again, keeps the flows opened on its table.
//! Needs root and two CPUs.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Barrier,
    time::Duration,
};

use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{
    consts::{names, FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_STATE},
    flow_table::FLOW_WAYS,
    stats::Counter,
};
use lb_tests::{
    bench::xdp::pin_to_cpu,
    packet::{self, Flow, Tcp, ACK, SYN},
    testbed::{action, flow_key, vip4_tcp, vip6_tcp, Hook, TestBed, VIP4, VIP6},
};
use lb_userspace::{config::Protocol, conntrack::kind::ConntrackKind, dataplane::LoadOptions};

/// Client flow `n` (distinct for every `n` below 65536).
fn flow(n: u32) -> Flow {
    Flow {
        src: IpAddr::V4(Ipv4Addr::new(198, 19, (n >> 8) as u8, n as u8)),
        dst: VIP4.parse().expect("addr"),
        sport: 10_000 + (n % 50_000) as u16,
        dport: 80,
    }
}

/// FIN + ACK.
const FIN_ACK: Tcp = Tcp { fin: true, ..ACK };

/// A test bed on the bucket table of `size` flows.
fn bucket_bed(vip: &lb_userspace::config::VipConfig, size: u32) -> TestBed {
    let options = LoadOptions {
        conntrack_kind: ConntrackKind::Buckets,
        ..LoadOptions::default()
    };
    TestBed::with_options(std::slice::from_ref(vip), Hook::Xdp, size, &options).expect("test bed")
}

/// Tracked flows by key, as lbd reads the table.
fn tracked(bed: &TestBed) -> HashMap<lb_common::FlowKey, u32> {
    let mut seen = HashMap::new();
    for (key, entry) in bed.dataplane.flows() {
        assert!(
            seen.insert(key, entry.backend_id).is_none(),
            "{key:?} is in the table twice"
        );
    }
    seen
}

/// Both CPUs run the first packets of the same flows at once, round after
/// round (new flows each round), and every flow must be in the table
/// exactly once, on Maglev's backend. The rounds go on (12 at most) until
/// the race happened: a round in which more packets were taken for new
/// flows than there are flows, i.e. both CPUs missed some flow and
/// inserted it (two copies, settled to one) or found every way busy. A
/// round in which one CPU stays ahead of the other only finds the other's
/// entries and proves nothing about concurrent inserts.
#[test]
fn two_cpus_inserting_the_same_flows_leave_each_exactly_once() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test races two CPUs; the machine has {cpus}"
    );
    let vip = vip4_tcp();
    // Room for 262144 flows (65536 buckets of 8 ways): the 24000 flows of
    // 12 rounds fill under 5 % of the ways, so even with the transient
    // second copy of a flow both CPUs insert at once no flow's two
    // buckets fill, and none may be missing. (A full bucket rightly
    // evicts its least recently seen flow.)
    let mut bed = bucket_bed(&vip, 262_144);
    const FLOWS: u32 = 2_000;
    const MIN_ROUNDS: u32 = 5;
    const MAX_ROUNDS: u32 = 12;
    const SYNC_EVERY: usize = 64;
    let counters = |bed: &TestBed| {
        [
            Counter::ConntrackNew,
            Counter::ConntrackHit,
            Counter::ConntrackInsertFailed,
        ]
        .map(|c| bed.counter(c).expect("counter"))
    };
    let mut rounds = 0;
    let mut contended = Vec::new();
    while rounds < MIN_ROUNDS || (contended.is_empty() && rounds < MAX_ROUNDS) {
        let round = rounds;
        rounds += 1;
        // ACKs of flows the table does not know (a SYN would be held in
        // the half-open table): each is inserted where it is seen first.
        let frames: Vec<Vec<u8>> = (0..FLOWS)
            .map(|n| packet::tcp(&flow(round * FLOWS + n), ACK, None, b""))
            .collect();
        let [new_before, _, failed_before] = counters(&bed);
        let start = Barrier::new(2);
        let program: &aya::programs::Xdp = bed.dataplane.program(names::PROG_LB).expect("program");
        std::thread::scope(|scope| {
            for cpu in 0..2 {
                let (frames, start) = (&frames, &start);
                scope.spawn(move || {
                    pin_to_cpu(cpu).expect("pin");
                    // Side by side: the two meet again every few flows,
                    // so one preempted for a moment does not fall behind
                    // for the rest of the round.
                    for (n, frame) in frames.iter().enumerate() {
                        if n % SYNC_EVERY == 0 {
                            start.wait();
                        }
                        let mut out = vec![0u8; frame.len() + 64];
                        let result = program
                            .test_run(TestRunOptions {
                                data_in: Some(frame),
                                data_out: Some(&mut out),
                                repeat: 1,
                                ..TestRunOptions::default()
                            })
                            .expect("test run");
                        assert_eq!(result.return_value, action::TX);
                    }
                });
            }
        });
        let [new_after, _, failed_after] = counters(&bed);
        // Packets that took their flow for new (inserted it, or found
        // every way busy): one per flow unless both CPUs did so for the
        // same flow.
        let taken_for_new = (new_after - new_before) + (failed_after - failed_before);
        if taken_for_new > u64::from(FLOWS) {
            contended.push(taken_for_new - u64::from(FLOWS));
        }
        let table = tracked(&bed);
        for n in 0..FLOWS {
            let f = flow(round * FLOWS + n);
            let key = flow_key(&f, Protocol::Tcp);
            let id = table
                .get(&key)
                .unwrap_or_else(|| panic!("round {round}: {f:?} was lost"));
            assert_eq!(
                *id,
                bed.maglev_backend_id(&vip, &f).expect("backend"),
                "round {round}: {f:?} pinned to another backend than Maglev's"
            );
        }
        assert_eq!(table.len() as u32, (round + 1) * FLOWS, "round {round}");
    }
    assert!(
        !contended.is_empty(),
        "in {rounds} rounds the two CPUs never inserted the same flow at once (one always ran ahead): the concurrent path was not exercised"
    );
    let [new, hit, failed] = counters(&bed);
    let packets = 2 * u64::from(rounds * FLOWS);
    // Every one of the packets was counted once as one of these.
    assert_eq!(new + hit + failed, packets);
    // A packet that missed the flow but found it at its insert (the other
    // CPU's went in between) is not counted as a new flow: the VIP's and
    // the backends' new flows are the inserts (and the untracked ones).
    let id = bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&vip)].id;
    let traffic = bed.dataplane.vip_traffic(id).expect("VIP stats");
    assert_eq!(traffic.packets, packets);
    assert_eq!(traffic.new_flows, new + failed, "new flows of the VIP");
    println!(
        "CONNTRACK RACE: 2 CPUs × {} first packets (ACKs) of {} flows in {rounds} rounds, {} of them contended (flows taken for new by both CPUs: {contended:?}): {new} inserted (copies of a flow both CPUs inserted at once are settled to one), {hit} found, {failed} contended",
        rounds * FLOWS,
        rounds * FLOWS,
        contended.len()
    );
}

#[test]
fn a_full_bucket_evicts_closed_flows_before_established_ones_and_a_syn_evicts_no_live_flow() {
    let vip = vip4_tcp();
    // The smallest table: one bucket of eight ways, so every flow meets
    // every other.
    let mut bed = bucket_bed(&vip, 1);
    let run = |bed: &mut TestBed, f: &Flow, flags| {
        let (verdict, _) = bed.run(&packet::tcp(f, flags, None, b"")).expect("run");
        assert_eq!(verdict, action::TX);
    };
    let flows: Vec<Flow> = (0..12).map(flow).collect();
    let key = |f: &Flow| flow_key(f, Protocol::Tcp);
    let entry = |bed: &TestBed, f: &Flow| bed.dataplane.flow(&key(f)).expect("read");
    // Ways 0..5: established (SYN, then the client's ACK); 6: closed
    // (FIN seen); 7: established, first seen mid-flow (an ACK).
    for f in &flows[..6] {
        run(&mut bed, f, SYN);
        run(&mut bed, f, ACK);
    }
    run(&mut bed, &flows[6], SYN);
    run(&mut bed, &flows[6], ACK);
    run(&mut bed, &flows[6], FIN_ACK);
    run(&mut bed, &flows[7], ACK);
    let full = tracked(&bed);
    assert_eq!(full.len(), FLOW_WAYS);
    // A SYN to the full bucket takes the closed flow's way (no live flow
    // holds it), as a handshake: the established ones stay.
    run(&mut bed, &flows[8], SYN);
    let table = tracked(&bed);
    assert!(
        !table.contains_key(&key(&flows[6])),
        "the closed flow stayed"
    );
    for f in flows[..6].iter().chain(&flows[7..9]) {
        assert!(table.contains_key(&key(f)), "{f:?} was evicted");
    }
    let handshake = entry(&bed, &flows[8]).expect("the SYN's entry");
    assert_ne!(handshake.flags & FLOW_F_HALF_OPEN, 0, "{handshake:?}");
    assert!(bed.dataplane.half_open_flow(&key(&flows[8])).is_none());
    // Its ACK makes it established, in place.
    run(&mut bed, &flows[8], ACK);
    let established = entry(&bed, &flows[8]).expect("the flow's entry");
    assert_eq!(established.flags & FLOW_F_HALF_OPEN, 0, "{established:?}");
    assert_eq!(established.backend_id, handshake.backend_id);
    // Now every way holds a live flow: a SYN is held half-open and
    // changes nothing here.
    let full = tracked(&bed);
    run(&mut bed, &flows[9], SYN);
    assert_eq!(tracked(&bed), full, "a SYN evicted a live flow");
    assert!(bed.dataplane.half_open_flow(&key(&flows[9])).is_some());
    // Its ACK brings it in: only established flows are there, so the
    // least recently seen goes (flows 0..5 and 7 were seen in the same
    // tick or so, so one of them).
    run(&mut bed, &flows[9], ACK);
    let table = tracked(&bed);
    assert_eq!(table.len(), FLOW_WAYS);
    assert!(table.contains_key(&key(&flows[9])));
    assert!(table.contains_key(&key(&flows[8])));
    assert_eq!(
        flows[..8]
            .iter()
            .filter(|f| table.contains_key(&key(f)))
            .count(),
        6
    );
    assert_eq!(
        bed.counter(Counter::ConntrackInsertFailed)
            .expect("counter"),
        0
    );
}

/// A client reusing a closed flow's tuple (its port, after a FIN or an
/// RST): the new connection's SYN finds the old entry and re-pins it to
/// Maglev's pick (the same backend here: the set did not change), and the
/// old FIN/RST marks go, so the connection is not taken for a closed one
/// (evicted first, counted as closing by a drain); its ACK makes it
/// established. A FIN closes it again.
#[test]
fn a_syn_reusing_a_closed_tuple_starts_a_live_connection() {
    let vip = vip4_tcp();
    let mut bed = bucket_bed(&vip, 64);
    let run = |bed: &mut TestBed, f: &Flow, flags| {
        let (verdict, _) = bed.run(&packet::tcp(f, flags, None, b"")).expect("run");
        assert_eq!(verdict, action::TX);
    };
    let rst = Tcp { rst: true, ..ACK };
    for (n, close) in [(1, FIN_ACK), (2, rst)] {
        let f = flow(n);
        let key = flow_key(&f, Protocol::Tcp);
        run(&mut bed, &f, SYN);
        run(&mut bed, &f, ACK);
        run(&mut bed, &f, close);
        let closed = bed.dataplane.flow(&key).expect("read").expect("entry");
        assert_ne!(closed.flags & FLOW_F_STATE, 0, "{closed:?}");
        let count = |bed: &TestBed, c| bed.counter(c).expect("counter");
        let (held, promoted) = (
            count(&bed, Counter::ConntrackHalfOpenNew),
            count(&bed, Counter::ConntrackHalfOpenPromoted),
        );
        run(&mut bed, &f, SYN);
        let reopened = bed.dataplane.flow(&key).expect("read").expect("entry");
        assert_eq!(reopened.flags & FLOW_F_STATE, 0, "{reopened:?}");
        assert_ne!(reopened.flags & FLOW_F_HALF_OPEN, 0, "a handshake again");
        assert_eq!(reopened.backend_id, closed.backend_id, "the same backend");
        run(&mut bed, &f, ACK);
        let live = bed.dataplane.flow(&key).expect("read").expect("entry");
        assert_eq!(
            live.flags & (FLOW_F_STATE | FLOW_F_HALF_OPEN),
            0,
            "{live:?}"
        );
        // Held and promoted alike (the flood detector counts unanswered
        // SYNs as their difference).
        assert_eq!(count(&bed, Counter::ConntrackHalfOpenNew) - held, 1);
        assert_eq!(
            count(&bed, Counter::ConntrackHalfOpenPromoted) - promoted,
            1
        );
        run(&mut bed, &f, FIN_ACK);
        let again = bed.dataplane.flow(&key).expect("read").expect("entry");
        assert_ne!(again.flags & FLOW_F_FIN, 0, "{again:?}");
    }
}

#[test]
fn a_table_holding_its_configured_number_of_flows_keeps_every_one() {
    let vip = vip4_tcp();
    // 4096 flows configured: 1024 buckets of 8 ways (twice the slots).
    const SIZE: u32 = 4096;
    let mut bed = bucket_bed(&vip, SIZE);
    assert_eq!(bed.dataplane.flow_capacity(), u64::from(SIZE));
    let flows: Vec<Flow> = (0..SIZE).map(flow).collect();
    // Each flow's handshake: the SYN held half-open, the ACK brings it in.
    for f in &flows {
        for flags in [SYN, ACK] {
            let (verdict, _) = bed.run(&packet::tcp(f, flags, None, b"")).expect("run");
            assert_eq!(verdict, action::TX);
        }
    }
    assert_eq!(bed.dataplane.half_open_count(), 0);
    let table = tracked(&bed);
    assert_eq!(table.len(), flows.len(), "flows were evicted");
    for f in &flows {
        assert_eq!(
            table.get(&flow_key(f, Protocol::Tcp)).copied(),
            Some(bed.maglev_backend_id(&vip, f).expect("backend")),
            "{f:?}"
        );
    }
    // Every flow's next packet finds it, in whichever of its buckets.
    for f in &flows {
        let (verdict, _) = bed.run(&packet::tcp(f, ACK, None, b"")).expect("run");
        assert_eq!(verdict, action::TX);
    }
    assert_eq!(
        bed.counter(Counter::ConntrackNew).expect("counter"),
        u64::from(SIZE)
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHit).expect("counter"),
        u64::from(SIZE)
    );
}

/// An lbd that ran the shared LRU left its pins in `dir`, its flows
/// inserted by its program; this lbd (the bucket table, the default)
/// adopts the state and carries every flow over with its backend.
/// `bucket_pin`: whether that lbd also pinned a (one-bucket) bucket table,
/// as the releases where the LRU was the default but the bucket table
/// existed did; the releases before it had none.
fn upgrade_from_lru(bucket_pin: bool) {
    let (pins, _cleanup) = pin_dir(&format!("upgrade-{bucket_pin}"));
    let vip = vip4_tcp();
    let flows: Vec<Flow> = (0..100).map(flow).collect();
    let mut pinned = HashMap::new();
    {
        let options = LoadOptions {
            conntrack_kind: ConntrackKind::Lru,
            pins: Some(pins.clone()),
            ..LoadOptions::default()
        };
        let mut old = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &options)
            .expect("old data plane");
        open_through(&mut old, &flows);
        for (key, entry) in old.dataplane.flows() {
            pinned.insert(key, entry.backend_id);
        }
        assert_eq!(pinned.len(), flows.len());
    }
    let bucket_table = pins.map_path(names::MAP_FLOW_BUCKETS);
    assert!(
        bucket_table.exists(),
        "the LRU lbd pins its (unused) bucket table"
    );
    if !bucket_pin {
        std::fs::remove_file(&bucket_table).expect("unpin");
    }
    let mut new = load_upgrade(&LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    });
    assert!(new.adopted(), "the VIPs, backends and tables are adopted");
    let carried: HashMap<_, _> = new.flows().map(|(k, e)| (k, e.backend_id)).collect();
    assert_eq!(carried, pinned, "every flow keeps its backend");
    let moved = pins.map_path(lb_userspace::conntrack::legacy::MOVED_PIN);
    assert!(
        moved.exists(),
        "the old table waits, moved aside, for the swap"
    );
    new.finish_adoption();
    assert!(!moved.exists(), "and goes after it");
}

/// An upgrade from the shared LRU that stops between its load and its
/// swap (the lbd fails, the old program stays on the link and opens more
/// flows) leaves the old table pinned (moved aside): the next lbd carries
/// every flow over, those opened in between included, and removes that
/// pin once it has swapped.
#[test]
fn an_upgrade_stopped_before_its_swap_leaves_the_old_table_for_the_next_lbd() {
    upgrade_stopped_before_its_swap("interrupted", 4096);
}

/// As above, the next lbd with another `conntrack_size`: the stopped
/// upgrade's bucket table (a snapshot of the LRU at its load) is resized
/// away, and the LRU, which the old program still writes, is carried over
/// as well: every flow, those opened after the stopped upgrade's load
/// included, and neither old table stays pinned after the swap.
#[test]
fn an_upgrade_stopped_before_its_swap_then_resized_carries_the_live_lru_too() {
    upgrade_stopped_before_its_swap("interrupted-resized", 8192);
}

/// A table set aside by an upgrade that stopped (`RESIZED_PIN`) but of
/// another layout than this release's buckets (an lbd of another release
/// set it aside): not read at the wrong stride, its pin removed at once;
/// the pinned table's flows are adopted as they are.
#[test]
fn a_table_set_aside_in_another_layout_is_not_carried_over() {
    let (pins, _cleanup) = pin_dir("aside-layout");
    let vip = vip4_tcp();
    let flows: Vec<Flow> = (0..20).map(flow).collect();
    let buckets = LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let pinned: HashMap<_, _> = {
        let mut running =
            TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &buckets)
                .expect("running data plane");
        open_through(&mut running, &flows);
        running
            .dataplane
            .flows()
            .map(|(k, e)| (k, e.backend_id))
            .collect()
    };
    assert_eq!(pinned.len(), flows.len());
    let aside = pins.map_path(lb_userspace::conntrack::legacy::RESIZED_PIN);
    // An mmapable array (BPF_MAP_TYPE_ARRAY, BPF_F_MMAPABLE) of buckets a
    // line larger than today's, every byte set.
    const OTHER: usize = size_of::<lb_common::flow_table::FlowBucket>() + 64;
    let other =
        lb_tests::lbd_maps::create_map_with_flags("FLOW_BUCKETS", 2, (4, OTHER as u32), 64, 0x400)
            .expect("the map");
    let mut other = aya::maps::Array::<_, [u8; OTHER]>::try_from(aya::maps::Map::Array(other))
        .expect("an array");
    for index in 0..64 {
        other.set(index, [0xff; OTHER], 0).expect("filled");
    }
    other.pin(&aside).expect("pinned aside");
    let mut next = load_upgrade(&buckets);
    assert!(next.adopted(), "the pinned data plane is adopted");
    assert!(
        !aside.exists(),
        "the set-aside table of another layout is removed at load"
    );
    next.finish_adoption();
    let carried: HashMap<_, _> = next.flows().map(|(k, e)| (k, e.backend_id)).collect();
    assert_eq!(carried, pinned, "the pinned table's flows, nothing else");
}

/// The stopped-upgrade scenario, the next lbd's table holding `next_size`
/// flows (the stopped one's 4096).
fn upgrade_stopped_before_its_swap(tag: &str, next_size: u32) {
    let (pins, _cleanup) = pin_dir(tag);
    let vip = vip4_tcp();
    let flows: Vec<Flow> = (0..150).map(flow).collect();
    let lru = LoadOptions {
        conntrack_kind: ConntrackKind::Lru,
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let mut old = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &lru)
        .expect("old data plane");
    open_through(&mut old, &flows[..100]);
    let buckets = LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let moved = pins.map_path(lb_userspace::conntrack::legacy::MOVED_PIN);
    {
        let stopped = load_upgrade(&buckets);
        assert!(stopped.adopted(), "the first upgrade adopts the state");
        assert_eq!(stopped.flows().count(), 100, "its bulk copy");
        assert!(moved.exists(), "the old table's pin is moved aside");
        // Dropped here without `finish_adoption`: it stopped before its
        // swap.
    }
    open_through(&mut old, &flows[100..]);
    let pinned: HashMap<_, _> = old
        .dataplane
        .flows()
        .map(|(k, e)| (k, e.backend_id))
        .collect();
    assert_eq!(pinned.len(), flows.len());
    assert!(
        moved.exists(),
        "the stopped upgrade left the old table pinned"
    );
    let mut next = load_upgrade_sized(&buckets, next_size);
    assert!(next.adopted(), "the next upgrade adopts the state");
    let aside = pins.map_path(lb_userspace::conntrack::legacy::RESIZED_PIN);
    assert_eq!(aside.exists(), next_size != 4096, "the resized table's pin");
    drop(old);
    next.finish_adoption();
    let carried: HashMap<_, _> = next.flows().map(|(k, e)| (k, e.backend_id)).collect();
    assert_eq!(
        carried, pinned,
        "every flow keeps its backend, also those opened after the stopped upgrade's load"
    );
    assert!(!moved.exists(), "the old table's pin goes after the swap");
    assert!(!aside.exists(), "and so does the resized table's");
}

/// The bucket-table data plane an upgrade loads with `options` (pins).
fn load_upgrade(options: &LoadOptions) -> lb_userspace::dataplane::Dataplane {
    load_upgrade_sized(options, 4096)
}

/// `load_upgrade` with a connection table of `conntrack` flows.
fn load_upgrade_sized(options: &LoadOptions, conntrack: u32) -> lb_userspace::dataplane::Dataplane {
    lb_userspace::dataplane::Dataplane::load_with(
        lb_userspace::dataplane::MapSizes {
            max_vips: 4,
            conntrack,
            nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
            half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
        },
        options,
    )
    .expect("new data plane")
}

/// A fresh pin directory of this test process named `tag`, and its
/// guard: the pins go when the test ends, also when an assertion fails.
fn pin_dir(tag: &str) -> (lb_userspace::pinning::PinDir, lb_tests::lab::TestPins) {
    let dir = lb_tests::lab::TestPins::new("lbtct", tag).expect("pin directory");
    (dir.pins(), dir)
}

/// Each flow's SYN and first ACK through `bed`'s program: every flow in
/// its connection table.
fn open_through(bed: &mut TestBed, flows: &[Flow]) {
    for f in flows {
        for flags in [SYN, ACK] {
            let (verdict, _) = bed.run(&packet::tcp(f, flags, None, b"")).expect("run");
            assert_eq!(verdict, action::TX);
        }
    }
}

/// An upgrade from the shared LRU: after this lbd's load the old program,
/// still on the link, opens a flow; this lbd's program meets it after the
/// swap, before the final copy, and picks again (a shared-LRU release
/// hashed IPv4 flows otherwise: often another backend), stamped later.
/// The final copy puts the old program's backend back, the one the
/// connection was opened on; a flow the old table last saw before the
/// load keeps the new table's fresher entry (an old table left by an
/// upgrade that swapped then stopped is older than the new one). Skipping
/// every old entry the new table held fresher left the late flow on the
/// new pick: its connection reset.
#[test]
fn the_final_copy_keeps_the_old_programs_backend_for_a_flow_opened_after_the_load() {
    let (pins, _cleanup) = pin_dir("opened-after-load");
    let vip = vip4_tcp();
    let flows: Vec<Flow> = (0..31).map(flow).collect();
    let lru = LoadOptions {
        conntrack_kind: ConntrackKind::Lru,
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let mut old = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &lru)
        .expect("old data plane");
    open_through(&mut old, &flows[..30]);
    // The early flow last seen well before the load (the others may have
    // been stamped within the clock's tick of it).
    let early = flow_key(&flows[0], Protocol::Tcp);
    let (_, seen) = old
        .dataplane
        .flows()
        .find(|(k, _)| *k == early)
        .expect("the early flow");
    let idle = lb_common::FlowEntry {
        last_seen_ns: monotonic_ns_past(Duration::from_secs(110)) - 100_000_000_000,
        ..seen
    };
    old.dataplane
        .install_flow(&early, &idle)
        .expect("the early flow, idle");
    let mut new = load_upgrade(&LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    });
    assert!(new.adopted(), "the VIPs, backends and tables are adopted");
    open_through(&mut old, &flows[30..]);
    let opened: HashMap<_, _> = old.dataplane.flows().collect();
    let late = flow_key(&flows[30], Protocol::Tcp);
    let old_late = opened[&late];
    let old_early = opened[&early];
    assert!(new.flows().all(|(k, _)| k != late), "opened after the load");
    // Another backend the old program used: this lbd's program's pick.
    let other = |entry: &lb_common::FlowEntry| lb_common::FlowEntry {
        backend_id: opened
            .values()
            .map(|e| e.backend_id)
            .find(|&id| id != entry.backend_id)
            .expect("flows on two backends"),
        last_seen_ns: monotonic_ns().max(entry.last_seen_ns + 1),
        ..*entry
    };
    let repicked = other(&old_late);
    new.install_flow(&late, &repicked).expect("the new pick");
    let fresher = other(&old_early);
    new.install_flow(&early, &fresher).expect("a fresher entry");
    drop(old);
    let carried = new.finish_adoption().expect("flows carried over");
    let held: HashMap<_, _> = new.flows().collect();
    assert_eq!(
        held[&late].backend_id, old_late.backend_id,
        "the flow opened after the load keeps the backend it was opened on"
    );
    assert_eq!(
        held[&early].backend_id, fresher.backend_id,
        "a flow the old table saw before the load keeps the fresher entry"
    );
    assert_eq!(carried.flows, 31, "{carried:?}");
    assert!(carried.kept >= 1, "{carried:?}");
}

#[test]
fn an_upgrade_from_an_lru_release_without_a_bucket_table_carries_its_flows_over() {
    upgrade_from_lru(false);
}

#[test]
fn an_upgrade_from_an_lru_release_with_a_bucket_table_pinned_carries_its_flows_over() {
    upgrade_from_lru(true);
}

/// `conntrack_size` changed, which takes effect at a restart: the new
/// lbd's bucket table has another size, so the old one's pin is moved
/// aside and its flows are carried into the new table with their backends
/// (the rest of the state adopted as it is), then the old pin goes.
#[test]
fn a_resized_connection_table_carries_its_flows_over() {
    let (pins, _cleanup) = pin_dir("resize");
    let vip = vip4_tcp();
    let flows: Vec<Flow> = (0..100).map(flow).collect();
    let options = LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let buckets = |name: &str| {
        aya::maps::MapInfo::from_pin(pins.map_path(name))
            .expect("pinned")
            .max_entries()
    };
    let pinned: HashMap<_, _> = {
        let mut old = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 1024, &options)
            .expect("old data plane");
        open_through(&mut old, &flows);
        old.dataplane
            .flows()
            .map(|(k, e)| (k, e.backend_id))
            .collect()
    };
    assert_eq!(pinned.len(), flows.len());
    let old_buckets = buckets(names::MAP_FLOW_BUCKETS);
    // load_upgrade's table holds 4096 flows.
    let mut new = load_upgrade(&options);
    assert!(
        new.adopted(),
        "the VIPs, backends and NAT tables are adopted"
    );
    assert_eq!(buckets(names::MAP_FLOW_BUCKETS), 4 * old_buckets);
    let aside = pins.map_path(lb_userspace::conntrack::legacy::RESIZED_PIN);
    assert!(
        aside.exists(),
        "the old table waits, moved aside, for the swap"
    );
    let carried: HashMap<_, _> = new.flows().map(|(k, e)| (k, e.backend_id)).collect();
    assert_eq!(carried, pinned, "every flow keeps its backend");
    new.finish_adoption();
    assert!(!aside.exists(), "and goes after it");
}

/// `conntrack_size` changed (lbd A's table of 1024 flows, B's of 4096):
/// B set A's table aside, pinned its own, swapped, and its program
/// forwarded on its table (flows opened there only, one of A's closed
/// there), then B stopped before `finish_adoption` (its set-aside pin
/// stays). C starts with a third size (8192): it carries both tables
/// over, B's flows as B's table holds them, and both pins go after its
/// swap. Carrying only the table set aside left B's, the one its
/// program wrote, to the load, which removed it: every connection
/// opened since B started lost its backend.
#[test]
fn resized_swapped_stopped_before_finishing_then_resized_again_keeps_the_flows_opened_since() {
    let (pins, _cleanup) = pin_dir("resized-twice");
    let vip = vip4_tcp();
    let flows: Vec<Flow> = (0..150).map(flow).collect();
    let options = LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let buckets = |name: &str| {
        aya::maps::MapInfo::from_pin(pins.map_path(name))
            .expect("pinned")
            .max_entries()
    };
    let (resized, resized_again) = (
        lb_userspace::conntrack::legacy::RESIZED_PIN,
        lb_userspace::conntrack::legacy::RESIZED_AGAIN_PIN,
    );
    let (aside, again) = (pins.map_path(resized), pins.map_path(resized_again));
    {
        let mut a = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 1024, &options)
            .expect("A's data plane");
        open_through(&mut a, &flows[..100]);
    }
    let a_buckets = buckets(names::MAP_FLOW_BUCKETS);
    let closed = flow_key(&flows[0], Protocol::Tcp);
    let on_b: HashMap<_, _> = {
        let mut b = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &options)
            .expect("B's data plane");
        assert!(b.dataplane.adopted(), "B adopts A's state");
        assert_eq!(buckets(resized), a_buckets, "A's table set aside");
        // A's program is gone: B's forwards, on B's table.
        open_through(&mut b, &flows[100..]);
        let (verdict, _) = b
            .run(&packet::tcp(&flows[0], FIN_ACK, None, b""))
            .expect("run");
        assert_eq!(verdict, action::TX);
        b.dataplane.flows().collect()
        // Dropped without `finish_adoption`.
    };
    assert_eq!(on_b.len(), flows.len(), "B's table holds every flow");
    assert_ne!(on_b[&closed].flags & FLOW_F_FIN, 0, "B saw flow 0's FIN");
    assert!(aside.exists(), "B's set-aside pin is left");
    let b_buckets = buckets(names::MAP_FLOW_BUCKETS);
    assert_eq!(b_buckets, 4 * a_buckets);

    let mut c = load_upgrade_sized(&options, 8192);
    assert!(c.adopted(), "C adopts the state");
    assert_eq!(buckets(names::MAP_FLOW_BUCKETS), 2 * b_buckets);
    assert_eq!(buckets(resized), a_buckets, "A's table still aside");
    assert_eq!(
        buckets(resized_again),
        b_buckets,
        "B's table set aside after it"
    );
    let carried = c.finish_adoption().expect("flows carried over");
    assert_eq!(carried.live_left_out + carried.failed, 0, "{carried:?}");
    let held: HashMap<_, _> = c.flows().collect();
    let backends = |flows: &HashMap<lb_common::FlowKey, lb_common::FlowEntry>| {
        flows
            .iter()
            .map(|(k, e)| (*k, e.backend_id))
            .collect::<HashMap<_, _>>()
    };
    assert_eq!(
        backends(&held),
        backends(&on_b),
        "every flow keeps its backend, those opened on B's table too"
    );
    assert_ne!(
        held[&closed].flags & FLOW_F_FIN,
        0,
        "a flow as B's table last saw it"
    );
    assert!(
        !aside.exists() && !again.exists(),
        "both set-aside pins go after the swap"
    );
}

/// `conntrack_size` lowered (4096 to 1024) under a table holding 100
/// live flows and 4000 closed ones, all seen before the live ones: the
/// new table has room for half of them, and it keeps every live flow
/// with its backend (carried first; a closed flow's copy takes only a
/// way no flow seen more recently holds), the closed ones in what is
/// left. Copies aged by their own last-seen time instead of the clock
/// took the live flows, seen since, for expired and evicted them.
#[test]
fn a_smaller_connection_table_keeps_every_live_flow_before_closed_ones() {
    let (pins, _cleanup) = pin_dir("shrink");
    let vip = vip4_tcp();
    let live: Vec<Flow> = (0..100).map(flow).collect();
    let options = LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let now = monotonic_ns_past(Duration::from_secs(110));
    let s = 1_000_000_000u64;
    let pinned: HashMap<_, _> = {
        let mut old = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &options)
            .expect("old data plane");
        open_through(&mut old, &live);
        let pinned: HashMap<_, _> = old
            .dataplane
            .flows()
            .map(|(k, e)| (k, e.backend_id))
            .collect();
        let (_, template) = old.dataplane.flows().next().expect("a live flow");
        for n in 100..4100u32 {
            let closed = lb_common::FlowEntry {
                flags: FLOW_F_FIN,
                last_seen_ns: now - 100 * s - u64::from(n) * 1_000_000,
                ..template
            };
            old.dataplane
                .install_flow(&flow_key(&flow(n), Protocol::Tcp), &closed)
                .expect("a closed flow into a table at half its slots");
        }
        assert_eq!(old.dataplane.flows().count(), 4100);
        pinned
    };
    assert_eq!(pinned.len(), live.len());
    let mut new = load_upgrade_sized(&options, 1024);
    assert!(new.adopted());
    // Slots: twice the configured flows.
    let slots = 2 * new.flow_capacity();
    let check = |new: &lb_userspace::dataplane::Dataplane, when: &str| {
        let carried: HashMap<_, _> = new.flows().map(|(k, e)| (k, e.backend_id)).collect();
        for (key, backend) in &pinned {
            assert_eq!(carried.get(key), Some(backend), "{when}: a live flow lost");
        }
        // The closed flows fill (nearly) all the rest.
        assert!(
            carried.len() as u64 > slots * 9 / 10,
            "{when}: {} flows in {slots} slots",
            carried.len()
        );
    };
    check(&new, "after the load");
    let carried = new.finish_adoption().expect("flows carried over");
    check(&new, "after the swap");
    assert_eq!(carried.flows, 4100);
    assert_eq!(carried.live_left_out, 0, "{carried:?}");
    assert_eq!(
        carried.copied + carried.dead_left_out + carried.failed + carried.kept,
        4100,
        "{carried:?}"
    );
    assert_eq!(
        carried.dead_left_out,
        4100 - new.flows().count() as u64,
        "the closed flows left out: {carried:?}"
    );
}

/// `conntrack_size` lowered below the live flows (200 live flows, 100
/// closed ones, into a table of 128 slots): the final copy tells the live
/// flows left out (their connections are lost, warned) from the closed
/// ones (nothing lost), each counted exactly.
#[test]
fn a_table_smaller_than_its_live_flows_counts_the_live_flows_it_leaves_out() {
    let (pins, _cleanup) = pin_dir("shrink-live");
    let vip = vip4_tcp();
    let live: Vec<Flow> = (0..200).map(flow).collect();
    let options = LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let now = monotonic_ns_past(Duration::from_secs(110));
    let s = 1_000_000_000u64;
    let (live_keys, closed_keys): (Vec<_>, Vec<_>) = {
        let mut old = TestBed::with_options(std::slice::from_ref(&vip), Hook::Xdp, 4096, &options)
            .expect("old data plane");
        open_through(&mut old, &live);
        let (_, template) = old.dataplane.flows().next().expect("a live flow");
        let closed: Vec<_> = (1000..1100u32)
            .map(|n| flow_key(&flow(n), Protocol::Tcp))
            .collect();
        for key in &closed {
            let entry = lb_common::FlowEntry {
                flags: FLOW_F_FIN,
                last_seen_ns: now - 100 * s,
                ..template
            };
            old.dataplane
                .install_flow(key, &entry)
                .expect("a closed flow");
        }
        let live = live.iter().map(|f| flow_key(f, Protocol::Tcp)).collect();
        (live, closed)
    };
    let mut new = load_upgrade_sized(&options, 64);
    assert!(new.adopted());
    let slots = 2 * new.flow_capacity();
    assert!(slots < live_keys.len() as u64, "{slots} slots");
    let carried = new.finish_adoption().expect("flows carried over");
    let held: HashMap<_, _> = new.flows().collect();
    let kept = |keys: &[lb_common::FlowKey]| keys.iter().filter(|k| held.contains_key(k)).count();
    let (live_kept, closed_kept) = (kept(&live_keys), kept(&closed_keys));
    assert_eq!(carried.flows, 300, "{carried:?}");
    assert!(carried.live_left_out > 0, "{carried:?}");
    assert_eq!(
        carried.live_left_out,
        (live_keys.len() - live_kept) as u64,
        "{carried:?}"
    );
    assert_eq!(
        carried.dead_left_out,
        (closed_keys.len() - closed_kept) as u64,
        "{carried:?}"
    );
    assert_eq!(
        carried.copied,
        (live_kept + closed_kept) as u64,
        "{carried:?}"
    );
    assert_eq!(carried.failed, 0, "{carried:?}");
}

/// IPv6 client flow `n`.
fn flow6(n: u32) -> Flow {
    Flow {
        src: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, n as u16)),
        dst: VIP6.parse().expect("addr"),
        sport: 20_000 + n as u16,
        dport: 80,
    }
}

/// The MAC of backend `id` of `vip` (the destination of frames sent to it).
fn backend_mac(bed: &TestBed, vip: &lb_userspace::config::VipConfig, id: u32) -> [u8; 6] {
    let applied = bed
        .balancer
        .vips()
        .get(&lb_userspace::reconcile::VipId::of(vip))
        .expect("VIP applied");
    let (address, _) = applied
        .backends
        .iter()
        .find(|(_, b)| b.id == id)
        .expect("backend of the VIP");
    vip.backends
        .iter()
        .find(|b| b.address == *address)
        .and_then(|b| b.mac)
        .expect("MAC in the config")
        .octets()
}

/// Releases before `table_hash` placed IPv6 flows in the connection table
/// by `flow_hash` (and second buckets anywhere in the table). Such a
/// release's lbd left its flows pinned; this lbd adopts the table and
/// moves them where it looks (see `upgrade_re_places`).
#[test]
fn an_upgrade_re_places_the_ipv6_flows_a_release_placed_by_flow_hash() {
    let flows: Vec<Flow> = (0..100).map(flow6).collect();
    let misplaced = upgrade_re_places(
        "replace",
        &vip6_tcp(),
        &flows,
        4096,
        lb_userspace::conntrack::table::Placement::ByFlowHashAnywhere,
    );
    assert_eq!(misplaced, flows.len(), "placed by flow_hash, none is found");
}

/// Releases before `SecondBucket::Nearby` put a flow whose first bucket
/// was nearly full in a second bucket anywhere in the table. In a small
/// table holding as many flows as it is configured for, some buckets
/// overflow; their flows go with the adopted table.
#[test]
fn an_upgrade_re_places_the_flows_a_release_put_in_far_second_buckets() {
    let flows: Vec<Flow> = (0..64).map(flow).collect();
    let misplaced = upgrade_re_places(
        "far",
        &vip4_tcp(),
        &flows,
        64,
        lb_userspace::conntrack::table::Placement::ByTableHashAnywhere,
    );
    assert!(misplaced > 0, "no flow went to a far second bucket");
}

/// Opens `flows` through an lbd whose table holds `size` flows, then puts
/// them back as a release placing them by `older` would have, each on a
/// backend Maglev would not pick (as after a backend change). A new lbd
/// adopts the table and moves the flows where it looks: right after the
/// load it copies them (the old copies stay for the old program, still
/// running), once its program runs it takes the old copies out. Every
/// flow keeps its backend throughout. Returns how many flows this release
/// did not find where the older one put them.
fn upgrade_re_places(
    tag: &str,
    vip: &lb_userspace::config::VipConfig,
    flows: &[Flow],
    size: u32,
    older: lb_userspace::conntrack::table::Placement,
) -> usize {
    let (pins, _cleanup) = pin_dir(tag);
    let options = LoadOptions {
        conntrack_kind: ConntrackKind::Buckets,
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let mut expected = HashMap::new();
    let mut misplaced = 0;
    {
        let mut old = TestBed::with_options(std::slice::from_ref(vip), Hook::Xdp, size, &options)
            .expect("old data plane");
        open_through(&mut old, flows);
        // Each backend's generation, from the entries the program wrote.
        let generations: HashMap<u32, u32> = old
            .dataplane
            .flows()
            .map(|(_, e)| (e.backend_id, e.backend_generation))
            .collect();
        let mut ids: Vec<u32> = generations.keys().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 3, "the flows reached every backend");
        // The table as the older release placed it.
        let path = pins.map_path(names::MAP_FLOW_BUCKETS);
        let map = aya::maps::MapData::from_pin(&path).expect("pinned table");
        let buckets = lb_common::flow_table::buckets_for(size);
        let older =
            lb_userspace::conntrack::table::FlowTable::new(map, buckets, older).expect("mapped");
        let mut moved = Vec::new();
        for f in flows {
            let key = flow_key(f, Protocol::Tcp);
            let entry = old.dataplane.flow(&key).expect("read").expect("tracked");
            let maglev = old.maglev_backend_id(vip, f).expect("pick");
            assert_eq!(entry.backend_id, maglev);
            let other = ids[(ids.iter().position(|&i| i == maglev).expect("id") + 1) % 3];
            old.dataplane.remove_flow(&key).expect("remove");
            let entry = lb_common::FlowEntry {
                backend_id: other,
                backend_generation: generations[&other],
                ..entry
            };
            moved.push((key, entry));
            expected.insert(key, other);
        }
        for (key, entry) in &moved {
            older.install(key, entry).expect("install");
        }
        for (key, _) in &moved {
            if old.dataplane.flow(key).expect("read").is_none() {
                misplaced += 1;
            }
        }
    }
    let mut new = TestBed::with_options(std::slice::from_ref(vip), Hook::Xdp, size, &options)
        .expect("new data plane");
    assert!(new.dataplane.adopted());
    // After the load: every flow found where this release looks, with its
    // backend; the old copies still there for the old program.
    for (key, backend) in &expected {
        let entry = new.dataplane.flow(key).expect("read").expect("re-placed");
        assert_eq!(entry.backend_id, *backend);
    }
    assert_eq!(new.dataplane.flows().count(), flows.len() + misplaced);
    new.dataplane.finish_adoption();
    let table = tracked(&new);
    assert_eq!(table, expected, "each flow once, on its backend");
    for f in flows {
        let key = flow_key(f, Protocol::Tcp);
        let (verdict, out) = new.run(&packet::tcp(f, ACK, None, b"")).expect("run");
        assert_eq!(verdict, action::TX);
        assert_eq!(
            out[..6],
            backend_mac(&new, vip, expected[&key]),
            "{f:?} reaches its pinned backend"
        );
    }
    misplaced
}

/// CLOCK_MONOTONIC in ns: the clock the data plane stamps entries with.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in ns once it is past `at_least` (the machine's time
/// since boot): a test that stamps flows as seen that long ago waits for
/// the clock first on a machine that has just started (a fresh CI
/// machine), rather than wrapping below zero or failing.
fn monotonic_ns_past(at_least: Duration) -> u64 {
    let want = u64::try_from(at_least.as_nanos()).expect("ns");
    let now = monotonic_ns();
    if now < want {
        eprintln!(
            "waiting {} ms for the clock to pass {at_least:?}",
            (want - now) / 1_000_000
        );
        std::thread::sleep(Duration::from_nanos(want - now));
    }
    monotonic_ns().max(want)
}

/// A test bed on connection-table design `kind` (lbd's default size),
/// running `hook`.
fn kind_bed(vips: &[lb_userspace::config::VipConfig], hook: Hook, kind: ConntrackKind) -> TestBed {
    let options = LoadOptions {
        conntrack_kind: kind,
        pins: None,
        ..LoadOptions::default()
    };
    TestBed::with_options(vips, hook, 4096, &options).expect("test bed")
}

/// Sends `frame` and asserts it went out to `mac` with only the MACs
/// rewritten (exactly, and as the etherparse oracle judges it).
fn assert_sent_to(bed: &mut TestBed, frame: &[u8], mac: [u8; 6], what: &str) {
    let (verdict, out) = bed.run(frame).expect("run");
    assert_eq!(verdict, action::TX, "{what}");
    assert_eq!(out, packet::forwarded(frame, mac), "{what}");
    let services = [lb_tests::oracle::Service::of(&vip4_tcp())];
    let judged =
        lb_tests::oracle::check_verdict(frame, verdict, &out, &services, packet::LB_MAC, &[mac]);
    assert_eq!(judged, Ok(()), "{what}");
}

/// A busy client reusing its ports (a PgBouncer fleet cycling ephemeral
/// ports): once a tuple's connection is over (closed by FIN or RST, or
/// idle past its timeout), a new SYN on it is a new connection and goes
/// to Maglev's pick of now, so a drained backend (weight 0) gets none of
/// them; the entry is re-pinned in place and its ACK stays there. A SYN
/// into a flow still live keeps its backend: a retransmitted SYN of a
/// handshake, or a SYN (spoofed, say) into an established connection.
/// Both table designs, both hooks.
fn a_new_connection_on_a_reused_tuple_leaves_a_drained_backend(hook: Hook, kind: ConntrackKind) {
    let mut vip = vip4_tcp();
    let mut bed = kind_bed(&[vip.clone()], hook, kind);
    let drained: IpAddr = "198.18.0.12".parse().expect("addr");
    let drained_mac = [0x02, 0, 0, 0, 0xbe, 0x12];
    // Client tuples Maglev sends to .12 (the drained-to-be backend).
    let on_drained: Vec<Flow> = (0..2000)
        .map(flow)
        .filter(|f| bed.maglev_backend(&vip, f).expect("backend").0 == drained)
        .take(7)
        .collect();
    let [fin_closed, rst_closed, idle, handshake, held_apart, established, spoofed] =
        <[Flow; 7]>::try_from(on_drained).expect("seven");
    let rst = Tcp { rst: true, ..ACK };
    for (f, close) in [(&fin_closed, FIN_ACK), (&rst_closed, rst)] {
        for (flags, what) in [(SYN, "SYN"), (ACK, "ACK"), (close, "close")] {
            assert_sent_to(
                &mut bed,
                &packet::tcp(f, flags, None, b""),
                drained_mac,
                what,
            );
        }
    }
    // Established, then idle past the established timeout (installed as
    // a peer's replica last seen that long ago would be): on the LRU
    // tables 16 min, past their fixed 15 min (their age arithmetic wraps, so a
    // machine up for less is no matter); on the bucket table 90 s, past a
    // 60 s horizon set here (lbd's `tcp_idle_timeout_s`): its ranks hold
    // no time before the machine's start, and a fresh CI machine has run
    // for less than 16 min.
    let idle_seen_ns = match kind {
        ConntrackKind::Buckets => {
            let horizon = Duration::from_secs(60);
            bed.dataplane
                .set_idle_horizons(horizon, horizon)
                .expect("idle horizons");
            monotonic_ns_past(Duration::from_secs(100)) - 90 * 1_000_000_000
        }
        _ => monotonic_ns().wrapping_sub(16 * 60 * 1_000_000_000),
    };
    let backend_id = bed.maglev_backend_id(&vip, &idle).expect("id");
    let generation = bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&vip)].backends
        [&drained]
        .generation;
    let stale = lb_common::FlowEntry {
        backend_id,
        backend_generation: generation,
        last_seen_ns: idle_seen_ns,
        flags: 0,
        hash: 0,
    };
    bed.dataplane
        .install_flow(&flow_key(&idle, Protocol::Tcp), &stale)
        .expect("install");
    assert_sent_to(
        &mut bed,
        &packet::tcp(&handshake, SYN, None, b""),
        drained_mac,
        "SYN",
    );
    // A handshake held in the half-open table (SYN-flood mode; the LRU
    // design holds every SYN there).
    bed.set_syn_flood(true).expect("flood mode");
    assert_sent_to(
        &mut bed,
        &packet::tcp(&held_apart, SYN, None, b""),
        drained_mac,
        "SYN",
    );
    bed.set_syn_flood(false).expect("flood mode");
    assert!(bed
        .dataplane
        .half_open_flow(&flow_key(&held_apart, Protocol::Tcp))
        .is_some());
    for flags in [SYN, ACK] {
        assert_sent_to(
            &mut bed,
            &packet::tcp(&established, flags, None, b""),
            drained_mac,
            "open",
        );
        assert_sent_to(
            &mut bed,
            &packet::tcp(&spoofed, flags, None, b""),
            drained_mac,
            "open",
        );
    }

    // .12 drained: alive, weight 0 (no new flows).
    for b in &mut vip.backends {
        if b.address == drained {
            b.weight = 0;
        }
    }
    bed.apply(&[vip.clone()]).expect("apply");
    let held = bed.counter(Counter::ConntrackHalfOpenNew).expect("counter");
    let vip_id = bed.balancer.vips()[&lb_userspace::reconcile::VipId::of(&vip)].id;
    let vip_new = |bed: &TestBed| {
        bed.dataplane
            .vip_traffic(vip_id)
            .expect("VIP stats")
            .new_flows
    };
    let backend_new = |bed: &TestBed, id: u32| {
        bed.dataplane
            .backend_traffic(id)
            .expect("backend stats")
            .new_flows
    };
    for f in [&fin_closed, &rst_closed, &idle] {
        let (now, mac) = bed.maglev_backend(&vip, f).expect("backend");
        assert_ne!(now, drained, "weight 0 takes no slot");
        let what = format!("a new connection on {f:?}");
        let now_id = bed.maglev_backend_id(&vip, f).expect("id");
        let (vip_before, backend_before) = (vip_new(&bed), backend_new(&bed, now_id));
        assert_sent_to(&mut bed, &packet::tcp(f, SYN, None, b""), mac, &what);
        // Counted as a new flow of the VIP and of its new backend.
        assert_eq!(vip_new(&bed), vip_before + 1, "{what}: VIP new flows");
        assert_eq!(
            backend_new(&bed, now_id),
            backend_before + 1,
            "{what}: backend new flows"
        );
        let entry = bed
            .dataplane
            .flow(&flow_key(f, Protocol::Tcp))
            .expect("read")
            .expect("re-pinned in place");
        assert_eq!(entry.flags & FLOW_F_STATE, 0, "{what}: {entry:?}");
        assert_eq!(
            entry.backend_id,
            bed.maglev_backend_id(&vip, f).expect("id")
        );
        // Its handshake completes and its data follow it there.
        assert_sent_to(&mut bed, &packet::tcp(f, ACK, None, b"x"), mac, &what);
        assert_sent_to(&mut bed, &packet::tcp(f, ACK, None, b"y"), mac, &what);
    }
    // A handshake (held where this design holds SYNs) whose SYN comes
    // again, and two live connections that see a SYN: all stay on .12,
    // none a new flow.
    let vip_before = vip_new(&bed);
    for f in [&handshake, &held_apart, &established, &spoofed] {
        assert_sent_to(
            &mut bed,
            &packet::tcp(f, SYN, None, b""),
            drained_mac,
            "live",
        );
    }
    assert_eq!(vip_new(&bed), vip_before, "a SYN into a live flow");
    for f in [&handshake, &held_apart] {
        assert_sent_to(
            &mut bed,
            &packet::tcp(f, ACK, None, b""),
            drained_mac,
            "ACK",
        );
    }
    assert_sent_to(
        &mut bed,
        &packet::tcp(&established, ACK, None, b""),
        drained_mac,
        "ACK",
    );
    if kind == ConntrackKind::Buckets {
        // Each new connection is a handshake held in the table; nothing
        // else opened one.
        assert_eq!(
            bed.counter(Counter::ConntrackHalfOpenNew).expect("counter") - held,
            3
        );
    }
}

fn a_new_connection_on_a_reused_tuple_leaves_a_drained_backend_buckets(hook: Hook) {
    a_new_connection_on_a_reused_tuple_leaves_a_drained_backend(hook, ConntrackKind::Buckets);
}

fn a_new_connection_on_a_reused_tuple_leaves_a_drained_backend_lru(hook: Hook) {
    a_new_connection_on_a_reused_tuple_leaves_a_drained_backend(hook, ConntrackKind::Lru);
}

/// A client's ACK that would promote its handshake from the half-open
/// table while every way of its two buckets is being written (held busy
/// here through lbd's memory mapping of the table, as writers on other
/// CPUs would hold them for an instant): the insert fails, counted, and
/// the handshake stays in the half-open table, so the flow is never in
/// neither table; the next ACK promotes it, to the same backend.
fn a_promotion_that_finds_every_way_busy_keeps_the_handshake(hook: Hook) {
    use lb_common::flow_table::{
        bucket_index, buckets_for, nearby_bucket_index, FlowBucket, TAG_BUSY,
    };
    use std::os::fd::{AsFd as _, AsRawFd as _};

    let (pins, _cleanup) = pin_dir(match hook {
        Hook::Xdp => "busy-xdp",
        Hook::Tc => "busy-tc",
    });
    let options = LoadOptions {
        conntrack_kind: ConntrackKind::Buckets,
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    };
    let vip = vip4_tcp();
    let mut bed =
        TestBed::with_options(std::slice::from_ref(&vip), hook, 64, &options).expect("test bed");
    let f = flow(7);
    let key = flow_key(&f, Protocol::Tcp);
    let (_, mac) = bed.maglev_backend(&vip, &f).expect("backend");
    bed.set_syn_flood(true).expect("flood mode");
    assert_sent_to(&mut bed, &packet::tcp(&f, SYN, None, b""), mac, "SYN");
    bed.set_syn_flood(false).expect("flood mode");
    assert!(bed.dataplane.half_open_flow(&key).is_some(), "held apart");

    // The table's memory, as lbd maps it.
    let map = aya::maps::MapData::from_pin(pins.map_path(names::MAP_FLOW_BUCKETS)).expect("pin");
    let buckets = buckets_for(64);
    let len = buckets as usize * std::mem::size_of::<FlowBucket>();
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
    assert_ne!(base, libc::MAP_FAILED, "mmap");
    let table = base.cast::<FlowBucket>();
    let place = lb_common::hash::table_hash(&key);
    let ways: Vec<*mut u64> = [
        bucket_index(place, buckets - 1),
        nearby_bucket_index(place, buckets - 1),
    ]
    .into_iter()
    .flat_map(|b| {
        // SAFETY: the index is within the mapped buckets.
        let bucket = unsafe { table.add(b as usize) };
        // SAFETY: as above.
        (0..FLOW_WAYS).map(move |w| unsafe { std::ptr::addr_of_mut!((*bucket).tags[w]) })
    })
    .collect();
    // SAFETY: tags of mapped buckets; nothing else writes them meanwhile
    // (the program runs only when this test runs it).
    let saved: Vec<u64> = ways.iter().map(|&t| unsafe { t.read_volatile() }).collect();
    for (&t, &tag) in ways.iter().zip(&saved) {
        // SAFETY: as above.
        unsafe { t.write_volatile((tag & !3) | u64::from(TAG_BUSY)) };
    }

    let failed = bed
        .counter(Counter::ConntrackInsertFailed)
        .expect("counter");
    bed.dataplane.drain_events();
    assert_sent_to(
        &mut bed,
        &packet::tcp(&f, ACK, None, b"x"),
        mac,
        "ACK, ways busy",
    );
    assert_eq!(
        bed.counter(Counter::ConntrackInsertFailed)
            .expect("counter")
            - failed,
        1
    );
    // No event: it would tell lbd a flow went untracked (forwarded by
    // hash only), and this one is still tracked, in the half-open table.
    let events = bed.dataplane.drain_events();
    assert!(
        !events
            .iter()
            .any(|e| e.kind == lb_common::consts::EVENT_CONNTRACK_INSERT_FAILED),
        "{events:?}"
    );
    assert!(
        bed.dataplane.half_open_flow(&key).is_some(),
        "the handshake stays held while the table took nothing"
    );

    for (&t, &tag) in ways.iter().zip(&saved) {
        // SAFETY: as above.
        unsafe { t.write_volatile(tag) };
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(base, len) };
    assert_sent_to(&mut bed, &packet::tcp(&f, ACK, None, b"y"), mac, "ACK");
    assert!(bed.dataplane.half_open_flow(&key).is_none(), "promoted");
    let entry = bed
        .dataplane
        .flow(&key)
        .expect("read")
        .expect("in the table");
    assert_eq!(
        entry.backend_id,
        bed.maglev_backend_id(&vip, &f).expect("id")
    );
}

lb_tests::on_both_hooks!(
    a_new_connection_on_a_reused_tuple_leaves_a_drained_backend_buckets,
    a_new_connection_on_a_reused_tuple_leaves_a_drained_backend_lru,
    a_promotion_that_finds_every_way_busy_keeps_the_handshake,
);
