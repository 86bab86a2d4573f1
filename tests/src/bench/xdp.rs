//! Data-plane cost per packet: the compiled XDP program under
//! BPF_PROG_TEST_RUN with a large repeat count, run through `xdp_bench`,
//! which restores the original packet before every run and tail-calls the
//! program under test (without it, every run after the first would see the
//! previous run's output). Each case checks with the program's own counters
//! that N runs gave N of the expected outcome.

use anyhow::{anyhow, bail, Context as _};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use lb_common::{consts::names, stats::Counter, FlowEntry, FlowKey, LbConfig};
use lb_userspace::{
    conntrack_kind::ConntrackKind,
    dataplane::{Dataplane, LoadOptions, MapSizes, MapWriter as _},
    reconcile::{Balancer, DesiredVip},
};
use serde::{Deserialize, Serialize};

use super::{template, Spread};
use crate::{
    packet::{self, Flow, ACK, LB_MAC, SYN},
    testbed::{vip4_tcp, vip4_udp, vip6_tcp, VIP4, VIP6},
};

/// One measured case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XdpCase {
    /// Short name.
    pub name: String,
    /// What the program did on each run (the path measured).
    pub path: String,
    /// ns per packet over the rounds (each round = `repeat` runs).
    pub ns_per_packet: Spread,
    /// Runs per round.
    pub repeat: u32,
    /// Rounds.
    pub rounds: u32,
    /// Flows in the connection table before the case ran.
    pub conntrack_prefill: u64,
}

/// All data-plane cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XdpResults {
    /// The cases, wrapper floor and swap floor included.
    pub cases: Vec<XdpCase>,
    /// Connection table capacity of the main cases (lbd's default).
    pub conntrack_capacity: u32,
    /// Connection table capacity of the prefilled pass.
    #[serde(default)]
    pub prefill_capacity: u32,
    /// The connection-table map designs side by side.
    #[serde(default)]
    pub designs: Vec<DesignResult>,
    /// New-flow cost by table capacity (shared LRU, empty table).
    #[serde(default)]
    pub by_capacity: Vec<CapacityResult>,
}

/// New-flow cost at one connection-table capacity: what the table's
/// memory footprint (and so cache misses) costs a new flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityResult {
    /// Table capacity (entries).
    pub capacity: u32,
    /// Runs per round (at most half the capacity: the table never fills).
    pub repeat: u32,
    /// New v4 flow, ns per packet.
    pub new_flow_v4: Spread,
}

/// One connection-table map design, measured on the same packets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesignResult {
    /// Which design.
    pub design: String,
    /// Table capacity.
    pub capacity: u32,
    /// Runs per round.
    pub repeat: u32,
    /// New v4 flow into a table with room.
    pub new_flow_v4: Spread,
    /// New v6 flow into a table with room.
    pub new_flow_v6: Spread,
    /// Tracked v4 flow.
    pub tracked_v4: Spread,
    /// New v4 flow into a full table.
    pub full_table_new_flow: Spread,
    /// What a new flow into a full table got.
    pub full_table_outcome: String,
    /// Userspace cost of removing one expired flow (walk + delete), ns;
    /// the price of expiry where the kernel does not evict.
    pub expiry_ns_per_flow: f64,
}

/// lbd's default connection table size.
const CONNTRACK: u32 = lb_common::consts::CONNTRACK_SIZE_DEFAULT;
/// Room for the 1 M-flow prefill.
const PREFILL_CAPACITY: u32 = 2 * 1024 * 1024;

struct Bench {
    dataplane: Dataplane,
    _balancer: Balancer,
}

fn flow(src: &str, dst: &str, dport: u16) -> Flow {
    Flow {
        src: src.parse().expect("address"),
        dst: dst.parse().expect("address"),
        sport: 40000,
        dport,
    }
}

impl Bench {
    fn new(conntrack: u32, kind: ConntrackKind) -> anyhow::Result<Self> {
        let mut dataplane = Dataplane::load_with(
            MapSizes {
                max_vips: 4,
                conntrack,
                nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
            },
            &LoadOptions {
                conntrack_kind: kind,
                pins: None,
            },
        )
        .context("loading the XDP object (root needed)")?;
        dataplane.set_config(&LbConfig {
            iface_mac: LB_MAC,
            flags: 0,
            _pad: 0,
        })?;
        let vips = [vip4_tcp(), vip4_udp(), vip6_tcp()];
        let desired: Vec<DesiredVip> = vips
            .iter()
            .map(|v| DesiredVip::from_config(v, &|_| None))
            .collect();
        let mut balancer = Balancer::new(4);
        balancer.apply(&mut dataplane, &desired)?;
        for program in [names::PROG_BENCH, names::PROG_SWAP] {
            dataplane
                .program(program)?
                .load()
                .with_context(|| format!("loading {program}"))?;
        }
        Ok(Self {
            dataplane,
            _balancer: balancer,
        })
    }

    fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        Ok(self
            .dataplane
            .counters()?
            .into_iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| v))
    }

    /// Points the wrapper at `target` with `frame` (varying the 32-bit
    /// field at `vary_offset` on every run when non-zero).
    fn prepare(
        &mut self,
        target: &'static str,
        frame: &[u8],
        vary_offset: u32,
    ) -> anyhow::Result<()> {
        let fd = self.dataplane.program(target)?.fd()?.try_clone()?;
        template::prepare(
            &mut self.dataplane,
            template::Wrapper::Xdp,
            &fd,
            frame,
            vary_offset,
        )
    }

    /// Runs the wrapper `repeat` times per round; ns per packet per round.
    fn measure(
        &mut self,
        frame: &[u8],
        repeat: u32,
        rounds: u32,
        expect_action: u32,
        fresh_table: bool,
    ) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::new();
        let mut data_out = vec![0u8; frame.len() + 256];
        for _ in 0..rounds {
            if fresh_table {
                self.clear()?;
            }
            let program: &mut Xdp = self.dataplane.program(names::PROG_BENCH)?;
            let result = program
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut data_out),
                    repeat,
                    ..TestRunOptions::default()
                })
                .context("BPF_PROG_TEST_RUN")?;
            if result.return_value != expect_action {
                bail!(
                    "the wrapper returned {} (expected {expect_action})",
                    result.return_value
                );
            }
            out.push(result.duration.as_nanos() as f64);
        }
        Ok(out)
    }

    /// Empties the connection table; returns how many flows it held and
    /// the time taken (a userspace walk + delete, as expiry would do).
    fn clear(&mut self) -> anyhow::Result<(usize, std::time::Duration)> {
        let started = std::time::Instant::now();
        let keys: Vec<FlowKey> = self.dataplane.flows().map(|(k, _)| k).collect();
        for key in &keys {
            self.dataplane.remove_flow(key)?;
        }
        Ok((keys.len(), started.elapsed()))
    }

    /// Fills the connection table with `count` flows unrelated to the
    /// cases' packets.
    fn prefill(&mut self, count: u32) -> anyhow::Result<()> {
        for i in 0..count {
            let key = FlowKey {
                // 198.19.0.0/16: benchmarking range (never sent anywhere).
                src: [
                    u32::from_ne_bytes([198, 19, (i >> 8) as u8, i as u8]),
                    0,
                    0,
                    0,
                ],
                dst: [u32::from_ne_bytes([198, 18, 0, 100]), 0, 0, 0],
                sport: ((i >> 16) as u16).to_be(),
                dport: 80u16.to_be(),
                proto: 6,
                family: 4,
                _pad: 0,
            };
            let entry = FlowEntry {
                backend_id: 1,
                backend_generation: 1,
                last_seen_ns: 0,
                flags: 0,
                hash: 0,
            };
            self.dataplane.install_flow(&key, &entry)?;
        }
        Ok(())
    }
}

/// A case: which program, which packet, what every run must do.
struct Case {
    name: &'static str,
    path: &'static str,
    target: &'static str,
    frame: Vec<u8>,
    vary_offset: u32,
    action: u32,
    counter: Option<Counter>,
}

impl Case {
    fn new_flow(&self) -> bool {
        self.vary_offset != 0 && self.counter == Some(Counter::ConntrackNew)
    }
}

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

