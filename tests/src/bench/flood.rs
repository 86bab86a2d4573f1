//! Legitimate clients under a SYN flood, lbd against HAProxy `mode tcp`,
//! in one lab and one run: the lab's client opens new connections to the
//! VIP one after another at a fixed pace (`floodrun::probe`), without a
//! flood (the baseline) and while the same client's namespace sends a
//! bounded flood of SYNs from spoofed sources (`floodrun::flood_and_probe`).
//! lbd runs as lbd runs by default (`dsr-l2` at XDP, no guards: the
//! flood's SYNs go to the backends, whose kernels answer them), and again
//! with a limit of new flows per source /16 (`lbd-limit`); HAProxy
//! terminates TCP on the LB node with its usual backlog and the kernel's
//! SYN cookies on. Both in front of the same nginx backends, rounds
//! interleaved and the systems' order alternated from round to round.

use std::{fmt::Write as _, net::IpAddr, process::Command, sync::Arc, time::Duration};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::{
    e2e::{start_named, stop, System, Target},
    Spread,
};
use crate::{
    floodrun::{flood_and_probe, flood_of, probe, route_spoofed_replies, Pace, Probe},
    lab::{Lab, HTTP_PORT, VIP4},
};

/// One system in one condition, over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodCase {
    /// The system under the flood.
    pub system: FloodSystem,
    /// Without the flood, or during it.
    pub condition: Condition,
    /// New connections answered, % of those tried.
    pub success_pct: Spread,
    /// Median latency of the answered ones (connect to last byte), ms.
    pub p50_ms: Spread,
    /// Their 99th percentile, ms.
    pub p99_ms: Spread,
    /// New connections tried per round.
    pub attempts: Spread,
    /// The flood's rate, SYNs a second (0 in the baseline).
    pub syns_per_s: Spread,
    /// SYN cookies the LB node and the backends sent during the round
    /// (`TcpExt: SyncookiesSent`): who answered the flood.
    pub syncookies_sent: Spread,
    /// Packets the machine's per-CPU input backlogs dropped during the
    /// round (`/proc/net/softnet_stat`, every namespace: a packet crossing
    /// a veth waits there), legitimate ones among them (None in results
    /// from before it was counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_drops: Option<Spread>,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodResults {
    /// When it was measured (UTC).
    pub date: String,
    /// Rounds.
    pub rounds: u32,
    /// Seconds per measurement (the flood's time bound; the baseline
    /// probes as long).
    pub seconds: u32,
    /// SYNs per flood at most.
    pub syns: u32,
    /// The flood's pace, SYNs a second at most: the same for every
    /// system (unpaced, the sender goes as fast as the CPU the receiving
    /// side leaves it, so a system that takes more CPU per SYN would face
    /// a lighter flood). 0: unpaced (results from before the pace).
    #[serde(default)]
    pub flood_per_s: u32,
    /// Legitimate clients at once (one address).
    pub clients: u32,
    /// Their new connections a second, all together (at most).
    pub client_per_s: u32,
    /// Time each legitimate connection has to connect and answer, ms.
    pub timeout_ms: u64,
    /// `haproxy -v`'s version.
    pub haproxy: String,
    /// The LB node's `net.core.somaxconn`.
    pub somaxconn: u64,
    /// The LB node's `net.ipv4.tcp_max_syn_backlog`.
    pub max_syn_backlog: u64,
    /// The cases.
    pub cases: Vec<FloodCase>,
}

/// The systems compared: lbd as it comes, lbd with a limit of new flows
/// per /16 (the flood's sources share one bucket, the client's prefix has
/// its own), HAProxy.
const SYSTEMS: &[FloodSystem] = &[
    FloodSystem::Lbd,
    FloodSystem::LbdLimit,
    FloodSystem::Haproxy,
];
/// `lbd-limit`'s limit: new flows a second per source /16 (and per
/// source address), far above the client's pace.
const LIMIT: &str = "[[limit]]\nsource_rate = 1000\nprefix_rate = 2000\nprefix_v4 = 16\n";
const CONDITIONS: &[Condition] = &[Condition::Baseline, Condition::Flood];

