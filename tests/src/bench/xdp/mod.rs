//! Data-plane cost per packet: the compiled XDP program under
//! BPF_PROG_TEST_RUN with a large repeat count, run through `xdp_bench`,
//! which restores the original packet before every run and tail-calls the
//! program under test (without it, every run after the first would see the
//! previous run's output). Each case checks with the program's own counters
//! that N runs gave N of the expected outcome. The main cases run on lbd's
//! connection table (the bucket table, lbd's default) and on the shared LRU,
//! case by case in the same run (`COMPARED`).

use anyhow::{anyhow, bail, Context as _};
use aya::{
    maps::{Array, MapData},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{
    consts::{names, HALF_OPEN_BUCKETS},
    flow_table::FLOW_WAYS,
    stats::Counter,
    FlowEntry, FlowKey, LbConfig,
};
use lb_userspace::{
    conntrack::kind::ConntrackKind,
    dataplane::{Dataplane, LoadOptions, MapSizes, MapWriter as _},
    reconcile::{Balancer, DesiredVip},
};
use serde::{Deserialize, Serialize};

pub use super::xdp_designs::{CapacityResult, DesignResult};
use super::{template, Spread};

mod bed;
mod cases;
mod runs;

use crate::{
    packet::{self, Flow, ACK, LB_MAC, SYN},
    testbed::{vip4_tcp, vip4_udp, vip6_tcp, VIP4, VIP6},
};
pub use bed::pin_to_cpu;
pub(crate) use bed::{possible_cpus, Bench};
pub(crate) use cases::{ack_frame, cases, guarded_cases, Case, XDP_TX};
use cases::{pass_cases, syn_flood_case};
pub use runs::run_guarded_only;
use runs::{record, run_pass};
pub(crate) use runs::{run_case, run_compared};

/// One measured case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XdpCase {
    /// Short name.
    pub name: String,
    /// What the program did on each run (the path measured).
    pub path: String,
    /// ns per packet over the rounds (each round = `repeat` runs); for the
    /// connection cases, ns per connection (its two packets).
    pub ns_per_packet: Spread,
    /// Runs per round.
    pub repeat: u32,
    /// Rounds.
    pub rounds: u32,
    /// Flows in the connection table before the case ran.
    pub conntrack_prefill: u64,
    /// The connection-table design (`ConntrackKind::label`); results from
    /// before the bucket table were all on the shared LRU.
    #[serde(default = "shared_lru")]
    pub design: String,
    /// Connection-table capacity (entries; 0 in older results).
    #[serde(default)]
    pub capacity: u32,
    /// Connection cases: ACKs whose flow the table had already evicted
    /// (inserted again as new flows), over all rounds.
    #[serde(default)]
    pub lost_flows: u64,
    /// ns of each round, in the order they ran (empty in older results):
    /// the designs ran round by round, so they compare within each round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_round: Vec<f64>,
}

/// One case's rounds on one bench: their spread and each round's ns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rounds {
    /// min / median / max.
    pub(crate) spread: Spread,
    /// Each round, in order.
    pub(crate) per_round: Vec<f64>,
}

impl Rounds {
    /// The rounds `ns`; none is an error (`Spread::of` would make zeros of
    /// them, which the report would judge as if measured).
    pub(crate) fn of(ns: &[f64]) -> anyhow::Result<Self> {
        if ns.is_empty() {
            bail!("no rounds were measured");
        }
        Ok(Self {
            spread: Spread::of(ns),
            per_round: ns.to_vec(),
        })
    }
}

/// What older results files measured on: the shared LRU.
pub(crate) fn shared_lru() -> String {
    ConntrackKind::Lru.label().to_owned()
}

/// All data-plane cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XdpResults {
    /// The cases, wrapper floor and swap floor included.
    pub cases: Vec<XdpCase>,
    /// Connection table capacity of the main cases (lbd's default).
    pub conntrack_capacity: u32,
    /// Connection table capacity of the prefilled pass (0: none ran,
    /// `--prefill 0`).
    #[serde(default)]
    pub prefill_capacity: u32,
    /// The connection-table map designs side by side.
    #[serde(default)]
    pub designs: Vec<DesignResult>,
    /// New-flow cost by table capacity, per design (empty table).
    #[serde(default)]
    pub by_capacity: Vec<CapacityResult>,
}

