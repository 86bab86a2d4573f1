//! The node-wide data plane lines: the NAT flow table, the tunnelled
//! modes' settings, and the connection and handshake tables' fill.

use lb_userspace::api::schema::{Status, TunnelStatus};

/// The tunnelled modes' settings, as one line.
pub(super) fn tunnel_line(tunnel: &TunnelStatus, interface: &str) -> String {
    let source = |prefix: &Option<String>, own: bool| match (prefix, own) {
        (None, _) => "none".to_owned(),
        (Some(p), true) => format!("{p} (the interface's own)"),
        (Some(p), false) => p.clone(),
    };
    let checks = if tunnel.hc_encap.is_empty() {
        "no check goes through a tunnel".to_owned()
    } else {
        format!(
            "checks through tunnels: tc_hc_encap on {}{}",
            tunnel.hc_encap.join(", "),
            if tunnel.accept_local {
                format!(", accept_local on {interface}")
            } else {
                String::new()
            }
        )
    };
    format!(
        "tunnel: GUE port {}, outer sources IPv4 {} IPv6 {}; {checks}",
        tunnel.gue_port,
        source(&tunnel.source_ipv4, tunnel.sources_from_interface[0]),
        source(&tunnel.source_ipv6, tunnel.sources_from_interface[1]),
    )
}

/// The NAT flow table, as one line.
pub(super) fn nat_table_line(nat: &lb_userspace::api::schema::NatStatus) -> String {
    let flows: Vec<String> = nat.flows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "NAT flows: {}{} (table {} entries, {:.1} MiB{}); reaped: {} expired, {} orphans, {} of removed backends",
        if nat.swept { "" } else { "first sweep under way " },
        if flows.is_empty() { "none".to_owned() } else { flows.join(" ") },
        nat.capacity,
        nat.memory_bytes as f64 / (1024.0 * 1024.0),
        if nat.pressure {
            ", nearly full: closed flows freed after 1 s"
        } else {
            ""
        },
        nat.expired,
        nat.orphans,
        nat.backend_gone
    ) + &reaper_errors(nat)
}

/// The reaper's failures, shown only when there were any: a table that
/// refuses removals or reads keeps flows the reaper cannot free.
fn reaper_errors(nat: &lb_userspace::api::schema::NatStatus) -> String {
    if nat.reap_failed == 0 && nat.read_errors == 0 {
        return String::new();
    }
    format!(
        "; reaper errors: {} removals refused, {} reads failed",
        nat.reap_failed, nat.read_errors
    )
}

/// The connection table's and the handshake table's fill, and a SYN
/// flood while one lasts: in the plain status and in `--watch` alike.
pub(super) fn conntrack_lines(status: &Status) -> Vec<String> {
    let c = &status.conntrack;
    let mut lines = vec![format!(
        "connection table: {} of {} flows ({:.1} MiB, {} handshakes); half-open: {} of {}",
        c.entries,
        c.capacity,
        c.memory_bytes as f64 / (1024.0 * 1024.0),
        c.handshakes,
        c.half_open,
        c.half_open_capacity
    )];
    if c.syn_flood {
        lines.push(format!(
            "SYN FLOOD for {} s: {} unanswered SYN/s, {} half-open evictions/s (established flows are not affected)",
            c.syn_flood_for_s.unwrap_or(0),
            c.unanswered_syn_per_s,
            c.half_open_evicted_per_s
        ));
    }
    lines
}
