//! lbd's resident memory with 10 VIPs × 100 backends, the BPF maps' kernel
//! memory reported apart. lbd maps its bucket tables (the connection
//! table, the half-open table, the VIP index) into its address space to
//! read and write them in place, so its VmRSS also counts the pages of
//! those kernel maps it has touched (as RssFile): lbd's own memory is its
//! private anonymous memory (RssAnon), the target's measure.

use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::lab::Lab;

/// What lbd used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryResults {
    /// VIPs configured.
    pub vips: u32,
    /// Backends per VIP.
    pub backends_per_vip: u32,
    /// Connection-table capacity configured.
    pub conntrack_capacity: u32,
    /// lbd's resident set (VmRSS), MiB, median of the samples.
    pub rss_mib: f64,
    /// Peak resident set (VmHWM), MiB.
    pub rss_peak_mib: f64,
    /// Kernel memory of the maps lbd holds (fdinfo `memlock`), MiB.
    pub bpf_maps_mib: f64,
    /// Flows put in the connection table for the second measurement.
    #[serde(default)]
    pub tracked_flows: u32,
    /// lbd's resident set with them, after a status request and a metrics
    /// scrape walked the table, MiB.
    #[serde(default)]
    pub rss_with_flows_mib: f64,
    /// Kernel memory of the maps then, MiB.
    #[serde(default)]
    pub bpf_maps_with_flows_mib: f64,
    /// lbd's own memory (RssAnon: heap, stacks), MiB, median of the
    /// samples (0 in older results, which only had VmRSS).
    #[serde(default)]
    pub own_mib: f64,
    /// The most of it any sample saw, MiB.
    #[serde(default)]
    pub own_max_mib: f64,
    /// Pages of the mapped BPF tables in lbd's VmRSS (RssFile + RssShmem),
    /// MiB: kernel memory, counted in `bpf_maps_mib` too.
    #[serde(default)]
    pub mapped_mib: f64,
    /// lbd's own memory with the flows in the table, MiB.
    #[serde(default)]
    pub own_with_flows_mib: f64,
}

fn status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn bpf_map_bytes(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Starts lbd in a one-node lab with `vips` × `backends` (MACs given,
/// checks off, so nothing but lbd's own state counts) and samples it.
pub fn run(vips: u32, backends: u32, flows: u32) -> anyhow::Result<MemoryResults> {
    let mut lab = Lab::start(1).context("lab")?;
    let conntrack = (flows + flows / 2).next_power_of_two().max(262_144);
    let mut config = format!(
        "interface = \"eth0\"\nconntrack_size = {conntrack}\nadmin_socket = \"{}\"\nmetrics_listen = \"off\"\n",
        lab.admin_socket().display()
    );
    for v in 0..vips {
        config.push_str(&format!(
            "\n[[vip]]\naddress = \"198.18.1.{}\"\nport = 80\n[vip.health]\ncheck = \"none\"\n",
            v + 1
        ));
        for b in 0..backends {
            // 198.19.0.0/16 (benchmarking range): configured, never sent to.
            config.push_str(&format!(
                "  [[vip.backend]]\n  address = \"198.19.{}.{}\"\n  mac = \"02:00:00:00:{:02x}:{:02x}\"\n",
                v,
                b + 1,
                v,
                b + 1
            ));
        }
    }
    let pid = lab.start_lbd(&config).context("lbd")?;
    std::thread::sleep(Duration::from_secs(2));
    let mut samples = Vec::new();
    let mut own = Vec::new();
    let mut mapped = Vec::new();
    for _ in 0..5 {
        samples.push(status_kib(pid, "VmRSS:") / 1024.0);
        own.push(status_kib(pid, "RssAnon:") / 1024.0);
        mapped.push((status_kib(pid, "RssFile:") + status_kib(pid, "RssShmem:")) / 1024.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_mib = super::Spread::of(&samples).median;
    let own_spread = super::Spread::of(&own);
    let rss_peak_mib = status_kib(pid, "VmHWM:") / 1024.0;
    let bpf_maps_mib = bpf_map_bytes(pid) as f64 / 1024.0 / 1024.0;

    // The same lbd with `flows` tracked flows (inserted from here into the
    // bucket table it runs, through the table's own protocol), after a
    // status request and a scrape have walked them all.
    let map = crate::lbd_maps::open_map(pid, lb_common::consts::names::MAP_FLOW_BUCKETS)?;
    let buckets = lb_common::flow_table::buckets_for(conntrack);
    let table = lb_userspace::conntrack::table::FlowTable::new(
        map,
        buckets,
        lb_userspace::conntrack::table::Placement::ByTableHash,
    )?;
    for i in 0..flows {
        let key = lb_common::FlowKey {
            src: [
                u32::from_ne_bytes([198, 19, (i >> 8) as u8, i as u8]),
                0,
                0,
                0,
            ],
            dst: [u32::from_ne_bytes([198, 18, 1, 1]), 0, 0, 0],
            sport: ((i >> 16) as u16 + 1024).to_be(),
            dport: 80u16.to_be(),
            proto: 6,
            family: 4,
            _pad: 0,
        };
        let entry = lb_common::FlowEntry {
            backend_id: 1,
            backend_generation: 1,
            ..Default::default()
        };
        table.install(&key, &entry)?;
    }
    drop(table);
    let status = lab.lbctl(&["status", "--json"])?;
    if !status.status.success() {
        anyhow::bail!("lbctl status: {}", String::from_utf8_lossy(&status.stderr));
    }
    let _ = lab.lbctl(&["status"])?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_with_flows_mib = status_kib(pid, "VmRSS:") / 1024.0;
    let own_with_flows_mib = status_kib(pid, "RssAnon:") / 1024.0;
    let bpf_maps_with_flows_mib = bpf_map_bytes(pid) as f64 / 1024.0 / 1024.0;
    let results = MemoryResults {
        vips,
        backends_per_vip: backends,
        conntrack_capacity: conntrack,
        rss_mib,
        rss_peak_mib,
        bpf_maps_mib,
        tracked_flows: flows,
        rss_with_flows_mib,
        bpf_maps_with_flows_mib,
        own_mib: own_spread.median,
        own_max_mib: own_spread.max,
        mapped_mib: super::Spread::of(&mapped).median,
        own_with_flows_mib,
    };
    eprintln!(
        "bench: lbd with {vips} VIPs x {backends} backends: own {:.1} MiB (max {:.1}), mapped tables {:.1} MiB, VmRSS {:.1} MiB (peak {:.1}), BPF maps {:.1} MiB; with {flows} flows: own {:.1} MiB, VmRSS {:.1} MiB",
        results.own_mib,
        results.own_max_mib,
        results.mapped_mib,
        results.rss_mib,
        results.rss_peak_mib,
        results.bpf_maps_mib,
        results.own_with_flows_mib,
        results.rss_with_flows_mib
    );
    Ok(results)
}