impl XdpResults {
    /// The median of case `name` on `design` in the pass with `prefill`
    /// flows, if it was measured: the pass is the main one (lbd's default
    /// table, `conntrack_capacity`) with no prefill, else the prefilled
    /// one (`prefill_capacity`), so that a case of one pass never stands
    /// in for the other's (see `median_at`).
    pub fn median(&self, name: &str, design: &str, prefill: u64) -> Option<f64> {
        let capacity = if prefill == 0 {
            self.conntrack_capacity
        } else {
            self.prefill_capacity
        };
        self.median_at(name, design, prefill, capacity)
    }

    /// The median of case `name` on `design` with `prefill` flows in a
    /// table of `capacity` entries (a case from older results, which did
    /// not record its capacity, matches any), if it was measured: prefill
    /// and capacity together name the pass, so two passes with the same
    /// prefill are never taken for one another.
    pub fn median_at(&self, name: &str, design: &str, prefill: u64, capacity: u32) -> Option<f64> {
        self.cases
            .iter()
            .find(|c| {
                c.name == name
                    && c.design == design
                    && c.conntrack_prefill == prefill
                    && (c.capacity == capacity || c.capacity == 0)
            })
            .map(|c| c.ns_per_packet.median)
    }
}

/// The designs the main cases compare: the bucket table and the shared
/// LRU, lbd's default before it (issue 16's targets are ratios of the two).
pub const COMPARED: [ConntrackKind; 2] = [ConntrackKind::Buckets, ConntrackKind::Lru];

/// Case names the report computes ratios from.
pub const WRAPPER_FLOOR: &str = "wrapper floor";
/// New TCP flow's SYN, IPv4, outside SYN-flood mode (the bench objects'
/// flags are 0): held as a handshake, on the bucket table in a free way
/// of the connection table, on the LRU in the half-open table.
pub const NEW_V4: &str = "TCP SYN v4, new flow";
/// `NEW_V4`'s SYN in SYN-flood mode (`CONFIG_F_SYN_FLOOD`, which lbd
/// sets when it sees a flood): held in the half-open table alone, never
/// the connection table; the round fills that table and then evicts from
/// it. What a flood SYN costs once lbd is in that mode.
pub const NEW_V4_SYN_FLOOD: &str = "TCP SYN v4, new flow, SYN-flood mode";
/// New TCP flow's SYN, IPv6 (as `NEW_V4`).
pub const NEW_V6: &str = "TCP SYN v6, new flow";
/// A new TCP flow's first ACK, IPv4, its SYN not seen (or its half-open
/// entry gone): an insert into the connection table, the work in which
/// the designs differ (a SYN goes to the half-open table in both).
pub const FIRST_ACK_V4: &str = "TCP first ACK v4, new flow";
/// `FIRST_ACK_V4` for IPv6.
pub const FIRST_ACK_V6: &str = "TCP first ACK v6, new flow";
/// Tracked TCP flow, IPv4.
pub const TRACKED_V4: &str = "TCP ACK v4, tracked flow";
/// Tracked TCP flow, IPv6.
pub const TRACKED_V6: &str = "TCP ACK v6, tracked flow";
/// A packet to no VIP.
pub const NON_VIP: &str = "non-VIP packet";
/// A new flow's first ACK into a full table (the eviction path), on both
/// designs side by side (`run_full_table`).
pub const FULL_TABLE_V4: &str = "TCP first ACK v4, new flow, full table";
/// A connection's SYN and first ACK (ns per connection).
pub const CONNECTION_V4: &str = "TCP connection v4, SYN + first ACK";
/// SYNs per batch of a new-flow SYN case (`Case::half_open_batch`): a
/// sixteenth of the half-open table's slots (half a flow per 8-way bucket
/// on average, so no bucket fills: a SYN held there evicts none).
pub(crate) const SYN_BATCH: u32 = HALF_OPEN_BUCKETS * FLOW_WAYS as u32 / 16;
/// The wrapper floor measured on the full-table case's own objects
/// (`run_full_table`), which the report subtracts from that case.
pub const FULL_TABLE_FLOOR: &str = "wrapper floor (full-table objects)";
/// Connections per batch of the connection case: SYNs outstanding before
/// their ACKs come, a quarter of the half-open table's slots.
const CONNECTION_BATCH: u32 = HALF_OPEN_BUCKETS * FLOW_WAYS as u32 / 4;