fn cases() -> Vec<Case> {
    let v4 = flow("198.18.0.10", VIP4, 80);
    let v6 = flow("2001:2::10", VIP6, 80);
    let udp = flow("198.18.0.10", VIP4, 53);
    let other = flow("198.18.0.10", "198.18.0.2", 80);
    // Offsets of the source address: a new flow on every run.
    const V4_SRC: u32 = 14 + 12;
    const V6_SRC_LOW: u32 = 14 + 8 + 12;
    vec![
        Case {
            name: "wrapper floor",
            path: "restore + tail call to XDP_PASS",
            target: names::PROG_PASS,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: 0,
            action: XDP_PASS,
            counter: None,
        },
        Case {
            name: "MAC swap + XDP_TX floor",
            path: "restore + tail call to a MAC swap",
            target: names::PROG_SWAP,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: None,
        },
        Case {
            name: "TCP SYN v4, new flow",
            path: "parse, VIP hit, conntrack miss, Maglev, conntrack insert, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: V4_SRC,
            action: XDP_TX,
            counter: Some(Counter::ConntrackNew),
        },
        Case {
            name: "TCP ACK v4, tracked flow",
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
        },
        Case {
            name: "UDP v4 to a VIP, tracked",
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::udp(&udp, None, b"query"),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
        },
        Case {
            name: "TCP SYN v6, new flow",
            path: "parse, VIP hit, conntrack miss, Maglev, conntrack insert, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, SYN, None, b""),
            vary_offset: V6_SRC_LOW,
            action: XDP_TX,
            counter: Some(Counter::ConntrackNew),
        },
        Case {
            name: "TCP ACK v6, tracked flow",
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
        },
        Case {
            name: "non-VIP packet",
            path: "parse, VIP miss, PASS",
            target: names::PROG_LB,
            frame: packet::tcp(&other, ACK, None, b""),
            vary_offset: 0,
            action: XDP_PASS,
            counter: Some(Counter::PassNotVip),
        },
    ]
}

/// CPUs the kernel may bring online (what per-CPU maps are sized for).
fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|text| {
            let last = text.trim().rsplit(['-', ',']).next()?.parse::<u32>().ok()?;
            Some(last + 1)
        })
        .unwrap_or(1)
}

/// Keeps this thread on one CPU, so per-CPU state (LRU free lists,
/// counters) is the same from round to round.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs one case; checks that every run took the named path.
fn run_case(
    bench: &mut Bench,
    case: &Case,
    repeat: u32,
    rounds: u32,
    fresh_table: bool,
) -> anyhow::Result<Spread> {
    bench.prepare(case.target, &case.frame, case.vary_offset)?;
    // Warm up (and, for tracked flows, create the flow).
    bench.measure(&case.frame, 1000, 1, case.action, false)?;
    let before = match case.counter {
        Some(c) => bench.counter(c)?,
        None => 0,
    };
    let ns = bench.measure(&case.frame, repeat, rounds, case.action, fresh_table)?;
    if let Some(counter) = case.counter {
        let got = bench.counter(counter)? - before;
        let want = u64::from(repeat) * u64::from(rounds);
        if got != want {
            bail!(
                "{}: {got} {} for {want} runs: the measured path is not the one named",
                case.name,
                counter.name()
            );
        }
    }
    let spread = Spread::of(&ns);
    eprintln!(
        "bench: {:<28} {:>7.1} ns/packet (median of {rounds})",
        case.name, spread.median
    );
    Ok(spread)
}

/// Runs every case at lbd's default table size (new-flow rounds start from
/// an empty table), the table-heavy ones again with `prefill` flows, then
/// the connection-table designs side by side.
pub fn run(repeat: u32, rounds: u32, prefill: u32) -> anyhow::Result<XdpResults> {
    // On a thread of its own: the pinning must not reach the processes the
    // other benchmarks start (they inherit the starting thread's CPU set).
    std::thread::spawn(move || {
        pin_to_cpu(0)?;
        run_pinned(repeat, rounds, prefill)
    })
    .join()
    .map_err(|_| anyhow!("the XDP benchmark thread panicked"))?
}

fn run_pinned(repeat: u32, rounds: u32, prefill: u32) -> anyhow::Result<XdpResults> {
    let mut results = Vec::new();
    for (capacity, pass) in [
        (CONNTRACK, 0u32),
        (PREFILL_CAPACITY.max(prefill * 2), prefill),
    ] {
        if pass > 0 {
            eprintln!("bench: filling the connection table with {pass} flows ...");
        }
        let mut bench = Bench::new(capacity, ConntrackKind::Lru)?;
        bench.prefill(pass)?;
        for case in cases() {
            if pass > 0 && !case.name.contains("flow") {
                continue;
            }
            // New-flow rounds start from an empty table, except in the
            // prefilled pass, where the point is a crowded table.
            let fresh = pass == 0 && case.new_flow();
            let spread = run_case(&mut bench, &case, repeat, rounds, fresh)?;
            results.push(record(&case, spread, repeat, rounds, pass));
        }
    }
    let designs = ConntrackKind::ALL
        .into_iter()
        .map(|kind| run_design(kind, rounds))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut by_capacity = Vec::new();
    for capacity in [4_096u32, 65_536, CONNTRACK, 4 * 1024 * 1024] {
        eprintln!("bench: connection table of {capacity} entries");
        let repeat = (capacity / 2).min(100_000);
        let mut bench = Bench::new(capacity, ConntrackKind::Lru)?;
        let case = cases()
            .into_iter()
            .find(|c| c.name == "TCP SYN v4, new flow")
            .ok_or_else(|| anyhow!("no new-flow case"))?;
        let new_flow_v4 = run_case(&mut bench, &case, repeat, rounds, true)?;
        by_capacity.push(CapacityResult {
            capacity,
            repeat,
            new_flow_v4,
        });
    }
    Ok(XdpResults {
        by_capacity,
        cases: results,
        conntrack_capacity: CONNTRACK,
        prefill_capacity: PREFILL_CAPACITY.max(prefill * 2),
        designs,
    })
}

