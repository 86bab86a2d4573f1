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

/// How long after a frame of a peer's full dump the dump still counts as
/// arriving (see [`PeerDumps::arriving`]): a dump in progress sends its
/// frames back to back, so a second or two without one means it stalled
/// (the session broke, or the peer stopped sending).
pub const DUMP_PROGRESS_WINDOW: Duration = Duration::from_secs(2);

/// How many times `startup_wait_ms` the gate waits at most for dumps
/// still arriving when the wait passes (see [`Startup::update`]): the
/// default 10 s wait is held to 40 s at most. A bound, so a peer that
/// streams a dump forever (or its last frame never comes) cannot keep
/// the node from announcing.
pub const DUMP_CAP_FACTOR: u32 = 4;

/// Where one sync peer's first full dump stands, as the start-up gate
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpProgress {
    /// Complete: the last frames of its full sync of the flows and of
    /// the NAT'd flows arrived.
    Done,
    /// Frames of it arrived, the latest at this instant, but not its end.
    Arriving(Instant),
    /// Nothing of it yet: the peer was not reached, or sent none.
    Nothing,
}

impl DumpProgress {
    /// How the logs spell it.
    fn describe(self, now: Instant) -> String {
        match self {
            Self::Done => "complete".to_owned(),
            Self::Arriving(at) => format!(
                "incomplete, last frame {} ms ago",
                now.saturating_duration_since(at).as_millis()
            ),
            Self::Nothing => "nothing received".to_owned(),
        }
    }
}

/// Every sync peer's first full dump, each under the peer's name (its
/// configured address): the start-up gate's view of replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDumps(pub Vec<(String, DumpProgress)>);

impl PeerDumps {
    /// Whether every peer's dump is complete (no peers: yes).
    pub fn all_done(&self) -> bool {
        self.0.iter().all(|(_, d)| *d == DumpProgress::Done)
    }

    /// Whether some peer's dump is still demonstrably arriving at `now`:
    /// a frame of it came within [`DUMP_PROGRESS_WINDOW`].
    pub fn arriving(&self, now: Instant) -> bool {
        self.0.iter().any(|(_, d)| match d {
            DumpProgress::Arriving(at) => now.saturating_duration_since(*at) < DUMP_PROGRESS_WINDOW,
            _ => false,
        })
    }

    /// Whether some peer's dump began arriving and is not complete (at
    /// any time: stalled or not).
    pub fn any_partial(&self) -> bool {
        self.0
            .iter()
            .any(|(_, d)| matches!(d, DumpProgress::Arriving(_)))
    }

