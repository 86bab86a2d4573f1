//! The connection table's idle horizons, one per protocol, through the
//! real program under BPF_PROG_TEST_RUN: lbd writes
//! `tcp_idle_timeout_s` and `udp_idle_timeout_s` to the data plane
//! (`Dataplane::set_idle_horizons`), and the data plane holds each flow
//! to its protocol's. A UDP flow idle past its horizon is over: its next
//! packet takes Maglev's pick of now, counted as a new flow, while one
//! within it keeps its backend; a horizon written again (a reload) holds
//! from the next packet. An established TCP flow idle past the TCP
//! horizon is over for a SYN on its tuple. A full bucket evicts an
//! expired UDP flow before any live TCP flow, and a SYN, which takes no
//! live flow's way, takes it. An open TCP connection idle past the TCP
//! horizon is still steered by its entry: a SYN never takes its way (a
//! closed flow's, or the half-open table, instead), so after a drain its
//! next packet still reaches its backend; a new connection's insert
//! takes it only before live flows, and each eviction of an open
//! connection is counted (idle or live). Flows are aged by rewriting their last-seen
//! time and rank through lbd's memory mapping of the table (the program
//! runs only when a test runs it, so nothing else writes meanwhile).
//! Needs root.

use std::time::Duration;

use lb_common::{
    consts::{names, FLOW_F_HALF_OPEN},
    flow_table::{
        rank_class, rank_word, read_way, rewrite, tag_rank, FlowBucket, CLASS_DATAGRAM,
        CLASS_ESTABLISHED, FLOW_WAYS,
    },
    stats::Counter,
    FlowKey,
};
use lb_tests::{
    lab::TestPins,
    on_both_hooks,
    packet::{self, Flow, Tcp, ACK, SYN},
    testbed::{action, flow_key, vip4_tcp, vip4_udp, Hook, TestBed},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    conntrack::kind::ConntrackKind,
    dataplane::LoadOptions,
    reconcile::VipId,
    shared_mapping::SharedMapping,
};

/// lbd's default TCP horizon (`tcp_idle_timeout_s`, 15 minutes).
const TCP_DEFAULT: Duration = Duration::from_secs(900);
/// lbd's default UDP horizon (`udp_idle_timeout_s`).
const UDP_DEFAULT: Duration = Duration::from_secs(30);

/// A test bed on pins (so `age` can reach the table) with a connection
/// table of `size` flows.
fn bed(vips: &[VipConfig], hook: Hook, size: u32, tag: &str) -> (TestBed, TestPins) {
    let dir = TestPins::new("lbidle", &format!("{tag}-{hook:?}")).expect("pin directory");
    let options = LoadOptions {
        conntrack_kind: ConntrackKind::Buckets,
        pins: Some(dir.pins()),
        ..LoadOptions::default()
    };
    let bed = TestBed::with_options(vips, hook, size, &options).expect("test bed");
    (bed, dir)
}

/// Client flow `n` to `vip`.
fn flow(n: u32, vip: &VipConfig) -> Flow {
    Flow {
        src: std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 19, (n >> 8) as u8, n as u8)),
        dst: vip.address,
        sport: 20_000 + (n % 40_000) as u16,
        dport: vip.port,
    }
}

/// A packet of `flow` to `vip` (a bare ACK for TCP).
fn frame(vip: &VipConfig, flow: &Flow) -> Vec<u8> {
    match vip.protocol {
        Protocol::Udp => packet::udp(flow, None, b"q"),
        Protocol::Tcp => packet::tcp(flow, ACK, None, b""),
    }
}

/// Sends `frame` and asserts it went out to `mac`.
fn sent_to(bed: &mut TestBed, frame: &[u8], mac: [u8; 6], what: &str) {
    let (verdict, out) = bed.run(frame).expect("run");
    assert_eq!(verdict, action::TX, "{what}");
    assert_eq!(out, packet::forwarded(frame, mac), "{what}");
}

