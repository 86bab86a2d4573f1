//! What this node announces: a pure function of what it can serve, its
//! state and its start-up gate, so every rule is tested without BIRD.

use std::{
    collections::{BTreeMap, BTreeSet},
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

/// Whether a service can take its packets, as announcement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// A backend the data plane sends to takes its new flows (see
    /// `VipModel::should_announce`).
    Yes,
    /// Its backends were checked and none can take them (down, or a
    /// dsr-l2 VIP's healthy ones have no MAC): this node would drop its
    /// packets, and the address goes (the other nodes may serve it).
    No,
    /// Nothing decided yet: it has no backends, or every one joined at run
    /// time and awaits its first check. Every node sees the same, so
    /// withdrawing would move the address's other services to no node: it
    /// withholds only an address no other service on it serves.
    NotYet,
}

/// One service (VIP address, port, protocol) as announcement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The VIP address the service is on.
    pub address: IpAddr,
    /// Whether this node can serve it now.
    pub serving: Serving,
}

/// How far the start-up gate lets announcements through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate<'a> {
    /// Nothing yet.
    Closed,
    /// Only these addresses: the ones a restart's kept routes announced
    /// (see [`Startup::Kept`]).
    Only(&'a BTreeSet<IpAddr>),
    /// Everything.
    Open,
}

impl Gate<'_> {
    /// Whether `address` may be announced.
    fn lets(self, address: IpAddr) -> bool {
        match self {
            Self::Closed => false,
            Self::Only(kept) => kept.contains(&address),
            Self::Open => true,
        }
    }
}

/// What the node is, apart from its services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView<'a> {
    /// The operator's state.
    pub state: NodeState,
    /// The start-up gate.
    pub gate: Gate<'a>,
    /// Whether the program is attached.
    pub attached: bool,
    /// Whether the interface's link is up.
    pub interface_up: bool,
}

/// Each candidate address, announced (`None`) or withheld and why.
pub type Plan = BTreeMap<IpAddr, Option<Withheld>>;

/// The plan for `services` (only those on addresses BGP covers): an
/// address is announced while the node is active, attached and up, the
/// gate lets it through, no service on it is [`Serving::No`] and one is
/// [`Serving::Yes`] — a node never attracts traffic it would drop because
/// of its own state, and a service nothing decided for yet (no backends,
/// or only backends awaiting their first check) does not withdraw the
/// services beside it. The first reason that applies is given.
pub fn plan(node: NodeView<'_>, services: &[Service]) -> Plan {
    let node_reason = if node.state == NodeState::Drained {
        Some(Withheld::Drained)
    } else if !node.attached {
        Some(Withheld::DataplaneDetached)
    } else if !node.interface_up {
        Some(Withheld::InterfaceDown)
    } else {
        None
    };
    // Per address: whether a service on it serves, whether one cannot.
    let mut seen: BTreeMap<IpAddr, (bool, bool)> = BTreeMap::new();
    for service in services {
        let (yes, no) = seen.entry(service.address).or_default();
        match service.serving {
            Serving::Yes => *yes = true,
            Serving::No => *no = true,
            Serving::NotYet => {}
        }
    }
    seen.into_iter()
        .map(|(address, (yes, no))| {
            let reason = node_reason
                .or((!node.gate.lets(address)).then_some(Withheld::Starting))
                .or((no || !yes).then_some(Withheld::NoHealthyBackend));
            (address, reason)
        })
        .collect()
}

/// The start-up gate: a fresh node (no pinned data plane adopted) waits
/// until every sync peer has sent its full flow dump and the first health
/// checks of the backends behind its addresses have decided, or `wait`
/// has passed, before it announces anything — it never takes flows it
/// does not know, nor attracts them to a backend that is down everywhere
/// (a backend whose health is still unknown counts as up). A node that
/// adopted its data plane and whose routes were kept (a restart; see
/// `Announcer::new`) announces those routes' addresses at once, and the
/// others once their first checks decided (VIPs added to the file before
/// the restart), as after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A restart that kept its routes: `kept` (the addresses they
    /// announced) are let through; the others wait for their first
    /// checks, for at most `wait` since `since`.
    Kept {
        /// The addresses the kept routes announced.
        kept: BTreeSet<IpAddr>,
        /// When lbd started.
        since: Instant,
        /// The longest wait.
        wait: Duration,
    },
    /// Open, and why.
    Open(Opened),
}

