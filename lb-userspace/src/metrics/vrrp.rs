//! VRRP instances: state, priority, transitions and advertisements, each
//! labelled by `vrid` and `family`: a node may run one instance of a VRID
//! per address family (VRRPv3 keeps IPv4 and IPv6 apart), and their series
//! must not merge.

use super::{labels, Exporter};
use crate::{api::schema::Status, vrrp::driver::InstanceStatus};

/// The `family` label of an instance: that of the addresses it moves (all
/// of one family, the config says), `"unknown"` if it shows none.
fn family_of(instance: &InstanceStatus) -> &'static str {
    match instance.addresses.first().or(instance.master.as_ref()) {
        Some(std::net::IpAddr::V4(_)) => "ipv4",
        Some(std::net::IpAddr::V6(_)) => "ipv6",
        None => "unknown",
    }
}

impl Exporter<'_> {
    /// Each VRRP instance (labels `vrid` and `family`).
    pub(super) fn export_vrrp(&mut self, s: &Status) {
        // VRRP.
        let mut vrrp_state = Vec::new();
        let mut vrrp_priority = Vec::new();
        let mut vrrp_transitions = Vec::new();
        let mut sent = Vec::new();
        let mut received = Vec::new();
        let mut ignored = Vec::new();
        for i in &s.vrrp {
            let vrid = i.vrid.to_string();
            let family = family_of(i);
            for state in ["initialize", "backup", "master"] {
                vrrp_state.push((
                    labels(&[("vrid", &vrid), ("family", family), ("state", state)]),
                    i64::from(i.state.to_string() == state),
                ));
            }
            vrrp_priority.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i64::from(i.priority),
            ));
            vrrp_transitions.push((
                labels(&[("vrid", &vrid), ("family", family), ("to", "master")]),
                i.counters.became_master,
            ));
            vrrp_transitions.push((
                labels(&[("vrid", &vrid), ("family", family), ("to", "backup")]),
                i.counters.became_backup,
            ));
            sent.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i.counters.adverts_sent,
            ));
            received.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i.counters.adverts_received,
            ));
            for (reason, n) in &i.ignored {
                ignored.push((
                    labels(&[
                        ("vrid", &vrid),
                        ("family", family),
                        ("reason", reason.as_str()),
                    ]),
                    *n,
                ));
            }
        }
        self.gauge(
            "vrrp_state",
            "VRRP state of the instance (1 for its current state)",
            vrrp_state,
        );
        self.gauge(
            "vrrp_priority",
            "Priority the instance advertises (after tracking)",
            vrrp_priority,
        );
        self.counter(
            "vrrp_transitions",
            "VRRP state changes",
            None,
            vrrp_transitions,
        );
        self.counter("vrrp_adverts_sent", "VRRP advertisements sent", None, sent);
        self.counter(
            "vrrp_adverts_received",
            "Valid VRRP advertisements received",
            None,
            received,
        );
        self.counter(
            "vrrp_adverts_ignored",
            "VRRP packets ignored, by reason",
            None,
            ignored,
        );
    }
}
