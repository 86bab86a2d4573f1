//! Waiting for a quiet machine between benchmark sections. What one
//! section leaves behind is torn down by the kernel asynchronously (network
//! namespaces, BPF maps of millions of entries, exiting nginx workers), on
//! the same two cores the next section measures: a per-packet section
//! started right after the lab benchmarks read 113 ns for a path that
//! measures 73 ns on a quiet machine. Every section starts once the CPUs
//! have been mostly idle for a moment.

use std::time::{Duration, Instant};

/// Idle share of all CPUs over one sample that counts as quiet.
const QUIET_IDLE: f64 = 0.9;
/// One sample.
const SAMPLE: Duration = Duration::from_millis(500);
/// Quiet samples in a row needed.
const QUIET_SAMPLES: u32 = 2;
/// Longest wait; the section then starts anyway, and says so.
const LIMIT: Duration = Duration::from_secs(60);

/// Busy and total jiffies of all CPUs (the `cpu` line of /proc/stat).
fn jiffies() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    let total: u64 = values.iter().take(8).sum();
    Some((total - idle, total))
}

/// What `settle` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// How long it waited.
    pub took: Duration,
    /// Whether the machine quieted down (false: it gave up after
    /// `LIMIT`, and the section starts on a busy machine; the results
    /// record that, `SectionRun::busy`).
    pub quiet: bool,
}

/// Waits until the machine has been quiet for a moment (at most a
/// minute); says how long that took and whether it got there.
pub fn settle(before: &str) -> Settled {
    let start = Instant::now();
    let mut quiet = 0;
    let Some(mut last) = jiffies() else {
        // No /proc/stat: nothing to tell a busy machine by.
        return Settled {
            took: Duration::ZERO,
            quiet: true,
        };
    };
    while quiet < QUIET_SAMPLES && start.elapsed() < LIMIT {
        std::thread::sleep(SAMPLE);
        let Some(now) = jiffies() else {
            return Settled {
                took: start.elapsed(),
                quiet: true,
            };
        };
        let (busy, total) = (now.0 - last.0, now.1 - last.1);
        last = now;
        let idle = if total == 0 {
            1.0
        } else {
            1.0 - busy as f64 / total as f64
        };
        quiet = if idle >= QUIET_IDLE { quiet + 1 } else { 0 };
    }
    let took = start.elapsed();
    let quiet = quiet >= QUIET_SAMPLES;
    if !quiet {
        eprintln!(
            "bench: the machine did not quiet down within {LIMIT:?}; starting {before} anyway (recorded as busy)"
        );
    } else if took > SAMPLE * (QUIET_SAMPLES + 1) {
        eprintln!(
            "bench: waited {:.1} s for a quiet machine before {before}",
            took.as_secs_f64()
        );
    }
    Settled { took, quiet }
}
