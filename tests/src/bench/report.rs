//! BENCHMARKS.md and a plot, regenerated from the results file: only what
//! was measured, with the machine, the command and the date.

use std::fmt::Write as _;

use super::{
    e2e::{Mode, System},
    Results,
};

/// The first wave's absolute targets (ns, set on the AMD EPYC VM the
/// project ran on then), for the XDP cases that had one. Today's targets
/// compare the two connection-table designs in one run and are judged in
/// the comparison table (`report_conntrack::comparison`).
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

/// Which run each section comes from (a partial run, `--only`, replaces
/// only its own sections).
fn measured(out: &mut String, results: &Results) {
    if results.measured.is_empty() {
        let _ = writeln!(out, "Every number below was measured in that run; each is the median of several rounds (min and max beside it).\n");
        return;
    }
    let _ = writeln!(out, "Each section's numbers come from one run of `cargo xtask bench` (a run with `--only` replaces only its own sections), listed here; each number is the median of several rounds (min and max beside it). Compare numbers within a section.\n");
    let _ = writeln!(
        out,
        "| section (`--only` name) | measured (UTC, run's end) | commit |"
    );
    let _ = writeln!(out, "|---|---|---|");
    for (name, run) in &results.measured {
        let _ = writeln!(out, "| {name} | {} | `{}` |", run.date, run.commit);
    }
    let _ = writeln!(out);
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
    measured(&mut out, results);
    if let Some(xdp) = &results.xdp {
        let _ = writeln!(out, "## XDP program, ns per packet (BPF_PROG_TEST_RUN)\n");
        let _ = writeln!(
            out,
            "Through `xdp_bench`, which restores the original packet and tail-calls the program under test on every run; each case checks with the program's counters that every run took the named path. Every case runs on the bucket connection table (`{}`, lbd's default since issue 16) and on the shared LRU (the default before it), the two objects loaded side by side and measured case by case. New-flow cases change the source address on every run, so each run inserts into the connection table ({} entries, lbd's default size; each round starts from an empty table). The prefilled rows use a table of {} entries holding the number of flows shown, and their rounds do not empty it. The program under test runs on CPU 0 (the runner pins itself there). The target column holds the first wave's absolute targets (ns, for the bucket table's rows), set on the AMD EPYC VM the project ran on then and shown for reference; today's targets compare the two designs in one run and are judged in the comparison table below.\n",
            lb_userspace::conntrack::kind::ConntrackKind::Buckets.label(),
            xdp.conntrack_capacity,
            xdp.prefill_capacity
        );
        let _ = writeln!(
            out,
            "| case | path measured | connection table | flows in table at start | min | median | max | first-wave target | runs |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|");
        for c in &xdp.cases {
            let target = xdp_target(&c.name, c.conntrack_prefill)
                .filter(|_| {
                    c.design == lb_userspace::conntrack::kind::ConntrackKind::Buckets.label()
                })
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
            "\nThe wrapper floor (restore + tail call) is included in every other row. The new-flow rows move a lot from one run to the next on this VM (the same case has given medians from about 150 to over 400 ns in quiet runs): a new flow's cost is mostly cache misses in the connection table's memory, so it follows the state of this VM's caches and memory; compare rows of one run, and see the table-size sweep below.\n"
        );
        if let Some(plot) = plot {
            let _ = writeln!(out, "![ns per packet by case]({plot})\n");
        }
        super::report_guard::section(&mut out, xdp);
        super::report_conntrack::comparison(&mut out, xdp);
        super::report_conntrack::designs(&mut out, xdp);
        super::report_conntrack::by_capacity(&mut out, xdp);
    }
    if let Some(profile) = &results.xdp_profile {
        super::report_conntrack::profile(&mut out, profile);
    }
    if results.xdp.is_some() {
        super::report_conntrack::guarantees(&mut out);
    }
    if let Some(nat) = &results.nat {
        nat_section(&mut out, nat);
    }
    if let Some(decap) = &results.decap {
        super::decap::markdown(&mut out, decap);
    }
    if let Some(tunnel) = &results.tunnel {
        tunnel_section(&mut out, tunnel);
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
        let _ = writeln!(out, "\nWith `maglev_mode = \"minimal\"`, a change updates the table in service instead of rebuilding it (only the slots that must move move; the table then depends on the history of changes, not only on the set):\n");
        let _ = writeln!(out, "| backends N | table M | update (ms) min / median / max | imbalance after | moved on removal | × 1/N | moved on addition | × 1/(N+1) |");
        let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|");
        for c in maglev.cases.iter().filter(|c| c.update_ms.is_some()) {
            let update = c.update_ms.unwrap_or(c.build_ms);
            let ideal_add = 1.0 / (f64::from(c.backends) + 1.0);
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} / **{:.3}** / {:.3} | {:.3} | {:.4} | **{:.2}** | {:.4} | {:.2} |",
                c.backends,
                c.table_size,
                update.min,
                update.median,
                update.max,
                c.imbalance_minimal,
                c.moved_on_removal_minimal,
                c.moved_on_removal_minimal / c.ideal,
                c.moved_on_addition_minimal,
                c.moved_on_addition_minimal / ideal_add
            );
        }
        let _ = writeln!(out, "\nTargets: 1,000 backends at M = 65,537 built in ≤ 1.5 ms; flows moved on one removal ≤ 1.1 × 1/N. The default (`consistent`) keeps every table a pure function of the backend set, so two nodes with the same backends agree on every slot whatever happened before (a failover moves no untracked flow); none of the pure-function constructions we tried with Maglev's balance comes close to 1/N at N = 1,000. `minimal` meets the target; its tables drift apart between nodes that saw different sequences of changes, which only matters for flows the connection table does not hold.\n");
    }
    if let Some(e2e) = &results.e2e {
        let _ = writeln!(out, "## End to end in the namespace lab\n");
        let _ = writeln!(
            out,
            "Client → {{system}} → three nginx backends on one bridged segment (all namespaces on this one machine, so client, load balancer and backends share its {} cores). wrk, {} threads, {} connections, {} s per run, {} rounds interleaved system by system; medians. `direct` goes to one backend only; `xdp-forward` is a bare MAC-rewrite + XDP_TX forwarder spreading by source port over the same backends; HAProxy 2.6 `mode tcp` and nginx `stream` are full proxies on the LB node. CPU: the whole machine's busy share during the run (softirq is where XDP and the kernel's network path run). {KSOFTIRQD_NOTE} Proxy CPU: CPU-seconds per second of the proxy's own processes. For the new-connection runs the lab's hosts reuse ports (`tcp_tw_reuse` on the client, a small TIME_WAIT table on the servers), as busy load generators do. {LOSS_NOTE}\n",
            results.machine.cores, e2e.threads, e2e.connections, e2e.seconds, e2e.rounds
        );
        for mode in Mode::ALL {
            let _ = writeln!(out, "### {mode}\n");
            let _ = writeln!(out, "| system | requests/s (min / median / max) | p50 ms | p99 ms | machine busy % | {KSOFTIRQD_HEAD} | softirq % | proxy CPU | {LOSS_HEAD} |");
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
            for c in e2e.cases.iter().filter(|c| c.mode == mode) {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} / **{:.0}** / {:.0} | {:.2} | {:.2} | {:.0} | {} | {:.0} | {:.2} | {} |",
                    c.system,
                    c.rps.min,
                    c.rps.median,
                    c.rps.max,
                    c.p50_ms.median,
                    c.p99_ms.median,
                    c.cpu_busy_pct.median,
                    ksoftirqd_cell(c),
                    c.softirq_pct.median,
                    c.proxy_cpu.median,
                    loss_cell(c)
                );
            }
            let ratio = |other: System| {
                e2e.ratio(System::Lbd, other, mode)
                    .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
            };
            // The developers' guide: end to end at least the bare XDP
            // forwarder measured in the same run.
            let verdict = if e2e
                .ratio(System::Lbd, System::XdpForward, mode)
                .is_some_and(|r| r >= 1.0)
            {
                "met"
            } else {
                "**not met**"
            };
            let _ = writeln!(
                out,
                "\nRatios are the median of the rounds' ratios (each round ran every system in turn). lbd vs HAProxy: **{}** (target ≥ {}), vs nginx stream: {}, vs the bare XDP forwarder: **{}** (target ≥ 1.0×: {verdict}), vs direct to one backend: {}.\n",
                ratio(System::Haproxy),
                if mode == Mode::KeepAlive {
                    "2×"
                } else {
                    "1.7×"
                },
                ratio(System::NginxStream),
                ratio(System::XdpForward),
                ratio(System::Direct)
            );
        }
    }
    if let Some(e2e) = &results.e2e_nat {
        e2e_nat_section(&mut out, e2e);
    }
    if let Some(e2e) = &results.e2e_tunnel {
        e2e_tunnel_section(&mut out, e2e);
    }
    if let Some(flood) = &results.flood {
        super::flood::markdown(&mut out, flood);
    }
    if let Some(f) = &results.failover {
        let _ = writeln!(out, "## Control-plane reaction and VRRP failover\n");
        let _ = writeln!(
            out,
            "A backend's nginx stopped until lbd's status shows it out of the table ({}): **{:.0} ms** median (min {:.0}, max {:.0}).\n",
            f.check_settings, f.backend_out_ms.median, f.backend_out_ms.min, f.backend_out_ms.max
        );
        let _ = writeln!(out, "VRRP: every process of the master node killed (SIGKILL) until the backup (priority 100) holds the VIP; the same lab for both systems, rounds interleaved.\n");
        let _ = writeln!(
            out,
            "| system | advert interval | master-down interval (RFC) | gap min / median / max |"
        );
        let _ = writeln!(out, "|---|---:|---:|---|");
        for g in &f.vrrp {
            let _ = writeln!(
                out,
                "| {} | {} ms | {:.0} ms | {:.0} / **{:.0}** / {:.0} ms |",
                g.system,
                g.advert_interval_ms,
                g.master_down_ms,
                g.gap_ms.min,
                g.gap_ms.median,
                g.gap_ms.max
            );
        }
        let _ = writeln!(out, "\nTarget: takeover ≤ master-down interval + 20 ms.\n");
    }
    if let Some(bgp) = &results.bgp {
        bgp_section(&mut out, bgp, results.failover.as_ref());
    }
    if let Some(mesh) = &results.sync_mesh {
        sync_mesh_section(&mut out, mesh);
    }
    if let Some(memory) = &results.memory {
        memory_section(&mut out, memory);
    }
    out
}

