//! Draining the node or making it active again: the change recorded in
//! the node state file before it is made (or refused), then announced.

use std::path::Path;

use tracing::{info, warn};

use super::{
    super::Engine,
    state_file::{node_state_file, write_state},
    NodeRuntime,
};
use crate::{api::schema::NodeStatus, bgp::NodeState, config::Config};

impl NodeRuntime {
    /// Makes the node `state`, recording it in `path` first (when there is
    /// one): if that fails, the error names the file and the state stays.
    pub(super) fn set_state(
        &mut self,
        path: Option<&Path>,
        state: NodeState,
    ) -> Result<(), String> {
        if state == self.state {
            return Ok(());
        }
        if let Some(path) = path {
            write_state(path, state).map_err(|error| {
                format!(
                    "the node stays {}: recording \"{}\" in the node state file {} failed ({error:#}), and a restart would not keep it",
                    self.state.name(),
                    state.name(),
                    path.display()
                )
            })?;
        }
        info!(state = state.name(), "node state changed");
        self.state = state;
        Ok(())
    }
}

impl Engine {
    /// Why `state` cannot be asked for here: a node drain withdraws BGP
    /// announcements, so without `[bgp]` it would move nothing while
    /// saying the node is drained (making one active stays allowed, to
    /// clear a state left from before).
    pub(crate) fn node_state_refuses(&self, state: NodeState) -> Option<String> {
        node_state_refusal(&self.config, state)
    }

    /// Drains the node or makes it active again (kept across restarts),
    /// and announces accordingly; a dry run only says what would follow.
    /// A change that cannot be recorded is refused, the state unchanged
    /// (a drain a restart would forget is no drain).
    pub(crate) async fn set_node_state(
        &mut self,
        state: NodeState,
        dry_run: bool,
    ) -> Result<NodeStatus, String> {
        if dry_run {
            let mut status = self.node_status();
            status.state = state;
            status.dry_run = true;
            let plan = self.announcement_plan(state);
            if let (Some(bgp), Some(plan)) = (status.bgp.as_mut(), plan) {
                bgp.announced = plan
                    .iter()
                    .filter(|(_, r)| r.is_none())
                    .map(|(a, _)| *a)
                    .collect();
                bgp.withheld = plan
                    .iter()
                    .filter_map(|(address, reason)| {
                        reason.map(|reason| crate::bgp::WithheldAddress {
                            address: *address,
                            reason,
                        })
                    })
                    .collect();
            }
            return Ok(status);
        }
        if let Err(error) = self
            .node
            .set_state(node_state_file(&self.config).as_deref(), state)
        {
            warn!(error = %error, "node state change refused");
            return Err(error);
        }
        self.announce();
        Ok(self.node_status())
    }
}

/// Why `state` cannot be asked for on a node configured by `config` (see
/// [`Engine::node_state_refuses`]).
pub(super) fn node_state_refusal(config: &Config, state: NodeState) -> Option<String> {
    (state == NodeState::Drained && config.bgp.is_none()).then(|| {
        "node drain needs [bgp]: it withdraws this node's BGP announcements, and this node announces nothing (a VRRP backup takes the VIPs when this node stops or its priority falls)".to_owned()
    })
}
