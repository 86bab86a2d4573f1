//! The connection-table designs side by side on the same program and
//! packets (`ConntrackKind::ALL`): new flows into a table with room, a
//! tracked flow, new flows into a full table (the eviction path), how many
//! of N distinct flows each design still holds (where it starts dropping
//! live flows before it is full), the userspace cost of expiry; and the
//! new-flow cost by table size for the two designs of the main cases.

use anyhow::{anyhow, bail};
use lb_common::stats::Counter;
use lb_userspace::conntrack::kind::ConntrackKind;
use serde::{Deserialize, Serialize};

use super::{
    xdp::{
        cases, possible_cpus, run_case, Bench, Case, COMPARED, CONNTRACK, NEW_V4, NEW_V6,
        TRACKED_V4, XDP_TX,
    },
    Spread,
};

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
    /// The design (`ConntrackKind::label`; older results: shared LRU).
    #[serde(default = "super::xdp::shared_lru")]
    pub design: String,
}

/// How many of `inserted` distinct new flows (into an empty table, through
/// the program) the table still held afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Occupancy {
    /// Distinct flows inserted.
    pub inserted: u32,
    /// Flows in the table afterwards.
    pub kept: u64,
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
    /// Flows in the table when the full-table rounds started.
    #[serde(default)]
    pub full_table_flows: u64,
    /// Userspace cost of removing one expired flow (walk + delete), ns;
    /// the price of expiry where the kernel does not evict.
    pub expiry_ns_per_flow: f64,
    /// Flows kept of N distinct flows inserted into an empty table, for N
    /// at several fractions of the capacity.
    #[serde(default)]
    pub occupancy: Vec<Occupancy>,
    /// Kernel memory of the table, bytes (the map's `memlock`; 0 in
    /// older results).
    #[serde(default)]
    pub memory_bytes: u64,
}

/// The table size of the design comparison: lbd's default.
const DESIGN_CAPACITY: u32 = CONNTRACK;

fn by_name(name: &str) -> anyhow::Result<Case> {
    cases()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| anyhow!("no case {name}"))
}

/// A new-flow case as an insert into the connection table: its flows'
/// first ACK (their SYN would go to the half-open table, the same for
/// every design).
pub(crate) fn table_insert(name: &str) -> anyhow::Result<Case> {
    Ok(by_name(name)?.into_first_ack())
}

/// What a new flow into a full table gets, and the counter that says so.
fn full_table_outcome(kind: ConntrackKind) -> (Counter, &'static str) {
    match kind {
        ConntrackKind::Buckets => (
            Counter::ConntrackNew,
            "inserted (never refused); once both of the flow's buckets of 8 are full, evicts in its first: a closed flow, else an expired one, else a half-open one, else the least recently seen",
        ),
        ConntrackKind::Lru => (
            Counter::ConntrackNew,
            "inserted; the kernel evicts the least recently used flow",
        ),
        ConntrackKind::LruPerCpu => (
            Counter::ConntrackNew,
            "inserted; the kernel evicts the least recently used of the flows this CPU inserted",
        ),
        ConntrackKind::Hash => (
            Counter::ConntrackInsertFailed,
            "insert refused (table full): forwarded by Maglev, not tracked until userspace expires flows",
        ),
    }
}

/// Flows the program must insert to fill the table: the LRU kinds are
/// full at their capacity (the 1/8 more makes sure); a bucket table has
/// twice the configured capacity in slots, and is full when every bucket
/// is, which random hashing reaches only past its slots (four times its
/// slots leave a bucket with room far less than once in 10^7).
pub(crate) fn fill_runs(kind: ConntrackKind) -> u32 {
    match kind {
        ConntrackKind::Buckets => DESIGN_CAPACITY * lb_common::flow_table::FLOW_HEADROOM * 4,
        _ => DESIGN_CAPACITY + DESIGN_CAPACITY / 8,
    }
}

