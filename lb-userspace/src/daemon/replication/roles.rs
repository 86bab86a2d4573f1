//! Who streams and who installs each VIP's flows in a VRRP pair, decided
//! per VIP: with one instance per address family (dual stack), the two
//! instances' masters may be different nodes, and each must stream the
//! flows of the VIPs it holds and install those of the VIPs its peer
//! holds. A node-wide "master of anything" would have both nodes stream
//! and neither install.

use std::{collections::HashMap, net::IpAddr};

/// This node's role for each VIP address, from its VRRP instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Roles {
    /// VIP address -> whether this node is master of the instance that
    /// moves it.
    moved: HashMap<IpAddr, bool>,
    /// Master of some instance (or no VRRP at all): the rule for VIPs
    /// that no instance moves.
    any_master: bool,
}

impl Roles {
    /// The roles from each instance's addresses and whether this node is
    /// its master; `any_master` as the engine's `is_master`.
    pub(crate) fn new<'a>(
        instances: impl IntoIterator<Item = (&'a [IpAddr], bool)>,
        any_master: bool,
    ) -> Self {
        let mut moved = HashMap::new();
        for (addresses, master) in instances {
            for address in addresses {
                moved.insert(*address, master);
            }
        }
        Self { moved, any_master }
    }

    /// Whether this node holds some VIP (masters an instance).
    pub(crate) fn any_master(&self) -> bool {
        self.any_master
    }

    /// Whether a pair's node streams the flows of `vip`: it masters the
    /// instance that moves it (a VIP no instance moves: it masters any).
    pub(crate) fn sends(&self, vip: IpAddr) -> bool {
        self.moved.get(&vip).copied().unwrap_or(self.any_master)
    }

    /// Whether a pair's node is backup for `vip`, so what its peer sends
    /// for it replaces its own entries (a VIP no instance moves: it
    /// masters none). Otherwise a received copy is installed only where
    /// this node holds nothing fresher (batches queued before this node
    /// became master, or while both were).
    pub(crate) fn backs(&self, vip: IpAddr) -> bool {
        !self.sends(vip)
    }

    /// Whether `next` gives up streaming some VIP this node streamed as
    /// `self`: an instance went from master to backup (preempted, or its
    /// priority lowered by tracking) while lbd runs on.
    pub(crate) fn gives_up(&self, next: &Roles) -> bool {
        (self.any_master && !next.any_master)
            || self
                .moved
                .iter()
                .any(|(vip, &master)| master && !next.sends(*vip))
    }

    /// Streams every VIP either streams: the roles of the one tick after a
    /// step-down, which sends the flows of the VIPs handed over once more.
    pub(crate) fn union(&self, other: &Roles) -> Roles {
        let moved = self
            .moved
            .keys()
            .chain(other.moved.keys())
            .map(|vip| (*vip, self.sends(*vip) || other.sends(*vip)))
            .collect();
        Roles {
            moved,
            any_master: self.any_master || other.any_master,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_masters_on_two_nodes_each_send_their_own_family() {
        let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
        let v6: Vec<IpAddr> = vec!["2001:2::100".parse().unwrap()];
        // Master of the IPv4 instance, backup of the IPv6 one.
        let roles = Roles::new([(v4.as_slice(), true), (v6.as_slice(), false)], true);
        assert!(roles.sends(v4[0]) && !roles.backs(v4[0]));
        assert!(!roles.sends(v6[0]) && roles.backs(v6[0]));
        // A VIP no instance moves follows "master of any".
        let other: IpAddr = "198.18.0.200".parse().unwrap();
        assert!(roles.sends(other));
        let backup = Roles::new([(v4.as_slice(), false), (v6.as_slice(), false)], false);
        assert!(backup.backs(other) && backup.backs(v4[0]) && backup.backs(v6[0]));
    }

    #[test]
    fn a_step_down_is_seen_and_its_last_tick_sends_both_roles() {
        let v4: Vec<IpAddr> = vec!["198.18.0.100".parse().unwrap()];
        let v6: Vec<IpAddr> = vec!["2001:2::100".parse().unwrap()];
        let roles =
            |m4: bool, m6: bool| Roles::new([(v4.as_slice(), m4), (v6.as_slice(), m6)], m4 || m6);
        // Master of both, then of IPv6 only: the IPv4 instance stepped down.
        assert!(roles(true, true).gives_up(&roles(false, true)));
        assert!(roles(true, false).gives_up(&roles(false, false)));
        // Staying, or becoming master, gives nothing up.
        assert!(!roles(true, false).gives_up(&roles(true, false)));
        assert!(!roles(false, false).gives_up(&roles(true, true)));
        assert!(!roles(false, true).gives_up(&roles(true, true)));
        // The last tick's roles send what either sends.
        let last = roles(true, false).union(&roles(false, true));
        assert!(last.any_master() && last.sends(v4[0]) && last.sends(v6[0]));
        let last = roles(true, false).union(&roles(false, false));
        assert!(last.sends(v4[0]) && !last.sends(v6[0]));
        // Without VRRP instances (the VIP no instance moves): any_master.
        let none = |m| Roles::new([], m);
        assert!(none(true).gives_up(&none(false)));
        assert!(none(true).union(&none(false)).sends(v4[0]));
    }
}
