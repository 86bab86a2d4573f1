//! The node counters live at the head of each CPU's `PACKET_STATE` value,
//! where the real program counts them under BPF_PROG_TEST_RUN; lbd reads
//! them there, keeps them across a restart (the map is pinned and
//! adopted), and after an upgrade from a release that counted in a map of
//! its own (`COUNTERS`) goes on from that release's counts; one from a
//! release whose `PACKET_STATE` had no spare counter slots (a value of
//! another size) adopts the rest and counts afresh. Needs root.

use aya::maps::{Map, PerCpuArray, PerCpuValues};
use lb_common::{
    consts::names,
    stats::{Counter, COUNTER_COUNT, PACKET_SCRATCH_WORDS},
};
use lb_tests::{
    lab::TestPins,
    lbd_maps::create_map,
    packet::{self, Flow, ACK, SYN},
    testbed::{action, vip4_tcp, Hook, TestBed, VIP4},
};
use lb_userspace::dataplane::LoadOptions;

/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
const PERCPU_ARRAY: u32 = 6;

/// A client flow to the test VIP.
fn flow(n: u8) -> Flow {
    Flow {
        src: format!("198.19.7.{n}").parse().expect("addr"),
        dst: VIP4.parse().expect("addr"),
        sport: 40_000 + u16::from(n),
        dport: 80,
    }
}

/// A data plane on `pins`, its program run by the test.
fn bed(pins: &TestPins) -> TestBed {
    let options = LoadOptions {
        pins: Some(pins.pins()),
        ..LoadOptions::default()
    };
    let mut bed =
        TestBed::with_options(&[vip4_tcp()], Hook::Xdp, 4096, &options).expect("test bed");
    bed.dataplane.finish_adoption();
    bed
}

/// Counter `counter` as lbd reads it.
fn count(bed: &TestBed, counter: Counter) -> u64 {
    bed.dataplane
        .counters()
        .expect("counters")
        .into_iter()
        .find(|(c, _)| *c == counter)
        .map(|(_, n)| n)
        .expect("every counter is read")
}

/// A connection's SYN and first ACK through `bed`'s program.
fn connect(bed: &mut TestBed, flow: &Flow) {
    for flags in [SYN, ACK] {
        let (verdict, _) = bed
            .run(&packet::tcp(flow, flags, None, b""))
            .expect("test run");
        assert_eq!(verdict, action::TX);
    }
}

/// What a connection counts (the SYN and its ACK forwarded, the ACK the
/// handshake's promotion) is what lbd reads, and a restarted lbd (the
/// same pins) reads on from there.
#[test]
fn counters_are_counted_in_the_packet_state_and_kept_across_a_restart() {
    let pins = TestPins::new("lbtnc", "restart").expect("pins");
    {
        let mut first = bed(&pins);
        connect(&mut first, &flow(1));
        assert_eq!(count(&first, Counter::Forwarded), 2);
        assert_eq!(count(&first, Counter::ConntrackNew), 1);
        assert_eq!(count(&first, Counter::ConntrackHalfOpenPromoted), 1);
        let (verdict, _) = first
            .run(&packet::tcp(&flow(1), ACK, None, b"x"))
            .expect("test run");
        assert_eq!(verdict, action::TX);
        assert_eq!(count(&first, Counter::ConntrackHit), 1);
    }
    assert!(pins.pins().map_path(names::MAP_PACKET_STATE).exists());
    let mut second = bed(&pins);
    assert!(second.dataplane.adopted());
    assert_eq!(count(&second, Counter::Forwarded), 3, "adopted");
    connect(&mut second, &flow(2));
    assert_eq!(count(&second, Counter::Forwarded), 5);
    assert_eq!(count(&second, Counter::ConntrackNew), 2);
}

