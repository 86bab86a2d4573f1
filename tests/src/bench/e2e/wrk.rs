//! The client side of a run: wrk in the client's namespace, and the
//! lab's settings for a new connection per request.

use std::process::Command;

use anyhow::{anyhow, bail, Context as _};

use crate::lab::Lab;

fn parse_ms(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WrkRun {
    /// Requests per second.
    pub(crate) rps: f64,
    /// Median latency, ms (0 when wrk printed none).
    pub(crate) p50_ms: f64,
    /// 99th percentile, ms (0 when wrk printed none).
    pub(crate) p99_ms: f64,
    /// Socket errors wrk counted: connect, read, write and timeout
    /// (`Socket errors:`), summed.
    pub(crate) socket_errors: u64,
    /// Answers neither 2xx nor 3xx (`Non-2xx or 3xx responses:`).
    pub(crate) non_2xx: u64,
}

/// wrk's output (`--latency`) read: fails without `Requests/sec`.
pub(crate) fn parse_wrk(text: &str) -> anyhow::Result<WrkRun> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output:\n{text}"))?;
    let percentile = |p: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p).map(str::trim).and_then(parse_ms))
            .unwrap_or(0.0)
    };
    let line = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    // "Socket errors: connect 0, read 12, write 0, timeout 3"
    let socket_errors = match line("Socket errors:") {
        Some(rest) => rest
            .split(',')
            .map(|kind| {
                kind.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| anyhow!("unreadable socket errors in wrk's output: {rest:?}"))
            })
            .sum::<anyhow::Result<u64>>()?,
        None => 0,
    };
    let non_2xx = match line("Non-2xx or 3xx responses:") {
        Some(n) => n
            .parse()
            .map_err(|_| anyhow!("unreadable non-2xx count in wrk's output: {n:?}"))?,
        None => 0,
    };
    Ok(WrkRun {
        rps,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
        socket_errors,
        non_2xx,
    })
}

/// Runs wrk from the lab's client against `url` (`close`: a new
/// connection per request).
pub(crate) fn wrk(
    lab: &Lab,
    url: &str,
    close: bool,
    seconds: u32,
    threads: u32,
    connections: u32,
) -> anyhow::Result<WrkRun> {
    let mut args = vec![
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
        "--timeout".to_owned(),
        "2s".to_owned(),
    ];
    if close {
        args.push("-H".to_owned());
        args.push("Connection: close".to_owned());
    }
    args.push(url.to_owned());
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.client.netns, "wrk"])
        .args(&args)
        .output()
        .context("running wrk (Debian package wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let run = parse_wrk(&text)?;
    if run.socket_errors > 0 || run.non_2xx > 0 {
        eprintln!("bench: wrk reported errors for {url}:\n{text}");
    }
    Ok(run)
}

/// A new connection per request at tens of thousands a second leaves
/// TIME_WAIT sockets behind on whichever side closes; without these the
/// lab, not the systems, sets the pace after the first runs.
pub(crate) fn tune_for_new_connections(lab: &Lab) -> anyhow::Result<()> {
    let sysctl = |netns: &str, setting: &str| {
        Command::new("ip")
            .args(["netns", "exec", netns, "sysctl", "-qw", setting])
            .status()
    };
    sysctl(&lab.client.netns, "net.ipv4.ip_local_port_range=1024 65000")?;
    sysctl(&lab.client.netns, "net.ipv4.tcp_tw_reuse=1")?;
    for host in lab.backends.iter().chain(&lab.lbs) {
        sysctl(&host.netns, "net.ipv4.tcp_max_tw_buckets=4096")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 3s test @ http://198.18.0.100/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms    2.10ms  40.12ms   93.10%
    Req/Sec    11.02k     1.20k   13.50k    70.00%
  Latency Distribution
     50%    1.10ms
     75%    1.60ms
     90%    2.40ms
     99%   12.30ms
  66120 requests in 3.00s, 10.53MB read
  Socket errors: connect 0, read 12, write 1, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:  22035.41
Transfer/sec:      3.51MB
";

    #[test]
    fn wrks_errors_are_read_with_its_rates() {
        let run = parse_wrk(OUTPUT).expect("parses");
        assert_eq!(
            run,
            WrkRun {
                rps: 22035.41,
                p50_ms: 1.1,
                p99_ms: 12.3,
                socket_errors: 16,
                non_2xx: 5,
            }
        );
        let clean: String = OUTPUT
            .lines()
            .filter(|l| !l.contains("errors") && !l.contains("Non-2xx"))
            .map(|l| format!("{l}\n"))
            .collect();
        let run = parse_wrk(&clean).expect("parses");
        assert_eq!((run.socket_errors, run.non_2xx), (0, 0));
        assert!(parse_wrk("no rate here").is_err());
        let garbled = OUTPUT.replace("read 12", "read many");
        assert!(parse_wrk(&garbled).is_err());
    }
}
