//! What this node announces: a pure function of what it can serve, its
//! state and its start-up gate, so every rule is tested without BIRD.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

/// The node's own state, set by the operator (`lbctl node drain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Announces what it can serve.
    #[default]
    Active,
    /// Announces nothing, so the routers move its flows to the other nodes
    /// (which have them, replicated); it keeps forwarding what still comes.
    Drained,
}

impl NodeState {
    /// The state's name, as the API and the state file spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Drained => "drained",
        }
    }

    /// The state a name spells, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Active, Self::Drained]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// Why an address this node could announce is withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Withheld {
    /// The operator drained the node.
    Drained,
    /// A fresh node waits for its peers' flow state (or the start-up wait).
    Starting,
    /// The program is not attached: packets would reach the stack.
    DataplaneDetached,
    /// The interface is down.
    InterfaceDown,
    /// A service on the address has no healthy backend the data plane
    /// can send to (none healthy, or a dsr-l2 VIP's healthy ones have no
    /// MAC yet), so it would drop its packets.
    NoHealthyBackend,
}

impl Withheld {
    /// The reason's name, as logs and the API spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Drained => "drained",
            Self::Starting => "starting",
            Self::DataplaneDetached => "dataplane-detached",
            Self::InterfaceDown => "interface-down",
            Self::NoHealthyBackend => "no-healthy-backend",
        }
    }
}

/// One service (VIP address, port, protocol) as announcement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The VIP address the service is on.
    pub address: IpAddr,
    /// Whether this node can serve it now.
    pub serviceable: bool,
}

/// What the node is, apart from its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    /// The operator's state.
    pub state: NodeState,
    /// Whether the start-up gate is open.
    pub started: bool,
    /// Whether the program is attached.
    pub attached: bool,
    /// Whether the interface's link is up.
    pub interface_up: bool,
}

/// Each candidate address, announced (`None`) or withheld and why.
pub type Plan = BTreeMap<IpAddr, Option<Withheld>>;

/// The plan for `services` (only those on addresses BGP covers): an
/// address is announced while the node is active, started, attached and
/// up, and every service on it can be served — a node never attracts
/// traffic it would drop. The first reason that applies is given.
pub fn plan(node: NodeView, services: &[Service]) -> Plan {
    let node_reason = if node.state == NodeState::Drained {
        Some(Withheld::Drained)
    } else if !node.attached {
        Some(Withheld::DataplaneDetached)
    } else if !node.interface_up {
        Some(Withheld::InterfaceDown)
    } else if !node.started {
        Some(Withheld::Starting)
    } else {
        None
    };
    let mut plan = Plan::new();
    for service in services {
        let reason = node_reason.or((!service.serviceable).then_some(Withheld::NoHealthyBackend));
        let slot = plan.entry(service.address).or_insert(None);
        if slot.is_none() {
            *slot = reason;
        }
    }
    plan
}

/// The start-up gate: a fresh node (no pinned data plane adopted) waits
/// until every sync peer has sent its full flow dump and the first health
/// checks of the backends behind its addresses have decided, or `wait`
/// has passed, before it announces anything — it never takes flows it
/// does not know, nor attracts them to a backend that is down everywhere
/// (a backend whose health is still unknown counts as up). A node that
/// adopted its data plane and whose routes were kept (a restart; see
/// `Announcer::new`) opens at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// Waiting since `since`, for at most `wait`.
    Waiting {
        /// When lbd started.
        since: Instant,
        /// The longest wait.
        wait: Duration,
        /// Whether sync peers' dumps are awaited (none configured: no).
        peers: bool,
    },
    /// Open, and why.
    Open(Opened),
}

/// Why the start-up gate opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opened {
    /// The data plane (and its flows) was adopted from a previous lbd
    /// that left its routes announced.
    Adopted,
    /// Every peer's full dump arrived (and the first checks decided).
    PeersSynced,
    /// The start-up wait passed first.
    WaitElapsed,
    /// No sync peers are configured: only the first checks were awaited.
    NoPeers,
}

impl Opened {
    /// The reason's name, as the API and `lbctl` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adopted => "adopted",
            Self::PeersSynced => "peers-synced",
            Self::WaitElapsed => "wait-elapsed",
            Self::NoPeers => "no-peers",
        }
    }
}

impl Startup {
    /// The gate for a node that `adopted` its data plane and kept its
    /// routes (or not), with or without sync peers.
    pub fn new(adopted: bool, has_peers: bool, wait: Duration, now: Instant) -> Self {
        if adopted {
            Self::Open(Opened::Adopted)
        } else {
            Self::Waiting {
                since: now,
                wait,
                peers: has_peers,
            }
        }
    }

