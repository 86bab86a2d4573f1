//! Data-plane cost per packet: the compiled XDP program under
//! BPF_PROG_TEST_RUN with a large repeat count, run through `xdp_bench`,
//! which restores the original packet before every run and tail-calls the
//! program under test (without it, every run after the first would see the
//! previous run's output). Each case checks with the program's own counters
//! that N runs gave N of the expected outcome.

use anyhow::{anyhow, bail, Context as _};
use aya::{
    maps::{Array, MapData, ProgramArray},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{
    consts::names, stats::Counter, BenchTemplate, FlowEntry, FlowKey, LbConfig, BENCH_TEMPLATE_MAX,
};
use lb_userspace::{
    dataplane::{Dataplane, MapSizes, MapWriter as _},
    reconcile::{Balancer, DesiredVip},
};
use serde::{Deserialize, Serialize};

use super::Spread;
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
    /// Connection table capacity used.
    pub conntrack_capacity: u32,
}

const CONNTRACK: u32 = 2 * 1024 * 1024;

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
    fn new() -> anyhow::Result<Self> {
        let mut dataplane = Dataplane::load(MapSizes {
            max_vips: 4,
            conntrack: CONNTRACK,
        })
        .context("loading the XDP object (root needed)")?;
        dataplane.set_config(&LbConfig {
            iface_mac: LB_MAC,
            _pad: [0; 2],
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
        if frame.len() > BENCH_TEMPLATE_MAX {
            bail!(
                "frame of {} bytes is over the template's {BENCH_TEMPLATE_MAX}",
                frame.len()
            );
        }
        let mut template = BenchTemplate {
            len: frame.len() as u32,
            vary_offset,
            ..BenchTemplate::default()
        };
        template.bytes[..frame.len()].copy_from_slice(frame);
        let fd = self.dataplane.program(target)?.fd()?.try_clone()?;
        let ebpf = self.dataplane.ebpf_mut();
        let mut templates: Array<&mut MapData, BenchTemplate> = Array::try_from(
            ebpf.map_mut(names::MAP_BENCH_TEMPLATE)
                .ok_or_else(|| anyhow!("no {} map", names::MAP_BENCH_TEMPLATE))?,
        )?;
        templates.set(0, template, 0)?;
        let mut targets: ProgramArray<&mut MapData> = ProgramArray::try_from(
            ebpf.map_mut(names::MAP_BENCH_TARGET)
                .ok_or_else(|| anyhow!("no {} map", names::MAP_BENCH_TARGET))?,
        )?;
        targets.set(0, &fd, 0)?;
        Ok(())
    }

    /// Runs the wrapper `repeat` times per round; ns per packet per round.
    fn measure(
        &mut self,
        frame: &[u8],
        repeat: u32,
        rounds: u32,
        expect_action: u32,
    ) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::new();
        let mut data_out = vec![0u8; frame.len() + 256];
        for _ in 0..rounds {
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
                _pad: 0,
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

/// Runs every case (and the table-heavy ones again with 1 M flows).
pub fn run(repeat: u32, rounds: u32, prefill: u32) -> anyhow::Result<XdpResults> {
    let mut bench = Bench::new()?;
    let mut results = Vec::new();
    for pass in [0u32, prefill] {
        if pass > 0 {
            eprintln!("bench: filling the connection table with {pass} flows ...");
            bench.prefill(pass)?;
        }
        for case in cases() {
            if pass > 0 && !case.name.contains("flow") {
                continue;
            }
            bench.prepare(case.target, &case.frame, case.vary_offset)?;
            // Warm up (and, for tracked flows, create the flow).
            bench.measure(&case.frame, 1000, 1, case.action)?;
            let before = match case.counter {
                Some(c) => bench.counter(c)?,
                None => 0,
            };
            let ns = bench.measure(&case.frame, repeat, rounds, case.action)?;
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
            let spread = super::Spread::of(&ns);
            eprintln!(
                "bench: {:<28} {:>7.1} ns/packet (median of {rounds})",
                case.name, spread.median
            );
            results.push(XdpCase {
                name: case.name.to_owned(),
                path: case.path.to_owned(),
                ns_per_packet: spread,
                repeat,
                rounds,
                conntrack_prefill: u64::from(pass),
            });
        }
    }
    Ok(XdpResults {
        cases: results,
        conntrack_capacity: CONNTRACK,
    })
}
