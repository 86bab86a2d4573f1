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
    conntrack_kind::ConntrackKind,
    dataplane::{Dataplane, LoadOptions, MapSizes, MapWriter as _},
    reconcile::{Balancer, DesiredVip},
};
use serde::{Deserialize, Serialize};

pub use super::xdp_designs::{CapacityResult, DesignResult};
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
    fn of(ns: &[f64]) -> Self {
        Self {
            spread: Spread::of(ns),
            per_round: ns.to_vec(),
        }
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
    /// Connection table capacity of the prefilled pass.
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
    /// flows, if it was measured.
    pub fn median(&self, name: &str, design: &str, prefill: u64) -> Option<f64> {
        self.cases
            .iter()
            .find(|c| c.name == name && c.design == design && c.conntrack_prefill == prefill)
            .map(|c| c.ns_per_packet.median)
    }
}

/// The designs the main cases compare: the bucket table and the shared
/// LRU, lbd's default before it (issue 16's targets are ratios of the two).
pub const COMPARED: [ConntrackKind; 2] = [ConntrackKind::Buckets, ConntrackKind::Lru];

/// Case names the report computes ratios from.
pub const WRAPPER_FLOOR: &str = "wrapper floor";
/// New TCP flow's SYN, IPv4: held in the half-open table (a flood SYN's
/// cost: once that table is full, every one evicts a half-open flow).
pub const NEW_V4: &str = "TCP SYN v4, new flow";
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
/// The wrapper's run counter (the varied field's value).
const MAP_BENCH_RUNS: &str = "BENCH_RUNS";

/// One loaded object with its VIPs, on one connection-table design.
pub(crate) struct Bench {
    pub(crate) dataplane: Dataplane,
    pub(crate) kind: ConntrackKind,
    balancer: Balancer,
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
    pub(crate) fn new(conntrack: u32, kind: ConntrackKind) -> anyhow::Result<Self> {
        let mut dataplane = Dataplane::load_with(
            MapSizes {
                max_vips: 4,
                conntrack,
                nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
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
            kind,
            balancer,
        })
    }

    pub(crate) fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        Ok(self
            .dataplane
            .counters()?
            .into_iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| v))
    }

    /// Points the wrapper at `target` with `frame` (varying the 32-bit
    /// field at `vary_offset` on every run when non-zero).
    pub(crate) fn prepare(
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
    pub(crate) fn measure(
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
    pub(crate) fn clear(&mut self) -> anyhow::Result<(usize, std::time::Duration)> {
        let started = std::time::Instant::now();
        let keys: Vec<FlowKey> = self.dataplane.flows().map(|(k, _)| k).collect();
        for key in &keys {
            self.dataplane.remove_flow(key)?;
        }
        Ok((keys.len(), started.elapsed()))
    }

    /// Fills the connection table with `count` flows unrelated to the
    /// cases' packets.
    pub(crate) fn prefill(&mut self, count: u32) -> anyhow::Result<()> {
        // Seen now: a bucket table evicts long-idle flows first, and these
        // stand for live ones.
        let now = monotonic_ns();
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
                last_seen_ns: now,
                flags: 0,
                hash: 0,
            };
            self.dataplane.install_flow(&key, &entry)?;
        }
        Ok(())
    }
}

/// A case: which program, which packet, what every run must do.
#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) target: &'static str,
    pub(crate) frame: Vec<u8>,
    pub(crate) vary_offset: u32,
    pub(crate) action: u32,
    pub(crate) counter: Option<Counter>,
}

impl Case {
    pub(crate) fn new_flow(&self) -> bool {
        self.vary_offset != 0
            && matches!(
                self.counter,
                Some(Counter::ConntrackNew | Counter::ConntrackHalfOpenNew)
            )
    }