/// A system the flood pass compares; named in the results file and the
/// report as `name` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FloodSystem {
    /// lbd as it comes (`dsr-l2` at XDP, no deny list, no limits).
    #[serde(rename = "lbd")]
    Lbd,
    /// lbd with `LIMIT`.
    #[serde(rename = "lbd-limit")]
    LbdLimit,
    /// HAProxy `mode tcp`.
    #[serde(rename = "haproxy")]
    Haproxy,
}

impl FloodSystem {
    /// The system's name in the results file and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lbd => "lbd",
            Self::LbdLimit => "lbd-limit",
            Self::Haproxy => "haproxy",
        }
    }

    /// The end-to-end system it starts, and what it adds to an lbd's
    /// config.
    fn started(self) -> (System, &'static str) {
        match self {
            Self::Lbd => (System::Lbd, ""),
            Self::LbdLimit => (System::Lbd, LIMIT),
            Self::Haproxy => (System::Haproxy, ""),
        }
    }
}

impl std::fmt::Display for FloodSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Whether a run had the flood going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// No flood: what each system answers on its own.
    #[serde(rename = "baseline")]
    Baseline,
    /// During the flood.
    #[serde(rename = "flood")]
    Flood,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Baseline => "baseline",
            Self::Flood => "flood",
        })
    }
}

/// One measurement.
struct Sample {
    probe: Probe,
    syns_per_s: f64,
    counts: Counts,
}

/// Kernel counters: SYN cookies sent by the LB nodes and the backends,
/// and the machine's input backlog drops.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    syncookies: u64,
    backlog_drops: u64,
}

impl Counts {
    /// Now, in `lab`.
    fn of(lab: &Lab) -> anyhow::Result<Self> {
        let softnet = std::fs::read_to_string("/proc/net/softnet_stat")
            .context("reading /proc/net/softnet_stat")?;
        Ok(Self {
            syncookies: syncookies_sent(lab)?,
            backlog_drops: softnet_drops(&softnet),
        })
    }

    /// What grew since `before`.
    fn since(self, before: Self) -> Self {
        Self {
            syncookies: self.syncookies.saturating_sub(before.syncookies),
            backlog_drops: self.backlog_drops.saturating_sub(before.backlog_drops),
        }
    }
}

/// Packets dropped by the CPUs' input backlogs: the second column (hex)
/// of each line of `/proc/net/softnet_stat`, one line per CPU.
fn softnet_drops(softnet: &str) -> u64 {
    softnet
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

/// `sysctl -n name` in `netns`.
fn sysctl_of(netns: &str, name: &str) -> anyhow::Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "sysctl", "-n", name])
        .output()
        .context("running sysctl")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("{name} in {netns}: {text:?}"))
}

/// Sets `setting` (`name=value`) in `netns`.
fn sysctl_set(netns: &str, setting: &str) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["netns", "exec", netns, "sysctl", "-qw", setting])
        .status()
        .context("running sysctl")?;
    if !status.success() {
        bail!("sysctl {setting} in {netns} failed");
    }
    Ok(())
}

/// HAProxy's version (`haproxy -v`: "HAProxy version 2.6.12-1 ...").
fn haproxy_version() -> anyhow::Result<String> {
    let out = Command::new("haproxy")
        .arg("-v")
        .output()
        .context("running haproxy -v")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no version in haproxy -v: {text:?}"))
}

/// SYN cookies sent so far by the LB nodes and the backends (each
/// namespace has its own counters).
fn syncookies_sent(lab: &Lab) -> anyhow::Result<u64> {
    let mut sum = 0;
    for host in lab.lbs.iter().chain(&lab.backends) {
        let out = Command::new("ip")
            .args(["netns", "exec", &host.netns, "cat", "/proc/net/netstat"])
            .output()
            .context("reading /proc/net/netstat")?;
        sum += tcp_ext(&String::from_utf8_lossy(&out.stdout), "SyncookiesSent")
            .with_context(|| format!("no SyncookiesSent in {}'s /proc/net/netstat", host.name))?;
    }
    Ok(sum)
}

