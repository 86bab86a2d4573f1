//! Connection-table replication to and from the peers.

use super::{labels, Exporter};
use crate::api::schema::Status;

impl Exporter<'_> {
    /// Replication totals (families present but empty when it is off), then
    /// per peer.
    pub(super) fn export_replication(&mut self, s: &Status) {
        // Replication (families present but empty when it is off).
        let one = |v: u64| vec![(Vec::new(), v)];
        let (connected, sent, installed, refused) = match &s.replication {
            Some(r) => (
                vec![(Vec::new(), i64::from(r.connected))],
                one(r.channel.records_sent),
                one(r.installed),
                one(r.channel.auth_failures),
            ),
            None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        };
        let (nat_installed, nat_skipped) = match &s.replication {
            Some(r) => (
                one(r.nat_installed),
                vec![
                    (labels(&[("reason", "unknown")]), r.nat_unknown),
                    (labels(&[("reason", "conflict")]), r.nat_conflicts),
                    (labels(&[("reason", "table_full")]), r.nat_table_full),
                    (labels(&[("reason", "error")]), r.nat_failed),
                ],
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.gauge(
            "replication_connected",
            "Whether a replication session to a peer is up (per peer: lbd_replication_peer_connected)",
            connected,
        );
        self.counter(
            "replication_flows_sent",
            "Flow records sent to the peers (NAT'd flows' included), summed over the peers",
            None,
            sent,
        );
        self.counter(
            "replication_flows_installed",
            "Flows installed from the peer",
            None,
            installed,
        );
        self.counter(
            "replication_auth_failures",
            "Replication connections closed for a bad key or tag, or a replayed, reordered or reflected frame, at the handshake or mid-session",
            None,
            refused,
        );
        self.export_replication_channel(s);
        self.export_replication_peers(s);
        self.counter(
            "replication_nat_flows_installed",
            "NAT'd flows installed from the peer",
            None,
            nat_installed,
        );
        self.counter(
            "replication_nat_flows_skipped",
            "NAT'd flows from the peer left out: unknown VIP or backend here, another flow holds their key, the NAT table is full, or the install failed",
            None,
            nat_skipped,
        );
    }

    /// The channel's other counters (every sender's and the listener's,
    /// summed), so a failing or downgraded channel shows in Prometheus and
    /// not only in `lbctl status`.
    fn export_replication_channel(&mut self, s: &Status) {
        let channel = s.replication.as_ref().map(|r| r.channel);
        let total = |f: fn(&crate::sync::SyncStatsSnapshot) -> u64| {
            channel
                .iter()
                .map(|c| (Vec::new(), f(c)))
                .collect::<Vec<_>>()
        };
        self.counter(
            "replication_decode_errors",
            "Replication connections closed for a malformed frame, an unexpected message or a protocol version mismatch",
            None,
            total(|c| c.decode_errors),
        );
        self.counter(
            "replication_timeouts",
            "Replication connections closed because the peer was silent or a handshake, connect or write took too long",
            None,
            total(|c| c.timeouts),
        );
        self.counter(
            "replication_sessions",
            "Replication sessions established (handshake passed), both directions",
            None,
            total(|c| c.sessions),
        );
        self.counter(
            "replication_reconnects",
            "Connection attempts of the replication senders after their first one",
            None,
            total(|c| c.reconnects),
        );
        self.counter(
            "replication_batches_dropped",
            "Batches the replication senders' full queues dropped, summed over the peers (a later full dump repairs them)",
            None,
            total(|c| c.dropped_batches),
        );
        self.counter(
            "replication_records_dropped",
            "Records in the batches the replication senders' full queues dropped",
            None,
            total(|c| c.dropped_records),
        );
        self.counter(
            "replication_connections_refused",
            "Connections the replication listener closed before authentication: from an address that is no configured peer's, or a handshake cut to make room for a newer one",
            None,
            total(|c| c.refused),
        );
        self.counter(
            "replication_nat_flows_withheld",
            "NAT'd flow records not sent to a peer of an earlier release (its protocol has no NAT batches): those connections lose failover protection",
            None,
            total(|c| c.nat_withheld),
        );
    }

    /// Replication per peer (label `peer`, the configured address), the
    /// flows left out for a fresher local entry, and the start-up signal.
    pub(super) fn export_replication_peers(&mut self, s: &Status) {
        let peers = s.replication.iter().flat_map(|r| r.peers.iter());
        let per_peer = |f: fn(&crate::api::schema::ReplicationPeerStatus) -> u64| {
            peers
                .clone()
                .map(|p| (labels(&[("peer", &p.address)]), f(p)))
                .collect::<Vec<_>>()
        };
        self.gauge(
            "replication_peer_connected",
            "Whether this node's replication session to the peer is up",
            peers
                .clone()
                .map(|p| (labels(&[("peer", &p.address)]), i64::from(p.connected)))
                .collect(),
        );
        self.counter(
            "replication_peer_records_sent",
            "Records (flows and NAT'd flows) sent to the peer",
            None,
            per_peer(|p| p.records_sent),
        );
        self.counter(
            "replication_peer_records_received",
            "Records received from the peer",
            None,
            per_peer(|p| p.records_received),
        );
        self.counter(
            "replication_peer_full_dumps_received",
            "Complete full dumps received from the peer",
            None,
            per_peer(|p| p.full_dumps_received),
        );
        self.counter(
            "replication_peer_batches_dropped",
            "Batches for the peer dropped from its full send queue (a later full dump repairs them)",
            None,
            per_peer(|p| p.batches_dropped),
        );
        self.gauge(
            "replication_peer_last_received_timestamp_seconds",
            "When the last batch (flows or NAT'd flows, a full dump's too, empty or not) from the peer arrived, Unix time in seconds: how stale its flows here may be; no series before the first since lbd started, or while the peer's node id is not known here (this node's session to it never came up)",
            peers
                .clone()
                .filter_map(|p| {
                    let at = p.last_received_unix_s?;
                    Some((labels(&[("peer", &p.address)]), super::to_i64(at)))
                })
                .collect(),
        );
        self.gauge(
            "replication_peer_config_compared",
            "Whether the peer's Maglev inputs are known here to compare with this node's (its session is up and its release sends config digests)",
            peers
                .clone()
                .map(|p| (labels(&[("peer", &p.address)]), i64::from(p.config_compared)))
                .collect(),
        );
        self.gauge(
            "replication_peer_backend_states_shared",
            "Whether the peer shares backend states with this node (it sent its own within 35 s, so it takes this node's drains, maintenance and undrains): 0 while its session is down, or for a peer of a release before them, where a drain must be made too",
            peers
                .clone()
                .map(|p| {
                    (
                        labels(&[("peer", &p.address)]),
                        i64::from(p.shares_backend_states),
                    )
                })
                .collect(),
        );
        self.gauge(
            "replication_peer_config_mismatch",
            "1 for each VIP whose Maglev table the peer builds otherwise than this node (kind: differs, missing_on_peer, only_on_peer): flows moved between the two change backend",
            peers
                .clone()
                .flat_map(|p| {
                    p.config_mismatches.iter().map(move |m| {
                        let labels = labels(&[
                            ("peer", &p.address),
                            ("vip", &m.vip),
                            ("kind", m.kind.as_str()),
                        ]);
                        (labels, 1)
                    })
                })
                .collect(),
        );
        let (left_out, dumped) = match &s.replication {
            Some(r) => (
                vec![
                    (labels(&[("reason", "kept_local")]), r.kept_local),
                    (labels(&[("reason", "stale")]), r.stale),
                    (labels(&[("reason", "unknown")]), r.unknown),
                    (labels(&[("reason", "error")]), r.failed),
                ],
                vec![(Vec::new(), i64::from(r.all_peers_dumped))],
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.counter(
            "replication_flows_left_out",
            "Flows from a peer left out: this node's own entry was fresher (stale; kept_local: it names another backend), this node has no place for it (unknown: a VIP or backend it lacks, a backend not alive here, another protocol or address family), or the install failed (error: also both of its buckets full of flows seen more recently)",
            None,
            left_out,
        );
        self.gauge(
            "replication_peers_dumped",
            "Whether every replication peer has delivered a complete full dump since start",
            dumped,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    /// The channel's counters `lbctl status` shows reach `/metrics` too,
    /// each under its own name (distinct values catch a swapped field).
    #[test]
    fn every_channel_counter_is_exported() {
        let mut status = crate::metrics::tests::full_status();
        let replication = status
            .replication
            .as_mut()
            .expect("replication in the status");
        replication.channel = crate::sync::SyncStatsSnapshot {
            decode_errors: 1,
            timeouts: 2,
            sessions: 3,
            reconnects: 4,
            dropped_batches: 5,
            dropped_records: 6,
            refused: 7,
            nat_withheld: 8,
            ..Default::default()
        };
        let text = Metrics::new().render(&status);
        for (family, value) in [
            ("decode_errors", 1),
            ("timeouts", 2),
            ("sessions", 3),
            ("reconnects", 4),
            ("batches_dropped", 5),
            ("records_dropped", 6),
            ("connections_refused", 7),
            ("nat_flows_withheld", 8),
        ] {
            let line = format!("lbd_replication_{family}_total {value}");
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Replication off: the families are there, without samples.
        status.replication = None;
        let text = Metrics::new().render(&status);
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("lbd_replication_nat_flows_withheld_total")),
            "{text}"
        );
    }

    /// When the last batch from each peer arrived, as Unix time: how
    /// stale its flows here may be (`time() - ...`), left out (not 0,
    /// which would read as 1970) before the first.
    #[test]
    fn the_last_batch_from_a_peer_is_a_timestamp_left_out_before_the_first() {
        const FAMILY: &str = "lbd_replication_peer_last_received_timestamp_seconds";
        assert!(crate::metrics::FAMILIES.contains(&(FAMILY, "gauge")));
        let mut status = crate::metrics::tests::full_status();
        let text = Metrics::new().render(&status);
        let line = format!("{FAMILY}{{peer=\"198.18.2.12:7946\"}} 1700000100");
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");

        let peer = &mut status
            .replication
            .as_mut()
            .expect("replication in the status")
            .peers[0];
        peer.last_received_s = None;
        peer.last_received_unix_s = None;
        let text = Metrics::new().render(&status);
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{FAMILY}{{"))),
            "a series before the first batch:\n{text}"
        );
    }

    #[test]
    fn flows_left_out_carry_every_reason_unknown_included() {
        let mut status = crate::metrics::tests::full_status();
        let replication = status
            .replication
            .as_mut()
            .expect("replication in the status");
        replication.kept_local = 1;
        replication.stale = 2;
        replication.unknown = 3;
        replication.failed = 4;
        let text = Metrics::new().render(&status);
        for (reason, value) in [
            ("kept_local", 1),
            ("stale", 2),
            ("unknown", 3),
            ("error", 4),
        ] {
            let line =
                format!("lbd_replication_flows_left_out_total{{reason=\"{reason}\"}} {value}");
            assert!(text.contains(&line), "no {line:?} in\n{text}");
        }
    }
}