/// A release before `PACKET_STATE` counted in `COUNTERS` (a u64 per
/// counter and CPU; fewer counters then). lbd adds what it holds, both
/// while the old program may still count there and after, and again
/// after its own restart; `--cleanup` takes the old pin with the rest.
#[test]
fn an_upgrade_counts_on_from_the_counters_an_older_release_pinned() {
    let pins = TestPins::new("lbtnc", "upgrade").expect("pins");
    pins.pins().prepare().expect("pin directory");
    let older = COUNTER_COUNT - 2;
    let data = create_map(names::MAP_LEGACY_COUNTERS, PERCPU_ARRAY, (4, 8), older)
        .expect("the old counters");
    let mut old: PerCpuArray<_, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).expect("a per-CPU array");
    let cpus = aya::util::nr_cpus().expect("CPUs");
    let per_cpu = |each: u64| PerCpuValues::try_from(vec![each; cpus]).expect("values");
    old.set(Counter::Forwarded as u32, per_cpu(1000), 0)
        .expect("set");
    old.set(Counter::ConntrackHit as u32, per_cpu(7), 0)
        .expect("set");
    aya::maps::IterableMap::map(&old)
        .pin(pins.pins().map_path(names::MAP_LEGACY_COUNTERS))
        .expect("pin COUNTERS");
    let n = cpus as u64;

    let mut new = bed(&pins);
    assert_eq!(count(&new, Counter::Forwarded), 1000 * n);
    assert_eq!(count(&new, Counter::ConntrackHit), 7 * n);
    assert_eq!(count(&new, Counter::DropMalformed), 0);
    // The old program counts on until it is swapped out.
    old.set(Counter::Forwarded as u32, per_cpu(1001), 0)
        .expect("set");
    connect(&mut new, &flow(3));
    assert_eq!(count(&new, Counter::Forwarded), 1001 * n + 2);
    drop(new);

    let mut restarted = bed(&pins);
    assert_eq!(
        count(&restarted, Counter::Forwarded),
        1001 * n + 2,
        "both parts across a restart"
    );
    // `lbd --cleanup` (or a stop that detaches) removes every pin.
    restarted.dataplane.detach().expect("detach");
    assert!(!pins.pins().map_path(names::MAP_LEGACY_COUNTERS).exists());
}

/// The release before spare counter slots pinned a `PACKET_STATE` of 39
/// counters and the scratch words (a value of another size): an upgrade
/// from it still adopts the data plane (a tracked flow goes on in the
/// connection table), starts `PACKET_STATE` afresh (the node counters
/// count from zero, as Prometheus reads any counter reset), and its own
/// layout, with the spare slots, is kept across the next restart.
#[test]
fn an_upgrade_from_a_packet_state_without_spare_slots_adopts_the_rest() {
    /// Counters of the release before the spare slots.
    const BEFORE_SPARE: u32 = 39;
    let pins = TestPins::new("lbtnc", "spare").expect("pins");
    {
        let mut first = bed(&pins);
        connect(&mut first, &flow(4));
    }
    // That release's PACKET_STATE in place of this one's.
    let path = pins.pins().map_path(names::MAP_PACKET_STATE);
    std::fs::remove_file(&path).expect("unpin PACKET_STATE");
    let value = 8 * (BEFORE_SPARE + PACKET_SCRATCH_WORDS as u32);
    let old = create_map(names::MAP_PACKET_STATE, PERCPU_ARRAY, (4, value), 1)
        .expect("the old PACKET_STATE");
    old.pin(&path).expect("pin the old PACKET_STATE");

    let mut upgraded = bed(&pins);
    assert!(upgraded.dataplane.adopted(), "the state maps are adopted");
    assert_eq!(count(&upgraded, Counter::Forwarded), 0, "counted afresh");
    let (verdict, _) = upgraded
        .run(&packet::tcp(&flow(4), ACK, None, b"x"))
        .expect("test run");
    assert_eq!(verdict, action::TX);
    assert_eq!(
        count(&upgraded, Counter::ConntrackHit),
        1,
        "the flow tracked before the upgrade"
    );
    assert_eq!(count(&upgraded, Counter::Forwarded), 1);
    drop(upgraded);

    let restarted = bed(&pins);
    assert!(restarted.dataplane.adopted());
    assert_eq!(
        count(&restarted, Counter::Forwarded),
        1,
        "this layout is adopted as it is"
    );
}