/// Why the start-up gate opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opened {
    /// The data plane (and its flows) was adopted from a previous lbd
    /// that left its routes announced, and the first checks of the
    /// addresses those routes did not announce decided.
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
    /// The gate for a node whose adopted data plane's kept routes
    /// announced `kept` (empty: a fresh node, or routes withdrawn by the
    /// stop), with or without sync peers.
    pub fn new(kept: BTreeSet<IpAddr>, has_peers: bool, wait: Duration, now: Instant) -> Self {
        if kept.is_empty() {
            Self::Waiting {
                since: now,
                wait,
                peers: has_peers,
            }
        } else {
            Self::Kept {
                kept,
                since: now,
                wait,
            }
        }
    }

    /// Moves the gate on: `peers_dumped` says every peer's full dump
    /// arrived, `undecided` are the announced addresses with a checked
    /// backend still `Unknown`. Returns the reason when it opens now.
    pub fn update(
        &mut self,
        peers_dumped: bool,
        undecided: &BTreeSet<IpAddr>,
        now: Instant,
    ) -> Option<Opened> {
        let opened = match self {
            Self::Open(_) => return None,
            Self::Waiting { since, wait, peers } => {
                if undecided.is_empty() && (peers_dumped || !*peers) {
                    if *peers {
                        Opened::PeersSynced
                    } else {
                        Opened::NoPeers
                    }
                } else if now.saturating_duration_since(*since) >= *wait {
                    Opened::WaitElapsed
                } else {
                    return None;
                }
            }
            // The kept addresses' flows are in the adopted table: only
            // the others' checks are awaited.
            Self::Kept { kept, since, wait } => {
                if undecided.is_subset(kept) {
                    Opened::Adopted
                } else if now.saturating_duration_since(*since) >= *wait {
                    Opened::WaitElapsed
                } else {
                    return None;
                }
            }
        };
        *self = Self::Open(opened);
        Some(opened)
    }

    /// What the gate lets through now.
    pub fn gate(&self) -> Gate<'_> {
        match self {
            Self::Waiting { .. } => Gate::Closed,
            Self::Kept { kept, .. } => Gate::Only(kept),
            Self::Open(_) => Gate::Open,
        }
    }

    /// Whether announcing may start everywhere.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "198.18.0.100";
    const B: &str = "198.18.0.101";

    fn node() -> NodeView<'static> {
        NodeView {
            state: NodeState::Active,
            gate: Gate::Open,
            attached: true,
            interface_up: true,
        }
    }

    fn service(address: &str, serving: Serving) -> Service {
        Service {
            address: address.parse().unwrap(),
            serving,
        }
    }

    fn ip(address: &str) -> IpAddr {
        address.parse().unwrap()
    }

    #[test]
    fn an_address_is_announced_only_while_every_service_on_it_can_be_served() {
        let plan = plan(
            node(),
            &[
                service(A, Serving::Yes),
                service(A, Serving::No),
                service(B, Serving::Yes),
            ],
        );
        assert_eq!(plan[&ip(A)], Some(Withheld::NoHealthyBackend));
        assert_eq!(plan[&ip(B)], None);
    }

    /// A port added beside a served one (a reload, `lbctl vip add` before
    /// `backend add`) has no backends yet, or only backends awaiting their
    /// first check: every node sees the same, so withdrawing would take
    /// the address off every node. It stays announced for the served
    /// port; an address with nothing served yet is withheld, and a
    /// service whose checked backends are down still withdraws.
    #[test]
    fn a_service_nothing_was_decided_for_does_not_withdraw_its_address() {
        let plan = plan(
            node(),
            &[
                service(A, Serving::Yes),
                service(A, Serving::NotYet),
                service(B, Serving::NotYet),
            ],
        );
        assert_eq!(plan[&ip(A)], None, "{plan:?}");
        assert_eq!(plan[&ip(B)], Some(Withheld::NoHealthyBackend), "{plan:?}");
        let plan = super::plan(
            node(),
            &[
                service(A, Serving::NotYet),
                service(A, Serving::No),
                service(A, Serving::Yes),
            ],
        );
        assert_eq!(plan[&ip(A)], Some(Withheld::NoHealthyBackend), "{plan:?}");
    }

    #[test]
    fn the_node_state_withholds_everything_with_its_own_reason() {
        let services = [service(A, Serving::Yes), service(B, Serving::No)];
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
                    gate: Gate::Closed,
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

    fn none() -> BTreeSet<IpAddr> {
        BTreeSet::new()
    }

    #[test]
    fn the_gate_opens_on_the_peers_dumps_or_the_wait() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut gate = Startup::new(none(), true, wait, t0);
        assert!(!gate.is_open());
        assert_eq!(
            gate.update(false, &none(), t0 + Duration::from_secs(9)),
            None
        );
        assert_eq!(
            gate.update(true, &none(), t0 + Duration::from_secs(9)),
            Some(Opened::PeersSynced)
        );
        assert!(gate.is_open());
        assert_eq!(
            gate.update(true, &none(), t0 + Duration::from_secs(20)),
            None,
            "opens once"
        );

        let mut gate = Startup::new(none(), true, wait, t0);
        assert_eq!(
            gate.update(false, &none(), t0 + wait),
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
        let undecided: BTreeSet<IpAddr> = [ip(A)].into();
        let mut gate = Startup::new(none(), false, wait, t0);
        assert!(!gate.is_open(), "not open before anything was seen");
        assert_eq!(gate.update(false, &undecided, t0), None);
        assert_eq!(gate.update(false, &undecided, t0 + second), None);
        assert_eq!(
            gate.update(false, &none(), t0 + 2 * second),
            Some(Opened::NoPeers)
        );

        let mut gate = Startup::new(none(), true, wait, t0);
        assert_eq!(
            gate.update(true, &undecided, t0 + second),
            None,
            "dumps alone"
        );
        assert_eq!(
            gate.update(true, &none(), t0 + 2 * second),
            Some(Opened::PeersSynced)
        );

        let mut gate = Startup::new(none(), false, wait, t0);
        assert_eq!(gate.update(false, &undecided, t0 + wait - second), None);
        assert_eq!(
            gate.update(false, &undecided, t0 + wait),
            Some(Opened::WaitElapsed),
            "checks that never decide hold the gate no longer than the wait"
        );
    }

    /// A restart that kept its routes announces their addresses at once
    /// (their flows are in the adopted table); an address added to the
    /// file before the restart waits for its first checks, as after a
    /// reload (its backends' health is unknown, which counts as up), and
    /// the wait bounds that.
    #[test]
    fn a_kept_gate_lets_the_kept_addresses_through_and_the_others_wait_for_their_checks() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let kept: BTreeSet<IpAddr> = [ip(A)].into();
        let mut gate = Startup::new(kept.clone(), true, wait, t0);
        assert_eq!(gate.gate(), Gate::Only(&kept));
        let services = [service(A, Serving::Yes), service(B, Serving::Yes)];
        let view = NodeView {
            gate: gate.gate(),
            ..node()
        };
        let planned = plan(view, &services);
        assert_eq!(planned[&ip(A)], None, "{planned:?}");
        assert_eq!(planned[&ip(B)], Some(Withheld::Starting), "{planned:?}");
        // A's own checks do not hold it; B's do, peers or not.
        let both: BTreeSet<IpAddr> = [ip(A), ip(B)].into();
        assert_eq!(gate.update(false, &both, t0), None);
        assert_eq!(gate.update(true, &both, t0), None);
        assert_eq!(gate.update(false, &kept, t0), Some(Opened::Adopted));
        assert_eq!(gate.gate(), Gate::Open);

        let mut gate = Startup::new(kept.clone(), false, wait, t0);
        assert_eq!(
            gate.update(false, &both, t0 + wait),
            Some(Opened::WaitElapsed)
        );
    }

    #[test]
    fn state_names_read_back() {
        for state in [NodeState::Active, NodeState::Drained] {
            assert_eq!(NodeState::from_name(state.name()), Some(state));
        }
        assert_eq!(NodeState::from_name("maintenance"), None);
    }
}
