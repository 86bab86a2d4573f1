//! What the node reports of itself: `GET /v1/node` (its state, traffic
//! and BGP) and whether the data plane is attached (`/readyz`).

use super::super::Engine;
use crate::{api::schema::NodeStatus, bgp::announcer::Announcer};

impl Engine {
    /// Whether the data plane is attached now (`/readyz`): from the
    /// attach until the kernel is found to run it no more.
    pub fn is_attached(&self) -> bool {
        self.dataplane.is_attached()
    }

    /// `GET /v1/node`.
    pub(crate) fn node_status(&self) -> NodeStatus {
        NodeStatus {
            dry_run: false,
            state: self.node.state,
            forwarded: self.node.forwarded,
            idle_ms: self
                .node
                .last_forward
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
            bgp: self.node.announcer.as_ref().map(Announcer::status),
        }
    }
}