/// A packet a deny rule drops (the same source every run: its verdict
/// cached).
pub const DENIED_V4: &str = "denied packet v4 (ACL)";
/// A packet a deny rule drops, from a new source every run (a spoofed
/// flood: the trie lookups every time).
pub const DENIED_V4_FLOOD: &str = "denied packet v4, new source each run (ACL)";
/// Tracked TCP flow, IPv4, with a deny list, an allow list and limits on.
pub const TRACKED_V4_GUARDED: &str = "TCP ACK v4, tracked flow, ACL + limits on";
/// `TRACKED_V4_GUARDED`'s flow with the guards taken off, measured in the
/// same rounds (each round the guards off, then on, or the other way
/// round): the baseline the guards' cost is judged against, as the main
/// pass's tracked row ran minutes earlier in another table state.
pub const TRACKED_V4_UNGUARDED: &str = "TCP ACK v4, tracked flow, its guards off";
/// New TCP flow, IPv6, with a deny list, an allow list and limits on
/// (every run a new source: the trie lookups and new token buckets).
pub const NEW_V6_GUARDED: &str = "TCP SYN v6, new flow, ACL + limits on";

/// lbd's default connection table size.
pub(crate) const CONNTRACK: u32 = lb_common::consts::CONNTRACK_SIZE_DEFAULT;
/// The large table of the prefilled pass (8 M entries).
const BIG_TABLE: u32 = 8 * 1024 * 1024;
/// Runs every case on both `COMPARED` designs at lbd's default table size
/// (new-flow rounds start from an empty table), the table-heavy ones again
/// in an 8 M-entry table holding `prefill` flows (none with a `prefill` of
/// 0, see `passes`), then the connection-table
/// designs side by side and the size sweep.
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

/// The passes `run` makes, as (table capacity, flows prefilled): lbd's
/// default table empty, then, when `prefill` is above 0, an 8 M-entry
/// table (or twice `prefill`) holding `prefill` flows. `--prefill 0`
/// skips the prefilled pass rather than being refused: it reads as "no
/// prefilled table" and makes a quicker run, and a second empty pass
/// would only repeat the first under the big table's label.
fn passes(prefill: u32) -> Vec<(u32, u32)> {
    let mut passes = vec![(CONNTRACK, 0)];
    if prefill > 0 {
        passes.push((BIG_TABLE.max(prefill.saturating_mul(2)), prefill));
    }
    passes
}

fn run_pinned(repeat: u32, rounds: u32, prefill: u32) -> anyhow::Result<XdpResults> {
    let passes = passes(prefill);
    let mut results = Vec::new();
    for &(capacity, pass) in &passes {
        run_pass(capacity, pass, repeat, rounds, &mut results)?;
    }
    let big_table = passes
        .iter()
        .find(|(_, prefill)| *prefill > 0)
        .map_or(0, |(capacity, _)| *capacity);
    run_full_table(rounds, &mut results)?;
    let designs = ConntrackKind::ALL
        .into_iter()
        .map(|kind| super::xdp_designs::run_design(kind, rounds))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let by_capacity = super::xdp_designs::by_capacity(rounds)?;
    Ok(XdpResults {
        by_capacity,
        cases: results,
        conntrack_capacity: CONNTRACK,
        prefill_capacity: big_table,
        designs,
    })
}

