//! The status's replication section: totals, then a line per peer with
//! its session, counts, last batch and any Maglev table mismatch.

use lb_userspace::api::schema::{ReplicationPeerStatus, ReplicationStatus};

use super::backend_columns::age_text;

/// The replication section: totals, then one line per peer (an older lbd
/// sends no peers: its one peer is in the totals).
pub(super) fn replication_lines(r: &ReplicationStatus) -> Vec<String> {
    let mode = r
        .mode
        .map(|mode| format!(" ({})", mode.name()))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "replication{mode}: {}, {} flows sent, {} installed from peers ({} unknown)",
        if r.connected {
            "connected"
        } else {
            "not connected"
        },
        r.channel.records_sent,
        r.installed,
        r.unknown
    )];
    if r.kept_local + r.stale > 0 {
        lines.push(format!(
            "replication: {} copies older than this node's own entry ({} of them for another backend, kept local)",
            r.kept_local + r.stale,
            r.kept_local
        ));
    }
    if r.nat_installed + r.nat_unknown + r.nat_conflicts > 0 {
        lines.push(format!(
            "replication (NAT): {} flows installed from peers ({} unknown, {} conflicting)",
            r.nat_installed, r.nat_unknown, r.nat_conflicts
        ));
    }
    if !r.peers.is_empty() {
        lines.push(format!(
            "  every peer's full dump received: {}",
            if r.all_peers_dumped { "yes" } else { "not yet" }
        ));
    }
    for p in &r.peers {
        lines.push(peer_line(p));
        lines.extend(config_mismatch_lines(p));
    }
    lines
}

/// A replication peer's line: its session, counts, whether it shares
/// backend states, and how long ago its last batch arrived (how stale its
/// flows here may be). An lbd before `last_received_s` that received
/// records says nothing of it.
pub(super) fn peer_line(p: &ReplicationPeerStatus) -> String {
    let last = match p.last_received_s {
        Some(age) => format!(", last batch {} ago", age_text(age)),
        None if p.records_received == 0 => ", no batch yet".to_owned(),
        None => String::new(),
    };
    let shared = if p.shares_backend_states {
        ", backend states shared"
    } else {
        ""
    };
    format!(
        "  peer {} ({}): {}, {} records sent, {} received, {} full dumps received, {} batches dropped{shared}{last}",
        p.address,
        p.node.as_deref().unwrap_or("node id not known yet"),
        if p.connected { "connected" } else { "not connected" },
        p.records_sent,
        p.records_received,
        p.full_dumps_received,
        p.batches_dropped
    )
}

/// A peer's Maglev tables as compared with this node's: a line per VIP
/// that differs (nothing when all agree or they are not known).
pub(super) fn config_mismatch_lines(
    p: &lb_userspace::api::schema::ReplicationPeerStatus,
) -> Vec<String> {
    if p.config_mismatches.is_empty() {
        return Vec::new();
    }
    let mut lines = vec![format!(
        "    CONFIG MISMATCH with {}: flows moved between the nodes change backend; make the config and lbctl changes the same on every node",
        p.address
    )];
    for m in &p.config_mismatches {
        lines.push(format!("      {}: {}", m.vip, m.kind.meaning()));
    }
    lines
}
