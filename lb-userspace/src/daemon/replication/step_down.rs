//! The roles a tick streams with: after a pair's instance stepped down
//! while lbd runs on, one more tick still streams the VIPs handed over.

use tracing::info;

use super::{Replication, Roles, Topology};

impl Replication {
    /// The roles a walk starting now streams with (see
    /// [`Replication::roles_for_tick`]); None while a walk is in flight
    /// (no walk starts, and a step-down meanwhile is seen by the next).
    pub(crate) fn roles_for_walk(&mut self, roles: Roles) -> Option<Roles> {
        if self.walking() {
            return None;
        }
        Some(self.roles_for_tick(roles))
    }

    /// The roles a tick streams with: `roles`, except on the first tick
    /// after an instance of a pair stepped down from master while lbd
    /// runs on (preempted, or its priority lowered): that tick still
    /// streams the VIPs handed over, with a NAT scan forced, so the flows
    /// opened here since the last tick reach the new master (a SIGINT
    /// does the same through `final_sync`).
    pub(crate) fn roles_for_tick(&mut self, roles: Roles) -> Roles {
        let previous = self.last_roles.replace(roles.clone());
        match previous {
            Some(previous) if self.topology == Topology::VrrpPair && previous.gives_up(&roles) => {
                info!("VRRP stepped down while lbd runs on: sending the last flows of the VIPs handed over to the new master");
                self.scan_nat_now();
                previous.union(&roles)
            }
            _ => roles,
        }
    }
}
