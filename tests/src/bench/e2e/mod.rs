//! End to end in the namespace lab: the same client (wrk), the same nginx
//! backends, side by side in one run, interleaved round by round (the
//! systems' order rotated each round, `order`) so drift on a shared
//! machine cancels out and no system always follows the same one: direct to one backend, lbd's XDP data
//! plane, a bare MAC-rewrite + XDP_TX forwarder over the same backends,
//! HAProxy `mode tcp` and nginx `stream`, each with keep-alive connections
//! and with a new connection per request. The routed lab compares NAT mode
//! with HAProxy; the tunnel comparison puts lbd's `ipip` and `gue` beside
//! `dsr-l2` and HAProxy.

pub(crate) mod machine;
mod systems;
#[cfg(test)]
mod tests;
pub(crate) mod wrk;

use std::{process::Command, time::Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::Spread;
use crate::lab::{Lab, VIP4};
use machine::{cpu, ksoftirqd_pids, lb_drops, process_ticks, retransmitted};
pub(crate) use systems::{start, start_named, stop, Running, Target};
use wrk::{tune_for_new_connections, wrk};

/// A system the end-to-end passes put in front of the backends; named in
/// the results file and the report as `name` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum System {
    /// Straight to one backend, no load balancer: the ceiling.
    #[serde(rename = "direct")]
    Direct,
    /// lbd, `dsr-l2` at XDP.
    #[serde(rename = "lbd")]
    Lbd,
    /// lbd, `nat` at XDP.
    #[serde(rename = "lbd-nat")]
    LbdNat,
    /// lbd, `nat` at tc.
    #[serde(rename = "lbd-nat-tc")]
    LbdNatTc,
    /// lbd, `ipip` at XDP.
    #[serde(rename = "lbd-ipip")]
    LbdIpip,
    /// lbd, `gue` at XDP.
    #[serde(rename = "lbd-gue")]
    LbdGue,
    /// A bare MAC-rewrite + XDP_TX forwarder spreading by source port over
    /// the same backends: the floor lbd's data plane is held to.
    #[serde(rename = "xdp-forward")]
    XdpForward,
    /// HAProxy `mode tcp`.
    #[serde(rename = "haproxy")]
    Haproxy,
    /// nginx `stream`.
    #[serde(rename = "nginx-stream")]
    NginxStream,
}

impl System {
    /// The system's name in the results file, the report and the lab's
    /// process names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Lbd => "lbd",
            Self::LbdNat => "lbd-nat",
            Self::LbdNatTc => "lbd-nat-tc",
            Self::LbdIpip => "lbd-ipip",
            Self::LbdGue => "lbd-gue",
            Self::XdpForward => "xdp-forward",
            Self::Haproxy => "haproxy",
            Self::NginxStream => "nginx-stream",
        }
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// How wrk's connections carry the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Keep-alive connections, many requests each.
    #[serde(rename = "keep-alive")]
    KeepAlive,
    /// A new connection per request (`Connection: close`).
    #[serde(rename = "new-connection")]
    NewConnection,
}

impl Mode {
    /// Both, in the order every pass runs and reports them.
    pub const ALL: [Mode; 2] = [Mode::KeepAlive, Mode::NewConnection];

