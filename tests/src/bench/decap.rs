//! lb-decap's cost on a backend, ns per packet: the real decap object
//! under BPF_PROG_TEST_RUN with a repeat count, through its own restoring
//! wrappers (`xdp_decap_bench`, `tc_decap_bench`: the program removes
//! bytes at the front, so the wrapper moves the head back and rewrites the
//! packet before every run), at both hooks. Each case checks with the
//! program's counters that every run took the named path.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context as _};
use aya::{
    maps::{Array, ProgramArray},
    programs::{TestRun as _, TestRunOptions},
};
use lb_common::{
    decap::{names, DecapCounter},
    tunnel::GUE_PORT_DEFAULT,
    BenchTemplate, BENCH_TEMPLATE_MAX,
};
use lb_decap::dataplane;
use serde::{Deserialize, Serialize};

use super::Spread;
use crate::{
    decapbed::{
        gue0_header, ip_of, settings, tunnel_frame, DecapBed, Encap, BACKEND_V4, BACKEND_V6,
    },
    packet::{self, Flow, ACK},
    testbed::Hook,
};

/// One measured case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecapCase {
    /// What was measured.
    pub name: String,
    /// `xdp` or `tc`.
    pub hook: String,
    /// ns per packet over the rounds (wrapper included).
    pub ns_per_packet: Spread,
    /// Runs per round.
    pub repeat: u32,
    /// Rounds.
    pub rounds: u32,
}

/// Every case at both hooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecapResults {
    /// When it was measured (UTC).
    #[serde(default)]
    pub date: String,
    /// The cases.
    pub cases: Vec<DecapCase>,
}

/// The floor: an ARP frame, judged "not a tunnel" at the Ethernet type.
pub const FLOOR: &str = "floor: restore + tail call + Ethernet type (ARP, passed)";

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    counter: DecapCounter,
    pass: bool,
}

fn ip(text: &str) -> std::net::IpAddr {
    text.parse().expect("address")
}

fn cases() -> Vec<Case> {
    let tcp = |src: &str, dst: &str, dport: u16| {
        ip_of(&packet::tcp(
            &Flow {
                src: ip(src),
                dst: ip(dst),
                sport: 40_000,
                dport,
            },
            ACK,
            None,
            b"",
        ))
    };
    let tcp4 = tcp("198.18.1.10", "198.18.0.100", 80);
    let tcp6 = tcp("2001:2:0:1::10", "2001:2::100", 80);
    let gue1 = Encap::Gue1 {
        port: GUE_PORT_DEFAULT,
        csum: false,
    };
    vec![
        Case {
            name: FLOOR,
            frame: packet::arp_request(),
            counter: DecapCounter::PassNotTunnel,
            pass: true,
        },
        Case {
            name: "plain TCP to the backend (passed)",
            frame: packet::tcp(
                &Flow {
                    src: ip("198.18.1.10"),
                    dst: ip(BACKEND_V4),
                    sport: 40_000,
                    dport: 22,
                },
                ACK,
                None,
                b"",
            ),
            counter: DecapCounter::PassNotTunnel,
            pass: true,
        },
        Case {
            name: "IPIP v4, unwrapped",
            frame: tunnel_frame(BACKEND_V4, Encap::Ipip, &tcp4),
            counter: DecapCounter::DecapIpip,
            pass: true,
        },
        Case {
            name: "IP6IP6, unwrapped",
            frame: tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp6),
            counter: DecapCounter::DecapIpip,
            pass: true,
        },
        Case {
            name: "4in6, unwrapped",
            frame: tunnel_frame(BACKEND_V6, Encap::Ipip, &tcp4),
            counter: DecapCounter::DecapIpip,
            pass: true,
        },
        Case {
            name: "GUE v4 variant 1, unwrapped",
            frame: tunnel_frame(BACKEND_V4, gue1, &tcp4),
            counter: DecapCounter::DecapGue,
            pass: true,
        },
        Case {
            name: "GUE v6 variant 0, unwrapped",
            frame: tunnel_frame(
                BACKEND_V6,
                Encap::Gue0 {
                    port: GUE_PORT_DEFAULT,
                    header: gue0_header(&tcp6),
                },
                &tcp6,
            ),
            counter: DecapCounter::DecapGue,
            pass: true,
        },
        Case {
            name: "IPIP v4 to no VIP (dropped)",
            frame: tunnel_frame(
                BACKEND_V4,
                Encap::Ipip,
                &tcp("198.18.1.10", "198.18.0.100", 81),
            ),
            counter: DecapCounter::DropNotVip,
            pass: false,
        },
    ]
}

/// Points the wrapper of `hook` at the decap program of `hook` with
/// `frame`.
fn prepare(bed: &mut DecapBed, hook: Hook, frame: &[u8]) -> anyhow::Result<()> {
    if frame.len() > BENCH_TEMPLATE_MAX {
        bail!("frame of {} bytes is over the template", frame.len());
    }
    let mut template = BenchTemplate {
        len: frame.len() as u32,
        vary_offset: 0,
        ..BenchTemplate::default()
    };
    template.bytes[..frame.len()].copy_from_slice(frame);
    let ebpf = bed.ebpf_mut();
    let (target_fd, targets_name) = match hook {
        Hook::Xdp => (
            dataplane::xdp_program(ebpf, names::PROG_XDP_DECAP)?
                .fd()?
                .try_clone()?,
            names::MAP_DECAP_BENCH_TARGET,
        ),
        Hook::Tc => (
            dataplane::tc_program(ebpf, names::PROG_TC_DECAP)?
                .fd()?
                .try_clone()?,
            names::MAP_TC_DECAP_BENCH_TARGET,
        ),
    };
    let mut templates: Array<_, BenchTemplate> = Array::try_from(
        ebpf.map_mut(names::MAP_DECAP_BENCH_TEMPLATE)
            .ok_or_else(|| anyhow!("no {}", names::MAP_DECAP_BENCH_TEMPLATE))?,
    )?;
    templates.set(0, template, 0)?;
    let mut targets: ProgramArray<_> = ProgramArray::try_from(
        ebpf.map_mut(targets_name)
            .ok_or_else(|| anyhow!("no {targets_name}"))?,
    )?;
    targets.set(0, &target_fd, 0)?;
    Ok(())
}

