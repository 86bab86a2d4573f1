//! What an instance reports (state, priority, counters, faults) for lbd's
//! status and metrics, and the driver publishing it: apart as the one
//! type other crates and the API see.

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use serde::{Deserialize, Serialize};

use super::Driver;
use crate::vrrp::{Counters, State};

/// What an instance reports, for status and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Virtual router id.
    pub vrid: u8,
    /// Protocol state.
    pub state: State,
    /// Priority configured.
    pub configured_priority: u8,
    /// Priority advertised now (after tracking).
    pub priority: u8,
    /// Primary address of the current master, as last heard (ourselves
    /// when master).
    pub master: Option<IpAddr>,
    /// Addresses the instance moves.
    pub addresses: Vec<IpAddr>,
    /// Protocol counters.
    pub counters: Counters,
    /// Packets ignored, by reason (`ttl`, `checksum`, `other_vrid`, ...).
    pub ignored: BTreeMap<String, u64>,
    /// The instance's checks see the interface's link down (keepalived's
    /// FAULT): a backup does not take over meanwhile, so the pair has no
    /// standby, and a master keeps its mastership on a dead link.
    #[serde(default)]
    pub link_down: bool,
    /// While `link_down`: when the outage began at the earliest (the last
    /// time the link was seen up), Unix time in seconds.
    #[serde(default)]
    pub link_down_since: Option<u64>,
    /// The interface has no address adverts can go from (keepalived's
    /// FAULT for want of an address): a master gives up mastership and
    /// the VIPs to the peer that takes over, a backup does not take
    /// over, until one is back.
    #[serde(default)]
    pub no_source: bool,
    /// While `no_source`: when the source was first seen gone, Unix time
    /// in seconds.
    #[serde(default)]
    pub no_source_since: Option<u64>,
}

/// `at`, an instant in the past, as Unix time in seconds (0 if the clock
/// is set before 1970).
pub(super) fn unix_seconds(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|wall| wall.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs())
}

impl Driver {
    pub(super) fn publish(&self) {
        let status = InstanceStatus {
            vrid: self.config.vrid,
            state: self.machine.state(),
            configured_priority: self.config.priority,
            priority: self.machine.priority(),
            master: match self.machine.state() {
                State::Master => Some(self.socket.local()),
                _ => self.machine.master_address(),
            },
            addresses: self.config.addresses.clone(),
            counters: *self.machine.counters(),
            ignored: self.ignored.clone(),
            link_down: self.machine.link_is_down(),
            link_down_since: self.machine.link_down_since().map(unix_seconds),
            no_source: self.machine.source_is_gone(),
            no_source_since: self.machine.source_gone_since().map(unix_seconds),
        };
        self.status.send_replace(status);
    }
}