    /// The mode's name in the results file and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeepAlive => "keep-alive",
            Self::NewConnection => "new-connection",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One system in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2eCase {
    /// The system in front of the backends.
    pub system: System,
    /// Keep-alive connections, or a new connection per request.
    pub mode: Mode,
    /// Requests per second.
    pub rps: Spread,
    /// Median latency, ms.
    pub p50_ms: Spread,
    /// 99th percentile latency, ms.
    pub p99_ms: Spread,
    /// Whole machine busy during the run, % of all CPUs.
    pub cpu_busy_pct: Spread,
    /// Of which softirq (where XDP and the kernel network path run), %.
    pub softirq_pct: Spread,
    /// CPU seconds of the proxy's own processes per second of run (HAProxy,
    /// nginx stream; zero for the kernel data paths).
    pub proxy_cpu: Spread,
    /// Of the machine's CPU, the share its `ksoftirqd/N` threads ran, %
    /// (None in older results): softirq work the kernel deferred to the
    /// per-CPU thread because it had run too long inline. That work cannot
    /// move to another CPU, so a high share next to idle time means the
    /// path waited on one CPU's backlog while the other had nothing to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ksoftirqd_pct: Option<Spread>,
    /// Requests/s of each round, in order (empty in older results): the
    /// systems ran round by round, so they compare within each round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rps_per_round: Vec<f64>,
    /// Loss during each round's run, in order (None in older results):
    /// what a requests/s figure alone would hide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_per_round: Option<Vec<Loss>>,
}

/// What one run lost: packets lbd's data plane dropped (its `drop_*`
/// verdicts; 0 for every other system, which has no such counters), TCP
/// segments retransmitted in the lab (any system's loss, wherever it
/// happened, shows here; see `E2eResults::retransmits_on_lb_nodes` for
/// which namespaces), and the requests wrk saw fail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Packets lbd dropped.
    pub lb_drops: u64,
    /// Segments retransmitted by the client, the backends and (in newer
    /// results) the LB nodes.
    pub retransmits: u64,
    /// wrk's socket errors: connect, read, write, timeout (None in older
    /// results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_errors: Option<u64>,
    /// Answers wrk got that were neither 2xx nor 3xx (None in older
    /// results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_2xx: Option<u64>,
}

impl E2eCase {
    /// The loss summed over the rounds, if measured (wrk's errors only if
    /// every round counted them).
    pub fn total_loss(&self) -> Option<Loss> {
        let sum = |field: fn(&Loss) -> Option<u64>, rounds: &[Loss]| {
            rounds.iter().map(field).sum::<Option<u64>>()
        };
        self.loss_per_round.as_ref().map(|rounds| Loss {
            lb_drops: rounds.iter().map(|l| l.lb_drops).sum(),
            retransmits: rounds.iter().map(|l| l.retransmits).sum(),
            socket_errors: sum(|l| l.socket_errors, rounds),
            non_2xx: sum(|l| l.non_2xx, rounds),
        })
    }
}