    /// The same case with the client's ACK instead of its SYN: a flow
    /// first seen mid-handshake goes straight into the connection table
    /// (a SYN is held as a handshake, apart from the LRU), so the designs of the
    /// connection table are compared on these.
    pub(crate) fn into_first_ack(mut self) -> Self {
        const FLAGS: usize = 13;
        let ip_len = if self.frame[12..14] == [0x86, 0xdd] {
            40
        } else {
            20
        };
        // ACK only; the checksum changes by the flags word's difference.
        let at = 14 + ip_len + FLAGS;
        let (old, new) = (u16::from(self.frame[at]), u16::from(ACK_FLAGS));
        self.frame[at] = ACK_FLAGS;
        let csum_at = 14 + ip_len + 16;
        let csum = u16::from_be_bytes([self.frame[csum_at], self.frame[csum_at + 1]]);
        let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        self.frame[csum_at..csum_at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        self.name = match self.name {
            NEW_V4 => FIRST_ACK_V4,
            NEW_V6 => FIRST_ACK_V6,
            other => other,
        };
        self.path = "parse, VIP hit, conntrack miss, half-open miss, Maglev, conntrack insert, TX";
        self.counter = Some(Counter::ConntrackNew);
        self
    }
}

/// The TCP flags byte of a bare ACK.
const ACK_FLAGS: u8 = 0x10;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
pub(crate) const XDP_TX: u32 = 3;

pub(crate) fn cases() -> Vec<Case> {
    let v4 = flow("198.18.0.10", VIP4, 80);
    let v6 = flow("2001:2::10", VIP6, 80);
    let udp = flow("198.18.0.10", VIP4, 53);
    let other = flow("198.18.0.10", "198.18.0.2", 80);
    // Offsets of the source address: a new flow on every run.
    const V4_SRC: u32 = 14 + 12;
    const V6_SRC_LOW: u32 = 14 + 8 + 12;
    vec![
        Case {
            name: WRAPPER_FLOOR,
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
            name: NEW_V4,
            path: "parse, VIP hit, conntrack miss, half-open miss, Maglev, handshake insert (buckets: a free way of the connection table; LRU: the half-open table), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: V4_SRC,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHalfOpenNew),
        },
        Case {
            name: TRACKED_V4,
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
            name: NEW_V6,
            path: "parse, VIP hit, conntrack miss, half-open miss, Maglev, handshake insert (buckets: a free way of the connection table; LRU: the half-open table), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, SYN, None, b""),
            vary_offset: V6_SRC_LOW,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHalfOpenNew),
        },
        Case {
            name: TRACKED_V6,
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
        },
        Case {
            name: NON_VIP,
            path: "parse, VIP miss, PASS",
            target: names::PROG_LB,
            frame: packet::tcp(&other, ACK, None, b""),
            vary_offset: 0,
            action: XDP_PASS,
            counter: Some(Counter::PassNotVip),
        },
    ]
}

impl Bench {
    /// Puts guards in force on every VIP, through lbd's installer: global
    /// deny rules (198.18.66.0/24; 0.0.0.0/8, where the wrapper's varied
    /// IPv4 sources are), an allow list of each TCP VIP (198.18.0.0/16,
    /// 2001:2::/32) and limits per source and per prefix far above what
    /// the cases send, so every VIP packet runs the deny and allow lookups
    /// (or finds their verdict cached) and every new flow the token buckets.
    pub(crate) fn guard(&mut self) -> anyhow::Result<()> {
        self.set_guards(true)
    }

    /// Puts the bench's guards (see `guard`) in force (`on`) or takes
    /// every rule and limit off again.
    fn set_guards(&mut self, on: bool) -> anyhow::Result<()> {
        use lb_userspace::guard::{AclRule, Action, Guard, GuardConfig, Limits, RateLimit, Scope};
        let vips: Vec<_> = self
            .balancer
            .vips()
            .iter()
            .map(|(id, v)| (*id, v.id))
            .collect();
        let mut guard = Guard::adopt(self.dataplane.guard(), GuardConfig::default())?;
        if !on {
            guard.apply(self.dataplane.guard_mut(), GuardConfig::default(), &vips, 4)?;
            return Ok(());
        }
        let rate = Some(RateLimit::new(1_000_000, Some(1_000_000), "bench")?);
        let mut config = GuardConfig::default();
        for denied in ["198.18.66.0/24", "0.0.0.0/8"] {
            config.acl.insert(AclRule {
                scope: Scope::Global,
                action: Action::Deny,
                source: denied.parse()?,
            });
        }
        for (vip, allowed) in [(vip4_tcp(), "198.18.0.0/16"), (vip6_tcp(), "2001:2::/32")] {
            config.acl.insert(AclRule {
                scope: Scope::Vip(lb_userspace::vip_id::VipId::of(&vip)),
                action: Action::Allow,
                source: allowed.parse()?,
            });
        }
        config.limits.insert(
            Scope::Global,
            Limits {
                source: rate,
                prefix: rate,
                ..Limits::default()
            },
        );
        guard.apply(self.dataplane.guard_mut(), config, &vips, 4)?;
        Ok(())
    }
}