/// The connection table as lbd maps it.
struct Table {
    mapping: SharedMapping,
    buckets: usize,
}

impl Table {
    fn of(pins: &TestPins) -> Self {
        let map = aya::maps::MapData::from_pin(pins.pins().map_path(names::MAP_FLOW_BUCKETS))
            .expect("pinned table");
        let buckets = map.info().expect("map info").max_entries() as usize;
        let len = buckets * std::mem::size_of::<FlowBucket>();
        let mapping = SharedMapping::new(map, len).expect("mmap");
        Self { mapping, buckets }
    }

    /// Runs `f` on the way holding `key`: its bucket and how it was seen.
    fn with_way<T>(
        &self,
        key: &FlowKey,
        f: impl FnOnce(*mut FlowBucket, &lb_common::flow_table::Seen) -> T,
    ) -> T {
        let table = self.mapping.base::<FlowBucket>().as_ptr();
        for index in 0..self.buckets {
            // SAFETY: the index is within the mapped buckets.
            let bucket = unsafe { table.add(index) };
            for way in 0..FLOW_WAYS {
                // SAFETY: a live bucket of the mapping.
                if let Some((found, seen)) = unsafe { read_way(bucket, way) } {
                    if found == *key {
                        return f(bucket, &seen);
                    }
                }
            }
        }
        panic!("{key:?} is not in the table");
    }

    /// The eviction class the table's tag gives `key`.
    fn class(&self, key: &FlowKey) -> u32 {
        self.with_way(key, |_, seen| rank_class(tag_rank(seen.tag)))
    }

    /// Moves `key`'s last packet back by `by`: its last-seen time and its
    /// rank's tick, its class kept (the data plane judges an idle flow by
    /// both).
    fn age(&self, key: &FlowKey, by: Duration) {
        self.with_way(key, |bucket, seen| {
            let ns = u64::try_from(by.as_nanos()).expect("ns");
            let entry = lb_common::FlowEntry {
                last_seen_ns: seen.entry.last_seen_ns - ns,
                ..seen.entry
            };
            let rank = rank_word(entry.last_seen_ns, rank_class(tag_rank(seen.tag)));
            // SAFETY: a live bucket of the mapping, the way as read.
            assert!(
                unsafe { rewrite(bucket, seen, &entry, rank) },
                "{key:?} aged"
            );
        });
    }
}

/// Backend id and MAC of `vip`'s backend at `address`.
fn backend_at(bed: &TestBed, vip: &VipConfig, address: &str) -> (u32, [u8; 6]) {
    let address: std::net::IpAddr = address.parse().expect("addr");
    let id = bed.balancer.vips()[&VipId::of(vip)].backends[&address].id;
    let mac = vip
        .backends
        .iter()
        .find(|b| b.address == address)
        .and_then(|b| b.mac)
        .expect("mac")
        .octets();
    (id, mac)
}

/// New flows counted for VIP `vip`.
fn vip_new_flows(bed: &TestBed, vip: &VipConfig) -> u64 {
    let id = bed.balancer.vips()[&VipId::of(vip)].id;
    bed.dataplane.vip_traffic(id).expect("VIP stats").new_flows
}

/// `vip` with its backend at `address` drained (weight 0: no new flows).
fn drained(vip: &VipConfig, address: &str) -> VipConfig {
    let address: std::net::IpAddr = address.parse().expect("addr");
    let mut vip = vip.clone();
    for b in &mut vip.backends {
        if b.address == address {
            b.weight = 0;
        }
    }
    vip
}

/// Flows of `vip` Maglev sends to the backend at `address` now.
fn flows_on(bed: &TestBed, vip: &VipConfig, address: &str, count: usize) -> Vec<Flow> {
    let address: std::net::IpAddr = address.parse().expect("addr");
    (0..4000)
        .map(|n| flow(n, vip))
        .filter(|f| bed.maglev_backend(vip, f).expect("backend").0 == address)
        .take(count)
        .collect()
}

