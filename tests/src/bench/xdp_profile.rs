//! Where a new flow's time goes, per connection-table design: `perf
//! record` samples CPU 0 (cpu-clock, with call chains) while the runner,
//! pinned there, runs the new-flow case through `xdp_bench`; the samples
//! taken inside BPF_PROG_TEST_RUN are split by the function they landed
//! in (the JIT-ed programs by name, `bpf_prog_<tag>_<name>`, as
//! `net.core.bpf_jit_kallsyms` lists them, and the kernel helpers they
//! call). When perf is missing or cannot sample here, the section says
//! why instead of showing numbers.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use lb_userspace::conntrack::kind::ConntrackKind;
use serde::{Deserialize, Serialize};

use super::{
    xdp::{ack_frame, cases, pin_to_cpu, Bench, COMPARED, CONNTRACK, NEW_V4},
    Spread,
};

/// The profiles of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileResults {
    /// The perf command (it samples while the runner loops on CPU 0).
    pub command: String,
    /// One profile per design.
    pub designs: Vec<DesignProfile>,
    /// Why there are no profiles, when perf could not take them.
    pub error: Option<String>,
}

/// The new-flow case's samples on one design.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesignProfile {
    /// The design (`ConntrackKind::label`).
    pub design: String,
    /// The case profiled.
    pub case: String,
    /// Table capacity.
    pub capacity: u32,
    /// Other flows in the table.
    #[serde(default)]
    pub prefill: u64,
    /// ns per packet over the profiled rounds (perf running).
    pub ns_per_packet: Spread,
    /// Samples inside BPF_PROG_TEST_RUN.
    pub samples: u64,
    /// Functions by share of those samples, largest first (the rest in
    /// one "other" row).
    pub rows: Vec<ProfileRow>,
}

/// One function's share of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    /// The function (JIT-ed programs as `<name> (BPF)`).
    pub symbol: String,
    /// Share of the samples, %.
    pub share_pct: f64,
    /// That share of the median ns per packet.
    pub ns: f64,
}

/// Sampling frequency, Hz.
const FREQUENCY: u32 = 10_000;
/// How long each design's case runs under perf.
const SAMPLE_FOR: Duration = Duration::from_secs(4);
/// Rows kept per profile before "other".
const TOP: usize = 12;
/// Runs per round (each round starts from an empty table).
const REPEAT: u32 = 200_000;

