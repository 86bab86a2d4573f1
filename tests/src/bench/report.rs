//! BENCHMARKS.md and a plot, regenerated from the results file: only what
//! was measured, with the machine, the command and the date.

use std::fmt::Write as _;

use super::Results;

/// Targets from the developers' guide, for the XDP cases that have one.
fn xdp_target(name: &str, prefill: u64) -> Option<f64> {
    if prefill > 0 {
        return None;
    }
    match name {
        "TCP SYN v4, new flow" => Some(144.0),
        "TCP SYN v6, new flow" => Some(150.0),
        "TCP ACK v4, tracked flow" => Some(64.0),
        "TCP ACK v6, tracked flow" => Some(57.0),
        "non-VIP packet" => Some(26.0),
        _ => None,
    }
}

/// The Markdown report.
pub fn markdown(results: &Results, plot: Option<&str>) -> String {
    let m = &results.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated from `bench/results.json` by `{}` on {}.\n\nMachine: {} cores ({}), {:.1} GiB, Linux {}.\n",
        m.command, m.date, m.cores, m.cpu, m.memory_gib, m.kernel
    );
    let _ = writeln!(out, "Every number below was measured in that run; each is the median of several rounds (min and max beside it).\n");
    if let Some(xdp) = &results.xdp {
        let _ = writeln!(out, "## XDP program, ns per packet (BPF_PROG_TEST_RUN)\n");
        let _ = writeln!(
            out,
            "Through `xdp_bench`, which restores the original packet and tail-calls the program under test on every run; each case checks with the program's counters that every run took the named path. New-flow cases change the source address on every run, so each run inserts into the connection table (LRU, {} entries).\n",
            xdp.conntrack_capacity
        );
        let _ = writeln!(
            out,
            "| case | path measured | flows in table at start | min | median | max | target | runs |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for c in &xdp.cases {
            let target = xdp_target(&c.name, c.conntrack_prefill)
                .map_or("–".to_owned(), |t| format!("≤ {t:.0}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | **{:.1}** | {:.1} | {} | {} × {} |",
                c.name,
                c.path,
                c.conntrack_prefill,
                c.ns_per_packet.min,
                c.ns_per_packet.median,
                c.ns_per_packet.max,
                target,
                c.rounds,
                c.repeat
            );
        }
        let _ = writeln!(
            out,
            "\nThe wrapper floor (restore + tail call) is included in every other row.\n"
        );
        if let Some(plot) = plot {
            let _ = writeln!(out, "![ns per packet by case]({plot})\n");
        }
    }
    if let Some(maglev) = &results.maglev {
        let _ = writeln!(out, "## Maglev tables\n");
        let _ = writeln!(out, "| backends N | table M | build (ms) min / median / max | heap per build | table | imbalance (max/mean) | moved on removal | × 1/N | moved on addition |");
        let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        for c in &maglev.cases {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} / **{:.3}** / {:.3} | {} KiB | {} KiB | {:.3} | {:.4} | {:.2} | {:.4} |",
                c.backends,
                c.table_size,
                c.build_ms.min,
                c.build_ms.median,
                c.build_ms.max,
                c.build_heap_bytes / 1024,
                c.table_bytes / 1024,
                c.imbalance,
                c.moved_on_removal,
                c.moved_on_removal / c.ideal,
                c.moved_on_addition
            );
        }
        let _ = writeln!(out, "\nTargets: 1,000 backends at M = 65,537 built in ≤ 1.5 ms; flows moved on one removal ≤ 1.1 × 1/N.\n");
    }
    if let Some(memory) = &results.memory {
        let _ = writeln!(out, "## lbd memory\n");
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
    }
    let _ = writeln!(
        out,
        "## Not measured yet\n\nEnd-to-end throughput against HAProxy and nginx `stream`, control-plane reaction and VRRP failover times (lbd and keepalived side by side), lbd's memory with 1 M tracked flows, and the comparison of connection-table map designs: no numbers until `cargo xtask bench` measures them.\n"
    );
    out
}

/// A bar chart (SVG) of the XDP cases' median ns per packet.
pub fn xdp_svg(results: &Results) -> Option<String> {
    let xdp = results.xdp.as_ref()?;
    let cases: Vec<_> = xdp.cases.iter().collect();
    let max = cases
        .iter()
        .map(|c| c.ns_per_packet.max)
        .fold(1.0f64, f64::max);
    let (row, left, width) = (26.0, 330.0, 420.0);
    let height = row * cases.len() as f64 + 50.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">XDP program: median ns per packet (bars), max (tick), {} cores, Linux {}</text>\n",
        left + width + 80.0,
        results.machine.cores,
        results.machine.kernel
    );
    for (i, c) in cases.iter().enumerate() {
        let y = 35.0 + i as f64 * row;
        let w = c.ns_per_packet.median / max * width;
        let tick = left + c.ns_per_packet.max / max * width;
        let label = if c.conntrack_prefill > 0 {
            format!("{} ({}M flows)", c.name, c.conntrack_prefill / 1_000_000)
        } else {
            c.name.clone()
        };
        let _ = write!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n<rect x=\"{left}\" y=\"{:.0}\" width=\"{w:.1}\" height=\"{:.0}\" fill=\"#4a7ebb\"/>\n<line x1=\"{tick:.1}\" x2=\"{tick:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.0}\">{:.1}</text>\n",
            left - 8.0,
            y + 14.0,
            label.replace('&', "&amp;"),
            y + 2.0,
            row - 8.0,
            y + 2.0,
            y + row - 6.0,
            left + w + 6.0,
            y + 14.0,
            c.ns_per_packet.median
        );
    }
    svg.push_str("</svg>\n");
    Some(svg)
}
