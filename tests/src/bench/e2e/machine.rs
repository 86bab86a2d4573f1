//! What a run costs the machine and what it lost, read around each wrk
//! run: CPU time (the whole machine's, the softirq threads', a proxy's),
//! TCP retransmissions in the lab's namespaces (client, LB nodes,
//! backends), lbd's drops.

use std::{fs, process::Command};

use anyhow::{anyhow, Context as _};

use super::Running;
use crate::lab::Lab;

/// CPU jiffies: (total, idle+iowait, softirq).
pub(crate) fn cpu() -> (u64, u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    (fields.iter().sum(), get(3) + get(4), get(6))
}

/// The pids of the kernel's `ksoftirqd/N` threads (none where `/proc`
/// shows another pid namespace: the column then reads 0).
pub(super) fn ksoftirqd_pids() -> Vec<u32> {
    ksoftirqd_pids_in(std::path::Path::new("/proc"))
}

pub(super) fn ksoftirqd_pids_in(proc: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(proc.join(pid.to_string()).join("comm"))
                .is_ok_and(|comm| comm.starts_with("ksoftirqd/"))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// The TCP segments the lab's client, LB nodes and backends have
/// retransmitted so far (`TcpRetransSegs` of their namespaces, summed):
/// the full proxies (HAProxy, nginx stream) terminate TCP on the LB
/// nodes, so their side of a loss is counted there.
pub(super) fn retransmitted(lab: &Lab) -> anyhow::Result<u64> {
    let mut total = 0;
    for host in std::iter::once(&lab.client)
        .chain(&lab.lbs)
        .chain(&lab.backends)
    {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.netns,
                "nstat",
                "-asz",
                "TcpRetransSegs",
            ])
            .output()
            .context("running nstat (Debian package iproute2)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("TcpRetransSegs"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "no TcpRetransSegs in nstat's output for {}:\n{text}",
                    host.name
                )
            })?;
        total += value;
    }
    Ok(total)
}

/// The packets the lbd of `running` has dropped so far (its `drop_*`
/// verdict counters, summed over CPUs and reasons); 0 for any other
/// system.
pub(super) fn lb_drops(lab: &Lab, running: &Running) -> anyhow::Result<u64> {
    let Running::Process(name, _) = running else {
        return Ok(0);
    };
    if !name.starts_with("lbd") {
        return Ok(0);
    }
    // The socket `start_named` configured.
    let status = crate::lab::status_at(&lab.dir.join(name).join("lbd.sock"))?;
    Ok(status
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("drop_"))
        .map(|(_, value)| value)
        .sum())
}

/// utime + stime of `pids` and their threads, in clock ticks.
pub(super) fn process_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let f: Vec<u64> = after
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // utime, stime, cutime, cstime are fields 14-17 (1-based).
            f.get(10).copied().unwrap_or(0)
                + f.get(11).copied().unwrap_or(0)
                + f.get(12).copied().unwrap_or(0)
                + f.get(13).copied().unwrap_or(0)
        })
        .sum()
}
