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
pub mod maglev_writes;
pub mod memory;
pub mod mode_cases;
pub mod nat;
pub mod report;
pub mod settle;
pub mod sync_mesh;
pub(crate) mod tables;
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
    /// The hardware and kernel (not the date or the command): what tells
    /// one machine from another in the report.
    pub fn host(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB, Linux {}",
            self.cores, self.cpu, self.memory_gib, self.kernel
        )
    }

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
    /// The machine and command of the run that wrote the file last (each
    /// section's own run, machine included, is in `measured`).
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionRun {
    /// When it finished (UTC, RFC 3339).
    pub date: String,
    /// The commit measured, described before the binaries were built
    /// (`git describe --always --dirty`: `-dirty` if tracked files had
    /// changes; `+untracked` if untracked files were there, see
    /// `provenance`).
    pub commit: String,
    /// The machine the run measured on, and its command line (None in
    /// results from before it was recorded per section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
    /// The machine had not quieted down when the section started
    /// (`settle::settle` gave up waiting): its numbers may carry another
    /// load's noise. False in older results, which did not record it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
}

impl SectionRun {
    /// A section of the run on `machine` (its date: the run's end) of the
    /// tree described as `commit`; `busy` as `settle` found the machine.
    pub fn of(machine: &Machine, commit: &str, busy: bool) -> Self {
        Self {
            date: machine.date.clone(),
            commit: commit.to_owned(),
            machine: Some(machine.clone()),
            busy,
        }
    }
}

/// The checked-out tree as `SectionRun::commit` records it (`git
/// describe --always --dirty`, `+untracked` when `git status` lists
/// untracked files); "unknown" outside a git work tree. `cargo xtask
/// bench` describes the tree before it builds and passes that on
/// (`LB_BENCH_COMMIT`); this is the runner's fallback when run alone,
/// called before it measures anything.
pub fn describe_tree() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    match git(&["describe", "--always", "--dirty"]) {
        Some(describe) => provenance(
            describe.trim(),
            &git(&["status", "--porcelain"]).unwrap_or_default(),
        ),
        None => "unknown".to_owned(),
    }
}

/// `describe` (`git describe --always --dirty`), marked `+untracked`
/// when `porcelain` (`git status --porcelain`) lists untracked files
/// (`??`), which `--dirty` does not see.
pub fn provenance(describe: &str, porcelain: &str) -> String {
    if porcelain.lines().any(|l| l.starts_with("??")) {
        format!("{describe}+untracked")
    } else {
        describe.to_owned()
    }
}

/// The results file at `path` as a partial run (`--only`) finds it: none
/// when there is no file yet; any other failure to read or parse it is
/// an error naming the file (a partial run writes every section it did
/// not measure back from this, so an unreadable file must stop it before
/// it measures, not lose the other sections).
pub fn read_previous(path: &std::path::Path) -> anyhow::Result<Option<Results>> {
    parse_previous(path, std::fs::read_to_string(path))
}

/// `read_previous` on what reading `path` gave.
fn parse_previous(
    path: &std::path::Path,
    read: std::io::Result<String>,
) -> anyhow::Result<Option<Results>> {
    let text = match read {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => anyhow::bail!("reading {}: {error}", path.display()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| anyhow::anyhow!("parsing {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untracked_files_mark_the_description() {
        assert_eq!(provenance("330ecce", ""), "330ecce");
        assert_eq!(
            provenance("330ecce-dirty", " M src/a.rs\n"),
            "330ecce-dirty"
        );
        assert_eq!(
            provenance("330ecce-dirty", " M src/a.rs\n?? notes.txt\n"),
            "330ecce-dirty+untracked"
        );
        assert_eq!(provenance("330ecce", "?? x\n"), "330ecce+untracked");
    }

    #[test]
    fn a_missing_results_file_is_empty_and_a_broken_one_stops_the_run() {
        let path = std::path::Path::new("bench/results.json");
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(parse_previous(path, Err(missing))
            .expect("missing")
            .is_none());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let error = parse_previous(path, Err(denied)).expect_err("unreadable");
        assert!(
            error.to_string().contains("reading bench/results.json"),
            "{error}"
        );
        let error = parse_previous(path, Ok("{\"machine\": 3}".to_owned())).expect_err("broken");
        let text = error.to_string();
        assert!(text.contains("parsing bench/results.json"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
    }
}
