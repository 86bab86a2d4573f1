//! lbd's own memory beside the kernel maps' pages it maps.

use std::fmt::Write as _;

/// lbd's memory: its own (the target's measure) apart from the kernel
/// maps' pages it maps.
pub(super) fn section(out: &mut String, memory: &crate::bench::memory::MemoryResults) {
    let _ = writeln!(out, "## lbd memory\n");
    if memory.own_mib == 0.0 {
        // Older results: VmRSS only.
        let _ = writeln!(out, "| VIPs × backends | connection table | lbd RSS (median) | RSS peak | BPF maps (kernel, apart) | target |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} × {} | {} flows | **{:.1} MiB** | {:.1} MiB | {:.1} MiB | RSS ≤ 30 MB |\n",
            memory.vips,
            memory.backends_per_vip,
            memory.conntrack_capacity,
            memory.rss_mib,
            memory.rss_peak_mib,
            memory.bpf_maps_mib
        );
        return;
    }
    let _ = writeln!(
        out,
        "lbd with the VIPs and backends below (checks off, so nothing but lbd's own state counts). lbd maps its bucket tables (connection table, half-open table, VIP index) into its address space to read and write them in place, so its VmRSS also counts the pages of those kernel maps it has touched (RssFile): that memory is the kernel's, counted in the BPF maps column. lbd's own memory is its private anonymous memory (RssAnon, median of 5 samples, the largest beside it), the target's measure. \"With flows\": after {} flows were put into its connection table and a status request walked them.\n",
        memory.tracked_flows
    );
    let _ = writeln!(out, "| VIPs × backends | connection table | lbd's own memory (RssAnon) | with flows | mapped BPF tables (RssFile) | VmRSS (both; peak) | BPF maps (kernel) | target | |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    // 30 MB as the target says (10^6 bytes).
    let target_mib = 30e6 / 1024.0 / 1024.0;
    let worst = memory.own_max_mib.max(memory.own_with_flows_mib);
    let _ = writeln!(
        out,
        "| {} × {} | {} flows | **{:.1} MiB** (max {:.1}) | {:.1} MiB | {:.1} MiB | {:.1} MiB; {:.1} MiB | {:.1} MiB | own ≤ 30 MB | {} |\n",
        memory.vips,
        memory.backends_per_vip,
        memory.conntrack_capacity,
        memory.own_mib,
        memory.own_max_mib,
        memory.own_with_flows_mib,
        memory.mapped_mib,
        memory.rss_mib,
        memory.rss_peak_mib,
        memory.bpf_maps_mib,
        if worst <= target_mib { "met" } else { "**not met**" }
    );
}