    /// Moves the gate on: `peers_dumped` says every peer's full dump
    /// arrived, `checks_decided` that every checked backend behind the
    /// announced addresses has left `Unknown`. Returns the reason when it
    /// opens now.
    pub fn update(
        &mut self,
        peers_dumped: bool,
        checks_decided: bool,
        now: Instant,
    ) -> Option<Opened> {
        let Self::Waiting { since, wait, peers } = *self else {
            return None;
        };
        let opened = if checks_decided && (peers_dumped || !peers) {
            if peers {
                Opened::PeersSynced
            } else {
                Opened::NoPeers
            }
        } else if now.saturating_duration_since(since) >= wait {
            Opened::WaitElapsed
        } else {
            return None;
        };
        *self = Self::Open(opened);
        Some(opened)
    }

    /// Whether announcing may start.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "198.18.0.100";
    const B: &str = "198.18.0.101";

    fn node() -> NodeView {
        NodeView {
            state: NodeState::Active,
            started: true,
            attached: true,
            interface_up: true,
        }
    }

    fn service(address: &str, serviceable: bool) -> Service {
        Service {
            address: address.parse().unwrap(),
            serviceable,
        }
    }

    #[test]
    fn an_address_is_announced_only_while_every_service_on_it_can_be_served() {
        let plan = plan(
            node(),
            &[service(A, true), service(A, false), service(B, true)],
        );
        assert_eq!(plan[&A.parse().unwrap()], Some(Withheld::NoHealthyBackend));
        assert_eq!(plan[&B.parse().unwrap()], None);
    }

    #[test]
    fn the_node_state_withholds_everything_with_its_own_reason() {
        let services = [service(A, true), service(B, false)];
        for (view, reason) in [
            (
                NodeView {
                    state: NodeState::Drained,
                    ..node()
                },
                Withheld::Drained,
            ),
            (
                NodeView {
                    started: false,
                    ..node()
                },
                Withheld::Starting,
            ),
            (
                NodeView {
                    attached: false,
                    ..node()
                },
                Withheld::DataplaneDetached,
            ),
            (
                NodeView {
                    interface_up: false,
                    ..node()
                },
                Withheld::InterfaceDown,
            ),
        ] {
            let plan = plan(view, &services);
            assert!(
                plan.values().all(|r| *r == Some(reason)),
                "{view:?}: {plan:?}"
            );
        }
    }

    #[test]
    fn the_gate_opens_on_the_peers_dumps_or_the_wait() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        assert_eq!(
            Startup::new(true, true, wait, t0),
            Startup::Open(Opened::Adopted)
        );
        let mut gate = Startup::new(false, true, wait, t0);
        assert!(!gate.is_open());
        assert_eq!(gate.update(false, true, t0 + Duration::from_secs(9)), None);
        assert_eq!(
            gate.update(true, true, t0 + Duration::from_secs(9)),
            Some(Opened::PeersSynced)
        );
        assert!(gate.is_open());
        assert_eq!(
            gate.update(true, true, t0 + Duration::from_secs(20)),
            None,
            "opens once"
        );

        let mut gate = Startup::new(false, true, wait, t0);
        assert_eq!(
            gate.update(false, true, t0 + wait),
            Some(Opened::WaitElapsed)
        );
    }

    /// A fresh node whose backends are down everywhere must not announce
    /// while their health is unknown (unknown counts as up): the gate
    /// waits for the first checks, with or without peers, and the wait
    /// bounds that too.
    #[test]
    fn a_fresh_gate_waits_for_the_first_checks() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let second = Duration::from_secs(1);
        let mut gate = Startup::new(false, false, wait, t0);
        assert!(!gate.is_open(), "not open before anything was seen");
        assert_eq!(gate.update(false, false, t0), None);
        assert_eq!(gate.update(false, false, t0 + second), None);
        assert_eq!(
            gate.update(false, true, t0 + 2 * second),
            Some(Opened::NoPeers)
        );

        let mut gate = Startup::new(false, true, wait, t0);
        assert_eq!(gate.update(true, false, t0 + second), None, "dumps alone");
        assert_eq!(
            gate.update(true, true, t0 + 2 * second),
            Some(Opened::PeersSynced)
        );

        let mut gate = Startup::new(false, false, wait, t0);
        assert_eq!(gate.update(false, false, t0 + wait - second), None);
        assert_eq!(
            gate.update(false, false, t0 + wait),
            Some(Opened::WaitElapsed),
            "checks that never decide hold the gate no longer than the wait"
        );

        let adopted = Startup::new(true, false, wait, t0);
        assert!(adopted.is_open(), "a restart that kept its routes");
    }

    #[test]
    fn state_names_read_back() {
        for state in [NodeState::Active, NodeState::Drained] {
            assert_eq!(NodeState::from_name(state.name()), Some(state));
        }
        assert_eq!(NodeState::from_name("maintenance"), None);
    }
}
