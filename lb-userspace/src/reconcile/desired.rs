//! What the data plane should serve: the config's VIPs and backends,
//! with MACs found on the network and health applied.

use std::net::IpAddr;

use lb_common::{Affinity, Mode};

use super::VipId;
use crate::config::{VipConfig, VipNat};

/// A VIP as the data plane should serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredVip {
    /// Which VIP.
    pub id: VipId,
    /// Maglev table size.
    pub table_size: u32,
    /// How its packets reach the backends.
    pub mode: Mode,
    /// What of a new flow picks its backend.
    pub affinity: Affinity,
    /// NAT mode: where translated flows come from.
    pub nat: Option<VipNat>,
    /// Its backends.
    pub backends: Vec<DesiredBackend>,
}

/// A backend as the data plane should treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    /// Address (its identity in Maglev).
    pub address: IpAddr,
    /// Where to send its frames (None: unknown yet, so a DSR backend
    /// takes nothing; routed modes need none).
    pub mac: Option<[u8; 6]>,
    /// NAT mode: the port it listens on (None: the VIP's).
    pub port: Option<u16>,
    /// Share of new flows (0: none, e.g. draining).
    pub weight: u32,
    /// Whether it can take packets at all; a flow pinned to a backend that
    /// is not alive (down, in maintenance) is hashed again.
    pub alive: bool,
}

impl DesiredVip {
    /// The desired state straight from a VIP's config: every backend alive,
    /// MACs from the config or else from `mac_of`.
    pub fn from_config(vip: &VipConfig, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> Self {
        Self {
            id: VipId::of(vip),
            table_size: vip.table_size,
            mode: vip.forwarding,
            affinity: vip.affinity,
            nat: vip.nat,
            backends: vip
                .backends
                .iter()
                .map(|b| DesiredBackend {
                    address: b.address,
                    mac: b
                        .mac
                        .map(crate::mac::Mac::octets)
                        .or_else(|| mac_of(b.address)),
                    port: b.port,
                    weight: b.weight,
                    alive: true,
                })
                .collect(),
        }
    }
}

impl DesiredBackend {
    /// Whether the data plane may send it packets in `mode`: DSR at L2
    /// needs its MAC, routed modes take the next hop from the FIB.
    pub(crate) fn can_take_packets(&self, mode: Mode) -> bool {
        self.alive && (self.mac.is_some() || mode != Mode::DsrL2)
    }
}
