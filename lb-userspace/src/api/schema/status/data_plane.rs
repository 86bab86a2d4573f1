//! The data plane's tables and tunnel settings in the status: the
//! connection table's occupancy and SYN flood state, the NAT flow table
//! as the reaper's last sweep found it, and the tunnelled modes' sources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Connection-table occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackStatus {
    /// Live tracked flows: no FIN/RST seen, a packet within their idle
    /// timeout (closed and expired entries keep their ways until a new
    /// flow takes them, so they do not count towards full).
    pub entries: u64,
    /// Flows the table keeps without evicting a live one (`conntrack_size`;
    /// past it a new flow may evict, in its two buckets, a closed, expired
    /// or half-open flow, else the least recently seen).
    pub capacity: u64,
    /// Bytes of kernel memory the table takes (preallocated).
    #[serde(default)]
    pub memory_bytes: u64,
    /// Of `entries`, TCP handshakes: a SYN the table took (into a way no
    /// live flow held), its client's ACK not yet seen, within the
    /// half-open timeout.
    #[serde(default)]
    pub handshakes: u64,
    /// Half-open TCP flows held apart (SYN seen, ACK not yet; a SYN the
    /// connection table had no free way for, and every SYN in flood
    /// mode): a SYN flood fills this table, not the connection table.
    #[serde(default)]
    pub half_open: u64,
    /// Half-open flows that table has room for.
    #[serde(default)]
    pub half_open_capacity: u64,
    /// Whether lbd sees a SYN flood now (`flood::machine`).
    #[serde(default)]
    pub syn_flood: bool,
    /// How long the current flood lasts, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_flood_for_s: Option<u64>,
    /// Flood mode entered or left since start.
    #[serde(default)]
    pub syn_flood_transitions: u64,
    /// SYNs held half-open that no ACK took out, per second (the last
    /// second).
    #[serde(default)]
    pub unanswered_syn_per_s: u64,
    /// Half-open flows displaced while still in time, per second.
    #[serde(default)]
    pub half_open_evicted_per_s: u64,
}

/// The NAT flow table as the reaper's last complete sweep found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatStatus {
    /// Translated flows (two entries each), by state (`syn-sent`,
    /// `established`, `closing`, `time-wait`, `closed`, `udp`).
    pub flows: BTreeMap<String, u64>,
    /// Entries the table holds at most (`[nat] flow_table_size`).
    pub capacity: u64,
    /// Bytes of kernel memory the table takes (preallocated); 0 from an
    /// lbd that did not say.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Whether a sweep has completed yet (the counts are zero until then).
    pub swept: bool,
    /// Flows freed after their state's timeout, since start.
    pub expired: u64,
    /// Entries freed for want of their other direction, since start.
    pub orphans: u64,
    /// Flows freed because their backend was removed, since start.
    pub backend_gone: u64,
    /// Removals the table refused, since start (retried next sweep): a
    /// count that keeps growing means flows the reaper cannot free. 0
    /// from an lbd that did not say.
    #[serde(default)]
    pub reap_failed: u64,
    /// Reads of the table that failed, since start (each started the
    /// sweep over). 0 from an lbd that did not say.
    #[serde(default)]
    pub read_errors: u64,
    /// Whether the table is nearly full, so closed flows are freed after a
    /// second instead of `tcp_time_wait_timeout_s` / `tcp_closed_timeout_s`
    /// (`nat::reaper::pressure::pressed`).
    #[serde(default)]
    pub pressure: bool,
}

/// The tunnelled modes' settings as the data plane has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// UDP port GUE packets are sent to.
    pub gue_port: u16,
    /// Outer IPv4 sources, `ADDRESS/LENGTH` (None: none, so no IPv4
    /// backend can be served).
    pub source_ipv4: Option<String>,
    /// Outer IPv6 sources (as `source_ipv4`).
    pub source_ipv6: Option<String>,
    /// Whether the sources are the interface's own address (no prefix in
    /// `[tunnel]`), per family: IPv4, IPv6.
    pub sources_from_interface: [bool; 2],
    /// Interfaces `tc_hc_encap` is attached to (tc egress), while some
    /// check goes through a tunnel.
    pub hc_encap: Vec<String>,
    /// Whether lbd switched the interface's `accept_local` on for the
    /// replies of those checks.
    pub accept_local: bool,
}
