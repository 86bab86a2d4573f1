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

/// Runs wrk from the lab's client against `url` (`close`: a new
/// connection per request): (requests/s, p50 ms, p99 ms).
pub(crate) fn wrk(
    lab: &Lab,
    url: &str,
    close: bool,
    seconds: u32,
    threads: u32,
    connections: u32,
) -> anyhow::Result<(f64, f64, f64)> {
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
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("bench: wrk reported errors for {url}:\n{text}");
    }
    Ok((rps, percentile("50%"), percentile("99%")))
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