/// Counter `name` of the `TcpExt:` lines of `/proc/net/netstat` (a line
/// of names, then one of values).
fn tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Measures the systems, with and without the flood, `rounds` times;
/// each measurement lasts `seconds` (the flood: `syns` SYNs at most,
/// `flood_per_s` a second at most).
pub fn run(rounds: u32, seconds: u32, syns: u32, flood_per_s: u32) -> anyhow::Result<FloodResults> {
    let mut lab = Lab::start(3).context("lab")?;
    lab.wait_for_backends()?;
    route_spoofed_replies(&lab)?;
    for host in lab.lbs.iter().chain(&lab.backends) {
        sysctl_set(&host.netns, "net.ipv4.tcp_syncookies=1")?;
    }
    let somaxconn = sysctl_of(&lab.lb.netns, "net.core.somaxconn")?;
    let max_syn_backlog = sysctl_of(&lab.lb.netns, "net.ipv4.tcp_max_syn_backlog")?;
    let pace = Pace {
        clients: 8,
        per_s: 200,
        timeout: Duration::from_secs(3),
    };
    let limit = Duration::from_secs(u64::from(seconds));
    let target = Target::of(&lab, HTTP_PORT);
    let vip = std::net::SocketAddr::new(IpAddr::V4(VIP4), HTTP_PORT);
    let mut samples: Vec<((FloodSystem, Condition), Sample)> = Vec::new();
    for round in 0..rounds {
        // The systems' order alternates: what one leaves behind (the
        // backends' queues after a flood) falls on each in turn.
        let mut order = SYSTEMS.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for system in order {
            let (base, extra) = system.started();
            let name = format!("{system}-r{round}");
            let running = start_named(&mut lab, base, &name, &target, extra)?;
            for &condition in CONDITIONS {
                let counts = Counts::of(&lab)?;
                let (probe, syns_per_s) = if condition == Condition::Flood {
                    let flood = flood_of(&lab, syns, limit, Some(flood_per_s))?;
                    let (report, probe) = flood_and_probe(&lab, &flood, pace)?;
                    let rate = report.sent as f64 / report.elapsed.as_secs_f64().max(1e-9);
                    (probe, rate)
                } else {
                    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    (probe(&lab.client.netns, vip, pace, never, limit)?, 0.0)
                };
                let counts = Counts::of(&lab)?.since(counts);
                eprintln!(
                    "bench: flood round {round} {system:<8} {condition:<8} {:>5} of {:>5} answered ({:.1} %) p50 {:.2} ms p99 {:.2} ms, {syns_per_s:.0} SYNs/s, {} SYN cookies, {} backlog drops; errors {:?}",
                    probe.succeeded,
                    probe.attempts(),
                    probe.success_pct(),
                    probe.percentile_ms(50.0),
                    probe.percentile_ms(99.0),
                    counts.syncookies,
                    counts.backlog_drops,
                    probe.errors
                );
                samples.push((
                    (system, condition),
                    Sample {
                        probe,
                        syns_per_s,
                        counts,
                    },
                ));
                // The half-open state of the flood (SYN-ACKs retried by
                // the backends, lbd's half-open table) ages a moment.
                std::thread::sleep(Duration::from_secs(1));
            }
            stop(&mut lab, running)?;
        }
    }
    let mut cases = Vec::new();
    for &system in SYSTEMS {
        for &condition in CONDITIONS {
            let of = |f: fn(&Sample) -> f64| {
                Spread::of(
                    &samples
                        .iter()
                        .filter(|((s, c), _)| *s == system && *c == condition)
                        .map(|(_, x)| f(x))
                        .collect::<Vec<_>>(),
                )
            };
            cases.push(FloodCase {
                system,
                condition,
                success_pct: of(|s| s.probe.success_pct()),
                p50_ms: of(|s| s.probe.percentile_ms(50.0)),
                p99_ms: of(|s| s.probe.percentile_ms(99.0)),
                attempts: of(|s| s.probe.attempts() as f64),
                syns_per_s: of(|s| s.syns_per_s),
                syncookies_sent: of(|s| s.counts.syncookies as f64),
                backlog_drops: Some(of(|s| s.counts.backlog_drops as f64)),
            });
        }
    }
    Ok(FloodResults {
        date: super::Machine::here("").date,
        rounds,
        seconds,
        syns,
        flood_per_s,
        clients: pace.clients,
        client_per_s: pace.per_s,
        timeout_ms: pace.timeout.as_millis() as u64,
        haproxy: haproxy_version()?,
        somaxconn,
        max_syn_backlog,
        cases,
    })
}

