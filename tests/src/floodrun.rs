//! A bounded SYN flood at the lab's VIP with a legitimate client meanwhile,
//! shared by the SYN-flood lab tests and the flood benchmark: the flood
//! (`synflood::SynFlood`, spoofed sources of 198.19.0.0/16) leaves the
//! client's namespace from a thread of its own while the same client opens
//! new connections one after another, each timed and tallied; for the
//! tests, long-lived connections stay open through it and are checked
//! afterwards.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _};

use crate::{
    client::KeepAlive,
    lab::{in_netns, Lab, HTTP_PORT, VIP4},
    synflood::{mac_of, FloodReport, SynFlood},
};

/// The spoofed sources' range (`SynFlood::source`).
pub const SPOOFED: &str = "198.19.0.0/16";

/// What the legitimate client saw: new connections (connect, one GET, the
/// whole answer) one after another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// Connections that were answered.
    pub succeeded: u64,
    /// Connections that failed or timed out.
    pub failed: u64,
    /// Latency of each answered connection (connect to last byte), sorted.
    pub latencies: Vec<Duration>,
    /// The first few errors.
    pub errors: Vec<String>,
}

impl Probe {
    /// Connections tried.
    pub fn attempts(&self) -> u64 {
        self.succeeded + self.failed
    }

    /// Answered connections, % of those tried (0 when none was tried).
    pub fn success_pct(&self) -> f64 {
        if self.attempts() == 0 {
            return 0.0;
        }
        100.0 * self.succeeded as f64 / self.attempts() as f64
    }

    /// The `p`-th percentile (0..=100) of the answered connections'
    /// latencies, ms (0 when none was answered).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank = ((self.latencies.len() as f64 * p / 100.0).ceil() as usize)
            .clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// How the legitimate clients open their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Clients at once (threads of the client's namespace, one address).
    pub clients: u32,
    /// New connections a second at most, all clients together (each
    /// opens its own one after another, so fewer when they are slow).
    pub per_s: u32,
    /// Time each has to connect and answer.
    pub timeout: Duration,
}

/// Opens new connections to `target` from `netns` at `pace` (each client
/// one after another), until `stop` is set or `limit` passes, whichever
/// comes first.
pub fn probe(
    netns: &str,
    target: SocketAddr,
    pace: Pace,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> anyhow::Result<Probe> {
    let clients = pace.clients.max(1);
    let gap = Duration::from_secs(clients.into()) / pace.per_s.max(1);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (netns, stop) = (netns.to_owned(), stop.clone());
            std::thread::spawn(move || {
                in_netns(&netns, move || {
                    one_client(target, gap, pace.timeout, &stop, limit)
                })
            })
        })
        .collect();
    let mut probe = Probe::default();
    for thread in threads {
        let one = thread
            .join()
            .map_err(|_| anyhow!("a client's thread panicked"))??;
        probe.succeeded += one.succeeded;
        probe.failed += one.failed;
        probe.latencies.extend(one.latencies);
        let room = 5usize.saturating_sub(probe.errors.len());
        probe.errors.extend(one.errors.into_iter().take(room));
    }
    probe.latencies.sort_unstable();
    Ok(probe)
}

/// One client of [`probe`] (in the calling thread's namespace): a new
/// connection every `gap` at most, each given `timeout`.
fn one_client(
    target: SocketAddr,
    gap: Duration,
    timeout: Duration,
    stop: &AtomicBool,
    limit: Duration,
) -> Probe {
    let started = Instant::now();
    let mut probe = Probe::default();
    let mut next = started;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = Instant::now();
        next = at + gap;
        match KeepAlive::connect_here(target, timeout).and_then(|mut c| c.request()) {
            Ok(_) => {
                probe.succeeded += 1;
                probe.latencies.push(at.elapsed());
            }
            Err(error) => {
                probe.failed += 1;
                if probe.errors.len() < 5 {
                    probe.errors.push(format!("{error:#}"));
                }
            }
        }
    }
    probe
}

/// The flood of `count` SYNs (in `limit` at most, `per_s` a second at
/// most) from the lab's client at the IPv4 VIP, addressed to the LB
/// node's MAC.
pub fn flood_of(
    lab: &Lab,
    count: u32,
    limit: Duration,
    per_s: Option<u32>,
) -> anyhow::Result<SynFlood> {
    Ok(SynFlood {
        ifname: "eth0".to_owned(),
        src_mac: mac_of(&lab.client.netns, "eth0").context("the client's MAC")?,
        dst_mac: mac_of(&lab.lb.netns, "eth0").context("the LB's MAC")?,
        vip: VIP4,
        port: HTTP_PORT,
        count,
        first: 0,
        limit,
        per_s,
    })
}

