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
mod tests;
