//! What a pgbench run printed, read into typed numbers: the summary on
//! stdout and the progress lines on stderr.

use anyhow::anyhow;

/// One progress line (`-P`): seconds since the start, and the interval's
/// transactions per second and failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Transactions per second in the interval.
    pub tps: f64,
    /// Failed transactions in the interval (pgbench 15 prints them).
    pub failed: u64,
}

/// What a pgbench run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// "number of transactions actually processed".
    pub processed: u64,
    /// What it says was asked for (`-t` runs print `processed/asked`).
    pub asked: Option<u64>,
    /// "number of failed transactions" (pgbench 15 and later; 0 before).
    pub failed: u64,
    /// Transactions per second (without the initial connection time).
    pub tps: f64,
    /// The progress lines, when asked for.
    pub progress: Vec<Progress>,
}

/// The number right after `key` in `text` (up to the first non-digit).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix(key))?;
    let digits: String = line
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Parses pgbench's summary (stdout) and progress lines (stderr).
pub fn parse_report(stdout: &str, stderr: &str) -> anyhow::Result<Report> {
    const PROCESSED: &str = "number of transactions actually processed:";
    let processed = number_after(stdout, PROCESSED)
        .ok_or_else(|| anyhow!("no `{PROCESSED}` line in pgbench's output:\n{stdout}"))?;
    let asked = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(PROCESSED))
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_, asked)| asked.trim().parse().ok());
    let failed = number_after(stdout, "number of failed transactions:").unwrap_or(0);
    let tps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no `tps = ` line in pgbench's output:\n{stdout}"))?;
    let progress = stderr.lines().filter_map(parse_progress).collect();
    Ok(Report {
        processed,
        asked,
        failed,
        tps,
        progress,
    })
}

/// `progress: 2.0 s, 812.0 tps, lat 4.9 ms stddev 1.2, 0 failed`.
fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.trim().strip_prefix("progress:")?;
    let mut parts = rest.split(',').map(str::trim);
    let at_s = parts.next()?.strip_suffix(" s")?.parse().ok()?;
    let tps = parts.next()?.strip_suffix(" tps")?.parse().ok()?;
    let failed = parts
        .find_map(|p| p.strip_suffix(" failed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some(Progress { at_s, tps, failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pgbench 15.18 (Debian) printed for `-c4 -T2 -P1` in the lab.
    const TIMED_STDOUT: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: simple
number of clients: 4
number of threads: 1
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 851
number of failed transactions: 0 (0.000%)
latency average = 9.389 ms
latency stddev = 6.321 ms
initial connection time = 1.288 ms
tps = 423.925118 (without initial connection time)
";
    const TIMED_STDERR: &str = "progress: 1.0 s, 482.7 tps, lat 8.150 ms stddev 5.940, 0 failed
progress: 2.0 s, 363.9 tps, lat 11.041 ms stddev 6.468, 0 failed
";

    #[test]
    fn a_timed_run_with_progress_is_read_whole() {
        let report = parse_report(TIMED_STDOUT, TIMED_STDERR).expect("report");
        assert_eq!(
            report,
            Report {
                processed: 851,
                asked: None,
                failed: 0,
                tps: 423.925118,
                progress: vec![
                    Progress {
                        at_s: 1.0,
                        tps: 482.7,
                        failed: 0
                    },
                    Progress {
                        at_s: 2.0,
                        tps: 363.9,
                        failed: 0
                    },
                ],
            }
        );
    }

    #[test]
    fn a_counted_run_reports_what_was_asked_and_failures() {
        let stdout = TIMED_STDOUT
            .replace(
                "duration: 2 s\n",
                "number of transactions per client: 100\n",
            )
            .replace("processed: 851", "processed: 397/400")
            .replace(
                "failed transactions: 0 (0.000%)",
                "failed transactions: 3 (0.750%)",
            );
        let stderr = "progress: 1.0 s, 10.0 tps, lat 8.1 ms stddev 5.9, 3 failed\n";
        let report = parse_report(&stdout, stderr).expect("report");
        assert_eq!((report.processed, report.asked), (397, Some(400)));
        assert_eq!(report.failed, 3);
        assert_eq!(report.progress[0].failed, 3);
    }

    #[test]
    fn output_without_the_summary_is_an_error_not_zeroes() {
        let cut = TIMED_STDOUT.replace("number of transactions actually processed: 851\n", "");
        assert!(parse_report(&cut, "").is_err());
        let cut = TIMED_STDOUT.replace("tps = 423.925118 (without initial connection time)\n", "");
        assert!(parse_report(&cut, "").is_err());
        assert!(parse_report("", "").is_err());
    }
}