/// UDP flows pinned to a backend that is then drained: one idle past the
/// UDP horizon takes Maglev's pick of now at its next packet (counted as
/// a new flow of the VIP, re-pinned in place as a datagram flow, its
/// packets after it staying there), one idle just within it keeps its
/// backend. A horizon written again holds from the next packet: a
/// longer one keeps a flow the shorter one would re-pick, a shorter one
/// re-picks it. While lbd has written no horizon the data plane keeps 15
/// minutes.
fn an_idle_udp_flow_past_its_horizon_takes_the_current_pick(hook: Hook) {
    let vip = vip4_udp();
    let (mut bed, pins) = bed(std::slice::from_ref(&vip), hook, 4096, "udp");
    let table = Table::of(&pins);
    const DRAINED: &str = "198.18.0.12";
    let (drained_id, drained_mac) = backend_at(&bed, &vip, DRAINED);
    let flows = flows_on(&bed, &vip, DRAINED, 5);
    let [unwritten, past, within, reloaded, shortened] =
        <[Flow; 5]>::try_from(flows).expect("five flows");
    for f in [&unwritten, &past, &within, &reloaded, &shortened] {
        sent_to(&mut bed, &frame(&vip, f), drained_mac, "a new UDP flow");
        let key = flow_key(f, Protocol::Udp);
        assert_eq!(table.class(&key), CLASS_DATAGRAM, "{f:?} ranked as UDP");
    }
    let vip_now = drained(&vip, DRAINED);
    bed.apply(std::slice::from_ref(&vip_now)).expect("apply");

    // No horizon written: 15 minutes, for UDP too.
    let key = |f: &Flow| flow_key(f, Protocol::Udp);
    table.age(&key(&unwritten), Duration::from_secs(31));
    sent_to(
        &mut bed,
        &frame(&vip, &unwritten),
        drained_mac,
        "a UDP flow 31 s idle, no horizon written",
    );

    bed.dataplane
        .set_idle_horizons(TCP_DEFAULT, UDP_DEFAULT)
        .expect("horizons");
    table.age(&key(&past), Duration::from_secs(31));
    table.age(&key(&within), Duration::from_secs(28));
    sent_to(
        &mut bed,
        &frame(&vip, &within),
        drained_mac,
        "a UDP flow 28 s idle (horizon 30 s)",
    );
    let (new_before, flows_before) = (
        bed.counter(Counter::ConntrackNew).expect("counter"),
        vip_new_flows(&bed, &vip),
    );
    let (now, mac) = bed.maglev_backend(&vip_now, &past).expect("backend");
    assert_ne!(now.to_string(), DRAINED, "weight 0 takes no slot");
    let now_id = bed.maglev_backend_id(&vip_now, &past).expect("id");
    sent_to(
        &mut bed,
        &frame(&vip, &past),
        mac,
        "a UDP flow 31 s idle (horizon 30 s)",
    );
    assert_eq!(
        bed.counter(Counter::ConntrackNew).expect("counter"),
        new_before + 1,
        "counted as a new flow"
    );
    assert_eq!(vip_new_flows(&bed, &vip), flows_before + 1, "a new flow");
    let entry = bed
        .dataplane
        .flow(&key(&past))
        .expect("read")
        .expect("re-pinned in place");
    assert_eq!(entry.backend_id, now_id);
    assert_eq!(table.class(&key(&past)), CLASS_DATAGRAM);
    sent_to(&mut bed, &frame(&vip, &past), mac, "its next packet");
    assert_eq!(
        bed.dataplane
            .flow(&key(&within))
            .expect("read")
            .expect("entry")
            .backend_id,
        drained_id
    );

    // A reload lengthens the horizon: 45 s idle is within 60 s.
    table.age(&key(&reloaded), Duration::from_secs(45));
    bed.dataplane
        .set_idle_horizons(TCP_DEFAULT, Duration::from_secs(60))
        .expect("horizons");
    sent_to(
        &mut bed,
        &frame(&vip, &reloaded),
        drained_mac,
        "a UDP flow 45 s idle (horizon 60 s)",
    );
    // And shortens it again: 45 s idle is past 40 s.
    table.age(&key(&shortened), Duration::from_secs(45));
    bed.dataplane
        .set_idle_horizons(TCP_DEFAULT, Duration::from_secs(40))
        .expect("horizons");
    let (_, mac) = bed.maglev_backend(&vip_now, &shortened).expect("backend");
    sent_to(
        &mut bed,
        &frame(&vip, &shortened),
        mac,
        "a UDP flow 45 s idle (horizon 40 s)",
    );
}