    /// The peers whose dump is not complete, with where each stands, as
    /// the logs name them (`peer (state), …`).
    pub fn unfinished(&self, now: Instant) -> String {
        self.0
            .iter()
            .filter(|(_, d)| *d != DumpProgress::Done)
            .map(|(peer, d)| format!("{peer} ({})", d.describe(now)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The start-up gate: a fresh node (no pinned data plane adopted) waits
/// until every sync peer has sent its full flow dump and the first health
/// checks of the backends behind its addresses have decided, or `wait`
/// has passed, before it announces anything — it never takes flows it
/// does not know, nor attracts them to a backend that is down everywhere
/// (a backend whose health is still unknown counts as up). When `wait`
/// passes while a peer's dump is still arriving (see
/// [`PeerDumps::arriving`]), it waits on for it, until it stops arriving
/// ([`Opened::DumpStalled`]) or [`DUMP_CAP_FACTOR`] × `wait` passed
/// ([`Opened::CapElapsed`]). A node that
/// adopted its data plane and whose routes were kept (a restart; see
/// `Announcer::new`) announces those routes' addresses at once, and the
/// others once their first checks decided (VIPs added to the file before
/// the restart), as after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Waiting since `since`, for at most `wait` (or the cap, while a
    /// dump is arriving).
    Waiting {
        /// When lbd started.
        since: Instant,
        /// The longest wait.
        wait: Duration,
        /// Whether sync peers' dumps are awaited (none configured: no).
        peers: bool,
        /// Whether `wait` passed while a dump was arriving, so the gate
        /// waits on for it.
        extended: bool,
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
    /// The wait passed while a peer's dump was arriving; the gate waited
    /// on, and that dump stopped arriving before its end.
    DumpStalled,
    /// The wait passed while a peer's dump was arriving; the gate waited
    /// on, and the cap ([`DUMP_CAP_FACTOR`] × the wait) passed first.
    CapElapsed,
}

impl Opened {
    /// The reason's name, as the API and `lbctl` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Adopted => "adopted",
            Self::PeersSynced => "peers-synced",
            Self::WaitElapsed => "wait-elapsed",
            Self::NoPeers => "no-peers",
            Self::DumpStalled => "dump-stalled",
            Self::CapElapsed => "cap-elapsed",
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
                extended: false,
            }
        } else {
            Self::Kept {
                kept,
                since: now,
                wait,
            }
        }
    }

    /// Moves the gate on: `dumps` says where every peer's full dump
    /// stands, `undecided` are the announced addresses with a checked
    /// backend still `Unknown`. Returns the reason when it opens now.
    pub fn update(
        &mut self,
        dumps: &PeerDumps,
        undecided: &BTreeSet<IpAddr>,
        now: Instant,
    ) -> Option<Opened> {
        let peers_dumped = dumps.all_done();
        let opened = match self {
            Self::Open(_) => return None,
            Self::Waiting {
                since,
                wait,
                peers,
                extended,
            } => {
                let waited = now.saturating_duration_since(*since);
                let cap = wait.saturating_mul(DUMP_CAP_FACTOR);
                if undecided.is_empty() && (peers_dumped || !*peers) {
                    if *peers {
                        Opened::PeersSynced
                    } else {
                        Opened::NoPeers
                    }
                } else if waited < *wait {
                    return None;
                } else if *peers && !peers_dumped && dumps.arriving(now) && waited < cap {
                    // A dump is still arriving: announcing now would draw
                    // flows whose state is on its way.
                    *extended = true;
                    return None;
                } else if !*extended || !dumps.any_partial() {
                    // No dump was arriving at the wait (a peer that sends
                    // nothing), or those waited on are in and only peers
                    // that sent nothing, or the first checks, are
                    // missing: the wait decides.
                    Opened::WaitElapsed
                } else if waited >= cap {
                    Opened::CapElapsed
                } else {
                    Opened::DumpStalled
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

    /// Whether the wait passed while a dump was arriving, and the gate
    /// still waits on for it.
    pub fn is_extended(&self) -> bool {
        matches!(self, Self::Waiting { extended: true, .. })
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

    const PEER: &str = "198.18.2.12:7946";

    /// One peer whose dump stands as `progress`.
    fn dumps(progress: DumpProgress) -> PeerDumps {
        PeerDumps(vec![(PEER.to_owned(), progress)])
    }

    /// The peer's dump is complete.
    fn done() -> PeerDumps {
        dumps(DumpProgress::Done)
    }

    /// Nothing of the peer's dump came.
    fn nothing() -> PeerDumps {
        dumps(DumpProgress::Nothing)
    }

    #[test]
    fn the_gate_opens_on_the_peers_dumps_or_the_wait() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut gate = Startup::new(none(), true, wait, t0);
        assert!(!gate.is_open());
        assert_eq!(
            gate.update(&nothing(), &none(), t0 + Duration::from_secs(9)),
            None
        );
        assert_eq!(
            gate.update(&done(), &none(), t0 + Duration::from_secs(9)),
            Some(Opened::PeersSynced)
        );
        assert!(gate.is_open());
        assert_eq!(
            gate.update(&done(), &none(), t0 + Duration::from_secs(20)),
            None,
            "opens once"
        );

        let mut gate = Startup::new(none(), true, wait, t0);
        assert_eq!(
            gate.update(&nothing(), &none(), t0 + wait),
            Some(Opened::WaitElapsed)
        );
    }

    /// A dump still arriving when the wait passes holds the gate: it opens
    /// as soon as the dump completes (`peers-synced`), not at the wait
    /// with part of the peer's flows missing.
    #[test]
    fn a_dump_arriving_at_the_wait_keeps_the_gate_closed_until_it_completes() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let ms = Duration::from_millis;
        let mut gate = Startup::new(none(), true, wait, t0);
        let at = |t| dumps(DumpProgress::Arriving(t));
        assert_eq!(gate.update(&at(t0 + ms(9_900)), &none(), t0 + wait), None);
        assert_eq!(gate.gate(), Gate::Closed);
        assert!(gate.is_extended());
        assert_eq!(
            gate.update(&at(t0 + ms(14_500)), &none(), t0 + ms(15_000)),
            None,
            "still arriving"
        );
        assert_eq!(
            gate.update(&done(), &none(), t0 + ms(15_500)),
            Some(Opened::PeersSynced)
        );
        assert!(gate.is_open());
    }

    /// A dump that stops arriving once the gate waits on for it opens the
    /// gate with its own reason, and does not wait for the cap.
    #[test]
    fn a_dump_that_stalls_past_the_wait_opens_the_gate_as_stalled() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let ms = Duration::from_millis;
        let mut gate = Startup::new(none(), true, wait, t0);
        let last = t0 + ms(10_500);
        let stalled = dumps(DumpProgress::Arriving(last));
        assert_eq!(gate.update(&stalled, &none(), t0 + ms(10_600)), None);
        assert_eq!(
            gate.update(&stalled, &none(), last + DUMP_PROGRESS_WINDOW - ms(1)),
            None,
            "within the window it still counts as arriving"
        );
        assert_eq!(
            gate.update(&stalled, &none(), last + DUMP_PROGRESS_WINDOW),
            Some(Opened::DumpStalled)
        );
        assert_eq!(Opened::DumpStalled.name(), "dump-stalled");
    }

    /// A dump that keeps arriving without end holds the gate no longer
    /// than the cap.
    #[test]
    fn a_dump_arriving_forever_opens_the_gate_at_the_cap() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let cap = wait * DUMP_CAP_FACTOR;
        let ms = Duration::from_millis;
        let mut gate = Startup::new(none(), true, wait, t0);
        for t in [wait, 2 * wait, cap - ms(1)] {
            let fresh = dumps(DumpProgress::Arriving(t0 + t - ms(100)));
            assert_eq!(gate.update(&fresh, &none(), t0 + t), None, "{t:?}");
        }
        let fresh = dumps(DumpProgress::Arriving(t0 + cap - ms(100)));
        assert_eq!(
            gate.update(&fresh, &none(), t0 + cap),
            Some(Opened::CapElapsed)
        );
        assert_eq!(Opened::CapElapsed.name(), "cap-elapsed");
    }

    /// The wait passing with no dump arriving opens the gate as before:
    /// a peer that sends nothing (not connected), or whose dump stopped
    /// before the wait, or no peers at all with checks still undecided.
    #[test]
    fn without_a_dump_arriving_the_wait_opens_the_gate_as_before() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let ms = Duration::from_millis;
        for progress in [
            nothing(),
            dumps(DumpProgress::Arriving(t0 + ms(5_000))),
            PeerDumps(vec![
                ("a".to_owned(), DumpProgress::Done),
                ("b".to_owned(), DumpProgress::Nothing),
            ]),
        ] {
            let mut gate = Startup::new(none(), true, wait, t0);
            assert_eq!(gate.update(&progress, &none(), t0 + wait - ms(1)), None);
            assert_eq!(
                gate.update(&progress, &none(), t0 + wait),
                Some(Opened::WaitElapsed),
                "{progress:?}"
            );
            assert!(!gate.is_extended());
        }
        let mut gate = Startup::new(none(), false, wait, t0);
        let undecided: BTreeSet<IpAddr> = [ip(A)].into();
        let arriving = dumps(DumpProgress::Arriving(t0 + wait));
        assert_eq!(
            gate.update(&arriving, &undecided, t0 + wait),
            Some(Opened::WaitElapsed),
            "no peers configured: no dump is awaited"
        );
        // A dump arriving while only checks are undecided (the dumps are
        // in) holds nothing either.
        let mut gate = Startup::new(none(), true, wait, t0);
        assert_eq!(
            gate.update(&done(), &undecided, t0 + wait),
            Some(Opened::WaitElapsed)
        );
    }

    /// The gate waited on for a dump that completed, but a first check
    /// still undecided: it opens once the dump is in (the wait passed
    /// for the checks).
    #[test]
    fn an_extended_gate_opens_when_the_dump_is_in_even_with_checks_undecided() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let ms = Duration::from_millis;
        let undecided: BTreeSet<IpAddr> = [ip(A)].into();
        let mut gate = Startup::new(none(), true, wait, t0);
        let fresh = dumps(DumpProgress::Arriving(t0 + wait));
        assert_eq!(gate.update(&fresh, &undecided, t0 + wait), None);
        assert_eq!(
            gate.update(&done(), &undecided, t0 + wait + ms(500)),
            Some(Opened::WaitElapsed)
        );
    }