/// lbd's memory: its own (the target's measure) apart from the kernel
/// maps' pages it maps.
fn memory_section(out: &mut String, memory: &super::memory::MemoryResults) {
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

/// Active-active behind ECMP: 1, 2, 3 nodes and node loss beside the
/// VRRP pair's gap (when the failover section was measured).
fn bgp_section(
    out: &mut String,
    bgp: &super::bgp::BgpResults,
    failover: Option<&super::failover::FailoverResults>,
) {
    let _ = writeln!(out, "## Active-active with BGP (ECMP)\n");
    let _ = writeln!(
        out,
        "The BGP lab: a router running BIRD merges the nodes' announcements into one ECMP route (flows hashed by L4 ports); each node runs lbd (`dsr-l2`) and its own BIRD; 3 nginx backends. wrk, {} connections, a new connection per request, {} s per run, {} rounds, nodes not counted drained (`lbctl node drain`). The whole lab shares this machine's {} cores, so more nodes cannot show more requests/s here: the router, the client and the backends are the limit, and the nodes' CPU per request is the number that carries over to real hosts.\n",
        bgp.connections, bgp.seconds, bgp.rounds, bgp.cores
    );
    let _ = writeln!(
        out,
        "| active nodes | requests/s min / median / max | machine busy | machine CPU per request | nodes' XDP time per request |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|");
    for a in &bgp.active {
        let _ = writeln!(
            out,
            "| {} | {:.0} / **{:.0}** / {:.0} | {:.0} % | {:.0} µs | {:.0} ns |",
            a.nodes,
            a.rps.min,
            a.rps.median,
            a.rps.max,
            a.cpu_busy_pct.median,
            a.machine_us_per_request.median,
            a.xdp_ns_per_request.median
        );
    }
    let _ = writeln!(
        out,
        "\nNode loss ({}): from the event until the router's kernel route no longer has the node; beside it the VRRP pair's gap (master killed until the backup holds the VIP).\n",
        bgp.timers
    );
    let _ = writeln!(out, "| event | gap min / median / max |");
    let _ = writeln!(out, "|---|---|");
    for l in &bgp.loss {
        let _ = writeln!(
            out,
            "| BGP: {} | {:.0} / **{:.0}** / {:.0} ms |",
            l.event, l.gap_ms.min, l.gap_ms.median, l.gap_ms.max
        );
    }
    for g in failover.map(|f| f.vrrp.as_slice()).unwrap_or_default() {
        if g.system == "lbd" {
            let _ = writeln!(
                out,
                "| VRRP (lbd pair, {} ms adverts): master killed | {:.0} / **{:.0}** / {:.0} ms |",
                g.advert_interval_ms, g.gap_ms.min, g.gap_ms.median, g.gap_ms.max
            );
        }
    }
    let _ = writeln!(out);
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
        let design = if c.design == lb_userspace::conntrack::kind::ConntrackKind::Buckets.label() {
            "buckets"
        } else {
            c.design.as_str()
        };
        let label = if c.conntrack_prefill > 0 {
            format!(
                "{} ({design}, {}M flows)",
                c.name,
                c.conntrack_prefill / 1_000_000
            )
        } else {
            format!("{} ({design})", c.name)
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

/// NAT mode against HAProxy in the routed lab, with the target's ratio.
fn e2e_nat_section(out: &mut String, e2e: &super::e2e::E2eResults) {
    let _ = writeln!(
        out,
        "## End to end, routed unmodified backends: NAT mode vs HAProxy\n"
    );
    let _ = writeln!(
        out,
        "Client → router → {{system}} on the LB node → router → three unmodified nginx backends on port 8080 (no VIP on `lo`, no sysctls): the fair comparison, as both serve backends that know nothing of the load balancer. lbd runs `forwarding = \"nat\"` at XDP (`lbd-nat`) and at tc (`lbd-nat-tc`); HAProxy 2.6 `mode tcp`. wrk, {} threads, {} connections, {} s per run, {} rounds interleaved; medians. `direct` goes to one backend through both routers.\n",
        e2e.threads, e2e.connections, e2e.seconds, e2e.rounds
    );
    e2e_mode_table(out, e2e, false);
    let _ = writeln!(out);
    for mode in Mode::ALL {
        for (system, hook) in [(System::LbdNat, "XDP"), (System::LbdNatTc, "tc")] {
            if let Some(ratio) = e2e.ratio(system, System::Haproxy, mode) {
                let _ = writeln!(
                    out,
                    "- {mode}, NAT at {hook} / HAProxy = **{ratio:.2}×** (median of the rounds' ratios; target ≥ 1.5×: {}).",
                    if ratio >= 1.5 { "met" } else { "not met" }
                );
            }
        }
        // For scale: the client, the routers and the backends share the
        // machine's cores with whatever runs on the LB node.
        if let Some(direct) = e2e.ratio(System::Direct, System::Haproxy, mode) {
            let nat = e2e
                .ratio(System::LbdNat, System::Direct, mode)
                .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                out,
                "- {mode}, for scale: direct / HAProxy = {direct:.2}× (no load balancer, one backend; the client, the routers and the backends share the machine's cores with whatever runs on the LB node); NAT at XDP / direct = {nat}."
            );
        }
    }
    let _ = writeln!(out);
}

/// One row per (mode, system) of an end-to-end run; `softirq` adds the
/// machine's softirq share.
fn e2e_mode_table(out: &mut String, e2e: &super::e2e::E2eResults, softirq: bool) {
    let (head, rule) = if softirq {
        (" softirq % |", "---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "| mode | system | requests/s (min / median / max) | p50 ms | p99 ms | machine busy % | {KSOFTIRQD_HEAD} |{head} proxy CPU | {LOSS_HEAD} |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|{rule}---:|---:|");
    for c in &e2e.cases {
        let irq = if softirq {
            format!(" {:.0} |", c.softirq_pct.median)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} / **{:.0}** / {:.0} | {:.2} | {:.2} | {:.0} | {} |{irq} {:.2} | {} |",
            c.mode,
            c.system,
            c.rps.min,
            c.rps.median,
            c.rps.max,
            c.p50_ms.median,
            c.p99_ms.median,
            c.cpu_busy_pct.median,
            ksoftirqd_cell(c),
            c.proxy_cpu.median,
            loss_cell(c)
        );
    }
    let _ = writeln!(out, "\n{LOSS_NOTE} {KSOFTIRQD_NOTE}");
}

/// The end-to-end tables' column for deferred softirq work.
const KSOFTIRQD_HEAD: &str = "ksoftirqd %";

/// What that column shows.
const KSOFTIRQD_NOTE: &str = "ksoftirqd: the share of the machine's CPU its per-CPU softirq threads ran (median of the rounds), part of softirq: receive work the kernel deferred because it had run too long inline. That work stays on its CPU (a veth's receive runs where it was scheduled and stays there while it has work), so a high share beside idle time means the path waited on one CPU while the other had nothing to do.";

/// The median share ksoftirqd ran (`–` in results from before it was
/// measured).
fn ksoftirqd_cell(case: &super::e2e::E2eCase) -> String {
    case.ksoftirqd_pct
        .map_or_else(|| "–".to_owned(), |s| format!("{:.0}", s.median))
}

/// The end-to-end tables' loss column: what `loss_cell` shows.
const LOSS_HEAD: &str = "dropped by lbd / retransmitted (all rounds)";
/// What that column counts.
const LOSS_NOTE: &str = "Loss, summed over the rounds: packets lbd's data plane dropped (its `drop_*` verdict counters; the other systems have none) and TCP segments the client and the backends retransmitted (`TcpRetransSegs` of their namespaces: any system's loss, wherever it happened).";

/// An end-to-end case's loss over all its rounds (`–` in results from
/// before it was measured).
fn loss_cell(case: &super::e2e::E2eCase) -> String {
    case.total_loss().map_or_else(
        || "–".to_owned(),
        |loss| format!("{} / {}", loss.lb_drops, loss.retransmits),
    )
}

/// The tunnelled modes against `dsr-l2` and HAProxy, same lab, same run.
fn e2e_tunnel_section(out: &mut String, e2e: &super::e2e::E2eResults) {
    let _ = writeln!(
        out,
        "## End to end, tunnelled DSR: ipip and gue vs dsr-l2 and HAProxy\n"
    );
    let _ = writeln!(
        out,
        "Client → {{system}} on the LB node → three nginx backends on the LB's segment (the only place `dsr-l2` reaches, so every system crosses the same links and only the forwarding differs). The backends hold the VIP on `lo` and run `lb-decap` at XDP throughout (the `dsr-l2` and HAProxy rows pay its pass-through check too). lbd at XDP: `lbd` is `dsr-l2` (MAC rewrite), `lbd-ipip` and `lbd-gue` encapsulate (outer sources from a /24, GUE on port {}); HAProxy 2.6 `mode tcp` proxies. wrk, {} threads, {} connections, {} s per run, {} rounds interleaved system by system; medians. `direct` goes to one backend.\n",
        crate::tunnel::GUE_PORT,
        e2e.threads,
        e2e.connections,
        e2e.seconds,
        e2e.rounds
    );
    e2e_mode_table(out, e2e, true);
    let _ = writeln!(out);
    for mode in Mode::ALL {
        for system in [System::LbdIpip, System::LbdGue] {
            if let (Some(dsr), Some(haproxy)) = (
                e2e.ratio(system, System::Lbd, mode),
                e2e.ratio(system, System::Haproxy, mode),
            ) {
                let _ = writeln!(
                    out,
                    "- {mode}, {system}: **{dsr:.2}×** dsr-l2, **{haproxy:.2}×** HAProxy (medians of the rounds' ratios).",
                );
            }
        }
    }
    let _ = writeln!(out);
}

/// The per-case table of a section measured at both hooks (NAT, tunnel,
/// decap): hook, case, min / median / max ns per packet, runs; then a
/// blank line.
pub(super) fn hook_case_table<'a>(
    out: &mut String,
    cases: impl Iterator<Item = (&'a str, &'a str, &'a super::Spread, u32, u32)>,
) {
    let _ = writeln!(out, "| hook | case | min | median | max | runs |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for (hook, name, ns, rounds, repeat) in cases {
        let _ = writeln!(
            out,
            "| {hook} | {name} | {:.1} | **{:.1}** | {:.1} | {rounds} × {repeat} |",
            ns.min, ns.median, ns.max
        );
    }
    let _ = writeln!(out);
}

/// NAT against DSR, per hook, with the target's ratio.
fn nat_section(out: &mut String, nat: &super::nat::NatResults) {
    use super::nat::{
        DSR_TRACKED, NAT_NEW, NAT_NEW_VARIED_PORTS, NAT_REPLY, NAT_TRACKED, NAT_TRACKED_HASHED,
    };
    let _ = writeln!(
        out,
        "## NAT mode, ns per packet (BPF_PROG_TEST_RUN, XDP and tc)\n"
    );
    let _ = writeln!(
        out,
        "The real object, filled by the real control plane with a DSR VIP and a NAT VIP (three routed backends on port 8080), run through the restoring wrappers (`xdp_bench`, `tc_bench`, so the wrapper's floor is in every row) from a thread inside a network namespace with routes and neighbours, as the FIB lookups need; each case checks with the program's counters that every run took the named path. The NAT tracked and reply rows use the flow's cached next hop; the tracked flow's source port is its checksum-neutral one (client port + VIP port = NAT port + backend port, one's complement: the ports' rewrite leaves the TCP checksum as it is, so at tc one checksum helper call instead of two), which a new flow gets whenever that port is free and in range; the *hashed port* row is a flow of a second NAT VIP whose range leaves that port out; the new-flow row changes the client address on every run (backend pick, source-port allocation, two exclusive inserts into the NAT bucket table, FIB lookup), each round from an empty table; its client port stays the same, so once a backend has a flow every later one finds its neutral port taken and pays that try before the hashed search (the worst case). The *varied client ports* row also gives every run a client port spread over 1024–65535 as clients' ephemeral ports are (one more 2-byte store in the wrapper), so the neutral port is free as often as for real clients (the common case). Target: NAT tracked flow ≤ 1.5 × DSR tracked flow at the same hook.\n"
    );
    hook_case_table(
        out,
        nat.cases.iter().map(|c| {
            (
                c.hook.as_str(),
                c.name.as_str(),
                &c.ns_per_packet,
                c.rounds,
                c.repeat,
            )
        }),
    );
    for hook in ["xdp", "tc"] {
        let (Some(dsr), Some(tracked)) = (nat.case(DSR_TRACKED, hook), nat.case(NAT_TRACKED, hook))
        else {
            continue;
        };
        let (t, d) = (tracked.ns_per_packet.median, dsr.ns_per_packet.median);
        // Judged round by round where the rounds ran side by side.
        let (ratio, how) = match tracked.paired(dsr, |a, b| a / b) {
            Some(r) => (
                r.median,
                format!(
                    "median of the rounds' ratios, each round both cases in turn (min {:.2}, max {:.2}); medians {t:.1} / {d:.1}",
                    r.min, r.max
                ),
            ),
            None => (t / d, format!("{t:.1} / {d:.1}")),
        };
        let _ = writeln!(
            out,
            "- {hook}: NAT tracked / DSR tracked = **{ratio:.2}×** ({how}; target ≤ 1.5×: {}); reply {:.1} ns, new flow {:.1} ns (varied client ports: {}).",
            if ratio <= 1.5 { "met" } else { "not met" },
            nat.median(NAT_REPLY, hook).unwrap_or(f64::NAN),
            nat.median(NAT_NEW, hook).unwrap_or(f64::NAN),
            nat.median(NAT_NEW_VARIED_PORTS, hook)
                .map_or_else(|| "not measured".to_owned(), |ns| format!("{ns:.1} ns")),
        );
        if let Some(hashed) = nat.case(NAT_TRACKED_HASHED, hook) {
            if let Some(r) = hashed.paired(dsr, |a, b| a / b) {
                let _ = writeln!(
                    out,
                    "  - {hook}, a tracked flow on a hashed port: {:.2}× DSR tracked (median of the rounds' ratios; medians {:.1} / {d:.1}).",
                    r.median, hashed.ns_per_packet.median
                );
            }
        }
    }
    let _ = writeln!(out);
}

fn tunnel_section(out: &mut String, tunnel: &super::tunnel::TunnelResults) {
    use super::tunnel::{
        DSR_TRACKED, DSR_TRACKED_FRESH, GUE_NEW, GUE_TRACKED, IPIP_NEW, IPIP_TRACKED,
        IPIP_TRACKED_ONE_ARMED, IPIP_TRACKED_ONE_ARMED_FRESH,
    };
    let _ = writeln!(
        out,
        "## Tunnel modes, ns per packet (BPF_PROG_TEST_RUN, XDP and tc)\n"
    );
    let _ = writeln!(
        out,
        "The real object with a DSR VIP, an `ipip` VIP and a `gue` VIP (three routed backends), run through the restoring wrappers (`xdp_bench`, `tc_bench`: the wrapper's floor is in every row; at XDP it restores the frame's head on every run, grown or not, so it costs every case the same; at tc it also takes the outer header off again) from a thread inside a network namespace with routes and neighbours; each case checks with the program's counters that every run took the named path. Tracked rows: a flow in the connection table, the backend's next hop cached (no FIB lookup); new-flow rows change the client address on every run (Maglev pick and insert; the backend's next hop is cached after the first run). At tc the wrapper's runs reuse one skb, which the kernel marks as encapsulated after the first wrap: every later run has its flagged room request refused and retried without the flags (see `Hook::grow_after_mac`), and the wrapper takes the outer header off with another room call, so those tc tunnel rows carry two helper calls a real packet does not. The two *fresh skb* rows measure at tc what one real packet pays instead: one BPF_PROG_TEST_RUN per packet of `tc_lb` itself (no wrapper, nothing restored, an skb never marked encapsulated), runs = rounds × packets, a round's value the median of its packets; each includes the kernel's clock read around a single run and the caches a syscall leaves (the same for both rows: compare the two with each other, not with the wrapper's rows). The one-armed ipip row's backend is routed out of the ingress interface, so its frame leaves with XDP_TX (tc: redirected to the ingress interface) as dsr-l2's does; the other tunnel rows' backends lie behind a second interface (XDP_REDIRECT through the devmap). Target: ipip tracked flow within 10 ns of dsr-l2 tracked flow, compared one-armed (the same way out).\n"
    );
    hook_case_table(
        out,
        tunnel.cases.iter().map(|c| {
            (
                c.hook.as_str(),
                c.name.as_str(),
                &c.ns_per_packet,
                c.rounds,
                c.repeat,
            )
        }),
    );
    for hook in ["xdp", "tc"] {
        let Some(dsr) = tunnel.case(DSR_TRACKED, hook) else {
            continue;
        };
        // The target compares like with like: one-armed ipip leaves by the
        // ingress interface as dsr-l2 does (older results lack the row:
        // then the two-armed one).
        let (one_armed, two_armed) = (
            tunnel.case(IPIP_TRACKED_ONE_ARMED, hook),
            tunnel.case(IPIP_TRACKED, hook),
        );
        if let Some(ipip) = one_armed.or(two_armed) {
            let what = if one_armed.is_some() {
                "ipip tracked (one-armed)"
            } else {
                "ipip tracked"
            };
            let (gap, how) = gap(ipip, dsr);
            let _ = writeln!(
                out,
                "- {hook}: {what} − dsr-l2 tracked = **{gap:.1} ns** ({how}; target ≤ 10 ns: {}); two-armed ipip (redirect to another interface) {:.1} ns, gue tracked {:.1} ns; new flow: ipip {:.1} ns, gue {:.1} ns.",
                if gap <= 10.0 { "met" } else { "not met" },
                tunnel.median(IPIP_TRACKED, hook).unwrap_or(f64::NAN),
                tunnel.median(GUE_TRACKED, hook).unwrap_or(f64::NAN),
                tunnel.median(IPIP_NEW, hook).unwrap_or(f64::NAN),
                tunnel.median(GUE_NEW, hook).unwrap_or(f64::NAN),
            );
        }
        if let (Some(dsr), Some(ipip)) = (
            tunnel.case(DSR_TRACKED_FRESH, hook),
            tunnel.case(IPIP_TRACKED_ONE_ARMED_FRESH, hook),
        ) {
            let (gap, how) = gap(ipip, dsr);
            let _ = writeln!(
                out,
                "- {hook}, one packet per run on a fresh skb: ipip tracked (one-armed) − dsr-l2 tracked = **{gap:.1} ns** ({how}; target ≤ 10 ns: {}).",
                if gap <= 10.0 { "met" } else { "not met" },
            );
        }
    }
    let _ = writeln!(out);
}

/// `case` − `base`: the median of the rounds' differences where the
/// rounds ran side by side, else the difference of the medians; with how
/// it was taken.
fn gap(case: &super::nat::NatCase, base: &super::nat::NatCase) -> (f64, String) {
    let (c, b) = (case.ns_per_packet.median, base.ns_per_packet.median);
    match case.paired(base, |a, b| a - b) {
        Some(d) => (
            d.median,
            format!(
                "median of the rounds' differences, each round both cases in turn (min {:.1}, max {:.1}); medians {c:.1} − {b:.1}",
                d.min, d.max
            ),
        ),
        None => (c - b, format!("{c:.1} − {b:.1}")),
    }
}

/// Full-mesh replication: one row per peer count.
fn sync_mesh_section(out: &mut String, mesh: &super::sync_mesh::SyncMeshResults) {
    let _ = writeln!(out, "## Full-mesh replication, per flow and per peer\n");
    let _ = writeln!(
        out,
        "One node's full dump of {} tracked flows to 1, 2 and 3 peers over loopback, through lbd's own code on both ends (the sender's tick: table scan, records, one queue per peer; the channel: encode, seal, send, receive, open, decode; each peer's install into a real connection-table map with its own backend ids and the freshness check), all nodes in one process. On the wire: {:.1} bytes per IPv4 flow, {:.1} per IPv6 flow (full frames of 4,096 records, frame header and tag included). Each peer costs what the \"channel + install\" column says per record, on top of one scan per tick whatever the number of peers.\n",
        mesh.flows, mesh.wire_bytes_per_flow_v4, mesh.wire_bytes_per_flow_v6
    );
    let _ = writeln!(
        out,
        "| peers | records/s delivered | sender tick, CPU ns per flow | channel + install, CPU ns per record | heap per flow per peer |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    for c in &mesh.cases {
        let _ = writeln!(
            out,
            "| {} | {:.0} / **{:.0}** / {:.0} | {:.0} / **{:.0}** / {:.0} | {:.0} / **{:.0}** / {:.0} | **{:.0} B** |",
            c.peers,
            c.records_per_s.min,
            c.records_per_s.median,
            c.records_per_s.max,
            c.tick_ns_per_flow.min,
            c.tick_ns_per_flow.median,
            c.tick_ns_per_flow.max,
            c.channel_ns_per_record.min,
            c.channel_ns_per_record.median,
            c.channel_ns_per_record.max,
            c.heap_bytes_per_flow_per_peer.median
        );
    }
    let _ = writeln!(
        out,
        "\nMemory is bounded per peer: a queue keeps the newest full dump of each kind plus at most 65,536 records of incremental batches (`SEND_QUEUE_RECORDS`); a slow peer drops its oldest incremental batches, counted per peer, and the next full dump (every 10 s) repairs it.\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Machine, SectionRun};

    fn results(measured: &[(&str, &str, &str)]) -> Results {
        Results {
            machine: Machine {
                cores: 2,
                kernel: "6.18".to_owned(),
                cpu: "cpu".to_owned(),
                memory_gib: 1.0,
                date: "2026-11-23T06:00:00Z".to_owned(),
                command: "cargo xtask bench".to_owned(),
            },
            xdp: None,
            xdp_profile: None,
            maglev: None,
            memory: None,
            e2e: None,
            failover: None,
            nat: None,
            e2e_nat: None,
            decap: None,
            e2e_tunnel: None,
            tunnel: None,
            bgp: None,
            sync_mesh: None,
            flood: None,
            measured: measured
                .iter()
                .map(|(name, date, commit)| {
                    (
                        (*name).to_owned(),
                        SectionRun {
                            date: (*date).to_owned(),
                            commit: (*commit).to_owned(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_report_says_which_run_each_section_comes_from() {
        let text = markdown(
            &results(&[
                ("e2e", "2026-11-23T05:48:06Z", "9834dc8"),
                ("xdp", "2026-11-23T06:16:33Z", "90979a8"),
            ]),
            None,
        );
        assert!(
            text.contains("| e2e | 2026-11-23T05:48:06Z | `9834dc8` |"),
            "{text}"
        );
        assert!(
            text.contains("| xdp | 2026-11-23T06:16:33Z | `90979a8` |"),
            "{text}"
        );
        assert!(!text.contains("Every number below was measured in that run"));
        // A file from before sections were dated: one run, as it said.
        let old = markdown(&results(&[]), None);
        assert!(old.contains("Every number below was measured in that run"));
    }

    #[test]
    fn the_loss_column_sums_the_rounds_and_marks_older_results() {
        let spread = crate::bench::Spread::of(&[1.0]);
        let mut case = super::super::e2e::E2eCase {
            system: System::LbdNat,
            mode: Mode::NewConnection,
            rps: spread,
            p50_ms: spread,
            p99_ms: spread,
            cpu_busy_pct: spread,
            softirq_pct: spread,
            proxy_cpu: spread,
            ksoftirqd_pct: None,
            rps_per_round: vec![1.0, 1.0],
            loss_per_round: Some(vec![
                super::super::e2e::Loss {
                    lb_drops: 2,
                    retransmits: 0,
                },
                super::super::e2e::Loss {
                    lb_drops: 1,
                    retransmits: 7,
                },
            ]),
        };
        assert_eq!(loss_cell(&case), "3 / 7");
        case.loss_per_round = None;
        assert_eq!(loss_cell(&case), "–");
        assert_eq!(ksoftirqd_cell(&case), "–");
        case.ksoftirqd_pct = Some(crate::bench::Spread::of(&[61.4, 70.0, 80.0]));
        assert_eq!(ksoftirqd_cell(&case), "70");
    }
}
