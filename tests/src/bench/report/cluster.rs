//! More than one node: the control plane's reaction and VRRP failover,
//! active-active behind BGP/ECMP, full-mesh replication.

use std::fmt::Write as _;

use crate::bench::failover::{FailoverResults, VrrpGap};

/// A backend taken out, and the VRRP gap of each system.
pub(super) fn failover_section(out: &mut String, f: &FailoverResults) {
    let _ = writeln!(out, "## Control-plane reaction and VRRP failover\n");
    let _ = writeln!(
        out,
        "A backend's nginx stopped until lbd's status shows it out of the table ({}): **{:.0} ms** median (min {:.0}, max {:.0}).\n",
        f.check_settings, f.backend_out_ms.median, f.backend_out_ms.min, f.backend_out_ms.max
    );
    let _ = writeln!(out, "VRRP: every process of the master node killed (SIGKILL) until the backup (priority 100) holds the VIP; the same lab for both systems, rounds interleaved.\n");
    let _ = writeln!(
        out,
        "| system | advert interval | master-down interval (RFC) | gap min / median / max | target: median ≤ master-down + {TAKEOVER_SLACK_MS:.0} ms |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---|");
    for g in &f.vrrp {
        let limit = g.master_down_ms + TAKEOVER_SLACK_MS;
        // Each printed on its own side of the other, so that a median
        // over the limit never reads as equal to it.
        let _ = writeln!(
            out,
            "| {} | {} ms | {:.0} ms | {:.0} / **{}** / {:.0} ms | ≤ {} ms: {} |",
            g.system,
            g.advert_interval_ms,
            g.master_down_ms,
            g.gap_ms.min,
            super::beside_target(g.gap_ms.median, limit, 0),
            g.gap_ms.max,
            super::beside_target(limit, g.gap_ms.median, 0),
            takeover_verdict(g)
        );
    }
    let _ = writeln!(
        out,
        "\nTarget: takeover ≤ master-down interval + {TAKEOVER_SLACK_MS:.0} ms, judged on each row's median gap.\n"
    );
}

/// What a takeover may take beyond the RFC's master-down interval.
const TAKEOVER_SLACK_MS: f64 = 20.0;

/// Whether a row's median gap meets the takeover target.
fn takeover_verdict(g: &VrrpGap) -> &'static str {
    if g.gap_ms.median <= g.master_down_ms + TAKEOVER_SLACK_MS {
        "met"
    } else {
        "**not met**"
    }
}

/// Active-active behind ECMP: 1, 2, 3 nodes and node loss beside the
/// VRRP pair's gap (when the failover section was measured: `vrrp`, with
/// a note naming its run when that is not this section's).
pub(super) fn bgp_section(
    out: &mut String,
    bgp: &crate::bench::bgp::BgpResults,
    vrrp: Option<(&FailoverResults, Option<String>)>,
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
        "\nNode loss ({}): from the event until the router's kernel route no longer has the node; beside it the VRRP pair's gap (master killed until the backup holds the VIP){}.\n",
        bgp.timers,
        match &vrrp {
            Some((_, Some(note))) => format!(", from {note} (compare with care)"),
            _ => String::new(),
        }
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
    let (gaps, note) = vrrp.map_or((&[][..], None), |(f, note)| (f.vrrp.as_slice(), note));
    let from = note.map_or_else(String::new, |note| format!(" ({note})"));
    for g in gaps.iter().filter(|g| g.system == "lbd") {
        let _ = writeln!(
            out,
            "| VRRP (lbd pair, {} ms adverts): master killed{from} | {:.0} / **{:.0}** / {:.0} ms |",
            g.advert_interval_ms, g.gap_ms.min, g.gap_ms.median, g.gap_ms.max
        );
    }
    let _ = writeln!(out);
}

/// Full-mesh replication: one row per peer count.
pub(super) fn sync_mesh_section(out: &mut String, mesh: &crate::bench::sync_mesh::SyncMeshResults) {
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
    use crate::bench::{
        bgp::{BgpResults, NodeLoss},
        Spread,
    };

    fn gap(system: &str, interval: u32, median: f64) -> VrrpGap {
        VrrpGap {
            system: system.to_owned(),
            advert_interval_ms: interval,
            master_down_ms: 3.0 * f64::from(interval) + 156.0 * f64::from(interval) / 256.0,
            gap_ms: Spread::of(&[median]),
        }
    }

    fn failover() -> FailoverResults {
        FailoverResults {
            check_settings: "HTTP".to_owned(),
            backend_out_ms: Spread::of(&[200.0]),
            vrrp: vec![
                gap("lbd", 100, 309.6),
                gap("keepalived", 100, 390.0),
                gap("lbd", 1000, 3313.0),
            ],
        }
    }

    #[test]
    fn each_vrrp_row_is_judged_against_its_master_down_interval() {
        let mut out = String::new();
        failover_section(&mut out, &failover());
        assert!(
            out.contains("| lbd | 100 ms | 361 ms | 310 / **310** / 310 ms | ≤ 381 ms: met |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| keepalived | 100 ms | 361 ms | 390 / **390** / 390 ms | ≤ 381 ms: **not met** |"
            ),
            "{out}"
        );
        assert!(
            out.contains("| 3313 / **3313** / 3313 ms | ≤ 3629 ms: met |"),
            "{out}"
        );
    }

    fn bgp() -> BgpResults {
        BgpResults {
            seconds: 3,
            connections: 32,
            rounds: 3,
            cores: 2,
            active: Vec::new(),
            loss: vec![NodeLoss {
                event: "link cut (BFD)".to_owned(),
                gap_ms: Spread::of(&[900.0]),
            }],
            timers: "BFD 300 ms x 3".to_owned(),
        }
    }

    #[test]
    fn vrrp_gaps_of_another_run_say_whose_they_are() {
        let f = failover();
        let mut same = String::new();
        bgp_section(&mut same, &bgp(), Some((&f, None)));
        assert!(
            same.contains(
                "| VRRP (lbd pair, 100 ms adverts): master killed | 310 / **310** / 310 ms |"
            ),
            "{same}"
        );
        let mut other = String::new();
        let note =
            "the failover section's run, 2026-11-25T14:06:09Z at `2d2a0c5`, not this section's";
        bgp_section(&mut other, &bgp(), Some((&f, Some(note.to_owned()))));
        assert!(
            other.contains(&format!(
                "| VRRP (lbd pair, 100 ms adverts): master killed ({note}) | 310"
            )),
            "{other}"
        );
        assert!(
            other.contains(&format!("from {note} (compare with care)")),
            "{other}"
        );
        let mut none = String::new();
        bgp_section(&mut none, &bgp(), None);
        assert!(!none.contains("VRRP (lbd pair"), "{none}");
    }

    #[test]
    fn a_gap_just_over_its_limit_is_not_printed_as_the_limit() {
        // 381 ms against 360.9 + 20 = 380.9 ms: not "381 / ≤ 381 ms".
        let mut f = failover();
        f.vrrp = vec![gap("lbd", 100, 381.0)];
        let mut out = String::new();
        failover_section(&mut out, &f);
        assert!(
            out.contains("381 / **381** / 381 ms | ≤ 380.9 ms: **not met** |"),
            "{out}"
        );
    }
}