/// An established TCP connection pinned to a backend that is then
/// drained: idle past the TCP horizon, a SYN on its tuple is a new
/// connection and takes Maglev's pick of now (a handshake held in place);
/// idle within it, a SYN keeps its backend, as does a data packet of a
/// connection idle past it (only a SYN reopens a TCP tuple).
fn a_syn_on_a_connection_idle_past_the_tcp_horizon_takes_the_current_pick(hook: Hook) {
    let vip = vip4_tcp();
    let (mut bed, pins) = bed(std::slice::from_ref(&vip), hook, 4096, "tcp");
    let table = Table::of(&pins);
    const DRAINED: &str = "198.18.0.12";
    let (_, drained_mac) = backend_at(&bed, &vip, DRAINED);
    let flows = flows_on(&bed, &vip, DRAINED, 3);
    let [past, within, data] = <[Flow; 3]>::try_from(flows).expect("three flows");
    let key = |f: &Flow| flow_key(f, Protocol::Tcp);
    for f in [&past, &within, &data] {
        for flags in [SYN, ACK] {
            sent_to(
                &mut bed,
                &packet::tcp(f, flags, None, b""),
                drained_mac,
                "a connection",
            );
        }
        assert_eq!(table.class(&key(f)), CLASS_ESTABLISHED);
    }
    let vip_now = drained(&vip, DRAINED);
    bed.apply(std::slice::from_ref(&vip_now)).expect("apply");
    bed.dataplane
        .set_idle_horizons(Duration::from_secs(60), UDP_DEFAULT)
        .expect("horizons");
    table.age(&key(&past), Duration::from_secs(61));
    table.age(&key(&within), Duration::from_secs(58));
    table.age(&key(&data), Duration::from_secs(61));
    sent_to(
        &mut bed,
        &packet::tcp(&within, SYN, None, b""),
        drained_mac,
        "a SYN into a connection 58 s idle (horizon 60 s)",
    );
    sent_to(
        &mut bed,
        &packet::tcp(&data, ACK, None, b"x"),
        drained_mac,
        "data of a connection 61 s idle",
    );
    let (_, mac) = bed.maglev_backend(&vip_now, &past).expect("backend");
    let held = bed.counter(Counter::ConntrackHalfOpenNew).expect("counter");
    sent_to(
        &mut bed,
        &packet::tcp(&past, SYN, None, b""),
        mac,
        "a SYN on a connection 61 s idle (horizon 60 s)",
    );
    assert_eq!(
        bed.counter(Counter::ConntrackHalfOpenNew).expect("counter"),
        held + 1
    );
    let entry = bed
        .dataplane
        .flow(&key(&past))
        .expect("read")
        .expect("re-pinned in place");
    assert_ne!(entry.flags & FLOW_F_HALF_OPEN, 0, "a handshake: {entry:?}");
    sent_to(
        &mut bed,
        &packet::tcp(&past, ACK, None, b""),
        mac,
        "its handshake's ACK",
    );
}