/// The BENCHMARKS.md section.
pub fn markdown(out: &mut String, flood: &FloodResults) {
    let _ = writeln!(
        out,
        "## Legitimate clients under a SYN flood: lbd vs HAProxy\n"
    );
    let _ = writeln!(
        out,
        "The L2 lab (client → LB node → three nginx backends, all namespaces on this machine). {} clients (threads of the client namespace) open new connections to the VIP, each one after another, at most {} a second together, each connection given {} ms to connect and answer (a GET, the whole answer; a SYN lost costs a 1 s retransmission), for {} s without a flood (baseline) and while a flood lasts (at most {} s): up to {} SYNs, {}, from spoofed sources of 198.19.0.0/16, sent by an `AF_PACKET` socket in the same client namespace. The LB node and the backends route 198.19.0.0/16 back to the client (which drops the answers), so the hosts that terminate TCP answer the flood as on the internet. lbd: `dsr-l2` at XDP with its defaults (no deny list, no limits): its half-open table takes the flood and the SYNs go on to the backends, whose kernels answer them. `lbd-limit`: the same with a `[[limit]]` of 2,000 new flows a second per source /16 and 1,000 per source address (the flood's sources share one bucket, dropped in XDP past it; the client's /16 has its own). HAProxy {} `mode tcp` (`maxconn 8000`, default backlog) on the LB node, kernel SYN cookies on (`tcp_syncookies = 1`, `somaxconn` {}, `tcp_max_syn_backlog` {} there). {} rounds, the systems interleaved (order alternating); min / median / max over the rounds; latency percentiles are of the answered connections. SYN cookies: sent by the LB node and the backends together during the run; backlog drops: packets the CPUs' input backlogs dropped meanwhile (`/proc/net/softnet_stat`; every namespace's packets cross veths and wait there, so this is the whole lab's, legitimate packets among them: a lost SYN or SYN-ACK costs a retransmission). Measured {}.\n",
        flood.clients,
        flood.client_per_s,
        flood.timeout_ms,
        flood.seconds,
        flood.seconds,
        flood.syns,
        if flood.flood_per_s == 0 {
            "unpaced (as fast as the sender got CPU: a system that costs more per SYN faced a lighter flood)".to_owned()
        } else {
            format!("{} a second at most (the same pace for every system: unpaced, the sender takes what CPU the receiving side leaves it, and a system that costs more per SYN would face a lighter flood)", flood.flood_per_s)
        },
        flood.haproxy,
        flood.somaxconn,
        flood.max_syn_backlog,
        flood.rounds,
        flood.date
    );
    let _ = writeln!(
        out,
        "| system | condition | answered % (min / median / max) | p50 ms | p99 ms (min / median / max) | tried per run | flood SYNs/s | SYN cookies sent | backlog drops |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---|---:|---:|---:|---:|");
    for c in &flood.cases {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} / **{:.1}** / {:.1} | {:.2} | {:.1} / **{:.1}** / {:.1} | {:.0} | {:.0} | {:.0} | {} |",
            c.system,
            c.condition,
            c.success_pct.min,
            c.success_pct.median,
            c.success_pct.max,
            c.p50_ms.median,
            c.p99_ms.min,
            c.p99_ms.median,
            c.p99_ms.max,
            c.attempts.median,
            c.syns_per_s.median,
            c.syncookies_sent.median,
            c.backlog_drops
                .map_or_else(|| "–".to_owned(), |d| format!("{:.0}", d.median))
        );
    }
    let of = |system: FloodSystem| {
        flood
            .cases
            .iter()
            .find(|c| c.system == system && c.condition == Condition::Flood)
    };
    let under: Vec<String> = SYSTEMS
        .iter()
        .filter_map(|&s| of(s))
        .map(|c| {
            format!(
                "{} answered **{:.1} %** of new connections (p99 **{:.1} ms**)",
                c.system, c.success_pct.median, c.p99_ms.median
            )
        })
        .collect();
    if !under.is_empty() {
        let _ = writeln!(
            out,
            "\nUnder the flood (medians over the rounds): {}.",
            under.join(", ")
        );
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_ext_counter_is_read_by_its_name() {
        let netstat =
            "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 17 4\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext(netstat, "SyncookiesSent"), Some(17));
        assert_eq!(tcp_ext(netstat, "SyncookiesRecv"), Some(4));
        assert_eq!(tcp_ext(netstat, "InNoRoutes"), None);
    }

    #[test]
    fn backlog_drops_sum_over_the_cpus() {
        let softnet = "0001a2b3 00000010 00000000\n0000ffff 00000002 00000001\n";
        assert_eq!(softnet_drops(softnet), 18);
    }

    #[test]
    fn the_section_puts_both_systems_under_the_flood_side_by_side() {
        let spread = |v: f64| Spread {
            min: v,
            median: v,
            max: v,
        };
        let case = |system, condition, pct: f64, p99: f64| FloodCase {
            system,
            condition,
            success_pct: spread(pct),
            p50_ms: spread(1.0),
            p99_ms: spread(p99),
            attempts: spread(900.0),
            syns_per_s: spread(100_000.0),
            syncookies_sent: spread(0.0),
            backlog_drops: Some(spread(0.0)),
        };
        let results = FloodResults {
            date: "2026-11-23T03:00:00Z".to_owned(),
            rounds: 3,
            seconds: 5,
            syns: 2_000_000,
            flood_per_s: 200_000,
            clients: 8,
            client_per_s: 200,
            timeout_ms: 3000,
            haproxy: "2.6.12".to_owned(),
            somaxconn: 4096,
            max_syn_backlog: 512,
            cases: vec![
                case(FloodSystem::Lbd, Condition::Baseline, 100.0, 1.0),
                case(FloodSystem::Lbd, Condition::Flood, 99.5, 3.0),
                case(FloodSystem::Haproxy, Condition::Baseline, 100.0, 2.0),
                case(FloodSystem::Haproxy, Condition::Flood, 80.0, 1020.0),
            ],
        };
        let mut out = String::new();
        markdown(&mut out, &results);
        assert!(
            out.contains("| haproxy | flood | 80.0 / **80.0** / 80.0 |"),
            "{out}"
        );
        assert!(
            out.contains("lbd answered **99.5 %** of new connections (p99 **3.0 ms**), haproxy answered **80.0 %** of new connections (p99 **1020.0 ms**)."),
            "{out}"
        );
        assert!(out.contains("HAProxy 2.6.12 `mode tcp`"), "{out}");
        assert!(out.contains("200000 a second at most"), "{out}");
    }

    #[test]
    fn a_section_from_before_the_pace_and_the_backlog_drops_still_reads() {
        let spread = r#"{"min": 1.0, "median": 1.0, "max": 1.0}"#;
        let case = format!(
            r#"{{"system": "lbd", "condition": "flood", "success_pct": {spread}, "p50_ms": {spread}, "p99_ms": {spread}, "attempts": {spread}, "syns_per_s": {spread}, "syncookies_sent": {spread}}}"#
        );
        let json = format!(
            r#"{{"date": "2026-11-23T02:00:00Z", "rounds": 3, "seconds": 5, "syns": 2000000, "clients": 8, "client_per_s": 200, "timeout_ms": 3000, "haproxy": "2.6.12", "somaxconn": 4096, "max_syn_backlog": 512, "cases": [{case}]}}"#
        );
        let results: FloodResults = serde_json::from_str(&json).expect("an older section");
        assert_eq!(results.flood_per_s, 0);
        assert_eq!(results.cases[0].backlog_drops, None);
        let mut out = String::new();
        markdown(&mut out, &results);
        assert!(out.contains("up to 2000000 SYNs, unpaced"), "{out}");
        assert!(out.contains("| 1 | 1 | 1 | – |"), "{out}");
    }
}