/// Runs the wrapper of `hook` `repeat` times per round; ns per packet per
/// round. Every run must return `expect`.
fn measure(
    bed: &mut DecapBed,
    hook: Hook,
    frame: &[u8],
    repeat: u32,
    rounds: u32,
    expect: u32,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    let mut data_out = vec![0u8; frame.len() + 256];
    for _ in 0..rounds {
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut data_out),
            repeat,
            ..TestRunOptions::default()
        };
        let ebpf = bed.ebpf_mut();
        let result = match hook {
            Hook::Xdp => {
                dataplane::xdp_program(ebpf, names::PROG_XDP_DECAP_BENCH)?.test_run(options)
            }
            Hook::Tc => dataplane::tc_program(ebpf, names::PROG_TC_DECAP_BENCH)?.test_run(options),
        }
        .context("BPF_PROG_TEST_RUN")?;
        if result.return_value != expect {
            bail!(
                "the wrapper returned {} (expected {expect})",
                result.return_value
            );
        }
        out.push(result.duration.as_nanos() as f64);
    }
    Ok(out)
}

/// Measures every case at both hooks, on a thread pinned to CPU 0 (the
/// caller's affinity, which the report's core count reads, is left alone).
pub fn run(repeat: u32, rounds: u32) -> anyhow::Result<DecapResults> {
    std::thread::spawn(move || measure_all(repeat, rounds))
        .join()
        .map_err(|_| anyhow!("the decap benchmark thread panicked"))?
}

fn measure_all(repeat: u32, rounds: u32) -> anyhow::Result<DecapResults> {
    super::xdp::pin_to_cpu(0)?;
    let config = settings(&["198.18.0.100:80/tcp", "[2001:2::100]:80/tcp"]);
    let mut results = Vec::new();
    for hook in Hook::ALL {
        let mut bed =
            DecapBed::new(&config, hook).context("loading the decap object (root needed)")?;
        for case in cases() {
            prepare(&mut bed, hook, &case.frame)?;
            let before = bed.counter(case.counter)?;
            let expect = match (hook, case.pass) {
                (Hook::Xdp, true) => 2,
                (Hook::Xdp, false) => 1,
                // TC_ACT_UNSPEC (TCX_NEXT) as BPF_PROG_TEST_RUN returns it.
                (Hook::Tc, true) => u32::MAX,
                (Hook::Tc, false) => 2,
            };
            let samples = match measure(&mut bed, hook, &case.frame, repeat, rounds, expect) {
                Ok(samples) => samples,
                Err(e) => {
                    let counters: Vec<String> = bed
                        .counters()?
                        .iter()
                        .map(|(c, v)| format!("{}={v}", c.name()))
                        .collect();
                    return Err(e.context(format!(
                        "{} at {hook:?} (counters: {})",
                        case.name,
                        counters.join(" ")
                    )));
                }
            };
            let counted = bed.counter(case.counter)? - before;
            let runs = u64::from(repeat) * u64::from(rounds);
            if counted != runs {
                bail!(
                    "{} at {hook:?}: {counted} of {runs} runs counted as {}",
                    case.name,
                    case.counter.name()
                );
            }
            results.push(DecapCase {
                name: case.name.to_owned(),
                hook: match hook {
                    Hook::Xdp => "xdp",
                    Hook::Tc => "tc",
                }
                .to_owned(),
                ns_per_packet: Spread::of(&samples),
                repeat,
                rounds,
            });
        }
    }
    Ok(DecapResults {
        date: super::Machine::here("").date,
        cases: results,
    })
}

/// The BENCHMARKS.md section.
pub fn markdown(out: &mut String, decap: &DecapResults) {
    let _ = writeln!(
        out,
        "## lb-decap on a backend, ns per packet (BPF_PROG_TEST_RUN, XDP and tc)\n"
    );
    let _ = writeln!(
        out,
        "The real decap object, its maps filled by lb-decap's own code (two backend addresses, two VIPs), run through its restoring wrappers (`xdp_decap_bench`, `tc_decap_bench`: restore the packet, move the head back by what the last run removed, tail-call), so the floor row is in every other row; in the unwrapped rows the wrapper also undoes the last run's unwrap (`bpf_xdp_adjust_head` / `bpf_skb_adjust_room` growing the frame back), a cost a real packet does not pay, so those rows are an upper bound. Each case checks with the program's counters that every run took the named path. Measured {}.\n",
        decap.date
    );
    super::report::hook_case_table(
        out,
        decap.cases.iter().map(|c| {
            (
                c.hook.as_str(),
                c.name.as_str(),
                &c.ns_per_packet,
                c.rounds,
                c.repeat,
            )
        }),
    );
}