/// Gives the LB nodes and the backends a route to the spoofed sources (via
/// the client, which drops what it gets for them): as on the internet,
/// the hosts that terminate TCP answer a flood's SYNs with SYN-ACKs or SYN
/// cookies. Without a route the kernel drops such a SYN before it reaches
/// the listener's queue, and a flood would never fill it.
pub fn route_spoofed_replies(lab: &Lab) -> anyhow::Result<()> {
    let via = lab.client.ipv4.to_string();
    for host in lab.lbs.iter().chain(&lab.backends) {
        let out = std::process::Command::new("ip")
            .args(["-n", &host.netns, "route", "replace", SPOOFED, "via", &via])
            .output()
            .context("running ip")?;
        if !out.status.success() {
            anyhow::bail!(
                "route to {SPOOFED} via {via} on {}: {}",
                host.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Sends `flood` from the lab's client while the same client opens new
/// connections to the VIP at `pace`; returns once the flood is over.
pub fn flood_and_probe(
    lab: &Lab,
    flood: &SynFlood,
    pace: Pace,
) -> anyhow::Result<(FloodReport, Probe)> {
    let netns = lab.client.netns.clone();
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (netns, flood, done) = (netns.clone(), flood.clone(), done.clone());
        std::thread::spawn(move || {
            let report = in_netns(&netns, move || flood.run());
            done.store(true, Ordering::Relaxed);
            report
        })
    };
    let target = SocketAddr::new(IpAddr::V4(VIP4), HTTP_PORT);
    // The flood is bounded by its own limit; the client stops with it.
    let probed = probe(
        &netns,
        target,
        pace,
        done,
        flood.limit + Duration::from_secs(5),
    );
    let report = sender
        .join()
        .map_err(|_| anyhow!("the flood's thread panicked"))?
        .context("entering the client's namespace")?
        .context("the flood")?;
    Ok((report, probed?))
}

/// The lab tests' run: a flood at the VIP while long-lived connections
/// stay open and the client opens new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// SYNs in the flood at most.
    pub count: u32,
    /// Time to send them in at most.
    pub limit: Duration,
    /// Long-lived connections kept open through the flood.
    pub long_lived: usize,
    /// The legitimate client's new connections.
    pub pace: Pace,
}

/// What a [`Scenario`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What the flood sent.
    pub flood: FloodReport,
    /// The new connections during the flood.
    pub probe: Probe,
    /// Long-lived connections kept open.
    pub long_lived: usize,
    /// Those that broke or moved to another backend, with what happened.
    pub broken: Vec<String>,
}

impl Scenario {
    /// Runs it in `lab` (lbd started): opens the long-lived connections
    /// and has each answered, calls `before` (e.g. to read lbd's counters),
    /// sends the flood while probing, then asks every long-lived
    /// connection again (it must answer from the same backend).
    pub fn run<T>(&self, lab: &Lab, before: impl FnOnce() -> T) -> anyhow::Result<(T, Outcome)> {
        route_spoofed_replies(lab)?;
        let vip = IpAddr::V4(VIP4);
        let mut long_lived = KeepAlive::open(&lab.client.netns, vip, self.long_lived)
            .context("opening the long-lived connections")?;
        let served = long_lived
            .iter_mut()
            .map(KeepAlive::request)
            .collect::<anyhow::Result<Vec<String>>>()
            .context("a long-lived connection's first request")?;
        let seen = before();
        let flood = flood_of(lab, self.count, self.limit, None)?;
        let (report, probe) = flood_and_probe(lab, &flood, self.pace)?;
        let broken = long_lived
            .iter_mut()
            .zip(&served)
            .enumerate()
            .filter_map(|(n, (connection, first))| match connection.request() {
                Ok(answer) if &answer == first => None,
                Ok(answer) => Some(format!("{n} moved from {first} to {answer}")),
                Err(e) => Some(format!("{n} broke: {e:#}")),
            })
            .collect();
        Ok((
            seen,
            Outcome {
                flood: report,
                probe,
                long_lived: self.long_lived,
                broken,
            },
        ))
    }
}

impl Outcome {
    /// The flood's rate, SYNs a second.
    pub fn syns_per_s(&self) -> f64 {
        self.flood.sent as f64 / self.flood.elapsed.as_secs_f64().max(1e-9)
    }

    /// The report's common part: the flood, the long-lived connections,
    /// the new connections' success rate and latencies.
    pub fn summary(&self) -> String {
        let p = &self.probe;
        format!(
            "{} SYNs of spoofed sources in {:.1} s ({:.0}/s); {} of {} long-lived connections intact; new connections during the flood: {} of {} succeeded ({:.1} %), p50 {:.1} ms, p99 {:.1} ms; errors: {:?}",
            self.flood.sent,
            self.flood.elapsed.as_secs_f64(),
            self.syns_per_s(),
            self.long_lived - self.broken.len(),
            self.long_lived,
            p.succeeded,
            p.attempts(),
            p.success_pct(),
            p.percentile_ms(50.0),
            p.percentile_ms(99.0),
            p.errors
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_the_success_rate_come_from_the_connections_seen() {
        let probe = Probe {
            succeeded: 100,
            failed: 25,
            latencies: (1..=100).map(Duration::from_millis).collect(),
            errors: Vec::new(),
        };
        assert_eq!(probe.attempts(), 125);
        assert!((probe.success_pct() - 80.0).abs() < 1e-9);
        assert!((probe.percentile_ms(50.0) - 50.0).abs() < 1e-9);
        assert!((probe.percentile_ms(99.0) - 99.0).abs() < 1e-9);
        assert!((probe.percentile_ms(100.0) - 100.0).abs() < 1e-9);
        let empty = Probe::default();
        assert_eq!(empty.success_pct(), 0.0);
        assert_eq!(empty.percentile_ms(99.0), 0.0);
    }
}
