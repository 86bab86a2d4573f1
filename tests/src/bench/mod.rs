//! `cargo xtask bench`: measurements, not tests. Each benchmark runs
//! several rounds and reports the median (with min and max); results go to
//! a JSON file that BENCHMARKS.md and a plot are generated from, with the
//! machine, the command and the date. Only measured numbers appear.

pub mod bgp;
pub mod decap;
pub mod e2e;
pub mod failover;
pub mod flood;
pub mod maglev;
pub mod memory;
pub mod mode_cases;
pub mod nat;
pub mod report;
pub mod settle;
pub mod sync_mesh;
pub mod template;
pub mod tunnel;
pub mod xdp;
pub mod xdp_designs;
pub mod xdp_profile;

use serde::{Deserialize, Serialize};

/// min / median / max of a set of rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (none: all zero).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Self {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            };
        }
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Self {
            min: v[0],
            median,
            max: v[v.len() - 1],
        }
    }
}

/// Where and how the numbers were taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// When (UTC, RFC 3339).
    pub date: String,
    /// The command that produced the file.
    pub command: String,
}

impl Machine {
    /// This machine, now.
    pub fn here(command: &str) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            cpu,
            memory_gib: memory_kib / 1024.0 / 1024.0,
            date,
            command: command.to_owned(),
        }
    }
}

/// Everything one `cargo xtask bench` run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// XDP program cost per packet.
    pub xdp: Option<xdp::XdpResults>,
    /// Where a new flow's time goes, per connection-table design (perf).
    #[serde(default)]
    pub xdp_profile: Option<xdp_profile::ProfileResults>,
    /// Maglev tables.
    pub maglev: Option<maglev::MaglevResults>,
    /// lbd's memory.
    #[serde(default)]
    pub memory: Option<memory::MemoryResults>,
    /// End to end against HAProxy, nginx stream and the baselines.
    #[serde(default)]
    pub e2e: Option<e2e::E2eResults>,
    /// Control-plane reaction and VRRP failover.
    #[serde(default)]
    pub failover: Option<failover::FailoverResults>,
    /// The NAT mode's cost per packet, XDP and tc, against DSR.
    #[serde(default)]
    pub nat: Option<mode_cases::ModeResults>,
    /// End to end in the routed lab: NAT against HAProxy `mode tcp`.
    #[serde(default)]
    pub e2e_nat: Option<e2e::E2eResults>,
    /// lb-decap's cost per packet on a backend, XDP and tc.
    #[serde(default)]
    pub decap: Option<decap::DecapResults>,
    /// End to end: `ipip` and `gue` against `dsr-l2` and HAProxy.
    #[serde(default)]
    pub e2e_tunnel: Option<e2e::E2eResults>,
    /// The tunnel modes' cost per packet, XDP and tc, against DSR.
    #[serde(default)]
    pub tunnel: Option<mode_cases::ModeResults>,
    /// Active-active behind ECMP: 1, 2, 3 nodes, node loss.
    #[serde(default)]
    pub bgp: Option<bgp::BgpResults>,
    /// Full-mesh replication's cost per flow and per peer.
    #[serde(default)]
    pub sync_mesh: Option<sync_mesh::SyncMeshResults>,
    /// Legitimate clients under a SYN flood: lbd against HAProxy.
    #[serde(default)]
    pub flood: Option<flood::FloodResults>,
    /// When and on which commit each section was measured, by its `--only`
    /// name: a partial run replaces only its own sections, so the file can
    /// hold sections of several runs (compare numbers within a section).
    #[serde(default)]
    pub measured: std::collections::BTreeMap<String, SectionRun>,
}

/// The run a section's numbers come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionRun {
    /// When it finished (UTC, RFC 3339).
    pub date: String,
    /// The commit measured (`git describe --always --dirty`: `-dirty` if
    /// the tree had changes).
    pub commit: String,
}

impl SectionRun {
    /// This run, on the checked-out tree.
    pub fn now(date: &str) -> Self {
        let commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            date: date.to_owned(),
            commit,
        }
    }
}