/// One bucket of eight ways (the smallest table), full: seven TCP
/// connections last seen 60 s ago (live: the TCP horizon is 15 minutes)
/// and one UDP flow last seen 31 s ago, past the UDP horizon of 30 s.
/// The UDP flow is the most recently seen of the eight: by age alone
/// (one horizon for both) the oldest connection would go first.
fn full_bucket(hook: Hook, tag: &str) -> (TestBed, TestPins, Vec<Flow>, Flow) {
    let (tcp, udp) = (vip4_tcp(), vip4_udp());
    let (mut bed, pins) = bed(&[tcp.clone(), udp.clone()], hook, 1, tag);
    bed.dataplane
        .set_idle_horizons(TCP_DEFAULT, UDP_DEFAULT)
        .expect("horizons");
    let table = Table::of(&pins);
    let connections: Vec<Flow> = (0..7).map(|n| flow(n, &tcp)).collect();
    for f in &connections {
        let (verdict, _) = bed.run(&frame(&tcp, f)).expect("run");
        assert_eq!(verdict, action::TX);
        table.age(&flow_key(f, Protocol::Tcp), Duration::from_secs(60));
    }
    let datagrams = flow(100, &udp);
    let (verdict, _) = bed.run(&frame(&udp, &datagrams)).expect("run");
    assert_eq!(verdict, action::TX);
    table.age(
        &flow_key(&datagrams, Protocol::Udp),
        Duration::from_secs(31),
    );
    assert_eq!(
        bed.dataplane.flow_count(),
        FLOW_WAYS as u64,
        "a full bucket"
    );
    (bed, pins, connections, datagrams)
}

/// A full bucket (`full_bucket`) evicts the expired UDP flow for a new
/// connection, before any live one; and a SYN, which takes no live
/// flow's way, takes the expired UDP flow's as a handshake instead of
/// being held apart.
fn eviction_takes_an_expired_udp_flow_before_a_live_tcp_one(hook: Hook) {
    for syn in [false, true] {
        let tag = if syn { "evict-syn" } else { "evict-ack" };
        let (mut bed, _pins, connections, datagrams) = full_bucket(hook, tag);
        let newcomer = flow(200, &vip4_tcp());
        let flags = if syn { SYN } else { ACK };
        let (verdict, _) = bed
            .run(&packet::tcp(&newcomer, flags, None, b""))
            .expect("run");
        assert_eq!(verdict, action::TX);
        let what = if syn { "a SYN" } else { "a new connection" };
        assert_eq!(
            bed.dataplane
                .flow(&flow_key(&datagrams, Protocol::Udp))
                .expect("read"),
            None,
            "{what} evicted the expired UDP flow"
        );
        for f in &connections {
            assert!(
                bed.dataplane
                    .flow(&flow_key(f, Protocol::Tcp))
                    .expect("read")
                    .is_some(),
                "{what} evicted the live connection {f:?}"
            );
        }
        let entry = bed
            .dataplane
            .flow(&flow_key(&newcomer, Protocol::Tcp))
            .expect("read")
            .expect("the newcomer is in the table");
        assert_eq!(entry.flags & FLOW_F_HALF_OPEN != 0, syn, "{entry:?}");
        assert_eq!(
            bed.dataplane
                .half_open_flow(&flow_key(&newcomer, Protocol::Tcp)),
            None,
            "{what} is not held apart"
        );
    }
}

/// FIN+ACK.
const FIN_ACK: Tcp = Tcp { fin: true, ..ACK };

/// Whether the table holds `f` (TCP), on backend `id`.
fn held_on(bed: &TestBed, f: &Flow, id: u32) -> bool {
    bed.dataplane
        .flow(&flow_key(f, Protocol::Tcp))
        .expect("read")
        .is_some_and(|entry| entry.backend_id == id)
}

