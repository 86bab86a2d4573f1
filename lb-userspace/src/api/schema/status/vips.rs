//! The VIPs and their backends in the status: forwarding, traffic
//! counters, flows, admin state and health of each, and a NAT VIP's
//! source ports.

use std::net::IpAddr;

use lb_common::{Affinity, Mode};
use serde::{Deserialize, Serialize};

use super::{read, CheckStatus, HealthStatus};
use crate::{
    api::wire_name,
    config::AllDown,
    mac::Mac,
    model::{BackendState, FlowCount},
};

/// A NAT VIP's source address and port usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipNatStatus {
    /// The NAT address its flows come from.
    pub source: IpAddr,
    /// First source port handed out.
    pub port_min: u16,
    /// Last source port handed out.
    pub port_max: u16,
    /// Source ports in use towards its busiest backend (ports run out per
    /// NAT address, backend and backend port): compare with
    /// `port_max - port_min + 1`.
    pub ports_in_use: u64,
    /// Its translated flows.
    pub flows: u64,
}

/// One VIP in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipStatus {
    /// `ADDRESS:PORT/PROTOCOL`.
    pub vip: String,
    /// Maglev table size.
    pub table_size: u32,
    /// What happens when no backend is healthy.
    pub on_all_down: AllDown,
    /// True when no backend meant to take flows is healthy.
    pub all_down: bool,
    /// True when its backups take its new flows: no other backend can
    /// (each is down, draining, in maintenance, full or of weight 0).
    /// Absent when false (and from an lbd before backups).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_backups: bool,
    /// Added at run time (not in the config file).
    pub runtime: bool,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Flows new to the connection table.
    pub new_flows: u64,
    /// Whether `packets`, `bytes` and `new_flows` were read: false when
    /// the read of the data plane's map failed, and they show 0, which is
    /// no count (nor a reset). Absent from an lbd before this mark: true.
    #[serde(default = "read")]
    pub traffic_read: bool,
    /// Forwarding mode (`dsr-l2`, `nat`, `ipip`, `gue`; absent from an lbd before
    /// modes: `dsr-l2`).
    #[serde(default, with = "wire_name::one")]
    pub mode: Mode,
    /// What of a new flow picks its backend (`connection`, `source`;
    /// absent from an lbd before affinity: `connection`).
    #[serde(default, with = "wire_name::one")]
    pub affinity: Affinity,
    /// Seconds a backend coming back into rotation takes to reach its
    /// full weight (`slow_start_s`); absent when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_s: Option<u64>,
    /// NAT mode: its NAT address and port usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<VipNatStatus>,
    /// Its backends.
    pub backends: Vec<BackendStatus>,
}

/// A backend's ramp to its full weight: what the data plane gives it now
/// and when it is over, so an operator sees why a backend that is up
/// takes less than its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowStartStatus {
    /// Percent of its configured weight it has now (whole steps).
    pub percent: u32,
    /// Seconds until it has all of it.
    pub left_s: u64,
}

/// One backend in the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Address.
    pub address: IpAddr,
    /// MAC frames go to (None: not resolved yet, or a routed mode).
    pub mac: Option<Mac>,
    /// NAT mode: the port it listens on, when not the VIP's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Configured weight.
    pub weight: u32,
    /// A backup: takes new flows only while no other backend of its VIP
    /// can (its `share` says whether it does now). Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// Admin state.
    pub state: BackendState,
    /// Health from the checks.
    pub health: HealthStatus,
    /// Whether the data plane sends it packets.
    pub alive: bool,
    /// Share of new flows (of the live Maglev table).
    pub share: f64,
    /// Tracked flows.
    pub flows: FlowCount,
    /// NAT mode: `flows` is not a count of now yet. No sweep of the NAT
    /// table has finished since lbd started, or since this backend's
    /// drain began, so it holds the last complete count (zero before the
    /// first); `drain --wait` waits for the next.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flows_counting: bool,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Flows new to the connection table.
    pub new_flows: u64,
    /// Whether `packets`, `bytes` and `new_flows` were read (as
    /// [`VipStatus::traffic_read`]).
    #[serde(default = "read")]
    pub traffic_read: bool,
    /// Seconds left before a drain cuts remaining flows.
    pub drain_remaining_s: Option<u64>,
    /// The last drain ended because its timeout cut the remaining flows
    /// (the backend is in maintenance since).
    #[serde(default)]
    pub drain_timed_out: bool,
    /// Seconds left of its hold after its VIP stopped failing open: it
    /// fails its checks yet keeps the established flows it took while
    /// the VIP failed open (alive, no new flows) until it passes them,
    /// the operator acts, or this runs out; then those flows move. Absent
    /// when not held (and from an lbd before holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_s: Option<u64>,
    /// Its slow start (the VIP's `slow_start_s`) while it ramps to its
    /// full weight after coming back into rotation; absent at full
    /// weight (and from an lbd before slow start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStartStatus>,
    /// The sync peer (its node id) this node took this state from: the
    /// node where an operator made it, or a peer that had taken it from
    /// there (backend states are shared with the sync peers); absent when
    /// made here, or from the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_from: Option<String>,
    /// Its health checks.
    pub check: Option<CheckStatus>,
    /// Added at run time (not in the config file).
    pub runtime: bool,
}
