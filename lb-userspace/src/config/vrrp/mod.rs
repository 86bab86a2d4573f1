//! The `[[vrrp]]` tables: VRRPv3 instances that decide which node holds
//! the VIPs, how a node that cannot serve gives them away, and the
//! connection-table replication between the two nodes.
mod instance;
mod raw;
mod replication;
#[cfg(test)]
mod tests;
mod unicast_source;

pub(super) use raw::RawVrrp;

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, time::Duration};

/// The shortest `announce_refresh_ms` other than 0 (off): Linux takes a
/// gratuitous ARP for an address at most once per `locktime` (1 s).
const MIN_ANNOUNCE_REFRESH_MS: u32 = 1_000;

/// The longest `announce_refresh_ms`: a day (keepalived takes seconds).
const MAX_ANNOUNCE_REFRESH_MS: u32 = 86_400_000;

/// The longest `preempt_delay_ms`: the state machine's limit
/// (keepalived's), so what the file says is what runs.
const MAX_PREEMPT_DELAY_MS: u32 = 1_000_000;

/// One VRRP instance (one address family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// Virtual router id, 1..=255, the same on every node of the instance.
    pub vrid: u8,
    /// This node's priority, 1..=254 (255: it owns the addresses).
    pub priority: u8,
    /// Advertisement interval (a multiple of 10 ms, 10 ms..=40.95 s).
    pub advert_interval: Duration,
    /// Whether a higher-priority backup takes over from a live master.
    pub preempt: bool,
    /// How long after start a backup waits before preempting.
    pub preempt_delay: Duration,
    /// Addresses the instance moves (empty: every VIP address of the
    /// family of the first VIP... resolved by lbd as all VIP addresses of
    /// `family`).
    pub addresses: Vec<IpAddr>,
    /// Send adverts to these peers instead of the multicast group.
    pub unicast_peers: Vec<IpAddr>,
    /// Routers between this node and its unicast peers, 0..=254 (0, the
    /// default: on the link): a peer's advert is taken from TTL 255 minus
    /// this up, anyone else's only at 255.
    pub unicast_peer_hops: u8,
    /// The node's own address adverts to `unicast_peers` go from, and no
    /// other (keepalived's `unicast_src_ip`): the one the peer's
    /// `unicast_peer` list names when the interface has several. `None`:
    /// the interface's primary IPv4 or first suitable global IPv6 address.
    pub unicast_src_ip: Option<IpAddr>,
    /// Gratuitous ARPs / neighbour advertisements sent on becoming master.
    pub announce_count: u32,
    /// Time between them.
    pub announce_interval: Duration,
    /// While master, one more round this often (keepalived's
    /// `garp_master_refresh`); `None` (0 in the file, the default): none.
    pub announce_refresh: Option<Duration>,
    /// Run on every transition: `notify STATE VRID FAMILY` (STATE is
    /// master, backup or stopped; FAMILY ipv4 or ipv6, also in
    /// `LBD_VRRP_FAMILY`, since one VRID may serve both families).
    pub notify: Option<PathBuf>,
    /// Priority lost while the XDP program is not attached.
    pub track_dataplane: u8,
    /// Priority lost while the interface is down.
    pub track_interface: u8,
    /// Priority lost per VIP that has no healthy backend.
    pub track_no_backend: u8,
    /// Connection-table replication: where this node listens.
    pub sync_listen: Option<SocketAddr>,
    /// Connection-table replication: the other node.
    pub sync_peer: Option<SocketAddr>,
    /// Shared secret of the replication channel (at least 16 bytes).
    pub sync_key_file: Option<PathBuf>,
}

/// Warns about instances of priority 255 with tracking weights: tracking
/// never lowers 255 (the address owner's priority is fixed), so a node
/// that cannot serve keeps the VIPs, which the defaults (100, 100, 50)
/// would otherwise have given away. (With replication a 255 node still
/// waits for its peer's dump before taking the VIPs at start-up, like any
/// other: see `Machine::startup`.)
pub(super) fn owner_warnings(config: &super::Config, out: &mut Vec<super::Warning>) {
    for (index, instance) in config.vrrp.iter().enumerate() {
        if instance.priority != u8::MAX {
            continue;
        }
        let weights = [
            ("track_dataplane", instance.track_dataplane),
            ("track_interface", instance.track_interface),
            ("track_no_backend", instance.track_no_backend),
        ];
        let ignored: Vec<String> = weights
            .iter()
            .filter(|(_, weight)| *weight > 0)
            .map(|(name, weight)| format!("{name} = {weight}"))
            .collect();
        if ignored.is_empty() {
            continue;
        }
        out.push(super::Warning {
            field: format!("vrrp[{index}].priority"),
            message: format!(
                "255 keeps this node master whatever it can serve: tracking is off ({} ignored, defaults included), so a node whose program is detached, whose link is down or whose VIPs have no healthy backend keeps the VIPs; use 254 or lower for tracking to work, or set the track_* weights to 0",
                ignored.join(", ")
            ),
        });
    }
}