/// The perf command line for `data` (CPU 0, cpu-clock, call chains).
fn perf_args(data: &Path) -> Vec<String> {
    [
        "record",
        "-e",
        "cpu-clock",
        "-F",
        &FREQUENCY.to_string(),
        "-C",
        "0",
        "-g",
        "-o",
        &data.to_string_lossy(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Profiles each `Scenario` on each `COMPARED` design.
pub fn run() -> anyhow::Result<ProfileResults> {
    std::thread::spawn(|| {
        pin_to_cpu(0)?;
        run_pinned()
    })
    .join()
    .map_err(|_| anyhow!("the profile thread panicked"))?
}

fn run_pinned() -> anyhow::Result<ProfileResults> {
    let data = std::env::temp_dir().join(format!("lb-bench-perf-{}.data", std::process::id()));
    let command = format!(
        "perf {} (while the runner, pinned to CPU 0, loops over the case's rounds for {} s); perf script -F ip,sym",
        perf_args(Path::new("perf.data")).join(" "),
        SAMPLE_FOR.as_secs()
    );
    let mut designs = Vec::new();
    for (scenario, kind) in Scenario::ALL
        .into_iter()
        .flat_map(|s| COMPARED.map(|k| (s, k)))
    {
        match profile(kind, scenario, &data) {
            Ok(p) => designs.push(p),
            Err(e) => {
                let _ = std::fs::remove_file(&data);
                eprintln!("bench: no profile: {e:#}");
                return Ok(ProfileResults {
                    command,
                    designs,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    let _ = std::fs::remove_file(&data);
    Ok(ProfileResults {
        command,
        designs,
        error: None,
    })
}

/// Stops perf on drop (SIGINT: it writes its file and exits).
struct Recorder(Child);

impl Recorder {
    fn start(data: &Path) -> anyhow::Result<Self> {
        let kallsyms = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_kallsyms")
            .context("reading net.core.bpf_jit_kallsyms")?;
        if kallsyms.trim() != "1" {
            bail!("net.core.bpf_jit_kallsyms is {}: JIT-ed programs have no symbols for perf (set it to 1)", kallsyms.trim());
        }
        // perf keeps an existing file as `<file>.old`: none to keep.
        let _ = std::fs::remove_file(data);
        let mut child = Command::new("perf")
            .args(perf_args(data))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context(
                "starting perf (Debian package linux-perf; `cargo xtask setup` installs it)",
            )?;
        // perf needs a moment to open its events; an early exit is a refusal.
        std::thread::sleep(Duration::from_millis(500));
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read as _;
                let _ = stderr.read_to_string(&mut err);
            }
            bail!("perf record exited at once ({status}): {}", err.trim());
        }
        Ok(Self(child))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.interrupt();
        let out = self.0.wait().context("waiting for perf")?;
        // perf record handles SIGINT: it writes its file, then ends by
        // raising the signal again (or exits 0).
        use std::os::unix::process::ExitStatusExt as _;
        if !out.success() && out.signal() != Some(libc::SIGINT) {
            bail!("perf record ended with {out}");
        }
        Ok(())
    }

    fn interrupt(&mut self) {
        // SAFETY: signals the child we started, by its id.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.interrupt();
            let _ = self.0.wait();
        }
    }
}

/// What a profile runs on CPU 0 while perf samples.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// New v4 flows into an empty table of lbd's default size (rounds of
    /// `REPEAT`, each from an empty table).
    NewFlow,
    /// ACKs of `ACK_FLOWS` flows whose first ACKs went in before perf
    /// started, round after round, in an 8 M-entry table holding 1 M
    /// other flows: a
    /// tracked flow whose entry is not in the caches, as the ACK half of
    /// the connection case's prefilled row.
    ColdAck,
}

/// Flows the `ColdAck` rounds walk.
const ACK_FLOWS: u32 = 100_000;
/// The `ColdAck` table and its other flows.
const COLD_TABLE: u32 = 8 * 1024 * 1024;
const COLD_PREFILL: u32 = 1_000_000;

impl Scenario {
    const ALL: [Scenario; 2] = [Scenario::NewFlow, Scenario::ColdAck];

    fn describe(self) -> &'static str {
        match self {
            // A SYN goes to the half-open table in every design: the
            // designs' own insert is a flow's first ACK.
            Self::NewFlow => "TCP first ACK v4, new flow (connection-table insert)",
            Self::ColdAck => {
                "TCP ACK v4 over 100000 distinct tracked flows in turn (entries not cached)"
            }
        }
    }
}

fn profile(kind: ConntrackKind, scenario: Scenario, data: &Path) -> anyhow::Result<DesignProfile> {
    eprintln!(
        "bench: profiling {} on {} with perf",
        scenario.describe(),
        kind.label()
    );
    let case = cases()
        .into_iter()
        .find(|c| c.name == NEW_V4)
        .ok_or_else(|| anyhow!("no case {NEW_V4}"))?
        .into_first_ack();
    let (capacity, prefill) = match scenario {
        Scenario::NewFlow => (CONNTRACK, 0),
        Scenario::ColdAck => (COLD_TABLE, COLD_PREFILL),
    };
    let mut bench = Bench::new(capacity, kind)?;
    bench.prefill(prefill)?;
    bench.prepare(case.target, &case.frame, case.vary_offset)?;
    bench.measure(&case.frame, 1000, 1, case.action, true)?;
    let ack = ack_frame();
    if let Scenario::ColdAck = scenario {
        bench.set_runs(0)?;
        bench.measure(&case.frame, ACK_FLOWS, 1, case.action, false)?;
        bench.prepare(case.target, &ack, case.vary_offset)?;
    }
    let recorder = Recorder::start(data)?;
    let started = Instant::now();
    let mut ns = Vec::new();
    while started.elapsed() < SAMPLE_FOR {
        let round = match scenario {
            Scenario::NewFlow => bench.measure(&case.frame, REPEAT, 1, case.action, true)?,
            Scenario::ColdAck => {
                bench.set_runs(0)?;
                bench.measure(&ack, ACK_FLOWS, 1, case.action, false)?
            }
        };
        ns.extend(round);
    }
    recorder.stop()?;
    let ns_per_packet = Spread::of(&ns);
    let (samples, by_symbol) = samples_in_test_run(data)?;
    if samples == 0 {
        bail!("perf recorded no samples inside BPF_PROG_TEST_RUN on CPU 0");
    }
    let rows = top_rows(&by_symbol, samples, ns_per_packet.median);
    eprintln!(
        "bench: {} samples in the test run, {:.1} ns per packet; top: {}",
        samples,
        ns_per_packet.median,
        rows.iter()
            .take(4)
            .map(|r| format!("{} {:.0} %", r.symbol, r.share_pct))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(DesignProfile {
        design: kind.label().to_owned(),
        case: scenario.describe().to_owned(),
        capacity,
        prefill: u64::from(prefill),
        ns_per_packet,
        samples,
        rows,
    })
}

/// Samples whose call chain passes through BPF_PROG_TEST_RUN, counted by
/// the function they landed in.
fn samples_in_test_run(data: &Path) -> anyhow::Result<(u64, BTreeMap<String, u64>)> {
    let out = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(data)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("running perf script")?;
    if !out.status.success() {
        bail!("perf script: {}", out.status);
    }
    Ok(count_samples(&String::from_utf8_lossy(&out.stdout)))
}

/// `perf script -F ip,sym` output (one block of frames per sample, leaf
/// first, blocks apart by blank lines) → samples in the test run by leaf.
pub fn count_samples(script: &str) -> (u64, BTreeMap<String, u64>) {
    let mut by_symbol = BTreeMap::new();
    let mut total = 0;
    for block in script.split("\n\n") {
        let frames: Vec<&str> = block
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        let in_test_run = frames
            .iter()
            .any(|f| f.starts_with("bpf_prog_test_run") || f.starts_with("bpf_test_run"));
        if let (true, Some(leaf)) = (in_test_run, frames.first()) {
            total += 1;
            *by_symbol.entry(symbol_name(leaf)).or_insert(0) += 1;
        }
    }
    (total, by_symbol)
}

/// A JIT-ed program's symbol `bpf_prog_<16 hex tag>_<name>` as
/// `<name> (BPF)`; a subprogram the kernel lists without a name (`F`) as
/// `F <tag> (BPF)`, its tag (a hash of its
/// code) telling subprograms apart; anything else as it is.
fn symbol_name(sym: &str) -> String {
    sym.strip_prefix("bpf_prog_")
        .and_then(|rest| {
            let (tag, name) = rest.split_at_checked(16)?;
            let name = name.strip_prefix('_')?;
            tag.bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| match name {
                    "F" => format!("F {} (BPF)", &tag[..8]),
                    "" => format!("{tag} (BPF)"),
                    _ => format!("{name} (BPF)"),
                })
        })
        .unwrap_or_else(|| sym.to_owned())
}

fn top_rows(by_symbol: &BTreeMap<String, u64>, total: u64, ns: f64) -> Vec<ProfileRow> {
    let mut sorted: Vec<(&String, &u64)> = by_symbol.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let row = |symbol: String, count: u64| {
        let share = count as f64 / total as f64;
        ProfileRow {
            symbol,
            share_pct: share * 100.0,
            ns: share * ns,
        }
    };
    let mut rows: Vec<ProfileRow> = sorted
        .iter()
        .take(TOP)
        .map(|(s, c)| row((*s).clone(), **c))
        .collect();
    let rest: u64 = sorted.iter().skip(TOP).map(|(_, c)| **c).sum();
    if rest > 0 {
        rows.push(row("other".to_owned(), rest));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_samples_in_the_test_run_count_by_leaf() {
        let script = "\n\tffffffffa0001234 bpf_prog_0123456789abcdef_xdp_lb\n\tffffffff81000001 bpf_test_run\n\tffffffff81000002 bpf_prog_test_run_xdp\n\n\n\tffffffff81000003 htab_lru_map_update_elem\n\tffffffffa0001234 bpf_prog_0123456789abcdef_xdp_lb\n\tffffffff81000002 bpf_prog_test_run_xdp\n\n\n\tffffffff81000004 pv_native_safe_halt\n\tffffffff81000005 do_idle\n";
        let (total, by) = count_samples(script);
        assert_eq!(total, 2);
        assert_eq!(by.get("xdp_lb (BPF)"), Some(&1));
        assert_eq!(by.get("htab_lru_map_update_elem"), Some(&1));
        assert_eq!(by.get("pv_native_safe_halt"), None);
    }

    #[test]
    fn unnamed_subprograms_keep_their_tag() {
        assert_eq!(
            symbol_name("bpf_prog_0123456789abcdef_F"),
            "F 01234567 (BPF)"
        );
        assert_eq!(
            symbol_name("bpf_prog_0123456789abcdef_xdp_lb"),
            "xdp_lb (BPF)"
        );
        assert_eq!(
            symbol_name("bpf_prog_run_pin_on_cpu"),
            "bpf_prog_run_pin_on_cpu"
        );
    }

    #[test]
    fn rows_keep_the_top_and_sum_the_rest() {
        let by: BTreeMap<String, u64> = (0..20).map(|i| (format!("f{i:02}"), 20 - i)).collect();
        let total: u64 = by.values().sum();
        let rows = top_rows(&by, total, 100.0);
        assert_eq!(rows.len(), TOP + 1);
        assert_eq!(rows[0].symbol, "f00");
        let shares: f64 = rows.iter().map(|r| r.share_pct).sum();
        assert!((shares - 100.0).abs() < 1e-9);
    }
}