/// The guards' cases (run after `Bench::guard`).
pub(crate) fn guarded_cases() -> Vec<Case> {
    let v4 = flow("198.18.0.10", VIP4, 80);
    let v6 = flow("2001:2::10", VIP6, 80);
    let denied = flow("198.18.66.7", VIP4, 80);
    const V4_SRC: u32 = 14 + 12;
    const V6_SRC_LOW: u32 = 14 + 8 + 12;
    vec![
        Case {
            name: DENIED_V4,
            path: "parse, VIP hit, cached deny verdict, DROP",
            target: names::PROG_LB,
            frame: packet::tcp(&denied, SYN, None, b""),
            vary_offset: 0,
            action: XDP_DROP,
            counter: Some(Counter::DropAclDenied),
        },
        Case {
            name: DENIED_V4_FLOOD,
            path: "parse, VIP hit, cache miss, deny rule hit, DROP",
            target: names::PROG_LB,
            // The varied source is the run counter: 0.x.y.z, denied.
            frame: packet::tcp(&denied, SYN, None, b""),
            vary_offset: V4_SRC,
            action: XDP_DROP,
            counter: Some(Counter::DropAclDenied),
        },
        Case {
            name: TRACKED_V4_GUARDED,
            path: "parse, VIP hit, conntrack hit (its ACL mark current: lists skipped), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
        },
        Case {
            name: NEW_V6_GUARDED,
            path: "parse, VIP hit, cache miss, deny miss, allow hit, conntrack miss, half-open miss, Maglev, 2 new token buckets, half-open insert, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, SYN, None, b""),
            vary_offset: V6_SRC_LOW,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHalfOpenNew),
        },
    ]
}