/// The database fleet's case (audit F1): a pooled connection on backend
/// A, idle 20 minutes (past the default TCP horizon, no keepalive), in a
/// bucket (one bucket of eight ways: the smallest table) whose seven
/// other flows closed a minute ago. A is drained. A SYN of a new flow
/// into that full bucket takes a closed flow's way, not the idle
/// connection's (before, the idle connection ranked with the closed
/// flows and, the oldest, went first), and the connection's next query
/// (an ACK with data) still reaches A, which its socket is on. Once every
/// closed way is taken, a further SYN is held apart (half-open table),
/// and the idle connection stays. No open connection was evicted.
fn a_syn_never_takes_an_idle_open_connections_way_and_it_keeps_its_backend(hook: Hook) {
    let vip = vip4_tcp();
    let (mut bed, pins) = bed(std::slice::from_ref(&vip), hook, 1, "idle-open-syn");
    bed.dataplane
        .set_idle_horizons(TCP_DEFAULT, UDP_DEFAULT)
        .expect("horizons");
    let table = Table::of(&pins);
    const DRAINED: &str = "198.18.0.12";
    let (drained_id, drained_mac) = backend_at(&bed, &vip, DRAINED);
    let pooled = flows_on(&bed, &vip, DRAINED, 1)[0];
    let key = |f: &Flow| flow_key(f, Protocol::Tcp);
    for flags in [SYN, ACK] {
        sent_to(
            &mut bed,
            &packet::tcp(&pooled, flags, None, b""),
            drained_mac,
            "the pooled connection",
        );
    }
    let closed: Vec<Flow> = (0..7).map(|n| flow(5_000 + n, &vip)).collect();
    for f in &closed {
        for flags in [ACK, FIN_ACK] {
            let (verdict, _) = bed.run(&packet::tcp(f, flags, None, b"")).expect("run");
            assert_eq!(verdict, action::TX);
        }
        table.age(&key(f), Duration::from_secs(60));
    }
    table.age(&key(&pooled), Duration::from_secs(1_200));
    assert_eq!(
        bed.dataplane.flow_count(),
        FLOW_WAYS as u64,
        "a full bucket"
    );
    let vip_now = drained(&vip, DRAINED);
    bed.apply(std::slice::from_ref(&vip_now)).expect("apply");
    let evicted = |bed: &TestBed| {
        (
            bed.counter(Counter::ConntrackEvictedIdle).expect("counter"),
            bed.counter(Counter::ConntrackEvictedLive).expect("counter"),
        )
    };
    let before = evicted(&bed);

    let newcomer = flow(6_000, &vip);
    let (verdict, _) = bed
        .run(&packet::tcp(&newcomer, SYN, None, b""))
        .expect("run");
    assert_eq!(verdict, action::TX);
    assert!(
        held_on(&bed, &pooled, drained_id),
        "the SYN took the idle connection's way"
    );
    let gone = closed
        .iter()
        .filter(|f| bed.dataplane.flow(&key(f)).expect("read").is_none())
        .count();
    assert_eq!(gone, 1, "the SYN took a closed flow's way");
    sent_to(
        &mut bed,
        &packet::tcp(&pooled, ACK, None, b"SELECT 1"),
        drained_mac,
        "the idle connection's next query, after the drain and a SYN",
    );

    // Idle again; the six closed ways left go to six SYNs, a seventh is
    // held apart.
    table.age(&key(&pooled), Duration::from_secs(1_200));
    for n in 1..=7 {
        let syn = flow(6_000 + n, &vip);
        let (verdict, _) = bed.run(&packet::tcp(&syn, SYN, None, b"")).expect("run");
        assert_eq!(verdict, action::TX);
    }
    let last = key(&flow(6_007, &vip));
    assert_eq!(bed.dataplane.flow(&last).expect("read"), None);
    assert!(
        bed.dataplane.half_open_flow(&last).is_some(),
        "the last SYN is held apart"
    );
    assert!(
        held_on(&bed, &pooled, drained_id),
        "a SYN took the idle connection's way"
    );
    sent_to(
        &mut bed,
        &packet::tcp(&pooled, ACK, None, b"SELECT 2"),
        drained_mac,
        "the idle connection's next query, its bucket full of handshakes",
    );
    assert_eq!(evicted(&bed), before, "no open connection evicted");
}

