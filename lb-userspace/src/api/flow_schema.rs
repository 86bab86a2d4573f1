//! The answer of `GET /v1/vips/{vip}/flows/{client}` (`lbctl flow`): where
//! one flow's next packet goes and why, like Katran's `getRealForFlow`.
//! `{client}` is `ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`), of the VIP's
//! family, port not 0; like every segment it travels percent-encoded.

use std::net::{IpAddr, SocketAddr};

use lb_common::{nat::NatFlowState, Affinity, Mode};
use serde::{Deserialize, Serialize};

/// What the data plane does with the flow's next packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowDecision {
    /// The connection table holds the flow and its backend is still the
    /// same live backend: the packet goes there.
    Tracked,
    /// The flow is a handshake (a TCP SYN seen, the client's ACK not yet),
    /// held in the connection table or the half-open table, and its SYN's
    /// backend is still the same live backend: the packet goes there, and
    /// unless it is a retransmitted SYN the flow becomes established
    /// there with that backend.
    #[serde(rename = "half_open")]
    HalfOpen,
    /// No valid entry, or one whose flow is over (TCP: FIN/RST seen, so
    /// its next packet, a SYN, opens a new flow; UDP: idle past its
    /// timeout; an open TCP connection idle past its timeout is still
    /// `Tracked`, its own packets going by its entry):
    /// Maglev's pick (the slot the flow hashes to in the VIP's live table),
    /// then remembered.
    Maglev,
    /// No valid entry and no live backend in the flow's slot: dropped.
    Dropped,
}

/// Why a flow is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The VIP has no table (size 0) or lbd does not know what it holds.
    NoTable,
    /// The flow's slot names no backend: no backend takes new flows.
    EmptySlot,
    /// The slot's backend cannot take packets (maintenance, down, no MAC).
    BackendNotAlive,
}

/// A connection-table flag of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowFlag {
    /// A FIN was seen.
    Fin,
    /// An RST was seen.
    Rst,
}

/// A backend named by the explanation, with what lbd knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowBackend {
    /// Its address.
    pub address: IpAddr,
    /// Data-plane id.
    pub id: u32,
    /// Admin state (None: no longer in the model).
    pub state: Option<crate::api::schema::BackendState>,
    /// Health (None: no longer in the model).
    pub health: Option<crate::api::schema::HealthStatus>,
    /// Whether the data plane sends it packets.
    pub alive: bool,
}

/// The flow's entry in the connection table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEntry {
    /// The backend it is pinned to, if that backend (id and generation)
    /// still exists.
    pub backend: Option<FlowBackend>,
    /// The backend id it is pinned to.
    pub backend_id: u32,
    /// Seconds since a packet of the flow was seen (the data plane
    /// refreshes the time at most once a second, so up to 1 s more).
    pub age_s: f64,
    /// FIN / RST seen.
    pub flags: Vec<FlowFlag>,
    /// True while the pinned backend is the same live backend: the next
    /// packet follows the entry. False: stale, the next packet is hashed
    /// again (and re-pinned).
    pub current: bool,
    /// Counted as live by `drain --wait`: no FIN/RST, a packet within the
    /// idle timeout (a half-open entry: within the half-open timeout, past
    /// which a new SYN may take its place).
    pub live: bool,
    /// An open TCP connection (no FIN/RST) idle past the idle timeout:
    /// its own packets still go by this entry, a new connection (SYN) on
    /// its tuple is balanced afresh (`FlowExplanation::new_connection`),
    /// and a new flow of a full bucket may take its way before any live
    /// flow's (never a SYN's). Absent from older lbds' answers: false.
    #[serde(default)]
    pub idle: bool,
}

/// Where a new connection (a TCP SYN) on the tuple of an idle open
/// connection would go: Maglev's pick, as for a flow not tracked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewConnection {
    /// Maglev's pick (None: the VIP has no table).
    pub maglev: Option<MaglevPick>,
    /// The backend it would go to (None: dropped).
    pub backend: Option<FlowBackend>,
    /// Why it would be dropped.
    pub dropped: Option<DropReason>,
}

/// Where Maglev puts the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaglevPick {
    /// The flow's slot: its hash modulo the table size.
    pub slot: u32,
    /// Slots in the VIP's table.
    pub table_size: u32,
    /// Backend id in the slot (0: none).
    pub backend_id: u32,
    /// What the hash was of: the whole flow (`connection`) or the
    /// client's address (`source`); absent from an lbd before affinity:
    /// `connection`.
    #[serde(default, with = "super::wire_name::one")]
    pub affinity: Affinity,
}

/// `GET /v1/vips/{vip}/flows/{client}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowExplanation {
    /// The VIP, `ADDRESS:PORT/PROTOCOL`.
    pub vip: String,
    /// The client end of the flow.
    pub client: SocketAddr,
    /// What happens to its next packet.
    pub decision: FlowDecision,
    /// Where it goes (None when dropped).
    pub backend: Option<FlowBackend>,
    /// Its connection-table entry, valid or stale (None: not tracked).
    pub entry: Option<TrackedEntry>,
    /// Its half-open-table entry (a TCP flow whose SYN was seen and whose
    /// ACK was not yet), valid or stale; looked up, as the data plane
    /// does, only when the connection table does not hold the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open: Option<TrackedEntry>,
    /// Maglev's pick, when the table decides (no valid entry).
    pub maglev: Option<MaglevPick>,
    /// Why it is dropped.
    pub dropped: Option<DropReason>,
    /// An idle open TCP connection (`TrackedEntry::idle`) tracked on its
    /// backend: where a new connection (SYN) on its tuple would go
    /// instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_connection: Option<NewConnection>,
    /// NAT VIPs: the flow's translation, when the NAT table holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatTranslation>,
    /// Tunnelled VIPs: the outer header the flow's packets get toward the
    /// backend it goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<FlowTunnel>,
}

/// The encapsulation of a tunnelled flow's packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTunnel {
    /// `ipip` or `gue`.
    #[serde(with = "super::wire_name::one")]
    pub mode: Mode,
    /// Outer source (from the `[tunnel]` prefix, derived from the client's
    /// address and port).
    pub outer_src: IpAddr,
    /// Outer destination: the backend.
    pub outer_dst: IpAddr,
    /// GUE: the UDP destination port (the source port varies per flow).
    pub gue_port: Option<u16>,
}

/// One direction of a NAT'd flow: the packet's ends after translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatTuple {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
}

/// A NAT'd flow as the NAT table holds it: the client's packets
/// (client -> VIP) leave as `forward`; the backend's replies arrive as
/// `reply` and leave as VIP -> client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatTranslation {
    /// The client's packets after translation: NAT address -> backend.
    pub forward: NatTuple,
    /// The backend's replies as they arrive: backend -> NAT address.
    pub reply: NatTuple,
    /// `syn-sent`, `established`, `closing`, `time-wait`, `closed` or `udp`.
    #[serde(with = "super::wire_name::one")]
    pub state: NatFlowState,
    /// Seconds since a packet of either direction (refreshed at most once
    /// a second, so up to 1 s more).
    pub age_s: f64,
    /// The backend id it was translated to.
    pub backend_id: u32,
    /// Whether the reply direction's entry exists (without it, replies
    /// are not translated; the reaper frees such a half).
    pub reply_entry: bool,
}