/// One connection-table design: new flows into a table with room (small
/// enough rounds that a per-CPU LRU's share of one CPU is not exceeded),
/// a tracked flow, the occupancy check, new flows into a full table, and
/// the userspace cost of expiring a flow.
pub fn run_design(kind: ConntrackKind, rounds: u32) -> anyhow::Result<DesignResult> {
    eprintln!("bench: connection table as {}", kind.label());
    // Per-CPU LRU splits the free elements between the possible CPUs
    // (this thread is pinned, so ask the system, not our CPU set).
    let cpus = possible_cpus();
    let repeat = (DESIGN_CAPACITY / cpus.max(1) / 2).min(100_000);
    let mut bench = Bench::new(DESIGN_CAPACITY, kind)?;
    let memory_bytes = bench.dataplane.flow_memory_bytes();
    let new_v4 = table_insert(NEW_V4)?;
    let new_flow_v4 = run_case(&mut bench, &new_v4, repeat, rounds, true)?;
    let new_flow_v6 = run_case(&mut bench, &table_insert(NEW_V6)?, repeat, rounds, true)?;
    let tracked_v4 = run_case(&mut bench, &by_name(TRACKED_V4)?, repeat, rounds, false)?;
    // Expiry cost: walk and delete what the rounds left.
    let (expired, took) = bench.clear()?;
    let expiry_ns_per_flow = took.as_nanos() as f64 / expired.max(1) as f64;
    let occupancy = occupancy(&mut bench, &new_v4)?;
    // Fill the table through the program itself (so per-CPU lists fill on
    // the CPU the rounds run on), then measure new flows into it.
    bench.clear()?;
    bench.prepare(new_v4.target, &new_v4.frame, new_v4.vary_offset)?;
    bench.measure(&new_v4.frame, fill_runs(kind), 1, XDP_TX, false)?;
    let full_table_flows = bench.dataplane.flow_count();
    let (counter, outcome) = full_table_outcome(kind);
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
        "bench: {:<34} {:>7.1} ns/packet ({full_table_flows} flows in the table; {outcome})",
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
        full_table_flows,
        expiry_ns_per_flow,
        occupancy,
        memory_bytes,
    })
}

/// Distinct new flows at 1/2, 3/4, 9/10 and all of the capacity into an
/// empty table (through the program, on this CPU), and how many of them
/// the table still holds: a design that evicts before it is full drops
/// live flows there.
fn occupancy(bench: &mut Bench, new_v4: &Case) -> anyhow::Result<Vec<Occupancy>> {
    let mut out = Vec::new();
    for (num, den) in [(1u32, 2u32), (3, 4), (9, 10), (1, 1)] {
        let inserted = DESIGN_CAPACITY / den * num;
        bench.clear()?;
        bench.prepare(new_v4.target, &new_v4.frame, new_v4.vary_offset)?;
        bench.measure(&new_v4.frame, inserted, 1, XDP_TX, false)?;
        let kept = bench.dataplane.flow_count();
        eprintln!(
            "bench: {} distinct flows into an empty table: {kept} kept",
            inserted
        );
        out.push(Occupancy { inserted, kept });
    }
    Ok(out)
}

/// New v4 flows into an empty table of each size, for each `COMPARED`
/// design (loaded one at a time: the large tables take gigabytes).
pub fn by_capacity(rounds: u32) -> anyhow::Result<Vec<CapacityResult>> {
    let case = table_insert(NEW_V4)?;
    let mut out = Vec::new();
    for capacity in [65_536u32, CONNTRACK, 4 * 1024 * 1024, 8 * 1024 * 1024] {
        let repeat = (capacity / 2).min(100_000);
        for kind in COMPARED {
            eprintln!("bench: {} of {capacity} entries", kind.label());
            let mut bench = Bench::new(capacity, kind)?;
            let new_flow_v4 = run_case(&mut bench, &case, repeat, rounds, true)?;
            out.push(CapacityResult {
                capacity,
                repeat,
                new_flow_v4,
                design: kind.label().to_owned(),
            });
        }
    }
    Ok(out)
}