    /// Of two peers, one's dump arriving at the wait and the other silent
    /// (not connected): the gate waits on for the first only, and opens
    /// as soon as it is in, for the wait's reason (nothing stalled).
    #[test]
    fn a_silent_peer_holds_nothing_once_the_arriving_dump_is_in() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let ms = Duration::from_millis;
        let two = |a| {
            PeerDumps(vec![
                ("a".to_owned(), a),
                ("b".to_owned(), DumpProgress::Nothing),
            ])
        };
        let mut gate = Startup::new(none(), true, wait, t0);
        let arriving = two(DumpProgress::Arriving(t0 + wait));
        assert_eq!(gate.update(&arriving, &none(), t0 + wait), None);
        assert_eq!(
            gate.update(&two(DumpProgress::Done), &none(), t0 + wait + ms(300)),
            Some(Opened::WaitElapsed)
        );
    }

    #[test]
    fn peer_dumps_name_the_unfinished_ones() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let dumps = PeerDumps(vec![
            ("a".to_owned(), DumpProgress::Done),
            ("b".to_owned(), DumpProgress::Arriving(t0)),
            ("c".to_owned(), DumpProgress::Nothing),
        ]);
        assert!(!dumps.all_done());
        assert!(dumps.any_partial());
        assert!(!PeerDumps(vec![("c".to_owned(), DumpProgress::Nothing)]).any_partial());
        assert!(dumps.arriving(t0 + ms(1_999)));
        assert!(!dumps.arriving(t0 + DUMP_PROGRESS_WINDOW));
        assert_eq!(
            dumps.unfinished(t0 + ms(250)),
            "b (incomplete, last frame 250 ms ago), c (nothing received)"
        );
        assert!(PeerDumps::default().all_done());
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
        assert_eq!(gate.update(&nothing(), &undecided, t0), None);
        assert_eq!(gate.update(&nothing(), &undecided, t0 + second), None);
        assert_eq!(
            gate.update(&nothing(), &none(), t0 + 2 * second),
            Some(Opened::NoPeers)
        );

        let mut gate = Startup::new(none(), true, wait, t0);
        assert_eq!(
            gate.update(&done(), &undecided, t0 + second),
            None,
            "dumps alone"
        );
        assert_eq!(
            gate.update(&done(), &none(), t0 + 2 * second),
            Some(Opened::PeersSynced)
        );

        let mut gate = Startup::new(none(), false, wait, t0);
        assert_eq!(
            gate.update(&nothing(), &undecided, t0 + wait - second),
            None
        );
        assert_eq!(
            gate.update(&nothing(), &undecided, t0 + wait),
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
        assert_eq!(gate.update(&nothing(), &both, t0), None);
        assert_eq!(gate.update(&done(), &both, t0), None);
        assert_eq!(gate.update(&nothing(), &kept, t0), Some(Opened::Adopted));
        assert_eq!(gate.gate(), Gate::Open);

        let mut gate = Startup::new(kept.clone(), false, wait, t0);
        assert_eq!(
            gate.update(&nothing(), &both, t0 + wait),
            Some(Opened::WaitElapsed)
        );
    }

    #[test]
    fn state_names_read_back() {
        for state in [NodeState::Active, NodeState::Drained] {
            assert_eq!(NodeState::from_name(state.name()), Some(state));
        }
        assert_eq!(NodeState::from_name("maintenance"), None);
        // The status's JSON spells a gate's reason as logs and lbctl do.
        for opened in [
            Opened::Adopted,
            Opened::PeersSynced,
            Opened::WaitElapsed,
            Opened::NoPeers,
            Opened::DumpStalled,
            Opened::CapElapsed,
        ] {
            let json = serde_json::to_value(opened).unwrap();
            assert_eq!(json, serde_json::json!(opened.name()));
            assert_eq!(serde_json::from_value::<Opened>(json).unwrap(), opened);
        }
    }
}