impl E2eResults {
    /// Requests/s of `system` over those of `other` in `mode`: the median
    /// of the rounds' ratios (each round ran every system in turn), or,
    /// for older results, the ratio of the medians. None when either was
    /// not measured.
    pub fn ratio(&self, system: System, other: System, mode: Mode) -> Option<f64> {
        let case = |s: System| self.cases.iter().find(|c| c.system == s && c.mode == mode);
        let (a, b) = (case(system)?, case(other)?);
        if a.rps_per_round.len() == b.rps_per_round.len() && !a.rps_per_round.is_empty() {
            let ratios: Vec<f64> = a
                .rps_per_round
                .iter()
                .zip(&b.rps_per_round)
                .filter(|(_, b)| **b > 0.0)
                .map(|(a, b)| a / b)
                .collect();
            return (!ratios.is_empty()).then(|| Spread::of(&ratios).median);
        }
        (b.rps.median > 0.0).then(|| a.rps.median / b.rps.median)
    }
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2eResults {
    /// Seconds per wrk run.
    pub seconds: u32,
    /// wrk connections.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    /// Rounds.
    pub rounds: u32,
    /// The cases.
    pub cases: Vec<E2eCase>,
    /// Whether the systems' order rotated from round to round (`order`);
    /// false in older results, whose rounds all ran them in the listed
    /// order.
    #[serde(default)]
    pub order_rotated: bool,
    /// Whether the retransmissions counted include the LB nodes'
    /// namespaces (where HAProxy and nginx terminate TCP); false in older
    /// results, which counted the client and the backends only.
    #[serde(default)]
    pub retransmits_on_lb_nodes: bool,
}

/// The order of `n` systems in round `round` (indices into their list):
/// a round-robin whose every round moves each system one place on (over
/// `n` rounds each system runs once in each place), from a first round
/// that alternates the list's two ends (0, 1, n-1, 2, n-2, ...: Williams'
/// design), so no system follows the same one every round (over `n`
/// rounds, any one after a given other at most once for even `n`, twice
/// for odd): what one leaves behind (its teardown, the backends' state)
/// falls on different systems in turn.
pub(crate) fn order(round: u32, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let shift = round as usize % n;
    (0..n)
        .map(|i| {
            let first = if i == 0 {
                0
            } else if i % 2 == 1 {
                i.div_ceil(2)
            } else {
                n - i / 2
            };
            (first + shift) % n
        })
        .collect()
}

/// The L2 lab's systems.
const SYSTEMS: &[System] = &[
    System::Direct,
    System::Lbd,
    System::XdpForward,
    System::Haproxy,
    System::NginxStream,
];
/// The routed lab's systems: both serve unmodified, routed backends.
const ROUTED_SYSTEMS: &[System] = &[
    System::Direct,
    System::LbdNat,
    System::LbdNatTc,
    System::Haproxy,
];
/// The tunnel comparison's systems (`lbd` is `dsr-l2`).
const TUNNEL_SYSTEMS: &[System] = &[
    System::Direct,
    System::Lbd,
    System::LbdIpip,
    System::LbdGue,
    System::Haproxy,
];

struct Sample {
    rps: f64,
    p50: f64,
    p99: f64,
    busy: f64,
    softirq: f64,
    ksoftirqd: f64,
    proxy_cpu: f64,
    loss: Loss,
}

/// Runs every system in every mode, `rounds` times interleaved, in the
/// L2 lab (DSR).
pub fn run(load: &Load) -> anyhow::Result<E2eResults> {
    let mut lab = Lab::start(3).context("lab")?;
    lab.wait_for_backends()?;
    let target = Target::of(&lab, 80);
    measure(&mut lab, SYSTEMS, &target, load)
}

/// The routed lab's comparison: lbd in NAT mode against HAProxy `mode
/// tcp`, both in front of the same unmodified backends behind a router
/// (and direct to one of them), interleaved as `run` does.
pub fn run_routed(load: &Load) -> anyhow::Result<E2eResults> {
    let mut lab = Lab::start_routed(3).context("routed lab")?;
    for slot in 0..systems::NAT4_SOURCES {
        let address = systems::nat_source(slot);
        let status = Command::new("ip")
            .args([
                "-n",
                &lab.lb.netns,
                "addr",
                "add",
                &format!("{address}/32"),
                "dev",
                "eth0",
            ])
            .status()?;
        if !status.success() {
            bail!("adding the NAT address {address} to the LB node failed");
        }
    }
    lab.wait_for_backends()?;
    let target = Target::of(&lab, crate::topology::ROUTED_BACKEND_PORT);
    measure(&mut lab, ROUTED_SYSTEMS, &target, load)
}

/// The tunnel comparison: lbd's `dsr-l2`, `ipip` and `gue` (at XDP) and
/// HAProxy `mode tcp` in front of the same three backends, in one lab and
/// one run, interleaved as `run` does, and direct to one backend. The
/// backends sit on the LB's segment, the only place `dsr-l2` reaches, so
/// every system crosses the same links and only the forwarding differs;
/// they hold the VIP on `lo` and run lb-decap (at XDP) throughout, so the
/// `dsr-l2` and HAProxy rows pay for its pass-through check too, as
/// backends serving both kinds of VIP would.
pub fn run_tunnel(load: &Load) -> anyhow::Result<E2eResults> {
    let mut lab = Lab::start(3).context("lab")?;
    for backend in lab.backends.clone() {
        crate::tunnel::start_decap(&mut lab, &backend)
            .with_context(|| format!("lb-decap on {}", backend.name))?;
    }
    lab.wait_for_backends()?;
    let target = Target::of(&lab, 80);
    let results = measure(&mut lab, TUNNEL_SYSTEMS, &target, load)?;
    // The tunnelled rows measured tunnels: every backend unwrapped both
    // kinds of packet (a system that fell back to something else would
    // leave its counter at zero).
    for backend in &lab.backends {
        let counters = crate::tunnel::decap_counters(&lab, backend)?;
        for name in ["decap_ipip", "decap_gue"] {
            if counters.get(name).copied().unwrap_or(0) == 0 {
                bail!(
                    "{}'s lb-decap unwrapped nothing ({name} is 0): the tunnel rows did not go through tunnels",
                    backend.name
                );
            }
        }
    }
    Ok(results)
}

/// How hard and how long wrk pushes.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Rounds, interleaved system by system.
    pub rounds: u32,
    /// Seconds per wrk run.
    pub seconds: u32,
    /// wrk threads.
    pub threads: u32,
    /// wrk connections.
    pub connections: u32,
}

