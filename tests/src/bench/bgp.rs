//! Active-active behind ECMP (issue 14), in the BGP lab with real BIRD:
//! requests/s through 1, 2 and 3 announcing nodes in one run (the others
//! drained, rounds interleaved), with the whole machine's CPU and the
//! nodes' XDP time per request; and how long the router keeps sending to
//! a lost node (lbd+BIRD killed, or its link cut and BFD noticing), to
//! set beside the VRRP pair's failover gap. The lab runs on the same few
//! cores as its client, router and backends, so more nodes cannot show
//! more requests/s here: the CPU each request costs the nodes is the
//! number that carries over.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    e2e::{
        machine::cpu,
        wrk::{tune_for_new_connections, wrk},
    },
    Spread,
};
use crate::{
    bgplab::{BgpLab, BgpSpec},
    lab::VIP4,
};

/// One number of active nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveNodes {
    /// Nodes announcing the VIP (the rest drained).
    pub nodes: usize,
    /// Requests per second (a new connection each).
    pub rps: Spread,
    /// Whole machine busy during the run, % of all CPUs.
    pub cpu_busy_pct: Spread,
    /// The nodes' XDP programs' run time per request (every packet of the
    /// request's connection, summed over the nodes), ns.
    pub xdp_ns_per_request: Spread,
    /// Whole machine CPU per request, µs (client, router and backends
    /// included).
    pub machine_us_per_request: Spread,
}

/// One way of losing a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLoss {
    /// What happened to the node.
    pub event: String,
    /// Until the router's kernel route no longer has the node, ms.
    pub gap_ms: Spread,
}

/// The measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgpResults {
    /// Seconds per wrk run.
    pub seconds: u32,
    /// wrk connections.
    pub connections: u32,
    /// Rounds.
    pub rounds: u32,
    /// CPUs of the machine (all of the lab shares them).
    pub cores: usize,
    /// 1, 2 and 3 active nodes.
    pub active: Vec<ActiveNodes>,
    /// Node loss.
    pub loss: Vec<NodeLoss>,
    /// BGP and BFD timers of the example configs.
    pub timers: String,
}

/// The XDP run time (ns) and run count of the programs on the nodes'
/// interfaces, summed.
fn xdp_run_time(lab: &BgpLab) -> anyhow::Result<u64> {
    let ids: Vec<u32> = (0..lab.lab.lbs.len())
        .filter_map(|i| lab.lab.xdp_program_id(lab.node(i)).ok().flatten())
        .collect();
    let mut total = 0u64;
    for info in aya::programs::loaded_programs() {
        let info = info.context("listing BPF programs")?;
        if ids.contains(&info.id()) {
            total += u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
        }
    }
    Ok(total)
}

/// Drains or undrains node `index` and waits for the router to follow.
fn set_active(lab: &BgpLab, index: usize, active: bool) -> anyhow::Result<()> {
    lab.lbctl(index, &["node", if active { "undrain" } else { "drain" }]);
    lab.wait_routed_over(index, active, Duration::from_secs(15))?;
    Ok(())
}

fn throughput(rounds: u32, seconds: u32, connections: u32) -> anyhow::Result<Vec<ActiveNodes>> {
    let lab = BgpLab::start(BgpSpec {
        nodes: 3,
        spare: 0,
        backends: 3,
        serving: 3,
    })?;
    tune_for_new_connections(&lab.lab)?;
    // Keeps the kernel's BPF run-time statistics on while it is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    let url = format!("http://{VIP4}/");
    let mut samples: Vec<(usize, [f64; 4])> = Vec::new();
    for round in 0..rounds {
        for nodes in [1usize, 2, 3] {
            for index in 0..3 {
                set_active(&lab, index, index < nodes)?;
            }
            let (t0, idle0, _) = cpu();
            let x0 = xdp_run_time(&lab)?;
            let started = Instant::now();
            let rps = wrk(&lab.lab, &url, true, seconds, 2, connections)?.rps;
            let elapsed = started.elapsed().as_secs_f64();
            let x1 = xdp_run_time(&lab)?;
            let (t1, idle1, _) = cpu();
            let total = (t1 - t0).max(1) as f64;
            let busy = (total - (idle1 - idle0) as f64) / total;
            let requests = (rps * elapsed).max(1.0);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let sample = [
                rps,
                100.0 * busy,
                (x1 - x0) as f64 / requests,
                busy * cores * elapsed * 1e6 / requests,
            ];
            eprintln!(
                "bench: bgp round {round} {nodes} node(s): {rps:.0} req/s, machine {:.0} % busy, XDP {:.0} ns/request",
                sample[1], sample[2]
            );
            samples.push((nodes, sample));
        }
    }
    Ok([1usize, 2, 3]
        .into_iter()
        .map(|nodes| {
            let of = |i: usize| {
                Spread::of(
                    &samples
                        .iter()
                        .filter(|(n, _)| *n == nodes)
                        .map(|(_, s)| s[i])
                        .collect::<Vec<_>>(),
                )
            };
            ActiveNodes {
                nodes,
                rps: of(0),
                cpu_busy_pct: of(1),
                xdp_ns_per_request: of(2),
                machine_us_per_request: of(3),
            }
        })
        .collect())
}

/// One lab per round: node 2's link cut (then restored), then node 3's
/// lbd and BIRD killed; each timed until the router's route drops it.
fn loss(rounds: u32) -> anyhow::Result<Vec<NodeLoss>> {
    let (mut cut, mut killed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut lab = BgpLab::start(BgpSpec {
            nodes: 3,
            spare: 0,
            backends: 1,
            serving: 1,
        })?;
        let start = Instant::now();
        lab.set_link(1, false)?;
        let gap = start.elapsed() + lab.wait_routed_over(1, false, Duration::from_secs(10))?;
        cut.push(gap.as_secs_f64() * 1000.0);
        lab.set_link(1, true)?;
        lab.wait_routed_over(1, true, Duration::from_secs(15))?;
        let start = Instant::now();
        lab.kill_node(2)?;
        let gap = start.elapsed() + lab.wait_routed_over(2, false, Duration::from_secs(10))?;
        killed.push(gap.as_secs_f64() * 1000.0);
        eprintln!(
            "bench: bgp node loss: link cut {:.0} ms, lbd+BIRD killed {:.0} ms",
            cut[cut.len() - 1],
            killed[killed.len() - 1]
        );
    }
    Ok(vec![
        NodeLoss {
            event: "link cut (BFD)".to_owned(),
            gap_ms: Spread::of(&cut),
        },
        NodeLoss {
            event: "lbd+BIRD killed (session reset)".to_owned(),
            gap_ms: Spread::of(&killed),
        },
    ])
}

/// Runs both parts, `rounds` each.
pub fn run(rounds: u32, seconds: u32, connections: u32) -> anyhow::Result<BgpResults> {
    let active = throughput(rounds, seconds, connections)?;
    let loss = loss(rounds)?;
    Ok(BgpResults {
        seconds,
        connections,
        rounds,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        active,
        loss,
        timers: "BGP hold 3 s, keepalive 1 s; BFD 100 ms × 3".to_owned(),
    })
}
