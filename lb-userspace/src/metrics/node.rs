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
            "1 while lbd wants the VIP address announced by BIRD; 0 while lbd wants it withdrawn, with the reason (what BIRD does follows only while lbd_bgp_in_sync is 1)",
            announced,
        );
        self.gauge(
            "bgp_in_sync",
            "1 when BIRD has accepted the routes lbd wants announced and runs the routes file's protocols (its config includes the file)",
            vec![(Vec::new(), i64::from(bgp.in_sync))],
        );
        self.counter(
            "bgp_failures",
            "Writes of the routes file or BIRD reconfigures that failed",
            None,
            vec![(Vec::new(), bgp.failures)],
        );
    }
}
