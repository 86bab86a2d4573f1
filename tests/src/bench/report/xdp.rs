//! The XDP cases' table and their plot.

use std::fmt::Write as _;

use crate::bench::{xdp::XdpResults, Results};

/// The first wave's absolute targets (ns, set on the AMD EPYC VM the
/// project ran on then), for the XDP cases that had one. Today's targets
/// compare the two connection-table designs in one run and are judged in
/// the comparison table (`conntrack::comparison`).
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

/// The XDP cases, both designs side by side, with the first wave's
/// targets and the plot (`plot`: its path from the report).
pub(super) fn section(out: &mut String, xdp: &XdpResults, plot: Option<&str>) {
    let _ = writeln!(out, "## XDP program, ns per packet (BPF_PROG_TEST_RUN)\n");
    let _ = writeln!(
        out,
        "Through `xdp_bench`, which restores the original packet and tail-calls the program under test on every run; each case checks with the program's counters that every run took the named path. Every case runs on the bucket connection table (`{}`, lbd's default since issue 16) and on the shared LRU (the default before it), the two objects loaded side by side and measured case by case. New-flow cases change the source address on every run, so each run inserts a new flow ({} entries, lbd's default size; every case starts from empty tables, and each new-flow round from an empty connection table and half-open table). A new flow's SYN rows run each round in batches of {} SYNs, the half-open table emptied before each batch (and, in the empty pass, the connection table too; not timed), so that no SYN takes the place of a half-open flow (checked with the eviction counters, which allow the half-open table's kernel LRU hash its rare evictions before it is full, at most one run in 1,000, logged: the SYN-flood-mode row alone evicts as it means to). The prefilled rows use a table of {} entries holding the number of flows shown at each case's start (the table emptied and filled again before each case), and their rounds do not empty the connection table; their wrapper floor row is measured on those same objects. The program under test runs on CPU 0 (the runner pins itself there). The target column holds the first wave's absolute targets (ns, for the bucket table's rows), set on the AMD EPYC VM the project ran on then and shown for reference; today's targets compare the two designs in one run and are judged in the comparison table below.\n",
        lb_userspace::conntrack::kind::ConntrackKind::Buckets.label(),
        xdp.conntrack_capacity,
        crate::bench::xdp::SYN_BATCH,
        xdp.prefill_capacity
    );
    let _ = writeln!(
        out,
        "| case | path measured | connection table | flows in table at start | min | median | max | first-wave target | runs |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|");
    for c in &xdp.cases {
        let target = xdp_target(&c.name, c.conntrack_prefill)
            .filter(|_| c.design == lb_userspace::conntrack::kind::ConntrackKind::Buckets.label())
            .map_or("–".to_owned(), |t| format!("≤ {t:.0}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | **{:.1}** | {:.1} | {} | {} × {} |",
            c.name,
            c.path,
            c.design,
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
        "\nThe wrapper floor (restore + tail call) is included in every other row. The new-flow rows move a lot from one run to the next on this VM{}: a new flow's cost is mostly cache misses in the connection table's memory, so it follows the state of this VM's caches and memory; compare rows of one run, and see the table-size sweep below.\n",
        widest_new_flow_spread(xdp)
            .map(|spread| format!(", and from round to round within one ({spread})"))
            .unwrap_or_default()
    );
    if xdp
        .cases
        .iter()
        .any(|c| c.name == crate::bench::xdp::NEW_V4_SYN_FLOOD)
    {
        let _ = writeln!(
            out,
            "The SYN-flood-mode row (`{}`) runs with the data plane's flood flag on: its SYNs go to the half-open table alone, not into the connection table, whose rounds it does not empty (the run checks its flow count unchanged).\n",
            crate::bench::xdp::NEW_V4_SYN_FLOOD
        );
    }
    if let Some(plot) = plot {
        let _ = writeln!(out, "![ns per packet by case]({plot})\n");
    }
}

/// The new-flow row of this run whose rounds differed the most (slowest
/// over fastest), told from the results: its name, design (and flows in
/// the table at start) and fastest and slowest round; None without
/// new-flow rows.
fn widest_new_flow_spread(xdp: &XdpResults) -> Option<String> {
    let widest = xdp
        .cases
        .iter()
        .filter(|c| c.name.contains("new flow") && c.ns_per_packet.min > 0.0)
        .max_by(|a, b| {
            let ratio = |c: &crate::bench::xdp::XdpCase| c.ns_per_packet.max / c.ns_per_packet.min;
            ratio(a).total_cmp(&ratio(b))
        })?;
    let prefill = if widest.conntrack_prefill > 0 {
        format!(", {} flows in the table", widest.conntrack_prefill)
    } else {
        String::new()
    };
    Some(format!(
        "this run's widest: `{}`, {}{prefill}, {:.0} to {:.0} ns",
        widest.name, widest.design, widest.ns_per_packet.min, widest.ns_per_packet.max
    ))
}

/// ", N M flows" for a prefilled case's bar label, else nothing.
fn flows_label(c: &crate::bench::xdp::XdpCase) -> String {
    if c.conntrack_prefill > 0 {
        format!(", {}M flows", c.conntrack_prefill / 1_000_000)
    } else {
        String::new()
    }
}

/// ", ns per connection" for a row measured per connection (its two
/// packets), else nothing (ns per packet, as the title says).
fn unit_label(c: &crate::bench::xdp::XdpCase) -> &'static str {
    if c.name == crate::bench::xdp::CONNECTION_V4 {
        ", ns per connection"
    } else {
        ""
    }
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
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">XDP program: median ns per packet (per connection for the connection rows) (bars), max (tick), {} cores, Linux {}</text>\n",
        left + width + 80.0,
        results.machine.cores,
        results.machine.kernel
    );
    for (i, c) in cases.iter().enumerate() {
        let y = 35.0 + i as f64 * row;
        let w = c.ns_per_packet.median / max * width;
        let tick = left + c.ns_per_packet.max / max * width;
        let design = if c.design == lb_userspace::conntrack::kind::ConntrackKind::Buckets.label() {
            "buckets"
        } else {
            c.design.as_str()
        };
        let label = format!("{} ({design}{}{})", c.name, flows_label(c), unit_label(c));
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