/// New flows into a full table (the eviction path) on both `COMPARED`
/// designs, loaded side by side at lbd's default size, each filled
/// through the program on this CPU (the bucket table past its slots,
/// until every bucket is full; the LRU past its capacity), then measured
/// round by round.
fn run_full_table(rounds: u32, results: &mut Vec<XdpCase>) -> anyhow::Result<()> {
    let case = super::xdp_designs::table_insert(NEW_V4)?;
    let case = Case {
        name: FULL_TABLE_V4,
        path: "parse, VIP hit, conntrack miss (both buckets full), half-open miss, Maglev, conntrack insert evicting a flow, TX",
        ..case
    };
    let mut benches = Vec::new();
    for kind in COMPARED {
        let mut bench = Bench::new(CONNTRACK, kind)?;
        bench.prepare(case.target, &case.frame, case.vary_offset)?;
        bench.measure(
            &case.frame,
            super::xdp_designs::fill_runs(kind),
            1,
            XDP_TX,
            false,
        )?;
        eprintln!(
            "bench: {} of {CONNTRACK} entries filled: {} flows",
            kind.label(),
            bench.dataplane.flow_count()
        );
        benches.push(bench);
    }
    // A per-CPU LRU's share of one CPU is not a concern here (shared LRU
    // and buckets): the rounds of the designs table.
    let repeat = (CONNTRACK / 2).min(100_000);
    let measured = run_compared(&mut benches, &case, repeat, rounds, false)?;
    // The wrapper floor on these same objects, after (it touches no
    // table), for the report's cost above the floor.
    let floor = Case {
        name: FULL_TABLE_FLOOR,
        ..cases()
            .into_iter()
            .find(|c| c.name == WRAPPER_FLOOR)
            .ok_or_else(|| anyhow!("no case {WRAPPER_FLOOR}"))?
    };
    let floor_measured = run_compared(&mut benches, &floor, repeat, rounds, false)?;
    for (case, measured) in [(&case, &measured), (&floor, &floor_measured)] {
        record(
            results,
            &benches,
            case,
            measured,
            (repeat, rounds),
            (0, CONNTRACK),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

    use super::*;

    /// A case of `name` on the bucket table, `prefill` flows in a table
    /// of `capacity`, its median `ns`.
    fn case_at(name: &str, prefill: u64, capacity: u32, ns: f64) -> XdpCase {
        XdpCase {
            name: name.to_owned(),
            path: String::new(),
            ns_per_packet: Spread::of(&[ns]),
            repeat: 1,
            rounds: 1,
            conntrack_prefill: prefill,
            design: ConntrackKind::Buckets.label().to_owned(),
            capacity,
            lost_flows: 0,
            per_round: vec![ns],
        }
    }

    #[test]
    fn no_prefill_runs_no_prefilled_pass() {
        assert_eq!(passes(0), [(CONNTRACK, 0)]);
        assert_eq!(passes(1_000_000), [(CONNTRACK, 0), (BIG_TABLE, 1_000_000)]);
        // A prefill over half the big table gets a table twice its size.
        assert_eq!(passes(5_000_000)[1], (10_000_000, 5_000_000));
    }

    #[test]
    fn no_rounds_are_refused_rather_than_made_zeros() {
        let error = Rounds::of(&[]).expect_err("nothing measured");
        assert!(error.to_string().contains("no rounds"), "{error}");
        let rounds = Rounds::of(&[3.0, 1.0, 2.0]).expect("measured");
        assert_eq!(rounds.spread.median, 2.0);
        assert_eq!(rounds.per_round, [3.0, 1.0, 2.0]);
    }

    #[test]
    fn a_median_is_taken_from_its_own_pass_whatever_the_order_of_the_cases() {
        let buckets = ConntrackKind::Buckets.label();
        let results = XdpResults {
            // The big table's empty case first: it must not stand in for
            // the main pass's.
            cases: vec![
                case_at(NEW_V4, 0, BIG_TABLE, 90.0),
                case_at(NEW_V4, 0, CONNTRACK, 60.0),
                case_at(NEW_V4, 1_000_000, BIG_TABLE, 120.0),
            ],
            conntrack_capacity: CONNTRACK,
            prefill_capacity: BIG_TABLE,
            designs: Vec::new(),
            by_capacity: Vec::new(),
        };
        assert_eq!(results.median(NEW_V4, buckets, 0), Some(60.0));
        assert_eq!(results.median(NEW_V4, buckets, 1_000_000), Some(120.0));
        assert_eq!(results.median_at(NEW_V4, buckets, 0, BIG_TABLE), Some(90.0));
        assert_eq!(results.median_at(NEW_V4, buckets, 0, 1234), None);
    }

    #[test]
    fn a_cases_first_ack_is_its_syn_turned_into_an_ack_with_a_valid_checksum() {
        for name in [NEW_V4, NEW_V6] {
            let case = cases().into_iter().find(|c| c.name == name).expect("case");
            let syn = case.frame.clone();
            let ack = case.into_first_ack();
            assert_eq!(ack.counter, Some(Counter::ConntrackNew));
            let headers = PacketHeaders::from_ethernet_slice(&ack.frame).expect("parse");
            let Some(TransportHeader::Tcp(tcp)) = &headers.transport else {
                panic!("{name}: not TCP");
            };
            assert!(tcp.ack && !tcp.syn && !tcp.fin && !tcp.rst, "{name}");
            let want = match &headers.net {
                Some(NetHeaders::Ipv4(ip, _)) => tcp.calc_checksum_ipv4(ip, &[]),
                Some(NetHeaders::Ipv6(ip, _)) => tcp.calc_checksum_ipv6(ip, &[]),
                other => panic!("{name}: {other:?}"),
            }
            .expect("checksum");
            assert_eq!(tcp.checksum, want, "{name}");
            let changed = syn.iter().zip(&ack.frame).filter(|(a, b)| a != b).count();
            assert!(changed <= 3, "{name}: flags and checksum only");
        }
    }
}