fn measure(
    lab: &mut Lab,
    systems: &[System],
    target: &Target,
    load: &Load,
) -> anyhow::Result<E2eResults> {
    let Load {
        rounds,
        seconds,
        threads,
        connections,
    } = *load;
    tune_for_new_connections(lab)?;
    let ticks_per_second = 100.0; // USER_HZ
    let mut samples: Vec<((System, Mode), Sample)> = Vec::new();
    for round in 0..rounds {
        for system in order(round, systems.len()).into_iter().map(|i| systems[i]) {
            let running = start(lab, system, round, target)?;
            let pids = match &running {
                Running::Process(_, pids) => pids.clone(),
                _ => Vec::new(),
            };
            for mode in Mode::ALL {
                let url = if system == System::Direct {
                    format!("http://{}:{}/", lab.backends[0].ipv4, target.port)
                } else {
                    format!("http://{VIP4}/")
                };
                let (drops0, retrans0) = (lb_drops(lab, &running)?, retransmitted(lab)?);
                let (t0, idle0, si0) = cpu();
                let ksoftirqd = ksoftirqd_pids();
                let k0 = process_ticks(&ksoftirqd);
                let p0 = process_ticks(&pids);
                let started = Instant::now();
                let run = wrk(
                    lab,
                    &url,
                    mode == Mode::NewConnection,
                    seconds,
                    threads,
                    connections,
                )?;
                let (rps, p50, p99) = (run.rps, run.p50_ms, run.p99_ms);
                let elapsed = started.elapsed().as_secs_f64();
                let (t1, idle1, si1) = cpu();
                let k1 = process_ticks(&ksoftirqd);
                let loss = Loss {
                    lb_drops: lb_drops(lab, &running)?.saturating_sub(drops0),
                    retransmits: retransmitted(lab)?.saturating_sub(retrans0),
                    socket_errors: Some(run.socket_errors),
                    non_2xx: Some(run.non_2xx),
                };
                let total = (t1 - t0).max(1) as f64;
                let sample = Sample {
                    rps,
                    p50,
                    p99,
                    busy: 100.0 * (total - (idle1 - idle0) as f64) / total,
                    softirq: 100.0 * (si1 - si0) as f64 / total,
                    ksoftirqd: 100.0 * k1.saturating_sub(k0) as f64 / total,
                    proxy_cpu: (process_ticks(&pids) - p0) as f64 / ticks_per_second / elapsed,
                    loss,
                };
                eprintln!("bench: e2e round {round} {system:<16} {mode:<15} {rps:>9.0} req/s p50 {p50:.2} ms p99 {p99:.2} ms, {} dropped by lbd, {} retransmitted, {} socket errors, {} non-2xx", loss.lb_drops, loss.retransmits, run.socket_errors, run.non_2xx);
                samples.push(((system, mode), sample));
            }
            stop(lab, running)?;
        }
    }
    let mut cases = Vec::new();
    for &system in systems {
        for mode in Mode::ALL {
            let of = |f: fn(&Sample) -> f64| {
                Spread::of(
                    &samples
                        .iter()
                        .filter(|((s, m), _)| *s == system && *m == mode)
                        .map(|(_, x)| f(x))
                        .collect::<Vec<_>>(),
                )
            };
            cases.push(E2eCase {
                system,
                mode,
                rps: of(|s| s.rps),
                p50_ms: of(|s| s.p50),
                p99_ms: of(|s| s.p99),
                cpu_busy_pct: of(|s| s.busy),
                softirq_pct: of(|s| s.softirq),
                proxy_cpu: of(|s| s.proxy_cpu),
                ksoftirqd_pct: Some(of(|s| s.ksoftirqd)),
                rps_per_round: samples
                    .iter()
                    .filter(|((s, m), _)| *s == system && *m == mode)
                    .map(|(_, x)| x.rps)
                    .collect(),
                loss_per_round: Some(
                    samples
                        .iter()
                        .filter(|((s, m), _)| *s == system && *m == mode)
                        .map(|(_, x)| x.loss)
                        .collect(),
                ),
            });
        }
    }
    Ok(E2eResults {
        seconds,
        connections,
        threads,
        rounds,
        cases,
        order_rotated: true,
        retransmits_on_lb_nodes: true,
    })
}