/// A new connection (its first packet a bare ACK: an established insert)
/// into a full bucket of open connections takes the one idle past the
/// TCP horizon first (counted `conntrack_evicted_idle`), then the least
/// recently seen live one (`conntrack_evicted_live`); a SYN into a bucket
/// of live connections evicts nothing and counts nothing.
fn an_eviction_of_an_open_connection_is_counted_idle_or_live(hook: Hook) {
    let vip = vip4_tcp();
    let (mut bed, pins) = bed(std::slice::from_ref(&vip), hook, 1, "evicted-count");
    bed.dataplane
        .set_idle_horizons(TCP_DEFAULT, UDP_DEFAULT)
        .expect("horizons");
    let table = Table::of(&pins);
    let key = |f: &Flow| flow_key(f, Protocol::Tcp);
    let connections: Vec<Flow> = (0..FLOW_WAYS as u32).map(|n| flow(n, &vip)).collect();
    for (n, f) in connections.iter().enumerate() {
        let (verdict, _) = bed.run(&packet::tcp(f, ACK, None, b"")).expect("run");
        assert_eq!(verdict, action::TX);
        // The first idle 20 minutes; the others live, the second the
        // least recently seen of them.
        let idle = match n {
            0 => 1_200,
            1 => 300,
            _ => 60,
        };
        table.age(&key(f), Duration::from_secs(idle));
    }
    assert_eq!(
        bed.dataplane.flow_count(),
        FLOW_WAYS as u64,
        "a full bucket"
    );
    let count = |bed: &TestBed, counter| bed.counter(counter).expect("counter");
    let (idle0, live0) = (
        count(&bed, Counter::ConntrackEvictedIdle),
        count(&bed, Counter::ConntrackEvictedLive),
    );
    // A SYN takes none of them.
    let syn = flow(7_000, &vip);
    let (verdict, _) = bed.run(&packet::tcp(&syn, SYN, None, b"")).expect("run");
    assert_eq!(verdict, action::TX);
    assert!(bed.dataplane.half_open_flow(&key(&syn)).is_some());
    assert_eq!(count(&bed, Counter::ConntrackEvictedIdle), idle0);
    assert_eq!(count(&bed, Counter::ConntrackEvictedLive), live0);
    // A new connection takes the idle one.
    let first = flow(7_001, &vip);
    let (verdict, _) = bed.run(&packet::tcp(&first, ACK, None, b"")).expect("run");
    assert_eq!(verdict, action::TX);
    assert_eq!(
        bed.dataplane.flow(&key(&connections[0])).expect("read"),
        None
    );
    assert_eq!(count(&bed, Counter::ConntrackEvictedIdle), idle0 + 1);
    assert_eq!(count(&bed, Counter::ConntrackEvictedLive), live0);
    // The next, the live one seen 300 s ago.
    let second = flow(7_002, &vip);
    let (verdict, _) = bed.run(&packet::tcp(&second, ACK, None, b"")).expect("run");
    assert_eq!(verdict, action::TX);
    assert_eq!(
        bed.dataplane.flow(&key(&connections[1])).expect("read"),
        None
    );
    for f in &connections[2..] {
        assert!(
            bed.dataplane.flow(&key(f)).expect("read").is_some(),
            "{f:?}"
        );
    }
    assert_eq!(count(&bed, Counter::ConntrackEvictedIdle), idle0 + 1);
    assert_eq!(count(&bed, Counter::ConntrackEvictedLive), live0 + 1);
}

on_both_hooks!(
    an_idle_udp_flow_past_its_horizon_takes_the_current_pick,
    a_syn_on_a_connection_idle_past_the_tcp_horizon_takes_the_current_pick,
    eviction_takes_an_expired_udp_flow_before_a_live_tcp_one,
    a_syn_never_takes_an_idle_open_connections_way_and_it_keeps_its_backend,
    an_eviction_of_an_open_connection_is_counted_idle_or_live,
);
