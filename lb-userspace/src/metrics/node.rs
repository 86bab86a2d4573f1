//! The node's state and its BGP announcements.

use super::{labels, Exporter, Labels};
use crate::api::schema::Status;

impl Exporter<'_> {
    /// The node's state and its BGP announcements.
    pub(super) fn export_node(&mut self, s: &Status) {
        let Some(node) = &s.node else {
            return;
        };
        let drained = i64::from(node.state == crate::bgp::NodeState::Drained);
        self.gauge(
            "node_drained",
            "1 while the operator has drained the node (lbctl node drain)",
            vec![(Vec::new(), drained)],
        );
        let Some(bgp) = &node.bgp else {
            return;
        };
        let mut announced: Vec<(Labels, i64)> = bgp
            .announced
            .iter()
            .map(|a| (labels(&[("address", &a.to_string()), ("reason", "")]), 1))
            .collect();
        announced.extend(bgp.withheld.iter().map(|w| {
            (
                labels(&[
                    ("address", &w.address.to_string()),
                    ("reason", w.reason.name()),
                ]),
                0,
            )
        }));
        self.gauge(
            "bgp_announced",
            "1 while lbd wants the VIP address announced by BIRD; 0 while lbd wants it withdrawn, with the reason (what BIRD does follows only while lbd_bgp_in_sync is 1; whether a router hears of it: lbd_bgp_sessions_exporting)",
            announced,
        );
        self.gauge(
            "bgp_in_sync",
            "1 when BIRD has accepted the routes lbd wants announced and runs the routes file's protocols (its config includes the file)",
            vec![(Vec::new(), i64::from(bgp.in_sync))],
        );
        // Only while known: an absent series is "unknown", not "none".
        if let Some(sessions) = &bgp.sessions {
            let established = sessions.iter().filter(|s| s.established).count();
            self.gauge(
                "bgp_sessions_established",
                "BIRD's BGP sessions in state Established (any session of BIRD's, lbd's routes exported or not)",
                vec![(Vec::new(), i64::try_from(established).unwrap_or(i64::MAX))],
            );
            self.gauge(
                "bgp_sessions_exporting",
                "Established BGP sessions of BIRD's exporting lbd's route for the VIP address (show route exported): 0 while lbd_bgp_announced is 1 means the routers do not hear of this node for it (a session down, or an export filter that lets lbd's routes through nowhere)",
                bgp.exporting
                    .iter()
                    .map(|e| {
                        (
                            labels(&[("address", &e.address.to_string())]),
                            i64::from(e.sessions),
                        )
                    })
                    .collect(),
            );
        }
        self.counter(
            "bgp_failures",
            "Writes of the routes file or BIRD reconfigures that failed",
            None,
            vec![(Vec::new(), bgp.failures)],
        );
    }
}