fn record(case: &Case, spread: Spread, repeat: u32, rounds: u32, prefill: u32) -> XdpCase {
    XdpCase {
        name: case.name.to_owned(),
        path: case.path.to_owned(),
        ns_per_packet: spread,
        repeat,
        rounds,
        conntrack_prefill: u64::from(prefill),
    }
}

/// The table size of the design comparison: lbd's default.
const DESIGN_CAPACITY: u32 = CONNTRACK;

/// One connection-table design: new flows into a table with room (small
/// enough rounds that a per-CPU LRU's share of one CPU is not exceeded),
/// a tracked flow, new flows into a full table, and the userspace cost of
/// expiring a flow.
fn run_design(kind: ConntrackKind, rounds: u32) -> anyhow::Result<DesignResult> {
    eprintln!("bench: connection table as {}", kind.label());
    // Per-CPU LRU splits the free elements between the possible CPUs
    // (this thread is pinned, so ask the system, not our CPU set).
    let cpus = possible_cpus();
    let repeat = (DESIGN_CAPACITY / cpus.max(1) / 2).min(100_000);
    let mut bench = Bench::new(DESIGN_CAPACITY, kind)?;
    let by_name = |name: &str| {
        cases()
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| anyhow!("no case {name}"))
    };
    let new_v4 = by_name("TCP SYN v4, new flow")?;
    let new_flow_v4 = run_case(&mut bench, &new_v4, repeat, rounds, true)?;
    let new_v6 = by_name("TCP SYN v6, new flow")?;
    let new_flow_v6 = run_case(&mut bench, &new_v6, repeat, rounds, true)?;
    let tracked = by_name("TCP ACK v4, tracked flow")?;
    let tracked_v4 = run_case(&mut bench, &tracked, repeat, rounds, false)?;
    // Expiry cost: walk and delete what the rounds left.
    let (expired, took) = bench.clear()?;
    let expiry_ns_per_flow = took.as_nanos() as f64 / expired.max(1) as f64;
    // Fill the table through the program itself (so per-CPU lists fill on
    // the CPU the rounds run on), then measure new flows into it.
    bench.prepare(new_v4.target, &new_v4.frame, new_v4.vary_offset)?;
    bench.measure(
        &new_v4.frame,
        DESIGN_CAPACITY + DESIGN_CAPACITY / 8,
        1,
        XDP_TX,
        false,
    )?;
    let (counter, outcome) = match kind {
        ConntrackKind::Hash => (
            Counter::ConntrackInsertFailed,
            "insert refused (table full): forwarded by Maglev, not tracked until userspace expires flows",
        ),
        _ => (
            Counter::ConntrackNew,
            "inserted; the kernel evicts the least recently used flow",
        ),
    };
    let before = bench.counter(counter)?;
    let ns = bench.measure(&new_v4.frame, repeat, rounds, XDP_TX, false)?;
    let got = bench.counter(counter)? - before;
    let want = u64::from(repeat) * u64::from(rounds);
    if got != want {
        bail!(
            "{}: full table: {got} {} for {want} runs",
            kind.label(),
            counter.name()
        );
    }
    let full_table_new_flow = Spread::of(&ns);
    eprintln!(
        "bench: {:<28} {:>7.1} ns/packet ({outcome})",
        "new flow, full table", full_table_new_flow.median
    );
    Ok(DesignResult {
        design: kind.label().to_owned(),
        capacity: DESIGN_CAPACITY,
        repeat,
        new_flow_v4,
        new_flow_v6,
        tracked_v4,
        full_table_new_flow,
        full_table_outcome: outcome.to_owned(),
        expiry_ns_per_flow,
    })
}
