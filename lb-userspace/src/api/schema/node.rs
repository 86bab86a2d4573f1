//! This node's part in an active-active group (`/v1/node`).

use serde::{Deserialize, Serialize};

/// `GET /v1/node` (and the answer to `PUT /v1/node/state`): this node's
/// part in an active-active group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// True in a dry run's answer: what the node would be; nothing changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// `active` or `drained`.
    pub state: crate::bgp::NodeState,
    /// Packets this node forwarded since its data plane started (the
    /// `forwarded` counter).
    pub forwarded: u64,
    /// Milliseconds since the forwarded count last grew (None: it has not
    /// grown since lbd started). Sampled every second: a drained node
    /// whose flows all moved (or ended) stays idle.
    #[serde(default)]
    pub idle_ms: Option<u64>,
    /// BGP announcements (None: no `[bgp]`).
    #[serde(default)]
    pub bgp: Option<crate::bgp::BgpStatus>,
}

/// `PUT /v1/node/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeChange {
    /// `drained` or `active`; any other name is refused by name.
    pub state: crate::bgp::NodeState,
}