/// CPUs the kernel may bring online (what per-CPU maps are sized for).
pub(crate) fn possible_cpus() -> u32 {
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

/// The new-flow v4 case's flow with ACK instead of SYN (the same varied
/// field, so a replayed round sends the ACKs of a SYN round's flows).
pub(crate) fn ack_frame() -> Vec<u8> {
    packet::tcp(&flow("198.18.0.10", VIP4, 80), ACK, None, b"")
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_coarse_ns` reads.
fn monotonic_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; the call only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Bench {
    /// The wrapper's run counter: the value the next varied run adds one
    /// to (so the flows a round creates follow from it).
    pub(crate) fn runs(&mut self) -> anyhow::Result<u32> {
        Ok(self.runs_map()?.get(&0, 0)?)
    }

    /// Sets the wrapper's run counter (to replay a round's flows).
    pub(crate) fn set_runs(&mut self, value: u32) -> anyhow::Result<()> {
        self.runs_map()?.set(0, value, 0)?;
        Ok(())
    }

    fn runs_map(&mut self) -> anyhow::Result<Array<&mut MapData, u32>> {
        let map = self
            .dataplane
            .ebpf_mut()
            .map_mut(MAP_BENCH_RUNS)
            .ok_or_else(|| anyhow!("no {MAP_BENCH_RUNS} map"))?;
        Ok(Array::try_from(map)?)
    }
}

/// Runs one case; checks that every run took the named path.
pub(crate) fn run_case(
    bench: &mut Bench,
    case: &Case,
    repeat: u32,
    rounds: u32,
    fresh_table: bool,
) -> anyhow::Result<Spread> {
    let measured = run_compared(
        std::slice::from_mut(bench),
        case,
        repeat,
        rounds,
        fresh_table,
    )?;
    measured
        .into_iter()
        .next()
        .map(|r| r.spread)
        .ok_or_else(|| anyhow!("{}: no result", case.name))
}

/// Runs one case on each of `benches` (objects on different
/// connection-table designs), round by round: each round runs on every
/// bench in turn, so a drift of this VM's speed during the case moves
/// them alike and their ratio holds within each round. Checks that every
/// run took the named path; one spread per bench, in order.
pub(crate) fn run_compared(
    benches: &mut [Bench],
    case: &Case,
    repeat: u32,
    rounds: u32,
    fresh_table: bool,
) -> anyhow::Result<Vec<Rounds>> {
    let mut before = Vec::with_capacity(benches.len());
    for bench in benches.iter_mut() {
        bench.prepare(case.target, &case.frame, case.vary_offset)?;
        // Warm up (and, for tracked flows, create the flow).
        bench.measure(&case.frame, 1000, 1, case.action, false)?;
        before.push(match case.counter {
            Some(c) => bench.counter(c)?,
            None => 0,
        });
    }
    let mut ns = vec![Vec::new(); benches.len()];
    for _ in 0..rounds {
        for (bench, ns) in benches.iter_mut().zip(&mut ns) {
            ns.extend(bench.measure(&case.frame, repeat, 1, case.action, fresh_table)?);
        }
    }
    let mut out = Vec::with_capacity(benches.len());
    for ((bench, ns), before) in benches.iter_mut().zip(&ns).zip(before) {
        if let Some(counter) = case.counter {
            let got = bench.counter(counter)? - before;
            let want = u64::from(repeat) * u64::from(rounds);
            if got != want {
                bail!(
                    "{} ({}): {got} {} for {want} runs: the measured path is not the one named",
                    case.name,
                    bench.kind.label(),
                    counter.name()
                );
            }
        }
        let measured = Rounds::of(ns);
        eprintln!(
            "bench: {:<34} {:>7.1} ns/packet (median of {rounds}, {})",
            case.name,
            measured.spread.median,
            bench.kind.label()
        );
        out.push(measured);
    }
    Ok(out)
}

/// A connection's first two packets through the LB: per round, `repeat`
/// connections in batches of `CONNECTION_BATCH`: the SYNs of a batch's
/// distinct new flows, then the first ACK of each of the same flows (the
/// wrapper's run counter replayed, so the ACK run walks the SYN run's
/// flows in order). A batch stays well inside the half-open table, as a
/// real handshake's ACK follows its SYN within a round trip, not after
/// the SYNs of a whole round. ns per connection = SYN + ACK. Counted:
/// every SYN held half-open (a handshake in the bucket table, or in the
/// half-open table); every ACK a new flow of the connection table, its
/// handshake made established or taken from the half-open table with its
/// SYN's backend, or (its SYN's half-open entry already evicted) picked
/// afresh (returned apart).
pub(crate) fn run_connection(
    benches: &mut [Bench],
    repeat: u32,
    rounds: u32,
    fresh_table: bool,
) -> anyhow::Result<Vec<(Rounds, u64)>> {
    let mut lost = vec![0; benches.len()];
    let mut ns = vec![Vec::new(); benches.len()];
    // A warm-up round (not counted), then the rounds, each on every
    // bench in turn (see `run_compared`).
    for round in 0..=rounds {
        let connections = if round == 0 { 1000 } else { repeat };
        for ((bench, ns), lost) in benches.iter_mut().zip(&mut ns).zip(&mut lost) {
            if fresh_table && round > 0 {
                bench.clear()?;
            }
            let (per_connection, evicted) = connection_round(bench, connections)?;
            if round > 0 {
                ns.push(per_connection);
                *lost += evicted;
            }
        }
    }
    let mut out = Vec::with_capacity(benches.len());
    for ((bench, ns), lost) in benches.iter().zip(&ns).zip(lost) {
        let measured = Rounds::of(ns);
        eprintln!(
            "bench: {:<34} {:>7.1} ns/connection (median of {rounds}, {}; {lost} ACKs found their SYN's half-open entry evicted)",
            CONNECTION_V4,
            measured.spread.median,
            bench.kind.label()
        );
        out.push((measured, lost));
    }
    Ok(out)
}

/// One round of `run_connection` on `bench`: `connections` connections
/// in batches; ns per connection and the ACKs whose SYN's half-open
/// entry had been evicted.
fn connection_round(bench: &mut Bench, connections: u32) -> anyhow::Result<(f64, u64)> {
    let syn = cases()
        .into_iter()
        .find(|c| c.name == NEW_V4)
        .ok_or_else(|| anyhow!("no case {NEW_V4}"))?;
    let ack_frame = ack_frame();
    let held_before = bench.counter(Counter::ConntrackHalfOpenNew)?;
    let new_before = bench.counter(Counter::ConntrackNew)?;
    let promoted_before = bench.counter(Counter::ConntrackHalfOpenPromoted)?;
    let mut total_ns = 0.0;
    let mut done = 0;
    while done < connections {
        let batch = CONNECTION_BATCH.min(connections - done);
        let start = bench.runs()?;
        bench.prepare(syn.target, &syn.frame, syn.vary_offset)?;
        let syn_ns = bench.measure(&syn.frame, batch, 1, syn.action, false)?;
        bench.set_runs(start)?;
        bench.prepare(syn.target, &ack_frame, syn.vary_offset)?;
        let ack_ns = bench.measure(&ack_frame, batch, 1, syn.action, false)?;
        let per_connection: f64 = syn_ns.iter().chain(&ack_ns).sum();
        total_ns += per_connection * f64::from(batch);
        done += batch;
    }
    let want = u64::from(connections);
    let syn_held = bench.counter(Counter::ConntrackHalfOpenNew)? - held_before;
    let ack_new = bench.counter(Counter::ConntrackNew)? - new_before;
    let promoted = bench.counter(Counter::ConntrackHalfOpenPromoted)? - promoted_before;
    if syn_held != want || ack_new != want || promoted > want {
        bail!(
            "{CONNECTION_V4} ({}): {syn_held} held half-open for {want} SYNs, {ack_new} new flows ({promoted} promoted) for {want} ACKs",
            bench.kind.label()
        );
    }
    Ok((total_ns / f64::from(connections), want - promoted))
}

/// Runs every case on both `COMPARED` designs at lbd's default table size
/// (new-flow rounds start from an empty table), the table-heavy ones again
/// in an 8 M-entry table holding `prefill` flows, then the connection-table
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

fn run_pinned(repeat: u32, rounds: u32, prefill: u32) -> anyhow::Result<XdpResults> {
    let big_table = BIG_TABLE.max(prefill.saturating_mul(2));
    let mut results = Vec::new();
    for (capacity, pass) in [(CONNTRACK, 0u32), (big_table, prefill)] {
        run_pass(capacity, pass, repeat, rounds, &mut results)?;
    }
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
    record(
        results,
        &benches,
        &case,
        &measured,
        (repeat, rounds),
        (0, CONNTRACK),
    );
    Ok(())
}

/// The guards' cases on `benches` (guards put in force first).
fn run_guarded(
    benches: &mut [Bench],
    repeat: u32,
    rounds: u32,
    capacity: u32,
    results: &mut Vec<XdpCase>,
) -> anyhow::Result<()> {
    for bench in benches.iter_mut() {
        bench.guard()?;
    }
    for case in guarded_cases() {
        if case.name == TRACKED_V4_GUARDED {
            run_guards_toggled(benches, &case, (repeat, rounds), capacity, results)?;
            continue;
        }
        let fresh = case.new_flow();
        let spreads = run_compared(benches, &case, repeat, rounds, fresh)?;
        record(
            results,
            benches,
            &case,
            &spreads,
            (repeat, rounds),
            (0, capacity),
        );
    }
    Ok(())
}

/// `case` (a tracked flow's) with its guards on and, in the same rounds,
/// off (`TRACKED_V4_UNGUARDED`): each round measures both, the order
/// alternating, so what the guards cost is a per-round difference, not
/// one of two medians taken minutes apart. Leaves the guards on.
fn run_guards_toggled(
    benches: &mut [Bench],
    case: &Case,
    (repeat, rounds): (u32, u32),
    capacity: u32,
    results: &mut Vec<XdpCase>,
) -> anyhow::Result<()> {
    let plain = Case {
        name: TRACKED_V4_UNGUARDED,
        path: "parse, VIP hit, conntrack hit, TX (the guarded row's flow, its guards off in the same rounds)",
        ..case.clone()
    };
    let mut on = vec![Vec::new(); benches.len()];
    let mut off = vec![Vec::new(); benches.len()];
    for round in 0..rounds {
        for guarded in [round % 2 == 1, round % 2 == 0] {
            for bench in benches.iter_mut() {
                bench.set_guards(guarded)?;
            }
            let (measured, into) = if guarded {
                (run_compared(benches, case, repeat, 1, false)?, &mut on)
            } else {
                (run_compared(benches, &plain, repeat, 1, false)?, &mut off)
            };
            for (ns, rounds) in into.iter_mut().zip(measured) {
                ns.extend(rounds.per_round);
            }
        }
    }
    for bench in benches.iter_mut() {
        bench.set_guards(true)?;
    }
    for (case, ns) in [(&plain, off), (case, on)] {
        let measured: Vec<Rounds> = ns.iter().map(|ns| Rounds::of(ns)).collect();
        record(
            results,
            benches,
            case,
            &measured,
            (repeat, rounds),
            (0, capacity),
        );
    }
    Ok(())
}

/// The guards' cases alone, after the unguarded cases they compare with
/// (tracked v4, new v6) as baselines, on both `COMPARED` designs (small
/// rounds: a check that each takes its path, as the tests run it).
pub fn run_guarded_only(repeat: u32, rounds: u32) -> anyhow::Result<Vec<XdpCase>> {
    let mut benches = COMPARED
        .into_iter()
        .map(|kind| Bench::new(CONNTRACK, kind))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for baseline in cases()
        .into_iter()
        .filter(|c| c.name == TRACKED_V4 || c.name == NEW_V6)
    {
        let fresh = baseline.new_flow();
        let measured = run_compared(&mut benches, &baseline, repeat, rounds, fresh)?;
        record(
            &mut results,
            &benches,
            &baseline,
            &measured,
            (repeat, rounds),
            (0, CONNTRACK),
        );
    }
    run_guarded(&mut benches, repeat, rounds, CONNTRACK, &mut results)?;
    Ok(results)
}

/// The main pass's cases: `cases()` and, after each new-flow SYN, the
/// same flow's first ACK (an insert into the connection table, which the
/// SYN's half-open hold leaves to it: where the designs differ).
fn pass_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for case in cases() {
        let first_ack = (case.name == NEW_V4 || case.name == NEW_V6).then(|| case.clone());
        out.push(case);
        if let Some(ack) = first_ack {
            out.push(ack.into_first_ack());
        }
    }
    out
}

/// Appends one case's results on `benches` (`measured` in their order):
/// `(repeat, rounds)` as run, `(prefill, capacity)` of the table.
fn record(
    results: &mut Vec<XdpCase>,
    benches: &[Bench],
    case: &Case,
    measured: &[Rounds],
    (repeat, rounds): (u32, u32),
    (prefill, capacity): (u64, u32),
) {
    for (bench, measured) in benches.iter().zip(measured) {
        results.push(XdpCase {
            name: case.name.to_owned(),
            path: case.path.to_owned(),
            ns_per_packet: measured.spread,
            repeat,
            rounds,
            conntrack_prefill: prefill,
            design: bench.kind.label().to_owned(),
            capacity,
            lost_flows: 0,
            per_round: measured.per_round.clone(),
        });
    }
}

/// One table size, both `COMPARED` designs loaded side by side and
/// measured case by case (so drift in this VM's speed hits both alike).
/// With `prefill` flows, only the cases that touch the table, and new-flow
/// rounds do not empty it (the point is a crowded table).
fn run_pass(
    capacity: u32,
    prefill: u32,
    repeat: u32,
    rounds: u32,
    results: &mut Vec<XdpCase>,
) -> anyhow::Result<()> {
    let mut benches = Vec::new();
    for kind in COMPARED {
        eprintln!(
            "bench: {} of {capacity} entries, {prefill} flows in it",
            kind.label()
        );
        let mut bench = Bench::new(capacity, kind)?;
        bench.prefill(prefill)?;
        benches.push(bench);
    }
    for case in pass_cases() {
        if prefill > 0 && !case.name.contains("flow") {
            continue;
        }
        let fresh = prefill == 0 && case.new_flow();
        let measured = run_compared(&mut benches, &case, repeat, rounds, fresh)?;
        record(
            results,
            &benches,
            &case,
            &measured,
            (repeat, rounds),
            (u64::from(prefill), capacity),
        );
    }
    // Half the runs per round: each connection is two packets.
    let connections = repeat / 2;
    let measured = run_connection(&mut benches, connections, rounds, prefill == 0)?;
    for (bench, (measured, lost)) in benches.iter().zip(measured) {
        results.push(XdpCase {
            name: CONNECTION_V4.to_owned(),
            path: "SYN: conntrack miss, half-open miss, Maglev, handshake insert, TX; then its first ACK: buckets: conntrack hit (the handshake made established); LRU: conntrack miss, half-open hit (taken out), conntrack insert; TX; ns per connection".to_owned(),
            ns_per_packet: measured.spread,
            per_round: measured.per_round,
            repeat: connections,
            rounds,
            conntrack_prefill: u64::from(prefill),
            design: bench.kind.label().to_owned(),
            capacity,
            lost_flows: lost,
        });
    }
    // Last: the guards stay in force once put there (their deny rule
    // takes 0.0.0.0/8, the cases' varied IPv4 sources, and their limits
    // would refuse the connection case's new flows).
    if prefill == 0 {
        run_guarded(&mut benches, repeat, rounds, capacity, results)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

    use super::*;

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
