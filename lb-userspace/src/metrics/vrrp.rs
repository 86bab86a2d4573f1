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
        let mut configured_priority = Vec::new();
        let mut link_down = Vec::new();
        let mut no_source = Vec::new();
        let mut resumed = Vec::new();
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
            configured_priority.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i64::from(i.configured_priority),
            ));
            link_down.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i64::from(i.link_down),
            ));
            no_source.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i64::from(i.no_source),
            ));
            resumed.push((
                labels(&[("vrid", &vrid), ("family", family)]),
                i.counters.resumed,
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
        self.gauge(
            "vrrp_configured_priority",
            "Priority configured for the instance (lbd_vrrp_priority below it: lowered by tracking)",
            configured_priority,
        );
        self.gauge(
            "vrrp_link_down",
            "1 while the instance's checks see its interface's link down (keepalived's FAULT): a backup does not take over meanwhile, a master keeps its mastership",
            link_down,
        );
        self.gauge(
            "vrrp_no_source",
            "1 while the instance's interface has no address its adverts can go from (keepalived's FAULT): a master gives up mastership and the VIPs to the peer, a backup does not take over",
            no_source,
        );
        self.counter(
            "vrrp_transitions",
            "VRRP state changes (a mastership resumed after a restart is not one: lbd_vrrp_resumed_total)",
            None,
            vrrp_transitions,
        );
        self.counter(
            "vrrp_resumed",
            "Masterships resumed at start without a failover (a restarted lbd that was master until moments ago)",
            None,
            resumed,
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
